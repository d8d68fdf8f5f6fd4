//! The PROXY protocol (HAProxy's, versions 1 and 2): how a load balancer tells the server who
//! the real client is.
//!
//! Behind HAProxy, nginx (`proxy_protocol on`) or a cloud L4 balancer, every connection comes
//! from the balancer's address. With the PROXY protocol the balancer writes one header before
//! the client's first byte:
//!
//! ```text
//! v1: "PROXY TCP4 198.51.100.7 203.0.113.9 40312 7000\r\n"       (text, at most 107 bytes)
//! v2: 0d 0a 0d 0a 00 0d 0a 51 55 49 54 0a | ver/cmd | fam | len(2) | addresses | TLVs
//! ```
//!
//! "The receiver MUST be configured to only receive the protocol described in this
//! specification and MUST not try to guess whether the protocol header is present or not"
//! (PROXY protocol spec §2): when enabled, a connection without a valid header is closed.
//! A v2 `LOCAL` command or a v1 `UNKNOWN` (the balancer's own health checks) keeps the socket's
//! address. Parsing is done by the `ppp` crate; this module bounds what it reads and how long.

use std::net::SocketAddr;

use bytes::{Buf, BytesMut};
use ppp::{HeaderResult, PartialResult, v1, v2};

/// The v2 signature (spec §2.2).
const V2_SIGNATURE: &[u8] = b"\r\n\r\n\0\r\nQUIT\n";
/// The v1 prefix.
const V1_PREFIX: &[u8] = b"PROXY ";
/// The longest v1 header, CRLF included: "a 108-byte buffer is always enough to store all the
/// line and a trailing zero" (spec §2.1).
const V1_MAX: usize = 107;
/// The largest PROXY header accepted, in bytes: a v1 header is at most 107 bytes (spec §2.1);
/// a v2 header may carry TLVs up to 65 535 + 16 bytes (spec §2.2), which we cap here.
///
/// [`parse`] answers [`Parsed::Incomplete`] only while the buffer holds fewer bytes than this,
/// so a server that reads until the header is complete buffers at most `MAX_HEADER` plus one
/// read.
pub const MAX_HEADER: usize = 4096;

/// What [`parse`] made of the bytes received so far.
#[derive(Debug, PartialEq, Eq)]
pub enum Parsed {
    /// A prefix of a valid header, shorter than [`MAX_HEADER`]: read more and call [`parse`]
    /// again. Nothing was removed from the buffer.
    Incomplete,
    /// A valid header, now removed from the buffer (the bytes after it are left as they
    /// were); `Some(addr)` is the client's address, `None` means keep the socket's (a v2
    /// `LOCAL` command, a v1 `UNKNOWN`, or a v2 family other than TCP over IPv4/IPv6).
    Done(Option<SocketAddr>),
    /// Not a PROXY header, a malformed one, or one longer than [`MAX_HEADER`]: close the
    /// connection. The message says what was seen; the buffer is left as it was.
    Invalid(String),
}

