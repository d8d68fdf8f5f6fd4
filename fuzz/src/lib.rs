//! What the keepwire fuzz targets share: a spec drawn from the first bytes of the input (so the
//! fuzzer explores encodings, widths and options, not one fixed spec), chunk sizes drawn from
//! the next few, and a driver that feeds the rest to a [`FrameCodec`] and asserts that it never
//! buffers or reserves more than one frame's worth of its `max`.
//!
//! Specs are written out as strings and parsed, the way a user configures them, so every
//! target also exercises the parser; a drawn spec that fails to parse is a crash.
//!
//! [`known_bug`] lets a campaign step over a bug that is reported and not yet fixed, so that
//! the rest of a target still gets fuzzed; by default every check runs.

#![forbid(unsafe_code)]

use std::sync::OnceLock;

use bytes::{Bytes, BytesMut};
use keepwire::frame::{FrameCodec, FrameErrorKind, FramingSpec};
use libfuzzer_sys::arbitrary::{Result, Unstructured};
use tokio_util::codec::Decoder;

/// Whether the environment variable `KEEPWIRE_FUZZ_KNOWN` (a comma-separated list) names this
/// known bug. A target checks it only where that bug would fire, and skips just the check
/// the bug breaks. Unset, it is always `false`: a plain run checks everything.
pub fn known_bug(name: &str) -> bool {
    static KNOWN: OnceLock<Vec<String>> = OnceLock::new();
    KNOWN
        .get_or_init(|| {
            std::env::var("KEEPWIRE_FUZZ_KNOWN")
                .map(|v| v.split(',').map(|k| k.trim().to_owned()).collect())
                .unwrap_or_default()
        })
        .iter()
        .any(|k| k == name)
}

/// A spec and what the driver needs to know to bound it.
#[derive(Debug)]
pub struct Drawn {
    /// The spec, parsed from [`Drawn::text`].
    pub spec: FramingSpec,
    /// The spec string it was parsed from.
    pub text: String,
    /// Wire bytes of one frame beyond `max_frame`: the length field or the delimiter.
    pub overhead: usize,
    /// Under `keep`, the delimiter that decoded frames carry.
    pub keep: Option<Vec<u8>>,
}

impl Drawn {
    fn parse(text: String, overhead: usize, keep: Option<Vec<u8>>) -> Self {
        let spec = FramingSpec::parse(&text)
            .unwrap_or_else(|e| panic!("drawn spec {text:?} does not parse: {e}"));
        Drawn {
            spec,
            text,
            overhead,
            keep,
        }
    }

    /// The longest frame a decoder may return.
    pub fn longest_frame(&self) -> usize {
        self.spec.max_frame() + self.keep.as_ref().map_or(0, Vec::len)
    }

    /// What the decoder gives back for a frame `encode_to` accepted, if anything.
    pub fn decoded_form(&self, frame: &[u8]) -> Option<Vec<u8>> {
        match &self.keep {
            // `keep` frames carry their delimiter; encode takes them with or without it.
            Some(d) if !frame.ends_with(d) => Some([frame, d].concat()),
            // `eof` has no empty message: nothing goes on the wire.
            _ if self.spec.is_until_close() && frame.is_empty() => None,
            _ => Some(frame.to_vec()),
        }
    }
}

/// `:max=N`, mostly small, sometimes the 8 MiB default (absent).
fn max_opt(u: &mut Unstructured<'_>) -> Result<String> {
    Ok(if u.ratio(1, 16)? {
        String::new()
    } else {
        format!(":max={}", u.int_in_range(0..=70_000usize)?)
    })
}

/// `len:<enc>:<width>` with any of `incl`, `skip=`, `adj=`, `max=`.
pub fn length_spec(u: &mut Unstructured<'_>) -> Result<Drawn> {
    let (enc, width) = match u.int_in_range(0..=4u8)? {
        0 => ("ascii", u.int_in_range(1..=19usize)?),
        1 => ("hex", u.int_in_range(1..=16usize)?),
        2 => ("bcd", u.int_in_range(1..=9usize)?),
        3 => ("be", *u.choose(&[1usize, 2, 3, 4, 8])?),
        _ => ("le", *u.choose(&[1usize, 2, 3, 4, 8])?),
    };
    let mut s = format!("len:{enc}:{width}");
    if u.arbitrary::<bool>()? {
        s.push_str(":incl");
    }
    if u.arbitrary::<bool>()? {
        let skip = if u.ratio(1, 8)? {
            u.int_in_range(0..=65_536usize)?
        } else {
            u.int_in_range(0..=8usize)?
        };
        s.push_str(&format!(":skip={skip}"));
    }
    if u.arbitrary::<bool>()? {
        s.push_str(&format!(":adj={}", u.int_in_range(-64..=64i64)?));
    }
    s.push_str(&max_opt(u)?);
    Ok(Drawn::parse(s, width, None))
}

/// `delim:<1-4 bytes>[:max=N][:keep]` (written as hex), or `line[:max=N]`.
pub fn delimited_spec(u: &mut Unstructured<'_>) -> Result<Drawn> {
    if u.ratio(1, 5)? {
        let s = format!("line{}", max_opt(u)?);
        return Ok(Drawn::parse(s, 1, None));
    }
    let n = u.int_in_range(1..=4usize)?;
    let mut delim = Vec::with_capacity(n);
    for _ in 0..n {
        delim.push(u.arbitrary::<u8>()?);
    }
    let keep = u.arbitrary::<bool>()?;
    let mut s = format!("delim:0x{}", keepwire::text::to_hex(&delim));
    s.push_str(&max_opt(u)?);
    if keep {
        s.push_str(":keep");
    }
    Ok(Drawn::parse(s, n, keep.then_some(delim)))
}

