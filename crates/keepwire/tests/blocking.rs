//! `keepwire::blocking` over real loopback TCP sockets: frames trickling in, read timeouts
//! that keep partial frames (in blocking and non-blocking mode), end of stream, exact bytes
//! written, and a hostile length header that must not make the reader buffer its body.
//!
//! The peer is a thread; the test and the peer move in lock step through channels, and every
//! wait is bounded ([`LIMIT`]) so a bug fails the test instead of hanging it.

use std::io::{ErrorKind, Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::sync::mpsc::{self, Receiver, Sender};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use keepwire::blocking::{FrameReader, FrameWriter};
use keepwire::frame::FramingSpec;

/// The bound on every wait: generous, so only a real hang trips it.
const LIMIT: Duration = Duration::from_secs(10);

fn spec(s: &str) -> FramingSpec {
    FramingSpec::parse(s).unwrap_or_else(|e| panic!("{s}: {e}"))
}

/// A connected pair of loopback sockets: (ours, the peer's).
fn pair() -> (TcpStream, TcpStream) {
    let listener = TcpListener::bind("127.0.0.1:0").expect("binding 127.0.0.1:0");
    let addr = listener.local_addr().expect("local addr");
    let ours = TcpStream::connect(addr).expect("connecting");
    let (theirs, _) = listener.accept().expect("accepting");
    // Bounds for a test gone wrong, not part of what is tested.
    ours.set_read_timeout(Some(LIMIT)).expect("read timeout");
    theirs
        .set_write_timeout(Some(LIMIT))
        .expect("write timeout");
    (ours, theirs)
}

/// A peer thread that runs `script` with the socket, a receiver of "go" signals from the test
/// and a sender of "done" signals to it.
fn peer<F>(sock: TcpStream, script: F) -> (Sender<()>, Receiver<()>, JoinHandle<()>)
where
    F: FnOnce(TcpStream, Receiver<()>, Sender<()>) + Send + 'static,
{
    let (go_tx, go_rx) = mpsc::channel();
    let (done_tx, done_rx) = mpsc::channel();
    let handle = thread::spawn(move || script(sock, go_rx, done_tx));
    (go_tx, done_rx, handle)
}

fn wait(rx: &Receiver<()>) {
    rx.recv_timeout(LIMIT)
        .expect("the peer did not signal in time");
}

fn go(tx: &Sender<()>) {
    tx.send(()).expect("the peer has gone");
}

fn nonblocking(s: &TcpStream) -> bool {
    socket2::SockRef::from(s)
        .nonblocking()
        .expect("reading O_NONBLOCK")
}

#[test]
fn read_frame_reassembles_frames_written_a_byte_at_a_time() {
    let (ours, theirs) = pair();
    let (_go, _done, peer) = peer(theirs, |mut s, _, _| {
        for &b in b"0005hello0003bye0000" {
            s.write_all(&[b]).expect("writing a byte");
            // TCP_NODELAY is off: small pauses are what make the bytes arrive one by one.
            thread::sleep(Duration::from_millis(1));
        }
    });
    let mut r = FrameReader::new(ours, spec("len:ascii:4"));
    assert_eq!(
        &r.read_frame().expect("frame 1").expect("not eof")[..],
        b"hello"
    );
    assert_eq!(
        &r.read_frame().expect("frame 2").expect("not eof")[..],
        b"bye"
    );
    assert_eq!(&r.read_frame().expect("frame 3").expect("not eof")[..], b"");
    assert_eq!(r.stream_offset(), 20);
    peer.join().expect("peer panicked");
    assert!(r.read_frame().expect("clean eof").is_none());
    assert_eq!(r.buffered(), 0);
}

#[test]
fn read_frame_surfaces_a_read_timeout_and_loses_nothing() {
    let (ours, theirs) = pair();
    let (go_tx, done_rx, peer) = peer(theirs, |mut s, go, done| {
        s.write_all(b"\x00\x05he").expect("writing half a frame");
        done.send(()).expect("signal");
        wait(&go);
        s.write_all(b"llo").expect("writing the rest");
    });
    ours.set_read_timeout(Some(Duration::from_millis(50)))
        .expect("read timeout");
    let mut r = FrameReader::new(ours, spec("len:be:2"));
    wait(&done_rx);
    let err = r.read_frame().expect_err("no whole frame was sent");
    assert!(err.is_io(), "{err}");
    assert_eq!(r.buffered(), 4, "the partial frame is kept");
    go(&go_tx);
    r.get_ref()
        .set_read_timeout(Some(LIMIT))
        .expect("read timeout");
    assert_eq!(
        &r.read_frame().expect("frame").expect("not eof")[..],
        b"hello"
    );
    peer.join().expect("peer panicked");
}

/// The peer writes half a frame, then the rest on our signal; `read_frame_timeout` must time
/// out keeping the half, then return the whole frame, and leave the socket as it found it.
fn read_frame_timeout_keeps_partial_frame(set_nonblocking: bool) {
    let (ours, theirs) = pair();
    let (go_tx, done_rx, peer) = peer(theirs, |mut s, go, done| {
        s.write_all(b"0005he").expect("writing half a frame");
        done.send(()).expect("signal");
        wait(&go);
        s.write_all(b"llo0003b").expect("writing the rest");
        wait(&go);
        s.write_all(b"ye").expect("writing the last bytes");
    });
    // Settings the reader must give back: a read timeout of its own, and the mode.
    let caller_timeout = if set_nonblocking {
        None
    } else {
        Some(Duration::from_secs(7))
    };
    ours.set_read_timeout(caller_timeout).expect("read timeout");
    ours.set_nonblocking(set_nonblocking).expect("mode");
    let mut r = FrameReader::new(ours, spec("len:ascii:4"));
    wait(&done_rx);

    let timeout = Duration::from_millis(100);
    let start = Instant::now();
    let got = r.read_frame_timeout(timeout).expect("no error");
    let took = start.elapsed();
    assert!(got.is_none(), "half a frame is not a frame: {got:?}");
    // It waited (not a non-blocking return), and came back: no exact expectation.
    assert!(took >= timeout / 2, "returned after {took:?}");
    assert!(took < LIMIT, "returned after {took:?}");
    assert_eq!(r.buffered(), 6, "the partial frame is kept");
    assert!(!r.is_eof());
    assert_eq!(nonblocking(r.get_ref()), set_nonblocking, "mode restored");
    assert_eq!(
        r.get_ref().read_timeout().expect("read timeout"),
        caller_timeout,
        "read timeout restored"
    );

    go(&go_tx);
    let frame = r.read_frame_timeout(LIMIT).expect("no error");
    assert_eq!(frame.as_deref(), Some(&b"hello"[..]));
    // The next frame's first bytes came in the same segment and are kept too.
    assert!(r.read_frame_timeout(timeout).expect("no error").is_none());
    assert_eq!(r.buffered(), 5);
    go(&go_tx);
    let frame = r.read_frame_timeout(LIMIT).expect("no error");
    assert_eq!(frame.as_deref(), Some(&b"bye"[..]));
    assert_eq!(r.stream_offset(), 16);

    assert_eq!(nonblocking(r.get_ref()), set_nonblocking, "mode restored");
    assert_eq!(
        r.get_ref().read_timeout().expect("read timeout"),
        caller_timeout,
        "read timeout restored"
    );
    peer.join().expect("peer panicked");
    // Clean end of stream: None, at once, and is_eof says why.
    let start = Instant::now();
    assert!(r.read_frame_timeout(LIMIT).expect("clean eof").is_none());
    assert!(r.is_eof());
    assert!(start.elapsed() < LIMIT);
}

#[test]
fn read_frame_timeout_keeps_partial_frame_blocking_socket() {
    read_frame_timeout_keeps_partial_frame(false);
}

#[test]
fn read_frame_timeout_keeps_partial_frame_nonblocking_socket() {
    read_frame_timeout_keeps_partial_frame(true);
}

#[test]
fn read_frame_timeout_zero_reads_what_has_arrived() {
    let (ours, theirs) = pair();
    let (_go, done_rx, peer) = peer(theirs, |mut s, _, done| {
        s.write_all(b"\x03abc").expect("writing a frame");
        done.send(()).expect("signal");
    });
    let mut r = FrameReader::new(ours, spec("len:be:1"));
    wait(&done_rx);
    // Polling with a zero timeout makes progress: it reads without waiting.
    let deadline = Instant::now() + LIMIT;
    let frame = loop {
        if let Some(f) = r.read_frame_timeout(Duration::ZERO).expect("no error") {
            break f;
        }
        assert!(
            Instant::now() < deadline,
            "a zero timeout never read the frame"
        );
        thread::sleep(Duration::from_millis(1));
    };
    assert_eq!(&frame[..], b"abc");
    assert!(!nonblocking(r.get_ref()), "mode restored");
    peer.join().expect("peer panicked");
}

#[test]
fn read_frame_timeout_accepts_an_unbounded_timeout() {
    let (ours, theirs) = pair();
    let (go_tx, _done, peer) = peer(theirs, |mut s, go, _| {
        s.write_all(b"\x03abc\x02d")
            .expect("writing a frame and a half");
        wait(&go);
        s.write_all(b"e").expect("writing the rest");
    });
    let mut r = FrameReader::new(ours, spec("len:be:1"));
    // Duration::MAX means "no deadline", not an overflow.
    let frame = r.read_frame_timeout(Duration::MAX).expect("no error");
    assert_eq!(frame.as_deref(), Some(&b"abc"[..]));
    // And it waits for the rest of a frame (on a non-blocking socket too).
    r.get_ref().set_nonblocking(true).expect("mode");
    go(&go_tx);
    let frame = r.read_frame_timeout(Duration::MAX).expect("no error");
    assert_eq!(frame.as_deref(), Some(&b"de"[..]));
    assert!(nonblocking(r.get_ref()), "mode kept");
    assert_eq!(
        r.get_ref().read_timeout().expect("read timeout"),
        Some(LIMIT),
        "read timeout restored"
    );
    peer.join().expect("peer panicked");
}

#[test]
fn try_read_frame_on_a_nonblocking_socket() {
    let (ours, theirs) = pair();
    let (go_tx, done_rx, peer) = peer(theirs, |mut s, go, done| {
        wait(&go);
        s.write_all(b"\x00\x05he").expect("writing half a frame");
        done.send(()).expect("signal");
        wait(&go);
        s.write_all(b"llo\x00\x03bye").expect("writing the rest");
        done.send(()).expect("signal");
        wait(&go);
        // Dropping the socket closes it: end of stream.
    });
    ours.set_nonblocking(true).expect("mode");
    let mut r = FrameReader::new(ours, spec("len:be:2"));

    // Nothing sent: no frame, and no waiting.
    let start = Instant::now();
    assert!(r.try_read_frame().expect("no error").is_none());
    assert!(start.elapsed() < LIMIT);
    assert_eq!(r.buffered(), 0);

    // Half a frame: still none, the half is kept.
    go(&go_tx);
    wait(&done_rx);
    let deadline = Instant::now() + LIMIT;
    while r.buffered() < 4 {
        assert!(r.try_read_frame().expect("no error").is_none());
        assert!(Instant::now() < deadline, "the half frame never arrived");
        thread::sleep(Duration::from_millis(1));
    }
    assert_eq!(r.buffered(), 4);

    // The rest, and a second frame behind it.
    go(&go_tx);
    wait(&done_rx);
    let poll = |r: &mut FrameReader<TcpStream>| loop {
        if let Some(f) = r.try_read_frame().expect("no error") {
            break f;
        }
        assert!(Instant::now() < deadline, "the frame never arrived");
        thread::sleep(Duration::from_millis(1));
    };
    assert_eq!(&poll(&mut r)[..], b"hello");
    assert_eq!(&poll(&mut r)[..], b"bye");
    assert!(nonblocking(r.get_ref()), "still non-blocking");

    // End of stream: None with is_eof.
    go(&go_tx);
    peer.join().expect("peer panicked");
    while !r.is_eof() {
        assert!(r.try_read_frame().expect("clean eof").is_none());
        assert!(Instant::now() < deadline, "the close never arrived");
        thread::sleep(Duration::from_millis(1));
    }
    assert!(r.try_read_frame().expect("clean eof").is_none());
}

#[test]
fn try_read_frame_on_a_blocking_socket_does_not_wait() {
    let (ours, theirs) = pair();
    let mut r = FrameReader::new(ours, spec("line"));
    let start = Instant::now();
    assert!(r.try_read_frame().expect("no error").is_none());
    assert!(start.elapsed() < LIMIT);
    assert!(!nonblocking(r.get_ref()), "mode restored");
    drop(theirs);
}

#[test]
fn eof_inside_a_frame_is_a_truncated_error() {
    // Inside the body.
    let (ours, mut theirs) = pair();
    theirs.write_all(b"0005he").expect("writing half a frame");
    theirs.shutdown(Shutdown::Write).expect("half-closing");
    let mut r = FrameReader::new(ours, spec("len:ascii:4"));
    let err = r.read_frame().expect_err("a truncated frame");
    assert!(err.is_truncated(), "{err}");
    assert_eq!(err.offset(), Some(0));
    assert_eq!(
        err.to_string(),
        "offset 0: truncated frame, 2 of 5 body bytes"
    );

    // Inside the header, after a whole frame, through read_frame_timeout.
    let (ours, mut theirs) = pair();
    theirs.write_all(b"0002hi00").expect("writing");
    theirs.shutdown(Shutdown::Write).expect("half-closing");
    let mut r = FrameReader::new(ours, spec("len:ascii:4"));
    let frame = r.read_frame_timeout(LIMIT).expect("the first frame");
    assert_eq!(frame.as_deref(), Some(&b"hi"[..]));
    let err = r.read_frame_timeout(LIMIT).expect_err("a truncated header");
    assert!(err.is_truncated(), "{err}");
    assert_eq!(
        err.to_string(),
        "offset 6: truncated frame, 2 of 4 header bytes"
    );
}

#[test]
fn clean_eof_between_frames_is_none() {
    let (ours, mut theirs) = pair();
    theirs.write_all(b"ab\ncd\n").expect("writing");
    drop(theirs);
    let mut r = FrameReader::new(ours, spec("line"));
    assert_eq!(&r.read_frame().expect("frame").expect("not eof")[..], b"ab");
    assert_eq!(&r.read_frame().expect("frame").expect("not eof")[..], b"cd");
    assert!(r.read_frame().expect("clean eof").is_none());
    // And it stays that way.
    assert!(r.read_frame().expect("clean eof").is_none());

    // Nothing at all sent.
    let (ours, theirs) = pair();
    drop(theirs);
    let mut r = FrameReader::new(ours, spec("len:be:4:incl"));
    assert!(r.read_frame().expect("clean eof").is_none());

    // `eof` framing: the close is what ends the one message.
    let (ours, mut theirs) = pair();
    theirs.write_all(b"the whole reply").expect("writing");
    theirs.shutdown(Shutdown::Write).expect("half-closing");
    let mut r = FrameReader::new(ours, spec("eof"));
    let frame = r.read_frame().expect("frame").expect("not eof");
    assert_eq!(&frame[..], b"the whole reply");
    assert!(r.read_frame().expect("clean eof").is_none());
}

#[test]
fn frame_writer_writes_exact_bytes() {
    let (ours, theirs) = pair();
    let (_go, _done, peer) = peer(theirs, |s, _, _| {
        let mut w = FrameWriter::new(s, spec("len:be:4:incl"));
        // CMPP ACTIVE_TEST, sequence 1.
        w.write_frame(b"\x00\x00\x00\x08\x00\x00\x00\x01")
            .expect("writing a frame");
        w.write_frame(b"").expect("writing an empty frame");
        let err = FrameWriter::new(Vec::new(), spec("len:be:1"))
            .write_frame(&[0; 256])
            .expect_err("256 bytes do not fit a 1-byte header");
        assert!(err.is_unencodable(), "{err}");
        // Nothing of an unencodable frame reaches the socket.
        let err = w
            .write_frame(&vec![0; 9 * 1024 * 1024])
            .expect_err("over max");
        assert!(err.is_unencodable(), "{err}");
        w.get_ref().shutdown(Shutdown::Write).expect("half-closing");
    });
    let mut ours = ours;
    let mut wire = Vec::new();
    ours.read_to_end(&mut wire)
        .expect("reading to end of stream");
    peer.join().expect("peer panicked");
    assert_eq!(
        wire,
        b"\x00\x00\x00\x0c\x00\x00\x00\x08\x00\x00\x00\x01\x00\x00\x00\x04"
    );
}

/// A 4-byte header claiming 1 GiB, then `body` bytes of body.
fn hostile_peer(theirs: TcpStream, body: usize) -> (Receiver<()>, JoinHandle<()>) {
    let (_go, done_rx, handle) = peer(theirs, move |mut s, _, done| {
        let mut wire = 0x4000_0000u32.to_be_bytes().to_vec();
        wire.resize(4 + body, b'x');
        // The reader may close on us once it has seen the header.
        let _ = s.write_all(&wire);
        let _ = done.send(());
        // Hold the connection open: the reader must give up on its own, not at EOF.
        let mut sink = [0u8; 64];
        let _ = s.read(&mut sink);
    });
    (done_rx, handle)
}

#[test]
fn oversized_header_fails_read_frame_before_the_body_is_buffered() {
    let (ours, theirs) = pair();
    let (done_rx, peer) = hostile_peer(theirs, 32 * 1024);
    wait(&done_rx);
    let mut r = FrameReader::new(ours, spec("len:be:4:max=1024"));
    let err = r.read_frame().expect_err("1 GiB is over max=1024");
    assert!(err.is_too_long(), "{err}");
    assert_eq!(err.offset(), Some(0));
    assert!(
        r.buffered() <= 16 * 1024,
        "{} bytes buffered: the reader went on reading the body",
        r.buffered()
    );
    // The reader stays failed: no resync by guessing.
    let again = r.read_frame().expect_err("still failed");
    assert_eq!(again.kind_name(), "poisoned", "{again}");
    drop(r);
    peer.join().expect("peer panicked");
}

#[test]
fn oversized_header_fails_try_read_frame_before_the_body_is_buffered() {
    let (ours, theirs) = pair();
    // The default max (8 MiB): the reader must not buffer up to it before looking.
    let (done_rx, peer) = hostile_peer(theirs, 32 * 1024);
    wait(&done_rx);
    ours.set_nonblocking(true).expect("mode");
    let mut r = FrameReader::new(ours, spec("len:be:4"));
    let deadline = Instant::now() + LIMIT;
    let err = loop {
        match r.try_read_frame() {
            Err(e) => break e,
            Ok(None) => {
                assert!(Instant::now() < deadline, "the header never arrived");
                thread::sleep(Duration::from_millis(1));
            }
            Ok(Some(f)) => panic!("no frame was sent, got {} bytes", f.len()),
        }
    };
    assert!(err.is_too_long(), "{err}");
    assert!(
        r.buffered() <= 16 * 1024,
        "{} bytes buffered: the reader went on reading the body",
        r.buffered()
    );
    drop(r);
    peer.join().expect("peer panicked");
}

#[test]
fn oversized_header_fails_read_frame_timeout_before_the_body_is_buffered() {
    let (ours, theirs) = pair();
    let (done_rx, peer) = hostile_peer(theirs, 32 * 1024);
    wait(&done_rx);
    let mut r = FrameReader::new(ours, spec("len:be:4:max=1024"));
    let err = r
        .read_frame_timeout(LIMIT)
        .expect_err("1 GiB is over max=1024");
    assert!(err.is_too_long(), "{err}");
    assert!(r.buffered() <= 16 * 1024, "{} bytes buffered", r.buffered());
    assert_eq!(
        r.get_ref().read_timeout().expect("read timeout"),
        Some(LIMIT),
        "read timeout restored after an error"
    );
    drop(r);
    peer.join().expect("peer panicked");
}

#[test]
fn read_frame_reports_would_block_as_io_on_a_nonblocking_socket() {
    // A non-blocking socket with nothing to read: read_frame reports WouldBlock as I/O.
    let (ours, theirs) = pair();
    ours.set_nonblocking(true).expect("mode");
    let mut r = FrameReader::new(ours, spec("line"));
    let err = r.read_frame().expect_err("nothing to read");
    assert!(err.is_io(), "{err}");
    let io = std::error::Error::source(&err)
        .and_then(|e| e.downcast_ref::<std::io::Error>())
        .expect("the io::Error is the source");
    assert_eq!(io.kind(), ErrorKind::WouldBlock);
    drop(theirs);
}

/// Issue 9: `try_read_frame` on one `try_clone` of a stream must not disturb a writer on the
/// other. O_NONBLOCK belongs to the open file description that both clones share, so a
/// reader that switched it on for a moment made the writer's `write_all` fail with
/// `WouldBlock` in the middle of a frame.
#[test]
fn try_read_frame_leaves_a_cloned_writer_blocking() {
    // Writing goes on for RUN (or MAX_FRAMES): on the old code the first failure came within
    // a few hundred frames, a few tenths of a second.
    const RUN: Duration = Duration::from_millis(1500);
    const MAX_FRAMES: usize = 4096;
    const BODY: usize = 32 * 1024;
    let (ours, theirs) = pair();
    let (count_tx, count_rx) = mpsc::channel();
    // A slow reader at the far end: the writer's send buffer fills, so its writes block
    // (and would fail if the socket were non-blocking at that moment).
    let (_go, _done, server) = peer(theirs, move |s, _, _| {
        s.set_read_timeout(Some(LIMIT)).expect("read timeout");
        let mut r = FrameReader::new(s, spec("len:be:4:max=1048576"));
        let mut frames = 0usize;
        while let Some(f) = r.read_frame().expect("a whole frame") {
            assert_eq!(f.len(), BODY);
            frames += 1;
            // Pacing, not waiting for a condition: slow enough to keep the writer blocked.
            thread::sleep(Duration::from_millis(1));
        }
        count_tx.send(frames).expect("signal");
    });
    let w = ours.try_clone().expect("cloning");
    w.set_write_timeout(Some(LIMIT)).expect("write timeout");
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let reader = {
        let stop = stop.clone();
        thread::spawn(move || {
            let mut r = FrameReader::new(ours, spec("len:be:4"));
            let mut polls = 0u64;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                assert!(r.try_read_frame().expect("no error").is_none());
                polls += 1;
            }
            polls
        })
    };
    let mut w = FrameWriter::new(w, spec("len:be:4:max=1048576"));
    let body = vec![b'x'; BODY];
    let mut failed = None;
    let mut sent = 0;
    let start = Instant::now();
    while start.elapsed() < RUN && sent < MAX_FRAMES {
        if let Err(e) = w.write_frame(&body) {
            failed = Some(format!("frame {sent}: {e}"));
            break;
        }
        sent += 1;
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let polls = reader.join().expect("reader panicked");
    assert_eq!(
        failed, None,
        "a write failed while the reader polled {polls} times"
    );
    w.get_ref().shutdown(Shutdown::Write).expect("half-closing");
    assert_eq!(count_rx.recv_timeout(LIMIT).expect("the count"), sent);
    server.join().expect("server panicked");
}
