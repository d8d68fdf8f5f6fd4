//! Framing properties, for every kind of [`FramingSpec`]:
//!
//! - `decode(encode(frames)) == frames`, whatever sizes the wire arrives in (1 byte, a few
//!   bytes, all at once), ending with `decode_eof`;
//! - `encode_to` never lies: a frame it accepts comes back unchanged, one it refuses is an
//!   `unencodable` error that leaves the output untouched;
//! - `parse(display(spec)) == spec`, and the parsed spec equals the one built with the
//!   builders;
//! - arbitrary bytes never panic a decoder, and the codec never holds or reserves more than
//!   one frame's worth of its `max` (plus header or delimiter) beyond the chunk just read.
//!
//! Specs are generated as parameters ([`Gen`]) and written out as the string a person would
//! type, so the limits the tests expect are computed here, not taken from the library.
//! Proptest's failure files are off: a failure found here becomes a named regression test in
//! `src/frame/tests.rs`, as STYLE.md §6 asks.

use bytes::{Bytes, BytesMut};
use keepwire::frame::{
    DEFAULT_MAX, DelimitedSpec, FrameCodec, FrameError, FrameErrorKind, FramingSpec,
    LengthEncoding, LengthSpec, MAX_LIMIT,
};
use proptest::collection::vec;
use proptest::prelude::*;
use proptest::sample::select;
use proptest::test_runner::TestCaseError;
use tokio_util::codec::Decoder;

/// The longest frame body generated for the codec properties: enough to cross every small
/// header's capacity (`len:be:1` holds 255) while keeping byte-by-byte feeding fast.
const SMALL: usize = 400;

/// The parameters a spec is built from.
#[derive(Debug, Clone)]
enum Gen {
    Len {
        enc: LengthEncoding,
        width: usize,
        incl: bool,
        skip: usize,
        adj: i64,
        max: Option<usize>,
    },
    Delim {
        delim: Vec<u8>,
        keep: bool,
        max: Option<usize>,
        /// Write the delimiter as `0x..` rather than escaped text.
        hex: bool,
    },
    Line {
        max: Option<usize>,
    },
    Fixed(usize),
    Eof {
        max: Option<usize>,
    },
}

fn enc_name(enc: LengthEncoding) -> &'static str {
    match enc {
        LengthEncoding::Ascii => "ascii",
        LengthEncoding::Bcd => "bcd",
        LengthEncoding::BigEndian => "be",
        LengthEncoding::LittleEndian => "le",
        LengthEncoding::Hex => "hex",
        other => panic!("a new encoding needs a generator: {other:?}"),
    }
}

/// The largest value a length field can hold, computed from its definition.
fn field_capacity(enc: LengthEncoding, width: usize) -> i128 {
    let base: i128 = match enc {
        LengthEncoding::Ascii => 10,
        LengthEncoding::Hex => 16,
        LengthEncoding::Bcd => 100,
        _ => 256,
    };
    let exp = u32::try_from(width).expect("small width");
    base.pow(exp) - 1
}

/// The delimiter as spec text: escapes, with `:` (the option separator) as `\x3a` and a
/// leading `0x` spelled so it is not read as hex.
fn delimiter_text(d: &[u8]) -> String {
    let mut s = String::new();
    for &b in d {
        match b {
            b':' => s.push_str("\\x3a"),
            _ => s.push_str(&keepwire::text::escape(&[b])),
        }
    }
    match s.strip_prefix("0x") {
        Some(rest) => format!("\\x30x{rest}"),
        None => s,
    }
}

