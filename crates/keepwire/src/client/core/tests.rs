//! One test per row of the module's tables; no sockets, no runtime, no clock but `t0`.

use super::*;
use crate::client::ByteRange;
use crate::liveness::LivenessConfig;

const S: Duration = Duration::from_secs(1);

fn keyed() -> Matching {
    Matching::Keyed(Arc::new(ByteRange::new(0, 1)))
}

fn session(m: &Matching, max: usize, t0: Instant) -> Session<u32> {
    Session::new(m, max, Liveness::new(LivenessConfig::default(), t0))
}

fn op(frame: &[u8], deadline: Instant) -> Admission<'_> {
    Admission {
        frame,
        reply: true,
        key: None,
        deadline,
    }
}

fn waiter(id: u32, deadline: Instant) -> Waiter<u32> {
    Waiter {
        done: id,
        deadline,
        timeout: S,
    }
}

#[test]
fn queued_past_its_deadline_is_refused_late() {
    let t0 = Instant::now();
    let mut s = session(&Matching::Fifo, 1, t0);
    assert_eq!(
        s.admit(&Matching::Fifo, op(b"a", t0), t0),
        Err(Refusal::Late)
    );
    assert_eq!(s.admit(&Matching::Fifo, op(b"a", t0 + S), t0), Ok(None));
}

#[test]
fn keyed_without_a_key_is_refused() {
    let t0 = Instant::now();
    let m = keyed();
    let mut s = session(&m, 8, t0);
    assert_eq!(s.admit(&m, op(b"", t0 + S), t0), Err(Refusal::NoKey));
    // A one-way op needs no key.
    let one_way = Admission {
        reply: false,
        ..op(b"", t0 + S)
    };
    assert_eq!(s.admit(&m, one_way, t0), Ok(None));
}

#[test]
fn keyed_with_a_key_in_flight_is_refused() {
    let t0 = Instant::now();
    let m = keyed();
    let mut s = session(&m, 8, t0);
    let k = s.admit(&m, op(b"a1", t0 + S), t0).unwrap();
    assert_eq!(k, Some(Key::from(&b"a"[..])));
    s.register(k, waiter(1, t0 + S));
    assert_eq!(
        s.admit(&m, op(b"a2", t0 + S), t0),
        Err(Refusal::KeyInFlight(Key::from(&b"a"[..])))
    );
    // The caller's own key wins over the frame's.
    let mut o = op(b"a3", t0 + S);
    o.key = Some(Key::from(&b"z"[..]));
    assert_eq!(s.admit(&m, o, t0), Ok(Some(Key::from(&b"z"[..]))));
}

#[test]
fn keyed_with_a_tombstoned_key_is_refused_until_its_late_reply() {
    let t0 = Instant::now();
    let m = keyed();
    let mut s = session(&m, 8, t0);
    s.register(Some(Key::from(&b"a"[..])), waiter(1, t0 + S));
    let gone = s.expire_keyed(t0 + S);
    assert_eq!(gone.len(), 1);
    let r = s.admit(&m, op(b"a", t0 + 3 * S), t0 + S);
    assert!(matches!(r, Err(Refusal::KeyTombstoned(_, left)) if left == S));
    // The late reply clears it, and counts as late.
    assert!(matches!(
        s.on_reply(&m, b"a", t0 + S),
        Reply::Unmatched { late: true }
    ));
    assert!(s.delivered());
    assert!(s.admit(&m, op(b"a", t0 + 3 * S), t0 + S).is_ok());
}

#[test]
fn admitted_requests_are_registered_and_limited() {
    let t0 = Instant::now();
    let mut s = session(&Matching::Fifo, 2, t0);
    assert_eq!(s.room(), 2);
    s.register(None, waiter(1, t0 + S));
    s.register(None, waiter(2, t0 + 2 * S));
    assert_eq!((s.in_flight(), s.room()), (2, 0));
    assert_eq!(s.reply_deadline(), Some(t0 + S));
}

#[test]
fn write_failed_before_a_byte_left_unregisters_the_newest() {
    let t0 = Instant::now();
    let mut s = session(&Matching::Fifo, 4, t0);
    s.register(None, waiter(1, t0 + S));
    s.register(None, waiter(2, t0 + S));
    // 10 bytes left; op 2 started at byte 10.
    assert!(!not_sent(0, 10));
    assert!(not_sent(10, 10));
    assert_eq!(s.unregister(None).map(|w| w.done), Some(2));
    assert_eq!(s.in_flight(), 1);
}

