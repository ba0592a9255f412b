//! The crate's one error type; each variant names the call that failed.

use cloudlb_provider::ProviderError;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("adding finalizer: {0}")]
    AddFinalizer(#[source] kube::Error),
    #[error("removing finalizer: {0}")]
    RemoveFinalizer(#[source] kube::Error),
    #[error("patching annotations: {0}")]
    PatchAnnotations(#[source] kube::Error),
    #[error("patching status: {0}")]
    PatchStatus(#[source] kube::Error),
    #[error("ensuring load balancer: {0}")]
    Ensure(#[source] ProviderError),
    #[error("deleting load balancer: {0}")]
    Delete(#[source] ProviderError),
    #[error("reading load balancer: {0}")]
    Get(#[source] ProviderError),
    #[error("creating provider {provider}: {source}")]
    CreateProvider {
        provider: &'static str,
        #[source]
        source: ProviderError,
    },
    #[error("loading kubeconfig {path}: {source}")]
    Kubeconfig {
        path: String,
        #[source]
        source: kube::config::KubeconfigError,
    },
    #[error("finding cluster credentials (no --kubeconfig, not in a cluster, no ~/.kube/config): {0}")]
    InferConfig(#[source] kube::config::InferConfigError),
    #[error("building Kubernetes client: {0}")]
    Client(#[source] kube::Error),
    #[error("reaching the Kubernetes API (check --kubeconfig and that the API server is up): {0}")]
    ApiUnreachable(#[source] kube::Error),
    #[error("lost leadership (the Lease could not be renewed); exiting so a standby takes over")]
    LeadershipLost,
    #[error("node watch ended before the first list completed")]
    NodeWatchEnded,
    #[error("the {0} watch ended before the first list completed")]
    CacheEnded(&'static str),
    #[error(
        "the first list of {what} did not complete within {after:?}: check that the API serves them and that \
         the controller may list and watch them (RBAC); --controllers service runs without Ingresses"
    )]
    CacheSync { what: &'static str, after: std::time::Duration },
    #[error("binding {what} on {addr}: {source}")]
    Bind {
        what: &'static str,
        addr: std::net::SocketAddr,
        #[source]
        source: std::io::Error,
    },
    #[error("sandbox API: {0}")]
    Sandbox(#[source] Box<dyn std::error::Error + Send + Sync>),
    #[error("sandbox demo: {0}")]
    Demo(#[source] kube::Error),
    #[error("writing {path}: {source}")]
    Write {
        path: String,
        #[source]
        source: std::io::Error,
    },
}

impl Error {
    /// The provider's error, if this is one (drives retry policy and condition reasons).
    pub fn provider_error(&self) -> Option<&ProviderError> {
        match self {
            Error::Ensure(e) | Error::Delete(e) | Error::Get(e) => Some(e),
            _ => None,
        }
    }

    /// Label for metrics (never formatted from the error's text).
    pub fn metric_label(&self) -> &'static str {
        match self {
            Error::AddFinalizer(_) | Error::RemoveFinalizer(_) => "finalizer",
            Error::PatchAnnotations(_) | Error::PatchStatus(_) => "kube_write",
            Error::Ensure(_) | Error::Delete(_) | Error::Get(_) => "provider",
            _ => "startup",
        }
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;
