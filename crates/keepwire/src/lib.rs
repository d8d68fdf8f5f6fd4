//! keepwire: message-oriented TCP.
//!
//! People who connect their systems to other people's systems over raw TCP (bank and card
//! links speaking ISO 8583, telecom gateways speaking CMPP or SMPP, in-house protocols) need
//! three things done right: finding where one message ends and the next begins, choosing
//! between short and long connections and living with either, and surviving peers they do
//! not control. This crate is the library half of the `keepwire` tool.
//!
//! Always there (the framing layer, `default-features = false`):
//! - [`frame`]: framing specs (`len:ascii:4`, `len:be:4:incl`, `delim:0x03`, `line`,
//!   `fixed:N`, `eof`) and [`FrameCodec`](frame::FrameCodec), a tokio-util codec.
//! - [`liveness`]: the sans-IO heartbeat and idle state machine; [`socket`]: keepalive and
//!   timeout settings; [`text`]: bytes as escaped text or hex; [`tcpstate`]: the kernel's
//!   TCP table; [`deadline`]: saturating deadlines.
//!
//! Behind cargo features, all on by default:
//!
//! | feature | adds | pulls in |
//! |---|---|---|
//! | `server` | `server`: the framed TCP server with limits, PROXY protocol, drain | tokio (rt, net, time, signal), tower, ppp, ipnet, socket2 |
//! | `client` | `client`: short, long, pool, mux, duplex and simplex clients | tokio (rt, net, time), tower, bb8, socket2 |
//! | `blocking` | `blocking`: `std::io` clients and `FrameReader`, with read timeouts that keep partial frames | `client` (shared config, endpoints, errors), rustix |
//! | `bench` | `bench`: short vs long measured on an embedded server or a target | `server`, `client`, hdrhistogram |
//! | `metrics` | server counters through the `metrics` facade and a Prometheus listener | `server`, metrics, metrics-exporter-prometheus, hyper, hyper-util |
//! | `config` | `serde::Deserialize` for `server::ServerSettings` | `server`, serde |
//! | `protocol` | `protocol`: SMPP 3.4 and CMPP 3.0/2.0 templates (PDUs as text, logins, simulators); no runtime | md-5 |
//! | `tls` | `tls`: TLS and mutual TLS on the server and the clients | rustls (ring), tokio-rustls, rustls-pki-types, rustls-native-certs |
//! | `socks` | `socks`: SOCKS5 connects for the clients | tokio-socks |
//!
//! ```toml
//! # framing only: no tokio runtime, no network, no metrics
//! keepwire = { version = "0.1", default-features = false }
//! ```
//!
//! ```
//! use keepwire::frame::{FrameCodec, FramingSpec};
//! use tokio_util::codec::Decoder;
//!
//! let mut codec = FrameCodec::new(FramingSpec::parse("len:bcd:2").unwrap());
//! let mut buf = bytes::BytesMut::from(&b"\x00\x05hello"[..]);
//! assert_eq!(&codec.decode(&mut buf).unwrap().unwrap()[..], b"hello");
//! ```
#![forbid(unsafe_code)]
#![deny(missing_docs, unreachable_pub)]
#![cfg_attr(not(test), deny(clippy::unwrap_used, clippy::expect_used))]

#[cfg(feature = "bench")]
pub mod bench;
#[cfg(feature = "blocking")]
pub mod blocking;
#[cfg(feature = "client")]
pub mod client;
pub mod deadline;
pub mod frame;
pub mod http;
pub mod liveness;
#[cfg(any(feature = "server", feature = "client"))]
mod pipeline;
#[cfg(feature = "protocol")]
pub mod protocol;
#[cfg(feature = "proxy")]
pub mod proxy;
#[cfg(feature = "server")]
pub mod server;
pub mod socket;
#[cfg(feature = "socks")]
pub mod socks;
pub mod tcpstate;
pub mod text;
#[cfg(feature = "tls")]
#[cfg_attr(
    not(any(feature = "server", feature = "client")),
    allow(dead_code, reason = "the layer serves the server and the clients")
)]
pub mod tls;
