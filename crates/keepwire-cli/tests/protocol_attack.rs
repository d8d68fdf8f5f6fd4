//! Hostile review of `--protocol` on the command line: each test failed on the code it was
//! written against, or covers a scenario no other test did.

mod common;

use common::{Serve, run_expect, stderr};

const WARNING: &str = "without authenticating itself";

/// Known defect 3: the accept-all CMPP simulator answers CONNECT with an all-zero
/// AuthenticatorISMG, and the client accepted it silently. Now it is accepted with one
/// stderr warning line; a partner that proves the secret gets none.
#[test]
fn an_unauthenticated_ismg_is_a_one_line_warning() {
    for p in ["cmpp3", "cmpp2"] {
        let submit = "submit dest_terminal_id=13800138000 msg_content=hello";
        let any = Serve::start(&["--protocol", p]);
        let args = |to: &str, account: &str| {
            let mut a = vec!["send", "--protocol", p, "--to"];
            a.extend([to, "--account", account, submit, submit]);
            a.into_iter().map(str::to_owned).collect::<Vec<_>>()
        };
        let run = |args: Vec<String>, mode: &str| {
            let mut a: Vec<&str> = args.iter().map(String::as_str).collect();
            a.extend(["--mode", mode]);
            run_expect(&a, b"", 0)
        };
        for mode in ["long", "short"] {
            let out = run(args(&any.to, "901234:secret"), mode);
            let err = stderr(&out);
            assert_eq!(err.matches(WARNING).count(), 1, "{p} {mode}: {err}");
            assert_eq!(err.lines().count(), 1, "{p} {mode}: one line: {err}");
            assert!(!err.contains("secret"), "{p}: {err}");
        }
        let accounts = common::temp_file("accounts", b"901234:secret\n");
        let known = Serve::start(&["--protocol", p, "--accounts", &accounts]);
        let out = run(args(&known.to, "901234:secret"), "long");
        assert!(!stderr(&out).contains(WARNING), "{p}: {}", stderr(&out));
    }
}

/// An account that does not fit the login PDU was cut silently (SMPP system_id 15 bytes,
/// password 8; CMPP Source_Addr 6): the client logged in as someone else. Now a usage error.
#[test]
fn an_account_too_long_for_the_login_is_a_usage_error_not_cut() {
    let serve = Serve::start(&["--protocol", "smpp"]);
    for (p, account, said) in [
        ("smpp", "aaaaaaaaaaaaaaaaaaaaaaaa:x", "at most 15"),
        ("smpp", "id:123456789", "at most 8"),
        ("cmpp3", "9012345:x", "at most 6"),
    ] {
        let out = run_expect(
            &[
                "send",
                "--protocol",
                p,
                "--to",
                &serve.to,
                "--account",
                account,
                "x",
            ],
            b"",
            2,
        );
        let err = stderr(&out);
        assert!(err.contains(said) && err.lines().count() == 1, "{p}: {err}");
        assert!(
            !err.contains("123456789"),
            "{p}: the secret is never printed: {err}"
        );
        let out = run_expect(
            &[
                "bench",
                "--protocol",
                p,
                "--account",
                account,
                "--duration",
                "1ms",
            ],
            b"",
            2,
        );
        assert!(stderr(&out).contains(said), "{p}: {}", stderr(&out));
    }
    let file = common::temp_file("long-accounts", b"901234:right\n9012345:x\n");
    let out = run_expect(
        &[
            "serve",
            "--protocol",
            "cmpp3",
            "--listen",
            "127.0.0.1:0",
            "--accounts",
            &file,
        ],
        b"",
        2,
    );
    assert!(stderr(&out).contains("line 2"), "{}", stderr(&out));
}

/// `--accounts FILE`: a `#` inside a secret cut the secret there (the whole rest of the line
/// was taken as a comment), and a file over 1 MiB was cut silently. Comments are whole lines;
/// CRLF lines work; an oversized file is refused.
#[test]
fn accounts_file_keeps_a_hash_in_a_secret_and_refuses_a_huge_file() {
    let file = common::temp_file(
        "hash-accounts",
        b"# partners\r\n  # indented comment\r\n901234:pa#ss\r\n\r\n",
    );
    for p in ["cmpp3", "smpp"] {
        let serve = Serve::start(&["--protocol", p, "--accounts", &file]);
        let submit = if p == "smpp" { "submit_sm" } else { "submit" };
        let out = run_expect(
            &[
                "send",
                "--protocol",
                p,
                "--to",
                &serve.to,
                "--account",
                "901234:pa#ss",
                submit,
            ],
            b"",
            0,
        );
        assert!(!stderr(&out).contains("warning"), "{p}: {}", stderr(&out));
        run_expect(
            &[
                "send",
                "--protocol",
                p,
                "--to",
                &serve.to,
                "--account",
                "901234:pa",
                submit,
            ],
            b"",
            1,
        );
    }
    let huge = vec![b'#'; 1024 * 1024 + 10];
    let file = common::temp_file("huge-accounts", &huge);
    let out = run_expect(
        &[
            "serve",
            "--protocol",
            "smpp",
            "--listen",
            "127.0.0.1:0",
            "--accounts",
            &file,
        ],
        b"",
        2,
    );
    assert!(stderr(&out).contains("larger than"), "{}", stderr(&out));
}

