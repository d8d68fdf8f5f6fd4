//! The `http` framing: tables of messages, each fed whole, split at every offset and byte by
//! byte; refused shapes with their kind; limits.

use bytes::{BufMut, BytesMut};
use tokio_util::codec::{Decoder, Encoder};

use crate::frame::{FrameCodec, FrameError, FramingSpec};

fn codec(spec: &str) -> FrameCodec {
    FrameCodec::new(
        spec.parse::<FramingSpec>()
            .unwrap_or_else(|e| panic!("{e}")),
    )
}

/// Decodes `input` fed in pieces of `split` bytes then the rest, then EOF.
fn feed(spec: &str, input: &[u8], split: usize) -> Result<Vec<Vec<u8>>, String> {
    let mut c = codec(spec);
    let mut buf = BytesMut::new();
    let mut out = Vec::new();
    let mut rest = input;
    while !rest.is_empty() {
        let n = split.clamp(1, rest.len());
        buf.put_slice(&rest[..n]);
        rest = &rest[n..];
        loop {
            match c.decode(&mut buf) {
                Ok(Some(f)) => out.push(f.to_vec()),
                Ok(None) => break,
                Err(e) => return Err(kind(&e)),
            }
        }
    }
    loop {
        match c.decode_eof(&mut buf) {
            Ok(Some(f)) => out.push(f.to_vec()),
            Ok(None) => return Ok(out),
            Err(e) => return Err(kind(&e)),
        }
    }
}

fn kind(e: &FrameError) -> String {
    e.kind_name().to_string()
}

/// Every way of feeding `input`: whole, split once at every offset, byte by byte.
fn all_ways(spec: &str, input: &[u8]) -> Result<Vec<Vec<u8>>, String> {
    let whole = feed(spec, input, input.len());
    for split in 1..input.len() {
        // Split once at `split`: the first piece, then everything else.
        let mut c = codec(spec);
        let mut buf = BytesMut::from(&input[..split]);
        let mut out = Vec::new();
        let mut res = Ok(());
        for piece in [&input[split..], &b""[..]] {
            buf.put_slice(piece);
            loop {
                match c.decode(&mut buf) {
                    Ok(Some(f)) => out.push(f.to_vec()),
                    Ok(None) => break,
                    Err(e) => {
                        res = Err(kind(&e));
                        break;
                    }
                }
            }
            if res.is_err() {
                break;
            }
        }
        let got = res.and_then(|()| {
            loop {
                match c.decode_eof(&mut buf) {
                    Ok(Some(f)) => out.push(f.to_vec()),
                    Ok(None) => break Ok(out),
                    Err(e) => break Err(kind(&e)),
                }
            }
        });
        assert_eq!(got, whole, "{spec}: split at {split} differs");
    }
    assert_eq!(feed(spec, input, 1), whole, "{spec}: bytewise differs");
    whole
}

const GET: &[u8] = b"GET / HTTP/1.1\r\nHost: a\r\n\r\n";
const POST: &[u8] = b"POST /x HTTP/1.1\r\nContent-Length: 5\r\n\r\nhello";
const CHUNKED: &[u8] =
    b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n5;ext=1\r\nhello\r\n1 ;a\r\n!\r\n0\r\nX-T: 1\r\n\r\n";

