//! What TLS costs short and long connections, in one run on loopback: `short` and `long`
//! against a plain keepwire echo server and a TLS one (certificates made here with rcgen),
//! and `short` over TLS again with session resumption off. Prints a markdown table.
//!
//! `cargo bench -p keepwire --bench tls_cost -- [DURATION] [CONNECTIONS]` (default 3s 8)

use std::convert::Infallible;
use std::net::SocketAddr;
use std::time::Duration;

use keepwire::bench::{BenchConfig, Pattern, PatternReport};
use keepwire::server::{Request, Server, ServerConfig, service_fn};
use keepwire::tls::{ClientTls, PrivateKeyDer, ServerTls};

async fn echo(tls: Option<ServerTls>) -> SocketAddr {
    let mut cfg = ServerConfig::new("len:be:4".parse().unwrap());
    cfg.tls = tls;
    cfg.max_conns_per_ip = None;
    let server = Server::bind("127.0.0.1:0", cfg).await.unwrap();
    let addr = server.local_addr();
    tokio::spawn(server.serve(service_fn(|r: Request| async move {
        Ok::<_, Infallible>(Some(r.frame))
    })));
    addr
}

fn row(link: &str, p: &PatternReport) {
    println!(
        "| {} | {link} | {:.0} | {} | {} | {} |",
        p.pattern.as_str(),
        p.rps,
        p.p50_us,
        p.p99_us,
        p.connections_opened
    );
}

fn main() {
    let mut args = std::env::args().skip(1).filter(|a| !a.starts_with("--"));
    let duration = args
        .next()
        .map(|d| humantime::parse_duration(&d).unwrap())
        .unwrap_or(Duration::from_secs(3));
    let connections = args.next().map(|n| n.parse().unwrap()).unwrap_or(8);
    let ca = rcgen::generate_simple_self_signed(vec!["127.0.0.1".into()]).unwrap();
    let key = PrivateKeyDer::Pkcs8(ca.key_pair.serialize_der().into());
    let server_tls = ServerTls::new(vec![ca.cert.der().clone()], key, None).unwrap();
    let client = |resume: bool| {
        ClientTls::builder()
            .ca_certs(vec![ca.cert.der().clone()])
            .resumption(resume)
            .build()
            .unwrap()
    };
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let plain = rt.block_on(echo(None));
    let tls = rt.block_on(echo(Some(server_tls)));
    let runs: [(&str, SocketAddr, Option<ClientTls>, &[Pattern]); 3] = [
        ("plain TCP", plain, None, &[Pattern::Short, Pattern::Long]),
        (
            "TLS 1.3, resumption on",
            tls,
            Some(client(true)),
            &[Pattern::Short, Pattern::Long],
        ),
        (
            "TLS 1.3, resumption off",
            tls,
            Some(client(false)),
            &[Pattern::Short],
        ),
    ];
    println!(
        "{connections} clients, {} per mode, 64-byte echo, len:be:4\n",
        humantime::format_duration(duration)
    );
    println!("| mode | link | requests/s | p50 µs | p99 µs | connections |");
    println!("|---|---|---|---|---|---|");
    for (link, target, tls, patterns) in runs {
        let mut cfg = BenchConfig::new("len:be:4".parse().unwrap());
        cfg.target = Some(target);
        cfg.patterns = patterns.to_vec();
        cfg.duration = duration;
        cfg.connections = connections;
        cfg.tls = tls;
        let report = keepwire::bench::run(&cfg, &mut ()).unwrap();
        for p in &report.patterns {
            row(link, p);
        }
    }
}
