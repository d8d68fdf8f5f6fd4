//! Arbitrary text into `FramingSpec::parse`: it must not panic, and a spec it accepts must
//! print in a form that parses back to the same spec and prints the same again. Run it with
//! `fuzz/spec.dict` so the fuzzer knows the words specs are made of.

#![no_main]

use keepwire::frame::{FrameCodec, FramingSpec};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let Ok(spec) = FramingSpec::parse(text) else {
        return;
    };
    let shown = spec.to_string();
    let back = FramingSpec::parse(&shown)
        .unwrap_or_else(|e| panic!("{text:?} displays as {shown:?}, which does not parse: {e}"));
    assert_eq!(back, spec, "{text:?} displays as {shown:?}");
    assert_eq!(
        back.to_string(),
        shown,
        "display of {text:?} is not canonical"
    );
    // The accessors and the codec constructor take any parsed spec (nothing is allocated
    // from the spec's sizes until bytes arrive).
    let _ = (
        spec.max_frame(),
        spec.has_empty_frame(),
        spec.is_until_close(),
    );
    let _ = FrameCodec::new(spec);
});
