//! Encode, then decode: a spec of any kind and up to eight frames come from the input. Every
//! frame `encode_to` accepts must decode back unchanged, in input-chosen chunk sizes ending
//! with `decode_eof`; every frame it refuses must be an `unencodable` error that wrote
//! nothing.

#![no_main]

use bytes::BytesMut;
use keepwire::frame::FrameCodec;
use keepwire_fuzz::{any_spec, chunk_sizes, decode_bounded};
use libfuzzer_sys::arbitrary::Unstructured;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let mut u = Unstructured::new(data);
    let (Ok(drawn), Ok(chunks), Ok(count)) = (
        any_spec(&mut u),
        chunk_sizes(&mut u),
        u.int_in_range(0..=8usize),
    ) else {
        return;
    };
    // `eof` carries one message per stream.
    let count = if drawn.spec.is_until_close() {
        count.min(1)
    } else {
        count
    };
    let codec = FrameCodec::new(drawn.spec.clone());
    let mut wire = BytesMut::new();
    let mut want = Vec::new();
    for _ in 0..count {
        let Ok(len) = u.int_in_range(0..=1024usize) else {
            break;
        };
        let Ok(frame) = u.bytes(len.min(u.len())) else {
            break;
        };
        let before = wire.len();
        match codec.encode_to(frame, &mut wire) {
            Ok(()) => want.extend(drawn.decoded_form(frame)),
            Err(e) => {
                assert!(e.is_unencodable(), "{}: {e}", drawn.text);
                assert_eq!(
                    wire.len(),
                    before,
                    "{}: a refused frame wrote bytes",
                    drawn.text
                );
            }
        }
    }
    let got = decode_bounded(&drawn, &chunks, &wire);
    assert!(
        !got.failed,
        "{}: encoded stream failed to decode: {wire:?}",
        drawn.text
    );
    let got: Vec<&[u8]> = got.frames.iter().map(|f| &f[..]).collect();
    let want: Vec<&[u8]> = want.iter().map(|f| &f[..]).collect();
    assert_eq!(got, want, "{}: wire {wire:?}", drawn.text);
});
