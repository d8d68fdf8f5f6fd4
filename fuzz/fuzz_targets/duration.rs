//! Arbitrary input into `parse_duration` and `deadline::after`. The first 12 bytes are a
//! duration (`u64` seconds plus `u32` nanoseconds, carried into the seconds, saturating) and
//! an offset back from the latest `Instant` the platform can hold; the rest, as UTF-8, is
//! text for the parser.
//!
//! Checks:
//! - `parse_duration` never panics; what it accepts is at most `MAX_DURATION`, and a bare
//!   number is that many seconds;
//! - `after(now, d)` never panics, for every accepted `d` and for the drawn duration, from
//!   `Instant::now()` and from instants near the end of `Instant`'s range; it lies between
//!   `now` and `now + min(d, FAR_FUTURE)`, equals that sum whenever it fits, and grows with
//!   `d` wherever `now + FAR_FUTURE` fits.

#![no_main]

use std::sync::OnceLock;
use std::time::{Duration, Instant};

use keepwire::deadline::{FAR_FUTURE, after};
use keepwire::socket::{MAX_DURATION, parse_duration};
use libfuzzer_sys::arbitrary::Unstructured;
use libfuzzer_sys::fuzz_target;

/// The latest `Instant` reachable from now by `checked_add`.
fn latest() -> Instant {
    static LATEST: OnceLock<Instant> = OnceLock::new();
    *LATEST.get_or_init(|| {
        let mut t = Instant::now();
        let mut step = Duration::MAX;
        while !step.is_zero() {
            match t.checked_add(step) {
                Some(next) => t = next,
                None => step /= 2,
            }
        }
        t
    })
}

/// Asserts what `after(now, d)` promises.
fn check_after(now: Instant, d: Duration) {
    let t = after(now, d);
    assert!(t >= now, "after({d:?}) went back in time");
    let capped = d.min(FAR_FUTURE);
    let ahead = t.duration_since(now);
    assert!(
        ahead <= capped,
        "after({d:?}) is {ahead:?} ahead, cap {capped:?}"
    );
    if let Some(exact) = now.checked_add(capped) {
        assert_eq!(t, exact, "after({d:?}) when now + {capped:?} fits");
    }
    // Where `now + FAR_FUTURE` fits (every real clock reading), `after` is an exact,
    // saturating sum, so a longer timeout never gives an earlier deadline. Closer to the end
    // of the range it is a best effort (halving until a step fits, as its comment says):
    // with 40 s of room left, `after(now, 80s)` is `now + 40s` but `after(now, 81s)` is
    // `now + 20.25s`.
    if now.checked_add(FAR_FUTURE).is_some() {
        let more = d.saturating_add(Duration::from_nanos(1));
        assert!(after(now, more) >= t, "after is not monotonic at {d:?}");
    }
}

fuzz_target!(|data: &[u8]| {
    let mut u = Unstructured::new(data);
    let (Ok(secs), Ok(nanos), Ok(back)) = (
        u.arbitrary::<u64>(),
        u.arbitrary::<u32>(),
        u.arbitrary::<u32>(),
    ) else {
        return;
    };
    let drawn = Duration::from_secs(secs).saturating_add(Duration::from_nanos(nanos.into()));
    let now = Instant::now();
    // Near the end of the range, where even FAR_FUTURE overflows: `back` ms short of it.
    let late = latest()
        .checked_sub(Duration::from_millis(back.into()))
        .unwrap_or(now);
    for base in [now, late] {
        check_after(base, drawn);
        check_after(base, Duration::new(secs, nanos % 1_000_000_000));
    }

    let Ok(text) = std::str::from_utf8(u.take_rest()) else {
        return;
    };
    let Ok(d) = parse_duration(text) else {
        return;
    };
    assert!(d <= MAX_DURATION, "{text:?} gives {d:?}, over MAX_DURATION");
    if let Ok(n) = text.trim().parse::<u64>() {
        assert_eq!(
            d,
            Duration::from_secs(n),
            "{text:?}: a bare number is seconds"
        );
    }
    check_after(now, d);
    check_after(late, d);
});
