//! What cloudlb writes to a Service's `status`: the load balancer's addresses and our
//! condition, computed as a value and patched only when it differs from what is there.
//!
//! Other controllers' conditions are kept. `ipMode` is always set, because the apiserver
//! defaults a missing one to `VIP` and a controller comparing against the unset value would see
//! a difference on every pass and patch forever.

use cloudlb_provider::{IngressPoint, IpMode, Listener};
use k8s_openapi::api::core::v1::{LoadBalancerIngress, PortStatus, Service};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use k8s_openapi::jiff::Timestamp;
use serde_json::{Value, json};

use crate::keys::{CONDITION_READY, CONDITION_TARGETS_HEALTHY};

/// Our condition, before timestamps.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Cond {
    pub ready: bool,
    pub reason: String,
    pub message: String,
}

impl Cond {
    pub fn ready(message: impl Into<String>) -> Self {
        Self { ready: true, reason: crate::keys::reason::READY.into(), message: message.into() }
    }

    pub fn not_ready(reason: &str, message: impl Into<String>) -> Self {
        Self { ready: false, reason: reason.into(), message: message.into() }
    }

    /// A digest to remember a reported condition by (one per object, kept for its lifetime:
    /// the message itself can be long).
    pub fn digest(&self) -> u64 {
        use std::hash::{Hash, Hasher};
        let mut h = std::collections::hash_map::DefaultHasher::new();
        (self.ready, &self.reason, &self.message).hash(&mut h);
        h.finish()
    }
}

/// Our second condition, `cloudlb.io/TargetsHealthy`: whether the targets pass the cloud's
/// health checks, i.e. whether the load balancer can serve (`Ready` says it exists and implements
/// the spec). `None` status = Unknown (first checks still running).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HealthCond {
    pub status: Option<bool>,
    pub reason: String,
    pub message: String,
}

impl HealthCond {
    /// `local`: `externalTrafficPolicy: Local`, whose nodes without a ready endpoint fail the
    /// checks by design (see `TargetHealth::verdict_for`).
    pub fn of(h: &cloudlb_provider::TargetHealth, local: bool) -> Self {
        let verdict = h.verdict_for(local);
        Self { status: verdict.can_serve(), reason: verdict.reason().into(), message: h.message_for(local) }
    }

    /// Whether all is well (no need to look again before the next drift check).
    pub fn all_healthy(&self) -> bool {
        use cloudlb_provider::HealthVerdict;
        self.reason == HealthVerdict::AllHealthy.reason() || self.reason == HealthVerdict::EndpointNodesHealthy.reason()
    }

    pub fn status_word(&self) -> &'static str {
        match self.status {
            Some(true) => "True",
            Some(false) => "False",
            None => "Unknown",
        }
    }

    pub fn digest(&self) -> u64 {
        use std::hash::{Hash, Hasher};
        let mut h = std::collections::hash_map::DefaultHasher::new();
        (self.status, &self.reason, &self.message).hash(&mut h);
        h.finish()
    }
}

/// Our health condition as the Service shows it.
pub fn health_condition(svc: &Service) -> Option<HealthCond> {
    let c = svc.status.as_ref()?.conditions.as_ref()?.iter().find(|c| c.type_ == CONDITION_TARGETS_HEALTHY)?;
    Some(HealthCond {
        status: match c.status.as_str() {
            "True" => Some(true),
            "False" => Some(false),
            _ => None,
        },
        reason: c.reason.clone(),
        message: c.message.clone(),
    })
}

/// `status.loadBalancer.ingress` for the provider's addresses.
pub fn ingress(points: &[IngressPoint], ip_mode: IpMode, listeners: &[Listener]) -> Vec<LoadBalancerIngress> {
    let ports: Vec<PortStatus> = listeners
        .iter()
        .map(|l| PortStatus { port: i32::from(l.port), protocol: l.protocol.as_str().into(), error: None })
        .collect();
    points
        .iter()
        .map(|p| match p {
            IngressPoint::Ip(ip) => LoadBalancerIngress {
                ip: Some(ip.to_string()),
                ip_mode: Some(ip_mode.as_str().into()),
                ports: Some(ports.clone()),
                ..Default::default()
            },
            // ipMode needs an ip (apiserver validation); a hostname is reached through DNS.
            IngressPoint::Hostname(h) => {
                LoadBalancerIngress { hostname: Some(h.clone()), ports: Some(ports.clone()), ..Default::default() }
            }
        })
        .collect()
}

pub fn current_condition(svc: &Service) -> Option<&Condition> {
    svc.status.as_ref()?.conditions.as_ref()?.iter().find(|c| c.type_ == CONDITION_READY)
}

/// Our condition as the Service shows it.
pub fn condition(svc: &Service) -> Option<Cond> {
    current_condition(svc).map(|c| Cond {
        ready: c.status == "True",
        reason: c.reason.clone(),
        message: c.message.clone(),
    })
}

