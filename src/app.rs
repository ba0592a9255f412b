//! Starting the controller: client, metrics server, provider, then the reconcile loop; and
//! how a leader ends.
//!
//! A leader ends in one of two ways. Asked to stop (SIGTERM), it lets in-flight reconciles
//! finish, then closes the fence and releases the lease so a standby takes over at once; exit 0.
//! Having lost the lease (it could not renew within the renew deadline, or another holder has
//! it), it may already have a successor: the fence has stopped every provider mutation by then,
//! and the process exits non-zero at once, without draining anything, to be restarted as a
//! standby. A standby asked to stop just exits 0.

pub mod api_timeout;

use std::future::Future;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;

use cloudlb_provider::Provider;
use kube::Client;
use kube::client::retry::RetryPolicy;
use kube::config::{Config, KubeConfigOptions, Kubeconfig};
use tower::buffer::BufferLayer;
use tower::retry::RetryLayer;
use tracing::info;

use std::time::Duration;

use crate::api_limit::CountThrottledLayer;
use crate::args::{ControllerArgs, ControllerKind, ProviderKind, RunArgs};
use crate::controller::{self, ControllerConfig};
use crate::desired::ingress::IngressConfig;
use crate::error::{Error, Result};
use crate::leader::{Elector, FencedProvider, LeaderConfig};
use crate::metrics::{self, Metrics, Transition};
use crate::providers;

/// `cloudlb run`.
pub async fn run(args: RunArgs) -> Result<()> {
    // The provider first: a missing flag or credential is reported before anything else.
    let provider = providers::build(&args.controller).await?;
    let metrics = Arc::new(Metrics::default());
    let client = client(args.kubeconfig.as_deref(), args.controller.api_limit(), &metrics).await?;
    start(client, provider, &args.controller, Mode::Cluster, metrics, shutdown_signal()).await
}

/// The provider and a client for the one-shot commands (`gc`, `plan`), the API reached once.
pub async fn connect(args: &RunArgs) -> Result<(Arc<dyn Provider>, Client)> {
    let provider = providers::build(&args.controller).await?;
    let client = client(args.kubeconfig.as_deref(), args.controller.api_limit(), &Metrics::default()).await?;
    client.apiserver_version().await.map_err(Error::ApiUnreachable)?;
    Ok((provider, client))
}

/// A client from `--kubeconfig`, else in-cluster config, else `~/.kube/config`, with a deadline
/// on every request ([`api_timeout`]), the client-side limit if there is one, and the apiserver's
/// 429s counted into `metrics`.
///
/// ```text
///   request ─▶ limit (--kube-api-qps) ─▶ deadline ─▶ retry (429/503/504) ─▶ buffer ─▶ count 429s ─▶ kube's stack
/// ```
///
/// kube's own retry layer sits at the bottom of its stack, where a layer added here cannot see
/// the 429s it retries; so it is switched off and the same policy (`RetryPolicy::server_retry`:
/// honours `Retry-After`, up to 15 retries) runs above the counting layer instead, behind a
/// buffer (a retry needs a service it can clone). The deadline still covers the retries.
pub async fn client(kubeconfig: Option<&Path>, limit: Option<(f64, u32)>, metrics: &Metrics) -> Result<Client> {
    let mut config = match kubeconfig {
        Some(path) => {
            let err = |source| Error::Kubeconfig { path: path.display().to_string(), source };
            let kc = Kubeconfig::read_from(path).map_err(err)?;
            Config::from_custom_kubeconfig(kc, &KubeConfigOptions::default()).await.map_err(err)?
        }
        None => Config::infer().await.map_err(Error::InferConfig)?,
    };
    api_timeout::configure(&mut config);
    config.default_retry = false;
    let builder = kube::client::ClientBuilder::try_from(config)
        .map_err(Error::Client)?
        .with_layer(&CountThrottledLayer(metrics.kube_api.throttled.clone()))
        .with_layer(&BufferLayer::<http::Request<kube::client::Body>>::new(API_BUFFER))
        .with_layer(&RetryLayer::new(RetryPolicy::server_retry()))
        .with_layer(&api_timeout::DeadlineLayer(api_timeout::REQUEST_TIMEOUT));
    Ok(match limit {
        None => builder.build(),
        // Outside the deadline: waiting for a token is not the API being slow.
        Some((qps, burst)) => {
            let bucket = crate::api_limit::Bucket::new(qps, burst, metrics.kube_api.clone());
            builder.with_layer(&crate::api_limit::LimitLayer(Arc::new(bucket))).build()
        }
    })
}

