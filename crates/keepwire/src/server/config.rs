//! How a server runs: [`ServerConfig`] (typed, validated) and [`ServerSettings`] (the same as
//! text, the way a config file or the command line gives it).
//!
//! Settings become a config in one place, [`ServerSettings::build`], with these rules:
//!
//! | setting | text | rule |
//! |---|---|---|
//! | `idle-timeout`, `write-idle-timeout`, `any-idle-timeout`, `frame-timeout` | `30s`, `0`, `off` | `0` and `off` turn the check off |
//! | `delay`, `shutdown-grace`, `tcp-user-timeout` | `250ms` | humantime, at most 365d; the kernel's range for `TCP_USER_TIMEOUT` |
//! | `max-conns` | `10000` | at least 1 |
//! | `max-conns-per-ip` | `100` | `0` lifts the cap |
//! | `tcp-keepalive` | `30s,5s,3`, `off` | within what the kernel accepts |
//! | `heartbeat` | `interval=5s,timeout=2s,misses=3[,ping=..][,pong=..]`, `off` | no pings in short mode; ping and pong must be framable |
//! | `proxy-from` | `10.0.0.0/8,192.0.2.7` | CIDR or address; needs `proxy-protocol` |
//! | `reply` | `echo`, `hex:..`, `text:..`, `file:PATH` | framable; in long mode not the heartbeat frame |
//!
//! A settings value given twice (a file, then flags) is merged with [`ServerSettings::or`]:
//! the first given wins. With the `config` feature (on by default) [`ServerSettings`]
//! implements `serde::Deserialize`, keys in kebab-case and unknown keys refused:
//!
//! ```toml
//! listen = "127.0.0.1:7000"
//! framing = "len:ascii:4"
//! idle-timeout = "5m"
//! max-conns-per-ip = 100
//! heartbeat = "interval=30s,timeout=10s,misses=3"
//! ```

use std::convert::Infallible;
use std::fmt;
use std::future::Ready;
use std::sync::Arc;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use tower::Service;

use super::{ConfigError, Mode, Request};
use crate::frame::{FrameCodec, FramingSpec};
use crate::liveness::{Heartbeat, HeartbeatSpec, LivenessConfig};
use crate::socket::{Keepalive, SocketOptions, parse_duration, validate_user_timeout};

/// Everything about how a [`Server`](super::Server) runs. Start from [`ServerConfig::new`],
/// whose defaults are safe for a public port, and change fields; or build one from text with
/// [`ServerSettings::build`].
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct ServerConfig {
    /// How messages are framed.
    pub framing: FramingSpec,
    /// Long (default) or short connections.
    pub mode: Mode,
    /// Idle timeouts, slow-frame cut-off and pings to idle clients. Default: a 5 minute read
    /// idle timeout and a 30 s frame timeout; no pings.
    pub liveness: LivenessConfig,
    /// How heartbeats are recognised and answered; `None` turns heartbeat handling off, so
    /// every frame reaches the handler. Default: the empty frame, where the framing has one.
    pub heartbeat: Option<Arc<dyn Heartbeat>>,
    /// Connections open at once (default 10 000); more are reset right after accept. (The
    /// per-IP cap below is checked in the connection's task, after the PROXY header when
    /// that is on, since only then is the client's address known.)
    pub max_conns: usize,
    /// Connections open at once from one client IP (default 1000). Behind a balancer that does
    /// not send the PROXY protocol every connection comes from the balancer's address: raise
    /// it there, or set `None`.
    pub max_conns_per_ip: Option<usize>,
    /// TCP options for accepted sockets (default: `TCP_NODELAY` only).
    pub socket: SocketOptions,
    /// Expect a PROXY protocol v1/v2 header on every connection (default off).
    pub proxy_protocol: bool,
    /// With `proxy_protocol`: the networks the balancer connects from. A connection from
    /// anywhere else is closed before its header is read, so a client that reaches the port
    /// directly cannot claim an address. Empty (the default) trusts every source: then only
    /// the balancer may be able to reach the port.
    pub proxy_from: Vec<ipnet::IpNet>,
    /// How long the PROXY header may take to arrive, and then the TLS handshake to finish
    /// (each; default 5 s). A stalled handshake is cut at it.
    pub handshake_timeout: Duration,
    /// TLS on every connection, after the PROXY header (default none: plain TCP).
    #[cfg(feature = "tls")]
    pub tls: Option<crate::tls::ServerTls>,
    /// How long a reply may wait for a client that does not read (default 30 s).
    pub write_timeout: Duration,
    /// Hold each reply this long before sending it (default none): a slow partner, for tests.
    pub reply_delay: Option<Duration>,
    /// Short mode: how long to wait for the client's FIN after the reply (default 5 s).
    pub short_close_wait: Duration,
    /// Short mode: close right after the reply instead of waiting for the client's FIN. The
    /// server then holds the TIME_WAIT socket. Default off.
    pub short_server_closes_first: bool,
    /// After shutdown starts, how long connections get to finish (default 10 s).
    pub shutdown_grace: Duration,
    /// Listen backlog (default 1024).
    pub backlog: u32,
}

