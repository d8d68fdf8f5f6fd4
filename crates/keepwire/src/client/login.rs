//! Sessions on top of connections: a login on every new connection before any request, a
//! logout before a graceful close, and the answers a client owes its partner for frames the
//! partner sends unasked (SMPP `deliver_sm` → `deliver_sm_resp`).
//!
//! The decisions are the [`SessionHook`]'s (pure functions of frames: which frame logs in,
//! which answers it, whether the partner accepted); this file is the thin I/O around them.
//!
//! | when | what the client does |
//! |---|---|
//! | a connection is made (first connect, reconnect, fail-back probe, each short request) | writes [`SessionHook::login`], reads frames until one [`is_answer`](SessionHook::is_answer) to it, within `login_timeout`; other frames get [`SessionHook::answer`] |
//! | the answer is checked by [`SessionHook::check_login`] | accepted: the connection serves requests; refused: the connection is closed, the endpoint marked down, the error [`ClientError::is_login`](super::ClientError::is_login) |
//! | refused on a reconnect | counted as a failed connect: the reconnect backs off (100 ms doubling to 10 s by default): a partner that refuses is never retried in a loop |
//! | a frame matching no request arrives on a long link | [`SessionHook::answer`] is written (the frame also goes to the unsolicited stream) |
//! | graceful close (`close()`, every handle gone) or a short request answered | writes [`SessionHook::logout`] and waits for its answer, within `login_timeout`, then FIN |

use std::fmt;
use std::time::Instant;

use super::connect::Connected;
use bytes::{Bytes, BytesMut};

use super::config::ClientConfig;
use crate::frame::FrameCodec;
use crate::pipeline::{WriteAll, decode};

/// A session over each connection of a client: its login, logout, and the answers owed to
/// the partner's own requests. Set with
/// [`ClientBuilder::session`](super::ClientBuilder::session); protocol templates implement it
/// (`keepwire::protocol::drive::ClientSession`).
///
/// ```
/// use bytes::Bytes;
/// use keepwire::client::{LoginRefused, SessionHook};
///
/// /// "LOGIN" answered by "OK" or "NO".
/// #[derive(Debug)]
/// struct Plain;
/// impl SessionHook for Plain {
///     fn login(&self) -> Option<Bytes> { Some(Bytes::from_static(b"LOGIN")) }
///     fn is_answer(&self, _request: &[u8], frame: &[u8]) -> bool {
///         frame == b"OK" || frame == b"NO" || frame == b"BYE"
///     }
///     fn check_login(&self, _login: &[u8], answer: &[u8]) -> Result<(), LoginRefused> {
///         if answer == b"OK" { Ok(()) } else { Err(LoginRefused::new("login refused: NO")) }
///     }
///     fn logout(&self) -> Option<Bytes> { Some(Bytes::from_static(b"LOGOUT")) }
/// }
/// assert!(Plain.check_login(b"LOGIN", b"OK").is_ok());
/// assert_eq!(Plain.check_login(b"LOGIN", b"NO").unwrap_err().to_string(), "login refused: NO");
/// assert_eq!(Plain.answer(b"anything"), None);
/// ```
pub trait SessionHook: Send + Sync + fmt::Debug + 'static {
    /// The login frame for a new connection (`None`: no login).
    fn login(&self) -> Option<Bytes>;
    /// Whether `frame` answers `request` (the login or the logout).
    fn is_answer(&self, request: &[u8], frame: &[u8]) -> bool;
    /// Checks the partner's answer to `login`.
    ///
    /// # Errors
    /// [`LoginRefused`] naming the partner's status.
    fn check_login(&self, login: &[u8], answer: &[u8]) -> Result<(), LoginRefused>;
    /// The logout frame before a graceful close (`None`: none).
    fn logout(&self) -> Option<Bytes>;
    /// What the client owes the partner for `frame`, a frame that answers no request of ours
    /// (`None`: nothing).
    fn answer(&self, frame: &[u8]) -> Option<Bytes> {
        let _ = frame;
        None
    }
}

/// The partner refused a login: one lowercase line naming its status.
///
/// ```
/// use keepwire::client::LoginRefused;
/// let r = LoginRefused::new("bind refused: ESME_RINVPASWD (0x0000000e)");
/// assert!(r.to_string().contains("ESME_RINVPASWD"));
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LoginRefused {
    message: String,
}

impl LoginRefused {
    /// A refusal described by `message` (what the partner answered).
    pub fn new(message: impl Into<String>) -> Self {
        LoginRefused {
            message: message.into(),
        }
    }
}

