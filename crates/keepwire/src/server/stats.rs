//! Server counters, readable at any time and published through the `metrics` facade.

use std::sync::atomic::{AtomicU64, Ordering};

macro_rules! counters {
    ($($(#[$doc:meta])* $field:ident => $metric:literal $(, $label:literal => $value:literal)?;)*) => {
        /// Counters of one server since it started. Every field is monotonic.
        #[derive(Debug, Default)]
        pub struct ServerStats {
            $($(#[$doc])* pub(crate) $field: AtomicU64,)*
        }

        /// A copy of [`ServerStats`] at one instant.
        #[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
        #[non_exhaustive]
        pub struct StatsSnapshot {
            $($(#[$doc])* pub $field: u64,)*
        }

        impl ServerStats {
            /// Reads every counter.
            pub fn snapshot(&self) -> StatsSnapshot {
                StatsSnapshot {
                    $($field: self.$field.load(Ordering::Relaxed),)*
                }
            }

            /// Sets the `metrics` facade's counters to the current values (a no-op when no
            /// recorder is installed). A server exporting metrics
            /// ([`Server::export_prometheus`](super::Server::export_prometheus)) calls it every
            /// [`PUBLISH_INTERVAL`](super::PUBLISH_INTERVAL); with another exporter, call it
            /// before rendering.
            pub fn publish(&self) {
                $(
                    metrics::counter!($metric $(, $label => $value)?)
                        .absolute(self.$field.load(Ordering::Relaxed));
                )*
            }
        }
    };
}

counters! {
    /// Connections accepted from the listener.
    accepted => "keepwire_connections_accepted_total";
    /// Connections closed at once because `max_conns` were open.
    rejected_max_conns => "keepwire_connections_rejected_total", "reason" => "max_conns";
    /// Connections closed at once because their client IP had `max_conns_per_ip` open.
    rejected_per_ip => "keepwire_connections_rejected_total", "reason" => "max_conns_per_ip";
    /// Connections closed for a missing or bad PROXY protocol header.
    rejected_proxy => "keepwire_connections_rejected_total", "reason" => "proxy_protocol";
    /// Connections closed by an idle timeout (read, write or any).
    idle_closed => "keepwire_connections_idle_closed_total";
    /// Connections closed because a frame trickled in slower than `frame_timeout`.
    frame_timeouts => "keepwire_frame_timeouts_total";
    /// Connections closed because pings went unanswered.
    heartbeat_timeouts => "keepwire_heartbeat_timeouts_total";
    /// Frames received (heartbeats included).
    frames_in => "keepwire_frames_in_total";
    /// Frames sent (heartbeats included).
    frames_out => "keepwire_frames_out_total";
    /// Heartbeat pings answered.
    pings_answered => "keepwire_heartbeats_answered_total";
    /// Heartbeat pings sent to idle clients.
    pings_sent => "keepwire_heartbeats_sent_total";
    /// Connections closed for a malformed frame (bad header, bad digits).
    errors_malformed => "keepwire_errors_total", "kind" => "malformed";
    /// Connections closed for a frame over `max`.
    errors_too_long => "keepwire_errors_total", "kind" => "too_long";
    /// Connections the peer closed in the middle of a frame.
    errors_truncated => "keepwire_errors_total", "kind" => "truncated";
    /// Handler errors (and replies the framing cannot encode).
    errors_handler => "keepwire_errors_total", "kind" => "handler";
    /// Socket errors (resets, write timeouts).
    errors_io => "keepwire_errors_total", "kind" => "io";
    /// Accept errors (EMFILE and friends).
    errors_accept => "keepwire_errors_total", "kind" => "accept";
    /// Connections that ended, for any reason.
    closed => "keepwire_connections_closed_total";
    /// Connections still open when the shutdown grace ran out.
    force_closed => "keepwire_connections_force_closed_total";
}

impl ServerStats {
    pub(crate) fn add(counter: &AtomicU64, n: u64) {
        counter.fetch_add(n, Ordering::Relaxed);
    }
}
