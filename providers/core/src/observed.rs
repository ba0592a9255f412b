//! What a provider can tell about a load balancer between ensures, cheaply: whether the cloud
//! has finished making it ([`LbState`]) and whether its targets pass the cloud's own health
//! checks ([`TargetHealth`]).
//!
//! Both are read-only observations the controller turns into what a user sees: the address is
//! published while the cloud is still provisioning (a DNS name is known at once), `Ready` says
//! whether the load balancer exists and implements the spec, and the `cloudlb.io/TargetsHealthy`
//! condition says whether it can serve. They come from [`crate::Provider::observe`] (a state
//! check costs one describe on aws) and, for free, from an ensure that read them anyway
//! ([`crate::LoadBalancerStatus::targets`]).
//!
//! The verdict ([`TargetHealth::verdict`]) is pure and shared, so every provider's health reads
//! the same in a condition. Targets still being registered or deregistered (`initial`,
//! `draining` on aws) are *pending*: they count neither way, so a node joining a healthy load
//! balancer does not flip the condition twice (and cost two status writes) while its first
//! checks run.

use serde::{Deserialize, Serialize};

/// The cloud's lifecycle state of a load balancer.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum LbState {
    Active,
    /// Being made; it has an address already but may not answer yet.
    Provisioning,
    /// The cloud gave up making it; retrying the same calls will not help.
    Failed {
        message: String,
    },
}

/// One target the cloud reports unhealthy, with the cloud's words.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct UnhealthyTarget {
    /// The cloud's name of the target (an instance id).
    pub target: String,
    /// The cloud's reason code (e.g. `Target.FailedHealthChecks`); may be empty.
    pub reason: String,
    /// The cloud's explanation; may be empty.
    pub description: String,
}

/// Health of the targets of one group (one port of the load balancer: an aws target group, a
/// gcp backend service).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct GroupHealth {
    /// What the user knows it as (e.g. `port 443`).
    pub name: String,
    pub healthy: usize,
    /// Being registered or deregistered: counted neither healthy nor unhealthy.
    pub pending: usize,
    pub unhealthy: Vec<UnhealthyTarget>,
}

/// Health of every target group of a load balancer.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct TargetHealth {
    pub groups: Vec<GroupHealth>,
}

/// What [`TargetHealth`] means for serving.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum HealthVerdict {
    /// Every counted target of every group is healthy.
    AllHealthy,
    /// Every group has a healthy target, some targets are unhealthy.
    SomeUnhealthy,
    /// Every group has a healthy target, and unhealthy ones are expected: with
    /// `externalTrafficPolicy: Local` a node without a ready endpoint fails the checks by design.
    EndpointNodesHealthy,
    /// No target is unhealthy yet, but some group has no healthy one: first checks still running.
    Checking,
    /// Nothing is registered.
    NoTargets,
    /// Some group has unhealthy targets and no healthy one: that port cannot serve.
    NoHealthyTargets,
}

impl HealthVerdict {
    /// The condition reason (PascalCase).
    pub fn reason(self) -> &'static str {
        match self {
            HealthVerdict::AllHealthy => "AllTargetsHealthy",
            HealthVerdict::SomeUnhealthy => "SomeTargetsUnhealthy",
            HealthVerdict::EndpointNodesHealthy => "EndpointNodesHealthy",
            HealthVerdict::Checking => "HealthChecksPending",
            HealthVerdict::NoTargets => "NoTargets",
            HealthVerdict::NoHealthyTargets => "NoHealthyTargets",
        }
    }

    /// Whether the load balancer can serve: `Some(true)`, `Some(false)`, or unknown yet.
    pub fn can_serve(self) -> Option<bool> {
        match self {
            HealthVerdict::AllHealthy | HealthVerdict::SomeUnhealthy | HealthVerdict::EndpointNodesHealthy => {
                Some(true)
            }
            HealthVerdict::Checking => None,
            HealthVerdict::NoTargets | HealthVerdict::NoHealthyTargets => Some(false),
        }
    }
}

