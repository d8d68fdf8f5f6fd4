//! One fixture per row of the state table, with time passed in.

use super::*;

const S: Duration = Duration::from_secs(1);

fn ping_cfg(interval: u64, timeout: u64, misses: u32) -> LivenessConfig {
    LivenessConfig {
        ping: Some(PingConfig {
            interval: S * interval as u32,
            timeout: S * timeout as u32,
            misses,
        }),
        ..Default::default()
    }
}

#[test]
fn idle_nothing_outstanding_heartbeat_is_answered() {
    let t0 = Instant::now();
    let mut l = Liveness::new(ping_cfg(10, 2, 3), t0);
    assert_eq!(l.on_frame(t0 + S, Some(Beat::Either)), Verdict::Answer);
    assert_eq!(l.on_frame(t0 + S, Some(Beat::Ping)), Verdict::Answer);
    assert_eq!(l.on_frame(t0 + S, None), Verdict::Deliver);
    // A pong we did not ask for is swallowed, never answered.
    assert_eq!(l.on_frame(t0 + S, Some(Beat::Pong)), Verdict::Absorb);
}

#[test]
fn answering_can_be_turned_off() {
    let t0 = Instant::now();
    let mut l = Liveness::new(LivenessConfig::default(), t0);
    l.set_answer_pings(false);
    assert_eq!(l.on_frame(t0, Some(Beat::Either)), Verdict::Absorb);
}

#[test]
fn outstanding_ping_takes_next_heartbeat_as_pong() {
    let t0 = Instant::now();
    let mut l = Liveness::new(ping_cfg(10, 2, 3), t0);
    assert_eq!(l.poll(t0 + 10 * S), Action::SendPing(1));
    // The peer's own ping crosses ours: it is our pong, not answered.
    assert_eq!(l.on_frame(t0 + 10 * S, Some(Beat::Either)), Verdict::Absorb);
    // Next heartbeat with nothing outstanding is a ping again.
    assert_eq!(l.on_frame(t0 + 11 * S, Some(Beat::Either)), Verdict::Answer);
}

#[test]
fn two_pinging_peers_do_not_storm() {
    // Simulate two peers wired back to back for 100 intervals: every frame one sends the other
    // receives at once. Count heartbeat frames: at most 2 per interval (one ping, one pong).
    let t0 = Instant::now();
    let mut a = Liveness::new(ping_cfg(10, 3, 3), t0);
    let mut b = Liveness::new(ping_cfg(7, 3, 3), t0);
    fn exchange(x: &mut Liveness, y: &mut Liveness, now: Instant) -> u32 {
        // x's timers; deliver what x sends to y and y's answers back to x, until quiet.
        let mut frames = 0;
        let mut to_y = match x.poll(now) {
            Action::SendPing(_) => true,
            Action::Wait => return 0,
            Action::Close(r) => panic!("closed: {r:?}"),
        };
        loop {
            frames += 1;
            assert!(frames < 10, "heartbeats bounce");
            let receiver = if to_y { &mut *y } else { &mut *x };
            if receiver.on_frame(now, Some(Beat::Either)) != Verdict::Answer {
                return frames;
            }
            to_y = !to_y;
        }
    }
    let mut frames = 0u32;
    let mut now = t0;
    for _ in 0..1000 {
        now += S;
        frames += exchange(&mut a, &mut b, now);
        frames += exchange(&mut b, &mut a, now);
    }
    // 1000 s: a pings every 10 s, b every 7 s, each answered once: well under 2*(100+143).
    assert!(frames <= 2 * (100 + 143), "{frames} heartbeat frames");
    assert!(frames >= 100, "{frames}: heartbeats should still flow");
}

#[test]
fn late_pong_after_timeout_is_not_answered() {
    let t0 = Instant::now();
    let mut l = Liveness::new(ping_cfg(10, 2, 5), t0);
    assert_eq!(l.poll(t0 + 10 * S), Action::SendPing(1));
    assert_eq!(l.poll(t0 + 12 * S), Action::Wait); // miss 1
    assert_eq!(l.misses(), 1);
    // The pong arrives late: still a pong (a ping of ours is unmatched), so no answer.
    assert_eq!(l.on_frame(t0 + 13 * S, Some(Beat::Either)), Verdict::Absorb);
    assert_eq!(l.misses(), 0);
}

#[test]
fn dead_peer_detected_within_interval_times_misses_plus_timeout() {
    let t0 = Instant::now();
    let mut l = Liveness::new(ping_cfg(5, 2, 3), t0);
    let mut now = t0;
    let closed_at = loop {
        let Some(d) = l.next_deadline() else {
            panic!("no deadline")
        };
        assert!(d >= now, "deadline in the past");
        now = d;
        match l.poll(now) {
            Action::Close(r) => {
                assert_eq!(r, CloseReason::HeartbeatTimeout);
                break now;
            }
            Action::SendPing(_) | Action::Wait => {}
        }
    };
    assert_eq!(closed_at - t0, 5 * S * 3 + 2 * S);
}

