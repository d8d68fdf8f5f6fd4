//! [`Duplex`]: one long connection split into an independent sender and receiver.

use std::sync::Arc;

use bytes::Bytes;
use tokio::sync::mpsc;

use super::config::ClientConfig;
use super::core::Matching;
use super::state::ClientState;
use super::task;
use super::ticket::Handle;
use super::{ClientError, ClientStats};

/// A long connection used in full duplex: the [`DuplexSender`] writes frames whenever it
/// likes, the [`DuplexReceiver`] reads every frame that arrives, and neither waits for the
/// other. The connection is kept alive by heartbeats (answered, and sent with
/// [`ClientBuilder::ping`](super::ClientBuilder::ping)) and reconnected with backoff and failover like a
/// [`LongClient`](super::LongClient); heartbeat frames never reach the receiver.
///
/// ```
/// use bytes::Bytes;
/// use keepwire::client::ClientBuilder;
/// # use keepwire::server::{Request, Server, ServerConfig, service_fn};
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// # let server = Server::bind("127.0.0.1:0", ServerConfig::new("line".parse()?)).await?;
/// # let addr = server.local_addr().to_string();
/// # tokio::spawn(server.serve(service_fn(|r: Request| async move { Ok::<_, std::convert::Infallible>(Some(r.frame)) })));
/// let (tx, mut rx) = ClientBuilder::new("line".parse()?, [addr]).connect_duplex().await?.split();
/// tokio::spawn(async move {
///     for m in ["one", "two"] {
///         tx.send(Bytes::from(m)).await.unwrap();
///     }
/// });
/// assert_eq!(rx.recv().await.unwrap(), "one");
/// assert_eq!(rx.recv().await.unwrap(), "two");
/// # Ok(()) }
/// ```
#[derive(Debug)]
pub struct Duplex {
    sender: DuplexSender,
    receiver: DuplexReceiver,
}

/// The sending half of a [`Duplex`] connection (cheap to clone).
#[derive(Debug, Clone)]
pub struct DuplexSender {
    handle: Handle,
}

/// The receiving half of a [`Duplex`] connection.
#[derive(Debug)]
pub struct DuplexReceiver {
    // Keeps the connection task running while only the receiver is left.
    handle: Handle,
    rx: mpsc::Receiver<Bytes>,
}

impl Duplex {
    pub(crate) async fn connect(cfg: ClientConfig) -> Result<Self, ClientError> {
        cfg.validate_long()?;
        let state = Arc::new(ClientState::new(cfg, Matching::None));
        let first = state.connect_plan().await?;
        let (handle, rx) = task::spawn(state, first);
        Ok(Duplex {
            sender: DuplexSender {
                handle: handle.clone(),
            },
            receiver: DuplexReceiver { handle, rx },
        })
    }

    /// The two halves.
    pub fn split(self) -> (DuplexSender, DuplexReceiver) {
        (self.sender, self.receiver)
    }

    /// Closes the connection gracefully and waits until it is closed: frames already
    /// queued are written (or fail at their own deadline: never silently), no new frame is
    /// taken (a [`DuplexSender`] clone then fails at once with
    /// [`ClientError::is_shutdown`], not sent), the socket is shut down (the server reads
    /// end of stream) and the connection task has ended when this returns. Frames that
    /// arrived and were not read are dropped with the receiver. With no connection up
    /// (reconnecting or backing off) it returns at once, and frames waiting for one fail
    /// not sent. To keep reading while closing, [`split`](Self::split) and use
    /// [`DuplexSender::close`].
    ///
    /// Dropping both halves still closes the connection as before, without waiting.
    ///
    /// # Errors
    /// None: every frame queued gets its own outcome.
    ///
    /// # Cancel safety
    /// The close is decided at the first poll: dropping the future after it leaves the
    /// connection closing on its own; dropped before, it only drops this client.
    pub async fn close(self) {
        drop(self.receiver);
        self.sender.close().await;
    }
}

impl DuplexSender {
    /// Writes `frame`; done once it is written (there is no reply to wait for).
    ///
    /// # Errors
    /// A [`ClientError`] saying whether the frame may have been sent (e.g. no connection
    /// within the request timeout: not sent).
    ///
    /// # Cancel safety
    /// Dropping the future before the frame was written withdraws it.
    pub async fn send(&self, frame: Bytes) -> Result<(), ClientError> {
        self.handle
            .call(frame, false, None, self.handle.state.cfg.request_timeout)
            .await
            .map(|_| ())
    }

    /// Closes the connection gracefully for both halves and waits until it is closed, as
    /// [`Duplex::close`]: frames queued are written first, then the socket is shut down;
    /// the [`DuplexReceiver`] then reads `None` once it has read what arrived before.
    ///
    /// # Errors
    /// None: every frame queued gets its own outcome.
    ///
    /// # Cancel safety
    /// As [`Duplex::close`].
    pub async fn close(self) {
        self.handle.close().await;
    }

    /// Whether a connection is up now.
    pub fn is_connected(&self) -> bool {
        self.handle.state.is_connected()
    }

    /// Counters.
    pub fn stats(&self) -> ClientStats {
        self.handle.state.stats()
    }
}

impl DuplexReceiver {
    /// The next inbound frame; `None` once the client is shut down.
    ///
    /// # Cancel safety
    /// Cancel safe: a frame is either returned or stays queued.
    pub async fn recv(&mut self) -> Option<Bytes> {
        let _ = &self.handle;
        self.rx.recv().await
    }
}