/// Whether our condition already says exactly this.
pub fn condition_is(svc: &Service, cond: &Cond) -> bool {
    condition(svc).is_some_and(|c| c == *cond)
}

fn status_word(ready: bool) -> String {
    if ready { "True".into() } else { "False".into() }
}

/// The merge patch that sets our condition (and, when `ingress` is `Some`, the addresses; when
/// `health` is `Some`, the health condition), or `None` when the status already says that.
pub fn patch(
    svc: &Service,
    ingress: Option<Vec<LoadBalancerIngress>>,
    cond: Option<&Cond>,
    health: Option<&HealthCond>,
) -> Option<Value> {
    let status = svc.status.clone().unwrap_or_default();
    let mut conditions = status.conditions.clone().unwrap_or_default();
    let mut changed = false;
    let generation = svc.metadata.generation;
    if let Some(cond) = cond {
        let word = status_word(cond.ready);
        changed |= upsert(&mut conditions, CONDITION_READY, &word, &cond.reason, &cond.message, generation);
    }
    if let Some(h) = health {
        changed |=
            upsert(&mut conditions, CONDITION_TARGETS_HEALTHY, h.status_word(), &h.reason, &h.message, generation);
    }
    let mut body = json!({});
    if let Some(ingress) = ingress {
        let current = status.load_balancer.as_ref().and_then(|lb| lb.ingress.clone()).unwrap_or_default();
        if current != ingress {
            body["loadBalancer"] = json!({ "ingress": ingress });
            changed = true;
        }
    }
    if !changed {
        return None;
    }
    if cond.is_some() || health.is_some() {
        body["conditions"] = json!(conditions);
    }
    Some(json!({ "status": body }))
}

/// Sets the condition `type_` in `conditions` (its transition time kept while its status stays);
/// whether anything changed.
fn upsert(
    conditions: &mut Vec<Condition>,
    type_: &str,
    status: &str,
    reason: &str,
    message: &str,
    generation: Option<i64>,
) -> bool {
    let previous = conditions.iter().position(|c| c.type_ == type_);
    let transition = match previous.map(|i| &conditions[i]) {
        Some(p) if p.status == status => p.last_transition_time.clone(),
        _ => Time(Timestamp::now()),
    };
    let new = Condition {
        type_: type_.into(),
        status: status.into(),
        reason: reason.into(),
        message: message.into(),
        last_transition_time: transition,
        observed_generation: generation,
    };
    match previous {
        Some(i) if same_condition(&conditions[i], &new) => false,
        Some(i) => {
            conditions[i] = new;
            true
        }
        None => {
            conditions.push(new);
            true
        }
    }
}

fn same_condition(a: &Condition, b: &Condition) -> bool {
    a.status == b.status
        && a.reason == b.reason
        && a.message == b.message
        && a.observed_generation == b.observed_generation
}

