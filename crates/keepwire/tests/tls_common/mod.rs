//! Helpers for the TLS and SOCKS tests: certificates made with rcgen, a framed client over
//! a TLS stream, and the rule for tests whose tool or privilege is missing.
#![allow(dead_code, unreachable_pub)]

use std::time::Duration;

use bytes::{Bytes, BytesMut};
use keepwire::frame::FrameCodec;
use keepwire::tls::{CertificateDer, ClientTls, PrivateKeyDer, ServerTls};
use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, KeyPair};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio_util::codec::Decoder;

/// Whether a test may run: `ok`, or it prints "skipped: <why>" and returns false, unless
/// `KEEPWIRE_REQUIRE_TOOLS=1` (CI), where a missing tool or privilege fails the test.
pub fn require(ok: bool, why: &str) -> bool {
    if ok {
        return true;
    }
    if std::env::var("KEEPWIRE_REQUIRE_TOOLS").as_deref() == Ok("1") {
        panic!("KEEPWIRE_REQUIRE_TOOLS=1 but {why}");
    }
    eprintln!("skipped: {why}");
    false
}

/// Whether `tool` is on the PATH.
pub fn has_tool(tool: &str) -> bool {
    std::process::Command::new("sh")
        .args(["-c", &format!("command -v {tool}")])
        .output()
        .is_ok_and(|o| o.status.success())
}

/// A CA: its certificate and key.
pub struct Ca {
    pub cert: rcgen::Certificate,
    pub key: KeyPair,
}

impl Ca {
    pub fn new(cn: &str) -> Ca {
        let key = KeyPair::generate().unwrap();
        let mut p = CertificateParams::new(vec![]).unwrap();
        p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        p.distinguished_name.push(DnType::CommonName, cn);
        let cert = p.self_signed(&key).unwrap();
        Ca { cert, key }
    }

    pub fn der(&self) -> CertificateDer<'static> {
        self.cert.der().clone()
    }

    /// A leaf for `names` (DNS names or IPs) with subject `CN=cn`; `expired` puts its
    /// validity in the past.
    pub fn leaf(&self, names: &[&str], cn: &str, expired: bool) -> Leaf {
        let key = KeyPair::generate().unwrap();
        let mut p = CertificateParams::new(names.iter().map(|n| n.to_string()).collect::<Vec<_>>())
            .unwrap();
        p.distinguished_name.push(DnType::CommonName, cn);
        if expired {
            p.not_before = rcgen::date_time_ymd(2001, 1, 1);
            p.not_after = rcgen::date_time_ymd(2002, 1, 1);
        }
        let cert = p.signed_by(&key, &self.cert, &self.key).unwrap();
        Leaf { cert, key }
    }
}

pub struct Leaf {
    pub cert: rcgen::Certificate,
    pub key: KeyPair,
}

impl Leaf {
    pub fn chain(&self) -> Vec<CertificateDer<'static>> {
        vec![self.cert.der().clone()]
    }

    pub fn key_der(&self) -> PrivateKeyDer<'static> {
        PrivateKeyDer::Pkcs8(self.key.serialize_der().into())
    }

    /// Writes `NAME.crt` and `NAME.key` into `dir`; returns their paths.
    pub fn write(&self, dir: &std::path::Path, name: &str) -> (String, String) {
        let c = dir.join(format!("{name}.crt"));
        let k = dir.join(format!("{name}.key"));
        std::fs::write(&c, self.cert.pem()).unwrap();
        std::fs::write(&k, self.key.serialize_pem()).unwrap();
        (c.display().to_string(), k.display().to_string())
    }
}

/// The usual set: a server CA and its leaf for localhost/127.0.0.1, a client CA and a
/// client leaf `CN=atm-17`.
pub struct Pki {
    pub ca: Ca,
    pub server: Leaf,
    pub client_ca: Ca,
    pub client: Leaf,
}

impl Pki {
    pub fn new() -> Pki {
        let ca = Ca::new("keepwire test server CA");
        let server = ca.leaf(&["localhost", "127.0.0.1"], "localhost", false);
        let client_ca = Ca::new("keepwire test client CA");
        let client = client_ca.leaf(&[], "atm-17", false);
        Pki {
            ca,
            server,
            client_ca,
            client,
        }
    }

    /// Server TLS; with `mutual`, client certificates from the client CA are required.
    pub fn server_tls(&self, mutual: bool) -> ServerTls {
        let cas = mutual.then(|| vec![self.client_ca.der()]);
        ServerTls::new(self.server.chain(), self.server.key_der(), cas).unwrap()
    }

    /// Client TLS trusting the server CA, with the client certificate when `identity`.
    pub fn client_tls(&self, identity: bool) -> ClientTls {
        let b = ClientTls::builder().ca_certs(vec![self.ca.der()]);
        let b = if identity {
            b.identity(self.client.chain(), self.client.key_der())
        } else {
            b
        };
        b.build().unwrap()
    }
}

/// A framed client over any stream (a TLS one here).
pub struct Framed<S> {
    pub io: S,
    codec: FrameCodec,
    buf: BytesMut,
}

impl<S: AsyncRead + AsyncWrite + Unpin> Framed<S> {
    pub fn new(io: S, framing: &str) -> Self {
        Framed {
            io,
            codec: FrameCodec::new(framing.parse().unwrap()),
            buf: BytesMut::new(),
        }
    }

    pub async fn send(&mut self, frame: &[u8]) -> std::io::Result<()> {
        let mut out = BytesMut::new();
        self.codec.encode_to(frame, &mut out).unwrap();
        self.io.write_all(&out).await?;
        self.io.flush().await
    }

    /// The next frame; `Ok(None)` at EOF; an error as the stream gave it. Bounded by 10 s.
    pub async fn recv(&mut self) -> std::io::Result<Option<Bytes>> {
        tokio::time::timeout(Duration::from_secs(10), async {
            loop {
                if let Some(f) = self.codec.decode(&mut self.buf).unwrap() {
                    return Ok(Some(f));
                }
                self.buf.reserve(4096);
                if self.io.read_buf(&mut self.buf).await? == 0 {
                    return Ok(None);
                }
            }
        })
        .await
        .expect("no frame or close within 10 s")
    }
}
