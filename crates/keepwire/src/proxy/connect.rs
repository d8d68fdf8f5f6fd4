//! The upstream side comes up in the background: a proxy listens at once, whether or not
//! its partner answers yet (partner maintenance, boot order), and connects with backoff.
//!
//! | upstream at start | requests                                                         |
//! |-------------------|------------------------------------------------------------------|
//! | answers           | forwarded at once                                                |
//! | down              | held until it answers, at most the wait; then the error rule (not sent) |
//!
//! Each failed attempt is one `warn` line naming the endpoints and the next try; the delay
//! doubles from [`FIRST_RETRY`] to [`MAX_RETRY`], so a partner down for hours costs a line a
//! half minute, never a busy loop. Once up, the clients' own reconnect and failover rules
//! take over.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use super::Upstream;
use super::forward::Link;
use crate::client::{
    ClientBuilder, ClientError, ClientErrorKind, Correlate, Delivery, Key, MuxClient,
};

/// The delay after the first failed attempt (ms).
pub(crate) const FIRST_RETRY: Duration = Duration::from_millis(250);
/// The longest delay between attempts (s).
pub(crate) const MAX_RETRY: Duration = Duration::from_secs(30);

/// The upstream link once it is up (`None` until then).
pub(crate) type LinkSlot = watch::Receiver<Option<Arc<Link>>>;

/// Checks the client settings (a bad one is refused now, before anything binds).
pub(crate) fn validate(upstream: &ClientBuilder, mode: &Upstream) -> Result<(), ClientError> {
    match mode {
        Upstream::Short => upstream.validate(),
        _ => upstream.validate_long(),
    }
}

/// Connects `mode`'s clients in a task of its own until they are up or `stop` is
/// cancelled; the slot holds the link from then on. With several multiplexed connections,
/// the slot holds those up so far while the rest are retried (a partner that allows fewer
/// links than asked for still gets requests).
pub(crate) fn spawn(
    upstream: ClientBuilder,
    mode: Upstream,
    retry_sent: bool,
    stop: CancellationToken,
) -> LinkSlot {
    let (tx, rx) = watch::channel(None);
    if let Upstream::Short = mode {
        // A connection per request: nothing to set up.
        let _ = tx.send(Some(Arc::new(Link::Short(
            upstream.retry_sent(retry_sent).build_short(),
        ))));
        return rx;
    }
    tokio::spawn(run(upstream, mode, tx, stop));
    rx
}

/// Tries until the link is whole; publishes it, or what is up of it meanwhile.
async fn run(
    upstream: ClientBuilder,
    mode: Upstream,
    tx: watch::Sender<Option<Arc<Link>>>,
    stop: CancellationToken,
) {
    // Jitter 1.0: the full doubling delay, as documented (one proxy, one partner).
    let mut backoff = crate::client::Backoff::new(FIRST_RETRY, MAX_RETRY);
    let mut attempt = Attempt::default();
    loop {
        let res = tokio::select! {
            r = attempt.step(&upstream, &mode) => r,
            () = stop.cancelled() => return,
        };
        let e = match res {
            Ok(link) => {
                tracing::info!("upstream connected");
                let _ = tx.send(Some(Arc::new(link)));
                return;
            }
            Err(e) => e,
        };
        let delay = backoff.next_delay(1.0);
        let wait = humantime::format_duration(delay);
        match attempt.partial() {
            // A partner that allows fewer links than --pool: what is up carries requests.
            Some((link, up, want)) => {
                let _ = tx.send(Some(Arc::new(link)));
                tracing::warn!(
                    "upstream: {up} of {want} connections up, the next failed: {e}; next try in {wait}"
                );
            }
            None => tracing::warn!(
                "upstream not reachable: {e}; requests wait for it (--timeout), next try in {wait}"
            ),
        }
        tokio::select! {
            () = tokio::time::sleep(delay) => {}
            () = stop.cancelled() => return,
        }
    }
}

/// What is connected so far: mux clients already up are kept across attempts.
#[derive(Default)]
struct Attempt {
    mux: Vec<MuxClient>,
    want: usize,
}

impl Attempt {
    /// One try at the link.
    async fn step(
        &mut self,
        upstream: &ClientBuilder,
        mode: &Upstream,
    ) -> Result<Link, ClientError> {
        match mode {
            Upstream::Short => Ok(Link::Short(upstream.clone().build_short())),
            Upstream::Long { connections } => Ok(Link::Pool(
                upstream.clone().pool((*connections).max(1)).await?,
            )),
            Upstream::Mux {
                connections,
                correlate,
            } => {
                self.want = usize::try_from((*connections).max(1)).unwrap_or(usize::MAX);
                while self.mux.len() < self.want {
                    let c = upstream
                        .clone()
                        .connect_mux(SharedKey(Arc::clone(correlate)))
                        .await?;
                    self.mux.push(c);
                }
                Ok(Link::Mux(self.mux.clone(), Default::default()))
            }
        }
    }

    /// The mux clients up so far as a link, with how many are up and wanted; `None` when
    /// none is.
    fn partial(&self) -> Option<(Link, usize, usize)> {
        if self.mux.is_empty() {
            return None;
        }
        let link = Link::Mux(self.mux.clone(), Default::default());
        Some((link, self.mux.len(), self.want))
    }
}

/// The link, waiting for it at most `wait`.
///
/// # Errors
/// A not-sent [`ClientErrorKind::Connect`] error when the upstream has not come up within
/// `wait`, or the proxy is shutting down.
pub(crate) async fn link(slot: &LinkSlot, wait: Duration) -> Result<Arc<Link>, ClientError> {
    let mut rx = slot.clone();
    let not_up = |what: String| ClientError::new(ClientErrorKind::Connect, Delivery::NotSent, what);
    match tokio::time::timeout(wait, rx.wait_for(Option::is_some)).await {
        Ok(Ok(v)) => v
            .as_ref()
            .map(Arc::clone)
            .ok_or_else(|| not_up("no upstream link".into())),
        Ok(Err(_)) => Err(not_up(
            "the proxy stopped before the upstream came up".into(),
        )),
        Err(_) => Err(not_up(format!(
            "no upstream connection came up within {}",
            humantime::format_duration(wait)
        ))),
    }
}

/// One correlation shared by the mux clients and the key table.
struct SharedKey(Arc<dyn Correlate>);

impl Correlate for SharedKey {
    fn key(&self, frame: &[u8]) -> Option<Key> {
        self.0.key(frame)
    }
    fn request_key(&self, frame: &[u8]) -> Option<Key> {
        self.0.request_key(frame)
    }
    fn rekey(&self, frame: &[u8], key: &Key) -> Option<Bytes> {
        self.0.rekey(frame, key)
    }
    fn renumber(&self, frame: &[u8], n: u64) -> Option<(Bytes, Key)> {
        self.0.renumber(frame, n)
    }
}