/// Parses a PROXY header (v1 or v2) at the start of `buf`, removing it when complete.
///
/// Call it with whatever has been read so far and, while it answers
/// [`Parsed::Incomplete`], again after appending each further read: it looks at the whole
/// buffer every time, so how the header was split into reads does not matter. This is what
/// the server does on every connection when `ServerConfig::proxy_protocol` is on.
///
/// # Errors
/// Returns [`Parsed::Invalid`] when `buf` does not start like a v1 (`"PROXY "`) or v2 (the
/// 12-byte signature) header, when the header is malformed (a v1 line with missing fields,
/// bad addresses or ports, or no CRLF within 107 bytes; a v2 version, command or length
/// that does not fit), or when `MAX_HEADER` bytes arrived without a complete header. A v1
/// header is judged once its whole line is in. The answer is final: more bytes cannot make
/// a rejected header valid ("the receiver MUST be configured to only receive the protocol
/// described in this specification", spec §2).
///
/// # Example
/// A v1 header that arrives in two reads, followed by the client's first frame:
///
/// ```
/// use bytes::BytesMut;
/// use keepwire::server::proxy_protocol::{Parsed, parse};
///
/// let mut buf = BytesMut::from(&b"PROXY TCP4 198.51.100.7 203.0.113.9 40312"[..]);
/// assert_eq!(parse(&mut buf), Parsed::Incomplete);
/// assert_eq!(buf.len(), 41, "nothing is removed while incomplete");
///
/// buf.extend_from_slice(b" 7000\r\n0005hello");
/// let client = "198.51.100.7:40312".parse().unwrap();
/// assert_eq!(parse(&mut buf), Parsed::Done(Some(client)));
/// assert_eq!(&buf[..], b"0005hello", "the bytes after the header are kept");
///
/// let mut junk = BytesMut::from(&b"GET / HTTP/1.1\r\n"[..]);
/// assert!(matches!(parse(&mut junk), Parsed::Invalid(_)));
/// ```
pub fn parse(buf: &mut BytesMut) -> Parsed {
    let n = buf.len().min(V2_SIGNATURE.len());
    let v2_like = buf.get(..n) == V2_SIGNATURE.get(..n);
    let n1 = buf.len().min(V1_PREFIX.len());
    let v1_like = buf.get(..n1) == V1_PREFIX.get(..n1);
    if !v2_like && !v1_like {
        return Parsed::Invalid(format!(
            "expected a PROXY protocol header, got {:?}",
            crate::text::escape(buf.get(..buf.len().min(16)).unwrap_or_default())
        ));
    }
    // The two signatures differ in their first byte, so the version is known from it (ppp's
    // own HeaderResult::parse retries a broken v2 header as v1, which looks incomplete).
    let res: HeaderResult<'_> = if v2_like {
        let res = v2::Header::try_from(&buf[..]);
        if res.is_incomplete() {
            if buf.len() >= MAX_HEADER {
                return Parsed::Invalid(format!("PROXY header longer than {MAX_HEADER} bytes"));
            }
            return Parsed::Incomplete;
        }
        res.into()
    } else {
        // A v1 header is one line, and nothing about it is decided before the line ends: ppp
        // checks a partial line field by field and rejects some prefixes of valid headers
        // ("PROXY TCP4 " has an empty source address, "... 40312 " an empty port), so a
        // header that TCP split after a space was refused. ppp ends the line at its first CR
        // and the byte after it; with that line in hand, its answer is final.
        let line = match v1_line_end(buf) {
            Ok(end) => buf.get(..end).unwrap_or_default(),
            Err(answer) => return answer,
        };
        v1::Header::try_from(line).into()
    };
    let (len, addr) = match res {
        HeaderResult::V1(Ok(h)) => (
            h.header.len(),
            match h.addresses {
                v1::Addresses::Tcp4(a) => Some(SocketAddr::from((a.source_address, a.source_port))),
                v1::Addresses::Tcp6(a) => Some(SocketAddr::from((a.source_address, a.source_port))),
                v1::Addresses::Unknown => None,
            },
        ),
        HeaderResult::V2(Ok(h)) => (
            h.len(),
            match (h.command, h.addresses) {
                (v2::Command::Local, _) => None,
                (_, v2::Addresses::IPv4(a)) => {
                    Some(SocketAddr::from((a.source_address, a.source_port)))
                }
                (_, v2::Addresses::IPv6(a)) => {
                    Some(SocketAddr::from((a.source_address, a.source_port)))
                }
                (_, v2::Addresses::Unspecified | v2::Addresses::Unix(_)) => None,
            },
        ),
        HeaderResult::V1(Err(e)) => return Parsed::Invalid(format!("bad PROXY v1 header: {e}")),
        HeaderResult::V2(Err(e)) => return Parsed::Invalid(format!("bad PROXY v2 header: {e}")),
    };
    if len > buf.len() || len > MAX_HEADER {
        return Parsed::Invalid(format!("PROXY header of {len} bytes is not acceptable"));
    }
    buf.advance(len);
    Parsed::Done(addr)
}