impl ServerConfig {
    /// Safe defaults for `framing`; see each field.
    pub fn new(framing: FramingSpec) -> Self {
        let heartbeat = crate::liveness::default_heartbeat(&framing);
        ServerConfig {
            framing,
            mode: Mode::Long,
            liveness: LivenessConfig {
                read_idle: Some(Duration::from_secs(300)),
                frame_timeout: Some(Duration::from_secs(30)),
                ..LivenessConfig::default()
            },
            heartbeat,
            max_conns: 10_000,
            max_conns_per_ip: Some(1000),
            socket: SocketOptions::default(),
            proxy_protocol: false,
            proxy_from: Vec::new(),
            handshake_timeout: Duration::from_secs(5),
            #[cfg(feature = "tls")]
            tls: None,
            write_timeout: Duration::from_secs(30),
            reply_delay: None,
            short_close_wait: Duration::from_secs(5),
            short_server_closes_first: false,
            shutdown_grace: Duration::from_secs(10),
            backlog: 1024,
        }
    }

    /// Checks that the config can run: caps of at least 1, socket options the kernel takes,
    /// heartbeat frames the framing can carry, and pings only where they make sense.
    /// [`Server::bind`](super::Server::bind) calls it.
    ///
    /// ```
    /// use keepwire::server::ServerConfig;
    ///
    /// let mut c = ServerConfig::new("fixed:4".parse().unwrap());
    /// assert!(c.validate().is_ok());
    /// c.liveness.ping = Some(Default::default()); // pings, but fixed:4 has no empty frame
    /// let err = c.validate().unwrap_err();
    /// assert!(err.is_heartbeat(), "{err}");
    /// ```
    ///
    /// # Errors
    /// The first rule broken, naming the setting by its config key.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.max_conns == 0 {
            return Err(ConfigError::OutOfRange {
                key: "max-conns",
                value: "0".into(),
                expected: "at least 1",
            });
        }
        if self.max_conns_per_ip == Some(0) {
            return Err(ConfigError::OutOfRange {
                key: "max-conns-per-ip",
                value: "0".into(),
                expected: "at least 1, or no cap",
            });
        }
        if let Some(k) = &self.socket.keepalive {
            k.validate()
                .map_err(|e| ConfigError::invalid("tcp-keepalive", &k.to_string(), e))?;
        }
        if let Some(t) = self.socket.user_timeout {
            validate_user_timeout(t).map_err(|e| {
                ConfigError::invalid(
                    "tcp-user-timeout",
                    &humantime::format_duration(t).to_string(),
                    e,
                )
            })?;
        }
        self.validate_heartbeat()
    }

    fn validate_heartbeat(&self) -> Result<(), ConfigError> {
        if let Some(hb) = &self.heartbeat {
            // Both heartbeat frames must go out and come back as one frame each: a pong that
            // cannot be framed would kill every connection at its first ping, and under `eof`
            // (a frame ends only at the close) no heartbeat can be a frame at all.
            let ping = hb.ping(1);
            let pong = hb.pong(&ping);
            for (which, frame) in [("ping", &ping), ("pong", &pong)] {
                if !self.framing.carries(frame) {
                    return Err(ConfigError::HeartbeatNotFramable {
                        which,
                        framing: self.framing.to_string(),
                        until_close: self.framing.is_until_close(),
                    });
                }
            }
        }
        let Some(p) = self.liveness.ping else {
            return Ok(());
        };
        if p.interval < crate::liveness::MIN_PING_INTERVAL
            || p.timeout < crate::liveness::MIN_PING_TIMEOUT
        {
            return Err(ConfigError::OutOfRange {
                key: "heartbeat",
                value: format!(
                    "interval={},timeout={}",
                    humantime::format_duration(p.interval),
                    humantime::format_duration(p.timeout)
                ),
                expected: "an interval of at least 100ms (a peer answers same-bytes heartbeats at most every 50ms) and a timeout of at least 10ms",
            });
        }
        if self.mode == Mode::Short {
            return Err(ConfigError::PingsInShortMode);
        }
        if self.heartbeat.is_none() {
            return Err(ConfigError::PingsNeedHeartbeat {
                framing: self.framing.to_string(),
            });
        }
        Ok(())
    }

    /// Checks a fixed reply against this config: the framing must carry it, and in long mode
    /// it must not be the heartbeat frame (a client would take every reply for a ping).
    ///
    /// ```
    /// use keepwire::server::ServerConfig;
    ///
    /// let c = ServerConfig::new("len:ascii:4".parse().unwrap());
    /// assert!(c.check_reply(b"0810").is_ok());
    /// assert!(c.check_reply(b"").unwrap_err().is_reply()); // the empty frame is the heartbeat
    /// ```
    ///
    /// # Errors
    /// [`ConfigError::ReplyNotFramable`] or [`ConfigError::ReplyIsHeartbeat`].
    pub fn check_reply(&self, reply: &[u8]) -> Result<(), ConfigError> {
        self.framed_reply(reply).map(drop)
    }

    /// [`check_reply`](Self::check_reply), returning the reply's wire form.
    pub(crate) fn framed_reply(&self, reply: &[u8]) -> Result<Bytes, ConfigError> {
        let mut wire = BytesMut::new();
        FrameCodec::new(self.framing.clone())
            .encode_to(reply, &mut wire)
            .map_err(|source| ConfigError::ReplyNotFramable {
                framing: self.framing.to_string(),
                source,
            })?;
        let is_beat = self
            .heartbeat
            .as_deref()
            .is_some_and(|h| h.classify(reply).is_some());
        if self.mode == Mode::Long && is_beat {
            return Err(ConfigError::ReplyIsHeartbeat {
                reply: Reply::Fixed(Bytes::copy_from_slice(reply)).to_string(),
                framing: self.framing.to_string(),
            });
        }
        Ok(wire.freeze())
    }
}