impl Gen {
    /// The spec string: the kind, then options in canonical order. `alt` spells what it can
    /// another way (`max=4k`, `adj=+3`) and `order` permutes the options.
    fn spec_string(&self, alt: bool, order: &[usize]) -> String {
        let size = |n: usize| -> String {
            if alt && n != 0 && n % (1024 * 1024) == 0 {
                format!("{}m", n / (1024 * 1024))
            } else if alt && n != 0 && n % 1024 == 0 {
                format!("{}KiB", n / 1024)
            } else {
                n.to_string()
            }
        };
        let mut opts = Vec::new();
        let head = match self {
            Gen::Len {
                enc,
                width,
                incl,
                skip,
                adj,
                max,
            } => {
                if *incl {
                    opts.push("incl".to_owned());
                }
                if *skip != 0 || alt {
                    opts.push(format!("skip={skip}"));
                }
                if *adj > 0 && alt {
                    opts.push(format!("adj=+{adj}"));
                } else if *adj != 0 {
                    opts.push(format!("adj={adj}"));
                }
                if let Some(m) = max {
                    opts.push(format!("max={}", size(*m)));
                }
                format!("len:{}:{width}", enc_name(*enc))
            }
            Gen::Delim {
                delim,
                keep,
                max,
                hex,
            } => {
                if let Some(m) = max {
                    opts.push(format!("max={}", size(*m)));
                }
                if *keep {
                    opts.push("keep".to_owned());
                }
                if *hex {
                    format!("delim:0x{}", keepwire::text::to_hex(delim))
                } else {
                    format!("delim:{}", delimiter_text(delim))
                }
            }
            Gen::Line { max } | Gen::Eof { max } => {
                if let Some(m) = max {
                    opts.push(format!("max={}", size(*m)));
                }
                if matches!(self, Gen::Line { .. }) {
                    "line".to_owned()
                } else {
                    "eof".to_owned()
                }
            }
            Gen::Fixed(n) => format!("fixed:{n}"),
        };
        let mut s = head;
        // `order` is a permutation of 0..4 (the most options any kind has); skip the
        // indices this kind does not have.
        for &i in order {
            if let Some(o) = opts.get(i) {
                s.push(':');
                s.push_str(o);
            }
        }
        s
    }

    /// The spec, built with the builders rather than parsed.
    fn build(&self) -> FramingSpec {
        match self {
            Gen::Len {
                enc,
                width,
                incl,
                skip,
                adj,
                max,
            } => FramingSpec::Length(
                LengthSpec::new(*enc, *width)
                    .expect("generated width is valid")
                    .incl(*incl)
                    .skip(*skip)
                    .adj(*adj)
                    .max(max.unwrap_or(DEFAULT_MAX)),
            ),
            Gen::Delim {
                delim, keep, max, ..
            } => FramingSpec::Delimited(
                DelimitedSpec::new(delim.clone())
                    .expect("generated delimiter is not empty")
                    .keep(*keep)
                    .max(max.unwrap_or(DEFAULT_MAX)),
            ),
            Gen::Line { max } => {
                FramingSpec::Delimited(DelimitedSpec::line().max(max.unwrap_or(DEFAULT_MAX)))
            }
            Gen::Fixed(n) => FramingSpec::Fixed(*n),
            Gen::Eof { max } => FramingSpec::UntilClose {
                max: max.unwrap_or(DEFAULT_MAX),
            },
        }
    }

    fn parsed(&self) -> FramingSpec {
        let s = self.spec_string(false, &[0, 1, 2, 3]);
        s.parse()
            .unwrap_or_else(|e| panic!("generated spec {s:?} does not parse: {e}"))
    }

    /// For a length spec, the body sizes the header can announce: `body = value + adj - incl`
    /// with `0 <= value <= capacity`, and `body <= max`. `lo > hi` when there are none.
    fn body_bounds(&self) -> Option<(i128, i128)> {
        let Gen::Len {
            enc,
            width,
            incl,
            skip,
            adj,
            max,
        } = self
        else {
            return None;
        };
        let incl = if *incl { (skip + width) as i128 } else { 0 };
        let adj = i128::from(*adj);
        let lo = (adj - incl).max(0);
        let hi =
            (field_capacity(*enc, *width) + adj - incl).min(max.unwrap_or(DEFAULT_MAX) as i128);
        Some((lo, hi))
    }

    /// The body sizes a length spec can carry, `None` if there are none (`len:ascii:1` with
    /// `adj=20` and `max=10`).
    fn body_range(&self) -> Option<(usize, usize)> {
        let (lo, hi) = self.body_bounds()?;
        Some((usize::try_from(lo).ok()?, usize::try_from(hi).ok()?)).filter(|(lo, hi)| lo <= hi)
    }