#[test]
fn data_frames_prove_life_but_do_not_clear_the_ping() {
    let t0 = Instant::now();
    let mut l = Liveness::new(ping_cfg(5, 2, 1), t0);
    assert_eq!(l.poll(t0 + 5 * S), Action::SendPing(1));
    assert_eq!(l.on_frame(t0 + 6 * S, None), Verdict::Deliver);
    // Timeout passes, but data arrived after the ping: no miss, no close.
    assert_eq!(l.poll(t0 + 7 * S), Action::Wait);
    // The pong, late: absorbed.
    assert_eq!(l.on_frame(t0 + 8 * S, Some(Beat::Either)), Verdict::Absorb);
}

#[test]
fn read_write_any_idle() {
    let t0 = Instant::now();
    let cfg = LivenessConfig {
        read_idle: Some(10 * S),
        write_idle: Some(20 * S),
        any_idle: Some(5 * S),
        ..Default::default()
    };
    let mut l = Liveness::new(cfg, t0);
    assert_eq!(l.next_deadline(), Some(t0 + 5 * S));
    assert_eq!(l.poll(t0 + 4 * S), Action::Wait);
    assert_eq!(l.poll(t0 + 5 * S), Action::Close(CloseReason::AnyIdle));

    let cfg = LivenessConfig {
        read_idle: Some(10 * S),
        write_idle: Some(20 * S),
        ..Default::default()
    };
    let mut l = Liveness::new(cfg, t0);
    l.on_frame(t0 + 8 * S, None);
    assert_eq!(l.poll(t0 + 17 * S), Action::Wait);
    assert_eq!(l.poll(t0 + 18 * S), Action::Close(CloseReason::ReadIdle));
    let mut l = Liveness::new(cfg, t0);
    for i in 1..=3 {
        l.on_frame(t0 + 9 * S * i, None);
    }
    assert_eq!(l.poll(t0 + 20 * S), Action::Close(CloseReason::WriteIdle));
}

#[test]
fn slow_frame_is_cut_off() {
    let t0 = Instant::now();
    let cfg = LivenessConfig {
        frame_timeout: Some(3 * S),
        ..Default::default()
    };
    let mut l = Liveness::new(cfg, t0);
    assert_eq!(l.next_deadline(), None);
    l.on_read(t0 + S, true, true);
    // Trickling bytes do not move the deadline.
    l.on_read(t0 + 2 * S, true, false);
    l.on_read(t0 + 3 * S, true, false);
    assert_eq!(l.next_deadline(), Some(t0 + 4 * S));
    assert_eq!(l.poll(t0 + 4 * S), Action::Close(CloseReason::FrameTimeout));
    // A completed frame clears it; the next partial one starts its own clock.
    let mut l = Liveness::new(cfg, t0);
    l.on_read(t0 + S, true, true);
    l.on_read(t0 + 3 * S, true, true);
    assert_eq!(l.poll(t0 + 5 * S), Action::Wait);
    l.on_read(t0 + 5 * S, false, false);
    assert_eq!(l.next_deadline(), None);
}

// Issue 9.d: where ping and pong are different messages (CMPP ACTIVE_TEST, SMPP
// enquire_link), every ping gets its pong and only a pong satisfies our own ping.

#[test]
fn distinct_ping_crossing_ours_is_still_answered() {
    let t0 = Instant::now();
    let mut l = Liveness::new(ping_cfg(10, 2, 3), t0);
    assert_eq!(l.poll(t0 + 10 * S), Action::SendPing(1));
    // The peer's ping crosses ours: it is a ping, it gets a pong, ours stays outstanding.
    assert_eq!(l.on_frame(t0 + 10 * S, Some(Beat::Ping)), Verdict::Answer);
    assert_eq!(l.unanswered(), 1);
    // Our pong arrives: satisfied.
    assert_eq!(l.on_frame(t0 + 10 * S, Some(Beat::Pong)), Verdict::Absorb);
    assert_eq!(l.unanswered(), 0);
}