#[test]
fn write_failed_part_way_stays_registered_and_fails_with_the_connection() {
    let t0 = Instant::now();
    let mut s = session(&Matching::Fifo, 4, t0);
    s.register(None, waiter(1, t0 + S));
    assert!(!not_sent(0, 3));
    let drained: Vec<u32> = s.drain().map(|w| w.done).collect();
    assert_eq!(drained, vec![1]);
    assert_eq!(s.in_flight(), 0);
}

#[test]
fn a_reply_goes_to_its_waiter() {
    let t0 = Instant::now();
    let mut s = session(&Matching::Fifo, 4, t0);
    s.register(None, waiter(1, t0 + S));
    s.register(None, waiter(2, t0 + S));
    assert!(matches!(s.on_reply(&Matching::Fifo, b"x", t0), Reply::Waiter(w) if w.done == 1));
    assert!(s.delivered());
    let m = keyed();
    let mut s = session(&m, 4, t0);
    s.register(Some(Key::from(&b"b"[..])), waiter(7, t0 + S));
    assert!(matches!(
        s.on_reply(&m, b"a", t0),
        Reply::Unmatched { late: false }
    ));
    assert!(!s.delivered(), "an unsolicited frame proves nothing");
    assert!(matches!(s.on_reply(&m, b"b", t0), Reply::Waiter(w) if w.done == 7));
    assert!(matches!(
        s.on_reply(&Matching::None, b"b", t0),
        Reply::Unmatched { late: false }
    ));
}

#[test]
fn an_overdue_fifo_request_closes_the_connection() {
    let t0 = Instant::now();
    let mut s = session(&Matching::Fifo, 4, t0);
    s.register(None, waiter(1, t0 + S));
    assert!(s.fifo_overdue(t0).is_none());
    assert_eq!(s.fifo_overdue(t0 + S).map(|w| w.done), Some(1));
    assert!(
        s.expire_keyed(t0 + S).is_empty(),
        "ordered requests are not expired one by one"
    );
}

#[test]
fn overdue_keyed_requests_fail_alone() {
    let t0 = Instant::now();
    let m = keyed();
    let mut s = session(&m, 4, t0);
    s.register(Some(Key::from(&b"a"[..])), waiter(1, t0 + S));
    s.register(Some(Key::from(&b"b"[..])), waiter(2, t0 + 2 * S));
    let gone = s.expire_keyed(t0 + S);
    assert_eq!(gone.iter().map(|w| w.done).collect::<Vec<_>>(), vec![1]);
    assert_eq!(s.in_flight(), 1);
    assert!(s.abandoned_reply_is_late());
}

#[test]
fn next_deadline_is_the_earliest_of_liveness_replies_and_fail_back() {
    let t0 = Instant::now();
    let mut s = session(&Matching::Fifo, 4, t0);
    assert_eq!(s.next_deadline(None), None);
    s.register(None, waiter(1, t0 + 3 * S));
    assert_eq!(s.next_deadline(Some(t0 + 5 * S)), Some(t0 + 3 * S));
    assert_eq!(s.next_deadline(Some(t0 + S)), Some(t0 + S));
}

fn eps(t0: Instant) -> EndpointSet {
    let mut e = EndpointSet::new(["a", "b", "c"], S, 8 * S);
    e.mark_down(0, t0, "refused", 1.0); // retry at t0+1s
    e
}

#[test]
fn fail_back_never_from_the_first_endpoint_or_when_off() {
    let t0 = Instant::now();
    let e = EndpointSet::new(["a", "b"], S, 8 * S);
    let mut on_first: FailBack<()> = FailBack::new(true, 0, S);
    assert_eq!(on_first.due_at(t0, 0, &e), None);
    assert_eq!(on_first.start_probe(t0, 0, &e), None);
    let off: FailBack<()> = FailBack::new(false, 1, S);
    assert_eq!(off.due_at(t0, 0, &e), None);
}

