//! A per-thread pool of connection buffers.
//!
//! A connection holds a read buffer only while bytes are buffered and a write buffer only
//! while replies wait, so an idle connection holds none (see `conn.rs`). Allocating them per
//! request cost three trips into the allocator: the read buffer, the shared control block
//! `bytes` adds on the first `split_to` (every decoded frame is one), and the write buffer.
//! Buffers given back here are taken by the next connection on the same thread to get bytes;
//! a read buffer that has been split keeps its control block, so later frames cost no
//! allocation at all.
//!
//! Memory stays bounded whatever the peers send: at most [`MAX_POOLED`] buffers per thread,
//! none with more than [`MAX_CAPACITY`] bytes of room (the caller says whether a buffer ever
//! grew past it; large ones are freed as before). A buffer's room can sit behind bytes
//! already split off, so one allocation is at most twice that: 2 MiB per thread in all.

use std::cell::RefCell;

use bytes::BytesMut;

/// Buffers kept per thread: enough for the busy connections of one worker's turn.
pub(crate) const MAX_POOLED: usize = 32;
/// The largest buffer kept, in bytes (read buffers start at 1000 bytes; a 4 KiB request and
/// its reply fit well below this).
pub(crate) const MAX_CAPACITY: usize = 32 * 1024;

thread_local! {
    static POOL: RefCell<Vec<BytesMut>> = const { RefCell::new(Vec::new()) };
}

/// An empty buffer: a pooled one when this thread has one, else a new one (no allocation
/// until it is reserved).
pub(crate) fn take() -> BytesMut {
    POOL.try_with(|p| p.try_borrow_mut().ok().and_then(|mut v| v.pop()))
        .ok()
        .flatten()
        .unwrap_or_default()
}

/// Gives `buf` back (leaving it empty and unallocated) when it is `small` (it never grew
/// past [`MAX_CAPACITY`]) and the pool has room; frees it otherwise. Buffers still holding
/// bytes are never pooled.
pub(crate) fn give(buf: &mut BytesMut, small: bool) {
    let b = std::mem::take(buf);
    if !small || !b.is_empty() || b.capacity() == 0 || b.capacity() > MAX_CAPACITY {
        return;
    }
    // A thread being torn down, or a re-entrant call, frees the buffer instead.
    let _ = POOL.try_with(|p| {
        if let Ok(mut v) = p.try_borrow_mut() {
            if v.len() < MAX_POOLED {
                v.push(b);
            }
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_given_buffer_is_taken_back_with_its_capacity() {
        let mut b = BytesMut::with_capacity(1000);
        give(&mut b, true);
        assert_eq!(b.capacity(), 0, "the caller's buffer is left unallocated");
        let t = take();
        assert!(t.capacity() >= 1000, "capacity {}", t.capacity());
        assert!(t.is_empty());
    }

    #[test]
    fn large_or_unsmall_or_nonempty_buffers_are_freed() {
        // Drain whatever this test thread pooled before.
        while take().capacity() > 0 {}
        let mut big = BytesMut::with_capacity(MAX_CAPACITY + 1);
        give(&mut big, true);
        let mut grew = BytesMut::with_capacity(100);
        give(&mut grew, false);
        let mut full = BytesMut::from(&b"x"[..]);
        give(&mut full, true);
        assert_eq!(take().capacity(), 0, "nothing was pooled");
    }

    #[test]
    fn the_pool_is_bounded() {
        while take().capacity() > 0 {}
        for _ in 0..MAX_POOLED + 10 {
            give(&mut BytesMut::with_capacity(64), true);
        }
        let mut n = 0;
        while take().capacity() > 0 {
            n += 1;
        }
        assert_eq!(n, MAX_POOLED);
    }
}