    /// `FramingSpec::max_frame`, computed from the definition.
    fn max_frame(&self) -> usize {
        match self {
            // The upper end even when no body fits (lo > hi): `max`, clamped by the field.
            Gen::Len { skip, .. } => {
                let hi = self.body_bounds().map_or(0, |(_, hi)| hi.max(0));
                usize::try_from(hi).expect("at most max") + skip
            }
            Gen::Delim { max, .. } | Gen::Line { max } | Gen::Eof { max } => {
                max.unwrap_or(DEFAULT_MAX)
            }
            Gen::Fixed(n) => *n,
        }
    }

    /// Bytes on the wire beyond `max_frame` for one frame: the length field or delimiter.
    fn overhead(&self) -> usize {
        match self {
            Gen::Len { width, .. } => *width,
            Gen::Delim { delim, .. } => delim.len(),
            Gen::Line { .. } => 1,
            Gen::Fixed(_) | Gen::Eof { .. } => 0,
        }
    }

    /// The longest frame a decoder may return.
    fn longest_frame(&self) -> usize {
        match self {
            Gen::Delim {
                delim, keep: true, ..
            } => self.max_frame() + delim.len(),
            _ => self.max_frame(),
        }
    }

    /// What the decoder gives back for a frame `encode_to` accepted.
    fn decoded_form(&self, frame: &[u8]) -> Option<Vec<u8>> {
        match self {
            // `keep` frames carry their delimiter; encode accepts them with or without.
            Gen::Delim {
                delim, keep: true, ..
            } if !frame.ends_with(delim) => Some([frame, delim].concat()),
            // `eof` has no empty message: nothing on the wire, nothing decoded.
            Gen::Eof { .. } if frame.is_empty() => None,
            _ => Some(frame.to_vec()),
        }
    }
}

fn max_opt(full: bool) -> BoxedStrategy<Option<usize>> {
    if full {
        prop_oneof![
            Just(None),
            (0..=MAX_LIMIT).prop_map(Some),
            (0..=MAX_LIMIT / 1024).prop_map(|k| Some(k * 1024)),
            (0..=MAX_LIMIT / (1024 * 1024)).prop_map(|m| Some(m * 1024 * 1024)),
        ]
        .boxed()
    } else {
        prop_oneof![
            2 => Just(None),
            3 => (0..=SMALL).prop_map(Some),
            1 => (0usize..=70_000).prop_map(Some),
        ]
        .boxed()
    }
}

fn enc_width() -> impl Strategy<Value = (LengthEncoding, usize)> {
    prop_oneof![
        (1usize..=19).prop_map(|w| (LengthEncoding::Ascii, w)),
        (1usize..=16).prop_map(|w| (LengthEncoding::Hex, w)),
        (1usize..=9).prop_map(|w| (LengthEncoding::Bcd, w)),
        select(vec![1usize, 2, 3, 4, 8]).prop_map(|w| (LengthEncoding::BigEndian, w)),
        select(vec![1usize, 2, 3, 4, 8]).prop_map(|w| (LengthEncoding::LittleEndian, w)),
    ]
}

/// Delimiter bytes: mostly ones that make trouble (separators, `:`, `\`, the `0x` prefix,
/// letters that repeat), sometimes any byte.
fn delim_byte() -> impl Strategy<Value = u8> {
    prop_oneof![
        3 => select(b"\r\n\x03\x00ab:0x\\".to_vec()),
        1 => any::<u8>(),
    ]
}

/// Any spec. `full` uses the whole range the parser accepts; otherwise sizes stay small
/// enough to feed byte by byte.
fn any_spec(full: bool) -> impl Strategy<Value = Gen> {
    let skip = if full {
        (0usize..=65_536).boxed()
    } else {
        prop_oneof![3 => Just(0usize), 2 => 1usize..=4, 1 => 5usize..=64].boxed()
    };
    let adj = if full {
        let lim = MAX_LIMIT as i64;
        prop_oneof![Just(0i64), -12i64..=12, -lim..=lim].boxed()
    } else {
        prop_oneof![3 => Just(0i64), 2 => -12i64..=12].boxed()
    };
    let fixed = if full {
        (1..=MAX_LIMIT).boxed()
    } else {
        prop_oneof![1usize..=8, 9usize..=300].boxed()
    };
    let len = (enc_width(), any::<bool>(), skip, adj, max_opt(full)).prop_map(
        |((enc, width), incl, skip, adj, max)| Gen::Len {
            enc,
            width,
            incl,
            skip,
            adj,
            max,
        },
    );
    let delim = (
        vec(delim_byte(), 1..=3),
        any::<bool>(),
        max_opt(full),
        any::<bool>(),
    )
        .prop_map(|(delim, keep, max, hex)| Gen::Delim {
            delim,
            keep,
            max,
            hex,
        });
    prop_oneof![
        4 => len,
        3 => delim,
        1 => max_opt(full).prop_map(|max| Gen::Line { max }),
        1 => fixed.prop_map(Gen::Fixed),
        1 => max_opt(full).prop_map(|max| Gen::Eof { max }),
    ]
}