impl TargetHealth {
    pub fn healthy(&self) -> usize {
        self.groups.iter().map(|g| g.healthy).sum()
    }

    pub fn unhealthy(&self) -> usize {
        self.groups.iter().map(|g| g.unhealthy.len()).sum()
    }

    /// Healthy + unhealthy (pending targets are not counted).
    pub fn counted(&self) -> usize {
        self.healthy() + self.unhealthy()
    }

    /// [`Self::verdict`] for a load balancer whose unhealthy targets are expected (nodes without
    /// a ready endpoint, `externalTrafficPolicy: Local`): serving once every group has a healthy
    /// target, whatever the others say.
    pub fn verdict_for(&self, unhealthy_expected: bool) -> HealthVerdict {
        match self.verdict() {
            HealthVerdict::SomeUnhealthy if unhealthy_expected => HealthVerdict::EndpointNodesHealthy,
            v => v,
        }
    }

    pub fn verdict(&self) -> HealthVerdict {
        let registered = self.counted() + self.groups.iter().map(|g| g.pending).sum::<usize>();
        if registered == 0 {
            return HealthVerdict::NoTargets;
        }
        if self.groups.iter().any(|g| g.healthy == 0 && !g.unhealthy.is_empty()) {
            return HealthVerdict::NoHealthyTargets;
        }
        if self.groups.iter().any(|g| g.healthy == 0) {
            return HealthVerdict::Checking;
        }
        if self.unhealthy() > 0 { HealthVerdict::SomeUnhealthy } else { HealthVerdict::AllHealthy }
    }

    /// A message for the condition. Healthy load balancers get one without counts, so that a node
    /// joining or leaving does not change it (every status write reaches every watcher of the
    /// object's kind); the others name the counts and up to `MAX_NAMED` unhealthy targets with the
    /// cloud's reasons, which is what a user needs to act.
    pub fn message(&self) -> String {
        self.message_for(false)
    }

    /// [`Self::message`] for [`Self::verdict_for`].
    pub fn message_for(&self, unhealthy_expected: bool) -> String {
        const MAX_NAMED: usize = 5;
        let verdict = self.verdict_for(unhealthy_expected);
        match verdict {
            HealthVerdict::AllHealthy => return "all targets pass the load balancer's health checks".into(),
            HealthVerdict::EndpointNodesHealthy => {
                return "every port has a target passing the load balancer's health checks (externalTrafficPolicy: \
                        Local: nodes without a ready endpoint fail them by design)"
                    .into();
            }
            HealthVerdict::NoTargets => return "no targets are registered with the load balancer".into(),
            HealthVerdict::Checking => {
                return "the load balancer's first health checks of its targets have not finished".into();
            }
            HealthVerdict::SomeUnhealthy | HealthVerdict::NoHealthyTargets => {}
        }
        let mut out = format!("{} of {} targets healthy", self.healthy(), self.counted());
        // In name order, whatever order the provider listed them in: the same health must read
        // the same (a different message is a status write).
        let mut groups: Vec<&GroupHealth> = self.groups.iter().collect();
        groups.sort_by(|a, b| a.name.cmp(&b.name));
        let dead: Vec<&str> =
            groups.iter().filter(|g| g.healthy == 0 && !g.unhealthy.is_empty()).map(|g| g.name.as_str()).collect();
        if !dead.is_empty() {
            out.push_str(&format!("; no healthy target on {}", dead.join(", ")));
        }
        let mut named: Vec<String> = Vec::new();
        for g in groups {
            let mut unhealthy: Vec<&UnhealthyTarget> = g.unhealthy.iter().collect();
            unhealthy.sort();
            for u in unhealthy {
                let mut s = format!("{} on {}", u.target, g.name);
                match (u.reason.is_empty(), u.description.is_empty()) {
                    (false, false) => s.push_str(&format!(": {} ({})", u.reason, u.description)),
                    (false, true) => s.push_str(&format!(": {}", u.reason)),
                    (true, false) => s.push_str(&format!(": {}", u.description)),
                    (true, true) => {}
                }
                named.push(s);
            }
        }
        let more = named.len().saturating_sub(MAX_NAMED);
        named.truncate(MAX_NAMED);
        out.push_str("; unhealthy: ");
        out.push_str(&named.join("; "));
        if more > 0 {
            out.push_str(&format!("; and {more} more"));
        }
        out
    }
}

