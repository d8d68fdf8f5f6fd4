//! Arbitrary text into `HeartbeatSpec::from_str` (the `--heartbeat` flag), then a `Liveness`
//! built from what it accepts, driven through a fixed script of events.
//!
//! Checks:
//! - parsing never panics; an accepted spec prints in a form that parses back to the same
//!   spec;
//! - its ping config has an interval and a timeout in `1ns..=MAX_DURATION` and at least one
//!   miss; its heartbeat recogniser takes our own ping for a ping and our own pong for a pong;
//! - the `Liveness`, polled at `Instant::now()`, 1 s and 400 days later (with a frame of every
//!   `Beat` kind arriving at each), never panics; at one instant `poll` reaches `Wait` (or
//!   `Close`) within `MAX_POLLS` calls, so the glue never sends pings in a loop; after `Wait`
//!   the next deadline lies in the future, so the glue never spins on a due timer;
//! - a silent peer, driven by `next_deadline` alone, is closed for `HeartbeatTimeout` after
//!   exactly `misses` pings, no later than the schedule the config implies.

#![no_main]

use std::time::{Duration, Instant};

use keepwire::liveness::{
    Action, Beat, CloseReason, HeartbeatSpec, Liveness, LivenessConfig, PingConfig,
};
use keepwire::socket::MAX_DURATION;
use libfuzzer_sys::fuzz_target;

/// One ping at most is due at an instant (it starts a timeout of at least 1 ms), so a second
/// call gives `Wait`; a third would mean a loop.
const MAX_POLLS: usize = 3;
/// Misses up to which the silent-peer walk runs (each miss is two deadlines).
const WALK_MISSES: u32 = 16;

/// Polls at `now` until `Wait` or `Close`; panics if that takes more than `MAX_POLLS` calls.
/// Returns the close reason, if any, and the pings sent.
fn settle(live: &mut Liveness, now: Instant, what: &str) -> (Option<CloseReason>, u32) {
    let mut pings = 0;
    for _ in 0..MAX_POLLS {
        match live.poll(now) {
            Action::Wait => {
                if let Some(d) = live.next_deadline() {
                    assert!(
                        d > now,
                        "{what}: poll says Wait but the next deadline is already due"
                    );
                }
                return (None, pings);
            }
            Action::Close(r) => return (Some(r), pings),
            Action::SendPing(_) => {
                pings += 1;
                live.on_write(now);
            }
        }
    }
    panic!("{what}: poll at one instant did not reach Wait in {MAX_POLLS} calls");
}

/// A peer that never answers, driven by `next_deadline` as the server and clients do.
fn silent_peer(p: PingConfig, t0: Instant, what: &str) {
    if p.misses > WALK_MISSES {
        return;
    }
    let cfg = LivenessConfig {
        ping: Some(p),
        ..Default::default()
    };
    let mut live = Liveness::new(cfg, t0);
    // The state machine clamps interval and timeout to at least 1 ms.
    let ms = Duration::from_millis(1);
    let (interval, timeout) = (p.interval.max(ms), p.timeout.max(ms));
    // First ping after `interval`; each miss is counted at its ping's timeout, and the next
    // ping goes out `interval` after the previous one or at that timeout, whichever is later.
    let latest = interval + interval.max(timeout) * (p.misses - 1) + timeout;
    let mut pings = 0;
    for _ in 0..=2 * WALK_MISSES + 2 {
        let t = live
            .next_deadline()
            .unwrap_or_else(|| panic!("{what}: pinging but no deadline"));
        let (closed, sent) = settle(&mut live, t, what);
        pings += sent;
        if let Some(r) = closed {
            assert_eq!(r, CloseReason::HeartbeatTimeout, "{what}");
            assert_eq!(pings, p.misses, "{what}: pings sent before the close");
            let took = t.duration_since(t0);
            assert!(
                took <= latest,
                "{what}: silent peer closed after {took:?}, expected by {latest:?}"
            );
            return;
        }
    }
    panic!("{what}: a silent peer was never closed");
}

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let Ok(spec) = text.parse::<HeartbeatSpec>() else {
        return;
    };
    let shown = spec.to_string();
    let back = shown
        .parse::<HeartbeatSpec>()
        .unwrap_or_else(|e| panic!("{text:?} displays as {shown:?}, which does not parse: {e}"));
    assert_eq!(back, spec, "{text:?} displays as {shown:?}");

    if let Some(p) = spec.ping_config() {
        assert!(
            !p.interval.is_zero() && p.interval <= MAX_DURATION,
            "{text:?}: interval {:?}",
            p.interval
        );
        assert!(
            !p.timeout.is_zero() && p.timeout <= MAX_DURATION,
            "{text:?}: timeout {:?}",
            p.timeout
        );
        assert!(p.misses >= 1, "{text:?}: misses 0");
    }
    let hb = spec.heartbeat();
    assert_eq!(
        hb.is_none(),
        spec.is_off(),
        "{text:?}: a recogniser iff not off"
    );
    if let Some(hb) = &hb {
        let ping = hb.ping(1);
        assert!(
            matches!(hb.classify(&ping), Some(Beat::Ping | Beat::Either)),
            "{text:?}: our own ping is not a ping"
        );
        let pong = hb.pong(&ping);
        assert!(
            matches!(hb.classify(&pong), Some(Beat::Pong | Beat::Either)),
            "{text:?}: our own pong is not a pong"
        );
    }

    let t0 = Instant::now();
    let cfg = LivenessConfig {
        ping: spec.ping_config(),
        ..Default::default()
    };
    let mut live = Liveness::new(cfg, t0);
    for (t, when) in [
        (t0, "now"),
        (t0 + Duration::from_secs(1), "+1s"),
        (t0 + Duration::from_secs(400 * 86_400), "+400d"),
    ] {
        let what = format!("{text:?} at {when}");
        if settle(&mut live, t, &what).0.is_some() {
            return;
        }
        for beat in [None, Some(Beat::Ping), Some(Beat::Pong), Some(Beat::Either)] {
            let _ = live.on_frame(t, beat);
            let _ = live.next_deadline();
            if settle(&mut live, t, &what).0.is_some() {
                return;
            }
        }
    }
    if let Some(p) = spec.ping_config() {
        silent_peer(p, t0, text);
    }
});
