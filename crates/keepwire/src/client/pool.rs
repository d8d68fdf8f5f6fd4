//! [`Pool`]: N long connections over the endpoint list, on `bb8`.

use std::sync::{Arc, Mutex};

use bytes::Bytes;

use super::config::ClientConfig;
use super::core::Matching;
use super::endpoint::EndpointSet;
use super::error::{ClientError, ClientErrorKind, Delivery};
use super::state::ClientState;
use super::{EndpointStatus, LongClient};

/// A pool of up to N long connections, for many concurrent callers: each request checks a
/// connection out (waiting at most [`ClientBuilder::checkout_timeout`](super::ClientBuilder::checkout_timeout)), does one
/// request/response on it and returns it.
///
/// Built on the `bb8` pool: connections are created on demand across the endpoint list (with
/// failover; the endpoints' health is shared by all connections), checked on checkout
/// (a connection whose heartbeats stopped being answered, or that was lost, is replaced),
/// and closed after [`ClientBuilder::max_idle`](super::ClientBuilder::max_idle) idle or [`ClientBuilder::max_lifetime`](super::ClientBuilder::max_lifetime) old.
/// Each connection keeps itself alive with the same heartbeats as a
/// [`LongClient`](super::LongClient), but is never reconnected by itself: once lost it is
/// closed, and the pool replaces it on the next checkout (one owner of reconnects; a pooled
/// connection reconnecting on its own would also hammer a peer that accepts and closes, with
/// nobody asking for it). A request that was not sent because its connection was lost just
/// before is tried once more on a fresh checkout.
///
/// # Closing
/// A pool has no `close`: bb8 gives no way to take its idle connections out of it. Drop
/// every clone of the pool once no request is under way (await them first): bb8 then drops
/// its idle [`LongClient`]s, and each one's task shuts its socket down
/// (FIN) on its own, without anyone waiting for it. A program that must know its
/// connections are closed before it exits uses [`LongClient`]s and their
/// [`close`](LongClient::close).
///
/// ```
/// use bytes::Bytes;
/// use keepwire::client::ClientBuilder;
/// # use keepwire::server::{Request, Server, ServerConfig, service_fn};
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// # let server = Server::bind("127.0.0.1:0", ServerConfig::new("len:ascii:4".parse()?)).await?;
/// # let addr = server.local_addr().to_string();
/// # tokio::spawn(server.serve(service_fn(|r: Request| async move { Ok::<_, std::convert::Infallible>(Some(r.frame)) })));
/// let pool = ClientBuilder::new("len:ascii:4".parse()?, [addr]).pool(4).await?;
/// let replies = futures_util::future::join_all((0..8).map(|i| pool.request(Bytes::from(format!("m{i}"))))).await;
/// assert!(replies.iter().all(|r| r.is_ok()));
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct Pool {
    inner: bb8::Pool<Manager>,
    endpoints: Arc<Mutex<EndpointSet>>,
    /// One permit per connection, handed out first come, first served. bb8 alone lets a
    /// caller that just returned a connection take it again ahead of callers already
    /// waiting (a woken waiter that finds it gone queues again), which starved a waiter for
    /// a whole 2 s bench run; tokio's semaphore is FIFO.
    gate: Arc<tokio::sync::Semaphore>,
    checkout_timeout: std::time::Duration,
    /// The configuration, for refusing heartbeat frames before a checkout.
    cfg: Arc<ClientConfig>,
    /// bb8's error sink: connect failures, which bb8 never returns from `get()`.
    connect_errors: ConnectErrors,
}

/// The error sink given to bb8. bb8 sends a failed connect here, not to the waiter, which
/// sleeps until the checkout timeout as if every connection were busy; the sink keeps the
/// last connect error and wakes the waiters, and one that finds the pool without a
/// connection fails with it at once.
#[derive(Debug, Clone, Default)]
struct ConnectErrors(Arc<ConnectErrorsInner>);

#[derive(Debug, Default)]
struct ConnectErrorsInner {
    last: Mutex<Option<ClientError>>,
    notify: tokio::sync::Notify,
}

impl ConnectErrors {
    fn last(&self) -> Option<ClientError> {
        self.0
            .last
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .as_ref()
            .map(|e| e.for_delivery(Delivery::NotSent))
    }
}