/// What a canned server answers: the request itself, or fixed bytes.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub enum Reply {
    /// Answer each request with itself.
    #[default]
    Echo,
    /// Answer each request with these bytes.
    Fixed(Bytes),
}

/// The handler a [`Reply`] makes: see [`Reply::into_service`].
pub type ReplyFuture = Ready<Result<Option<Bytes>, Infallible>>;

impl Reply {
    /// Parses `echo`, `hex:..`, `text:..` (with escapes) or `file:PATH` (read now, up to
    /// [`MAX_LIMIT`](crate::frame::MAX_LIMIT) bytes, the largest frame any framing carries;
    /// [`ServerSettings::build`] reads up to the largest frame of its framing).
    ///
    /// ```
    /// use keepwire::server::Reply;
    /// assert_eq!(Reply::parse("echo").unwrap(), Reply::Echo);
    /// assert_eq!(Reply::parse("text:OK\\n").unwrap(), Reply::Fixed("OK\n".into()));
    /// assert!(Reply::parse("OK").unwrap_err().is_invalid());
    /// ```
    ///
    /// # Errors
    /// [`ConfigError::ReplyFile`] when the file cannot be read or is larger than that,
    /// [`ConfigError::Invalid`] for a bad payload.
    pub fn parse(spec: &str) -> Result<Self, ConfigError> {
        Self::parse_within(spec, crate::frame::MAX_LIMIT)
    }

