//! `--protocol` on the command line: `send` against `serve` for each template, refused
//! logins, `encode`/`decode` round trips, stdin sessions, and `bench --protocol`.

mod common;

use common::{Serve, run_expect, stderr};

const TEMPLATES: [(&str, &str, &str); 3] = [
    (
        "smpp",
        "submit_sm source_addr=10086 destination_addr=13800138000 short_message=hello",
        "submit_sm_resp",
    ),
    (
        "cmpp3",
        "submit dest_terminal_id=13800138000 msg_content=hello",
        "submit_resp",
    ),
    (
        "cmpp2",
        "submit dest_terminal_id=13800138000 msg_content=hello",
        "submit_resp",
    ),
];

fn stdout(out: &std::process::Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn send_logs_in_submits_prints_the_response_and_logs_out_for_each_template() {
    for (p, submit, resp) in TEMPLATES {
        let serve = Serve::start(&["--protocol", p]);
        let out = run_expect(
            &[
                "send",
                "--protocol",
                p,
                "--to",
                &serve.to,
                "--account",
                "901234:secret",
                submit,
                submit,
            ],
            b"",
            0,
        );
        let text = stdout(&out);
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 2, "{p}: {text}");
        for (i, l) in lines.iter().enumerate() {
            assert!(l.starts_with(resp), "{p}: {l}");
            // Sequence numbers are assigned: 1 was the login, then 2 and 3.
            assert!(l.contains(&format!("seq={}", i + 2)), "{p}: {l}");
        }
        let (code, err) = serve.terminate();
        assert_eq!(code, Some(0), "{p}: {err}");
    }
}

#[test]
fn send_prints_the_receipts_the_partner_sends() {
    let serve = Serve::start(&["--protocol", "smpp", "--receipts"]);
    let out = run_expect(
        &[
            "send",
            "--protocol",
            "smpp",
            "--to",
            &serve.to,
            "--account",
            "a:b",
            TEMPLATES[0].1,
        ],
        b"",
        0,
    );
    let text = stdout(&out);
    assert!(
        text.lines()
            .next()
            .unwrap_or("")
            .starts_with("submit_sm_resp"),
        "{text}"
    );
    assert!(
        text.lines()
            .any(|l| l.starts_with("deliver_sm ") && l.contains("stat:DELIVRD")),
        "{text}"
    );
}

#[test]
fn a_wrong_secret_exits_1_naming_the_partners_status() {
    let accounts = common::temp_file("accounts", b"# partners\n901234:right\n\n");
    for (p, submit, _) in TEMPLATES {
        let serve = Serve::start(&["--protocol", p, "--accounts", &accounts]);
        let out = run_expect(
            &[
                "send",
                "--protocol",
                p,
                "--to",
                &serve.to,
                "--account",
                "901234:wrong",
                submit,
            ],
            b"",
            1,
        );
        let err = stderr(&out);
        assert!(
            err.contains("status") || err.contains("ESME_"),
            "{p}: {err}"
        );
        assert!(
            !err.contains("wrong"),
            "{p}: the secret is never printed: {err}"
        );
        assert!(stdout(&out).is_empty(), "{p}");
        // The right one still gets in.
        run_expect(
            &[
                "send",
                "--protocol",
                p,
                "--to",
                &serve.to,
                "--account",
                "901234:right",
                submit,
            ],
            b"",
            0,
        );
    }
}

#[test]
fn send_reads_pdus_from_stdin_and_stays_logged_in() {
    let serve = Serve::start(&["--protocol", "cmpp3"]);
    let input = format!("{}\n\n{}\n", TEMPLATES[1].1, TEMPLATES[1].1);
    let out = run_expect(
        &[
            "send",
            "--protocol",
            "cmpp3",
            "--to",
            &serve.to,
            "--account",
            "901234:x",
            "-",
        ],
        input.as_bytes(),
        0,
    );
    let text = stdout(&out);
    assert_eq!(
        text.lines()
            .filter(|l| l.starts_with("submit_resp"))
            .count(),
        2,
        "{text}"
    );
}

