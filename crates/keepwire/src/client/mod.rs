//! Clients: short, long, pooled, multiplexed, duplex and simplex, with heartbeats,
//! reconnect and failover.
//!
//! | type              | connections                     | requests in flight | replies matched by      |
//! |-------------------|---------------------------------|--------------------|-------------------------|
//! | [`ShortClient`]   | one per request, client closes  | one per connection | the connection          |
//! | [`LongClient`]    | one, kept alive and reconnected | `max_in_flight` (1)| order (FIFO)            |
//! | [`Pool`]          | N long ones                     | one per connection | order                   |
//! | [`MuxClient`]     | one long one                    | many               | a [`Correlate`] key     |
//! | [`Duplex`]        | one, split in sender / receiver | n/a                | nothing: frames both ways |
//! | [`Simplex`]       | two: send-only and receive-only | n/a                | nothing                 |
//!
//! All are built from one [`ClientBuilder`] (framing, endpoint list, timeouts, heartbeats,
//! backoff). Clients that answer requests implement [`tower::Service<Bytes>`], so tower
//! layers stack on them.
//!
//! # Nothing lost silently
//! Every request ends with its reply or a [`ClientError`] that says whether it may have
//! reached the server: [`ClientError::is_not_sent`] (not a byte written: retry freely) or
//! [`ClientError::may_have_been_sent`] (retry only what is idempotent). A request that was
//! not sent is moved to the next connection or endpoint by itself; one that may have been
//! sent is never retried unless [`ClientBuilder::retry_sent`] opts in (short client).
//!
//! # Closing
//! The long clients ([`LongClient`], [`MuxClient`], [`Duplex`], [`Simplex`]) end their
//! connection when the last clone is dropped, or for every clone at once with `close()`,
//! which also waits: requests in flight end first (answered, or at their deadline), the
//! server reads end of stream, and the connection task has ended when `close` returns. A
//! request made through a clone after `close` fails at once with
//! [`ClientError::is_shutdown`], not sent. A [`ShortClient`] holds no connection between
//! requests; a [`Pool`] is dropped (see its docs).
//!
//! # Liveness
//! A long connection drives the same sans-IO [`Liveness`](crate::liveness::Liveness) state
//! machine as the server's connections: it answers the peer's pings, and with
//! [`ClientBuilder::ping`] it pings the peer after `interval` of inbound silence and gives up
//! after `misses` unanswered pings. A peer that stops answering while TCP still accepts data
//! (a hung or overloaded service) is thus found within `interval × misses + timeout`; the
//! endpoint is marked down and the client moves to the next (see [`EndpointSet`]).
//! [`ClientBuilder::probe_on_connect`] confirms each new connection with one heartbeat
//! before any request is written on it.
//!
//! # The heartbeat frame is never data
//! On a long link the heartbeat frame (by default the empty frame, where the framing has
//! one) means "are you alive?", so:
//! - a request that the link's heartbeat recognises (`classify(frame).is_some()`) is refused
//!   before a byte is written, [`ClientError::is_heartbeat_frame`] and not sent; with
//!   heartbeats off ([`ClientBuilder::heartbeat_frames`]`(None)`, `--heartbeat off`) it is
//!   plain data;
//! - a [`ShortClient`] sends no heartbeats of its own: the first frame back is the reply,
//!   even if empty; the heartbeat frame is still refused as a request (a short server
//!   answers it as a probe, never as data);
//! - while a reply is awaited, a same-bytes heartbeat that is not our pong is answered at
//!   most once a second ([`Liveness::on_frame_awaiting`](crate::liveness::Liveness::on_frame_awaiting)),
//!   so a peer that replies with the heartbeat frame cannot start a storm; the request's
//!   timeout then says that heartbeat frames arrived instead of the reply.
//!
//! # Inside
//! | file          | job                                                                 |
//! |---------------|---------------------------------------------------------------------|
//! | `builder.rs`  | [`ClientBuilder`]: the public way to set a client up                |
//! | `config.rs`   | `ClientConfig`: the settings as plain data, and their validation    |
//! | `state.rs`    | what handles and the task share: config, endpoint health, counters  |
//! | `connect.rs`  | the endpoint plan, one endpoint's connect, the probe heartbeat       |
//! | `ticket.rs`   | the not-sent / may-have-been-sent race between caller and task      |
//! | `core.rs`     | the sans-IO core: in-flight table, deadlines, fail-back, backoff    |
//! | `task.rs`     | the connection task (tracked; `close` waits for it): reconnects, performs the core's loss decisions |
//! | `session.rs`  | one connection: the select loop feeding the core and the pipeline   |
//! | `write.rs`    | a batch written with the pipeline's write step, reading meanwhile   |
//!
//! ```
//! use bytes::Bytes;
//! use keepwire::client::ClientBuilder;
//! use keepwire::server::{Request, Server, ServerConfig, service_fn};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let server = Server::bind("127.0.0.1:0", ServerConfig::new("len:ascii:4".parse()?)).await?;
//! let addr = server.local_addr().to_string();
//! tokio::spawn(server.serve(service_fn(|r: Request| async move {
//!     Ok::<_, std::convert::Infallible>(Some(r.frame))
//! })));
//!
//! let client = ClientBuilder::new("len:ascii:4".parse()?, [addr]).connect_long().await?;
//! assert_eq!(client.request(Bytes::from_static(b"hello")).await?, "hello");
//! # Ok(()) }
//! ```

/// `tower::Service<Bytes>` for a cloneable client with `async fn request(&self, Bytes)`:
/// the request/response clients share this one impl.
macro_rules! request_service {
    ($ty:ty) => {
        impl tower::Service<bytes::Bytes> for $ty {
            type Response = bytes::Bytes;
            type Error = $crate::client::ClientError;
            type Future = $crate::client::ResponseFuture;

            fn poll_ready(
                &mut self,
                _cx: &mut std::task::Context<'_>,
            ) -> std::task::Poll<Result<(), Self::Error>> {
                // Capacity is taken inside the call: a bounded queue, or a pool checkout
                // bounded by the checkout timeout.
                std::task::Poll::Ready(Ok(()))
            }

            fn call(&mut self, frame: bytes::Bytes) -> Self::Future {
                let this = self.clone();
                Box::pin(async move { this.request(frame).await })
            }
        }
    };
}

mod builder;
pub(crate) mod config;
mod connect;
pub(crate) mod core;
mod correlate;
mod duplex;
mod endpoint;
mod error;
mod link;
mod login;
mod long;
mod mux;
mod pool;
mod session;
mod short;
mod simplex;
pub(crate) mod state;
mod task;
mod ticket;
mod tombstone;
mod write;

pub use builder::{ClientBuilder, MIN_BACKOFF};
pub use correlate::{ByteRange, ByteRangeError, ByteRangeErrorKind, Correlate, Key};
pub use duplex::{Duplex, DuplexReceiver, DuplexSender};
pub use endpoint::{Backoff, EndpointSet, EndpointStatus};
pub use error::{ClientError, ClientErrorKind, Delivery, EndpointFailure};
pub use login::{LoginRefused, SessionHook};
pub use long::LongClient;
pub use mux::MuxClient;
pub use pool::Pool;
pub use short::ShortClient;
pub use simplex::Simplex;
pub use state::ClientStats;

/// The future a client's [`tower::Service::call`] returns.
pub type ResponseFuture =
    std::pin::Pin<Box<dyn std::future::Future<Output = Result<bytes::Bytes, ClientError>> + Send>>;
