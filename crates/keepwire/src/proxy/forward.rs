//! The proxy's handler: a `tower::Service<Request>` that forwards each client frame upstream
//! and answers with the reply, or by the upstream-error rule.

use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;

use super::keys::KeyTable;
use super::{LocalAnswer, OnUpstreamError, ProxyError};
use crate::client::{ClientError, MuxClient, Pool, ShortClient};
use crate::server::{Answer, Request};

/// The upstream client.
#[derive(Debug)]
pub(crate) enum Link {
    Short(ShortClient),
    Pool(Pool),
    /// The clients, and the round-robin cursor.
    Mux(Vec<MuxClient>, AtomicUsize),
}

impl Link {
    async fn request(&self, frame: Bytes) -> Result<Bytes, ClientError> {
        match self {
            Link::Short(c) => c.request(frame).await,
            Link::Pool(p) => p.request(frame).await,
            Link::Mux(clients, next) => {
                let n = clients.len().max(1);
                let start = next.fetch_add(1, Ordering::Relaxed);
                // The next connected one from the cursor; when none is, the cursor's own
                // (its reconnect and failover rules decide).
                let pick = (0..n)
                    .map(|i| start.wrapping_add(i) % n)
                    .find(|i| clients.get(*i).is_some_and(MuxClient::is_connected))
                    .unwrap_or(start % n);
                match clients.get(pick) {
                    Some(c) => c.request(frame).await,
                    None => Err(ClientError::new(
                        crate::client::ClientErrorKind::Shutdown,
                        crate::client::Delivery::NotSent,
                        "the proxy has no upstream client",
                    )),
                }
            }
        }
    }
}

/// What the handler's clones share.
#[derive(Debug)]
pub(crate) struct Inner {
    pub(crate) link: super::connect::LinkSlot,
    pub(crate) keys: Option<Arc<KeyTable>>,
    pub(crate) on_error: OnUpstreamError,
    pub(crate) retry_sent: bool,
    pub(crate) key_wait: Duration,
    pub(crate) local: Option<Arc<dyn LocalAnswer>>,
    /// Keyed requests upstream at once, their clients gone or not.
    pub(crate) requests: Arc<tokio::sync::Semaphore>,
    /// How long a request waits for the upstream to come up.
    pub(crate) upstream_wait: Duration,
    /// Ends the background connect.
    pub(crate) stop: tokio_util::sync::CancellationToken,
    /// The clients' framing: a reply it cannot carry gets the error rule.
    pub(crate) client_framing: crate::frame::FrameCodec,
    /// The server's shutdown token and grace.
    pub(crate) drain: (tokio_util::sync::CancellationToken, Duration),
}

/// How long after the shutdown signal a request without reply is answered by the error
/// rule: the grace less a tenth (at most 250 ms), left for the answer to be written.
fn before_force_close(grace: Duration) -> Duration {
    grace.saturating_sub((grace / 10).min(Duration::from_millis(250)))
}

/// The proxy's handler: forwards a client's frame upstream and answers with the reply (its
/// key restored), the [`OnUpstreamError`] reply, or an error that closes the client's
/// connection. Cheap to clone.
///
/// # Errors
/// The service fails with [`ProxyError::Upstream`] or [`ProxyError::KeyBusy`] under
/// [`OnUpstreamError::Close`]; the server then closes that client's connection.
#[derive(Debug, Clone)]
pub struct Forward {
    inner: Arc<Inner>,
}

impl Forward {
    pub(crate) fn new(inner: Inner) -> Self {
        Forward {
            inner: Arc::new(inner),
        }
    }

    /// Forwards one frame and gives the client's answer.
    ///
    /// # Errors
    /// As the type says.
    ///
    /// # Cancel safety
    /// Cancel safe: a dropped call drops its upstream request (a multiplexed key is kept
    /// until its late reply) and frees its key.
    pub async fn forward(&self, frame: Bytes) -> Result<Answer, ProxyError> {
        let inner = &self.inner;
        if let Some(a) = inner.local.as_ref().and_then(|l| l.answer(&frame)) {
            return Ok(a);
        }
        // Draining: a request still without its reply when the grace is nearly over is
        // answered by the error rule while its client can still read it (the server closes
        // what is left at the grace's end).
        let (token, grace) = &inner.drain;
        let answer_by = async {
            token.cancelled().await;
            tokio::time::sleep(before_force_close(*grace)).await;
        };
        tokio::select! {
            r = self.upstream(frame) => r,
            () = answer_by => inner.failed(ProxyError::Upstream(ClientError::new(
                crate::client::ClientErrorKind::Shutdown,
                crate::client::Delivery::SentNoReply,
                "no reply before the proxy's shutdown grace ran out",
            ))),
        }
    }

