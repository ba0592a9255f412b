//! Starting the controller: client, metrics server, provider, then the reconcile loop.

use std::future::Future;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;

use kube::Client;
use kube::config::{Config, KubeConfigOptions, Kubeconfig};
use tracing::info;

use crate::args::{ControllerArgs, RunArgs};
use crate::controller::{self, ControllerConfig};
use crate::error::{Error, Result};
use crate::metrics::{self, Metrics};
use crate::providers;

/// `cloudlb run`.
pub async fn run(args: RunArgs) -> Result<()> {
    let client = client(args.kubeconfig.as_deref()).await?;
    let default_metrics: SocketAddr = ([0, 0, 0, 0], 8080).into();
    start(client, &args.controller, default_metrics, shutdown_signal()).await
}

/// A client from `--kubeconfig`, else in-cluster config, else `~/.kube/config`.
pub async fn client(kubeconfig: Option<&Path>) -> Result<Client> {
    let config = match kubeconfig {
        Some(path) => {
            let err = |source| Error::Kubeconfig { path: path.display().to_string(), source };
            let kc = Kubeconfig::read_from(path).map_err(err)?;
            Config::from_custom_kubeconfig(kc, &KubeConfigOptions::default()).await.map_err(err)?
        }
        None => Config::infer().await.map_err(Error::InferConfig)?,
    };
    Client::try_from(config).map_err(Error::Client)
}

/// Serves metrics, builds the provider and runs the controller until `shutdown`.
pub async fn start(
    client: Client,
    args: &ControllerArgs,
    default_metrics: SocketAddr,
    shutdown: impl Future<Output = ()> + Send + Sync + 'static,
) -> Result<()> {
    let metrics = Arc::new(Metrics::default());
    let addr = metrics::serve(args.metrics_addr.unwrap_or(default_metrics), metrics.clone()).await?;
    info!(addr = %addr, "serving metrics and health");
    let provider = providers::build(args)?;
    let config = ControllerConfig {
        cluster_name: args.cluster_name.clone(),
        claim: crate::claim::ClaimConfig {
            class: args.load_balancer_class.clone(),
            manage_unclassed: args.manage_unclassed,
        },
        namespace: args.namespace.clone(),
        concurrency: args.concurrency,
        resync_period: args.resync_period,
        desired: providers::desired_config(args.provider),
        instance: std::env::var("POD_NAME")
            .or_else(|_| std::env::var("HOSTNAME"))
            .unwrap_or_else(|_| "cloudlb".into()),
    };
    controller::run(client, provider, config, metrics, shutdown).await
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