/// Leftmost occurrence of `needle` in `hay`.
fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

/// Makes `body` a valid delimited body: the delimiter first appears where it is appended,
/// not inside the body and not straddling the body's end (`ab` + `aba` = `ababa` holds the
/// delimiter at 0). Removes the byte where an early occurrence starts until none is left.
fn without_early_delimiter(mut body: Vec<u8>, d: &[u8]) -> Vec<u8> {
    loop {
        let wire = [&body[..], d].concat();
        match find(&wire, d) {
            Some(i) if i < body.len() => {
                body.remove(i);
            }
            _ => return body,
        }
    }
}

/// One frame the spec can carry, or `None` if the spec can carry none (e.g. `len:be:1` with
/// `adj=-300`).
fn valid_frame(g: &Gen) -> Option<BoxedStrategy<Vec<u8>>> {
    Some(match g.clone() {
        Gen::Len { skip, .. } => {
            let (lo, hi) = g.body_range()?;
            let hi = hi.min(lo + SMALL);
            let len = prop_oneof![Just(lo), Just(hi), lo..=hi];
            (
                vec(any::<u8>(), skip),
                len.prop_flat_map(|n| vec(any::<u8>(), n)),
            )
                .prop_map(|(prefix, body)| [prefix, body].concat())
                .boxed()
        }
        Gen::Delim {
            delim, keep, max, ..
        } => {
            let most = max.unwrap_or(DEFAULT_MAX).min(SMALL);
            let byte = prop_oneof![select(delim.clone()), any::<u8>()];
            vec(byte, 0..=most)
                .prop_map(move |b| {
                    let body = without_early_delimiter(b, &delim);
                    if keep {
                        [body, delim.clone()].concat()
                    } else {
                        body
                    }
                })
                .boxed()
        }
        Gen::Line { max } => {
            let most = max.unwrap_or(DEFAULT_MAX).min(SMALL);
            let byte = prop_oneof![select(b"\r\n".to_vec()), any::<u8>()];
            vec(byte, 0..=most)
                .prop_map(|mut b| {
                    // No `\n` inside, and no `\r` at the end (line strips it on decode).
                    b.retain(|&c| c != b'\n');
                    while b.last() == Some(&b'\r') {
                        b.pop();
                    }
                    b
                })
                .boxed()
        }
        Gen::Fixed(n) => vec(any::<u8>(), n).boxed(),
        Gen::Eof { max } => {
            let most = max.unwrap_or(DEFAULT_MAX).min(SMALL);
            if most == 0 {
                return None;
            }
            vec(any::<u8>(), 1..=most).boxed()
        }
    })
}

/// Frames valid for the spec: any number, except `eof`, which carries one per stream.
fn valid_frames(g: &Gen) -> BoxedStrategy<Vec<Vec<u8>>> {
    let most = if matches!(g, Gen::Eof { .. }) { 1 } else { 6 };
    match valid_frame(g) {
        Some(f) => vec(f, 0..=most).boxed(),
        None => Just(Vec::new()).boxed(),
    }
}