/// A minimal SMPP partner on 127.0.0.1:0 for one connection: answers bind, submit_sm and
/// unbind, and reports each command id it reads.
fn recording_smsc() -> (String, std::sync::mpsc::Receiver<u32>) {
    use std::io::{Read, Write};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let to = listener.local_addr().unwrap().to_string();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let Ok((mut s, _)) = listener.accept() else {
            return;
        };
        s.set_read_timeout(Some(std::time::Duration::from_secs(20)))
            .unwrap();
        // Bounded: a session of a few PDUs.
        for _ in 0..100 {
            let mut head = [0u8; 16];
            if s.read_exact(&mut head).is_err() {
                return;
            }
            let len = u32::from_be_bytes(head[..4].try_into().unwrap()) as usize;
            let mut body = vec![0u8; len.saturating_sub(16).min(4096)];
            if s.read_exact(&mut body).is_err() {
                return;
            }
            let id = u32::from_be_bytes(head[4..8].try_into().unwrap());
            let _ = tx.send(id);
            let resp_body: &[u8] = match id {
                0x09 => b"smsc\0",
                0x04 => b"7\0",
                _ => b"",
            };
            let mut out = ((16 + resp_body.len()) as u32).to_be_bytes().to_vec();
            out.extend((id | 0x8000_0000).to_be_bytes());
            out.extend([0; 4]);
            out.extend(&head[12..16]);
            out.extend(resp_body);
            if s.write_all(&out).is_err() {
                return;
            }
        }
    });
    (to, rx)
}

/// SIGTERM or SIGINT to `send -` mid-session killed it at once: no unbind, killed by the
/// signal. Now the signal ends the session like the end of stdin (logout, close) and exits
/// 1 with one line saying so.
#[test]
fn a_signal_to_send_stdin_logs_out_then_exits_1() {
    use std::io::{BufRead, Write};
    use std::time::Duration;
    for sig in ["-TERM", "-INT"] {
        let (to, seen) = recording_smsc();
        let mut child = common::spawn_piped(&[
            "send",
            "--protocol",
            "smpp",
            "--to",
            &to,
            "--account",
            "a:b",
            "-",
        ]);
        let mut stdin = child.stdin.take().unwrap();
        stdin.write_all(b"submit_sm short_message=hi\n").unwrap();
        let mut out = std::io::BufReader::new(child.stdout.take().unwrap());
        let mut line = String::new();
        out.read_line(&mut line).unwrap();
        assert!(line.starts_with("submit_sm_resp"), "{sig}: {line}");
        let next = || seen.recv_timeout(Duration::from_secs(10)).unwrap();
        assert_eq!((next(), next()), (0x09, 0x04), "{sig}: bind, submit_sm");
        common::signal(child.id(), sig);
        assert_eq!(next(), 0x06, "{sig}: unbind after the signal");
        let st = common::wait_exit(&mut child, Duration::from_secs(10), "send to exit");
        let err = common::stderr_of(&mut child);
        assert_eq!(st.code(), Some(1), "{sig}: {err}");
        assert!(
            err.contains("interrupted") && err.lines().count() == 1,
            "{sig}: {err}"
        );
        drop(stdin);
    }
}

/// `bench --protocol P --connections 100000000` hung: the long patterns log in every
/// connection before the clock starts, one after the other. Now a usage error.
#[test]
fn bench_protocol_refuses_absurd_connection_counts() {
    for n in ["100000000", "65537"] {
        let out = run_expect(
            &[
                "bench",
                "--protocol",
                "smpp",
                "--connections",
                n,
                "--duration",
                "100ms",
            ],
            b"",
            2,
        );
        let err = stderr(&out);
        assert!(
            err.contains("--connections") && err.lines().count() == 1,
            "{err}"
        );
    }
}
