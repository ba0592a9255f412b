//! The one error type every provider returns.
//!
//! The controller's retry policy depends only on [`ProviderError::class`]: a provider never
//! decides how long to back off, it only says what kind of failure happened.

use std::time::Duration;

/// How the controller should react to a failed call.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ErrorClass {
    /// The load balancer is being created or changed; ask again after a fixed delay. Not a failure.
    Provisioning,
    /// The cloud asked us to slow down.
    Throttled,
    /// A transient failure (network, 5xx): retry with exponential backoff.
    Retryable,
    /// Retrying will not help until something changes (bad spec, conflict, quota, permission).
    Permanent,
}

#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ProviderError {
    #[error("{what} is still being provisioned")]
    Provisioning { what: String, retry_after: Duration },

    #[error("{call} was throttled: {message}")]
    Throttled { call: &'static str, message: String, retry_after: Option<Duration> },

    #[error("{call} failed: {message}")]
    Retryable { call: &'static str, message: String },

    /// A resource with our name exists but is not ours (no ownership tags): never adopted.
    #[error("{call}: {resource} exists but is not owned by this load balancer ({message})")]
    Conflict { call: &'static str, resource: String, message: String },

    /// The spec asks for something this provider cannot do, or the cloud refused it for good.
    #[error("{call}: {message}")]
    Invalid { call: &'static str, message: String },

    #[error("{call}: quota exhausted: {message}")]
    Quota { call: &'static str, message: String },

    #[error("{call}: permission denied: {message}")]
    Permission { call: &'static str, message: String },

    /// The cloud gave up making the load balancer (aws state `failed`); `message` says what the
    /// user can do.
    #[error("{call}: {what} failed: {message}")]
    Failed { call: &'static str, what: String, message: String },
}

/// `err` and its sources, joined with ": " (a source whose text is already included is left
/// out): SDK errors hide the useful part (a connection refused, a TLS failure) in their sources.
pub fn chain(err: &dyn std::error::Error) -> String {
    let mut out = err.to_string();
    let mut src = err.source();
    while let Some(s) = src {
        let s_text = s.to_string();
        if !out.contains(&s_text) {
            out.push_str(": ");
            out.push_str(&s_text);
        }
        src = s.source();
    }
    out
}

impl ProviderError {
    pub fn class(&self) -> ErrorClass {
        match self {
            ProviderError::Provisioning { .. } => ErrorClass::Provisioning,
            ProviderError::Throttled { .. } => ErrorClass::Throttled,
            ProviderError::Retryable { .. } => ErrorClass::Retryable,
            ProviderError::Conflict { .. }
            | ProviderError::Invalid { .. }
            | ProviderError::Quota { .. }
            | ProviderError::Permission { .. }
            | ProviderError::Failed { .. } => ErrorClass::Permanent,
        }
    }

    /// The delay the provider asked for, if any (Provisioning, Throttled with Retry-After).
    pub fn retry_after(&self) -> Option<Duration> {
        match self {
            ProviderError::Provisioning { retry_after, .. } => Some(*retry_after),
            ProviderError::Throttled { retry_after, .. } => *retry_after,
            _ => None,
        }
    }

    /// A short PascalCase reason for conditions and metrics labels.
    pub fn reason(&self) -> &'static str {
        match self {
            ProviderError::Provisioning { .. } => "Provisioning",
            ProviderError::Throttled { .. } => "Throttled",
            ProviderError::Retryable { .. } => "ProviderError",
            ProviderError::Conflict { .. } => "ResourceConflict",
            ProviderError::Invalid { .. } => "InvalidSpec",
            ProviderError::Quota { .. } => "QuotaExceeded",
            ProviderError::Permission { .. } => "PermissionDenied",
            ProviderError::Failed { .. } => "LoadBalancerFailed",
        }
    }
}

pub type Result<T, E = ProviderError> = std::result::Result<T, E>;