impl bb8::ErrorSink<ClientError> for ConnectErrors {
    fn sink(&self, error: ClientError) {
        // `is_valid` failures (a lost pooled connection) come here too: not a connect error.
        if !error.is_connect() {
            tracing::debug!(%error, "pool error");
            return;
        }
        tracing::warn!(%error, "pooled connection could not be made");
        *self
            .0
            .last
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = Some(error);
        self.0.notify.notify_waiters();
    }

    fn boxed_clone(&self) -> Box<dyn bb8::ErrorSink<ClientError>> {
        Box::new(self.clone())
    }
}

impl std::fmt::Debug for Pool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let st = self.inner.state();
        f.debug_struct("Pool")
            .field("connections", &st.connections)
            .field("idle", &st.idle_connections)
            .finish()
    }
}

struct Manager {
    cfg: ClientConfig,
    endpoints: Arc<Mutex<EndpointSet>>,
}

impl bb8::ManageConnection for Manager {
    type Connection = LongClient;
    type Error = ClientError;

    async fn connect(&self) -> Result<LongClient, ClientError> {
        // A pooled connection that breaks is replaced by the pool, not reconnected by itself:
        // its task ends, `has_broken` reports it, and the next checkout connects anew.
        let state = ClientState::with_endpoints(
            self.cfg.clone(),
            Matching::Fifo,
            Arc::clone(&self.endpoints),
        )
        .without_reconnect();
        LongClient::connect_state(Arc::new(state)).await
    }

    async fn is_valid(&self, conn: &mut LongClient) -> Result<(), ClientError> {
        if conn.is_connected() {
            Ok(())
        } else {
            Err(ClientError::new(
                ClientErrorKind::Closed,
                Delivery::NotSent,
                "pooled connection lost",
            ))
        }
    }

    fn has_broken(&self, conn: &mut LongClient) -> bool {
        !conn.is_connected()
    }
}

/// A request failed because its pooled connection was lost (not because of the request).
fn lost_connection(e: &ClientError) -> bool {
    matches!(
        e.kind(),
        ClientErrorKind::Closed
            | ClientErrorKind::Dead
            | ClientErrorKind::Io
            | ClientErrorKind::Shutdown
    )
}

/// bb8 panics on a zero idle timeout, max lifetime or connection timeout (it asserts they
/// are non-zero): zero becomes 1 ms. Huge durations need no clamp: bb8 only compares them
/// with elapsed times and passes the connection timeout to `tokio::time::timeout`, which
/// saturates.
fn at_least_1ms(d: std::time::Duration) -> std::time::Duration {
    d.max(std::time::Duration::from_millis(1))
}

impl Pool {
    pub(crate) async fn connect(cfg: ClientConfig, size: u32) -> Result<Self, ClientError> {
        cfg.validate_long()?;
        let endpoints = Arc::new(Mutex::new(EndpointSet::new(
            cfg.endpoints.iter().cloned(),
            cfg.down_base,
            cfg.down_max,
        )));
        let checkout_timeout = cfg.checkout_timeout;
        // bb8 enforces max idle and max lifetime only when its reaper runs (every 30 s by
        // default): run it often enough that neither overshoots by more than half.
        let reaper = [cfg.max_idle, cfg.max_lifetime]
            .into_iter()
            .flatten()
            .map(|d| d / 2)
            .min()
            .unwrap_or(std::time::Duration::from_secs(30))
            .clamp(
                std::time::Duration::from_millis(10),
                std::time::Duration::from_secs(30),
            );
        let connect_errors = ConnectErrors::default();
        let builder = bb8::Pool::builder()
            .reaper_rate(reaper)
            .max_size(size.max(1))
            .min_idle(Some(1))
            .connection_timeout(at_least_1ms(cfg.checkout_timeout))
            .idle_timeout(cfg.max_idle.map(at_least_1ms))
            .max_lifetime(cfg.max_lifetime.map(at_least_1ms))
            .test_on_check_out(true)
            .retry_connection(false)
            .error_sink(Box::new(connect_errors.clone()));
        let shared = Arc::new(cfg.clone());
        let manager = Manager {
            cfg,
            endpoints: Arc::clone(&endpoints),
        };
        let inner = builder.build(manager).await?;
        Ok(Pool {
            inner,
            endpoints,
            gate: Arc::new(tokio::sync::Semaphore::new(size.max(1) as usize)),
            checkout_timeout,
            cfg: shared,
            connect_errors,
        })
    }

