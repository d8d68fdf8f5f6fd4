//! With a protocol template, the upstream session (login, heartbeats, logout) is the
//! proxy's own: each client's login and logout is answered here, by the template's
//! simulator, and never forwarded. (Heartbeats are answered by the server's pipeline before
//! any frame reaches the handler.)

use std::sync::Arc;
use std::time::SystemTime;

use crate::protocol::{Protocol, SimulatorConfig};
use crate::server::Answer;

use super::LocalAnswer;

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
        if !self.protocol.is_session_request(frame) {
            return None;
        }
        let now = SystemTime::now();
        let sim = self
            .protocol
            .simulator(&SimulatorConfig::default())
            .answer(frame, now);
        Some(crate::protocol::drive::sim_answer(sim))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::client::{Correlate, Key};
    use crate::protocol::Template;
    use crate::protocol::drive::SequenceKey;

    #[test]
    fn sequence_numbers_are_rewritten_in_place_for_smpp_and_cmpp() {
        for t in [Template::Smpp, Template::Cmpp3, Template::Cmpp2] {
            let p = t.protocol();
            let line = match t {
                Template::Smpp => "submit_sm short_message=hi",
                _ => "submit msg_content=hi",
            };
            let frame = p.encode_text(line, 7).unwrap();
            let out = p.with_sequence(&frame, 0x0102_0304).unwrap();
            assert_eq!(p.sequence(&out), Some(0x0102_0304), "{t}");
            assert_eq!(out.len(), frame.len(), "{t}");
            // Only the four sequence bytes differ.
            let differ = frame.iter().zip(out.iter()).filter(|(a, b)| a != b).count();
            assert!(differ <= 4, "{t}: {differ} bytes differ");
            let key = SequenceKey::new(p.clone());
            let back = key.rekey(&out, &Key::from(7u32)).unwrap();
            assert_eq!(back, frame, "{t}");
            assert_eq!(p.with_sequence(&frame[..3], 1), None, "{t}");
            assert_eq!(key.rekey(&frame, &Key::from(&b"xy"[..])), None, "{t}");
        }
    }

    #[test]
    fn only_session_pdus_are_answered_locally() {
        let p = Template::Cmpp3.protocol();
        let local = TemplateSession::new(p.clone());
        let submit = p.encode_text("submit msg_content=hi", 3).unwrap();
        assert!(local.answer(&submit).is_none());
        let terminate = p.logout(9);
        let a = local.answer(&terminate).unwrap();
        assert_eq!(p.sequence(&a.frames()[0]), Some(9));
        assert!(a.closes());
        assert!(local.answer(b"\x00").is_none());
    }
}