/// The merge patch that removes our addresses and condition (the Service is no longer ours),
/// or `None` when there is nothing to remove.
pub fn clear(svc: &Service) -> Option<Value> {
    let status = svc.status.as_ref()?;
    let has_ingress = status.load_balancer.as_ref().and_then(|lb| lb.ingress.as_ref()).is_some_and(|i| !i.is_empty());
    let conditions = status.conditions.clone().unwrap_or_default();
    let kept: Vec<&Condition> =
        conditions.iter().filter(|c| c.type_ != CONDITION_READY && c.type_ != CONDITION_TARGETS_HEALTHY).collect();
    if !has_ingress && kept.len() == conditions.len() {
        return None;
    }
    let conditions = if kept.is_empty() { Value::Null } else { json!(kept) };
    Some(json!({ "status": { "loadBalancer": { "ingress": null }, "conditions": conditions } }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use cloudlb_provider::Protocol;
    use k8s_openapi::api::core::v1::{LoadBalancerStatus as K8sLb, ServiceStatus};

    fn listeners() -> Vec<Listener> {
        vec![Listener { port: 80, protocol: Protocol::Tcp, node_port: 30080, name: None }]
    }

    fn with_status(ingress: Vec<LoadBalancerIngress>, conditions: Vec<Condition>) -> Service {
        Service {
            status: Some(ServiceStatus {
                load_balancer: Some(K8sLb { ingress: Some(ingress) }),
                conditions: Some(conditions),
            }),
            ..Default::default()
        }
    }

    #[test]
    fn ingress_always_carries_ip_mode_for_ips() {
        let i = ingress(&[IngressPoint::Ip("192.0.2.1".parse().unwrap())], IpMode::VIP, &listeners());
        assert_eq!(i[0].ip_mode.as_deref(), Some("VIP"));
        assert_eq!(i[0].ports.as_ref().unwrap()[0].port, 80);
        let h = ingress(&[IngressPoint::Hostname("lb.example".into())], IpMode::VIP, &listeners());
        assert_eq!(h[0].ip_mode, None);
    }

    #[test]
    fn no_patch_when_nothing_changes_and_other_conditions_kept() {
        let ing = ingress(&[IngressPoint::Ip("192.0.2.1".parse().unwrap())], IpMode::VIP, &listeners());
        let other = Condition {
            type_: "example.com/Other".into(),
            status: "True".into(),
            reason: "X".into(),
            message: String::new(),
            last_transition_time: Time(Timestamp::from_second(1_700_000_000).unwrap()),
            observed_generation: None,
        };
        let svc = with_status(vec![], vec![other.clone()]);
        let p = patch(&svc, Some(ing.clone()), Some(&Cond::ready("ok")), None).expect("first write");
        let conds: Vec<Condition> = serde_json::from_value(p["status"]["conditions"].clone()).unwrap();
        assert_eq!(conds.len(), 2);
        assert_eq!(conds[0], other);
        let svc = with_status(ing.clone(), conds);
        assert_eq!(patch(&svc, Some(ing.clone()), Some(&Cond::ready("ok")), None), None);
        assert!(condition_is(&svc, &Cond::ready("ok")));
        assert!(patch(&svc, Some(ing), Some(&Cond::not_ready("Provisioning", "wait")), None).is_some());
    }

    #[test]
    fn transition_time_kept_while_status_unchanged() {
        let t0 = Time(Timestamp::from_second(1_000_000).unwrap());
        let c = Condition {
            type_: CONDITION_READY.into(),
            status: "False".into(),
            reason: "Provisioning".into(),
            message: "a".into(),
            last_transition_time: t0.clone(),
            observed_generation: None,
        };
        let svc = with_status(vec![], vec![c]);
        let p = patch(&svc, None, Some(&Cond::not_ready("ProviderError", "b")), None).unwrap();
        let conds: Vec<Condition> = serde_json::from_value(p["status"]["conditions"].clone()).unwrap();
        assert_eq!(conds[0].last_transition_time, t0);
        let p = patch(&svc, None, Some(&Cond::ready("ok")), None).unwrap();
        let conds: Vec<Condition> = serde_json::from_value(p["status"]["conditions"].clone()).unwrap();
        assert_ne!(conds[0].last_transition_time, t0);
    }

    #[test]
    fn clear_removes_only_ours() {
        let ing = ingress(&[IngressPoint::Ip("192.0.2.1".parse().unwrap())], IpMode::VIP, &listeners());
        let svc = with_status(ing, vec![]);
        let p = clear(&svc).unwrap();
        assert_eq!(p["status"]["loadBalancer"]["ingress"], Value::Null);
        assert_eq!(clear(&Service::default()), None);
    }

    #[test]
    fn the_health_condition_is_written_beside_ready_and_only_when_it_changes() {
        use cloudlb_provider::{GroupHealth, TargetHealth, UnhealthyTarget};
        let healthy = |n: usize| TargetHealth {
            groups: vec![GroupHealth { name: "port 80".into(), healthy: n, ..Default::default() }],
        };
        let svc = with_status(vec![], vec![]);
        let h = HealthCond::of(&healthy(2), false);
        let p = patch(&svc, None, Some(&Cond::ready("ok")), Some(&h)).expect("first write");
        let conds: Vec<Condition> = serde_json::from_value(p["status"]["conditions"].clone()).unwrap();
        assert_eq!(conds.len(), 2);
        let health = conds.iter().find(|c| c.type_ == CONDITION_TARGETS_HEALTHY).unwrap();
        assert_eq!((health.status.as_str(), health.reason.as_str()), ("True", "AllTargetsHealthy"));
        let svc = with_status(vec![], conds.clone());
        assert_eq!(health_condition(&svc), Some(h.clone()));
        // A third node joining a healthy load balancer: nothing to write.
        assert_eq!(patch(&svc, None, Some(&Cond::ready("ok")), Some(&HealthCond::of(&healthy(3), false))), None);
        let sick = TargetHealth {
            groups: vec![GroupHealth {
                name: "port 80".into(),
                healthy: 0,
                pending: 0,
                unhealthy: vec![UnhealthyTarget {
                    target: "i-1".into(),
                    reason: "Target.Timeout".into(),
                    description: String::new(),
                }],
            }],
        };
        let p = patch(&svc, None, Some(&Cond::ready("ok")), Some(&HealthCond::of(&sick, false))).expect("a change");
        let conds: Vec<Condition> = serde_json::from_value(p["status"]["conditions"].clone()).unwrap();
        let health = conds.iter().find(|c| c.type_ == CONDITION_TARGETS_HEALTHY).unwrap();
        assert_eq!((health.status.as_str(), health.reason.as_str()), ("False", "NoHealthyTargets"));
        assert!(health.message.contains("i-1 on port 80: Target.Timeout"), "{}", health.message);
        let ready = conds.iter().find(|c| c.type_ == CONDITION_READY).unwrap();
        assert_eq!(ready.status, "True", "Ready is untouched");
        let p = clear(&with_status(vec![], conds)).expect("ours to remove");
        assert_eq!(p["status"]["conditions"], Value::Null, "both of ours go");
    }
}