#[test]
fn data_covering_a_ping_does_not_absorb_the_peers_next_distinct_ping() {
    let t0 = Instant::now();
    let mut l = Liveness::new(ping_cfg(10, 2, 3), t0);
    assert_eq!(l.poll(t0 + 10 * S), Action::SendPing(1));
    // Data instead of the pong: the peer is alive, no miss is counted.
    assert_eq!(l.on_frame(t0 + 11 * S, None), Verdict::Deliver);
    assert_eq!(l.poll(t0 + 12 * S), Action::Wait);
    assert_eq!(l.misses(), 0);
    // The peer's own ping later is answered, not taken as our late pong.
    assert_eq!(l.on_frame(t0 + 15 * S, Some(Beat::Ping)), Verdict::Answer);
    // A late pong is swallowed and never answered.
    assert_eq!(l.on_frame(t0 + 16 * S, Some(Beat::Pong)), Verdict::Absorb);
    assert_eq!(l.on_frame(t0 + 16 * S, Some(Beat::Pong)), Verdict::Absorb);
}

#[test]
fn distinct_heartbeats_between_two_pinging_peers_answer_every_ping() {
    // Two peers wired back to back, both pinging with distinct ping/pong, their pings
    // crossing every time: each ping gets exactly one pong, no pong is ever answered.
    let t0 = Instant::now();
    let mut a = Liveness::new(ping_cfg(10, 3, 3), t0);
    let mut b = Liveness::new(ping_cfg(10, 3, 3), t0);
    let (mut pings, mut pongs) = (0, 0);
    for i in 1..=50u32 {
        let now = t0 + 10 * S * i;
        let pa = matches!(a.poll(now), Action::SendPing(_));
        let pb = matches!(b.poll(now), Action::SendPing(_));
        assert!(pa && pb, "both ping every interval (round {i})");
        pings += 2;
        // Crossing pings: each is answered.
        assert_eq!(a.on_frame(now, Some(Beat::Ping)), Verdict::Answer);
        assert_eq!(b.on_frame(now, Some(Beat::Ping)), Verdict::Answer);
        // The pongs: absorbed, never answered.
        assert_eq!(a.on_frame(now, Some(Beat::Pong)), Verdict::Absorb);
        assert_eq!(b.on_frame(now, Some(Beat::Pong)), Verdict::Absorb);
        pongs += 2;
        assert_eq!((a.unanswered(), b.unanswered()), (0, 0));
        assert_eq!((a.misses(), b.misses()), (0, 0));
    }
    assert_eq!(pings, pongs);
}

// Issue 9.2: a side awaiting a reply answers same-bytes heartbeats at most once per
// PONG_GAP_AWAITING, so a peer that replies with the heartbeat frame cannot start a storm.

/// Feeds a same-bytes heartbeat at `now` and, when it is answered, writes the pong at once
/// (as the glue does): true if answered.
fn answer(l: &mut Liveness, now: Instant, awaiting: bool) -> bool {
    let v = l.on_frame_awaiting(now, Some(Beat::Either), awaiting);
    if v == Verdict::Answer {
        l.on_write(now);
    }
    v == Verdict::Answer
}

#[test]
fn awaiting_side_answers_ambiguous_heartbeats_at_most_once_per_gap() {
    let t0 = Instant::now();
    let mut l = Liveness::new(LivenessConfig::default(), t0);
    assert!(answer(&mut l, t0, true));
    let mut answered = 1;
    for i in 1..1000u32 {
        if answer(&mut l, t0 + Duration::from_micros(50) * i, true) {
            answered += 1;
        }
    }
    assert_eq!(answered, 1, "a storm would answer every one");
    // After the gap, a real ping is answered again.
    assert!(answer(&mut l, t0 + PONG_GAP_AWAITING + S, true));
    // Not awaiting: answered at most once per PONG_GAP.
    let now = t0 + 2 * PONG_GAP_AWAITING + S;
    assert!(answer(&mut l, now, false));
    assert!(!answer(&mut l, now + Duration::from_micros(50), false));
    assert!(answer(&mut l, now + PONG_GAP, false));
    // Distinct pings are unambiguous: always answered.
    let later = now + PONG_GAP;
    assert_eq!(
        l.on_frame_awaiting(later, Some(Beat::Ping), true),
        Verdict::Answer
    );
    assert_eq!(
        l.on_frame_awaiting(later, Some(Beat::Ping), false),
        Verdict::Answer
    );
}

#[test]
fn pings_read_in_one_batch_are_all_answered() {
    // The peer's pings queued behind a slow request and are read together: none of them can
    // be an answer to a pong of ours (none was written since), so each gets its pong.
    let t0 = Instant::now();
    let mut l = Liveness::new(LivenessConfig::default(), t0);
    assert!(answer(&mut l, t0, false));
    let batch = t0 + 2 * S;
    for _ in 0..3 {
        assert_eq!(l.on_frame(batch, Some(Beat::Either)), Verdict::Answer);
    }
    l.on_write(batch);
    // An echo of those pongs, one round trip later, is not answered.
    assert_eq!(
        l.on_frame(batch + Duration::from_micros(50), Some(Beat::Either)),
        Verdict::Absorb
    );
}

