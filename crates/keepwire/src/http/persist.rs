//! Whether a connection stays open after a response: HTTP persistence, sans-IO.
//!
//! RFC 9112 §9.3: "If the "close" connection option is present, the connection will not
//! persist after the current response; else, If the received protocol is HTTP/1.1 (or
//! later), the connection will persist after the current response; else, If the received
//! protocol is HTTP/1.0, the "keep-alive" connection option is present, either the recipient
//! is not a proxy or the message is a response, and the recipient wishes to honor the
//! HTTP/1.0 "keep-alive" mechanism, the connection will persist after the current response;
//! otherwise, The connection will close after the current response."
//!
//! HTTP/1.0 keep-alive (RFC 2068 §19.7.1): a client asks with `Connection: keep-alive`, and
//! the connection persists only if the server answers with `Connection: keep-alive` too, so
//! the server echoes it. A server may also say how long it keeps an idle connection and how
//! many more requests it takes: `Keep-Alive: timeout=N, max=M`.
//!
//! The server's own limits come on top (nginx's `keepalive_requests` and
//! `keepalive_timeout`): the last request a connection may carry, and every request answered
//! while the server drains, get `Connection: close`, and the connection closes after them
//! (RFC 9112 §9.6: "A server that sends a "close" connection option MUST initiate closure of
//! the connection after it sends the response containing the close").
//!
//! | request                          | server limit reached or draining | answer carries         | persists |
//! |----------------------------------|-----|------------------------------------------|---|
//! | any version, `Connection: close` | any | `Connection: close`                      | no |
//! | HTTP/1.1                         | no  | (`Keep-Alive:` when configured)          | yes |
//! | HTTP/1.0 with `keep-alive`       | no  | `Connection: keep-alive` (+ `Keep-Alive:`) | yes |
//! | HTTP/1.0 without it              | any | `Connection: close`                      | no |
//! | would persist                    | yes | `Connection: close`                      | no |
//!
//! ```
//! use keepwire::http::{KeepAlive, Persistence};
//! use keepwire::http::message::ConnectionOptions;
//!
//! let mut cfg = KeepAlive::default();
//! cfg.max_requests = 2;
//! let ask = ConnectionOptions { close: false, keep_alive: true };
//! let first = Persistence::decide(0, ask, 1, &cfg, false);
//! assert!(first.keep);
//! assert_eq!(first.connection, Some("keep-alive"));
//! let last = Persistence::decide(0, ask, 2, &cfg, false);
//! assert!(!last.keep);
//! assert_eq!(last.connection, Some("close"));
//! ```

use std::time::Duration;

use super::message::ConnectionOptions;

/// A server's persistence settings.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct KeepAlive {
    /// The most requests one connection carries (nginx's `keepalive_requests`); the last one
    /// is answered with `Connection: close`. 0: no limit.
    pub max_requests: u64,
    /// How long an idle connection is kept (the server's idle timeout), advertised in
    /// `Keep-Alive: timeout=N` when [`advertise`](Self::advertise) is set.
    pub timeout: Option<Duration>,
    /// Send `Keep-Alive: timeout=N[, max=M]` on responses that keep the connection.
    pub advertise: bool,
}

/// What one response says about the connection, and whether it stays open.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct Persistence {
    /// The connection stays open after this response.
    pub keep: bool,
    /// The `Connection` field to send, if any.
    pub connection: Option<&'static str>,
    /// `Keep-Alive: timeout=N[, max=M]` to send: seconds, and requests left after this one.
    pub keep_alive: Option<(u64, Option<u64>)>,
}

/// Whether a message of this version and options lets the connection persist (RFC 9112
/// §9.3), before any server limit.
pub fn persistent(version: u8, conn: ConnectionOptions) -> bool {
    !conn.close && (version >= 1 || conn.keep_alive)
}

impl Persistence {
    /// Decides for the `nth` request of a connection (counting from 1) of this `version`
    /// (0 or 1) and `conn` options, under `cfg`; `draining`: the server is shutting down.
    pub fn decide(
        version: u8,
        conn: ConnectionOptions,
        nth: u64,
        cfg: &KeepAlive,
        draining: bool,
    ) -> Persistence {
        let asked = persistent(version, conn);
        let limit = cfg.max_requests > 0 && nth >= cfg.max_requests;
        let keep = asked && !limit && !draining;
        if !keep {
            // An HTTP/1.1 client without `close` must be told; an HTTP/1.0 one closes
            // anyway, and saying so costs nothing (ab counts on nothing else).
            return Persistence {
                keep,
                connection: Some("close"),
                keep_alive: None,
            };
        }
        let keep_alive = cfg.advertise.then(|| {
            let secs = cfg.timeout.map_or(0, |t| t.as_secs());
            let left = (cfg.max_requests > 0).then(|| cfg.max_requests - nth);
            (secs, left)
        });
        Persistence {
            keep,
            connection: (version == 0).then_some("keep-alive"),
            keep_alive,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const NONE: ConnectionOptions = ConnectionOptions {
        close: false,
        keep_alive: false,
    };
    const CLOSE: ConnectionOptions = ConnectionOptions {
        close: true,
        keep_alive: false,
    };
    const KA: ConnectionOptions = ConnectionOptions {
        close: false,
        keep_alive: true,
    };

    /// One row per line of the module's table.
    #[test]
    fn the_table() {
        let cfg = KeepAlive {
            max_requests: 3,
            timeout: Some(Duration::from_secs(5)),
            advertise: true,
        };
        // version, options, nth request, draining -> keep, Connection field
        type Row = (u8, ConnectionOptions, u64, bool, bool, Option<&'static str>);
        let rows: &[Row] = &[
            (1, CLOSE, 1, false, false, Some("close")),
            (0, CLOSE, 1, false, false, Some("close")),
            (1, NONE, 1, false, true, None),
            (0, KA, 1, false, true, Some("keep-alive")),
            (0, NONE, 1, false, false, Some("close")),
            (1, NONE, 3, false, false, Some("close")),
            (1, NONE, 1, true, false, Some("close")),
            (0, KA, 1, true, false, Some("close")),
        ];
        for &(v, c, nth, drain, keep, conn) in rows {
            let p = Persistence::decide(v, c, nth, &cfg, drain);
            assert_eq!(
                (p.keep, p.connection),
                (keep, conn),
                "{v} {c:?} {nth} {drain}"
            );
        }
        let p = Persistence::decide(1, NONE, 1, &cfg, false);
        assert_eq!(p.keep_alive, Some((5, Some(2))));
        let quiet = KeepAlive::default();
        assert_eq!(
            Persistence::decide(1, NONE, 1000, &quiet, false).keep_alive,
            None
        );
        assert!(Persistence::decide(1, NONE, 1000, &quiet, false).keep);
    }
}