#[test]
fn short_mode_logs_in_and_out_per_pdu() {
    let serve = Serve::start(&["--protocol", "smpp"]);
    let out = run_expect(
        &[
            "send",
            "--protocol",
            "smpp",
            "--mode",
            "short",
            "--to",
            &serve.to,
            "--account",
            "a:b",
            TEMPLATES[0].1,
            TEMPLATES[0].1,
        ],
        b"",
        0,
    );
    assert_eq!(stdout(&out).lines().count(), 2, "{}", stdout(&out));
}

#[test]
fn decode_of_encode_is_the_identity() {
    for (p, submit, _) in TEMPLATES {
        let wire = run_expect(&["encode", "--protocol", p, submit, submit], b"", 0).stdout;
        let text = stdout(&run_expect(&["decode", "--protocol", p], &wire, 0));
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 2, "{p}: {text}");
        assert!(
            lines[0].contains("seq=1") && lines[1].contains("seq=2"),
            "{p}: {text}"
        );
        // What decode prints, encode takes back to the same bytes.
        let again = run_expect(&["encode", "--protocol", p, lines[0], lines[1]], b"", 0).stdout;
        assert_eq!(again, wire, "{p}");
        let json = stdout(&run_expect(
            &["decode", "--protocol", p, "--json"],
            &wire,
            0,
        ));
        assert!(
            json.lines()
                .all(|l| l.starts_with('{') && l.contains("\"command\"")),
            "{json}"
        );
    }
}

#[test]
fn decode_names_a_bad_pdu_and_exits_1() {
    // A frame of 12 bytes under len:be:4:incl: shorter than the SMPP header.
    let out = run_expect(
        &["decode", "--protocol", "smpp"],
        b"\x00\x00\x00\x0c\x00\x00\x00\x15\x00\x00\x00\x00",
        1,
    );
    assert!(stderr(&out).contains("pdu 1"), "{}", stderr(&out));
}

#[test]
fn an_unknown_template_is_a_usage_error_listing_the_valid_ones() {
    let out = run_expect(&["encode", "--protocol", "smtp", "x"], b"", 2);
    let err = stderr(&out);
    assert!(err.contains("smpp") && err.contains("cmpp3"), "{err}");
}

#[test]
fn bench_protocol_measures_every_mode_against_the_simulator() {
    let out = run_expect(
        &[
            "bench",
            "--protocol",
            "cmpp3",
            "--duration",
            "200ms",
            "--connections",
            "2",
            "--json",
        ],
        b"",
        0,
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
    let modes: Vec<&str> = v
        .as_array()
        .expect("an array")
        .iter()
        .map(|m| m["mode"].as_str().unwrap_or(""))
        .collect();
    assert_eq!(modes, ["short", "long", "pool", "mux"]);
    for m in v.as_array().unwrap() {
        assert!(m["requests"].as_u64().unwrap_or(0) > 0, "{m}");
    }
}

#[test]
fn bench_protocol_logs_in_to_a_target_with_the_account_given() {
    let accounts = common::temp_file("bench-accounts", b"loader:pw\n");
    let serve = Serve::start(&["--protocol", "smpp", "--accounts", &accounts]);
    let args = |account: &'static str| {
        [
            "bench",
            "--protocol",
            "smpp",
            "--target",
            &serve.to,
            "--modes",
            "long,mux",
            "--duration",
            "1s",
            "--connections",
            "2",
            "--json",
            "--account",
            account,
        ]
        .map(String::from)
    };
    let ok = args("loader:pw");
    let ok: Vec<&str> = ok.iter().map(String::as_str).collect();
    let out = run_expect(&ok, b"", 0);
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
    assert!(v[0]["requests"].as_u64().unwrap_or(0) > 0, "{v}");
    // Refused logins: no request answered, exit 1.
    let bad = args("loader:nope");
    let bad: Vec<&str> = bad.iter().map(String::as_str).collect();
    run_expect(&bad, b"", 1);
}
