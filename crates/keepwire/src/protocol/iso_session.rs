//! The client session of an ISO 8583 link: sign-on and sign-off when asked, the partner's
//! network-management requests answered, and the link's STANs.

use std::sync::Arc;
use std::time::SystemTime;

use bytes::Bytes;

use super::drive::Sequence;
use super::{Account, BindMode, Protocol};

/// An ISO 8583 session over each connection of a client: with `sign_on`, an 0800 / 70 = 001
/// first (answered by 0810 with 39 = 00, else the connection is refused) and an 0800 / 70 =
/// 002 before a graceful close; always, the partner's own 0800s (cutover, key change, its
/// sign-on) answered with their 0810. Hand it to
/// [`ClientBuilder::session`](crate::client::ClientBuilder::session); number requests with
/// [`next_sequence`](Self::next_sequence) (their STAN is [`Iso8583::stan`](super::Iso8583::stan)
/// of it).
///
/// ```
/// use keepwire::client::SessionHook;
/// use keepwire::protocol::{Iso8583Session, Template};
/// let plain = Iso8583Session::new(Template::Iso8583.protocol(), false);
/// assert!(plain.login().is_none() && plain.logout().is_none());
/// let signed = Iso8583Session::new(Template::Iso8583.protocol(), true);
/// assert!(signed.login().unwrap().starts_with(b"0800"));
/// ```
#[derive(Debug, Clone)]
pub struct Iso8583Session {
    protocol: Arc<dyn Protocol>,
    sign_on: bool,
    seq: Arc<Sequence>,
}

impl Iso8583Session {
    /// A session of `protocol` (an [`Iso8583`](super::Iso8583)); signs on and off when
    /// `sign_on`.
    pub fn new(protocol: Arc<dyn Protocol>, sign_on: bool) -> Self {
        Iso8583Session {
            protocol,
            sign_on,
            seq: Arc::new(Sequence::default()),
        }
    }

    /// The next sequence number of this link (shared with the sign-on and sign-off).
    pub fn next_sequence(&self) -> u32 {
        self.seq.next()
    }

    /// The template.
    pub fn protocol(&self) -> &Arc<dyn Protocol> {
        &self.protocol
    }
}

/// ISO 8583 sign-ons carry no account.
fn nobody() -> Account {
    Account {
        id: String::new(),
        secret: String::new(),
    }
}

impl crate::client::SessionHook for Iso8583Session {
    fn login(&self) -> Option<Bytes> {
        self.sign_on.then(|| {
            self.protocol.login(
                &nobody(),
                BindMode::default(),
                self.seq.next(),
                SystemTime::now(),
            )
        })
    }

    fn is_answer(&self, request: &[u8], frame: &[u8]) -> bool {
        super::drive::is_answer(&*self.protocol, request, frame)
    }

    fn check_login(&self, login: &[u8], answer: &[u8]) -> Result<(), crate::client::LoginRefused> {
        self.protocol
            .check_login(&nobody(), login, answer)
            .map(|_| ())
            .map_err(|e| crate::client::LoginRefused::new(e.to_string()))
    }

    fn logout(&self) -> Option<Bytes> {
        self.sign_on.then(|| self.protocol.logout(self.seq.next()))
    }

    fn answer(&self, frame: &[u8]) -> Option<Bytes> {
        self.protocol.client_answer(frame)
    }
}