/// Frames that may or may not be valid: valid ones, valid ones one byte too long or short or
/// with a delimiter byte added, and short runs of bytes the spec cares about.
fn raw_frames(g: &Gen) -> BoxedStrategy<Vec<Vec<u8>>> {
    let special: Vec<u8> = match g {
        Gen::Delim { delim, .. } => delim.clone(),
        Gen::Line { .. } => b"\r\n".to_vec(),
        _ => b"\x00\xff0".to_vec(),
    };
    let near: usize = match g {
        Gen::Len { skip, .. } => g.body_range().map_or(0, |(_, hi)| hi) + skip,
        _ => g.max_frame(),
    }
    .min(SMALL + 1);
    let byte = prop_oneof![select(special.clone()), any::<u8>()];
    let mut options: Vec<BoxedStrategy<Vec<u8>>> = vec![
        vec(byte, 0..=24).boxed(),
        (near.saturating_sub(1)..=near + 1)
            .prop_flat_map(|n| vec(any::<u8>(), n))
            .boxed(),
    ];
    if let Some(valid) = valid_frame(g) {
        options.push(
            (
                valid,
                0..5usize,
                select(special.clone()),
                any::<prop::sample::Index>(),
            )
                .prop_map(move |(mut f, how, b, at)| {
                    match how {
                        0 => f.push(b),
                        1 => f.insert(at.index(f.len() + 1), b),
                        2 => {
                            f.pop();
                        }
                        // End in the delimiter's first bytes: `ab` before `aba`.
                        3 => f.extend(special.iter().take(at.index(special.len()) + 1)),
                        _ => {}
                    }
                    f
                })
                .boxed(),
        );
    }
    let most = if matches!(g, Gen::Eof { .. }) { 1 } else { 6 };
    vec(proptest::strategy::Union::new(options), 0..=most).boxed()
}

/// Chunk sizes the wire is fed in, cycled: 1 byte, all at once, or a mix.
fn chunks() -> impl Strategy<Value = Vec<usize>> {
    prop_oneof![
        Just(vec![1usize]),
        Just(vec![usize::MAX]),
        vec(1usize..=16, 1..=6),
        vec(1usize..=4096, 1..=3),
    ]
}

/// What a run of the decoder gave back.
#[derive(Debug)]
struct Decoded {
    frames: Vec<Bytes>,
    err: Option<FrameError>,
    offset: u64,
}

/// Feeds `wire` to a fresh codec in pieces of `chunks` (cycled), calling `decode` until it
/// wants more after each piece and `decode_eof` at the end. After every call it checks that
/// the codec holds no more than one unfinished frame (`max_frame + overhead`) beyond the piece
/// just added, and that the buffer's capacity stays bounded (see `capacity_bound`).
fn decode_chunked(g: &Gen, wire: &[u8], chunks: &[usize]) -> Result<Decoded, TestCaseError> {
    let spec = g.parsed();
    // After `Ok(None)` the buffer holds less than one whole frame.
    let pending = g.max_frame() + g.overhead();
    let largest_chunk = chunks
        .iter()
        .copied()
        .max()
        .unwrap_or(1)
        .clamp(1, wire.len().max(1));
    let cap_bound = capacity_bound(pending, largest_chunk);
    let mut codec = FrameCodec::new(spec.clone());
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
            prop_assert!(
                buf.len() <= pending + chunk,
                "{spec}: {} bytes buffered, more than max_frame {} + overhead {} + chunk {chunk}",
                buf.len(),
                g.max_frame(),
                g.overhead()
            );
            prop_assert!(
                buf.capacity() <= cap_bound,
                "{spec}: buffer capacity {} exceeds {cap_bound}",
                buf.capacity()
            );
            match res {
                Ok(Some(f)) => {
                    prop_assert!(
                        f.len() <= g.longest_frame(),
                        "{spec}: frame of {} bytes, longest allowed {}",
                        f.len(),
                        g.longest_frame()
                    );
                    frames.push(f);
                }
                Ok(None) => {
                    prop_assert!(
                        buf.len() <= pending,
                        "{spec}: waiting for more with {} bytes buffered, a frame is at most {pending}",
                        buf.len()
                    );
                    prop_assert!(!eof || buf.is_empty(), "{spec}: bytes left at eof");
                    break;
                }
                Err(e) => {
                    // Sticky: the codec refuses to guess where the next frame starts.
                    let again = codec.decode(&mut buf);
                    prop_assert!(
                        matches!(
                            again.as_ref().map_err(FrameError::kind),
                            Err(FrameErrorKind::Poisoned)
                        ),
                        "{spec}: decode after {e} gave {again:?}"
                    );
                    return Ok(Decoded {
                        frames,
                        err: Some(e),
                        offset: codec.stream_offset(),
                    });
                }
            }
        }
        if eof {
            return Ok(Decoded {
                frames,
                err: None,
                offset: codec.stream_offset(),
            });
        }
    }
}