    /// [`parse`](Self::parse), reading at most `max` bytes (plus one, to see that there is
    /// more) of a `file:` reply: `file:/dev/zero` must not be read until memory runs out.
    pub(crate) fn parse_within(spec: &str, max: usize) -> Result<Self, ConfigError> {
        if spec == "echo" {
            return Ok(Reply::Echo);
        }
        if let Some(path) = spec.strip_prefix("file:") {
            return read_capped(path, max)
                .map(|b| Reply::Fixed(Bytes::from(b)))
                .map_err(|source| ConfigError::ReplyFile {
                    path: path.to_string(),
                    source,
                });
        }
        crate::liveness::parse_payload(spec)
            .map(Reply::Fixed)
            .map_err(|e| ConfigError::invalid("reply", spec, e))
    }

    /// A handler answering every request with this reply.
    pub fn into_service(
        self,
    ) -> impl Service<Request, Response = Option<Bytes>, Error = Infallible, Future = ReplyFuture>
    + Clone
    + Send
    + 'static {
        // Shared: every connection's task holds a clone of the service for its whole life,
        // and a pointer is 8 bytes where the reply is 32.
        let reply = std::sync::Arc::new(self);
        tower::service_fn(move |req: Request| {
            let out = match &*reply {
                Reply::Echo => req.frame,
                Reply::Fixed(b) => b.clone(),
            };
            std::future::ready(Ok(Some(out)))
        })
    }
}

impl fmt::Display for Reply {
    /// `echo`, or `text:..` with escapes.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Reply::Echo => f.write_str("echo"),
            Reply::Fixed(b) => {
                f.write_str("text:")?;
                crate::text::write_escaped(f, b)
            }
        }
    }
}

/// A server's settings as text, the way a config file or the command line gives them; every
/// one optional. [`build`](Self::build) turns them into a checked [`ServerConfig`] and the
/// rest of what `keepwire serve` needs ([`ServeSetup`]).
///
/// Keys (with the `config` feature, for `serde`) are the field names in kebab-case.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[cfg_attr(
    feature = "config",
    derive(serde::Deserialize),
    serde(rename_all = "kebab-case", deny_unknown_fields)
)]
#[non_exhaustive]
pub struct ServerSettings {
    /// Address to listen on (required).
    pub listen: Option<String>,
    /// Framing spec (required), e.g. `len:ascii:4`.
    pub framing: Option<String>,
    /// `long` or `short`.
    pub mode: Option<String>,
    /// `echo` (default), `hex:..`, `text:..` or `file:PATH`.
    pub reply: Option<String>,
    /// Read idle timeout (default 5m; `0` or `off`: never).
    pub idle_timeout: Option<String>,
    /// Write idle timeout (default never).
    pub write_idle_timeout: Option<String>,
    /// Idle timeout either way (default never).
    pub any_idle_timeout: Option<String>,
    /// Slow-frame cut-off (default 30s; `0` or `off`: never).
    pub frame_timeout: Option<String>,
    /// Connections open at once (default 10000, at least 1).
    pub max_conns: Option<usize>,
    /// Connections open at once per client IP (default 1000; `0`: no cap).
    pub max_conns_per_ip: Option<usize>,
    /// `TIME,INTERVAL,PROBES` or `off` (default off).
    pub tcp_keepalive: Option<String>,
    /// `TCP_USER_TIMEOUT`.
    pub tcp_user_timeout: Option<String>,
    /// Heartbeat spec or `off`.
    pub heartbeat: Option<String>,
    /// Hold each reply this long.
    pub delay: Option<String>,
    /// Expect a PROXY protocol header.
    pub proxy_protocol: Option<bool>,
    /// Networks trusted to send PROXY headers, comma-separated.
    pub proxy_from: Option<String>,
    /// Short mode: close right after the reply.
    pub close_first: Option<bool>,
    /// Drain time after a shutdown signal (default 10s).
    pub shutdown_grace: Option<String>,
    /// Serve Prometheus metrics on this address (`off`: not at all, so a flag can undo a
    /// file's address).
    pub metrics: Option<String>,
    /// `tokio` (default) or `direct`: see [`Engine`].
    pub engine: Option<String>,
}