    /// Checks a connection out, sends `frame` on it and waits for the reply, all of it
    /// within the request timeout.
    ///
    /// # Errors
    /// [`ClientError::is_pool_timeout`] (not sent) when no connection was free within the
    /// checkout timeout; [`ClientError::is_timeout`] (not sent) when none was free within
    /// the request timeout, if that is the shorter; [`ClientError::is_connect`] (not sent),
    /// naming each endpoint's failure, as soon as a new connection could not be made while
    /// the pool has none (with connections open but busy, the request waits on for one of
    /// them); otherwise as [`LongClient::request`].
    ///
    /// # Cancel safety
    /// As [`LongClient::request`]; the connection goes back to the pool.
    pub async fn request(&self, frame: Bytes) -> Result<Bytes, ClientError> {
        // Refused before waiting for a connection (the pooled client refuses it too).
        self.cfg.refuse_heartbeat_frame(&frame)?;
        // The request timeout covers the whole call, checkout included; the checkout
        // timeout bounds the wait for a connection on its own.
        let budget = self.cfg.request_timeout;
        let deadline = crate::deadline::std_in(budget);
        let checkout_by = crate::deadline::std_in(self.checkout_timeout).min(deadline);
        let timed_out = || {
            if checkout_by < deadline {
                ClientError::new(
                    ClientErrorKind::PoolTimeout,
                    Delivery::NotSent,
                    "no pooled connection free within the checkout timeout",
                )
            } else {
                ClientError::new(
                    ClientErrorKind::Timeout,
                    Delivery::NotSent,
                    format!(
                        "no pooled connection free within {}",
                        humantime::format_duration(budget)
                    ),
                )
            }
        };
        let _turn = tokio::time::timeout_at(checkout_by.into(), self.gate.acquire())
            .await
            .map_err(|_| timed_out())?
            .map_err(|_| timed_out())?;
        let mut tries = 0;
        loop {
            tries += 1;
            let conn = tokio::time::timeout_at(checkout_by.into(), self.checkout())
                .await
                .map_err(|_| timed_out())?
                .map_err(|e| match e {
                    bb8::RunError::User(e) => e,
                    bb8::RunError::TimedOut => timed_out(),
                })?;
            let left = deadline.saturating_duration_since(std::time::Instant::now());
            if left.is_zero() {
                return Err(timed_out());
            }
            match conn.request_timeout(frame.clone(), left).await {
                // The connection was lost before the request was written: a pooled
                // connection does not reconnect, so take another (once).
                Err(e) if tries < 2 && e.is_not_sent() && lost_connection(&e) => {
                    tracing::debug!(error = %e, "pooled connection lost; checking out another");
                }
                r => return r,
            }
        }
    }

    /// bb8's `get()`, failing with the connect error as soon as a connect fails while the
    /// pool has no connection (bb8 itself would wait out the checkout timeout).
    async fn checkout(
        &self,
    ) -> Result<bb8::PooledConnection<'_, Manager>, bb8::RunError<ClientError>> {
        let notify = &self.connect_errors.0.notify;
        // Enabled before `get()` starts the connect, so its failure is not missed.
        let mut failed = std::pin::pin!(notify.notified());
        failed.as_mut().enable();
        let mut get = std::pin::pin!(self.inner.get());
        loop {
            tokio::select! {
                r = &mut get => return r,
                () = &mut failed => {
                    failed.set(notify.notified());
                    failed.as_mut().enable();
                    if self.inner.state().connections == 0 {
                        if let Some(e) = self.connect_errors.last() {
                            return Err(bb8::RunError::User(e));
                        }
                    }
                }
            }
        }
    }

    /// Open connections, and how many of them are idle.
    pub fn connections(&self) -> (u32, u32) {
        let st = self.inner.state();
        (st.connections, st.idle_connections)
    }

    /// Every endpoint's health.
    pub fn endpoints(&self) -> Vec<EndpointStatus> {
        self.endpoints
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .status(std::time::Instant::now())
    }
}

request_service!(Pool);