impl fmt::Display for LoginRefused {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for LoginRefused {}

/// Why a login did not succeed: refused by the partner, or anything else (I/O, timeout,
/// a bad frame), as a reason for logs.
#[derive(Debug)]
pub(crate) enum LoginFailure {
    Refused(String),
    Other(String),
}

/// Logs in on a fresh connection: writes the hook's login frame and waits, within the
/// login timeout, for its answer. Frames read after the answer stay in `leftover`.
pub(crate) async fn log_in(cfg: &ClientConfig, c: &mut Connected) -> Result<(), LoginFailure> {
    let Some(hook) = cfg.session.as_deref() else {
        return Ok(());
    };
    let Some(login) = hook.login() else {
        return Ok(());
    };
    let deadline = crate::deadline::std_in(cfg.login_timeout);
    let mut leftover = std::mem::take(&mut c.leftover);
    let answer = exchange(cfg, hook, c, &mut leftover, &login, deadline).await;
    c.leftover = leftover;
    let answer = answer.map_err(|e| LoginFailure::Other(format!("login: {e}")))?;
    hook.check_login(&login, &answer)
        .map_err(|r| LoginFailure::Refused(r.to_string()))
}

/// Logs out before a graceful close: writes the hook's logout frame and waits, within the
/// login timeout, for its answer. Best effort: a partner that does not answer is closed on
/// anyway; what went wrong is logged.
pub(crate) async fn log_out(cfg: &ClientConfig, c: &mut Connected, rbuf: &mut BytesMut) {
    let Some(hook) = cfg.session.as_deref() else {
        return;
    };
    let Some(logout) = hook.logout() else {
        return;
    };
    let deadline = crate::deadline::std_in(cfg.login_timeout);
    if let Err(e) = exchange(cfg, hook, c, rbuf, &logout, deadline).await {
        tracing::debug!("logout: {e}");
    }
}

/// Writes `request` and reads until the frame that answers it, by `deadline`. Frames before
/// it get the hook's answer (heartbeat pings included, when the hook answers them).
async fn exchange(
    cfg: &ClientConfig,
    hook: &dyn SessionHook,
    c: &mut Connected,
    rbuf: &mut BytesMut,
    request: &[u8],
    deadline: Instant,
) -> Result<Bytes, String> {
    let mut codec = FrameCodec::new(cfg.framing.clone());
    write_frame(cfg, c, &mut codec, request, deadline).await?;
    let mut eof = false;
    loop {
        while let Some(frame) = decode(&mut codec, rbuf, eof).map_err(|e| e.to_string())? {
            if hook.is_answer(request, &frame) {
                return Ok(frame);
            }
            if let Some(reply) = owed(cfg, hook, &frame) {
                write_frame(cfg, c, &mut codec, &reply, deadline).await?;
            }
        }
        if eof {
            return Err("peer closed the connection before answering".into());
        }
        rbuf.reserve(4096);
        let read = tokio::time::timeout_at(deadline.into(), c.read(rbuf)).await;
        match read {
            Err(_) => {
                return Err(format!(
                    "no answer within {}",
                    humantime::format_duration(cfg.login_timeout)
                ));
            }
            Ok(Ok(0)) => eof = true,
            Ok(Ok(_)) => {}
            Ok(Err(e)) => return Err(format!("read failed: {e}")),
        }
    }
}

/// What `frame` calls for while a login or logout waits: a pong to a heartbeat ping, or the
/// hook's answer.
fn owed(cfg: &ClientConfig, hook: &dyn SessionHook, frame: &[u8]) -> Option<Bytes> {
    if let Some(hb) = cfg.heartbeat.as_deref() {
        return match hb.classify(frame) {
            Some(crate::liveness::Beat::Ping) => Some(hb.pong(frame)),
            Some(_) => None,
            None => hook.answer(frame),
        };
    }
    hook.answer(frame)
}

/// Encodes and writes one frame by `deadline` (and the write timeout).
async fn write_frame(
    cfg: &ClientConfig,
    c: &mut Connected,
    codec: &mut FrameCodec,
    frame: &[u8],
    deadline: Instant,
) -> Result<(), String> {
    let mut out = BytesMut::new();
    codec
        .encode_to(frame, &mut out)
        .map_err(|e| e.to_string())?;
    let (_, res) = c
        .write_with(
            WriteAll::new(cfg.write_timeout).with_deadline(deadline),
            &out,
        )
        .await;
    res.map_err(|e| format!("write failed: {e}"))
}
