//! Every annotation key, label, finalizer, condition type and event reason cloudlb reads or
//! writes, in one place, so that a key is never spelled twice.

/// Finalizer that keeps a Service until its load balancer is deleted.
pub const FINALIZER: &str = "cloudlb.io/load-balancer-cleanup";

/// Default `spec.loadBalancerClass` cloudlb claims.
pub const DEFAULT_CLASS: &str = "cloudlb.io/lb";

/// Annotation: JSON record of what the provider made (ids), used for deletion.
pub const ANN_RECORD: &str = "cloudlb.io/load-balancer-record";
/// Annotation: `<frontend-hash>.<targets-hash>` of the last spec the provider accepted.
pub const ANN_SPEC_HASH: &str = "cloudlb.io/spec-hash";
/// Annotation: the `spec.loadBalancerClass` (`""` for none) the Service was claimed with; a
/// Service whose class no longer matches it is cleaned up, one that matches but is no longer
/// claimed (our flags changed) is left alone.
pub const ANN_CLAIMED_CLASS: &str = "cloudlb.io/claimed-class";
/// Annotation: `"true"` asks for an internal load balancer.
pub const ANN_INTERNAL: &str = "cloudlb.io/internal";
/// Annotation: source ranges when `spec.loadBalancerSourceRanges` is empty (the Kubernetes one).
pub const ANN_SOURCE_RANGES: &str = "service.beta.kubernetes.io/load-balancer-source-ranges";
/// Annotations tuning the health check.
pub const ANN_HC_INTERVAL: &str = "cloudlb.io/healthcheck-interval-seconds";
pub const ANN_HC_TIMEOUT: &str = "cloudlb.io/healthcheck-timeout-seconds";
pub const ANN_HC_HEALTHY: &str = "cloudlb.io/healthcheck-healthy-threshold";
pub const ANN_HC_UNHEALTHY: &str = "cloudlb.io/healthcheck-unhealthy-threshold";
/// Annotation: `k=v,k2=v2`; only nodes with all these labels are targets.
pub const ANN_TARGET_NODE_LABELS: &str = "cloudlb.io/target-node-labels";

/// Node label that excludes a node from load balancers (bool-parsed; unparsable excludes).
pub const LABEL_EXCLUDE_LB: &str = "node.kubernetes.io/exclude-from-external-load-balancers";
/// Taint of a node the cluster autoscaler is about to delete.
pub const TAINT_TO_BE_DELETED: &str = "ToBeDeletedByClusterAutoscaler";

/// Our condition on `Service.status.conditions`.
pub const CONDITION_READY: &str = "cloudlb.io/LoadBalancerReady";

/// Condition reasons.
pub mod reason {
    pub const READY: &str = "Ready";
    pub const PROVISIONING: &str = "Provisioning";
    pub const INVALID_SPEC: &str = "InvalidSpec";
    pub const NO_ELIGIBLE_NODES: &str = "NoEligibleNodes";
    pub const PROVIDER_ERROR: &str = "ProviderError";
}

/// Event reasons (the ones users know from the Kubernetes service controller).
pub mod event {
    pub const ENSURING: &str = "EnsuringLoadBalancer";
    pub const ENSURED: &str = "EnsuredLoadBalancer";
    pub const SYNC_FAILED: &str = "SyncLoadBalancerFailed";
    pub const UPDATED: &str = "UpdatedLoadBalancer";
    pub const DELETING: &str = "DeletingLoadBalancer";
    pub const DELETED: &str = "DeletedLoadBalancer";
    pub const DELETE_FAILED: &str = "DeleteLoadBalancerFailed";
    pub const UNAVAILABLE: &str = "UnAvailableLoadBalancer";
    pub const INVALID_SPEC: &str = "InvalidLoadBalancerSpec";
    pub const DRIFT: &str = "LoadBalancerDrifted";
    /// The provider built the load balancer without something (e.g. a node it cannot register).
    pub const WARNING: &str = "LoadBalancerWarning";
}
