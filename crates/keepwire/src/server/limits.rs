//! Connection limits: a global cap and a per-client-IP cap, with slots released on drop.

use std::hash::{BuildHasher, RandomState};
use std::net::IpAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use hashbrown::HashTable;
use hashbrown::hash_table::Entry;

/// Counts connections globally and per client IP.
#[derive(Debug)]
pub(crate) struct Limits {
    max_conns: usize,
    max_per_ip: Option<usize>,
    active: AtomicUsize,
    /// Open connections per client IP (entries with a count of zero are removed), hashed
    /// with SipHash under a random key (the addresses are the peers' choice). A slot keeps
    /// its entry's hash: a connection hashes its address once, not again at its end.
    per_ip: Mutex<HashTable<(IpAddr, usize)>>,
    hasher: RandomState,
}

/// A global slot; released when dropped.
#[derive(Debug)]
pub(crate) struct GlobalSlot(Arc<Limits>);

impl Drop for GlobalSlot {
    fn drop(&mut self) {
        self.0.active.fetch_sub(1, Ordering::AcqRel);
    }
}

/// A per-IP slot; released when dropped.
#[derive(Debug)]
pub(crate) struct IpSlot {
    limits: Arc<Limits>,
    ip: IpAddr,
    /// `ip`'s hash in the table.
    hash: u64,
}

impl Drop for IpSlot {
    fn drop(&mut self) {
        let mut table = self.limits.per_ip.lock().unwrap_or_else(|p| p.into_inner());
        if let Ok(mut e) = table.find_entry(self.hash, |(ip, _)| *ip == self.ip) {
            let n = &mut e.get_mut().1;
            *n = n.saturating_sub(1);
            if *n == 0 {
                e.remove();
            }
        }
    }
}

impl Limits {
    pub(crate) fn new(max_conns: usize, max_per_ip: Option<usize>) -> Arc<Self> {
        Arc::new(Limits {
            max_conns,
            max_per_ip,
            active: AtomicUsize::new(0),
            per_ip: Mutex::new(HashTable::new()),
            hasher: RandomState::new(),
        })
    }

    /// Takes a global slot, or `None` when `max_conns` are open.
    pub(crate) fn try_global(self: &Arc<Self>) -> Option<GlobalSlot> {
        let prev = self.active.fetch_add(1, Ordering::AcqRel);
        if prev >= self.max_conns {
            self.active.fetch_sub(1, Ordering::AcqRel);
            return None;
        }
        Some(GlobalSlot(Arc::clone(self)))
    }

    /// Takes a slot for `ip`, or `None` when it has `max_per_ip` open. `Some` without a slot
    /// when there is no per-IP limit.
    pub(crate) fn try_ip(self: &Arc<Self>, ip: IpAddr) -> Option<Option<IpSlot>> {
        let Some(max) = self.max_per_ip else {
            return Some(None);
        };
        let hash = self.hasher.hash_one(ip);
        let mut table = self.per_ip.lock().unwrap_or_else(|p| p.into_inner());
        let rehash = |(k, _): &(IpAddr, usize)| self.hasher.hash_one(k);
        match table.entry(hash, |(k, _)| *k == ip, rehash) {
            Entry::Occupied(mut e) => {
                let n = &mut e.get_mut().1;
                if *n >= max {
                    return None;
                }
                *n += 1;
            }
            Entry::Vacant(v) => {
                if max == 0 {
                    return None;
                }
                v.insert((ip, 1));
            }
        }
        Some(Some(IpSlot {
            limits: Arc::clone(self),
            ip,
            hash,
        }))
    }

    /// Connections open now.
    pub(crate) fn active(&self) -> usize {
        self.active.load(Ordering::Acquire)
    }

    /// Distinct client IPs holding per-IP slots now.
    #[cfg(test)]
    pub(crate) fn tracked_ips(&self) -> usize {
        self.per_ip.lock().unwrap_or_else(|p| p.into_inner()).len()
    }
}

