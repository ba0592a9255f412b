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
/// The annotations cloudlb writes itself (bookkeeping, never user settings).
pub const OURS: &[&str] = &[ANN_RECORD, ANN_SPEC_HASH, ANN_CLAIMED_CLASS];
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
/// The AWS Load Balancer Controller's name for the same (Services), read when ours is absent
/// (for every provider; gcp refuses both, see `providers.rs`).
pub const ANN_TARGET_NODE_LABELS_AWS: &str = "service.beta.kubernetes.io/aws-load-balancer-target-node-labels";

/// Annotation `kubectl apply` keeps a copy of the whole object in; never read, never cached.
pub const LAST_APPLIED: &str = "kubectl.kubernetes.io/last-applied-configuration";

/// Node label that excludes a node from load balancers (bool-parsed; unparsable excludes).
pub const LABEL_EXCLUDE_LB: &str = "node.kubernetes.io/exclude-from-external-load-balancers";
/// Taint of a node the cluster autoscaler is about to delete.
pub const TAINT_TO_BE_DELETED: &str = "ToBeDeletedByClusterAutoscaler";
/// Taints Karpenter puts on a node it is draining to remove: `karpenter.sh/disrupted` (v1) and
/// `karpenter.sh/disruption` (value `disrupting`, before v1).
pub const TAINTS_KARPENTER_DISRUPTING: &[&str] = &["karpenter.sh/disrupted", "karpenter.sh/disruption"];

/// Our condition on `Service.status.conditions`.
pub const CONDITION_READY: &str = "cloudlb.io/LoadBalancerReady";
/// Whether the targets pass the cloud's health checks (providers that can tell: aws).
pub const CONDITION_TARGETS_HEALTHY: &str = "cloudlb.io/TargetsHealthy";

/// Condition reasons.
pub mod reason {
    pub const READY: &str = "Ready";
    pub const PROVISIONING: &str = "Provisioning";
    pub const INVALID_SPEC: &str = "InvalidSpec";
    pub const NO_ELIGIBLE_NODES: &str = "NoEligibleNodes";
    pub const PROVIDER_ERROR: &str = "ProviderError";
    /// The cloud gave up making the load balancer (aws state `failed`).
    pub const LOAD_BALANCER_FAILED: &str = "LoadBalancerFailed";
}

/// Event reasons (the ones users know from the Kubernetes service controller).
pub mod event {
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
    /// The targets' health verdict changed (see `controller::observe`).
    pub const TARGETS_HEALTHY: &str = "TargetsHealthy";
    pub const TARGETS_UNHEALTHY: &str = "TargetsUnhealthy";
    /// The cloud finished provisioning the load balancer.
    pub const PROVISIONED: &str = "LoadBalancerProvisioned";
    /// The cloud gave up making the load balancer.
    pub const FAILED: &str = "LoadBalancerFailed";
}

/// Default `spec.controller` of the IngressClasses cloudlb claims.
pub const DEFAULT_INGRESS_CONTROLLER: &str = "cloudlb.io/ingress-controller";
/// Legacy Ingress annotation naming its IngressClass (before `spec.ingressClassName`).
pub const ANN_INGRESS_CLASS: &str = "kubernetes.io/ingress.class";
/// IngressClass annotation: `"true"` makes it the class of Ingresses that name none.
pub const ANN_DEFAULT_INGRESS_CLASS: &str = "ingressclass.kubernetes.io/is-default-class";

/// Ingress annotations (cloudlb's own; the provider's live under its prefix).
pub mod ingress {
    /// CIDRs allowed to connect (comma-separated), default everyone.
    pub const SOURCE_RANGES: &str = "cloudlb.io/source-ranges";
    /// `"true"`: answer plain HTTP with a redirect to HTTPS (needs a TLS section).
    pub const SSL_REDIRECT: &str = "cloudlb.io/ssl-redirect";
    /// `"false"`: no plain-HTTP listener (then a TLS section is required).
    pub const ALLOW_HTTP: &str = "cloudlb.io/allow-http";
    /// GKE's name for the same, read when ours is absent.
    pub const ALLOW_HTTP_GCE: &str = "kubernetes.io/ingress.allow-http";
    /// The address to use (like a Service's `loadBalancerIP`).
    pub const LOAD_BALANCER_IP: &str = "cloudlb.io/load-balancer-ip";
    /// Health check of the backends: an HTTP path (else a TCP connect to the node port).
    pub const HEALTHCHECK_PATH: &str = "cloudlb.io/healthcheck-path";
    /// Timeouts towards the nodes and for idle clients, in seconds.
    pub const CONNECT_TIMEOUT: &str = "cloudlb.io/connect-timeout-seconds";
    pub const REQUEST_TIMEOUT: &str = "cloudlb.io/request-timeout-seconds";
    pub const IDLE_TIMEOUT: &str = "cloudlb.io/idle-timeout-seconds";
    /// Ingress groups: Ingresses with the same group name share one load balancer; the order
    /// (-1000..1000, default 0) puts a member's paths before those of higher orders.
    pub const GROUP_NAME: &str = "cloudlb.io/group.name";
    pub const GROUP_ORDER: &str = "cloudlb.io/group.order";
    /// The AWS Load Balancer Controller's names for the same.
    pub const ALB_GROUP_NAME: &str = "alb.ingress.kubernetes.io/group.name";
    pub const ALB_GROUP_ORDER: &str = "alb.ingress.kubernetes.io/group.order";
}
