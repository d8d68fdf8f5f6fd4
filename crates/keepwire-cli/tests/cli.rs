//! The `keepwire` binary, run for real: `encode` and `decode` round trips under every spec
//! kind, exact wire bytes of real formats, error messages and exit codes (0 success, 1 bad
//! data, 2 bad usage), and a closed stdout.

use std::io::{BufRead, BufReader, Read, Write};
use std::process::Stdio;
use std::sync::mpsc;
use std::thread;

mod common;
use common::{
    RUN_LIMIT, keepwire, run_expect, spawn_piped, stderr, temp_file, temp_path, wait_output,
};

#[track_caller]
fn encode(spec: &str, hex: bool, messages: &[&str]) -> Vec<u8> {
    let mut args = vec!["encode", "--framing", spec];
    if hex {
        args.push("--hex");
    }
    args.extend_from_slice(messages);
    let out = run_expect(&args, b"", 0);
    assert!(
        out.stderr.is_empty(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
}

#[track_caller]
fn decode(spec: &str, hex: bool, wire: &[u8]) -> String {
    let mut args = vec!["decode", "--framing", spec];
    if hex {
        args.push("--hex");
    }
    let out = run_expect(&args, wire, 0);
    assert!(
        out.stderr.is_empty(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).expect("decode prints text")
}

/// Every spec kind with messages in canonical escaped text and in lowercase hex that it can
/// carry: `decode(encode(m)) == m`.
const ROUND_TRIPS: &[(&str, &[&str], &[&str])] = &[
    (
        "len:ascii:4",
        &["hello", "", "tab\\there\\r\\n", "\\x00\\x82 \\\\ \\xff"],
        &["0800822000", "", "00ff"],
    ),
    (
        "len:bcd:2",
        &["ABCDEFGHIJKL", "", "\\x00\\x12"],
        &["deadbeef", ""],
    ),
    (
        "len:be:2",
        &["hello", "", "\\x00\\x00\\x05"],
        &["00", "ffff"],
    ),
    ("len:be:8", &["hello", ""], &["0102030405060708090a"]),
    ("len:le:4", &["hello", "", "\\x05\\x00"], &["0500", ""]),
    ("len:hex:4", &["hello", "0123456789", ""], &["ab", ""]),
    (
        "len:be:4:incl",
        &["\\x00\\x00\\x00\\x08\\x00\\x00\\x00\\x01", ""],
        &["0000000800000001", "8000000800000001"],
    ),
    ("len:be:2:skip=2", &["~~hi", "ab"], &["7e7e", "7e7e00"]),
    ("len:ascii:2:skip=1:incl", &["~hi", "~"], &["7e4142"]),
    ("len:be:1:adj=-2", &["hello", ""], &["00", ""]),
    ("len:ascii:3:adj=3:max=64", &["abc", "hello"], &["616263"]),
    ("delim:0x03", &["\\x02PAYLOAD", "", "a\\nb"], &["02ff", ""]),
    (
        "delim:\\r\\n",
        &["hello", "", "a\\rb", "a\\nb"],
        &["0d", ""],
    ),
    ("line", &["hello", "", "a\\tb", "a\\rb"], &["00ff", ""]),
    (
        "fixed:5",
        &["hello", "\\x00\\x01\\x02\\x03\\x04"],
        &["0102030405"],
    ),
    ("eof", &["everything \\x00 until close"], &["00ff"]),
    ("eof", &["\\n\\n"], &["0a0a0a"]),
];

#[test]
fn messages_round_trip_under_every_spec_kind_as_text_and_as_hex() {
    for (spec, texts, hexes) in ROUND_TRIPS {
        for (hex, messages) in [(false, texts), (true, hexes)] {
            let wire = encode(spec, hex, messages);
            let printed = decode(spec, hex, &wire);
            let want: String = messages.iter().map(|m| format!("{m}\n")).collect();
            assert_eq!(printed, want, "{spec} (hex {hex}): wire {wire:?}");
        }
    }
}

#[test]
fn delim_keep_prints_the_delimiter_and_encodes_back_to_the_same_bytes() {
    let wire = encode("delim:\\r\\n:keep", false, &["hello", "bye\\r\\n"]);
    assert_eq!(wire, b"hello\r\nbye\r\n");
    let printed = decode("delim:\\r\\n:keep", false, &wire);
    assert_eq!(printed, "hello\\r\\n\nbye\\r\\n\n");
    // The printed frames, fed back to encode, give the same wire bytes.
    let lines: Vec<&str> = printed.lines().collect();
    assert_eq!(encode("delim:\\r\\n:keep", false, &lines), wire);
    // In hex too.
    assert_eq!(
        decode("delim:0x03:keep", true, b"\x02ab\x03\x03"),
        "02616203\n03\n"
    );
}

#[test]
fn line_decodes_crlf_and_lf_alike() {
    assert_eq!(decode("line", false, b"hello\r\nbye\n\n"), "hello\nbye\n\n");
}

#[test]
fn iso8583_ascii_length_exact_wire_bytes() {
    // The README's example: `keepwire encode --framing len:ascii:4 'hello' | xxd`.
    assert_eq!(encode("len:ascii:4", false, &["hello"]), b"0005hello");
    // An 0800 network management request with a binary bitmap, and the "0000" keep-alive.
    assert_eq!(
        encode(
            "len:ascii:4",
            false,
            &["0800\\x82\\x20\\x00\\x00\\x00\\x00\\x00\\x00", ""]
        ),
        b"00120800\x82\x20\x00\x00\x00\x00\x00\x000000"
    );
    // Several messages are written back to back, in order.
    assert_eq!(
        encode("len:ascii:4", false, &["hello", "bye"]),
        b"0005hello0003bye"
    );
    assert_eq!(
        decode("len:ascii:4", false, b"0005hello0003bye"),
        "hello\nbye\n"
    );
}

#[test]
fn cmpp_length_includes_itself_exact_wire_bytes() {
    // CMPP ACTIVE_TEST (Command_Id 0x00000008), Sequence_Id 1: Total_Length 12 counts itself.
    let wire = encode("len:be:4:incl", true, &["0000000800000001"]);
    assert_eq!(wire, b"\x00\x00\x00\x0c\x00\x00\x00\x08\x00\x00\x00\x01");
    // The README's example.
    assert_eq!(decode("len:be:4:incl", true, &wire), "0000000800000001\n");
}

#[test]
fn bcd_and_other_headers_exact_wire_bytes() {
    assert_eq!(
        encode("len:bcd:2", false, &["ABCDEFGHIJKL"]),
        b"\x00\x12ABCDEFGHIJKL"
    );
    assert_eq!(encode("len:bcd:1", false, &["hello"]), b"\x05hello");
    assert_eq!(encode("len:be:2", false, &["hello"]), b"\x00\x05hello");
    assert_eq!(
        encode("len:le:4", false, &["hello"]),
        b"\x05\x00\x00\x00hello"
    );
    // Hex headers are written upper case.
    assert_eq!(
        encode("len:hex:4", false, &["0123456789"]),
        b"000A0123456789"
    );
    // The skip= prefix is written back before the length field.
    assert_eq!(encode("len:be:2:skip=1", false, &["~hi"]), b"~\x00\x02hi");
    assert_eq!(encode("delim:0x03", false, &["\\x02hi"]), b"\x02hi\x03");
    assert_eq!(encode("line", false, &["a", ""]), b"a\n\n");
}

/// A decode that fails part-way: (args, input, the frames printed before the error, the
/// error line).
type DecodeFailure = (
    &'static [&'static str],
    &'static [u8],
    &'static [u8],
    &'static str,
);

const DECODE_FAILURES: &[DecodeFailure] = &[
    (
        &["decode", "--framing", "len:ascii:4"],
        b"0005hello0005abc",
        b"hello\n",
        "keepwire: offset 9: truncated frame, 3 of 5 body bytes\n",
    ),
    (
        &["decode", "-f", "len:ascii:4"],
        b"0003abc00x5",
        b"abc\n",
        "keepwire: offset 7: ascii length header byte 2 is 0x78 ('x'), expected a decimal digit\n",
    ),
    (
        &["decode", "-f", "line", "--hex"],
        b"ab\ncd",
        b"6162\n",
        "keepwire: offset 3: truncated frame, 2 bytes and no delimiter\n",
    ),
];

#[test]
fn decode_error_names_the_offset_after_printing_the_frames_before_it() {
    for &(args, input, printed, error) in DECODE_FAILURES {
        let out = run_expect(args, input, 1);
        assert_eq!(out.stdout, printed, "{args:?}");
        assert_eq!(stderr(&out), error, "{args:?}");
    }
}

#[test]
fn decode_refuses_an_oversized_header() {
    let out = run_expect(
        &["decode", "-f", "len:be:4:max=16"],
        b"\x00\x00\x00\x02hi\x40\x00\x00\x00body",
        1,
    );
    assert_eq!(out.stdout, b"hi\n");
    let err = stderr(&out);
    assert!(err.starts_with("keepwire: offset 6: "), "{err}");
    assert!(err.contains("exceeds max=16"), "{err}");
    assert_eq!(err.lines().count(), 1, "{err}");
}

#[test]
fn decode_reads_a_file_or_stdin() {
    let p = temp_file("frames.bin", b"\x00\x02hi\x00\x00");
    let out = run_expect(&["decode", "-f", "len:be:2", &p], b"ignored", 0);
    assert_eq!(out.stdout, b"hi\n\n");
    // `-` and no FILE both mean stdin.
    let out = run_expect(&["decode", "-f", "len:be:2", "-"], b"\x00\x01x", 0);
    assert_eq!(out.stdout, b"x\n");
    let out = run_expect(&["decode", "-f", "len:be:2"], b"\x00\x01y", 0);
    assert_eq!(out.stdout, b"y\n");
    // Empty input: no frames, success.
    let out = run_expect(&["decode", "-f", "len:be:2"], b"", 0);
    assert!(out.stdout.is_empty());
    let _ = std::fs::remove_file(&p);
}

#[test]
fn decode_missing_file_is_a_runtime_failure_naming_it() {
    let path = temp_path("does-not-exist.bin");
    let p = path.to_str().expect("utf-8 temp path");
    let out = run_expect(&["decode", "-f", "line", p], b"", 1);
    assert!(out.stdout.is_empty());
    let err = stderr(&out);
    assert!(err.starts_with("keepwire: cannot open "), "{err}");
    assert!(err.contains("does-not-exist.bin"), "{err}");
    assert_eq!(err.lines().count(), 1, "{err}");
}

#[test]
fn hex_output_is_lowercase() {
    assert_eq!(
        decode("len:be:1", true, b"\x04\xAB\xCD\xEF\x0A"),
        "abcdef0a\n"
    );
    // Upper-case hex is accepted on input, and printed back lower case.
    let wire = encode("len:be:1", true, &["DEADBEEF", "De:Ad"]);
    assert_eq!(wire, b"\x04\xde\xad\xbe\xef\x02\xde\xad");
    assert_eq!(decode("len:be:1", true, &wire), "deadbeef\ndead\n");
}

#[test]
fn non_printable_bytes_are_printed_as_escapes() {
    let wire = b"\x0c\x00\x01\x7f\x80\xff\t\r\n\\ ~\"";
    assert_eq!(
        decode("len:be:1", false, wire),
        "\\x00\\x01\\x7f\\x80\\xff\\t\\r\\n\\\\ ~\"\n"
    );
    // Every byte survives encode then decode as text.
    let all: String = (0..=255u8).map(|b| format!("\\x{b:02x}")).collect();
    let wire = encode("len:be:2", false, &[&all]);
    assert_eq!(wire.len(), 2 + 256);
    let printed = decode("len:be:2", false, &wire);
    let again = encode("len:be:2", false, &[printed.trim_end_matches('\n')]);
    assert_eq!(again, wire);
}

#[test]
fn exit_codes_for_success_bad_data_and_bad_usage() {
    // 0: success.
    run_expect(&["encode", "-f", "line", "ok"], b"", 0);
    run_expect(&["decode", "-f", "line"], b"ok\n", 0);
    // 1: bad data.
    run_expect(&["decode", "-f", "fixed:4"], b"abcdef", 1);
    run_expect(&["encode", "-f", "fixed:4", "abc"], b"", 1);
    // 2: bad spec, for both commands, with the spec error on one line.
    for cmd in ["encode", "decode"] {
        let out = run_expect(&[cmd, "-f", "len:asci:4", "x"], b"", 2);
        assert!(out.stdout.is_empty());
        assert_eq!(
            stderr(&out),
            "keepwire: framing spec \"len:asci:4\": unknown length encoding \"asci\"; \
             expected ascii, bcd, be, le or hex\n"
        );
    }
    // 2: flags clap rejects.
    run_expect(&["encode", "hello"], b"", 2);
    run_expect(&["decode", "-f", "line", "--nope"], b"", 2);
}

#[test]
fn encode_usage_errors_write_nothing() {
    // No messages.
    let out = run_expect(&["encode", "-f", "line"], b"", 2);
    assert!(out.stdout.is_empty());
    assert!(stderr(&out).contains("no messages"), "{}", stderr(&out));
    // A bad escape in the last message: the earlier ones are not written either.
    let out = run_expect(&["encode", "-f", "line", "ok", "fine", "b\\q"], b"", 2);
    assert!(out.stdout.is_empty());
    let err = stderr(&out);
    assert!(err.starts_with("keepwire: message 3: bad escape"), "{err}");
    assert_eq!(err.lines().count(), 1, "{err}");
    run_expect(&["encode", "-f", "line", "a\\x4"], b"", 2);
    run_expect(&["encode", "-f", "line", "trailing\\"], b"", 2);
    // Bad hex.
    let out = run_expect(&["encode", "-f", "line", "--hex", "00", "abc"], b"", 2);
    assert!(out.stdout.is_empty());
    assert!(
        stderr(&out).contains("message 2: hex \"abc\""),
        "{}",
        stderr(&out)
    );
    run_expect(&["encode", "-f", "line", "--hex", "zz"], b"", 2);
    // `-` must be alone; a literal `-` is `\x2d`.
    run_expect(&["encode", "-f", "line", "a", "-"], b"", 2);
    let out = run_expect(&["encode", "-f", "line", "\\x2d", "a"], b"", 0);
    assert_eq!(out.stdout, b"-\na\n");
    // eof carries one message per stream.
    let out = run_expect(&["encode", "-f", "eof", "a", "b"], b"", 2);
    assert!(out.stdout.is_empty());
}

#[test]
fn encode_stops_at_a_message_the_framing_cannot_express() {
    let long = "x".repeat(10_000);
    let out = run_expect(&["encode", "-f", "len:ascii:4", "a", &long, "b"], b"", 1);
    // The messages before it are written, nothing of it, nothing after it.
    assert_eq!(out.stdout, b"0001a");
    let err = stderr(&out);
    assert!(
        err.starts_with("keepwire: message 2: cannot encode: body of 10000 bytes"),
        "{err}"
    );
    assert_eq!(err.lines().count(), 1, "{err}");

    let out = run_expect(&["encode", "-f", "delim:0x03", "a\\x03b"], b"", 1);
    assert!(out.stdout.is_empty());
    assert!(
        stderr(&out).contains("contains the delimiter"),
        "{}",
        stderr(&out)
    );

    let out = run_expect(&["encode", "-f", "line", "ok", "a\\nb"], b"", 1);
    assert_eq!(out.stdout, b"ok\n");

    let out = run_expect(&["encode", "-f", "len:be:2:skip=2", "a"], b"", 1);
    assert!(stderr(&out).contains("skip= prefix"), "{}", stderr(&out));

    let out = run_expect(&["encode", "-f", "len:be:1:max=3", "abcd"], b"", 1);
    assert!(stderr(&out).contains("exceeds max=3"), "{}", stderr(&out));
}

#[test]
fn encode_reads_stdin_one_message_a_line() {
    let out = run_expect(
        &["encode", "-f", "len:be:2", "-"],
        b"hello\r\n\nx\\x00y\nlast",
        0,
    );
    assert_eq!(
        out.stdout,
        b"\x00\x05hello\x00\x00\x00\x03x\x00y\x00\x04last"
    );
    let out = run_expect(
        &["encode", "-f", "len:be:1", "--hex", "-"],
        b"00ff\nAB\n",
        0,
    );
    assert_eq!(out.stdout, b"\x02\x00\xff\x01\xab");
    // No lines: no messages, success.
    let out = run_expect(&["encode", "-f", "len:be:1", "-"], b"", 0);
    assert!(out.stdout.is_empty());
    // A bad escape on line 2: line 1 is written, then exit 2 naming the line.
    let out = run_expect(&["encode", "-f", "line", "-"], b"ok\nbad\\q\nnever\n", 2);
    assert_eq!(out.stdout, b"ok\n");
    assert!(stderr(&out).starts_with("keepwire: stdin line 2: bad escape"));
    // An unencodable line: exit 1, the lines before it written.
    let out = run_expect(&["encode", "-f", "fixed:2", "-"], b"ab\nabc\ncd\n", 1);
    assert_eq!(out.stdout, b"ab");
    assert!(stderr(&out).starts_with("keepwire: stdin line 2: cannot encode"));
    // Bytes that are not UTF-8 must be escapes.
    let out = run_expect(&["encode", "-f", "line", "-"], b"\xff\n", 2);
    assert!(stderr(&out).contains("not UTF-8"), "{}", stderr(&out));
    // eof: one line only.
    run_expect(&["encode", "-f", "eof", "-"], b"one\n", 0);
    run_expect(&["encode", "-f", "eof", "-"], b"one\ntwo\n", 2);
}

#[test]
fn encode_from_stdin_writes_each_message_as_its_line_arrives() {
    let mut child = spawn_piped(&["encode", "-f", "len:ascii:2", "-"]);
    let mut input = child.stdin.take().expect("stdin is piped");
    let mut output = child.stdout.take().expect("stdout is piped");
    let (tx, rx) = mpsc::channel();
    thread::spawn(move || {
        let mut buf = [0u8; 64];
        loop {
            match output.read(&mut buf) {
                Ok(0) | Err(_) => break,
                Ok(n) => {
                    if tx.send(buf[..n].to_vec()).is_err() {
                        break;
                    }
                }
            }
        }
    });
    let mut got = Vec::new();
    for (line, wire) in [(&b"hi\n"[..], &b"02hi"[..]), (b"bye\n", b"03bye")] {
        input.write_all(line).expect("writing a line");
        input.flush().expect("flushing stdin");
        // stdin is still open: the frame must come out without waiting for more input.
        got.clear();
        while got.len() < wire.len() {
            got.extend(
                rx.recv_timeout(RUN_LIMIT)
                    .expect("the frame did not arrive"),
            );
        }
        assert_eq!(got, wire);
    }
    drop(input);
    let out = wait_output(child);
    assert!(out.status.success(), "{}", stderr(&out));
}

#[test]
fn closed_stdout_exits_quietly() {
    // Enough frames that decode is still writing when the reader goes away.
    let frame = b"0010abcdefghij";
    let path = temp_path("many-frames.bin");
    std::fs::write(&path, frame.repeat(200_000)).expect("writing the input file");
    let p = path.to_str().expect("utf-8 temp path");

    let mut child = keepwire(&["decode", "-f", "len:ascii:4", p])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawning keepwire");
    let mut first = String::new();
    BufReader::new(child.stdout.take().expect("stdout is piped"))
        .read_line(&mut first)
        .expect("reading the first line");
    assert_eq!(first, "abcdefghij\n");
    // The reader is dropped here: like `| head -1`.
    let out = wait_output(child);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert!(out.stderr.is_empty(), "{}", stderr(&out));

    // encode the same way, reading stdin from the file.
    let lines = "abcdefghij\n".repeat(200_000);
    std::fs::write(&path, lines).expect("writing the input file");
    let mut child = keepwire(&["encode", "-f", "len:ascii:4", "-"])
        .stdin(std::fs::File::open(&path).expect("opening the input file"))
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawning keepwire");
    let mut first = [0u8; 14];
    child
        .stdout
        .take()
        .expect("stdout is piped")
        .read_exact(&mut first)
        .expect("reading the first frame");
    assert_eq!(&first, frame);
    let out = wait_output(child);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert!(out.stderr.is_empty(), "{}", stderr(&out));
    let _ = std::fs::remove_file(&path);
}

#[test]
fn decode_prints_each_frame_before_waiting_for_more_input() {
    let mut child = spawn_piped(&["decode", "-f", "len:ascii:2"]);
    let mut input = child.stdin.take().expect("stdin is piped");
    let output = child.stdout.take().expect("stdout is piped");
    let (tx, rx) = mpsc::channel();
    thread::spawn(move || {
        for line in BufReader::new(output).lines() {
            let Ok(line) = line else { break };
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    // A frame and half of the next: the first is printed while stdin is still open.
    input.write_all(b"02hi03b").expect("writing to stdin");
    input.flush().expect("flushing stdin");
    assert_eq!(rx.recv_timeout(RUN_LIMIT).expect("no frame printed"), "hi");
    input.write_all(b"ye").expect("writing to stdin");
    input.flush().expect("flushing stdin");
    assert_eq!(rx.recv_timeout(RUN_LIMIT).expect("no frame printed"), "bye");
    drop(input);
    let out = wait_output(child);
    assert!(out.status.success(), "{}", stderr(&out));
}

/// The subcommands `keepwire --help` lists, from its `Commands:` section.
fn listed_commands() -> Vec<String> {
    let out = run_expect(&["--help"], b"", 0);
    let help = String::from_utf8_lossy(&out.stdout).into_owned();
    help.lines()
        .skip_while(|l| !l.starts_with("Commands:"))
        .skip(1)
        .take_while(|l| l.starts_with("  "))
        .filter_map(|l| l.split_whitespace().next().map(str::to_string))
        .collect()
}

/// The top-level help lists exactly the subcommands that are built, and says nothing of one
/// that is not.
#[test]
fn top_level_help_lists_only_real_subcommands() {
    let mut listed = listed_commands();
    listed.sort();
    assert_eq!(
        listed,
        [
            "bench", "decode", "encode", "help", "proxy", "send", "serve", "watch"
        ]
    );
    // Each one listed is real: its help runs.
    for cmd in listed.iter().filter(|c| *c != "help") {
        run_expect(&[cmd, "--help"], b"", 0);
    }
    // One that is not is a usage error.
    run_expect(&["gateway", "--help"], b"", 2);
}

/// Every subcommand's `--help` ends with an `Examples:` section of two to four commands,
/// each a real `keepwire SUBCOMMAND` line.
#[test]
fn every_subcommand_help_ends_with_examples() {
    for cmd in listed_commands() {
        if cmd == "help" {
            continue;
        }
        let out = run_expect(&[&cmd, "--help"], b"", 0);
        let help = String::from_utf8_lossy(&out.stdout).into_owned();
        let examples = help
            .split_once("\nExamples:\n")
            .map(|(_, e)| e)
            .unwrap_or_else(|| panic!("keepwire {cmd} --help has no Examples section:\n{help}"));
        // Commands are the lines that are not comments; `nc .. |` pipes count by their
        // keepwire part.
        let runs = examples
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty() && !l.starts_with('#') && !l.starts_with("--"))
            .filter(|l| l.contains(&format!("keepwire {cmd} ")))
            .count();
        assert!(
            (2..=4).contains(&runs),
            "keepwire {cmd} --help has {runs} examples:\n{examples}"
        );
    }
}