/// The most capacity a `BytesMut` may show when nothing ever asked it for more than
/// `pending + chunk` bytes in total (the codec reserves at most one whole frame, `pending`;
/// the test appends at most `chunk` to less than `pending`).
///
/// bytes 1.x grows a buffer to `max(2 * old, needed + consumed prefix)` and only does so
/// when the old allocation is short: either `old < needed` (so the result is under
/// `2 * needed`), or the consumed prefix is smaller than the live bytes (so
/// `old < 2 * needed` and the result is under `4 * needed`). A buffer shared with frames
/// still alive is replaced by one of `max(needed, original capacity)`, and the original
/// capacity is capped at 64 KiB. A codec that reserved from an unchecked peer length would
/// ask for up to `2^64` bytes and land far above this.
fn capacity_bound(pending: usize, chunk: usize) -> usize {
    4 * (pending + chunk) + 64 * 1024
}

fn encode_all(spec: &FramingSpec, frames: &[Vec<u8>]) -> Result<BytesMut, TestCaseError> {
    let codec = FrameCodec::new(spec.clone());
    let mut wire = BytesMut::new();
    for f in frames {
        if let Err(e) = codec.encode_to(f, &mut wire) {
            return Err(TestCaseError::fail(format!(
                "{spec}: valid frame of {} bytes refused: {e}",
                f.len()
            )));
        }
    }
    Ok(wire)
}

fn spec_and_valid_frames() -> impl Strategy<Value = (Gen, Vec<Vec<u8>>)> {
    any_spec(false).prop_flat_map(|g| {
        let frames = valid_frames(&g);
        (Just(g), frames)
    })
}

fn spec_and_raw_frames() -> impl Strategy<Value = (Gen, Vec<Vec<u8>>)> {
    any_spec(false).prop_flat_map(|g| {
        let frames = raw_frames(&g);
        (Just(g), frames)
    })
}

/// Input for the robustness property: arbitrary bytes, or a valid stream with a few bytes
/// overwritten and possibly cut short, which gets past the first header more often.
fn spec_and_input() -> impl Strategy<Value = (Gen, Vec<u8>)> {
    any_spec(false).prop_flat_map(|g| {
        let spec = g.parsed();
        let damaged = (
            valid_frames(&g),
            vec((any::<prop::sample::Index>(), any::<u8>()), 0..=3),
            any::<Option<prop::sample::Index>>(),
        )
            .prop_map(move |(frames, edits, cut)| {
                let codec = FrameCodec::new(spec.clone());
                let mut wire = BytesMut::new();
                for f in &frames {
                    // Valid frames encode; that is the round-trip property's business.
                    let _ = codec.encode_to(f, &mut wire);
                }
                let mut wire = wire.to_vec();
                if !wire.is_empty() {
                    for (at, b) in edits {
                        let i = at.index(wire.len());
                        if let Some(slot) = wire.get_mut(i) {
                            *slot = b;
                        }
                    }
                }
                if let Some(cut) = cut {
                    wire.truncate(cut.index(wire.len() + 1));
                }
                wire
            });
        let input = prop_oneof![vec(any::<u8>(), 0..=2048), damaged];
        (Just(g), input)
    })
}

fn config() -> ProptestConfig {
    ProptestConfig {
        failure_persistence: None,
        ..ProptestConfig::default()
    }
}