/// Which engine serves the connections.
///
/// ```
/// use keepwire::server::Engine;
/// assert_eq!("direct".parse::<Engine>().unwrap(), Engine::Direct);
/// assert!("uring".parse::<Engine>().is_err());
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum Engine {
    /// A tokio task per connection, any handler ([`Server::serve`](super::Server::serve)).
    #[default]
    Tokio,
    /// An event loop per CPU, no task per connection, a [`Reply`] only, no TLS, PROXY
    /// protocol, `http` framing or reply delay
    /// ([`Server::serve_direct`](super::Server::serve_direct)).
    Direct,
}

impl std::str::FromStr for Engine {
    type Err = String;

    /// `tokio` or `direct`.
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "tokio" => Ok(Engine::Tokio),
            "direct" => Ok(Engine::Direct),
            _ => Err(format!("{s:?}: expected tokio or direct")),
        }
    }
}

/// What [`ServerSettings::build`] makes: where to listen, the config, the reply and the
/// metrics address.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct ServeSetup {
    /// Address to bind.
    pub listen: String,
    /// The checked config.
    pub config: ServerConfig,
    /// What to answer, already checked against the config.
    pub reply: Reply,
    /// Where to serve Prometheus metrics, if anywhere.
    pub metrics: Option<String>,
    /// The engine to serve with (the config is checked against it).
    pub engine: Engine,
}

macro_rules! merge_fields {
    ($over:ident, $base:ident; $($f:ident),*) => {
        ServerSettings { $($f: $over.$f.or($base.$f),)* }
    };
}

impl ServerSettings {
    /// These settings, with `base` filling in those not given: `flags.or(file)`.
    pub fn or(self, base: ServerSettings) -> ServerSettings {
        merge_fields!(self, base;
            listen, framing, mode, reply, idle_timeout, write_idle_timeout, any_idle_timeout,
            frame_timeout, max_conns, max_conns_per_ip, tcp_keepalive, tcp_user_timeout,
            heartbeat, delay, proxy_protocol, proxy_from, close_first, shutdown_grace, metrics,
            engine)
    }

