//! `--protocol iso8583` on the command line: `send` against the acquirer simulator (`serve`)
//! with 0200 and 0800, sign-on, `--respond` declines, `--delay`, `encode`/`decode` with the
//! built-in tables and other framings, `--json`, the errors a person gets for bad flags, and
//! `bench --protocol iso8583`.

mod common;

use std::time::{Duration, Instant};

use common::{Serve, run_expect, stderr, temp_file};

fn stdout(out: &std::process::Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

const SALE: &str = "0200 2=4111111111111111 3=000000 4=000000001000 41=TERM0001";

#[test]
fn send_gets_0210_and_0810_from_the_simulator_with_stans_assigned() {
    let serve = Serve::start(&["--protocol", "iso8583"]);
    let out = run_expect(
        &[
            "send",
            "--protocol",
            "iso8583",
            "--to",
            &serve.to,
            SALE,
            "0800 70=001",
        ],
        b"",
        0,
    );
    let text = stdout(&out);
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 2, "{text}");
    // No sign-on asked: the requests are STAN 000001 and 000002.
    assert!(
        lines[0].starts_with(
            "0210 2=4111111111111111 3=000000 4=000000001000 11=000001 38=" // auth id
        ),
        "{text}"
    );
    assert!(lines[0].ends_with(" 39=00 41=TERM0001"), "{text}");
    assert!(
        lines[1].starts_with("0810 11=000002 39=00 70=001"),
        "{text}"
    );
    let (code, err) = serve.terminate();
    assert_eq!(code, Some(0), "{err}");
}

#[test]
fn sign_on_numbers_the_sign_on_first_and_short_mode_signs_on_per_message() {
    let serve = Serve::start(&["--protocol", "iso8583"]);
    let out = run_expect(
        &[
            "send",
            "--protocol",
            "iso8583",
            "--to",
            &serve.to,
            "--sign-on",
            SALE,
            SALE,
        ],
        b"",
        0,
    );
    let text = stdout(&out);
    // 000001 was the sign-on; the sign-off's answer is not printed.
    let stans: Vec<&str> = text
        .lines()
        .filter_map(|l| l.split(' ').find(|t| t.starts_with("11=")))
        .collect();
    assert_eq!(stans, ["11=000002", "11=000003"], "{text}");
    let out = run_expect(
        &[
            "send",
            "--protocol",
            "iso8583",
            "--to",
            &serve.to,
            "--mode",
            "short",
            "--sign-on",
            SALE,
        ],
        b"",
        0,
    );
    assert!(stdout(&out).starts_with("0210 "), "{}", stdout(&out));
}

#[test]
fn respond_rules_decline_and_delay_holds_every_answer() {
    let serve = Serve::start(&[
        "--protocol",
        "iso8583",
        "--respond",
        "4=000000009999:51",
        "--respond",
        "41=TERM0002:05",
        "--delay",
        "300ms",
    ]);
    let started = Instant::now();
    let out = run_expect(
        &[
            "send",
            "--protocol",
            "iso8583",
            "--to",
            &serve.to,
            "0200 4=000000009999 41=TERM0001",
            "0100 4=000000000100 41=TERM0002",
            "0200 4=000000000100 41=TERM0001",
        ],
        b"",
        0,
    );
    let took = started.elapsed();
    let codes: Vec<String> = stdout(&out)
        .lines()
        .filter_map(|l| {
            l.split(' ')
                .find(|t| t.starts_with("39="))
                .map(str::to_owned)
        })
        .collect();
    assert_eq!(codes, ["39=51", "39=05", "39=00"], "{}", stdout(&out));
    // Three answers, each held 300 ms, in turn.
    assert!(
        took >= Duration::from_millis(900),
        "--delay did not apply: {took:?}"
    );
    assert!(took < Duration::from_secs(30), "{took:?}");
}

