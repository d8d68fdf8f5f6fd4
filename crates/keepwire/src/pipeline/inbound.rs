//! The inbound step: decode → heartbeat or data → liveness → pong, and the timer step, as
//! pure functions over one connection's borrowed state.
//!
//! Every side of a connection runs the same rule (docs/liveness.md, "No keep-alive
//! storms"; [`crate::liveness`], "Heartbeats without storms"): a frame the link's [`Heartbeat`] recognises never reaches the application;
//! [`Liveness`] decides whether it is our pong, a ping to answer or one to swallow; a pong is
//! encoded into the write buffer for the caller to write. A side with a ping outstanding takes
//! the next heartbeat as its pong and never answers it (jPOS issue #775 is the storm that
//! answering pongs starts).
//!
//! | frame                           | liveness says | result                           |
//! |---------------------------------|---------------|----------------------------------|
//! | not a heartbeat (or none on)    | `Deliver`     | [`Inbound::Data`]                |
//! | heartbeat taken as our pong     | `Absorb`      | [`Inbound::Pong`]                |
//! | ping (or same-bytes, none out)  | `Answer`      | [`Inbound::PongQueued`], pong in `wbuf` |
//! | stray pong, storm guard, answering off | `Absorb` | [`Inbound::Absorbed`]          |
//!
//! Nothing here reads a clock or touches a socket: the caller passes `now` (one clock read per
//! batch of frames on the server) and writes `wbuf` with the [write step](super::outbound).

use std::time::Instant;

use bytes::{Bytes, BytesMut};
use tokio_util::codec::Decoder;

use crate::frame::{FrameCodec, FrameError};
use crate::liveness::{
    Action, Beat, CloseReason, Heartbeat, Liveness, LivenessConfig, PingConfig, Verdict,
};

/// The next whole frame in `rbuf`, removed from it; `Ok(None)` when more bytes are needed.
/// `eof`: the peer closed its side, so the codec's end-of-stream rule applies (a partial
/// frame is then an error, and `eof` framing yields its one frame).
///
/// # Errors
/// The codec's [`FrameError`]; the codec stays failed afterwards (no resync by guessing).
pub(crate) fn decode(
    codec: &mut FrameCodec,
    rbuf: &mut BytesMut,
    eof: bool,
) -> Result<Option<Bytes>, FrameError> {
    if eof {
        codec.decode_eof(rbuf)
    } else {
        codec.decode(rbuf)
    }
}

/// A client connection's liveness state at `now`: pinging per `ping` (none: never), no idle
/// or slow-frame checks (a client's reply deadlines do that job), and the peer's pings
/// answered only when the link has heartbeat frames to answer with.
#[cfg_attr(
    not(feature = "client"),
    allow(dead_code, reason = "only the clients use it")
)]
pub(crate) fn client_liveness(
    ping: Option<PingConfig>,
    heartbeat: Option<&dyn Heartbeat>,
    now: Instant,
) -> Liveness {
    let mut live = Liveness::new(
        LivenessConfig {
            ping,
            ..LivenessConfig::default()
        },
        now,
    );
    live.set_answer_pings(heartbeat.is_some());
    live
}

/// What [`Step::inbound`] did with a frame.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Inbound {
    /// An application frame: hand it to the handler, or match it to a request.
    Data(Bytes),
    /// A heartbeat taken as the pong to one of our pings (it proves the peer answers).
    Pong,
    /// A ping from the peer: its pong is now at the end of the write buffer.
    PongQueued {
        /// See [`Inbound::came_instead_of_reply`].
        stray: bool,
    },
    /// A heartbeat swallowed unanswered: a pong to no ping of ours, a ping while answering is
    /// off, or a same-bytes heartbeat the storm guard held back.
    Absorbed {
        /// See [`Inbound::came_instead_of_reply`].
        stray: bool,
    },
}

impl Inbound {
    /// Whether this was a same-bytes heartbeat ([`Beat::Either`]) that was not our pong and
    /// came while a reply was awaited: the peer's ping that crossed the request, or a peer
    /// that replies with the heartbeat frame (a misconfigured link). A request that then
    /// times out says heartbeats came instead of its reply.
    #[cfg_attr(
        not(feature = "client"),
        allow(dead_code, reason = "only the clients use it")
    )]
    pub(crate) fn came_instead_of_reply(&self) -> bool {
        matches!(
            self,
            Inbound::PongQueued { stray: true } | Inbound::Absorbed { stray: true }
        )
    }
}

