//! Compute errors -> [`ProviderError`], by HTTP status *and* reason.
//!
//! Compute answers in its legacy error envelope (`{"error":{"code":404,"errors":[{"reason":
//! "notFound",…}]}}`): the client library exposes the status as `http_status_code()` and the
//! reason as an `ErrorInfo` detail (its gRPC-style `code` is always `Unknown`). A failed
//! *operation* is different again: the request succeeded, the operation is `DONE`, and the failure
//! is in its `error.errors[].code` (`RESOURCE_IN_USE_BY_ANOTHER_RESOURCE`) plus
//! `httpErrorStatusCode`. Both become one [`CallError`] naming the failing call, so the rest of
//! the crate asks one question (`is_not_found()`, `is_in_use()`, …) whatever the delivery, and the
//! controller's retry policy depends only on the class chosen here.

use cloudlb_provider::error::chain;
use std::fmt;

use cloudlb_provider::ProviderError;
use google_cloud_compute_v1::errors::OperationError;
use google_cloud_gax::error::Error as GaxError;
use google_cloud_gax::error::rpc::StatusDetails;

/// How the call failed, before any HTTP status was known.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// Compute answered with an error (synchronously or inside a `DONE` operation).
    Api,
    /// The call, or the operation, did not finish within its deadline.
    Timeout,
    /// The endpoint could not be reached, or the answer could not be read.
    Transport,
    /// No credentials, or they were refused before the request was sent.
    Credentials,
}

/// One failed Compute call.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CallError {
    /// The method, `compute.<collection>.<method>` (`compute.forwardingRules.insert`).
    pub call: &'static str,
    pub kind: Kind,
    /// HTTP status (for a failed operation: its `httpErrorStatusCode`).
    pub status: Option<u16>,
    /// The reason, normalized to lowercase letters: `notFound` and `NOT_FOUND` are both `notfound`.
    pub reason: String,
    pub message: String,
    /// Whether the failure was reported inside the operation rather than by the request.
    pub in_operation: bool,
}

impl fmt::Display for CallError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: ", self.call)?;
        if let Some(s) = self.status {
            write!(f, "HTTP {s} ")?;
        }
        if !self.reason.is_empty() {
            write!(f, "({}) ", self.reason)?;
        }
        if self.in_operation {
            f.write_str("in the operation: ")?;
        }
        f.write_str(&self.message)
    }
}

impl std::error::Error for CallError {}

fn normalize(reason: &str) -> String {
    reason.chars().filter(|c| c.is_ascii_alphanumeric()).map(|c| c.to_ascii_lowercase()).collect()
}

impl CallError {
    pub fn new(call: &'static str, kind: Kind, message: impl Into<String>) -> Self {
        Self { call, kind, status: None, reason: String::new(), message: message.into(), in_operation: false }
    }

    pub fn api(call: &'static str, status: u16, reason: &str, message: impl Into<String>) -> Self {
        Self {
            call,
            kind: Kind::Api,
            status: Some(status),
            reason: normalize(reason),
            message: message.into(),
            in_operation: false,
        }
    }

    /// A synchronous error of the client library.
    pub fn from_gax(call: &'static str, e: &GaxError) -> Self {
        let reason = e
            .status()
            .and_then(|s| {
                s.details.iter().find_map(|d| match d {
                    StatusDetails::ErrorInfo(i) => Some(i.reason.clone()),
                    _ => None,
                })
            })
            .unwrap_or_default();
        let message = e.status().map(|s| s.message.clone()).filter(|m| !m.is_empty()).unwrap_or_else(|| chain(e));
        let kind = if e.http_status_code().is_some() || e.status().is_some() {
            Kind::Api
        } else if e.is_timeout() {
            Kind::Timeout
        } else if e.is_authentication() {
            Kind::Credentials
        } else {
            Kind::Transport
        };
        Self { call, kind, status: e.http_status_code(), reason: normalize(&reason), message, in_operation: false }
    }

    /// The error of an operation that finished `DONE` with `error`.
    pub fn from_operation(call: &'static str, e: &OperationError) -> Self {
        match e {
            OperationError::Generic(g) => {
                let first = g.details.as_ref().and_then(|d| d.errors.first());
                let reason = first.and_then(|e| e.code.clone()).unwrap_or_default();
                let message = first
                    .and_then(|e| e.message.clone())
                    .or_else(|| g.message.clone())
                    .unwrap_or_else(|| "the operation failed".into());
                Self {
                    call,
                    kind: Kind::Api,
                    status: g.status_code.and_then(|c| u16::try_from(c).ok()),
                    reason: normalize(&reason),
                    message,
                    in_operation: true,
                }
            }
            other => Self {
                call,
                kind: Kind::Api,
                status: None,
                reason: String::new(),
                message: format!("{other:?}"),
                in_operation: true,
            },
        }
    }

    pub fn is_not_found(&self) -> bool {
        self.status == Some(404) || self.reason == "notfound"
    }

    pub fn is_already_exists(&self) -> bool {
        self.status == Some(409) && (self.reason.is_empty() || self.reason == "alreadyexists")
    }

    /// 400 `resourceInUseByAnotherResource` ("… is already being used by …").
    pub fn is_in_use(&self) -> bool {
        self.reason == "resourceinusebyanotherresource" || self.message.contains("being used by")
    }

    /// 412 `conditionNotMet`: a stale fingerprint.
    pub fn is_stale_fingerprint(&self) -> bool {
        self.status == Some(412) || self.reason == "conditionnotmet"
    }

