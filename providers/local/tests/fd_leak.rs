//! No file descriptor leaks: many connections (ok, refused by the target, refused by source
//! range) and a delete leave the process with the descriptors it had. Its own test binary, so
//! that no other test opens descriptors meanwhile.

mod common;

use std::time::Duration;

use cloudlb_provider::{Protocol, Provider, conformance};
use common::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

fn open_fds() -> usize {
    std::fs::read_dir("/proc/self/fd").map(|d| d.count()).unwrap_or(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn many_connections_leak_no_descriptors() {
    bounded(async {
        let backend = TcpBackend::start("a", "127.0.0.2:0".parse().unwrap()).await.unwrap();
        let p = provider("127.241.20.0/24");
        let before = open_fds();
        let mut s = spec(&[(18100, Protocol::Tcp, backend.addr.port()), (18101, Protocol::Tcp, 1)], &["127.0.0.2"]);
        // Checks on a port nobody listens on would fail the target: keep it healthy (long interval).
        s.health_check.interval_seconds = 3600;
        let id = conformance::id("fds");
        let st = p.ensure(&id, &s, None).await.unwrap();
        let ok = lb_addr(&st, 18100);
        let refused = lb_addr(&st, 18101);
        let mut rounds = tokio::task::JoinSet::new();
        for w in 0..16 {
            rounds.spawn(async move {
                for i in 0..40 {
                    let mut c = connect(ok, None).await.unwrap();
                    let msg = format!("worker {w} round {i}");
                    c.write_all(msg.as_bytes()).await.unwrap();
                    let mut buf = vec![0u8; msg.len()];
                    c.read_exact(&mut buf).await.unwrap();
                    assert_eq!(buf, msg.as_bytes());
                    if i % 2 == 0 {
                        c.shutdown().await.unwrap();
                    }
                }
                for _ in 0..5 {
                    // The target refuses (nothing on port 1): the LB closes the client.
                    let mut c = connect(refused, None).await.unwrap();
                    let mut buf = [0u8; 1];
                    assert!(matches!(c.read(&mut buf).await, Ok(0) | Err(_)));
                }
            });
        }
        while let Some(r) = rounds.join_next().await {
            r.unwrap();
        }
        eventually("all connections closed", Duration::from_secs(10), || {
            let t = p.stats().totals;
            t.connections_active == 0 && t.connections_accepted == 16 * 45
        })
        .await;
        assert!(p.stats().totals.connect_failures >= 16 * 5);
        p.delete(&id, None).await.unwrap();
        // Backend-side sockets close when the backend sees EOF; wait for the count to settle.
        eventually("descriptors back to where they were", Duration::from_secs(10), || open_fds() <= before).await;
    })
    .await;
}