#[test]
fn a_peer_that_answers_every_heartbeat_gets_at_most_one_pong_per_gap() {
    // jPOS issue #775: the peer answers our pongs. Every heartbeat it sends comes one round
    // trip (50 µs here) after our previous frame; for 2 s of that, count our answers.
    let t0 = Instant::now();
    let mut l = Liveness::new(LivenessConfig::default(), t0);
    let rtt = Duration::from_micros(50);
    let mut now = t0;
    let mut answered = 0u32;
    while now < t0 + 2 * S {
        if answer(&mut l, now, false) {
            answered += 1;
        }
        now += rtt;
    }
    let cap = u32::try_from((2 * S).as_millis() / PONG_GAP.as_millis()).unwrap() + 1;
    assert!(answered <= cap, "{answered} pongs in 2 s (cap {cap})");
    assert!(answered >= 2, "pings must still be answered");
}

#[test]
fn zero_durations_built_in_code_do_not_loop() {
    let t0 = Instant::now();
    let cfg = LivenessConfig {
        ping: Some(PingConfig {
            interval: Duration::ZERO,
            timeout: Duration::ZERO,
            misses: 0,
        }),
        ..Default::default()
    };
    let mut l = Liveness::new(cfg, t0);
    // Data arrives at the same instant as every ping: the loop must still end.
    let mut actions = 0;
    while l.poll(t0) != Action::Wait {
        l.on_frame(t0, None);
        actions += 1;
        assert!(actions < 10, "poll kept asking at one instant");
    }
}

#[test]
fn huge_durations_saturate_instead_of_panicking() {
    let t0 = Instant::now();
    let cfg = LivenessConfig {
        read_idle: Some(Duration::MAX),
        write_idle: Some(Duration::MAX),
        any_idle: Some(Duration::MAX),
        frame_timeout: Some(Duration::MAX),
        ping: Some(PingConfig {
            interval: Duration::MAX,
            timeout: Duration::MAX,
            misses: u32::MAX,
        }),
    };
    let mut l = Liveness::new(cfg, t0);
    l.on_read(t0, true, true);
    assert!(l.next_deadline().is_some());
    assert_eq!(l.poll(t0 + 1000 * S), Action::Wait);
}

#[test]
fn stamps_keep_instants_exactly_and_none_apart() {
    let now = Instant::now();
    let year = Duration::from_secs(365 * 86_400);
    let mut instants = vec![
        now,
        now + Duration::from_nanos(1),
        now + Duration::from_secs(86_400 * 30),
        now + 200 * year,
    ];
    // Years before now, where the platform's instants reach that far back.
    instants.extend(
        [Duration::from_secs(3_600), 2 * year, 50 * year]
            .map(|d| now.checked_sub(d))
            .into_iter()
            .flatten(),
    );
    for t in instants {
        let s = Stamp::at(t);
        assert!(!s.is_none());
        assert_eq!(s.get(), Some(t), "{t:?}");
    }
    assert_eq!(Stamp::NONE.get(), None);
    assert!(Stamp::NONE.is_none());
    assert_eq!(
        std::mem::size_of::<Stamp>(),
        8,
        "the point of Stamp is its size"
    );
}

/// The state machine takes its time from the caller: a caller whose clock is years from the
/// process's (a simulation, a test) gets the same deadlines as one on the real clock.
#[test]
fn deadlines_are_exact_for_instants_years_away() {
    let year = Duration::from_secs(365 * 86_400);
    let now = Instant::now();
    for t0 in [now.checked_sub(2 * year), Some(now + 3 * year)]
        .into_iter()
        .flatten()
    {
        let cfg = LivenessConfig {
            frame_timeout: Some(Duration::from_secs(30)),
            read_idle: None,
            ..Default::default()
        };
        let mut l = Liveness::new(cfg, t0);
        l.on_read(t0, true, true);
        assert_eq!(l.next_deadline(), Some(t0 + Duration::from_secs(30)));
        assert_eq!(
            l.poll(t0 + Duration::from_secs(31)),
            Action::Close(CloseReason::FrameTimeout)
        );

        let cfg = LivenessConfig {
            ping: Some(PingConfig {
                interval: Duration::from_secs(5),
                timeout: Duration::from_secs(1),
                misses: 1,
            }),
            read_idle: None,
            ..Default::default()
        };
        let mut l = Liveness::new(cfg, t0);
        assert_eq!(l.poll(t0 + Duration::from_secs(5)), Action::SendPing(1));
        assert_eq!(
            l.next_deadline(),
            Some(t0 + Duration::from_secs(6)),
            "the ping's timeout"
        );
        assert_eq!(
            l.poll(t0 + Duration::from_secs(7)),
            Action::Close(CloseReason::HeartbeatTimeout)
        );
    }
}
