#![allow(dead_code)]
use cloudlb_sandbox::{Sandbox, SandboxConfig};
use kube::config::{KubeConfigOptions, Kubeconfig};
use std::future::Future;
use std::time::Duration;

pub async fn start() -> Sandbox {
    start_with(SandboxConfig::default()).await
}

pub async fn start_with(cfg: SandboxConfig) -> Sandbox {
    Sandbox::start(cfg).await.expect("sandbox starts")
}

pub async fn client(sb: &Sandbox) -> kube::Client {
    let kc = Kubeconfig::from_yaml(&sb.kubeconfig()).expect("kubeconfig parses");
    let cfg = kube::Config::from_custom_kubeconfig(kc, &KubeConfigOptions::default()).await.expect("config");
    kube::Client::try_from(cfg).expect("client")
}

/// Every test body runs under this bound.
pub async fn bounded<F: Future<Output = T>, T>(f: F) -> T {
    tokio::time::timeout(Duration::from_secs(60), f).await.expect("test timed out")
}
