//! A TCP proxy in front of the sandbox API that can be frozen: it stops forwarding bytes in both
//! directions but keeps every socket open, and keeps accepting new connections (which hang the
//! same way). To the client behind it this is a connection that silently drops everything, the
//! failure a refused connection does not simulate: requests neither fail nor complete, so only
//! the client's own deadlines notice.
//!
//! Also here: [`Controller::try_exit`], to see a replica end on its own (the frozen leader must
//! exit non-zero). It lives in this module because `support/mod.rs` is shared; a child module of
//! `support` may use `Controller`'s private child handle.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::ExitStatus;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::task::JoinSet;

use super::{Cluster, Controller};

pub struct FreezeProxy {
    addr: SocketAddr,
    frozen: watch::Sender<bool>,
    task: tokio::task::JoinHandle<()>,
}

impl FreezeProxy {
    /// Listens on 127.0.0.1:0 and forwards every connection to `upstream`.
    pub async fn start(upstream: SocketAddr) -> FreezeProxy {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind proxy");
        let addr = listener.local_addr().expect("proxy address");
        let (frozen, _) = watch::channel(false);
        let rx = frozen.subscribe();
        let task = tokio::spawn(async move {
            // Dropping the set (when this task is aborted) aborts every pump with it.
            let mut pumps = JoinSet::new();
            loop {
                let Ok((client, _)) = listener.accept().await else { continue };
                let Ok(server) = TcpStream::connect(upstream).await else { continue };
                let (client_read, client_write) = client.into_split();
                let (server_read, server_write) = server.into_split();
                pumps.spawn(pump(client_read, server_write, rx.clone()));
                pumps.spawn(pump(server_read, client_write, rx.clone()));
                while pumps.try_join_next().is_some() {}
            }
        });
        FreezeProxy { addr, frozen, task }
    }

    /// Starts a proxy in front of `cluster`'s API and writes a copy of its kubeconfig that points
    /// at the proxy instead.
    pub async fn in_front_of(cluster: &Cluster) -> (FreezeProxy, PathBuf) {
        let upstream: SocketAddr =
            cluster.sandbox.url().trim_start_matches("http://").parse().expect("sandbox address");
        let proxy = FreezeProxy::start(upstream).await;
        let path = cluster.dir.path().join("proxied.kubeconfig");
        proxy.write_kubeconfig(&cluster.kubeconfig, &cluster.sandbox.url(), &path);
        (proxy, path)
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Copies the kubeconfig at `original`, replacing the server `server_url` with this proxy.
    pub fn write_kubeconfig(&self, original: &Path, server_url: &str, to: &Path) {
        let text = std::fs::read_to_string(original).expect("read kubeconfig");
        assert!(text.contains(server_url), "kubeconfig does not name {server_url}");
        std::fs::write(to, text.replace(server_url, &self.url())).expect("write proxied kubeconfig");
    }

    /// From now on nothing is forwarded either way; every socket stays open.
    pub fn freeze(&self) {
        self.frozen.send_replace(true);
    }

    /// Forwarding resumes, with whatever was held back.
    pub fn thaw(&self) {
        self.frozen.send_replace(false);
    }
}

impl Drop for FreezeProxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Copies `from` to `to` while not frozen. A read in progress when the freeze starts is
/// abandoned (TCP reads are cancel-safe: nothing is lost); bytes already read wait for a thaw.
async fn pump(mut from: OwnedReadHalf, mut to: OwnedWriteHalf, mut frozen: watch::Receiver<bool>) {
    let mut buf = vec![0u8; 16 * 1024];
    loop {
        if !until(&mut frozen, false).await {
            return;
        }
        let n = tokio::select! {
            read = from.read(&mut buf) => match read {
                Ok(0) | Err(_) => {
                    let _ = to.shutdown().await;
                    return;
                }
                Ok(n) => n,
            },
            _ = until(&mut frozen, true) => continue,
        };
        if !until(&mut frozen, false).await {
            return;
        }
        if to.write_all(&buf[..n]).await.is_err() {
            return;
        }
    }
}

/// Waits until the proxy is (`true`) or is not (`false`) frozen; false once it is gone.
async fn until(frozen: &mut watch::Receiver<bool>, state: bool) -> bool {
    frozen.wait_for(|f| *f == state).await.is_ok()
}

impl Controller {
    /// The exit status if the process has ended, without waiting.
    pub fn try_exit(&mut self) -> Option<ExitStatus> {
        self.child.try_wait().expect("query child status")
    }
}
