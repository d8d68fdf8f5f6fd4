//! Decode throughput of [`FrameCodec`] against tokio-util's [`LengthDelimitedCodec`], the
//! baseline, measured in the same run on the same frames.
//!
//! Each input is about 1 MiB of back-to-back frames with 64-byte or 4 KiB bodies. `len:be:4`
//! puts exactly the bytes of `LengthDelimitedCodec::new()` on the wire (a 4-byte big-endian
//! length, 8 MiB max), so those two compare directly; `len:ascii:4`, `len:bcd:2` and
//! `len:hex:4` (each can announce 4096) show what text and BCD headers cost. For one body size
//! every codec decodes the same number of frames with the same bodies; only the header bytes
//! differ.
//!
//! An iteration decodes every frame out of a `BytesMut` that was refilled from the prebuilt
//! input before the timer started (`iter_custom`): only the decoding is timed, for every codec
//! alike. The refill reuses the buffer's allocation (the frames of the last iteration are gone,
//! so `BytesMut` reclaims it), and all codecs of one body size share that buffer, so they
//! decode the same memory, warm in cache as bytes just read from a socket are. A fresh 1 MiB
//! `BytesMut` per input (`iter_batched`) would add the allocator's and the kernel's page
//! placement to the comparison.
//!
//! ```text
//! cargo bench -p keepwire --bench decode -- --warm-up-time 1 --measurement-time 3
//! ```
//!
//! Figures: see the commit that last changed this file; on a shared machine compare low
//! percentiles of `target/criterion/decode_*/*/new/sample.json` across several runs, as other
//! load only ever adds time.

use std::fmt::Debug;
use std::hint::black_box;
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use criterion::{Bencher, Criterion, Throughput, criterion_group, criterion_main};
use keepwire::frame::{FrameCodec, FramingSpec};
use tokio_util::codec::{Decoder, LengthDelimitedCodec};

/// Bytes of frames per input: large enough that per-iteration overhead vanishes, small enough
/// to sit in L2/L3 on most machines.
const INPUT_BYTES: usize = 1 << 20;

/// Our specs: `len:be:4` (the baseline's wire format), then text and BCD headers wide enough
/// for a 4 KiB body (`ascii:4` and `bcd:2` reach 9999, `hex:4` 65535).
const SPECS: &[&str] = &["len:be:4", "len:ascii:4", "len:bcd:2", "len:hex:4"];

fn body(len: usize) -> Vec<u8> {
    (0..len).map(|i| (i % 251) as u8).collect()
}

/// `count` frames of `body` under `spec`, back to back.
fn wire(spec: &FramingSpec, body: &[u8], count: usize) -> Bytes {
    let codec = FrameCodec::new(spec.clone());
    let mut wire = BytesMut::new();
    for _ in 0..count {
        codec
            .encode_to(body, &mut wire)
            .unwrap_or_else(|e| panic!("{spec}: {e}"));
    }
    wire.freeze()
}

/// Decodes every frame in `buf`; returns how many.
fn decode_all<D: Decoder>(codec: &mut D, buf: &mut BytesMut) -> usize
where
    D::Error: Debug,
{
    let mut n = 0;
    while let Some(frame) = codec.decode(buf).expect("the input is valid") {
        black_box(&frame);
        n += 1;
    }
    n
}

/// Times decoding all `count` frames of `input` with a fresh codec from `new_codec`, `iters`
/// times; refilling `buf` and making the codec are not timed.
fn time_decode<D: Decoder>(
    b: &mut Bencher<'_>,
    buf: &mut BytesMut,
    input: &Bytes,
    count: usize,
    new_codec: impl Fn() -> D,
) where
    D::Error: Debug,
{
    b.iter_custom(|iters| {
        let mut spent = Duration::ZERO;
        for _ in 0..iters {
            buf.clear();
            buf.extend_from_slice(input);
            let mut codec = new_codec();
            let start = Instant::now();
            let n = decode_all(&mut codec, buf);
            spent += start.elapsed();
            assert_eq!((n, buf.len()), (count, 0), "every frame decoded");
        }
        spent
    });
}

fn bench_decode(c: &mut Criterion) {
    for body_len in [64usize, 4096] {
        let body = body(body_len);
        // The same frame count for every codec: 4-byte headers fill about INPUT_BYTES.
        let count = INPUT_BYTES / (body_len + 4);
        let mut group = c.benchmark_group(format!("decode/{body_len}B"));
        // One buffer for every codec of this size: they all decode from the same memory, so
        // where the allocator and the kernel put it cannot favour one of them (with 4 KiB
        // frames every header sits on its own page).
        let mut buf = BytesMut::with_capacity(count * (body_len + 4));

        let be4: FramingSpec = "len:be:4".parse().expect("valid spec");
        let baseline_wire = wire(&be4, &body, count);
        // The baseline decodes the same bytes as `len:be:4` (`time_decode` checks it gets
        // every frame and leaves nothing).
        group.throughput(Throughput::Bytes(baseline_wire.len() as u64));
        group.bench_function("LengthDelimitedCodec", |b| {
            time_decode(
                b,
                &mut buf,
                &baseline_wire,
                count,
                LengthDelimitedCodec::new,
            )
        });

        for &s in SPECS {
            let spec: FramingSpec = s.parse().expect("valid spec");
            let input = wire(&spec, &body, count);
            group.throughput(Throughput::Bytes(input.len() as u64));
            group.bench_function(s, |b| {
                time_decode(b, &mut buf, &input, count, || FrameCodec::new(spec.clone()))
            });
        }
        group.finish();
    }
}

criterion_group!(benches, bench_decode);
criterion_main!(benches);
