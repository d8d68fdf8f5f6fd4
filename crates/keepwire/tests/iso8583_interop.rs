//! ISO 8583 against pyiso8583 4.0.1 (PyPI, installed by `scripts/install-test-deps.sh`), the
//! independent reference, for both built-in tables (`Spec::binary` = pyiso8583's `default`,
//! `Spec::ascii` = its `default_ascii`):
//!
//! - messages pyiso8583 builds (`tests/interop/pyiso8583_cases.py cases`: 0800 echo and
//!   sign-on, 0810, a primary-only 0200 with track 2 and PIN block, 0210 with ICC data (55)
//!   and MAC (64), a 0100 with fields 90, 102 and 128, a 0400 with a 500-byte field 127,
//!   empty LLVAR/LLLVAR fields, every variable field at its maximum, one message with every
//!   field 2..=128 but 65, and 40 random ones per table) decode in keepwire to the same MTI
//!   and fields, and keepwire's encoding of those fields is byte-identical;
//! - 200 messages keepwire builds per table (random fields and lengths) decode in pyiso8583
//!   to the same fields, and pyiso8583 encodes them back to keepwire's bytes.
//!
//! Field 65 is left out: pyiso8583 reads bit 65 as a tertiary bitmap, keepwire as a field.
//! Without python3 or pyiso8583 the tests print `skipped: <why>` and pass, unless
//! `KEEPWIRE_REQUIRE_TOOLS=1` (CI), where they fail.

use std::io::{Read, Write};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use keepwire::protocol::iso8583::{Data, Length, Message, Spec};
use keepwire::text::{from_hex, to_hex};

/// Whether `python3` can import `module`; prints why not and returns false (or panics under
/// `KEEPWIRE_REQUIRE_TOOLS=1`).
fn have_python_module(module: &str) -> bool {
    let ok = Command::new("python3")
        .args(["-c", &format!("import {module}")])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if ok {
        return true;
    }
    let why = format!(
        "python3 cannot import {module}; run scripts/install-test-deps.sh to install pyiso8583"
    );
    if std::env::var("KEEPWIRE_REQUIRE_TOOLS").as_deref() == Ok("1") {
        panic!("{why} (KEEPWIRE_REQUIRE_TOOLS=1)");
    }
    eprintln!("skipped: {why}");
    false
}

/// Runs the helper in `mode` with `input` on stdin; its stdout, within 60 s.
fn run_helper(mode: &str, input: &str) -> String {
    let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/interop/pyiso8583_cases.py");
    let mut child = Command::new("python3")
        .arg(script)
        .arg(mode)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawning python3");
    let mut stdin = child.stdin.take().expect("stdin");
    let input = input.to_owned();
    let writer = std::thread::spawn(move || stdin.write_all(input.as_bytes()));
    let mut stdout = child.stdout.take().expect("stdout");
    let reader = std::thread::spawn(move || {
        let mut s = String::new();
        stdout.read_to_string(&mut s).map(|_| s)
    });
    let status = wait_bounded(&mut child, Duration::from_secs(60));
    writer.join().expect("writer").expect("writing to python3");
    let out = reader.join().expect("reader").expect("reading python3");
    let mut err = String::new();
    child
        .stderr
        .take()
        .expect("stderr")
        .read_to_string(&mut err)
        .expect("reading stderr");
    assert!(status, "pyiso8583_cases.py {mode} failed: {err}");
    out
}

