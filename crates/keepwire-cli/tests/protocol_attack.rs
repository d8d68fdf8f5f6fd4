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
