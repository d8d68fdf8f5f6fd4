//! One worker's counts, and their sum over a pattern's workers: shared by the framed, HTTP
//! and protocol benches.

use std::sync::atomic::Ordering;
use std::time::Instant;

use hdrhistogram::Histogram;
use tokio::task::JoinSet;

use super::engine::Progress;

/// Latencies are recorded from 1 µs to 60 s.
const MAX_US: u64 = 60_000_000;

/// What one worker measured: latencies of answered requests (µs), answered and failed counts.
pub(super) struct Tally {
    pub(super) hist: Histogram<u64>,
    pub(super) ok: u64,
    pub(super) errors: u64,
}

impl Tally {
    /// Nothing measured yet.
    pub(super) fn new() -> Self {
        // 1 µs .. 60 s at 3 significant figures.
        let hist = Histogram::new_with_bounds(1, MAX_US, 3)
            .or_else(|_| Histogram::new(3))
            .unwrap_or_else(|_| unreachable!("3 significant figures are valid"));
        Tally {
            hist,
            ok: 0,
            errors: 0,
        }
    }

    /// `n` requests sent at `since` were answered (`ok`) or failed; the live counters in
    /// `progress` follow.
    pub(super) fn record(&mut self, progress: &Progress, ok: bool, since: Instant, n: u64) {
        if ok {
            let us = u64::try_from(since.elapsed().as_micros()).unwrap_or(u64::MAX);
            let _ = self.hist.record_n(us.clamp(1, MAX_US), n);
            self.ok += n;
            progress.requests.fetch_add(n, Ordering::Relaxed);
        } else {
            self.errors += n;
            progress.errors.fetch_add(n, Ordering::Relaxed);
        }
    }

    /// One request sent at `since` was answered.
    pub(super) fn ok(&mut self, progress: &Progress, since: Instant) {
        self.record(progress, true, since, 1);
    }

    /// One request failed.
    pub(super) fn err(&mut self, progress: &Progress) {
        self.errors += 1;
        progress.errors.fetch_add(1, Ordering::Relaxed);
    }

    /// Waits for every worker in `tasks` and sums what they measured (a worker that panicked
    /// counts nothing).
    pub(super) async fn sum(tasks: &mut JoinSet<Tally>) -> Tally {
        let mut all = Tally::new();
        while let Some(res) = tasks.join_next().await {
            if let Ok(t) = res {
                let _ = all.hist.add(&t.hist);
                all.ok += t.ok;
                all.errors += t.errors;
            }
        }
        all
    }
}