/// Requests queued for the retry layer's buffer (as many as kube's client buffers itself).
const API_BUFFER: usize = 1024;

/// Serves `metrics`, builds the provider and runs the controller until `shutdown`.
pub async fn start(
    client: Client,
    provider: Arc<dyn Provider>,
    args: &ControllerArgs,
    mode: Mode,
    metrics: Arc<Metrics>,
    shutdown: impl Future<Output = ()> + Send + Sync + 'static,
) -> Result<()> {
    let default_metrics: SocketAddr = match mode {
        Mode::Cluster => ([0, 0, 0, 0], 8080).into(),
        Mode::Sandbox => ([127, 0, 0, 1], 0).into(),
    };
    let addr = metrics::serve(args.metrics_addr.unwrap_or(default_metrics), metrics.clone()).await?;
    info!(addr = %addr, "serving metrics and health");
    let config = controller_config(args, mode);
    if !args.leader_elect {
        metrics.leader.set(1);
        return controller::run(client, provider, config, metrics, shutdown).await;
    }
    let mut shutdown = Box::pin(shutdown);
    // A standby is ready (healthy, waiting): a rollout must not stall on it. The leader is
    // ready once it has synced (set by the controller).
    let standby = || metrics.ready.store(true, std::sync::atomic::Ordering::Relaxed);
    let leadership = tokio::select! {
        held = Elector::new(client.clone(), leader_config(args)).acquire(standby) => held,
        () = &mut shutdown => return Ok(()),
    };
    metrics.ready.store(false, std::sync::atomic::Ordering::Relaxed);
    metrics.leadership(Transition::Acquired);
    let provider: Arc<dyn Provider> = Arc::new(FencedProvider { inner: provider, fence: leadership.fence() });
    tokio::select! {
        result = controller::run(client, provider, config, metrics.clone(), shutdown) => {
            metrics.leadership(Transition::Released);
            leadership.release().await;
            result
        }
        // The fence is closed by now (and the loss logged). Returning drops the controllers
        // mid-flight: nothing is drained.
        () = leadership.lost() => {
            metrics.leadership(Transition::Lost);
            Err(Error::LeadershipLost)
        }
    }
}

/// Where the controller runs, for the defaults that differ.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    /// `cloudlb run`: metrics on 0.0.0.0:8080, Ingress listeners on 80/443.
    Cluster,
    /// `cloudlb sandbox`: unprivileged on this host, metrics on a free loopback port, Ingress
    /// listeners on 8080/8443.
    Sandbox,
}

impl Mode {
    /// The Ingress listener ports (HTTP, HTTPS) when the flags do not set them.
    pub fn ingress_ports(self) -> (u16, u16) {
        match self {
            Mode::Cluster => (80, 443),
            Mode::Sandbox => (8080, 8443),
        }
    }
}

/// The controllers' configuration from the flags.
pub fn controller_config(args: &ControllerArgs, mode: Mode) -> ControllerConfig {
    // Only the local provider binds the listeners itself (unprivileged in the sandbox); a cloud's
    // listeners are the usual ports whatever runs the controller.
    let (http, https) =
        if args.provider == ProviderKind::Local { mode.ingress_ports() } else { Mode::Cluster.ingress_ports() };
    let desired = providers::desired_config(args.provider);
    let ingress = args.controllers.contains(&ControllerKind::Ingress).then(|| IngressConfig {
        http_port: args.ingress_http_port.unwrap_or(http),
        https_port: args.ingress_https_port.unwrap_or(https),
        desired: desired.clone(),
    });
    ControllerConfig {
        cluster_name: args.cluster_name.clone(),
        claim: crate::claim::ClaimConfig {
            class: args.load_balancer_class.clone(),
            manage_unclassed: args.manage_unclassed,
            ingress_controller: args.ingress_controller_name.clone(),
        },
        namespace: args.namespace.clone(),
        services: args.controllers.contains(&ControllerKind::Service),
        concurrency: args.concurrency,
        resync_period: args.resync_period,
        reconcile_timeout: args.reconcile_timeout,
        desired,
        ingress,
        instance: std::env::var("POD_NAME").or_else(|_| std::env::var("HOSTNAME")).unwrap_or_else(|_| "cloudlb".into()),
        gc: args.gc_interval.map(|every| (every, crate::gc::config(args, false))),
        health_recheck: args.target_health_recheck,
    }
}

