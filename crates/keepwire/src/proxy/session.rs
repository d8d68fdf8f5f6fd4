//! With a protocol template, the upstream session (login, heartbeats, logout) is the
//! proxy's own: each client's login and logout is answered here, by the template's
//! simulator, and never forwarded. (Heartbeats are answered by the server's pipeline before
//! any frame reaches the handler.)

use std::sync::Arc;
use std::time::SystemTime;

use crate::protocol::{Protocol, SimClose, SimulatorConfig};
use crate::server::Answer;

use super::LocalAnswer;

/// The session PDUs a client sends and the proxy answers itself: SMPP binds and unbind,
/// CMPP CONNECT and TERMINATE.
const SESSION_COMMANDS: &[&str] = &[
    "bind_transmitter",
    "bind_receiver",
    "bind_transceiver",
    "unbind",
    "connect",
    "terminate",
];

/// Answers clients' logins and logouts for a template, accepting every login (the
/// proxy's own account is the one the partner checks).
///
/// ```
/// use keepwire::protocol::{BindMode, Template};
/// use keepwire::proxy::{LocalAnswer, TemplateSession};
/// let p = Template::Smpp.protocol();
/// let local = TemplateSession::new(p.clone());
/// let bind = p.login(&"a:b".parse().unwrap(), BindMode::default(), 7, std::time::SystemTime::now());
/// let answer = local.answer(&bind).unwrap();
/// assert_eq!(p.sequence(&answer.frames()[0]), Some(7));
/// let submit = p.encode_text("submit_sm short_message=hi", 8).unwrap();
/// assert!(local.answer(&submit).is_none());
/// ```
#[derive(Debug)]
pub struct TemplateSession {
    protocol: Arc<dyn Protocol>,
}

impl TemplateSession {
    /// Answers `protocol`'s session PDUs.
    pub fn new(protocol: Arc<dyn Protocol>) -> Self {
        TemplateSession { protocol }
    }
}

impl LocalAnswer for TemplateSession {
    fn answer(&self, frame: &[u8]) -> Option<Answer> {
        if self.protocol.is_response(frame) {
            return None;
        }
        let pdu = self.protocol.decode_text(frame).ok()?;
        if !SESSION_COMMANDS.contains(&pdu.command.as_str()) {
            return None;
        }
        let now = SystemTime::now();
        let sim = self
            .protocol
            .simulator(&SimulatorConfig::default())
            .answer(frame, now);
        let answer = Answer::many(sim.frames);
        Some(match sim.close {
            SimClose::No => answer,
            SimClose::Now => answer.then_close(),
            SimClose::AfterPeer => answer.then_await_close(),
        })
    }
}
