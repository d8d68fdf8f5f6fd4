//! Request/response throughput of the long, pool and mux clients against keepwire's own echo
//! server on loopback. Each iteration is a batch of 64 concurrent requests; criterion reports
//! requests per second (elements/s).
//!
//! `cargo bench -p keepwire --bench clients`

use std::convert::Infallible;
use std::time::Duration;

use bytes::Bytes;
use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use keepwire::client::{ByteRange, ClientBuilder};
use keepwire::server::{Request, Server, ServerConfig, service_fn};

const BATCH: u64 = 64;

fn frame(i: u64) -> Bytes {
    let mut f = i.to_be_bytes().to_vec();
    f.extend_from_slice(&[b'x'; 56]);
    Bytes::from(f)
}

fn clients(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let addr = rt.block_on(async {
        let server = Server::bind(
            "127.0.0.1:0",
            ServerConfig::new("len:be:4".parse().unwrap()),
        )
        .await
        .unwrap();
        let addr = server.local_addr().to_string();
        tokio::spawn(server.serve(service_fn(|r: Request| async move {
            Ok::<_, Infallible>(Some(r.frame))
        })));
        addr
    });
    let b = || ClientBuilder::new("len:be:4".parse().unwrap(), [addr.clone()]);
    let (long, pipelined, pool, mux) = rt.block_on(async {
        (
            b().connect_long().await.unwrap(),
            b().max_in_flight(64).connect_long().await.unwrap(),
            b().pool(8).await.unwrap(),
            b().connect_mux(ByteRange::new(0, 8)).await.unwrap(),
        )
    });
    let mut g = c.benchmark_group("request_response_64_concurrent");
    g.throughput(Throughput::Elements(BATCH))
        .sample_size(10)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3));
    let mut n = 0u64;
    macro_rules! bench {
        ($name:expr, $client:expr) => {
            g.bench_function($name, |bch| {
                bch.iter(|| {
                    rt.block_on(async {
                        let futs = (0..BATCH).map(|_| {
                            n += 1;
                            let f = frame(n);
                            let c = $client.clone();
                            async move { c.request(f).await.unwrap() }
                        });
                        futures_util::future::join_all(futs.collect::<Vec<_>>()).await
                    })
                })
            });
        };
    }
    bench!("long", long);
    bench!("long_pipelined_64", pipelined);
    bench!("pool_8", pool);
    bench!("mux", mux);
    g.finish();
}

criterion_group!(benches, clients);
criterion_main!(benches);
