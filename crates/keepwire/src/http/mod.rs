//! HTTP/1.x over the `http` framing: reading a message, the persistence rules, a server
//! handler and a client.
//!
//! A frame of the [`http`](crate::frame::http) framing is one whole message as it came on
//! the wire. [`message`] reads what a server or client needs out of it (method, status,
//! version, the `Connection` options and the body, de-chunked); [`persist`] decides, per
//! message, whether the connection stays open (RFC 9112 §9.3; HTTP/1.0 keep-alive as RFC
//! 2068 §19.7.1 describes it); [`HttpService`] is the handler `keepwire serve --framing
//! http` runs, and [`HttpClient`] a client that reuses its connection only when the
//! response allows it.
//!
//! A request head is parsed once: the codec reads, while finding where a request ends,
//! what a server answers from ([`crate::frame::http::HttpHead`]: version, `Connection`
//! options, `Host` count, codings, `HEAD`), and a server hands that to its handler with
//! the frame; [`HttpService`] answers from it, and parses the frame with
//! [`message::Request::parse_bytes`] only when a request comes without it.
//!
//! ```
//! use bytes::Bytes;
//! use keepwire::http::message::Request;
//!
//! let frame = Bytes::from_static(b"GET /x HTTP/1.0\r\nConnection: keep-alive\r\n\r\n");
//! let req = Request::parse(&frame).unwrap();
//! assert_eq!(&req.path[..], b"/x");
//! assert_eq!(req.version, 0);
//! assert!(req.connection.keep_alive && !req.connection.close);
//! ```

#[cfg(feature = "client")]
mod client;
mod error;
pub mod message;
pub mod persist;
#[cfg(feature = "server")]
mod service;

#[cfg(feature = "client")]
pub use client::{HttpClient, Response as ClientResponse};
pub use error::{HttpError, HttpErrorKind};
pub use persist::{KeepAlive, Persistence};
#[cfg(feature = "server")]
pub use service::{HttpReply, HttpService, response as service_response};