/// Logs a recurring event at most once per period, with the count of those it held back, so a
/// flood of rejected connections cannot flood the log too.
#[derive(Debug)]
pub(crate) struct LogLimiter {
    period: Duration,
    state: Mutex<(Option<Instant>, u64)>,
}

impl LogLimiter {
    pub(crate) fn new(period: Duration) -> Self {
        LogLimiter {
            period,
            state: Mutex::new((None, 0)),
        }
    }

    /// `Some(suppressed)` when this occurrence should be logged (with how many were held back
    /// since the last one), `None` when it should be counted silently.
    pub(crate) fn check(&self, now: Instant) -> Option<u64> {
        let mut st = self.state.lock().unwrap_or_else(|p| p.into_inner());
        match st.0 {
            Some(last) if now.duration_since(last) < self.period => {
                st.1 += 1;
                None
            }
            _ => {
                let held = st.1;
                *st = (Some(now), 0);
                Some(held)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn global_and_per_ip_slots() {
        let l = Limits::new(2, Some(1));
        let a = l.try_global().unwrap();
        let _b = l.try_global().unwrap();
        assert!(l.try_global().is_none());
        drop(a);
        assert!(l.try_global().is_some());
        let ip1: IpAddr = "127.0.0.1".parse().unwrap();
        let ip2: IpAddr = "127.0.0.2".parse().unwrap();
        let s1 = l.try_ip(ip1).unwrap();
        assert!(l.try_ip(ip1).is_none());
        assert!(l.try_ip(ip2).is_some());
        drop(s1);
        assert_eq!(l.tracked_ips(), 0);
        assert!(l.try_ip(ip1).is_some());
    }

    #[test]
    fn per_ip_counts_survive_the_table_growing_and_empty_it_when_released() {
        let l = Limits::new(usize::MAX, Some(2));
        let ips: Vec<IpAddr> = (0..2000u32)
            .map(|i| IpAddr::from(std::net::Ipv6Addr::from(u128::from(i) << 64 | 7)))
            .collect();
        let mut held = Vec::new();
        for ip in &ips {
            held.push(l.try_ip(*ip).unwrap().unwrap());
        }
        // The table grew (and rehashed) many times while the first slots were held.
        for ip in &ips {
            held.push(l.try_ip(*ip).unwrap().unwrap());
            assert!(
                l.try_ip(*ip).is_none(),
                "{ip}: a third slot past the cap of 2"
            );
        }
        assert_eq!(l.tracked_ips(), ips.len());
        held.truncate(ips.len()); // each address keeps one slot
        for ip in &ips {
            let again = l.try_ip(*ip).unwrap();
            assert!(again.is_some(), "{ip}: a released slot was not given back");
            assert!(l.try_ip(*ip).is_none());
            drop(again);
        }
        drop(held);
        assert_eq!(l.tracked_ips(), 0, "released addresses stay in the table");
    }

    #[test]
    fn a_per_ip_cap_of_zero_refuses_without_keeping_the_address() {
        let l = Limits::new(10, Some(0));
        let ip: IpAddr = "192.0.2.1".parse().unwrap();
        assert!(l.try_ip(ip).is_none());
        assert_eq!(l.tracked_ips(), 0);
        let open = Limits::new(10, None);
        assert!(
            matches!(open.try_ip(ip), Some(None)),
            "no cap: no slot to hold"
        );
    }

    #[test]
    fn log_limiter_holds_back_and_counts() {
        let lim = LogLimiter::new(Duration::from_secs(1));
        let t = Instant::now();
        assert_eq!(lim.check(t), Some(0));
        assert_eq!(lim.check(t + Duration::from_millis(10)), None);
        assert_eq!(lim.check(t + Duration::from_millis(20)), None);
        assert_eq!(lim.check(t + Duration::from_secs(2)), Some(2));
    }
}
