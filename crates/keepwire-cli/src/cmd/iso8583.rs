//! The ISO 8583 flags over `--protocol iso8583`: `--iso8583-spec ascii|binary|FILE.toml` (serve,
//! send, encode, decode, bench), `--respond FIELD=VALUE:CODE` (serve) and `--sign-on` (send,
//! bench). The template itself is the library's (`keepwire::protocol::Iso8583`).

use std::sync::Arc;

use keepwire::protocol::iso8583::Spec;
use keepwire::protocol::{Iso8583, Protocol, RespondRule, Template};

use super::Failure;

/// The template named by `--protocol`, with `--iso8583-spec` and `--respond` applied when it is
/// `iso8583` (both refused with another template).
pub(crate) fn protocol(
    name: Option<&str>,
    spec: Option<&str>,
    respond: &[String],
) -> Result<Option<Arc<dyn Protocol>>, Failure> {
    let Some(p) = super::protocol::template(name)? else {
        return Ok(None);
    };
    if p.template() != Template::Iso8583 {
        let flag = match (spec, respond) {
            (Some(_), _) => "--iso8583-spec",
            (None, [_, ..]) => "--respond",
            (None, []) => return Ok(Some(p)),
        };
        return Err(Failure::Usage(format!(
            "{flag} is for --protocol iso8583, not {}; drop it",
            p.template()
        )));
    }
    let spec = load_spec(spec.unwrap_or("ascii"))?;
    let rules = respond
        .iter()
        .map(|r| {
            r.parse::<RespondRule>()
                .and_then(|r| r.check(&spec).map(|()| r))
                .map_err(|e| Failure::Usage(format!("--respond: {e}")))
        })
        .collect::<Result<Vec<_>, _>>()?;
    Ok(Some(Arc::new(Iso8583::new(spec).with_rules(rules))))
}

/// `--iso8583-spec`: a built-in table by name, else a TOML file.
fn load_spec(text: &str) -> Result<Spec, Failure> {
    let spec = match text {
        "ascii" => Ok(Spec::ascii()),
        "binary" => Ok(Spec::binary()),
        // A file that cannot be read may be a misspelt name; a bad table names its line.
        path => Spec::load(path).map_err(|e| {
            Failure::Usage(if e.is_io() {
                format!(
                    "--iso8583-spec {path}: {e}; expected ascii, binary or a TOML field table \
                     (docs/protocols.md)"
                )
            } else {
                format!("--iso8583-spec: {e}")
            })
        }),
    }?;
    Iso8583::check_spec(&spec).map_err(|e| {
        Failure::Usage(format!(
            "--iso8583-spec {text}: the template's echo test does not fit the table: {e}"
        ))
    })?;
    Ok(spec)
}

/// `--sign-on` and `--account` checked against the template: ISO 8583 signs on without an
/// account; the others log in with one.
pub(crate) fn check_login_flags(
    p: &dyn Protocol,
    sign_on: bool,
    account: Option<&str>,
) -> Result<(), Failure> {
    match (p.template(), sign_on, account) {
        (Template::Iso8583, _, Some(_)) => Err(Failure::Usage(
            "--account: an ISO 8583 sign-on carries no account; use --sign-on".into(),
        )),
        (Template::Iso8583, _, None) | (_, false, _) => Ok(()),
        (t, true, _) => Err(Failure::Usage(format!(
            "--sign-on is for --protocol iso8583; {t} logs in with --account ID:SECRET"
        ))),
    }
}

/// `--accounts` and `--receipts` are logins and delivery reports: an ISO 8583 acquirer has
/// neither, so they are refused rather than ignored.
pub(crate) fn check_serve_flags(
    name: Option<&str>,
    accounts: bool,
    receipts: bool,
) -> Result<(), Failure> {
    if name != Some(Template::Iso8583.name()) {
        return Ok(());
    }
    match (accounts, receipts) {
        (true, _) => Err(Failure::Usage(
            "--accounts: the iso8583 simulator takes every sign-on; drop --accounts".into(),
        )),
        (false, true) => Err(Failure::Usage(
            "--receipts: iso8583 has no delivery reports; drop --receipts".into(),
        )),
        (false, false) => Ok(()),
    }
}
