//! Planning (`cloudlb plan`): an `ensure` run in a mode where mutating cloud calls are recorded
//! instead of sent, so "what would change" is computed by the very code that would change it.
//!
//! Every mutation of a provider passes one place that asks [`DryRun::record`] and skips the call
//! (gcp: `Api::operate`; aws: `Api::mutate`), answering what a create would have made with a
//! placeholder; later steps read what exists (a placeholder reads as "nothing there yet") and
//! plan their own changes. Where a step still needs a skipped change's result, the pass ends
//! with an error, and the plan is what was recorded until then ([`Plan::complete`] false).

use std::future::Future;
use std::sync::Mutex;

use serde::Serialize;

use crate::error::{ErrorClass, ProviderError, Result};

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ChangeAction {
    Create,
    Update,
    Delete,
}

impl ChangeAction {
    pub fn as_str(self) -> &'static str {
        match self {
            ChangeAction::Create => "create",
            ChangeAction::Update => "update",
            ChangeAction::Delete => "delete",
        }
    }
}

/// One change an ensure would make: the action and the cloud call (`elbv2:CreateTargetGroup`,
/// `compute.forwardingRules.delete`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct PlannedChange {
    pub action: ChangeAction,
    pub call: String,
}

/// What an ensure would change.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Plan {
    pub changes: Vec<PlannedChange>,
    /// Every change is listed; `false`: the plan ends at a change whose result the next steps
    /// need (more may follow from it).
    pub complete: bool,
}

/// Whether a call changes something, and how: AWS `service:Action` and Compute
/// `compute.<collection>.<method>` names. `None` for reads.
pub fn action_of(call: &str) -> Option<ChangeAction> {
    if let Some((_, action)) = call.split_once(':') {
        const READS: &[&str] = &["Describe", "Get", "List"];
        if READS.iter().any(|r| action.starts_with(r)) {
            return None;
        }
        const CREATES: &[&str] = &["Create", "Import", "Request", "Allocate"];
        const DELETES: &[&str] = &["Delete", "Deregister", "Remove", "Revoke", "Release"];
        return Some(if CREATES.iter().any(|c| action.starts_with(c)) {
            ChangeAction::Create
        } else if DELETES.iter().any(|d| action.starts_with(d)) {
            ChangeAction::Delete
        } else {
            ChangeAction::Update
        });
    }
    match call.rsplit_once('.').map(|(_, m)| m) {
        Some("get" | "list" | "listInstances" | "getHealth" | "wait") | None => None,
        Some("insert") => Some(ChangeAction::Create),
        Some("delete") => Some(ChangeAction::Delete),
        Some(_) => Some(ChangeAction::Update),
    }
}

/// The recorder one planned ensure runs with.
#[derive(Debug, Default)]
pub struct DryRun {
    changes: Mutex<Vec<PlannedChange>>,
}

impl DryRun {
    /// Record `call` (skipped by the caller).
    pub fn record(&self, call: &str, action: ChangeAction) {
        if let Ok(mut c) = self.changes.lock() {
            c.push(PlannedChange { action, call: call.to_string() });
        }
    }

    fn changes(&self) -> Vec<PlannedChange> {
        self.changes.lock().map(|c| c.clone()).unwrap_or_default()
    }

    /// Run `ensure` in this mode to its end.
    pub async fn run<T>(&self, ensure: impl Future<Output = Result<T>>) -> Result<Plan> {
        match ensure.await {
            Ok(_) => Ok(Plan { changes: self.changes(), complete: true }),
            // A step needed what a skipped change would have made.
            Err(e) if !self.changes().is_empty() && e.class() != ErrorClass::Permanent => {
                Ok(Plan { changes: self.changes(), complete: false })
            }
            Err(e) => Err(e),
        }
    }
}

/// The error of a provider that cannot plan.
pub fn unsupported(provider: &str) -> ProviderError {
    ProviderError::Invalid {
        call: "plan",
        message: format!(
            "the {provider} provider keeps its load balancers in this process: there is no cloud to plan against"
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn calls_read_as_actions() {
        assert_eq!(action_of("elbv2:DescribeLoadBalancers"), None);
        assert_eq!(action_of("tagging:GetResources"), None);
        assert_eq!(action_of("elbv2:CreateTargetGroup"), Some(ChangeAction::Create));
        assert_eq!(action_of("acm:ImportCertificate"), Some(ChangeAction::Create));
        assert_eq!(action_of("elbv2:DeregisterTargets"), Some(ChangeAction::Delete));
        assert_eq!(action_of("ec2:AuthorizeSecurityGroupIngress"), Some(ChangeAction::Update));
        assert_eq!(action_of("compute.forwardingRules.get"), None);
        assert_eq!(action_of("compute.instanceGroups.listInstances"), None);
        assert_eq!(action_of("compute.urlMaps.insert"), Some(ChangeAction::Create));
        assert_eq!(action_of("compute.firewalls.update"), Some(ChangeAction::Update));
        assert_eq!(action_of("compute.addresses.delete"), Some(ChangeAction::Delete));
    }

    #[tokio::test]
    async fn a_pass_that_needs_a_skipped_result_ends_the_plan_and_a_finished_one_completes_it() {
        let d = DryRun::default();
        let plan = d
            .run(async {
                d.record("compute.forwardingRules.insert", ChangeAction::Create);
                Err::<(), _>(ProviderError::Retryable { call: "x", message: "not visible yet".into() })
            })
            .await
            .expect("plan");
        assert!(!plan.complete);
        assert_eq!(plan.changes.len(), 1);
        let d = DryRun::default();
        let refused = d.run(async { Err::<(), _>(ProviderError::Invalid { call: "x", message: "bad".into() }) }).await;
        assert!(refused.is_err(), "a refused spec is an error, not an empty plan");
        let d = DryRun::default();
        let plan = d.run(async { Ok(()) }).await.expect("plan");
        assert!(plan.complete && plan.changes.is_empty());
    }
}
