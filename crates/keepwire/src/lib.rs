//! keepwire: message-oriented TCP.
//!
//! People who connect their systems to other people's systems over raw TCP (bank and card
//! links speaking ISO 8583, telecom gateways speaking CMPP or SMPP, in-house protocols) need
//! three things done right: finding where one message ends and the next begins, choosing
//! between short and long connections and living with either, and surviving peers they do
//! not control. This crate is the library half of the `keepwire` tool.
//!
//! - [`frame`]: framing specs (`len:ascii:4`, `len:be:4:incl`, `delim:0x03`, `line`,
//!   `fixed:N`, `eof`) and [`FrameCodec`](frame::FrameCodec), a tokio-util codec.
//! - [`blocking`]: the same codec over `std::io` for code that is not async, with read
//!   timeouts that keep partial frames.
//! - [`text`]: bytes as escaped text or hex, as the CLI prints them.
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

pub mod bench;
pub mod blocking;
pub mod client;
pub mod deadline;
pub mod frame;
pub mod liveness;
mod pipeline;
pub mod server;
pub mod socket;
pub mod tcpstate;
pub mod text;
