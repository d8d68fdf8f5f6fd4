//! Arbitrary bytes into a decoder for fixed-size frames (`fixed:N`). The first bytes choose the spec's
//! parameters and the chunk sizes; the rest is the stream. Must not panic, and must never
//! buffer or reserve past the spec's `max` (see `keepwire_fuzz::decode_bounded`).

#![no_main]

use keepwire_fuzz::{chunk_sizes, decode_bounded, fixed_spec};
use libfuzzer_sys::arbitrary::Unstructured;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let mut u = Unstructured::new(data);
    let (Ok(drawn), Ok(chunks)) = (fixed_spec(&mut u), chunk_sizes(&mut u)) else {
        return;
    };
    decode_bounded(&drawn, &chunks, u.take_rest());
});