/// What [`crate::Provider::observe`] found.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Observed {
    pub state: LbState,
    /// `None` when the provider cannot tell, or did not look (still provisioning).
    pub targets: Option<TargetHealth>,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn group(name: &str, healthy: usize, pending: usize, unhealthy: &[&str]) -> GroupHealth {
        GroupHealth {
            name: name.into(),
            healthy,
            pending,
            unhealthy: unhealthy
                .iter()
                .map(|t| UnhealthyTarget {
                    target: t.to_string(),
                    reason: "Target.FailedHealthChecks".into(),
                    description: "Health checks failed".into(),
                })
                .collect(),
        }
    }

    fn health(groups: Vec<GroupHealth>) -> TargetHealth {
        TargetHealth { groups }
    }

    #[test]
    fn verdicts() {
        use HealthVerdict::*;
        assert_eq!(health(vec![]).verdict(), NoTargets);
        assert_eq!(health(vec![group("port 80", 0, 0, &[])]).verdict(), NoTargets);
        assert_eq!(health(vec![group("port 80", 2, 0, &[])]).verdict(), AllHealthy);
        // A joining node's first checks do not make a healthy load balancer less healthy.
        assert_eq!(health(vec![group("port 80", 2, 1, &[])]).verdict(), AllHealthy);
        assert_eq!(health(vec![group("port 80", 0, 3, &[])]).verdict(), Checking);
        assert_eq!(health(vec![group("port 80", 2, 0, &[]), group("port 443", 0, 2, &[])]).verdict(), Checking);
        assert_eq!(health(vec![group("port 80", 1, 0, &["i-1"])]).verdict(), SomeUnhealthy);
        assert_eq!(
            health(vec![group("port 80", 2, 0, &[]), group("port 443", 0, 0, &["i-1"])]).verdict(),
            NoHealthyTargets
        );
        assert_eq!(NoHealthyTargets.can_serve(), Some(false));
        assert_eq!(SomeUnhealthy.can_serve(), Some(true));
        assert_eq!(Checking.can_serve(), None);
        // externalTrafficPolicy: Local: nodes without an endpoint fail by design.
        let local = health(vec![group("port 80", 1, 0, &["i-1", "i-2"])]);
        assert_eq!(local.verdict_for(true), EndpointNodesHealthy);
        assert!(!local.message_for(true).contains("of"), "no counts: {}", local.message_for(true));
        assert_eq!(health(vec![group("port 80", 0, 0, &["i-1"])]).verdict_for(true), NoHealthyTargets);
    }

    #[test]
    fn healthy_messages_carry_no_counts_and_unhealthy_ones_name_targets_and_reasons() {
        let a = health(vec![group("port 80", 2, 0, &[])]).message();
        let b = health(vec![group("port 80", 3, 1, &[])]).message();
        assert_eq!(a, b, "a node joining a healthy load balancer changes nothing a user sees");
        let m = health(vec![group("port 80", 2, 0, &[]), group("port 443", 0, 0, &["i-1", "i-2"])]).message();
        assert!(m.starts_with("2 of 4 targets healthy; no healthy target on port 443"), "{m}");
        assert!(m.contains("i-1 on port 443: Target.FailedHealthChecks (Health checks failed)"), "{m}");
        let many: Vec<String> = (0..8).map(|i| format!("i-{i}")).collect();
        let many: Vec<&str> = many.iter().map(String::as_str).collect();
        let m = health(vec![group("port 80", 1, 0, &many)]).message();
        assert!(m.ends_with("; and 3 more"), "{m}");
    }
}
