//! Request bodies: the request id, then filler, in bytes every framing that delimits frames
//! carries.
//!
//! ```text
//! request body, --size 16, framing line (94 bytes: base 94), worker 1, request 42:
//! +-------------------------------+-------------------------------+
//! | request id (8 digits, base B) | filler (xorshift, same bytes) |
//! | !  !  !  !  5  3  f  M        | X  7  ,  b  z  e  ?  L        |
//! +-------------------------------+-------------------------------+
//! ```
//!
//! The bytes are printable ASCII (`!` to `~`) without the framing's delimiter bytes, so a
//! body never holds a delimiter: under `line` or `delim:..` framing a body with one would be
//! cut in two by the echo server, and the request counted as an error. (Raw bytes did that
//! to one request in five at 64 bytes.) Any echo server returns the id unchanged, which is
//! what `mux` matches replies on.

use bytes::{BufMut, Bytes, BytesMut};

use crate::frame::FramingSpec;

/// Digits in a request id: [`MIN_SIZE`](super::MIN_SIZE) bytes.
const ID_DIGITS: usize = super::MIN_SIZE;

/// Makes request bodies for one framing.
#[derive(Debug, Clone)]
pub(super) struct Bodies {
    /// The bytes bodies are made of; never empty.
    alphabet: Vec<u8>,
}

impl Bodies {
    /// Bodies for `framing`: printable ASCII without its delimiter bytes.
    pub(super) fn new(framing: &FramingSpec) -> Self {
        let avoid: &[u8] = match framing {
            FramingSpec::Delimited(d) => &d.delimiter,
            _ => &[],
        };
        let mut alphabet: Vec<u8> = (b'!'..=b'~').filter(|b| !avoid.contains(b)).collect();
        if alphabet.is_empty() {
            // A delimiter of every printable byte: bodies of one byte, which the framing
            // check of `BenchConfig::validate` then refuses.
            alphabet.push(b'!');
        }
        Bodies { alphabet }
    }

    /// The id of request `seq` of worker `w`: unique among the requests in flight at once
    /// (each worker has one in flight) for up to 2^24 workers; ids repeat after 2^24
    /// requests of one worker.
    pub(super) fn id(w: u64, seq: u64) -> u64 {
        (w << 24) | (seq & 0xff_ffff)
    }

    /// A body of `size` bytes (at least the id's 8): `id` in base-`alphabet` digits, most
    /// significant first, then filler from `seed`.
    pub(super) fn body(&self, size: usize, id: u64, seed: u64) -> Bytes {
        let base = self.alphabet.len() as u64;
        let digit = |v: u64| {
            let i = usize::try_from(v % base).unwrap_or(0);
            self.alphabet.get(i).copied().unwrap_or(b'!')
        };
        let mut b = BytesMut::with_capacity(size.max(ID_DIGITS));
        let mut rest = id;
        let mut digits = [0u8; ID_DIGITS];
        for d in digits.iter_mut().rev() {
            *d = digit(rest);
            rest /= base;
        }
        b.put_slice(&digits);
        let mut x = seed | 1;
        while b.len() < size {
            // xorshift: cheap bytes that are not all the same.
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            b.put_u8(digit(x));
        }
        b.freeze()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bodies_hold_no_delimiter_byte_and_every_delimited_framing_carries_them() {
        for spec in [
            "line",
            "delim:0x03",
            "delim:0x0d0a",
            "delim:0x41",
            "len:be:2",
        ] {
            let framing = FramingSpec::parse(spec).unwrap();
            let bodies = Bodies::new(&framing);
            for seq in 0..2000u64 {
                let body = bodies.body(64, Bodies::id(seq % 7, seq), seq);
                assert_eq!(body.len(), 64);
                assert!(framing.carries(&body), "{spec}: {body:?}");
                if spec == "delim:0x41" {
                    assert!(!body.contains(&b'A'), "{body:?}");
                }
            }
        }
    }

    #[test]
    fn the_module_diagram_is_what_is_sent() {
        let bodies = Bodies::new(&FramingSpec::parse("line").unwrap());
        let body = bodies.body(16, Bodies::id(1, 42), 42 ^ 1);
        assert_eq!(&body[..], b"!!!!53fMX7,bze?L");
    }

    #[test]
    fn ids_of_requests_in_flight_differ() {
        let bodies = Bodies::new(&FramingSpec::parse("line").unwrap());
        let key = |w, seq| bodies.body(8, Bodies::id(w, seq), 1);
        assert_ne!(key(0, 1), key(1, 1));
        assert_ne!(key(300, 5), key(44, 5));
        assert_ne!(key(3, 1), key(3, 2));
        assert_eq!(key(3, 1), key(3, 1));
    }
}
