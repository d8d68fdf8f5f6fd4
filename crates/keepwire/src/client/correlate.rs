//! Correlation keys: which request a reply answers, on a multiplexed connection.

use bytes::Bytes;

/// A correlation key, as taken from a frame: compared byte for byte.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Key(pub Bytes);

impl From<&[u8]> for Key {
    fn from(b: &[u8]) -> Self {
        Key(Bytes::copy_from_slice(b))
    }
}

impl From<u32> for Key {
    fn from(n: u32) -> Self {
        Key(Bytes::copy_from_slice(&n.to_be_bytes()))
    }
}

/// Takes the correlation key out of a frame: the request's key and its reply's key must be
/// equal. Implemented for [`ByteRange`] and for closures `Fn(&[u8]) -> Option<Key>`; protocol
/// templates (CMPP `Sequence_Id`, ISO 8583 field 11) implement it too.
///
/// Return `None` for frames that are not replies (server-initiated messages): they then go to
/// the unsolicited stream. A bare [`ByteRange`] cannot tell; where the server initiates messages
/// with sequence numbers of its own (CMPP `DELIVER`), use a closure that also checks the
/// response bit of the command id, or a server message may be taken as the reply to a request
/// that happens to carry the same number.
///
/// ```
/// use keepwire::client::{ByteRange, Correlate, Key};
/// // CMPP: Total_Length(4) Command_Id(4) Sequence_Id(4); the frame keeps its header.
/// let seq = ByteRange::new(8, 4);
/// assert_eq!(seq.key(b"\0\0\0\x0c\0\0\0\x04\0\0\0\x07").unwrap(), Key::from(7u32));
/// assert_eq!(seq.key(b"short"), None);
/// let first_byte = |f: &[u8]| f.first().map(|b| Key::from(&[*b][..]));
/// assert_eq!(first_byte.key(b"xyz"), Some(Key::from(&b"x"[..])));
/// ```
pub trait Correlate: Send + Sync + 'static {
    /// The key of `frame`, `None` when it has none (too short, or not a reply).
    fn key(&self, frame: &[u8]) -> Option<Key>;

    /// The key of a request this side sends; by default [`key`](Self::key). A protocol whose
    /// partner sends requests numbered in its own series (SMPP deliver_sm) keys only
    /// responses in [`key`](Self::key), and every request of ours here.
    fn request_key(&self, frame: &[u8]) -> Option<Key> {
        self.key(frame)
    }

    /// `frame` with its key replaced by `key`, for a gateway that must keep the keys of
    /// several clients apart on one connection (`keepwire proxy`); `None` (the default) when
    /// this key cannot be rewritten, or `key` does not fit (another length, a frame too
    /// short).
    fn rekey(&self, frame: &[u8], key: &Key) -> Option<Bytes> {
        let _ = (frame, key);
        None
    }

    /// `frame` under a fresh key made from the counter `n`, and that key, for a gateway whose
    /// clients' keys collide (`keepwire proxy`); `None` when this key cannot be rewritten.
    /// By default `n` is written over the request's key through [`rekey`](Self::rekey): as
    /// decimal digits where that key is all digits (a STAN stays a STAN), else as big-endian
    /// bytes, keeping its length. A template whose key is more than a number (ISO 8583:
    /// response MTI + STAN + terminal id) renumbers the frame and keys the result.
    fn renumber(&self, frame: &[u8], n: u64) -> Option<(Bytes, Key)> {
        let own = self.request_key(frame)?;
        let digits = !own.0.is_empty() && own.0.iter().all(u8::is_ascii_digit);
        let key = Key(fresh_key(n, own.0.len(), digits));
        Some((self.rekey(frame, &key)?, key))
    }
}

/// Counter `n` as a key of `len` bytes: decimal digits (the last `len` of them) or
/// big-endian bytes (zero-padded on the left, or the low `len` bytes).
fn fresh_key(n: u64, len: usize, digits: bool) -> Bytes {
    let mut out = vec![if digits { b'0' } else { 0 }; len];
    let mut v = n;
    for b in out.iter_mut().rev() {
        if digits {
            // `v % 10` is below 10: the narrowing cannot lose anything.
            *b = b'0' + u8::try_from(v % 10).unwrap_or(0);
            v /= 10;
        } else {
            *b = u8::try_from(v & 0xff).unwrap_or(0);
            v >>= 8;
        }
    }
    Bytes::from(out)
}

/// The key is `len` bytes at `offset` in the frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ByteRange {
    /// Where the key starts, from the frame's first byte.
    pub offset: usize,
    /// How many bytes.
    pub len: usize,
}

impl ByteRange {
    /// `len` bytes at `offset`.
    pub fn new(offset: usize, len: usize) -> Self {
        ByteRange { offset, len }
    }
}

/// Why a `--correlate` range did not parse, from [`ByteRange`]'s `FromStr`.
///
/// ```
/// use keepwire::client::ByteRange;
/// let e = "8".parse::<ByteRange>().unwrap_err();
/// assert!(e.is_missing_colon());
/// assert_eq!(e.to_string(), "correlation range \"8\": no ':' found; expected OFFSET:LEN, e.g. 8:4");
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct ByteRangeError {
    input: String,
    kind: ByteRangeErrorKind,
}

/// What was wrong with a range; see [`ByteRangeError::kind`].
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum ByteRangeErrorKind {
    /// No `:` between offset and length.
    MissingColon,
    /// The offset is not a whole number of bytes.
    BadOffset(String),
    /// The length is not a whole number of bytes.
    BadLen(String),
    /// The length is zero: an empty key matches every frame.
    ZeroLen,
}

