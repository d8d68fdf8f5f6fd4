//! Arbitrary bytes into the `http` framing. The first bytes choose the limits (`max=`,
//! `max_head=`, `max_headers=`) and the chunk sizes; the rest is the stream, fed in those
//! chunks with `decode` until it wants more and `decode_eof` at the end. Must not panic;
//! the buffer stays under the limits; every frame decoded reads back as a request or a
//! response (`keepwire::http::message`), whose body is no larger than `max`; an error is
//! sticky.

#![no_main]

use bytes::BytesMut;
use keepwire::frame::{FrameCodec, FramingSpec};
use keepwire::http::message::{Request, Response};
use libfuzzer_sys::arbitrary::Unstructured;
use libfuzzer_sys::fuzz_target;
use tokio_util::codec::Decoder;

fuzz_target!(|data: &[u8]| {
    let mut u = Unstructured::new(data);
    let (Ok(max), Ok(head), Ok(headers), Ok(chunk)) = (
        u.int_in_range(0..=4096usize),
        u.int_in_range(64..=2048usize),
        u.int_in_range(1..=64usize),
        u.int_in_range(1..=64usize),
    ) else {
        return;
    };
    let spec: FramingSpec = format!("http:max={max}:max_head={head}:max_headers={headers}")
        .parse()
        .expect("a valid spec");
    let wire = u.take_rest();
    // Head, trailers, body and chunked framing (at most max(max, 64 KiB) more).
    let bound = 2 * head + max + max.max(64 * 1024);
    let mut codec = FrameCodec::new(spec);
    let mut buf = BytesMut::new();
    let mut rest = wire;
    let mut failed = false;
    loop {
        let eof = rest.is_empty();
        if !eof {
            let n = chunk.min(rest.len());
            buf.extend_from_slice(&rest[..n]);
            rest = &rest[n..];
        }
        loop {
            let res = if eof { codec.decode_eof(&mut buf) } else { codec.decode(&mut buf) };
            assert!(buf.len() <= bound + chunk, "{} bytes buffered", buf.len());
            match res {
                Ok(Some(frame)) => {
                    assert!(!failed, "a frame after an error");
                    if frame.starts_with(b"HTTP/") {
                        let r = Response::parse(&frame).expect("a decoded response reads back");
                        assert!(r.body.len() <= max, "body {} > max {max}", r.body.len());
                    } else {
                        let r = Request::parse_bytes(&frame).expect("a decoded request reads back");
                        assert!(r.body.len() <= max, "body {} > max {max}", r.body.len());
                    }
                }
                Ok(None) => break,
                Err(_) => {
                    failed = true;
                    assert!(codec.decode(&mut buf).is_err(), "errors are sticky");
                    return;
                }
            }
        }
        if eof {
            return;
        }
    }
});