fn wait_bounded(child: &mut Child, limit: Duration) -> bool {
    let deadline = Instant::now() + limit;
    loop {
        if let Some(status) = child.try_wait().expect("try_wait") {
            return status.success();
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("pyiso8583_cases.py ran over {limit:?}");
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

fn spec_named(name: &str) -> Spec {
    Spec::builtin(name).expect("a built-in spec name")
}

/// `<mti hex> <field>:<value hex> ...` into an MTI and fields.
fn parse_fields<'a>(mut tokens: impl Iterator<Item = &'a str>) -> (String, Vec<(u8, Vec<u8>)>) {
    let mti = from_hex(tokens.next().expect("mti")).expect("mti hex");
    let fields = tokens
        .map(|t| {
            let (n, v) = t.split_once(':').expect("field:value");
            (n.parse().expect("field number"), from_hex(v).expect("hex"))
        })
        .collect();
    (String::from_utf8(mti).expect("ascii mti"), fields)
}

fn fields_of(m: &Message) -> Vec<(u8, Vec<u8>)> {
    m.fields().map(|(n, v)| (n, v.to_vec())).collect()
}

#[test]
fn pyiso8583_messages_decode_and_encode_identically() {
    if !have_python_module("iso8583") {
        return;
    }
    let out = run_helper("cases", "");
    let mut seen = std::collections::BTreeMap::new();
    for line in out.lines() {
        let mut t = line.split_whitespace();
        assert_eq!(t.next(), Some("CASE"), "{line}");
        let (spec_name, case) = (t.next().expect("spec"), t.next().expect("case"));
        let spec = spec_named(spec_name);
        let wire = from_hex(t.next().expect("wire")).expect("wire hex");
        let (mti, fields) = parse_fields(t);
        let what = format!("{spec_name} {case}");

        let m = Message::decode(&spec, &wire).unwrap_or_else(|e| panic!("{what}: {e}"));
        assert_eq!(m.mti(), mti, "{what}");
        assert_eq!(fields_of(&m), fields, "{what}");

        let mut built = Message::new(&mti).expect("mti");
        for (n, v) in &fields {
            built.set(*n, v.clone()).expect("field number");
        }
        let ours = built
            .encode(&spec)
            .unwrap_or_else(|e| panic!("{what}: {e}"));
        assert_eq!(to_hex(&ours), to_hex(&wire), "{what}");
        let text = built.to_text(&spec).to_string();
        assert_eq!(
            Message::from_text(&spec, &text).as_ref(),
            Ok(&built),
            "{what}"
        );
        *seen.entry(spec_name.to_owned()).or_insert(0) += 1;
    }
    assert_eq!(seen.get("binary"), Some(&50), "{seen:?}");
    assert_eq!(seen.get("ascii"), Some(&50), "{seen:?}");
}

/// A small deterministic generator (no external seed: the run is reproducible).
struct Lcg(u64);

impl Lcg {
    fn next(&mut self) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        self.0 >> 33
    }
    fn below(&mut self, n: usize) -> usize {
        usize::try_from(self.next()).expect("u31") % n.max(1)
    }
}

/// A message with 1 to 20 random fields (not 65) of random valid lengths.
fn random_message(rng: &mut Lcg, spec: &Spec) -> Message {
    const MTIS: [&str; 6] = ["0100", "0110", "0200", "0210", "0420", "0800"];
    let mut m = Message::new(MTIS[rng.below(MTIS.len())]).expect("mti");
    for _ in 0..=rng.below(20) {
        let n = u8::try_from(2 + rng.below(127)).expect("field number");
        let Some(f) = spec.field(n).filter(|_| n != 65) else {
            continue;
        };
        let max = usize::from(f.max);
        let len = match f.length {
            Length::Fixed => max,
            _ => rng.below(max + 1),
        };
        let value: Vec<u8> = (0..len)
            .map(|_| match f.data {
                Data::Binary => u8::try_from(rng.below(256)).expect("byte"),
                // Printable ASCII: pyiso8583 decodes `ascii` fields strictly.
                _ => u8::try_from(0x20 + rng.below(95)).expect("byte"),
            })
            .collect();
        m.set(n, value).expect("field number");
    }
    m
}

#[test]
fn keepwire_messages_decode_in_pyiso8583_to_the_same_fields() {
    if !have_python_module("iso8583") {
        return;
    }
    let mut rng = Lcg(8583);
    let mut sent = Vec::new();
    let mut input = String::new();
    for name in ["binary", "ascii"] {
        let spec = spec_named(name);
        for _ in 0..200 {
            let m = random_message(&mut rng, &spec);
            let wire = m.encode(&spec).expect("encodes");
            input.push_str(&format!("{name} {}\n", to_hex(&wire)));
            sent.push((name, m, wire));
        }
    }
    let out = run_helper("decode", &input);
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines.len(), sent.len());
    for ((name, m, wire), line) in sent.iter().zip(lines) {
        let mut t = line.split_whitespace();
        assert_eq!(t.next(), Some("DECODED"), "{name} {m:?}: {line}");
        let again = from_hex(t.next().expect("wire")).expect("hex");
        let (mti, fields) = parse_fields(t);
        assert_eq!(mti, m.mti(), "{name}");
        assert_eq!(fields, fields_of(m), "{name}");
        assert_eq!(to_hex(&again), to_hex(wire), "{name} {m:?}");
    }
}