    /// Turns the settings into a checked setup: parses each value, applies the `0`/`off`
    /// rules, runs [`ServerConfig::validate`] and [`ServerConfig::check_reply`].
    ///
    /// ```
    /// use keepwire::server::{Reply, ServerSettings};
    ///
    /// let mut s = ServerSettings::default();
    /// s.listen = Some("127.0.0.1:0".into());
    /// s.framing = Some("len:ascii:4".into());
    /// s.idle_timeout = Some("off".into());
    /// s.max_conns_per_ip = Some(0);
    /// let setup = s.build().unwrap();
    /// assert_eq!(setup.config.liveness.read_idle, None);
    /// assert_eq!(setup.config.max_conns_per_ip, None);
    /// assert_eq!(setup.reply, Reply::Echo);
    /// ```
    ///
    /// # Errors
    /// The first setting missing, malformed or inconsistent, as a [`ConfigError`] naming it.
    pub fn build(&self) -> Result<ServeSetup, ConfigError> {
        let listen = self.listen.clone().ok_or(ConfigError::Missing {
            key: "listen",
            example: "127.0.0.1:7000",
        })?;
        let config = self.config()?;
        let reply = Reply::parse_within(
            self.reply.as_deref().unwrap_or("echo"),
            config.framing.max_frame(),
        )?;
        if let Reply::Fixed(r) = &reply {
            config.check_reply(r)?;
        }
        let engine = match &self.engine {
            Some(e) => e
                .parse()
                .map_err(|m| ConfigError::invalid("engine", e, m))?,
            None => Engine::Tokio,
        };
        if engine == Engine::Direct {
            super::direct::check(&config)?;
        }
        Ok(ServeSetup {
            listen,
            config,
            reply,
            metrics: self.metrics.clone().filter(|m| m != "off"),
            engine,
        })
    }

    /// The [`ServerConfig`] part alone (`framing` required; `listen`, `reply` and `metrics`
    /// ignored), validated.
    ///
    /// # Errors
    /// As [`build`](Self::build).
    pub fn config(&self) -> Result<ServerConfig, ConfigError> {
        let framing = self.framing.as_deref().ok_or(ConfigError::Missing {
            key: "framing",
            example: "len:ascii:4",
        })?;
        let framing: FramingSpec = framing
            .parse()
            .map_err(|e| ConfigError::invalid("framing", framing, e))?;
        let mut cfg = ServerConfig::new(framing);
        if let Some(m) = &self.mode {
            cfg.mode = m.parse().map_err(|e| ConfigError::invalid("mode", m, e))?;
        }
        self.apply_liveness(&mut cfg)?;
        self.apply_limits(&mut cfg)?;
        self.apply_socket(&mut cfg)?;
        self.apply_proxy(&mut cfg)?;
        cfg.reply_delay = duration("delay", self.delay.as_deref())?;
        cfg.short_server_closes_first = self.close_first.unwrap_or(false);
        if let Some(g) = duration("shutdown-grace", self.shutdown_grace.as_deref())? {
            cfg.shutdown_grace = g;
        }
        cfg.validate()?;
        Ok(cfg)
    }

    fn apply_liveness(&self, cfg: &mut ServerConfig) -> Result<(), ConfigError> {
        let l = &mut cfg.liveness;
        l.read_idle = off_duration("idle-timeout", self.idle_timeout.as_deref(), l.read_idle)?;
        l.write_idle = off_duration(
            "write-idle-timeout",
            self.write_idle_timeout.as_deref(),
            None,
        )?;
        l.any_idle = off_duration("any-idle-timeout", self.any_idle_timeout.as_deref(), None)?;
        l.frame_timeout = off_duration(
            "frame-timeout",
            self.frame_timeout.as_deref(),
            l.frame_timeout,
        )?;
        if let Some(hb) = &self.heartbeat {
            let spec: HeartbeatSpec = hb
                .parse()
                .map_err(|e| ConfigError::invalid("heartbeat", hb, e))?;
            cfg.heartbeat = spec.heartbeat();
            cfg.liveness.ping = spec.ping_config();
        }
        Ok(())
    }

    fn apply_limits(&self, cfg: &mut ServerConfig) -> Result<(), ConfigError> {
        if let Some(n) = self.max_conns {
            if n == 0 {
                return Err(ConfigError::OutOfRange {
                    key: "max-conns",
                    value: n.to_string(),
                    expected: "at least 1",
                });
            }
            cfg.max_conns = n;
        }
        match self.max_conns_per_ip {
            // 0 lifts the cap (behind a balancer that does not send the PROXY protocol).
            Some(0) => cfg.max_conns_per_ip = None,
            Some(n) => cfg.max_conns_per_ip = Some(n),
            None => {}
        }
        Ok(())
    }

