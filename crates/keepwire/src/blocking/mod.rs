//! Framing for code that is not async: [`FrameReader`] and [`FrameWriter`] over
//! `std::io::{Read, Write}`.
//!
//! They drive the same sans-IO [`FrameCodec`](crate::frame::FrameCodec) as the async side,
//! never a copy of its logic. A read that times out in the middle of a frame keeps the bytes
//! already read in the reader's buffer, and the next call continues the same frame. Reads
//! with a timeout, or without waiting, leave the socket's mode and read timeout alone: both
//! are shared by every `try_clone` of it, and a writer on another thread depends on them.

//!
//! [`ShortClient`] and [`LongClient`] are `std::net` clients built on them, configured with
//! the async clients' [`ClientBuilder`](crate::client::ClientBuilder) ([`ClientOptions`]).
//! With the `tls` feature, [`tls_connect`] runs a client handshake on a `std::net` socket
//! and gives rustls' own blocking stream, which the reader and writer take like any other.

mod client;
mod long;
mod reader;
#[cfg(feature = "tls")]
mod tls;

pub use client::{ClientOptions, ShortClient};
pub use long::LongClient;
pub use reader::{FrameReader, FrameWriter};
#[cfg(feature = "tls")]
pub use tls::{TlsStream, tls_connect};
