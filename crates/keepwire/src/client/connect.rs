//! Connecting: the endpoint plan tried in order, one endpoint's connect with socket
//! options, and the probe heartbeat that proves a new connection's service.

use std::time::{Duration, Instant};

use bytes::BytesMut;
use tokio::net::TcpStream;
use tokio_util::codec::Decoder;

use super::error::{ClientError, ClientErrorKind, Delivery, EndpointFailure};
use super::state::ClientState;
use crate::frame::FrameCodec;

/// Why one endpoint did not give a connection.
enum ConnectFailure {
    /// The partner refused the session's login (its status named).
    Refused(String),
    /// Anything else (connect, probe, a login unanswered), as a reason.
    Other(String),
}

/// A fresh TCP connection to endpoint `ep`, with bytes read during the probe.
#[derive(Debug)]
pub(crate) struct Connected {
    pub(crate) stream: TcpStream,
    pub(crate) ep: usize,
    pub(crate) addr: String,
    pub(crate) leftover: BytesMut,
    /// TLS, when configured: rustls between the socket and the buffers (`link.rs`).
    pub(crate) tls: super::link::TlsSlot,
}

impl ClientState {
    /// Tries the endpoints in plan order; the first that connects (and answers the probe)
    /// wins. Every failure marks its endpoint down.
    pub(crate) async fn connect_plan(&self) -> Result<Connected, ClientError> {
        self.connect_plan_by(None).await
    }

    /// [`connect_plan`](Self::connect_plan), all of it within a request's deadline when
    /// `by` gives one (`(deadline, the request timeout)`): the connect and probe timeouts
    /// then bound each endpoint, and the deadline the whole plan. An endpoint cut short by
    /// the deadline after it was given at least half the request timeout is marked down (so
    /// the next request tries the others first); one cut shorter, after earlier endpoints
    /// used the budget, is not. The error is then a timeout, not sent.
    pub(crate) async fn connect_plan_by(
        &self,
        by: Option<(Instant, Duration)>,
    ) -> Result<Connected, ClientError> {
        let plan = self.eps().plan(Instant::now());
        let mut failures = Vec::new();
        for ep in plan {
            let Some(addr) = self.eps().addr(ep).map(str::to_owned) else {
                continue;
            };
            let attempt = match by {
                None => self.connect_login(ep, &addr).await,
                Some((deadline, budget)) => {
                    let given = deadline.saturating_duration_since(Instant::now());
                    match tokio::time::timeout_at(deadline.into(), self.connect_login(ep, &addr))
                        .await
                    {
                        Ok(r) => r,
                        Err(_) => {
                            // Given most of the request timeout and still not connected: mark
                            // it down, else every later request spends its whole deadline
                            // here and none reaches the next endpoint. Cut short after
                            // earlier endpoints used up the budget, it is not blamed.
                            if given >= budget / 2 {
                                self.mark_down(
                                    ep,
                                    &format!(
                                        "connect did not finish within the request timeout ({})",
                                        humantime::format_duration(budget)
                                    ),
                                );
                            }
                            for f in &failures {
                                tracing::warn!("skipped endpoint {f}");
                            }
                            return Err(ClientError::new(
                                ClientErrorKind::Timeout,
                                Delivery::NotSent,
                                format!(
                                    "no connection within {}",
                                    humantime::format_duration(budget)
                                ),
                            )
                            .with_endpoint(Some(addr)));
                        }
                    }
                }
            };
            match attempt {
                Err(ConnectFailure::Refused(reason)) => {
                    // The partner answered and said no: the same credentials would be
                    // refused by it again, so it is marked down like any failure (its
                    // backoff spaces the retries), and the error names its status.
                    self.mark_down(ep, &reason);
                    return Err(ClientError::new(
                        ClientErrorKind::Login,
                        Delivery::NotSent,
                        reason,
                    )
                    .with_endpoint(Some(addr)));
                }
                Err(ConnectFailure::Other(reason)) => {
                    self.mark_down(ep, &reason);
                    failures.push(EndpointFailure {
                        endpoint: addr,
                        reason,
                    });
                }
                Ok(c) => {
                    self.eps().mark_connected(ep);
                    for f in &failures {
                        tracing::warn!("skipped endpoint {f}");
                    }
                    return Ok(c);
                }
            }
        }
        Err(ClientError::connect(failures))
    }