#[test]
fn encode_decode_round_trip_with_both_tables_and_other_framings() {
    for (spec, framing) in [
        ("ascii", None),
        ("binary", Some("len:be:2")),
        ("ascii", Some("len:bcd:2")),
    ] {
        let mut args = vec!["--protocol", "iso8583", "--iso8583-spec", spec];
        if let Some(f) = framing {
            args.extend(["--framing", f]);
        }
        let line = "0800 7=1201001500 11=000001 70=301";
        let mut enc = vec!["encode"];
        enc.extend(&args);
        enc.extend([SALE, line]);
        let wire = run_expect(&enc, b"", 0).stdout;
        match (spec, framing) {
            // pyiso8583 default_ascii of the reference's 0800, behind 4 ASCII digits.
            ("ascii", None) => assert!(
                wire.ends_with(b"00550800822000000000000004000000000000001201001500000001301"),
                "{}",
                String::from_utf8_lossy(&wire)
            ),
            // Binary bitmap: 4 + 8 + 8 + 10 + 6 + 3 = 39 bytes behind 00 27.
            ("binary", _) => assert!(wire.windows(6).any(|w| w == b"\x00\x270800"), "{wire:?}"),
            _ => {}
        }
        let mut dec = vec!["decode"];
        dec.extend(&args);
        dec.push("-");
        let out = run_expect(&dec, &wire, 0);
        // The SALE had no field 11: encode numbered it 000001.
        assert_eq!(
            stdout(&out),
            format!(
                "0200 2=4111111111111111 3=000000 4=000000001000 11=000001 41=TERM0001\n{line}\n"
            ),
            "{spec} {framing:?}"
        );
        dec.insert(1, "--json");
        let json = stdout(&run_expect(&dec, &wire, 0));
        assert!(
            json.starts_with(r#"{"command":"0200","2":"4111111111111111","3":"000000""#),
            "{json}"
        );
    }
}

#[test]
fn a_toml_table_is_loaded_and_a_bad_one_is_named() {
    let ok = temp_file(
        "iso_partner.toml",
        b"base = \"ascii\"\n[field.48]\nlength = \"lllvar\"\nmax = 20\n",
    );
    let wire = run_expect(
        &[
            "encode",
            "--protocol",
            "iso8583",
            "--iso8583-spec",
            &ok,
            "0200 11=000001 48=hello",
        ],
        b"",
        0,
    )
    .stdout;
    assert!(wire.ends_with(b"000001005hello"), "{wire:?}");
    let bad = temp_file("iso_bad.toml", b"base = \"ascii\"\n[field.999]\n");
    let out = run_expect(
        &[
            "decode",
            "--protocol",
            "iso8583",
            "--iso8583-spec",
            &bad,
            "-",
        ],
        b"",
        2,
    );
    let err = stderr(&out);
    assert!(
        err.contains("--iso8583-spec") && err.contains("line 2"),
        "{err}"
    );
    let out = run_expect(
        &[
            "decode",
            "--protocol",
            "iso8583",
            "--iso8583-spec",
            "asci",
            "-",
        ],
        b"",
        2,
    );
    let err = stderr(&out);
    assert!(err.contains("expected ascii, binary or a TOML"), "{err}");
    // A STAN wider than the template writes: serve pinged empty frames with it.
    let wide = temp_file("iso_wide_stan.toml", b"[field.11]\nmax = 12\n");
    let out = run_expect(
        &[
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--protocol",
            "iso8583",
            "--iso8583-spec",
            &wide,
        ],
        b"",
        2,
    );
    let err = stderr(&out);
    assert!(
        err.contains("echo test does not fit the table: 0810: field 11: 6 bytes"),
        "{err}"
    );
}

#[test]
fn bad_flags_are_usage_errors_a_person_can_act_on() {
    for (args, want) in [
        (
            vec![
                "serve",
                "--listen",
                "127.0.0.1:0",
                "--protocol",
                "iso8583",
                "--respond",
                "4=1:5",
            ],
            "expected FIELD=VALUE:CODE",
        ),
        // Field 4 is fixed at 12 digits: this rule would never match, so it is refused.
        (
            vec![
                "serve",
                "--listen",
                "127.0.0.1:0",
                "--protocol",
                "iso8583",
                "--respond",
                "4=9999:51",
            ],
            "the field is fixed at 12, so the rule would never match",
        ),
        (
            vec![
                "serve",
                "--listen",
                "127.0.0.1:0",
                "--protocol",
                "smpp",
                "--respond",
                "4=1:51",
            ],
            "--respond is for --protocol iso8583",
        ),
        (
            vec![
                "serve",
                "--listen",
                "127.0.0.1:0",
                "--protocol",
                "iso8583",
                "--receipts",
            ],
            "drop --receipts",
        ),
        (
            vec![
                "send",
                "--protocol",
                "smpp",
                "--to",
                "127.0.0.1:1",
                "--sign-on",
                "x",
            ],
            "--sign-on is for --protocol iso8583",
        ),
        (
            vec![
                "send",
                "--protocol",
                "iso8583",
                "--to",
                "127.0.0.1:1",
                "--account",
                "a:b",
                "x",
            ],
            "use --sign-on",
        ),
        (vec!["encode", "--protocol", "iso8583", "0200 999=1"], "999"),
        (
            vec![
                "encode",
                "--protocol",
                "cmpp3",
                "--iso8583-spec",
                "binary",
                "x",
            ],
            "--iso8583-spec is for --protocol iso8583",
        ),
    ] {
        let out = run_expect(&args, b"", 2);
        let err = stderr(&out);
        assert!(err.contains(want), "{args:?}: {err}");
        assert_eq!(err.lines().count(), 1, "{args:?}: one line: {err}");
    }
    // A frame that is no message: decode names the offset and exits 1.
    let out = run_expect(
        &["decode", "--protocol", "iso8583", "-"],
        b"00080200ZZZZ",
        1,
    );
    assert!(stderr(&out).contains("offset"), "{}", stderr(&out));
}

#[test]
fn bench_protocol_iso8583_runs_every_mode() {
    let out = run_expect(
        &[
            "bench",
            "--protocol",
            "iso8583",
            "--duration",
            "300ms",
            "--connections",
            "4",
            "--json",
        ],
        b"",
        0,
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let modes = v.as_array().unwrap();
    assert_eq!(modes.len(), 4, "{v}");
    for m in modes {
        assert!(m["requests"].as_u64().unwrap() > 0, "{m}");
        assert_eq!(m["errors"].as_u64(), Some(0), "{m}");
    }
    // Short opens a connection per request; mux a couple in all.
    let opened = |i: usize| modes[i]["connections_opened"].as_u64().unwrap();
    assert!(opened(0) >= modes[0]["requests"].as_u64().unwrap(), "{v}");
    assert!(opened(3) <= 4, "{v}");
}

/// Every ISO 8583 value is a JSON string: `70=301` and `11=123456` once printed as numbers
/// while `11=000001` was a string, so a field's JSON type hung on its value.
#[test]
fn decode_json_prints_every_iso_value_as_a_string() {
    let enc = ["encode", "--protocol", "iso8583", "-"];
    let wire = run_expect(&enc, b"0800 7=1201235959 11=123456 70=301\n", 0).stdout;
    let dec = ["decode", "--protocol", "iso8583", "--json", "-"];
    let json = stdout(&run_expect(&dec, &wire, 0));
    assert_eq!(
        json,
        "{\"command\":\"0800\",\"7\":\"1201235959\",\"11\":\"123456\",\"70\":\"301\"}\n"
    );
}

/// A declined 0210 (field 39 = 05) is an error of the bench, not an answered request: the
/// simulator declines STAN 000002, the second request of the pattern's session.
#[test]
fn bench_counts_a_declined_response_as_an_error() {
    let serve = Serve::start(&["--protocol", "iso8583", "--respond", "11=000002:05"]);
    let out = run_expect(
        &[
            "bench",
            "--protocol",
            "iso8583",
            "--target",
            &serve.to,
            "--modes",
            "long",
            "--connections",
            "1",
            "--duration",
            "300ms",
            "--json",
        ],
        b"",
        0,
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let long = &v[0];
    assert!(long["requests"].as_u64().unwrap() > 1, "{v}");
    assert_eq!(long["errors"].as_u64(), Some(1), "{v}");
}
