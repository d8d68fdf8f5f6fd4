//! A length-prefixed echo server written the way most tokio code is: tokio-util's
//! `LengthDelimitedCodec` (4-byte big-endian length, the same as `--framing len:be:4`) in a
//! `Framed` stream, `next()` then `send()` per frame, on the multi-thread runtime. It uses
//! nothing from keepwire: it is the "usual tokio code" baseline that
//! `scripts/compare-servers.sh` measures keepwire against.
//!
//! ```text
//! cargo run --release -p keepwire --example tokio_echo -- [--listen 127.0.0.1:0]
//! ```
//!
//! Prints `listening on ADDR` as its first stdout line. One worker thread per CPU in the
//! affinity mask (tokio's default), so `taskset -c 0` runs it on one thread.

use std::io;
use std::net::SocketAddr;

use futures_util::{SinkExt, StreamExt};
use tokio::net::{TcpListener, TcpStream};
use tokio_util::codec::{Framed, LengthDelimitedCodec};

/// Largest body accepted, bytes (16 MiB, as the C peer allows).
const MAX_FRAME: usize = 16 << 20;

fn main() -> io::Result<()> {
    let listen = listen_arg()?;
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?
        .block_on(serve(listen))
}

/// `--listen ADDR` (default 127.0.0.1:0).
fn listen_arg() -> io::Result<SocketAddr> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let text = match args.as_slice() {
        [] => "127.0.0.1:0",
        [flag, addr] if flag == "--listen" || flag == "-listen" => addr.as_str(),
        _ => {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "usage: tokio_echo [--listen HOST:PORT]",
            ));
        }
    };
    text.parse()
        .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, format!("--listen {text}: {e}")))
}

async fn serve(addr: SocketAddr) -> io::Result<()> {
    let listener = TcpListener::bind(addr).await?;
    println!("listening on {}", listener.local_addr()?);
    loop {
        let (stream, _) = match listener.accept().await {
            Ok(accepted) => accepted,
            // EMFILE & co: keep serving the connections we have.
            Err(_) => {
                tokio::time::sleep(std::time::Duration::from_millis(5)).await;
                continue;
            }
        };
        tokio::spawn(echo(stream));
    }
}

async fn echo(stream: TcpStream) {
    let _ = stream.set_nodelay(true);
    let codec = LengthDelimitedCodec::builder()
        .big_endian()
        .length_field_length(4)
        .max_frame_length(MAX_FRAME)
        .new_codec();
    let mut framed = Framed::new(stream, codec);
    while let Some(Ok(frame)) = framed.next().await {
        if framed.send(frame.freeze()).await.is_err() {
            break;
        }
    }
}