fn leader_config(args: &ControllerArgs) -> LeaderConfig {
    const IN_CLUSTER_NAMESPACE: &str = "/var/run/secrets/kubernetes.io/serviceaccount/namespace";
    let namespace = args.leader_election_namespace.clone().unwrap_or_else(|| {
        std::fs::read_to_string(IN_CLUSTER_NAMESPACE)
            .map(|s| s.trim().to_string())
            .ok()
            .filter(|s| !s.is_empty())
            .unwrap_or_else(|| "default".into())
    });
    let host = std::env::var("POD_NAME").or_else(|_| std::env::var("HOSTNAME")).unwrap_or_else(|_| "cloudlb".into());
    LeaderConfig {
        namespace,
        name: args.leader_election_id.clone(),
        // Unique per process, so a restarted pod with the same name does not inherit the lease
        // of its predecessor without waiting for it to expire.
        identity: format!("{host}_{}", crate::leader::random_suffix()),
        lease_duration: Duration::from_secs(15),
        renew_deadline: Duration::from_secs(10),
        retry_period: Duration::from_secs(2),
    }
}

/// Resolves on Ctrl-C or SIGTERM.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {}
        _ = term => {}
    }
    info!("shutting down");
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};

    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    use super::*;

    /// An apiserver that answers `GET /version` with 429 (`Retry-After: 0`) `throttle` times,
    /// then with its version. Returns its URL and the number of requests it answered.
    async fn shedding_apiserver(throttle: usize) -> (String, Arc<AtomicUsize>) {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let url = format!("http://{}", listener.local_addr().expect("addr"));
        let served = Arc::new(AtomicUsize::new(0));
        let count = served.clone();
        tokio::spawn(async move {
            while let Ok((mut conn, _)) = listener.accept().await {
                let mut head = Vec::new();
                let mut buf = [0u8; 1024];
                while !head.windows(4).any(|w| w == b"\r\n\r\n") {
                    match conn.read(&mut buf).await {
                        Ok(0) | Err(_) => break,
                        Ok(n) => head.extend_from_slice(&buf[..n]),
                    }
                }
                let (status, body) = if count.fetch_add(1, Ordering::SeqCst) < throttle {
                    (
                        "429 Too Many Requests\r\nRetry-After: 0",
                        r#"{"kind":"Status","apiVersion":"v1","status":"Failure","reason":"TooManyRequests","code":429}"#,
                    )
                } else {
                    (
                        "200 OK",
                        r#"{"major":"1","minor":"33","gitVersion":"v1.33.0","gitCommit":"0","gitTreeState":"clean",
                            "buildDate":"2025-01-01T00:00:00Z","goVersion":"go1.24","compiler":"gc","platform":"linux/amd64"}"#,
                    )
                };
                let response = format!(
                    "HTTP/1.1 {status}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                    body.len()
                );
                let _ = conn.write_all(response.as_bytes()).await;
                let _ = conn.shutdown().await;
            }
        });
        (url, served)
    }

    /// Every 429 is counted, the ones the client retries by itself included, and the request
    /// still succeeds (the retry layer moved above the counting layer still retries).
    #[tokio::test]
    async fn the_apiservers_429s_are_counted_and_retried() {
        let (url, served) = shedding_apiserver(2).await;
        let dir = tempfile::tempdir().expect("tempdir");
        let kubeconfig = dir.path().join("kubeconfig");
        let text = format!(
            "apiVersion: v1\nkind: Config\ncurrent-context: t\nclusters: [{{name: t, cluster: {{server: \"{url}\"}}}}]\n\
             users: [{{name: t, user: {{}}}}]\ncontexts: [{{name: t, context: {{cluster: t, user: t}}}}]\n"
        );
        std::fs::write(&kubeconfig, text).expect("write kubeconfig");
        let metrics = Metrics::default();
        let client = client(Some(&kubeconfig), Some((1000.0, 10)), &metrics).await.expect("client");
        let version = client.apiserver_version().await.expect("answered after two 429s");
        assert_eq!(version.minor, "33");
        assert_eq!(served.load(Ordering::SeqCst), 3, "two 429s retried, then the answer");
        assert_eq!(metrics.kube_api.throttled.get(), 2, "each 429 counted");
    }
}
