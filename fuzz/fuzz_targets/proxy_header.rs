//! Arbitrary bytes into the PROXY header parser, fed the way the server reads: each read is
//! appended to one `BytesMut` and `parse` is called again after every read (see
//! `read_proxy_header` in `crates/keepwire/src/server/conn.rs`). The first bytes choose one to
//! four chunk sizes (1 to 64 bytes, sometimes up to 4 KiB); the rest is the stream. Run it
//! with `fuzz/proxy.dict`.
//!
//! Checks, after every call:
//! - `Incomplete`: nothing was removed, and fewer than `MAX_HEADER` bytes are buffered (so a
//!   server holds at most `MAX_HEADER` plus one read);
//! - `Done`: exactly one header was removed from the front and the bytes after it are left as
//!   they were: the header alone parses to the same answer and is consumed whole, one byte
//!   less is `Incomplete`, a v1 header ends at its first CRLF within 107 bytes, a v2 header is
//!   16 bytes plus its length field, and a v1 TCP address is the one written in the line;
//! - `Invalid`: the buffer is untouched and the answer is final (feeding stops);
//! - how the stream was split does not matter: the whole input in one call gives the same
//!   answer.

#![no_main]

use std::net::{IpAddr, SocketAddr};

use bytes::BytesMut;
use keepwire::server::proxy_protocol::{MAX_HEADER, Parsed, parse};
use libfuzzer_sys::arbitrary::{Result, Unstructured};
use libfuzzer_sys::fuzz_target;

/// The v2 signature (PROXY protocol spec §2.2).
const V2_SIGNATURE: &[u8] = b"\r\n\r\n\0\r\nQUIT\n";
/// "a 108-byte buffer is always enough to store all the line and a trailing zero" (§2.1).
const V1_MAX: usize = 107;

/// One to four chunk sizes, cycled: mostly 1 to 64 bytes, sometimes anything up to 4 KiB
/// (a read of the server's size; `MAX_HEADER` is 4 KiB too).
fn chunk_sizes(u: &mut Unstructured<'_>) -> Result<Vec<usize>> {
    let n = u.int_in_range(1..=4usize)?;
    let mut sizes = Vec::with_capacity(n);
    for _ in 0..n {
        sizes.push(if u.ratio(1, 8)? {
            u.int_in_range(1..=4096usize)?
        } else {
            u.int_in_range(1..=64usize)?
        });
    }
    Ok(sizes)
}

fn one_call(bytes: &[u8]) -> (Parsed, BytesMut) {
    let mut b = BytesMut::from(bytes);
    let p = parse(&mut b);
    (p, b)
}

/// The client address a v1 line names, read independently of the parser.
fn v1_source(line: &[u8]) -> Option<SocketAddr> {
    let line = std::str::from_utf8(line.strip_suffix(b"\r\n")?).ok()?;
    let f: Vec<&str> = line.split(' ').collect();
    let ip: IpAddr = match f.get(1).copied()? {
        "TCP4" => IpAddr::V4(f.get(2)?.parse().ok()?),
        "TCP6" => IpAddr::V6(f.get(2)?.parse().ok()?),
        _ => return None,
    };
    Some(SocketAddr::new(ip, f.get(4)?.parse().ok()?))
}

/// Asserts that `header` (what `Done` removed) is exactly one well-formed header.
fn check_one_header(header: &[u8], addr: Option<SocketAddr>) {
    assert!(!header.is_empty(), "Done removed nothing");
    assert!(
        header.len() <= MAX_HEADER,
        "Done removed {} bytes, more than MAX_HEADER",
        header.len()
    );
    let (alone, left) = one_call(header);
    assert_eq!(alone, Parsed::Done(addr), "the header alone: {header:?}");
    assert!(left.is_empty(), "the header alone left {left:?}");
    if let Some(shorter) = header.get(..header.len() - 1).filter(|s| !s.is_empty()) {
        assert_eq!(
            one_call(shorter).0,
            Parsed::Incomplete,
            "a header one byte short: {shorter:?}"
        );
    }
    if header.starts_with(V2_SIGNATURE) {
        let len = header
            .get(14..16)
            .map(|l| u16::from_be_bytes([l[0], l[1]]))
            .expect("a v2 header holds its length field");
        assert_eq!(header.len(), 16 + usize::from(len), "v2 header length");
    } else {
        assert!(
            header.starts_with(b"PROXY "),
            "neither v1 nor v2: {header:?}"
        );
        assert!(
            header.len() <= V1_MAX,
            "v1 header of {} bytes",
            header.len()
        );
        let crlf = header.windows(2).position(|w| w == b"\r\n");
        assert_eq!(
            crlf,
            Some(header.len() - 2),
            "a v1 header ends at its first CRLF: {header:?}"
        );
        if let Some(a) = addr {
            assert_eq!(
                v1_source(header),
                Some(a),
                "v1 address: {:?}",
                String::from_utf8_lossy(header)
            );
        }
    }
}

fuzz_target!(|data: &[u8]| {
    let mut u = Unstructured::new(data);
    let Ok(chunks) = chunk_sizes(&mut u) else {
        return;
    };
    let input = u.take_rest();
    let (whole, whole_rest) = one_call(input);

    let mut buf = BytesMut::new();
    let mut fed = 0;
    let mut sizes = chunks.iter().copied().cycle();
    while fed < input.len() {
        let n = sizes.next().unwrap_or(1).clamp(1, input.len() - fed);
        buf.extend_from_slice(&input[fed..fed + n]);
        fed += n;
        assert!(
            buf.len() <= MAX_HEADER + n,
            "{} bytes buffered before parse, MAX_HEADER {MAX_HEADER} + chunk {n}",
            buf.len()
        );
        match parse(&mut buf) {
            Parsed::Incomplete => {
                assert_eq!(&buf[..], &input[..fed], "Incomplete changed the buffer");
                assert!(
                    buf.len() < MAX_HEADER,
                    "Incomplete with {} bytes buffered, the cap is {MAX_HEADER}",
                    buf.len()
                );
            }
            Parsed::Done(addr) => {
                let used = fed
                    .checked_sub(buf.len())
                    .expect("Done left more bytes than were fed");
                assert_eq!(&buf[..], &input[used..fed], "the bytes after the header");
                check_one_header(&input[..used], addr);
                assert_eq!(whole, Parsed::Done(addr), "split vs. whole input");
                assert_eq!(&whole_rest[..], &input[used..], "split vs. whole input");
                return;
            }
            Parsed::Invalid(msg) => {
                assert!(!msg.is_empty(), "an empty reason");
                assert_eq!(&buf[..], &input[..fed], "Invalid changed the buffer");
                assert!(
                    matches!(whole, Parsed::Invalid(_)),
                    "{msg} after {fed} bytes, but the whole input gives {whole:?}"
                );
                return;
            }
        }
    }
    // All fed and still incomplete (or nothing to feed): one call on the whole agrees.
    assert!(
        input.is_empty() || whole == Parsed::Incomplete,
        "split gives Incomplete, whole input {whole:?}"
    );
});