    pub fn is_throttled(&self) -> bool {
        self.status == Some(429)
            || matches!(self.reason.as_str(), "ratelimitexceeded" | "userratelimitexceeded" | "ratelimitexceedederror")
    }

    fn is_quota(&self) -> bool {
        self.reason.contains("quotaexceeded")
    }
}

/// The IAM permission a call needs (`compute.forwardingRules.insert` -> `compute.forwardingRules.create`).
pub fn permission(call: &str) -> String {
    let Some((collection, method)) = call.rsplit_once('.') else { return call.to_string() };
    let verb = match method {
        "insert" => "create",
        "patch" | "addInstances" | "removeInstances" | "setNamedPorts" => "update",
        "listInstances" => "list",
        other => other,
    };
    format!("{collection}.{verb}")
}

impl From<CallError> for ProviderError {
    fn from(e: CallError) -> Self {
        let call = e.call;
        let text = e.to_string();
        match e.kind {
            Kind::Timeout | Kind::Transport => return ProviderError::Retryable { call, message: text },
            Kind::Credentials => {
                return ProviderError::Permission {
                    call,
                    message: format!(
                        "{text} (no usable Google credentials: Workload Identity, GOOGLE_APPLICATION_CREDENTIALS \
                         or `gcloud auth application-default login`)"
                    ),
                };
            }
            Kind::Api => {}
        }
        if e.is_throttled() {
            return ProviderError::Throttled { call, message: text, retry_after: None };
        }
        if e.is_quota() {
            return ProviderError::Quota { call, message: text };
        }
        match e.status {
            Some(401) | Some(403) => ProviderError::Permission {
                call,
                message: format!(
                    "{text} (grant {} to cloudlb's service account; see deploy/gcp/role.yaml)",
                    permission(call)
                ),
            },
            // Races the next pass resolves: something just appeared or disappeared, a fingerprint
            // moved, a dependency is still being released or created.
            Some(404) | Some(409) | Some(412) => ProviderError::Retryable { call, message: text },
            // Also a concurrent pass of another Service adding the same node to the shared group.
            Some(400) if e.is_in_use() || e.reason == "resourcenotready" || e.reason == "memberalreadyexists" => {
                ProviderError::Retryable { call, message: text }
            }
            Some(s) if s >= 500 => ProviderError::Retryable { call, message: text },
            Some(s) if (400..500).contains(&s) => ProviderError::Invalid { call, message: text },
            _ => ProviderError::Retryable { call, message: text },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use cloudlb_provider::ErrorClass;

    #[test]
    fn classes_by_status_and_reason() {
        let c = |status, reason: &str, message: &str| {
            ProviderError::from(CallError::api("compute.firewalls.insert", status, reason, message))
        };
        assert!(matches!(c(403, "rateLimitExceeded", "Rate Limit Exceeded"), ProviderError::Throttled { .. }));
        assert!(matches!(c(429, "", "too many"), ProviderError::Throttled { .. }));
        assert!(matches!(c(403, "quotaExceeded", "Quota 'FIREWALLS' exceeded"), ProviderError::Quota { .. }));
        assert!(matches!(c(400, "QUOTA_EXCEEDED", "quota"), ProviderError::Quota { .. }));
        assert!(matches!(c(400, "resourceInUseByAnotherResource", "x"), ProviderError::Retryable { .. }));
        assert!(matches!(c(400, "", "The x is already being used by y"), ProviderError::Retryable { .. }));
        assert!(matches!(c(412, "conditionNotMet", "x"), ProviderError::Retryable { .. }));
        assert!(matches!(c(400, "memberAlreadyExists", "x"), ProviderError::Retryable { .. }));
        assert!(matches!(c(400, "resourceNotReady", "x"), ProviderError::Retryable { .. }));
        assert!(matches!(c(503, "backendError", "x"), ProviderError::Retryable { .. }));
        assert!(matches!(c(400, "invalid", "Invalid value for field"), ProviderError::Invalid { .. }));
        let e = c(403, "forbidden", "Required 'compute.firewalls.create' permission for 'projects/p'");
        assert_eq!(e.class(), ErrorClass::Permanent);
        assert!(e.to_string().contains("compute.firewalls.insert"), "{e}");
        assert!(e.to_string().contains("grant compute.firewalls.create"), "{e}");
    }

    #[test]
    fn reasons_compare_whatever_their_spelling() {
        let sync = CallError::api("c.x.delete", 400, "resourceInUseByAnotherResource", "m");
        let mut op = CallError::api("c.x.delete", 400, "RESOURCE_IN_USE_BY_ANOTHER_RESOURCE", "m");
        op.in_operation = true;
        assert!(sync.is_in_use() && op.is_in_use());
        assert!(CallError::api("c", 404, "notFound", "m").is_not_found());
        assert!(CallError::api("c", 409, "alreadyExists", "m").is_already_exists());
        assert!(CallError::api("c", 412, "CONDITION_NOT_MET", "m").is_stale_fingerprint());
        assert!(op.to_string().contains("in the operation"), "{op}");
    }

    #[test]
    fn permissions_of_calls() {
        assert_eq!(permission("compute.forwardingRules.insert"), "compute.forwardingRules.create");
        assert_eq!(permission("compute.instanceGroups.addInstances"), "compute.instanceGroups.update");
        assert_eq!(permission("compute.instanceGroups.listInstances"), "compute.instanceGroups.list");
        assert_eq!(permission("compute.regionBackendServices.update"), "compute.regionBackendServices.update");
    }
}