/// `fixed:<N>`, N from 1 to 1024 (sometimes up to 70 000).
pub fn fixed_spec(u: &mut Unstructured<'_>) -> Result<Drawn> {
    let n = if u.ratio(1, 8)? {
        u.int_in_range(1..=70_000usize)?
    } else {
        u.int_in_range(1..=1024usize)?
    };
    Ok(Drawn::parse(format!("fixed:{n}"), 0, None))
}

/// `eof[:max=N]`.
pub fn until_close_spec(u: &mut Unstructured<'_>) -> Result<Drawn> {
    let s = format!("eof{}", max_opt(u)?);
    Ok(Drawn::parse(s, 0, None))
}

/// Any kind of spec.
pub fn any_spec(u: &mut Unstructured<'_>) -> Result<Drawn> {
    match u.int_in_range(0..=3u8)? {
        0 => length_spec(u),
        1 => delimited_spec(u),
        2 => fixed_spec(u),
        _ => until_close_spec(u),
    }
}

/// One to four chunk sizes, cycled while feeding: mostly 1 to 64 bytes, sometimes 4 KiB.
pub fn chunk_sizes(u: &mut Unstructured<'_>) -> Result<Vec<usize>> {
    let n = u.int_in_range(1..=4usize)?;
    let mut sizes = Vec::with_capacity(n);
    for _ in 0..n {
        let b = u.arbitrary::<u8>()?;
        sizes.push(if b >= 0xf0 {
            4096
        } else {
            usize::from(b % 64) + 1
        });
    }
    Ok(sizes)
}

/// What a run of the decoder gave back.
#[derive(Debug)]
pub struct Decoded {
    /// The frames, in order.
    pub frames: Vec<Bytes>,
    /// The run ended in a decode error (after which the codec was checked to stay failed).
    pub failed: bool,
}

/// The capacity a `BytesMut` may show when nothing asked it for more than `pending + chunk`
/// bytes: bytes 1.x grows to at most `max(2 * old, needed + consumed prefix)`, which stays
/// under `4 * needed`, and a shared buffer is replaced by one of at most
/// `max(needed, 64 KiB)`. A reservation from an unchecked peer length lands far above.
pub fn capacity_bound(pending: usize, chunk: usize) -> usize {
    4usize
        .saturating_mul(pending.saturating_add(chunk))
        .saturating_add(64 * 1024)
}

/// Feeds `wire` to a fresh codec in pieces of `chunks` (cycled), calling `decode` until it
/// wants more after each piece and `decode_eof` at the end, and panics if the codec holds more
/// than one unfinished frame beyond the piece just added, reserves past
/// [`capacity_bound`], returns a frame over `max`, or forgets an error.
pub fn decode_bounded(d: &Drawn, chunks: &[usize], wire: &[u8]) -> Decoded {
    let spec = &d.text;
    // After `Ok(None)` the buffer holds less than one whole frame.
    let pending = d.spec.max_frame().saturating_add(d.overhead);
    let largest = chunks
        .iter()
        .copied()
        .max()
        .unwrap_or(1)
        .clamp(1, wire.len().max(1));
    let cap_bound = capacity_bound(pending, largest);
    let mut codec = FrameCodec::new(d.spec.clone());
    let mut buf = BytesMut::new();
    let mut frames = Vec::new();
    let mut rest = wire;
    let mut sizes = chunks.iter().copied().cycle();
    loop {
        let eof = rest.is_empty();
        let chunk = if eof {
            0
        } else {
            let n = sizes.next().unwrap_or(1).clamp(1, rest.len());
            let (now, later) = rest.split_at(n);
            buf.extend_from_slice(now);
            rest = later;
            n
        };
        loop {
            let res = if eof {
                codec.decode_eof(&mut buf)
            } else {
                codec.decode(&mut buf)
            };
            assert!(
                buf.len() <= pending.saturating_add(chunk),
                "{spec}: {} bytes buffered, more than max_frame {} + overhead {} + chunk {chunk}",
                buf.len(),
                d.spec.max_frame(),
                d.overhead
            );
            assert!(
                buf.capacity() <= cap_bound,
                "{spec}: buffer capacity {} exceeds {cap_bound}",
                buf.capacity()
            );
            match res {
                Ok(Some(f)) => {
                    assert!(
                        f.len() <= d.longest_frame(),
                        "{spec}: frame of {} bytes, longest allowed {}",
                        f.len(),
                        d.longest_frame()
                    );
                    frames.push(f);
                }
                Ok(None) => {
                    assert!(
                        buf.len() <= pending,
                        "{spec}: waiting for more with {} bytes buffered, a frame is at most {pending}",
                        buf.len()
                    );
                    assert!(!eof || buf.is_empty(), "{spec}: bytes left at eof");
                    break;
                }
                Err(e) => {
                    let again = codec.decode(&mut buf);
                    assert!(
                        matches!(
                            again.as_ref().map_err(|e| e.kind()),
                            Err(FrameErrorKind::Poisoned)
                        ),
                        "{spec}: decode after {e} gave {again:?}"
                    );
                    return Decoded {
                        frames,
                        failed: true,
                    };
                }
            }
        }
        if eof {
            assert_eq!(
                codec.stream_offset(),
                wire.len() as u64,
                "{spec}: a clean end consumed everything"
            );
            return Decoded {
                frames,
                failed: false,
            };
        }
    }
}