impl ByteRangeError {
    fn new(input: &str, kind: ByteRangeErrorKind) -> Self {
        ByteRangeError {
            input: input.to_owned(),
            kind,
        }
    }

    /// What was wrong.
    pub fn kind(&self) -> &ByteRangeErrorKind {
        &self.kind
    }

    /// The text had no `:`.
    pub fn is_missing_colon(&self) -> bool {
        self.kind == ByteRangeErrorKind::MissingColon
    }

    /// The length was zero.
    pub fn is_zero_len(&self) -> bool {
        self.kind == ByteRangeErrorKind::ZeroLen
    }
}

impl std::fmt::Display for ByteRangeError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "correlation range {:?}: ", self.input)?;
        match &self.kind {
            ByteRangeErrorKind::MissingColon => f.write_str("no ':' found"),
            ByteRangeErrorKind::BadOffset(o) => {
                write!(f, "offset {o:?} is not a whole number of bytes")
            }
            ByteRangeErrorKind::BadLen(l) => {
                write!(f, "length {l:?} is not a whole number of bytes")
            }
            ByteRangeErrorKind::ZeroLen => f.write_str("length 0 would match every frame"),
        }?;
        f.write_str("; expected OFFSET:LEN, e.g. 8:4")
    }
}

impl std::error::Error for ByteRangeError {}

impl std::str::FromStr for ByteRange {
    type Err = ByteRangeError;

    /// `OFFSET:LEN`, as `--correlate` takes it.
    fn from_str(s: &str) -> Result<Self, ByteRangeError> {
        let err = |kind| ByteRangeError::new(s, kind);
        let (o, l) = s
            .split_once(':')
            .ok_or_else(|| err(ByteRangeErrorKind::MissingColon))?;
        let offset = o
            .trim()
            .parse()
            .map_err(|_| err(ByteRangeErrorKind::BadOffset(o.trim().to_owned())))?;
        let len: usize = l
            .trim()
            .parse()
            .map_err(|_| err(ByteRangeErrorKind::BadLen(l.trim().to_owned())))?;
        if len == 0 {
            return Err(err(ByteRangeErrorKind::ZeroLen));
        }
        Ok(ByteRange { offset, len })
    }
}

impl Correlate for ByteRange {
    fn key(&self, frame: &[u8]) -> Option<Key> {
        let end = self.offset.checked_add(self.len)?;
        frame.get(self.offset..end).map(Key::from)
    }

    /// The same frame with `key` written over the range.
    ///
    /// ```
    /// use keepwire::client::{ByteRange, Correlate, Key};
    /// let r = ByteRange::new(2, 3);
    /// assert_eq!(r.rekey(b"ab123cd", &Key::from(&b"999"[..])).unwrap(), "ab999cd");
    /// assert_eq!(r.rekey(b"ab123cd", &Key::from(&b"99"[..])), None);
    /// assert_eq!(r.rekey(b"ab1", &Key::from(&b"999"[..])), None);
    /// ```
    fn rekey(&self, frame: &[u8], key: &Key) -> Option<Bytes> {
        let end = self.offset.checked_add(self.len)?;
        if key.0.len() != self.len || frame.len() < end {
            return None;
        }
        let mut out = bytes::BytesMut::from(frame);
        out.get_mut(self.offset..end)?.copy_from_slice(&key.0);
        Some(out.freeze())
    }
}

impl<F> Correlate for F
where
    F: Fn(&[u8]) -> Option<Key> + Send + Sync + 'static,
{
    fn key(&self, frame: &[u8]) -> Option<Key> {
        self(frame)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fresh_keys_keep_their_length_and_kind() {
        assert_eq!(fresh_key(42, 6, true), "000042");
        assert_eq!(fresh_key(1_234_567, 3, true), "567");
        assert_eq!(fresh_key(0x0102, 4, false), &b"\0\0\x01\x02"[..]);
        assert_eq!(fresh_key(0x0102_0304, 1, false), &b"\x04"[..]);
    }

    #[test]
    fn byte_range_never_panics_on_short_or_huge_ranges() {
        assert_eq!(ByteRange::new(usize::MAX, 2).key(b"abc"), None);
        assert_eq!(ByteRange::new(1, 3).key(b"abc"), None);
        assert_eq!(
            ByteRange::new(1, 2).key(b"abc"),
            Some(Key::from(&b"bc"[..]))
        );
        assert_eq!("8:4".parse::<ByteRange>().unwrap(), ByteRange::new(8, 4));
        assert!("8".parse::<ByteRange>().unwrap_err().is_missing_colon());
        assert!("8:0".parse::<ByteRange>().unwrap_err().is_zero_len());
    }

    #[test]
    fn byte_range_errors_name_what_was_found() {
        let e = "x:4".parse::<ByteRange>().unwrap_err();
        assert_eq!(e.kind(), &ByteRangeErrorKind::BadOffset("x".into()));
        assert_eq!(
            e.to_string(),
            "correlation range \"x:4\": offset \"x\" is not a whole number of bytes; \
             expected OFFSET:LEN, e.g. 8:4"
        );
        let e = "8:-1".parse::<ByteRange>().unwrap_err();
        assert_eq!(e.kind(), &ByteRangeErrorKind::BadLen("-1".into()));
        assert!(e.to_string().contains("length \"-1\""), "{e}");
    }
}