#[test]
fn fail_back_probes_a_better_endpoint_due_when_idle() {
    let t0 = Instant::now();
    let e = EndpointSet::new(["a", "b"], S, 8 * S);
    let mut f: FailBack<()> = FailBack::new(true, 1, S);
    assert_eq!(f.due_at(t0, 0, &e), Some(t0));
    assert_eq!(f.start_probe(t0, 0, &e), Some(0));
    // Probing: no second probe, no timer.
    assert_eq!(f.due_at(t0, 0, &e), None);
    assert_eq!(f.start_probe(t0, 0, &e), None);
}

#[test]
fn fail_back_waits_for_the_retry_time_of_better_endpoints_down() {
    let t0 = Instant::now();
    let e = eps(t0);
    let mut f: FailBack<()> = FailBack::new(true, 1, S);
    assert_eq!(f.due_at(t0, 0, &e), Some(t0 + S));
    assert_eq!(f.start_probe(t0, 0, &e), None);
    assert_eq!(f.start_probe(t0 + S, 0, &e), Some(0));
}

#[test]
fn fail_back_after_a_failed_probe_waits_the_retry_spacing() {
    let t0 = Instant::now();
    let e = EndpointSet::new(["a", "b"], S, 8 * S);
    let mut f: FailBack<()> = FailBack::new(true, 1, S);
    assert_eq!(f.start_probe(t0, 0, &e), Some(0));
    f.on_probe(t0, None);
    assert_eq!(f.due_at(t0, 0, &e), Some(t0 + S));
    assert_eq!(f.start_probe(t0 + S / 2, 0, &e), None);
    assert_eq!(f.start_probe(t0 + S, 0, &e), Some(0));
}

#[test]
fn fail_back_moves_once_nothing_is_in_flight_or_queued() {
    let t0 = Instant::now();
    let e = EndpointSet::new(["a", "b"], S, 8 * S);
    let mut f: FailBack<&str> = FailBack::new(true, 1, S);
    assert_eq!(f.start_probe(t0, 0, &e), Some(0));
    f.on_probe(t0, Some("conn to a"));
    assert_eq!(
        f.due_at(t0, 0, &e),
        None,
        "no second probe while one answered"
    );
    assert_eq!(f.take_move(1, 0), None);
    assert_eq!(f.take_move(0, 1), None);
    assert_eq!(f.take_move(0, 0), Some("conn to a"));
}

#[test]
fn fail_back_has_no_timer_and_no_probe_while_requests_are_in_flight() {
    let t0 = Instant::now();
    let e = EndpointSet::new(["a", "b"], S, 8 * S);
    let mut f: FailBack<()> = FailBack::new(true, 1, S);
    assert_eq!(f.due_at(t0, 1, &e), None);
    assert_eq!(f.start_probe(t0, 1, &e), None);
}

#[test]
fn loss_of_a_connection_that_answered_reconnects_at_once() {
    let mut r = Reconnect::new(Duration::from_millis(20), S);
    let p = r.on_loss(true, Duration::from_millis(1), true, 1.0);
    assert_eq!(
        p,
        LossPlan {
            mark_down: false,
            delay: None
        }
    );
    // Lived as long as the ceiling: proved too.
    let p = r.on_loss(false, S, true, 1.0);
    assert_eq!(p.delay, None);
    assert!(!p.mark_down);
}

#[test]
fn loss_young_closed_with_nothing_answered_marks_down_and_backs_off() {
    let ms = Duration::from_millis;
    let mut r = Reconnect::new(ms(20), S);
    let p = r.on_loss(false, ms(1), true, 1.0);
    assert_eq!(
        p,
        LossPlan {
            mark_down: true,
            delay: Some(ms(20))
        }
    );
    assert_eq!(r.on_loss(false, ms(1), true, 1.0).delay, Some(ms(40)));
}

#[test]
fn loss_young_otherwise_backs_off_without_marking_down() {
    let ms = Duration::from_millis;
    let mut r = Reconnect::new(ms(20), S);
    let p = r.on_loss(false, ms(1), false, 1.0);
    assert_eq!(
        p,
        LossPlan {
            mark_down: false,
            delay: Some(ms(20))
        }
    );
}