proptest! {
    #![proptest_config(config())]

    /// (a) decode(encode(frames)) == frames for every kind of spec and any chunking.
    #[test]
    fn valid_frames_roundtrip_in_any_chunks(
        (g, frames) in spec_and_valid_frames(),
        chunks in chunks(),
    ) {
        let spec = g.parsed();
        let wire = encode_all(&spec, &frames)?;
        let got = decode_chunked(&g, &wire, &chunks)?;
        prop_assert!(got.err.is_none(), "{spec}: {:?} decoding {:?}", got.err, wire);
        let got_frames: Vec<&[u8]> = got.frames.iter().map(|f| &f[..]).collect();
        let want: Vec<&[u8]> = frames.iter().map(|f| &f[..]).collect();
        prop_assert_eq!(got_frames, want, "{}: wire {:?}", spec, wire);
        prop_assert_eq!(got.offset, wire.len() as u64, "{}: stream offset", spec);
    }

    /// `encode_to` accepts a frame only if it decodes back unchanged, and a refusal is an
    /// `unencodable` error that writes nothing.
    #[test]
    fn encode_accepts_only_what_decodes_back(
        (g, frames) in spec_and_raw_frames(),
        chunks in chunks(),
    ) {
        let spec = g.parsed();
        let codec = FrameCodec::new(spec.clone());
        let mut wire = BytesMut::new();
        let mut want = Vec::new();
        for f in &frames {
            let before = wire.clone();
            match codec.encode_to(f, &mut wire) {
                Ok(()) => want.extend(g.decoded_form(f)),
                Err(e) => {
                    prop_assert!(e.is_unencodable(), "{spec}: {e}");
                    prop_assert_eq!(&wire, &before, "{}: refused frame left bytes", spec);
                }
            }
        }
        let got = decode_chunked(&g, &wire, &chunks)?;
        prop_assert!(got.err.is_none(), "{spec}: {:?} decoding {:?}", got.err, wire);
        let got: Vec<Vec<u8>> = got.frames.iter().map(|f| f.to_vec()).collect();
        prop_assert_eq!(got, want, "{}: wire {:?}", spec, wire);
    }

    /// (b) parse(display(spec)) == spec; the string parses to what the builders make, in any
    /// option order and spelling, and `max_frame` matches its definition.
    #[test]
    fn spec_display_parses_back(
        g in any_spec(true),
        alt in any::<bool>(),
        order in Just(vec![0usize, 1, 2, 3]).prop_shuffle(),
    ) {
        let s = g.spec_string(alt, &order);
        let spec = FramingSpec::parse(&s);
        prop_assert!(spec.is_ok(), "{s:?}: {:?}", spec);
        let spec = spec.unwrap();
        prop_assert_eq!(&spec, &g.build(), "{:?} vs the builders", s);
        let shown = spec.to_string();
        let back = FramingSpec::parse(&shown);
        prop_assert!(back.is_ok(), "{s:?} displays as {shown:?}, which fails: {:?}", back);
        let back = back.unwrap();
        prop_assert_eq!(&back, &spec, "{:?} displays as {:?}", s, shown);
        prop_assert_eq!(&back.to_string(), &shown, "display is canonical");
        prop_assert_eq!(spec.max_frame(), g.max_frame(), "max_frame of {}", shown);
    }

    /// (c) Arbitrary bytes, any spec, any chunking: no panic, and the buffer stays bounded
    /// (checked inside `decode_chunked` after every call).
    #[test]
    fn arbitrary_input_never_panics_or_overbuffers(
        (g, input) in spec_and_input(),
        chunks in chunks(),
    ) {
        let got = decode_chunked(&g, &input, &chunks)?;
        // Whatever happened, the codec consumed no more than it was given.
        prop_assert!(got.offset <= input.len() as u64);
    }
}

/// The capacity check can fail: a buffer that reserved for a 1 MiB announced length under
/// `max=300` exceeds the bound.
#[test]
fn capacity_bound_catches_a_reservation_from_the_peer_length() {
    let pending = 300 + 4;
    let mut buf = BytesMut::new();
    buf.reserve(1024 * 1024);
    assert!(buf.capacity() > capacity_bound(pending, 4096));
}

/// The generator's helpers do what the properties rely on.
#[test]
fn generated_valid_delimited_bodies_avoid_the_seam() {
    assert_eq!(without_early_delimiter(b"ab".to_vec(), b"aba"), b"b");
    assert_eq!(without_early_delimiter(b"xaba".to_vec(), b"aba"), b"xba");
    assert_eq!(without_early_delimiter(b"a\r".to_vec(), b"\r\n"), b"a\r");
    assert_eq!(
        delimiter_text(b"0x:\\\n"),
        "\\x30x\\x3a\\\\\\n",
        "escaped delimiter text"
    );
}
