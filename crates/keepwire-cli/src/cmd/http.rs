//! `--framing http` for `serve` and `send`: the flags that only HTTP has, turned into the
//! library's [`keepwire::http`] handler and client.

use std::io::Write;
use std::net::{SocketAddr, ToSocketAddrs};
use std::time::Duration;

use keepwire::frame::FramingSpec;
use keepwire::http::{HttpClient, HttpReply, HttpService, KeepAlive};
use keepwire::server::{Reply, ServeSetup};

use super::Failure;

/// The HTTP handler `serve --framing http` runs, or `None` under any other framing.
///
/// `--idle-timeout` is the keep-alive timeout (advertised in `Keep-Alive: timeout=N` with
/// `--keepalive-header`); `--keepalive-requests N` closes a connection after its Nth request
/// (answered with `Connection: close`).
pub(crate) fn service(
    setup: &ServeSetup,
    content_type: Option<&str>,
    keepalive_requests: Option<u64>,
    keepalive_header: bool,
) -> Result<Option<HttpService>, Failure> {
    if !matches!(setup.config.framing, FramingSpec::Http(_)) {
        let flag = if content_type.is_some() {
            Some("--content-type")
        } else if keepalive_requests.is_some() {
            Some("--keepalive-requests")
        } else if keepalive_header {
            Some("--keepalive-header")
        } else {
            None
        };
        return match flag {
            Some(f) => Err(Failure::Usage(format!("{f} needs --framing http"))),
            None => Ok(None),
        };
    }
    let reply = match &setup.reply {
        Reply::Fixed(b) => HttpReply::Fixed(b.clone()),
        _ => HttpReply::Echo,
    };
    let mut ka = KeepAlive::default();
    ka.max_requests = keepalive_requests.unwrap_or(0);
    ka.timeout = setup.config.liveness.read_idle;
    ka.advertise = keepalive_header;
    let ct = content_type.unwrap_or("text/plain");
    if ct.bytes().any(|b| b < 0x20 || b == 0x7f) {
        return Err(Failure::Usage(format!(
            "--content-type {ct:?}: control characters cannot go in a header field"
        )));
    }
    Ok(Some(HttpService::new(reply, ct, ka)))
}

/// What `send --framing http` needs of its flags.
pub(crate) struct SendArgs<'a> {
    pub(crate) to: &'a [String],
    pub(crate) framing: &'a str,
    pub(crate) timeout: Duration,
    pub(crate) raw: bool,
    pub(crate) messages: &'a [String],
}

/// Sends each message as a request on one connection, reused while the responses allow it,
/// and prints each response's status line and body.
pub(crate) fn send(args: &SendArgs<'_>) -> Result<(), Failure> {
    let FramingSpec::Http(spec) = super::parse_spec(args.framing)? else {
        return Err(Failure::Usage("--raw needs --framing http".into()));
    };
    let to = args.to.first().map(|s| s.trim()).unwrap_or_default();
    let addr: SocketAddr = to
        .to_socket_addrs()
        .ok()
        .and_then(|mut a| a.next())
        .ok_or_else(|| {
            Failure::Usage(format!(
                "--to {to:?} is not an address; expected HOST:PORT, e.g. 127.0.0.1:8080"
            ))
        })?;
    if args.messages.is_empty() {
        return Err(Failure::Usage(
            "no requests to send; give lines like 'GET /' or 'GET /x Connection: close'".into(),
        ));
    }
    let mut reqs = Vec::with_capacity(args.messages.len());
    for (i, m) in args.messages.iter().enumerate() {
        let req = if args.raw {
            keepwire::text::unescape(m)
                .map(bytes::Bytes::from)
                .map_err(|e| e.to_string())
                .and_then(|r| {
                    let check = keepwire::http::message::whole_request(&r);
                    check.map(|()| r).map_err(|e| e.to_string())
                })
                .map_err(|e| Failure::Usage(format!("request {}: {e}", i + 1)))?
        } else {
            keepwire::http::message::request_from_line(m, to)
                .map_err(|e| Failure::Usage(format!("request {}: {e}", i + 1)))?
        };
        reqs.push(req);
    }
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| Failure::Runtime(format!("cannot start the runtime: {e}")))?;
    rt.block_on(async move {
        let mut client = HttpClient::new(addr, args.timeout).with_spec(spec);
        for req in reqs {
            let resp = client
                .request(&req)
                .await
                .map_err(|e| Failure::Runtime(format!("{to}: {e}")))?;
            let mut out = std::io::stdout().lock();
            writeln!(
                out,
                "{}\n{}",
                keepwire::text::escape(&resp.head.status_line),
                keepwire::text::escape(&resp.head.body)
            )
            .and_then(|()| out.flush())
            .map_err(|e| Failure::Runtime(format!("writing stdout: {e}")))?;
        }
        Ok(())
    })
}