#[test]
fn whole_messages_decode_as_they_came() {
    type Row<'a> = (&'a str, &'a [u8], &'a [&'a [u8]]);
    let table: &[Row] = &[
        ("request without body", GET, &[GET]),
        ("content-length body", POST, &[POST]),
        ("chunked with extension and trailer", CHUNKED, &[CHUNKED]),
        (
            "chunked, no trailers",
            b"POST / HTTP/1.1\r\nTransfer-Encoding: gzip, chunked\r\n\r\n2\r\nhi\r\n0\r\n\r\n",
            &[b"POST / HTTP/1.1\r\nTransfer-Encoding: gzip, chunked\r\n\r\n2\r\nhi\r\n0\r\n\r\n"],
        ),
        (
            "equal content-lengths",
            b"POST / HTTP/1.1\r\nContent-Length: 2, 2\r\nContent-Length: 2\r\n\r\nhi",
            &[b"POST / HTTP/1.1\r\nContent-Length: 2, 2\r\nContent-Length: 2\r\n\r\nhi"],
        ),
        (
            "bare LF head, 1.0",
            b"GET / HTTP/1.0\nHost: a\n\n",
            &[b"GET / HTTP/1.0\nHost: a\n\n"],
        ),
        ("two pipelined", b"GET / HTTP/1.1\r\nHost: a\r\n\r\nGET / HTTP/1.1\r\nHost: a\r\n\r\n", &[GET, GET]),
        (
            "response with length",
            b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok",
            &[b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"],
        ),
        (
            "response until close",
            b"HTTP/1.0 200 OK\r\n\r\nall of it",
            &[b"HTTP/1.0 200 OK\r\n\r\nall of it"],
        ),
        (
            "100, 204 and 304 have no body",
            b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 204 No Content\r\nContent-Length: 9\r\n\r\nHTTP/1.1 304 Not Modified\r\nContent-Length: 9\r\n\r\n",
            &[
                b"HTTP/1.1 100 Continue\r\n\r\n",
                b"HTTP/1.1 204 No Content\r\nContent-Length: 9\r\n\r\n",
                b"HTTP/1.1 304 Not Modified\r\nContent-Length: 9\r\n\r\n",
            ],
        ),
    ];
    for (name, input, want) in table {
        let want: Vec<Vec<u8>> = want.iter().map(|f| f.to_vec()).collect();
        assert_eq!(all_ways("http", input), Ok(want), "{name}");
    }
}

#[test]
fn empty_lines_before_a_request_are_dropped() {
    let mut input = b"\r\n\r\n\n".to_vec();
    input.extend_from_slice(GET);
    assert_eq!(all_ways("http", &input), Ok(vec![GET.to_vec()]));
    // Only empty lines, then the close: no frame, no error.
    assert_eq!(all_ways("http", b"\r\n\r\n"), Ok(vec![]));
}

#[test]
fn refused_shapes_name_their_kind() {
    let table: &[(&str, &[u8], &str)] = &[
        (
            "content-length with transfer-encoding",
            b"POST / HTTP/1.1\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
            "smuggling",
        ),
        (
            "differing content-lengths",
            b"POST / HTTP/1.1\r\nContent-Length: 3\r\nContent-Length: 4\r\n\r\nabcd",
            "smuggling",
        ),
        (
            "differing in one field",
            b"POST / HTTP/1.1\r\nContent-Length: 3, 4\r\n\r\nabcd",
            "smuggling",
        ),
        (
            "te in 1.0",
            b"POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
            "smuggling",
        ),
        (
            "te not chunked last",
            b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked, gzip\r\n\r\n",
            "smuggling",
        ),
        (
            "chunked twice",
            b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked, chunked\r\n\r\n0\r\n\r\n",
            "smuggling",
        ),
        (
            "obs-fold",
            b"GET / HTTP/1.1\r\nX-A: 1\r\n  folded\r\n\r\n",
            "malformed",
        ),
        (
            "space before colon",
            b"GET / HTTP/1.1\r\nContent-Length : 0\r\n\r\n",
            "malformed",
        ),
        (
            "signed content-length",
            b"POST / HTTP/1.1\r\nContent-Length: +5\r\n\r\nhello",
            "malformed",
        ),
        (
            "huge content-length",
            b"POST / HTTP/1.1\r\nContent-Length: 99999999999999999999\r\n\r\n",
            "malformed",
        ),
        ("not http", b"hello world\r\n\r\n", "malformed"),
        (
            "http/2 preface",
            b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n",
            "malformed",
        ),
        (
            "bad chunk size",
            b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
            "malformed",
        ),
        (
            "chunk size overflow",
            b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n10000000000000000\r\n",
            "malformed",
        ),
        (
            "negative chunk size",
            b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n-1\r\n",
            "malformed",
        ),
        (
            "chunk line bare LF",
            b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n2\nhi\r\n0\r\n\r\n",
            "malformed",
        ),
        (
            "chunk without CRLF",
            b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nhiX\r\n0\r\n\r\n",
            "malformed",
        ),
        (
            "junk after size",
            b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n2 x\r\nhi\r\n0\r\n\r\n",
            "malformed",
        ),
        (
            "bad trailer",
            b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n0\r\nno colon\r\n\r\n",
            "malformed",
        ),
        (
            "truncated body",
            b"POST / HTTP/1.1\r\nContent-Length: 5\r\n\r\nhel",
            "truncated",
        ),
        ("truncated head", b"GET / HTTP/1.1\r\nHost:", "truncated"),
        (
            "truncated chunks",
            b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhe",
            "truncated",
        ),
    ];
    for (name, input, want) in table {
        assert_eq!(all_ways("http", input), Err(want.to_string()), "{name}");
    }
}

#[test]
fn limits_refuse_before_buffering() {
    // A Content-Length above max is refused from the head alone.
    let mut c = codec("http:max=4");
    let mut buf = BytesMut::from(&b"POST / HTTP/1.1\r\nContent-Length: 5\r\n\r\n"[..]);
    let e = c.decode(&mut buf).unwrap_err();
    assert!(e.is_too_long(), "{e}");
    assert!(c.error_reply(&e).unwrap().starts_with(b"HTTP/1.1 413 "));
    // Chunked data counts chunk by chunk.
    let input =
        b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n2\r\nde\r\n0\r\n\r\n";
    assert_eq!(all_ways("http:max=4", input), Err("too_long".into()));
    assert!(all_ways("http:max=5", input).is_ok());
    // A head with no end, past max_head: refused without waiting for more.
    let mut c = codec("http:max_head=64");
    let mut buf = BytesMut::from(&[b'a'; 65][..]);
    let e = c.decode(&mut buf).unwrap_err();
    assert!(e.is_head_too_large(), "{e}");
    assert!(c.error_reply(&e).unwrap().starts_with(b"HTTP/1.1 431 "));
    // Too many fields.
    let mut head = b"GET / HTTP/1.1\r\n".to_vec();
    for i in 0..3 {
        head.extend_from_slice(format!("X-{i}: v\r\n").as_bytes());
    }
    head.extend_from_slice(b"\r\n");
    assert_eq!(
        all_ways("http:max_headers=2", &head),
        Err("head_too_large".into())
    );
    assert!(all_ways("http:max_headers=3", &head).is_ok());
    // Trailers are bounded by max_head too.
    let mut input = b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n".to_vec();
    input.extend_from_slice(&[b'x'; 100]);
    assert_eq!(
        all_ways("http:max_head=64", &input),
        Err("head_too_large".into())
    );
    // A chunk-size line without end.
    let mut input = b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n1;".to_vec();
    input.extend_from_slice(&[b'x'; 5000]);
    assert_eq!(feed("http", &input, 1000), Err("malformed".into()));
}

#[test]
fn error_replies_only_for_requests() {
    let mut c = codec("http");
    let mut buf = BytesMut::from(&b"HTTP/1.1 200 OK\r\nContent-Length: x\r\n\r\n"[..]);
    let e = c.decode(&mut buf).unwrap_err();
    assert!(e.is_malformed());
    assert_eq!(
        c.error_reply(&e),
        None,
        "a client does not answer a bad response"
    );
    let mut c = codec("http");
    let mut buf = BytesMut::from(
        &b"GET / HTTP/1.1\r\nContent-Length: 1\r\nTransfer-Encoding: chunked\r\n\r\n"[..],
    );
    let e = c.decode(&mut buf).unwrap_err();
    assert!(e.is_smuggling() && e.is_malformed(), "{e}");
    assert!(c.error_reply(&e).unwrap().starts_with(b"HTTP/1.1 400 "));
    assert!(
        e.to_string()
            .starts_with("offset 0: http message length is ambiguous: content-length together"),
        "{e}"
    );
    let mut c = codec("http");
    let mut buf = BytesMut::from(&b"GET / HTTP/1.1\r\nHost: a"[..]);
    let e = c.decode_eof(&mut buf).unwrap_err();
    assert!(e.is_truncated());
    assert_eq!(c.error_reply(&e), None);
}

#[test]
fn head_response_has_no_body_when_the_request_went_through_the_codec() {
    let mut c = codec("http");
    let mut wire = BytesMut::new();
    c.encode(&b"HEAD / HTTP/1.1\r\nHost: a\r\n\r\n"[..], &mut wire)
        .unwrap();
    c.encode(GET, &mut wire).unwrap();
    let mut buf = BytesMut::from(
        &b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"[..],
    );
    assert_eq!(
        &c.decode(&mut buf).unwrap().unwrap()[..],
        b"HTTP/1.1 100 Continue\r\n\r\n"
    );
    assert_eq!(
        &c.decode(&mut buf).unwrap().unwrap()[..],
        b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n"
    );
    assert_eq!(
        &c.decode(&mut buf).unwrap().unwrap()[..],
        b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"
    );
    assert!(buf.is_empty());
}

#[test]
fn spec_round_trips_and_refuses_bad_options() {
    for s in ["http", "http:max=1024", "http:max_head=4096:max_headers=20"] {
        let spec: FramingSpec = s.parse().unwrap();
        assert_eq!(spec.to_string(), s);
    }
    let e = "http:max_headers=999".parse::<FramingSpec>().unwrap_err();
    assert!(e.to_string().contains("expected 1 to 256"), "{e}");
    let e = "http:keep".parse::<FramingSpec>().unwrap_err();
    assert!(e.to_string().contains("valid options are max=N"), "{e}");
    assert!("http:max=1:max=2".parse::<FramingSpec>().is_err());
}

#[test]
fn encode_passes_messages_through_and_has_no_empty_frame() {
    let spec: FramingSpec = "http".parse().unwrap();
    assert!(!spec.has_empty_frame());
    assert!(spec.carries(GET));
    let c = codec("http");
    let mut out = BytesMut::new();
    c.encode_to(POST, &mut out).unwrap();
    assert_eq!(&out[..], POST);
    assert!(c.encode_to(b"", &mut out).unwrap_err().is_unencodable());
}

#[test]
fn stream_offsets_count_dropped_empty_lines() {
    let mut c = codec("http");
    let mut buf = BytesMut::from(&b"\r\nGET / HTTP/1.1\r\n\r\nBAD\r\n\r\n"[..]);
    assert!(c.decode(&mut buf).unwrap().is_some());
    let e = c.decode(&mut buf).unwrap_err();
    assert_eq!(e.offset(), Some(20), "{e}");
}

/// Pipelined requests that differ in every field the summary holds.
const PIPELINED: &[u8] = b"\r\nPOST /a HTTP/1.1\r\nHost: a\r\nConnection: foo, Close\r\nContent-Length: 2\r\n\r\nhi\
HEAD /b HTTP/1.0\r\nconnection: keep-alive\r\n\r\n\
PUT /c HTTP/1.1\r\nHost: a\r\nHOST: b\r\nTransfer-Encoding: gzip, chunked\r\n\r\n2\r\nzz\r\n0\r\nT: 1\r\n\r\n\
GET /d HTTP/1.1\r\nExpect: 100-continue\r\n\r\n";

#[test]
fn request_summaries_describe_their_own_frame_and_agree_with_a_parse() {
    use crate::http::message::{Request, body};
    for split in 1..=PIPELINED.len() {
        let mut c = codec("http");
        let mut buf = BytesMut::new();
        let mut seen = 0;
        for piece in PIPELINED.chunks(split) {
            buf.put_slice(piece);
            while let Some(frame) = c.decode(&mut buf).unwrap() {
                let h = c.take_http_head().expect("a request has a summary");
                assert_eq!(c.take_http_head(), None, "given once");
                assert!(h.describes(&frame) && !h.describes(&frame[..frame.len() - 1]));
                let r = Request::parse_bytes(&frame).unwrap();
                assert_eq!(
                    (h.version(), h.close(), h.keep_alive(), h.host_fields()),
                    (
                        r.version,
                        r.connection.close,
                        r.connection.keep_alive,
                        r.host_fields
                    ),
                    "split {split}, frame {seen}"
                );
                assert_eq!(
                    (h.other_coding(), h.is_head()),
                    (r.other_coding, r.is_head())
                );
                assert_eq!(h.bad_host(), r.bad_host());
                assert_eq!(body(&frame, h.head_len(), h.chunked()).unwrap(), r.body);
                seen += 1;
            }
        }
        assert_eq!(seen, 4, "split {split}");
    }
}

#[test]
fn responses_and_other_framings_have_no_summary() {
    let mut c = codec("http");
    let mut buf = BytesMut::from(&b"HTTP/1.1 200 OK\r\nContent-Length: 1\r\n\r\nx"[..]);
    assert!(c.decode(&mut buf).unwrap().is_some());
    assert_eq!(c.take_http_head(), None);
    // A request head whose frame is not whole yet has none either.
    let mut buf = BytesMut::from(&b"POST / HTTP/1.1\r\nContent-Length: 2\r\n\r\nh"[..]);
    let mut c = codec("http");
    assert!(c.decode(&mut buf).unwrap().is_none());
    assert_eq!(c.take_http_head(), None);
    let mut c = codec("line");
    let mut buf = BytesMut::from(&b"GET / HTTP/1.1\n"[..]);
    assert!(c.decode(&mut buf).unwrap().is_some());
    assert_eq!(c.take_http_head(), None);
}

#[test]
fn field_names_and_connection_options_compare_as_case_insensitive_text() {
    let token = |b: u8| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b);
    for t in (0..=255u8).filter(|&b| token(b)) {
        for l in b"abcdefghijklmnopqrstuvwxyz-".iter().copied() {
            assert_eq!(super::name_is(&[t], &[l]), [t].eq_ignore_ascii_case(&[l]));
        }
    }
    assert!(super::name_is(b"Content-LENGTH", b"content-length"));
    assert!(!super::name_is(b"content-lengtH2", b"content-length"));
    for (value, want) in [
        (&b"Keep-Alive"[..], (false, true)),
        (b"KEEP-alive", (false, true)),
        (b"Close", (true, false)),
        (b"cLOSE", (true, false)),
        (b"upgrade , close,keep-alive", (true, true)),
        (b"keep-alive2", (false, false)),
        (b"", (false, false)),
    ] {
        let (mut close, mut keep) = (false, false);
        super::connection_options(value, &mut close, &mut keep);
        assert_eq!((close, keep), want, "{value:?}");
    }
}