    /// The upstream part of [`forward`](Self::forward).
    async fn upstream(&self, frame: Bytes) -> Result<Answer, ProxyError> {
        let inner = &self.inner;
        let Some(keys) = &inner.keys else {
            return match inner.send(frame).await {
                Ok(reply) => inner.answer(reply),
                Err(e) => inner.failed(ProxyError::Upstream(e)),
            };
        };
        // A keyed request runs in its own task holding its key: if the client leaves, the
        // request stays upstream until its reply (or deadline), and so does its key, so a
        // later request cannot be refused for the key or take the orphan's reply. The
        // permit bounds such tasks to `max_conns`, left clients' included.
        let Ok(permit) = Arc::clone(&inner.requests).acquire_owned().await else {
            return inner.failed(ProxyError::KeyBusy {
                waited: Duration::ZERO,
            });
        };
        let taken = match keys.take(frame, inner.key_wait).await {
            Ok(t) => t,
            Err(_) => {
                return inner.failed(ProxyError::KeyBusy {
                    waited: inner.key_wait,
                });
            }
        };
        let this = Arc::clone(inner);
        let task = tokio::spawn(async move {
            let res = this.send(taken.frame).await;
            drop(permit);
            res.map(|reply| taken.lease.restore(reply))
        });
        match task.await {
            Ok(Ok(reply)) => inner.answer(reply),
            Ok(Err(e)) => inner.failed(ProxyError::Upstream(e)),
            Err(_) => inner.failed(ProxyError::Upstream(ClientError::new(
                crate::client::ClientErrorKind::Shutdown,
                crate::client::Delivery::SentNoReply,
                "the upstream request's task ended without an answer",
            ))),
        }
    }

    /// Closes the upstream connections (the mux clients log out and end their tasks; a
    /// pool's connections close as it is dropped).
    pub(crate) async fn close(&self) {
        self.inner.stop.cancel();
        let link = self.inner.link.borrow().clone();
        if let Some(Link::Mux(clients, _)) = link.as_deref() {
            for c in clients {
                c.clone().close().await;
            }
        }
    }
}

impl Inner {
    /// Sends `frame` upstream; once more under `retry_sent` when it may have been sent
    /// (a short client retries by itself).
    async fn send(&self, frame: Bytes) -> Result<Bytes, ClientError> {
        let link = super::connect::link(&self.link, self.upstream_wait).await?;
        let res = link.request(frame.clone()).await;
        let again = self.retry_sent && !matches!(*link, Link::Short(_));
        if again && res.as_ref().is_err_and(ClientError::may_have_been_sent) {
            tracing::debug!("upstream request may have been sent; --retry-sent sends it again");
            return link.request(frame).await;
        }
        res
    }

    /// The reply as the client's answer, or the error rule when the clients' framing cannot
    /// carry it (re-framing from a larger header): the server would otherwise close the
    /// connection with no error frame.
    fn answer(&self, reply: Bytes) -> Result<Answer, ProxyError> {
        let mut probe = bytes::BytesMut::new();
        match self.client_framing.encode_to(&reply, &mut probe) {
            Ok(()) => Ok(Answer::one(reply)),
            Err(e) => self.failed(ProxyError::Unframable(e)),
        }
    }

    /// The answer to a request that got no reply.
    fn failed(&self, e: ProxyError) -> Result<Answer, ProxyError> {
        match &self.on_error {
            OnUpstreamError::Close => Err(e),
            OnUpstreamError::Reply(b) => {
                tracing::warn!(error = %e, "answering with the --on-upstream-error reply");
                Ok(Answer::one(b.clone()))
            }
        }
    }
}

impl tower::Service<Request> for Forward {
    type Response = Answer;
    type Error = ProxyError;
    type Future = Pin<Box<dyn Future<Output = Result<Answer, ProxyError>> + Send>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), ProxyError>> {
        // Capacity is taken inside the call (a pool checkout, a mux queue slot), and the
        // server awaits the call before it reads the connection's next frame.
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: Request) -> Self::Future {
        let this = self.clone();
        Box::pin(async move { this.forward(req.frame).await })
    }
}