#[test]
fn every_endpoint_failing_backs_off_at_least_the_floor() {
    let floor = crate::client::MIN_BACKOFF;
    // Even a zero base backs off: half the floor at least (the jitter's lower end).
    let mut r = Reconnect::new(Duration::ZERO, Duration::ZERO);
    assert_eq!(r.on_connect_failed(0.0), floor / 2);
    assert_eq!(
        r.on_connect_failed(1.0),
        floor,
        "capped at max, itself at least the floor"
    );
    let mut r = Reconnect::new(floor, S);
    assert_eq!(r.on_connect_failed(1.0), floor);
    assert_eq!(r.on_connect_failed(1.0), 2 * floor);
}

#[test]
fn short_retry_not_sent_moves_on_sent_only_once_with_retry_sent() {
    let base = ShortRetry {
        not_sent: true,
        retry_sent: false,
        retried_sent: false,
        out_of_time: false,
        endpoints: 2,
        attempts: 1,
    };
    assert!(base.next_endpoint());
    let sent = ShortRetry {
        not_sent: false,
        ..base
    };
    assert!(!sent.next_endpoint());
    assert!(
        ShortRetry {
            retry_sent: true,
            ..sent
        }
        .next_endpoint()
    );
    assert!(
        !ShortRetry {
            retry_sent: true,
            retried_sent: true,
            ..sent
        }
        .next_endpoint()
    );
    assert!(
        !ShortRetry {
            out_of_time: true,
            ..base
        }
        .next_endpoint()
    );
    assert!(
        !ShortRetry {
            endpoints: 1,
            ..base
        }
        .next_endpoint()
    );
}

#[test]
fn abandoned_requests_let_the_connection_close_once_handles_are_gone() {
    let t0 = Instant::now();
    let gone = |w: &u32| *w >= 100;
    // Ordered link: a late reply is dropped, so abandoned requests keep nothing open.
    let mut s = session(&Matching::Fifo, 4, t0);
    assert!(s.may_close(true, false, gone));
    assert!(!s.may_close(false, true, gone), "a handle is left");
    s.register(None, waiter(100, t0 + S));
    assert!(s.may_close(true, false, gone));
    s.register(None, waiter(1, t0 + S));
    assert!(!s.may_close(true, true, gone), "a caller still waits");
    // Keyed link: a late reply goes to the unsolicited stream, which may have a reader.
    let m = keyed();
    let mut k = session(&m, 4, t0);
    k.register(Some(Key::from(&b"a"[..])), waiter(100, t0 + S));
    assert!(
        !k.may_close(true, false, gone),
        "its late reply has a reader"
    );
    assert!(k.may_close(true, true, gone));
}

#[test]
fn short_retry_tries_each_endpoint_once_at_most() {
    let r = ShortRetry {
        not_sent: true,
        retry_sent: false,
        retried_sent: false,
        out_of_time: false,
        endpoints: 3,
        attempts: 2,
    };
    assert!(r.next_endpoint());
    // Every endpoint connected and failed before the write: the request fails now, not
    // after one connection per endpoint per round until its deadline.
    assert!(!ShortRetry { attempts: 3, ..r }.next_endpoint());
}

#[test]
fn a_closing_session_ends_once_its_live_requests_are_answered_or_overdue() {
    // `close` closes the queue while callers still wait: their requests end first.
    let t0 = Instant::now();
    let gone = |w: &u32| *w >= 100;
    let mut s = session(&Matching::Fifo, 4, t0);
    s.register(None, waiter(1, t0 + S));
    assert!(!s.may_close(true, true, gone), "a caller still waits");
    // Its reply comes: nothing is left in flight.
    assert!(matches!(
        s.on_reply(&Matching::Fifo, b"reply", t0),
        Reply::Waiter(_)
    ));
    assert!(s.may_close(true, true, gone));
    // Keyed: a live request is let run to its deadline, then the session may end.
    let m = keyed();
    let mut k = session(&m, 4, t0);
    k.register(Some(Key::from(&b"a"[..])), waiter(1, t0 + S));
    assert!(!k.may_close(true, true, gone));
    assert_eq!(k.next_deadline(None).filter(|d| *d <= t0 + S), Some(t0 + S));
    assert_eq!(k.expire_keyed(t0 + S).len(), 1);
    assert!(k.may_close(true, true, gone));
}