    fn apply_socket(&self, cfg: &mut ServerConfig) -> Result<(), ConfigError> {
        match self.tcp_keepalive.as_deref() {
            None | Some("off") => {}
            Some(k) => {
                let parsed = k
                    .parse::<Keepalive>()
                    .map_err(|e| ConfigError::invalid("tcp-keepalive", k, e))?;
                cfg.socket.keepalive = Some(parsed);
            }
        }
        cfg.socket.user_timeout = duration("tcp-user-timeout", self.tcp_user_timeout.as_deref())?;
        Ok(())
    }

    fn apply_proxy(&self, cfg: &mut ServerConfig) -> Result<(), ConfigError> {
        cfg.proxy_protocol = self.proxy_protocol.unwrap_or(false);
        if let Some(list) = &self.proxy_from {
            if !cfg.proxy_protocol {
                return Err(ConfigError::Needs {
                    key: "proxy-from",
                    needs: "proxy-protocol",
                });
            }
            cfg.proxy_from = parse_networks(list)
                .map_err(|e| ConfigError::invalid("proxy-from", &e.found.clone(), e))?;
        }
        Ok(())
    }
}

/// The file at `path`, if it holds at most `max` bytes; only `max + 1` bytes are read.
fn read_capped(path: &str, max: usize) -> std::io::Result<Vec<u8>> {
    use std::io::Read;
    let cap = u64::try_from(max).unwrap_or(u64::MAX).saturating_add(1);
    let mut buf = Vec::new();
    std::fs::File::open(path)?.take(cap).read_to_end(&mut buf)?;
    if buf.len() > max {
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            format!("larger than {max} bytes, the largest frame the framing carries"),
        ));
    }
    Ok(buf)
}

/// A duration setting, when given.
fn duration(key: &'static str, v: Option<&str>) -> Result<Option<Duration>, ConfigError> {
    v.map(|s| parse_duration(s).map_err(|e| ConfigError::invalid(key, s, e)))
        .transpose()
}

/// A duration setting where `0` or `off` turns the check off; `default` when not given.
fn off_duration(
    key: &'static str,
    v: Option<&str>,
    default: Option<Duration>,
) -> Result<Option<Duration>, ConfigError> {
    match v {
        None => Ok(default),
        Some("off") => Ok(None),
        Some(s) => Ok(duration(key, Some(s))?.filter(|d| !d.is_zero())),
    }
}

/// A comma-separated list of networks: CIDR (`10.0.0.0/8`) or single addresses.
fn parse_networks(list: &str) -> Result<Vec<ipnet::IpNet>, NetworkError> {
    list.split(',')
        .map(|n| {
            let n = n.trim();
            n.parse::<ipnet::IpNet>()
                .or_else(|_| n.parse::<std::net::IpAddr>().map(ipnet::IpNet::from))
                .map_err(|_| NetworkError {
                    found: n.to_string(),
                })
        })
        .collect()
}

/// One entry of a network list is neither a CIDR nor an address.
#[derive(Debug)]
struct NetworkError {
    found: String,
}

impl fmt::Display for NetworkError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{:?} is not a network; expected CIDR like 10.0.0.0/8 or an address",
            self.found
        )
    }
}