    /// One endpoint: TCP connect within `connect_timeout`, socket options, the probe
    /// heartbeat when configured, and the session's login. The error is a reason for logs
    /// and [`ClientError`].
    pub(crate) async fn connect_one(&self, ep: usize, addr: &str) -> Result<Connected, String> {
        self.connect_login(ep, addr).await.map_err(|f| match f {
            ConnectFailure::Refused(r) | ConnectFailure::Other(r) => r,
        })
    }

    /// [`connect_one`](Self::connect_one), telling a refused login apart.
    async fn connect_login(&self, ep: usize, addr: &str) -> Result<Connected, ConnectFailure> {
        let mut c = self
            .connect_tcp(ep, addr)
            .await
            .map_err(ConnectFailure::Other)?;
        match super::login::log_in(&self.cfg, &mut c).await {
            Ok(()) => Ok(c),
            Err(super::login::LoginFailure::Refused(r)) => Err(ConnectFailure::Refused(r)),
            Err(super::login::LoginFailure::Other(r)) => Err(ConnectFailure::Other(r)),
        }
    }

    /// TCP connect within `connect_timeout`, socket options, and the probe heartbeat when
    /// configured.
    async fn connect_tcp(&self, ep: usize, addr: &str) -> Result<Connected, String> {
        let cfg = &self.cfg;
        // Direct, or through the SOCKS5 proxy (client/link.rs).
        let stream = super::link::open(cfg, addr).await?;
        cfg.socket
            .apply(&stream)
            .map_err(|e| format!("socket options: {e}"))?;
        let mut c = Connected {
            stream,
            ep,
            addr: addr.to_owned(),
            leftover: BytesMut::new(),
            tls: Default::default(),
        };
        // TLS before anything else is said on the link: the probe and the login go over it.
        c.start_tls(cfg).await?;
        if cfg.probe_on_connect {
            self.probe(&mut c).await?;
        }
        Ok(c)
    }

    /// Writes one ping and waits for any heartbeat frame back.
    async fn probe(&self, c: &mut Connected) -> Result<(), String> {
        let Some(hb) = self.cfg.heartbeat.as_deref() else {
            return Err("probe on connect needs heartbeat frames (heartbeats are off)".into());
        };
        let wait = self
            .cfg
            .ping
            .map(|p| p.timeout)
            .unwrap_or(self.cfg.connect_timeout);
        let mut codec = FrameCodec::new(self.cfg.framing.clone());
        let mut out = BytesMut::new();
        codec
            .encode_to(&hb.ping(0), &mut out)
            .map_err(|e| format!("probe heartbeat: {e}"))?;
        let res = tokio::time::timeout(wait, async {
            let (_, res) = c
                .write_with(crate::pipeline::WriteAll::new(self.cfg.write_timeout), &out)
                .await;
            res.map_err(|e| format!("probe heartbeat: write failed: {e}"))?;
            loop {
                while let Some(frame) = codec
                    .decode(&mut c.leftover)
                    .map_err(|e| format!("probe heartbeat: bad reply: {e}"))?
                {
                    if hb.classify(&frame).is_some() {
                        return Ok(());
                    }
                    // An application frame before the pong: the service is alive. Do not
                    // lose it... but a fresh connection owes us nothing, so it is unsolicited.
                    tracing::debug!(len = frame.len(), "frame before probe pong, dropped");
                }
                c.leftover.reserve(4096);
                let mut buf = std::mem::take(&mut c.leftover);
                let read = c.read(&mut buf).await;
                c.leftover = buf;
                match read {
                    Ok(0) => return Err("probe heartbeat: peer closed".to_string()),
                    Ok(_) => {}
                    Err(e) => return Err(format!("probe heartbeat: read failed: {e}")),
                }
            }
        })
        .await;
        match res {
            Err(_) => Err(format!(
                "probe heartbeat unanswered within {} (service hung?)",
                humantime::format_duration(wait)
            )),
            Ok(r) => r,
        }
    }
}
