//! Planning (`cloudlb plan`): an `ensure` run in a mode where mutating cloud calls are recorded
//! instead of sent, so "what would change" is computed by the very code that would change it.
//!
//! A provider whose mutations all pass one place can *skip* them and go on
//! ([`DryRun::record`]): later steps read what exists and plan their own changes, until one needs
//! the result of a skipped change (an id, a resource that is not there): that ends the plan
//! ([`Plan::complete`] false). A provider without such a place *stops* at the first mutation
//! ([`DryRun::stop_at`]): the ensure is dropped there, which every provider's ensure tolerates
//! (it is cancel-safe at every await), and nothing is sent.

use std::future::Future;
use std::sync::Mutex;

use serde::Serialize;
use tokio::sync::Notify;

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
    stopped: Notify,
}

impl DryRun {
    /// Record `call` (skipped by the caller).
    pub fn record(&self, call: &str, action: ChangeAction) {
        if let Ok(mut c) = self.changes.lock() {
            c.push(PlannedChange { action, call: call.to_string() });
        }
    }

    /// Record `call` and never return: the ensure stops before sending it.
    pub async fn stop_at(&self, call: &str, action: ChangeAction) {
        self.record(call, action);
        self.stopped.notify_one();
        std::future::pending::<()>().await;
    }

    fn changes(&self) -> Vec<PlannedChange> {
        self.changes.lock().map(|c| c.clone()).unwrap_or_default()
    }

    /// Run `ensure` in this mode to its end or its stop.
    pub async fn run<T>(&self, ensure: impl Future<Output = Result<T>>) -> Result<Plan> {
        tokio::select! {
            r = ensure => match r {
                Ok(_) => Ok(Plan { changes: self.changes(), complete: true }),
                // A step needed what a skipped change would have made.
                Err(e) if !self.changes().is_empty() && e.class() != ErrorClass::Permanent => {
                    Ok(Plan { changes: self.changes(), complete: false })
                }
                Err(e) => Err(e),
            },
            () = self.stopped.notified() => Ok(Plan { changes: self.changes(), complete: false }),
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
    async fn a_stop_ends_the_plan_and_a_finished_ensure_completes_it() {
        let d = DryRun::default();
        let plan = d
            .run(async {
                d.record("compute.firewalls.update", ChangeAction::Update);
                d.stop_at("compute.forwardingRules.insert", ChangeAction::Create).await;
                unreachable!("a stopped ensure never goes on");
                #[allow(unreachable_code)]
                Ok(())
            })
            .await
            .expect("plan");
        assert!(!plan.complete);
        assert_eq!(plan.changes.len(), 2);
        let d = DryRun::default();
        let plan = d.run(async { Ok(()) }).await.expect("plan");
        assert!(plan.complete && plan.changes.is_empty());
    }
}