impl std::error::Error for NetworkError {}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings(framing: &str) -> ServerSettings {
        ServerSettings {
            listen: Some("127.0.0.1:0".into()),
            framing: Some(framing.into()),
            ..Default::default()
        }
    }

    #[test]
    fn zero_and_off_turn_durations_off() {
        for v in ["0", "off", "0s"] {
            let mut s = settings("line");
            s.idle_timeout = Some(v.into());
            s.frame_timeout = Some(v.into());
            let c = s.config().unwrap();
            assert_eq!(c.liveness.read_idle, None, "{v}");
            assert_eq!(c.liveness.frame_timeout, None, "{v}");
        }
        let c = settings("line").config().unwrap();
        assert_eq!(c.liveness.read_idle, Some(Duration::from_secs(300)));
    }

    #[test]
    fn networks_are_cidrs_or_addresses() {
        let n = parse_networks("10.0.0.0/8, 192.0.2.7").unwrap();
        assert_eq!(n.len(), 2);
        assert_eq!(n[1].to_string(), "192.0.2.7/32");
        let e = parse_networks("10.0.0.0/8,nope").unwrap_err();
        assert_eq!(e.found, "nope");
        let mut s = settings("line");
        s.proxy_from = Some("10.0.0.0/8".into());
        let e = s.config().unwrap_err();
        assert_eq!(e.to_string(), "proxy-from needs proxy-protocol");
        s.proxy_protocol = Some(true);
        assert_eq!(s.config().unwrap().proxy_from.len(), 1);
    }

    #[test]
    fn flags_win_over_the_file() {
        let file = ServerSettings {
            reply: Some("text:FILE".into()),
            max_conns: Some(50),
            proxy_protocol: Some(true),
            ..settings("len:ascii:4")
        };
        let flags = ServerSettings {
            reply: Some("text:FLAG".into()),
            ..Default::default()
        };
        let merged = flags.or(file);
        assert_eq!(merged.reply.as_deref(), Some("text:FLAG"));
        assert_eq!(merged.max_conns, Some(50));
        assert_eq!(merged.proxy_protocol, Some(true));
        assert_eq!(merged.framing.as_deref(), Some("len:ascii:4"));
    }

    #[test]
    fn each_rule_names_its_key() {
        type Edit = fn(&mut ServerSettings);
        let cases: [(&str, Edit); 7] = [
            ("listen", |s| s.listen = None),
            ("max-conns", |s| s.max_conns = Some(0)),
            ("tcp-keepalive", |s| s.tcp_keepalive = Some("30s".into())),
            ("tcp-user-timeout", |s| {
                s.tcp_user_timeout = Some("30d".into())
            }),
            ("heartbeat", |s| {
                s.mode = Some("short".into());
                s.heartbeat = Some("interval=1s".into());
            }),
            ("reply", |s| s.reply = Some("text:".into())),
            ("mode", |s| s.mode = Some("medium".into())),
        ];
        for (key, edit) in cases {
            let mut s = settings("len:ascii:4");
            edit(&mut s);
            let e = s.build().unwrap_err();
            assert_eq!(e.key(), Some(key), "{e}");
        }
    }

    #[test]
    fn reply_rules() {
        let mut s = settings("fixed:4");
        s.reply = Some("text:TOOLONG".into());
        assert!(matches!(
            s.build().unwrap_err(),
            ConfigError::ReplyNotFramable { .. }
        ));
        // The empty frame is a plain reply with heartbeats off, or in short mode.
        let mut s = settings("len:ascii:4");
        s.reply = Some("text:".into());
        assert!(matches!(
            s.build().unwrap_err(),
            ConfigError::ReplyIsHeartbeat { .. }
        ));
        s.heartbeat = Some("off".into());
        assert_eq!(s.build().unwrap().reply, Reply::Fixed(Bytes::new()));
        s.heartbeat = None;
        s.mode = Some("short".into());
        assert!(s.build().is_ok());
    }

    #[test]
    fn unframable_pong_and_eof_pings_are_refused() {
        let mut s = settings("fixed:4");
        s.heartbeat = Some("ping=text:PING,pong=text:PONGX".into());
        let e = s.config().unwrap_err();
        assert!(e.is_heartbeat() && e.to_string().contains("pong"), "{e}");
        let mut s = settings("eof");
        s.heartbeat = Some("interval=300ms".into());
        assert!(s.config().unwrap_err().to_string().contains("eof"));
    }
}