/// What [`Step::timer`] found due.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Tick {
    /// Keep going; this many pings were encoded into the write buffer (often 0).
    Pings(u32),
    /// Liveness gave up on the peer: close the connection.
    Close(CloseReason),
}

/// One connection's state as a pipeline step needs it, borrowed for that step: the link's
/// heartbeat frames, its liveness state machine, its codec (to encode pongs and pings) and
/// its write buffer. Build it from the connection's fields where a step runs; it costs
/// nothing to build.
#[derive(Debug)]
pub(crate) struct Step<'a> {
    /// The link's heartbeat frames; `None`: every frame is data and no ping is sent.
    pub(crate) heartbeat: Option<&'a dyn Heartbeat>,
    /// The connection's liveness state.
    pub(crate) live: &'a mut Liveness,
    /// Encodes the pongs and pings.
    pub(crate) codec: &'a FrameCodec,
    /// Where pongs and pings are appended, for the caller to write.
    pub(crate) wbuf: &'a mut BytesMut,
}

impl Step<'_> {
    /// Runs one decoded `frame` that arrived at `now` through heartbeat classification and
    /// liveness; `awaiting` says a request of ours awaits its reply (a server passes `false`;
    /// see [`Liveness::on_frame_awaiting`] for the storm guard it selects).
    ///
    /// When liveness says answer, the pong is appended to `wbuf`; the caller writes it and
    /// then tells liveness with [`Liveness::on_write`] (the storm guard counts from there).
    ///
    /// # Errors
    /// The pong cannot be framed ([`FrameError::is_unencodable`]); `wbuf` is then unchanged
    /// and the connection should close.
    pub(crate) fn inbound(
        &mut self,
        frame: Bytes,
        now: Instant,
        awaiting: bool,
    ) -> Result<Inbound, FrameError> {
        let beat = self.heartbeat.and_then(|h| h.classify(&frame));
        let unanswered = self.live.unanswered();
        // R3: a same-bytes heartbeat that is not our pong, while a reply is awaited.
        let stray = awaiting && beat == Some(Beat::Either) && unanswered == 0;
        let verdict = self.live.on_frame_awaiting(now, beat, awaiting);
        match (verdict, self.heartbeat) {
            (Verdict::Deliver, _) => Ok(Inbound::Data(frame)),
            (Verdict::Answer, Some(h)) => {
                self.codec.encode_to(&h.pong(&frame), self.wbuf)?;
                Ok(Inbound::PongQueued { stray })
            }
            (Verdict::Absorb, _) if self.live.unanswered() < unanswered => Ok(Inbound::Pong),
            // `Answer` without heartbeat frames cannot happen: without them no frame is a
            // heartbeat. Swallowing is the safe reading.
            (Verdict::Absorb | Verdict::Answer, _) => Ok(Inbound::Absorbed { stray }),
        }
    }

    /// Runs the liveness clock at `now`: every ping due is appended to `wbuf`; the caller
    /// writes them (and calls [`Liveness::on_write`]). Without heartbeat frames a due ping is
    /// not sent (liveness still counts it, so silence ends in
    /// [`CloseReason::HeartbeatTimeout`]).
    ///
    /// # Errors
    /// A ping cannot be framed ([`FrameError::is_unencodable`]).
    pub(crate) fn timer(&mut self, now: Instant) -> Result<Tick, FrameError> {
        let mut pings = 0u32;
        loop {
            match self.live.poll(now) {
                Action::Wait => return Ok(Tick::Pings(pings)),
                Action::Close(reason) => return Ok(Tick::Close(reason)),
                Action::SendPing(seq) => {
                    if let Some(h) = self.heartbeat {
                        self.codec.encode_to(&h.ping(seq), self.wbuf)?;
                        pings = pings.saturating_add(1);
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::time::Duration;

    use super::*;
    use crate::frame::FramingSpec;
    use crate::liveness::{EmptyHeartbeat, FixedHeartbeat};

    const SEC: Duration = Duration::from_secs(1);

    /// A connection's parts, owned, for a test to borrow as a [`Step`].
    struct Parts {
        heartbeat: Option<Arc<dyn Heartbeat>>,
        live: Liveness,
        codec: FrameCodec,
        wbuf: BytesMut,
    }

    impl Parts {
        fn new(spec: &str, heartbeat: Option<Arc<dyn Heartbeat>>, ping: bool, t0: Instant) -> Self {
            let cfg = LivenessConfig {
                ping: ping.then_some(PingConfig {
                    interval: 5 * SEC,
                    timeout: SEC,
                    misses: 2,
                }),
                ..LivenessConfig::default()
            };
            Parts {
                heartbeat,
                live: Liveness::new(cfg, t0),
                codec: FrameCodec::new(spec.parse::<FramingSpec>().unwrap()),
                wbuf: BytesMut::new(),
            }
        }

        fn step(&mut self) -> Step<'_> {
            Step {
                heartbeat: self.heartbeat.as_deref(),
                live: &mut self.live,
                codec: &self.codec,
                wbuf: &mut self.wbuf,
            }
        }

        /// `frame` through the inbound step, and what it queued (taken out of `wbuf`).
        fn feed(
            &mut self,
            frame: &'static [u8],
            now: Instant,
            awaiting: bool,
        ) -> (Inbound, Vec<u8>) {
            let got = self
                .step()
                .inbound(Bytes::from_static(frame), now, awaiting)
                .unwrap();
            (got, self.wbuf.split().to_vec())
        }
    }

    fn empty() -> Option<Arc<dyn Heartbeat>> {
        Some(Arc::new(EmptyHeartbeat))
    }

    #[test]
    fn decode_takes_whole_frames_and_applies_eof() {
        let mut codec = FrameCodec::new("len:ascii:2".parse().unwrap());
        let mut rbuf = BytesMut::from(&b"02hi0"[..]);
        assert_eq!(decode(&mut codec, &mut rbuf, false).unwrap().unwrap(), "hi");
        assert_eq!(decode(&mut codec, &mut rbuf, false).unwrap(), None);
        // The peer closed inside a frame: an error, not "need more".
        assert!(
            decode(&mut codec, &mut rbuf, true)
                .unwrap_err()
                .is_truncated()
        );
    }

    #[test]
    fn data_frames_are_delivered_and_queue_nothing() {
        let t0 = Instant::now();
        let mut p = Parts::new("len:ascii:4", empty(), false, t0);
        assert_eq!(
            p.feed(b"0800", t0, false),
            (Inbound::Data(Bytes::from_static(b"0800")), vec![])
        );
    }

    #[test]
    fn without_heartbeat_frames_the_empty_frame_is_data() {
        let t0 = Instant::now();
        let mut p = Parts::new("len:ascii:4", None, false, t0);
        assert_eq!(
            p.feed(b"", t0, false),
            (Inbound::Data(Bytes::new()), vec![])
        );
    }

    #[test]
    fn a_ping_is_answered_with_a_pong_in_wbuf() {
        let t0 = Instant::now();
        let mut p = Parts::new("len:ascii:4", empty(), false, t0);
        assert_eq!(
            p.feed(b"", t0, false),
            (Inbound::PongQueued { stray: false }, b"0000".to_vec())
        );
        let hb: Option<Arc<dyn Heartbeat>> = Some(Arc::new(FixedHeartbeat::new("PING", "PONG")));
        let mut p = Parts::new("line", hb, false, t0);
        assert_eq!(
            p.feed(b"PING", t0, false),
            (Inbound::PongQueued { stray: false }, b"PONG\n".to_vec())
        );
    }

    #[test]
    fn the_heartbeat_after_our_ping_is_our_pong_and_is_not_answered() {
        let t0 = Instant::now();
        let mut p = Parts::new("len:ascii:4", empty(), true, t0);
        assert_eq!(p.step().timer(t0 + 5 * SEC).unwrap(), Tick::Pings(1));
        assert_eq!(p.wbuf.split().to_vec(), b"0000");
        assert_eq!(p.feed(b"", t0 + 5 * SEC, true), (Inbound::Pong, vec![]));
        assert_eq!(p.live.unanswered(), 0);
    }

    #[test]
    fn a_stray_pong_is_absorbed() {
        let t0 = Instant::now();
        let hb: Option<Arc<dyn Heartbeat>> = Some(Arc::new(FixedHeartbeat::new("PING", "PONG")));
        let mut p = Parts::new("line", hb, false, t0);
        assert_eq!(
            p.feed(b"PONG", t0, false),
            (Inbound::Absorbed { stray: false }, vec![])
        );
    }

    #[test]
    fn answering_off_absorbs_pings() {
        let t0 = Instant::now();
        let mut p = Parts::new("len:ascii:4", empty(), false, t0);
        p.live.set_answer_pings(false);
        assert_eq!(
            p.feed(b"", t0, false),
            (Inbound::Absorbed { stray: false }, vec![])
        );
    }

    #[test]
    fn heartbeats_instead_of_a_reply_are_flagged_and_rate_limited() {
        let t0 = Instant::now();
        let mut p = Parts::new("len:ascii:4", empty(), false, t0);
        let (first, pong) = p.feed(b"", t0, true);
        assert_eq!(first, Inbound::PongQueued { stray: true });
        assert!(first.came_instead_of_reply());
        assert_eq!(pong, b"0000");
        // The pong was written; a heartbeat right after it is held back by the storm guard.
        p.live.on_write(t0);
        let (second, queued) = p.feed(b"", t0 + Duration::from_millis(10), true);
        assert_eq!(second, Inbound::Absorbed { stray: true });
        assert!(second.came_instead_of_reply());
        assert!(queued.is_empty());
        // Not awaiting a reply: the same frame is not flagged.
        let (third, _) = p.feed(b"", t0 + 2 * SEC, false);
        assert!(!third.came_instead_of_reply());
    }

    #[test]
    fn an_unencodable_pong_is_an_error_and_leaves_wbuf_unchanged() {
        let t0 = Instant::now();
        // `fixed:4` cannot carry a 2-byte pong.
        let hb: Option<Arc<dyn Heartbeat>> = Some(Arc::new(FixedHeartbeat::new("PING", "PO")));
        let mut p = Parts::new("fixed:4", hb, false, t0);
        let err = p
            .step()
            .inbound(Bytes::from_static(b"PING"), t0, false)
            .unwrap_err();
        assert!(err.is_unencodable());
        assert!(p.wbuf.is_empty());
    }

    #[test]
    fn timer_waits_pings_then_closes() {
        let t0 = Instant::now();
        let mut p = Parts::new("len:be:2", empty(), true, t0);
        assert_eq!(p.step().timer(t0).unwrap(), Tick::Pings(0));
        assert!(p.wbuf.is_empty());
        assert_eq!(p.step().timer(t0 + 5 * SEC).unwrap(), Tick::Pings(1));
        assert_eq!(p.wbuf.split().to_vec(), b"\x00\x00");
        // Unanswered: a miss at +6 s, the second ping at +10 s, the second miss closes.
        assert_eq!(p.step().timer(t0 + 6 * SEC).unwrap(), Tick::Pings(0));
        assert_eq!(p.step().timer(t0 + 11 * SEC).unwrap(), Tick::Pings(1));
        assert_eq!(
            p.step().timer(t0 + 12 * SEC).unwrap(),
            Tick::Close(CloseReason::HeartbeatTimeout)
        );
    }

    #[test]
    fn timer_without_heartbeat_frames_sends_nothing_but_still_closes() {
        let t0 = Instant::now();
        let mut p = Parts::new("fixed:4", None, true, t0);
        assert_eq!(p.step().timer(t0 + 5 * SEC).unwrap(), Tick::Pings(0));
        assert!(p.wbuf.is_empty());
        assert_eq!(p.step().timer(t0 + 11 * SEC).unwrap(), Tick::Pings(0));
        assert_eq!(
            p.step().timer(t0 + 12 * SEC).unwrap(),
            Tick::Close(CloseReason::HeartbeatTimeout)
        );
    }

    #[test]
    fn a_client_without_heartbeat_frames_answers_no_ping() {
        let t0 = Instant::now();
        let ping = Some(PingConfig::default());
        let live = client_liveness(ping, None, t0);
        assert_eq!(live.config().ping, ping);
        assert_eq!(live.config().read_idle, None);
        let mut p = Parts::new("len:ascii:4", empty(), false, t0);
        p.live = client_liveness(None, None, t0);
        assert_eq!(
            p.feed(b"", t0, false),
            (Inbound::Absorbed { stray: false }, vec![])
        );
        p.live = client_liveness(None, Some(&EmptyHeartbeat), t0);
        assert_eq!(
            p.feed(b"", t0, false).0,
            Inbound::PongQueued { stray: false }
        );
    }

    #[test]
    fn an_unencodable_ping_is_an_error() {
        let t0 = Instant::now();
        let hb: Option<Arc<dyn Heartbeat>> = Some(Arc::new(FixedHeartbeat::new("P", "PONG")));
        let mut p = Parts::new("fixed:4", hb, true, t0);
        assert!(p.step().timer(t0 + 5 * SEC).unwrap_err().is_unencodable());
    }
}