/// Where the v1 line at the start of `buf` ends (after its first CR and the LF that must
/// follow it), or what to answer while it has not ended.
fn v1_line_end(buf: &[u8]) -> Result<usize, Parsed> {
    match memchr::memchr(b'\r', buf).map(|cr| cr.saturating_add(2)) {
        Some(end) if end > V1_MAX => Err(Parsed::Invalid(format!(
            "PROXY v1 header longer than {V1_MAX} bytes"
        ))),
        Some(end) if end > buf.len() => Err(Parsed::Incomplete),
        // "The header ends with a CRLF sequence" (spec §2.1). ppp takes whatever byte follows
        // the CR once an LF field came earlier ("PROXY UNKNOWN \n\r\0"), eating a client byte.
        Some(end) if buf.get(end - 1) != Some(&b'\n') => Err(Parsed::Invalid(
            "PROXY v1 header: CR not followed by LF".into(),
        )),
        Some(end) => Ok(end),
        None if buf.len() >= V1_MAX => Err(Parsed::Invalid(format!(
            "PROXY v1 header without CRLF in its first {V1_MAX} bytes"
        ))),
        None => Err(Parsed::Incomplete),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn feed(bytes: &[u8]) -> (Parsed, BytesMut) {
        let mut b = BytesMut::from(bytes);
        (parse(&mut b), b)
    }

    #[test]
    fn v1_tcp4_and_rest_kept() {
        let (p, rest) = feed(b"PROXY TCP4 198.51.100.7 203.0.113.9 40312 7000\r\n0005hello");
        assert_eq!(p, Parsed::Done(Some("198.51.100.7:40312".parse().unwrap())));
        assert_eq!(&rest[..], b"0005hello");
    }

    #[test]
    fn v1_tcp6_unknown_and_partial() {
        let (p, _) = feed(b"PROXY TCP6 2001:db8::1 2001:db8::2 1000 2000\r\n");
        assert_eq!(p, Parsed::Done(Some("[2001:db8::1]:1000".parse().unwrap())));
        assert_eq!(feed(b"PROXY UNKNOWN\r\n").0, Parsed::Done(None));
        assert_eq!(feed(b"PROXY TCP4 1.2.3.4").0, Parsed::Incomplete);
        assert_eq!(feed(b"PRO").0, Parsed::Incomplete);
    }

    #[test]
    fn v2_proxy_and_local() {
        let hdr = v2::Builder::with_addresses(
            v2::Version::Two | v2::Command::Proxy,
            v2::Protocol::Stream,
            (
                "198.51.100.7:40312".parse::<SocketAddr>().unwrap(),
                "203.0.113.9:7000".parse::<SocketAddr>().unwrap(),
            ),
        )
        .build()
        .unwrap();
        let mut bytes = hdr.clone();
        bytes.extend_from_slice(b"tail");
        let (p, rest) = feed(&bytes);
        assert_eq!(p, Parsed::Done(Some("198.51.100.7:40312".parse().unwrap())));
        assert_eq!(&rest[..], b"tail");
        for cut in 1..hdr.len() {
            assert_eq!(feed(&hdr[..cut]).0, Parsed::Incomplete, "cut at {cut}");
        }
        let local = v2::Builder::with_addresses(
            v2::Version::Two | v2::Command::Local,
            v2::Protocol::Unspecified,
            v2::Addresses::Unspecified,
        )
        .build()
        .unwrap();
        assert_eq!(feed(&local).0, Parsed::Done(None));
    }

    /// Found by the `proxy_header` fuzz target: ppp rejected prefixes of valid v1 headers
    /// that end in a space ("PROXY TCP4 ", "... 40312 "), so a header split there by TCP was
    /// refused; and it called "PROXY OPRO" invalid but "PROXY OPROXY" incomplete.
    #[test]
    fn v1_split_at_every_offset_waits_for_the_line() {
        for (hdr, addr) in [
            (
                &b"PROXY TCP4 198.51.100.7 203.0.113.9 40312 7000\r\n"[..],
                Some("198.51.100.7:40312"),
            ),
            (
                b"PROXY TCP6 2001:db8::1 2001:db8::2 1000 2000\r\n",
                Some("[2001:db8::1]:1000"),
            ),
            (b"PROXY UNKNOWN\r\n", None),
            (b"PROXY UNKNOWN 2001:db8::1 2001:db8::2 1000 2000\r\n", None),
        ] {
            for cut in 1..hdr.len() {
                assert_eq!(
                    feed(&hdr[..cut]).0,
                    Parsed::Incomplete,
                    "{hdr:?} cut at {cut}"
                );
            }
            let mut bytes = hdr.to_vec();
            bytes.extend_from_slice(b"0005hello");
            let (p, rest) = feed(&bytes);
            let addr = addr.map(|a| a.parse().unwrap());
            assert_eq!(p, Parsed::Done(addr), "{hdr:?}");
            assert_eq!(&rest[..], b"0005hello");
        }
        assert_eq!(feed(b"PROXY OPRO").0, Parsed::Incomplete);
        assert_eq!(feed(b"PROXY OPROXY").0, Parsed::Incomplete);
        assert!(matches!(feed(b"PROXY OPROXY\r\n").0, Parsed::Invalid(_)));
    }

    #[test]
    fn v1_line_ends_at_its_first_cr_within_107_bytes() {
        assert_eq!(feed(b"PROXY UNKNOWN\r").0, Parsed::Incomplete);
        assert!(matches!(feed(b"PROXY UNKNOWN\rX").0, Parsed::Invalid(_)));
        // UNKNOWN may carry anything up to the CRLF; the line may be 107 bytes, not 108.
        let line = |len: usize| {
            let mut l = b"PROXY UNKNOWN ".to_vec();
            l.resize(len - 2, b'x');
            l.extend_from_slice(b"\r\n");
            l
        };
        assert_eq!(feed(&line(107)).0, Parsed::Done(None));
        assert!(matches!(feed(&line(108)).0, Parsed::Invalid(_)));
        assert!(matches!(feed(&line(108)[..107]).0, Parsed::Invalid(_)));
        assert_eq!(feed(&line(108)[..106]).0, Parsed::Incomplete);
    }

    /// Found by the `proxy_header` fuzz target: ppp accepted an UNKNOWN line whose CR was
    /// followed by any byte, once a lone LF field came before it, and removed that byte too.
    #[test]
    fn v1_cr_must_be_followed_by_lf() {
        assert!(matches!(
            feed(b"PROXY UNKNOWN \n\r\x000005hello").0,
            Parsed::Invalid(_)
        ));
        assert!(matches!(feed(b"PROXY UNKNOWN \n\rX").0, Parsed::Invalid(_)));
    }

    #[test]
    fn garbage_is_rejected_at_once() {
        for g in [
            &b"0005hello"[..],
            b"GET / HTTP/1.1\r\n",
            b"\r\n\r\nX",
            b"PROXY TCP4 x y 1 2\r\n",
            b"\r\n\r\n\x00\r\nQUIT\n\x99\x11\x00\x00",
            b"PROXY TCP4 nonsense\r\n",
            b"PROXY TCP4 1.2.3.4\r\n",
        ] {
            assert!(matches!(feed(g).0, Parsed::Invalid(_)), "{g:?}");
        }
        let mut long = b"PROXY TCP4 ".to_vec();
        long.extend(std::iter::repeat_n(b'1', 200));
        assert!(matches!(feed(&long).0, Parsed::Invalid(_)));
    }
}
