//! The connection pipeline every side shares: the server's connections, the async clients
//! and the blocking client.
//!
//! ```text
//!  socket ──read──▶ rbuf ──decode──▶ frame ──inbound step──┬─▶ Data: to the handler / caller
//!                                               │          ├─▶ PongQueued: pong in wbuf
//!                                               │          └─▶ Pong / Absorbed: swallowed
//!                                        Liveness (now)
//!                                               │
//!  clock ──────────────────────▶ timer step ────┴──▶ pings in wbuf, or Close(reason)
//!
//!  wbuf ──write step (one deadline for the whole write)──▶ socket
//! ```
//!
//! - [`inbound`]: the sans-IO half. [`decode`] takes the next whole frame out of the read
//!   buffer; [`Step::inbound`] classifies it with the link's [`Heartbeat`], feeds it to
//!   [`Liveness`], encodes the pong when liveness says [`Verdict::Answer`], and says what
//!   happened; [`Step::timer`] polls liveness and encodes the pings that are due. No socket
//!   and no clock: `now` is an argument. [`client_liveness`] builds the liveness state both
//!   clients start a connection with.
//! - [`outbound`]: the write step. [`write_all`] (async, over tokio's `TcpStream`) and
//!   [`write_all_blocking`] (over `std::net::TcpStream`) give the whole write one deadline and
//!   return the bytes written, also when they fail; [`WriteAll`] is the same write driven
//!   step by step, for a caller that reads while the socket is full.
//!
//! The default heartbeat (the empty frame where the framing carries it) is
//! [`crate::liveness::default_heartbeat`].
//!
//! [`Heartbeat`]: crate::liveness::Heartbeat
//! [`Liveness`]: crate::liveness::Liveness
//! [`Verdict::Answer`]: crate::liveness::Verdict::Answer

pub(crate) mod inbound;
pub(crate) mod outbound;

#[cfg(feature = "client")]
pub(crate) use inbound::client_liveness;
pub(crate) use inbound::{Inbound, Step, Tick, decode};
#[cfg(feature = "client")]
pub(crate) use outbound::WriteAll;
pub(crate) use outbound::WriteError;
#[cfg(feature = "server")]
pub(crate) use outbound::write_all;
#[cfg(feature = "blocking")]
pub(crate) use outbound::write_all_blocking;
