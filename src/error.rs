//! The crate's one error type; each variant names the call that failed.

use cloudlb_provider::ProviderError;

use crate::metrics::ErrorReason;

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
    #[error("the pass took longer than --reconcile-timeout ({0:?}); it was stopped and will be retried")]
    ReconcileTimeout(std::time::Duration),
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
    #[error("listing {what} (gc and plan act only on the whole picture): {source}")]
    List {
        what: &'static str,
        #[source]
        source: kube::Error,
    },
    #[error("gc: listing the cloud's load balancers of the cluster: {0}")]
    GcInventory(#[source] cloudlb_provider::ProviderError),
    #[error("gc: {0} load balancer(s) could not be deleted (see above); run again")]
    GcIncomplete(usize),
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

    /// How long the API server asked us to wait: a 429 (API Priority and Fairness rejecting
    /// the request, or an apiserver under load) carries `retryAfterSeconds`; honouring it is
    /// what keeps a burst of reconciles from hammering an apiserver that is already shedding.
    pub fn api_retry_after(&self) -> Option<std::time::Duration> {
        let (Error::AddFinalizer(e) | Error::RemoveFinalizer(e) | Error::PatchAnnotations(e) | Error::PatchStatus(e)) =
            self
        else {
            return None;
        };
        match e {
            kube::Error::Api(s) if s.code == 429 => {
                let secs = s.details.as_ref().map(|d| d.retry_after_seconds).filter(|s| *s > 0).unwrap_or(1);
                Some(std::time::Duration::from_secs(u64::from(secs)))
            }
            _ => None,
        }
    }

    /// A status write refused because the object changed since it was read (the
    /// `resourceVersion` precondition): not a failure, the next pass reads the new object.
    pub fn is_write_conflict(&self) -> bool {
        matches!(self, Error::PatchStatus(kube::Error::Api(s)) if s.code == 409)
    }

    /// Why a pass failed, for `cloudlb_reconcile_errors_total` (never formatted from the error's
    /// text).
    pub fn reason(&self) -> ErrorReason {
        match self {
            Error::Ensure(e) | Error::Delete(e) | Error::Get(e) => provider_reason(e),
            Error::AddFinalizer(e) | Error::RemoveFinalizer(e) | Error::PatchAnnotations(e) | Error::PatchStatus(e) => {
                match e {
                    kube::Error::Api(s) if s.code == 429 => ErrorReason::KubeThrottled,
                    kube::Error::Api(s) if s.code == 409 => ErrorReason::KubeConflict,
                    _ => ErrorReason::KubeApi,
                }
            }
            Error::ReconcileTimeout(_) => ErrorReason::Timeout,
            _ => ErrorReason::Other,
        }
    }
}

/// The reason of a failed provider call, by the kind of failure the provider reported.
pub fn provider_reason(e: &ProviderError) -> ErrorReason {
    match e {
        ProviderError::Invalid { .. } => ErrorReason::Invalid,
        ProviderError::Conflict { .. } => ErrorReason::Conflict,
        ProviderError::Quota { .. } => ErrorReason::Quota,
        ProviderError::Permission { .. } => ErrorReason::Permission,
        ProviderError::Throttled { .. } => ErrorReason::Throttled,
        ProviderError::Retryable { .. } => ErrorReason::Transient,
        ProviderError::Provisioning { .. } => ErrorReason::Provisioning,
        ProviderError::Failed { .. } => ErrorReason::Failed,
        _ => ErrorReason::Other,
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

#[cfg(test)]
mod tests {
    use super::*;

    fn api(code: u16, retry_after_seconds: u32) -> kube::Error {
        let mut s = kube::core::Status::failure("slow down", "TooManyRequests").with_code(code);
        s.details = Some(kube::core::response::StatusDetails {
            name: String::new(),
            group: String::new(),
            kind: String::new(),
            uid: String::new(),
            causes: Vec::new(),
            retry_after_seconds,
        });
        kube::Error::Api(Box::new(s))
    }

    #[test]
    fn a_429_says_how_long_to_wait() {
        let e = Error::PatchStatus(api(429, 7));
        assert_eq!(e.api_retry_after(), Some(std::time::Duration::from_secs(7)));
        assert_eq!(Error::AddFinalizer(api(429, 0)).api_retry_after(), Some(std::time::Duration::from_secs(1)));
        assert_eq!(Error::PatchStatus(api(409, 7)).api_retry_after(), None, "only 429 asks us to wait");
        assert!(Error::PatchStatus(api(409, 0)).is_write_conflict());
        assert!(!Error::PatchAnnotations(api(409, 0)).is_write_conflict());
    }

    #[test]
    fn reasons_come_from_the_class_of_error() {
        let provider = |e| Error::Ensure(e);
        let call = "elbv2:CreateLoadBalancer";
        let cases = [
            (provider(ProviderError::Invalid { call, message: "m".into() }), ErrorReason::Invalid),
            (
                Error::Delete(ProviderError::Conflict { call, resource: "r".into(), message: "m".into() }),
                ErrorReason::Conflict,
            ),
            (provider(ProviderError::Quota { call, message: "m".into() }), ErrorReason::Quota),
            (Error::Get(ProviderError::Permission { call, message: "m".into() }), ErrorReason::Permission),
            (
                provider(ProviderError::Throttled { call, message: "m".into(), retry_after: None }),
                ErrorReason::Throttled,
            ),
            (provider(ProviderError::Retryable { call, message: "m".into() }), ErrorReason::Transient),
            (
                Error::Delete(ProviderError::Provisioning { what: "lb".into(), retry_after: Default::default() }),
                ErrorReason::Provisioning,
            ),
            (Error::PatchStatus(api(429, 1)), ErrorReason::KubeThrottled),
            (Error::PatchStatus(api(409, 0)), ErrorReason::KubeConflict),
            (Error::AddFinalizer(api(500, 0)), ErrorReason::KubeApi),
            (Error::RemoveFinalizer(kube::Error::Service("connection refused".into())), ErrorReason::KubeApi),
            (Error::ReconcileTimeout(std::time::Duration::from_secs(1)), ErrorReason::Timeout),
            (Error::NodeWatchEnded, ErrorReason::Other),
        ];
        for (e, want) in cases {
            assert_eq!(e.reason(), want, "{e}");
        }
    }
}
