//! [`Simplex`]: a send-only link and a receive-only link to the same partner.

use bytes::Bytes;

use super::builder::ClientBuilder;
use super::duplex::{Duplex, DuplexReceiver, DuplexSender};
use super::{ClientError, ClientStats};

/// Two connections to one partner, one per direction, as some bank and telecom links use
/// them: messages go out on the send link, and come in on the receive link. Each link is kept
/// alive on its own (its own heartbeats through [`Liveness`](crate::liveness::Liveness), its
/// own reconnect and failover), so a dead receive link is found and reconnected even while
/// nothing is being sent, and the other way round.
///
/// Frames that arrive on the send link other than heartbeats are unexpected and dropped
/// (counted in [`ClientStats::unsolicited_dropped`] of [`send_stats`](Self::send_stats)).
///
/// ```
/// use bytes::Bytes;
/// use keepwire::client::{ClientBuilder, Simplex};
/// # use keepwire::server::{Request, Server, ServerConfig, service_fn};
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// # let server = Server::bind("127.0.0.1:0", ServerConfig::new("len:ascii:4".parse()?)).await?;
/// # let addr = server.local_addr().to_string();
/// # tokio::spawn(server.serve(service_fn(|_r: Request| async move { Ok::<_, std::convert::Infallible>(None) })));
/// let framing: keepwire::frame::FramingSpec = "len:ascii:4".parse()?;
/// let link = Simplex::connect(
///     ClientBuilder::new(framing.clone(), [addr.clone()]),
///     ClientBuilder::new(framing, [addr]),
/// ).await?;
/// link.send(Bytes::from_static(b"0200")).await?;
/// # Ok(()) }
/// ```
#[derive(Debug)]
pub struct Simplex {
    send: DuplexSender,
    // Keeps the send link's task alive: its inbound stream is never read.
    _send_rx: DuplexReceiver,
    recv: DuplexReceiver,
    recv_tx: DuplexSender,
}

impl Simplex {
    /// Connects the send link (`send`) and the receive link (`recv`), each with its own
    /// endpoints and liveness settings.
    ///
    /// # Errors
    /// [`ClientError::is_connect`] when either link cannot be connected.
    ///
    /// # Cancel safety
    /// Dropping the future drops whatever was connected so far.
    pub async fn connect(send: ClientBuilder, recv: ClientBuilder) -> Result<Self, ClientError> {
        let (send, send_rx) = Duplex::connect(send.unsolicited_capacity(1).into_config())
            .await?
            .split();
        let (recv_tx, recv) = Duplex::connect(recv.into_config()).await?.split();
        Ok(Simplex {
            send,
            _send_rx: send_rx,
            recv,
            recv_tx,
        })
    }

    /// Writes `frame` on the send link.
    ///
    /// # Errors
    /// As [`DuplexSender::send`].
    ///
    /// # Cancel safety
    /// As [`DuplexSender::send`].
    pub async fn send(&self, frame: Bytes) -> Result<(), ClientError> {
        self.send.send(frame).await
    }

    /// The next frame from the receive link; `None` once shut down.
    ///
    /// # Cancel safety
    /// Cancel safe.
    pub async fn recv(&mut self) -> Option<Bytes> {
        self.recv.recv().await
    }

    /// Closes both links gracefully and waits until both are closed, each as
    /// [`Duplex::close`]: frames queued on the send link are written first, frames not yet
    /// read from the receive link are dropped, and both sockets are shut down.
    ///
    /// # Errors
    /// None: every frame queued gets its own outcome.
    ///
    /// # Cancel safety
    /// As [`Duplex::close`], for each link.
    pub async fn close(self) {
        let Simplex {
            send,
            _send_rx,
            recv,
            recv_tx,
        } = self;
        drop((_send_rx, recv));
        tokio::join!(send.close(), recv_tx.close());
    }

    /// Whether both links are up now.
    pub fn is_connected(&self) -> bool {
        self.send.is_connected() && self.recv_tx.is_connected()
    }

    /// Counters of the send link.
    pub fn send_stats(&self) -> ClientStats {
        self.send.stats()
    }

    /// Counters of the receive link.
    pub fn recv_stats(&self) -> ClientStats {
        self.recv_tx.stats()
    }
}
