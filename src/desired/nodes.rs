//! Which nodes a load balancer sends traffic to, and how a Node becomes a [`Target`].
//!
//! The rules are the ones of the Kubernetes service controller (KEP-3458): a node is eligible
//! unless it is being deleted, carries the exclude label (parsed as a bool; a value that does not
//! parse excludes, erring on the side of not sending traffic), or the cluster autoscaler's
//! to-be-deleted taint. Readiness is deliberately NOT a filter: a control-plane outage that marks
//! every node NotReady must not drain every load balancer.

use std::collections::BTreeMap;

use cloudlb_provider::{AddressKind, NodeAddress, Target};
use k8s_openapi::api::core::v1::Node;

use crate::keys::{LABEL_EXCLUDE_LB, TAINT_TO_BE_DELETED, TAINTS_KARPENTER_DISRUPTING};

/// Go's `strconv.ParseBool`, which is what users' label values are checked against elsewhere.
pub fn parse_go_bool(s: &str) -> Option<bool> {
    match s {
        "1" | "t" | "T" | "TRUE" | "true" | "True" => Some(true),
        "0" | "f" | "F" | "FALSE" | "false" | "False" => Some(false),
        _ => None,
    }
}

pub fn is_eligible(node: &Node) -> bool {
    if node.metadata.deletion_timestamp.is_some() {
        return false;
    }
    if let Some(v) = node.metadata.labels.as_ref().and_then(|l| l.get(LABEL_EXCLUDE_LB))
        && parse_go_bool(v) != Some(false)
    {
        return false;
    }
    let tainted = node.spec.as_ref().and_then(|s| s.taints.as_ref()).is_some_and(|t| {
        t.iter().any(|t| t.key == TAINT_TO_BE_DELETED || TAINTS_KARPENTER_DISRUPTING.contains(&t.key.as_str()))
    });
    !tainted
}

fn address_kind(kind: &str) -> Option<AddressKind> {
    Some(match kind {
        "InternalIP" => AddressKind::InternalIP,
        "ExternalIP" => AddressKind::ExternalIP,
        "Hostname" => AddressKind::Hostname,
        "InternalDNS" => AddressKind::InternalDNS,
        "ExternalDNS" => AddressKind::ExternalDNS,
        _ => return None,
    })
}

/// The parts of a Node a load balancer depends on: name, providerID, addresses (sorted).
pub fn target(node: &Node) -> Target {
    let mut addresses: Vec<NodeAddress> = node
        .status
        .as_ref()
        .and_then(|s| s.addresses.as_ref())
        .into_iter()
        .flatten()
        .filter_map(|a| Some(NodeAddress { kind: address_kind(&a.type_)?, address: a.address.clone() }))
        .collect();
    addresses.sort();
    addresses.dedup();
    Target {
        node: node.metadata.name.clone().unwrap_or_default(),
        provider_id: node.spec.as_ref().and_then(|s| s.provider_id.clone()).filter(|p| !p.is_empty()),
        addresses,
    }
}

/// An eligible node as the controller keeps it: its target and its labels (for per-Service
/// node selection).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EligibleNode {
    pub target: Target,
    pub labels: BTreeMap<String, String>,
}

/// One version of the eligible set, as every reconcile reads it: the nodes (with labels, for
/// per-Service selection), their targets as ONE shared list (every Service without a node
/// selector points at it, so ten thousand specs over a thousand nodes hold a single copy), and
/// that list's digest, computed once per change instead of once per reconcile.
#[derive(Debug, Default)]
pub struct NodeSnapshot {
    pub nodes: Vec<EligibleNode>,
    pub all_targets: std::sync::Arc<Vec<Target>>,
    pub all_targets_digest: String,
}

impl NodeSnapshot {
    pub fn new(nodes: Vec<EligibleNode>) -> Self {
        let targets: Vec<Target> = nodes.iter().map(|n| n.target.clone()).collect();
        let all_targets_digest = cloudlb_provider::targets_digest(&targets);
        Self { nodes, all_targets: std::sync::Arc::new(targets), all_targets_digest }
    }
}

/// The eligible set, sorted by node name. Two calls over nodes that differ only in what load
/// balancers do not depend on (heartbeats, conditions, images) give equal results.
pub fn eligible<'a>(nodes: impl IntoIterator<Item = &'a Node>) -> Vec<EligibleNode> {
    let mut out: Vec<EligibleNode> = nodes
        .into_iter()
        .filter(|n| is_eligible(n))
        .map(|n| EligibleNode { target: target(n), labels: n.metadata.labels.clone().unwrap_or_default() })
        .collect();
    out.sort_by(|a, b| a.target.node.cmp(&b.target.node));
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::{NodeAddress as K8sAddr, NodeCondition, NodeSpec, NodeStatus, Taint};
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, Time};

    fn node(name: &str) -> Node {
        Node {
            metadata: ObjectMeta { name: Some(name.into()), ..Default::default() },
            spec: Some(NodeSpec { provider_id: Some(format!("memory:///{name}")), ..Default::default() }),
            status: Some(NodeStatus {
                addresses: Some(vec![
                    K8sAddr { type_: "InternalIP".into(), address: "10.0.0.1".into() },
                    K8sAddr { type_: "Hostname".into(), address: name.into() },
                ]),
                ..Default::default()
            }),
        }
    }

    fn labelled(name: &str, value: &str) -> Node {
        let mut n = node(name);
        n.metadata.labels = Some([(LABEL_EXCLUDE_LB.to_string(), value.to_string())].into());
        n
    }

    #[test]
    fn eligibility_table() {
        let mut deleting = node("deleting");
        deleting.metadata.deletion_timestamp = Some(Time(k8s_openapi::jiff::Timestamp::now()));
        let mut tainted = node("tainted");
        tainted.spec.as_mut().unwrap().taints =
            Some(vec![Taint { key: TAINT_TO_BE_DELETED.into(), effect: "NoSchedule".into(), ..Default::default() }]);
        let taint = |name: &str, key: &str, value: Option<&str>| {
            let mut n = node(name);
            n.spec.as_mut().unwrap().taints = Some(vec![Taint {
                key: key.into(),
                value: value.map(String::from),
                effect: "NoSchedule".into(),
                ..Default::default()
            }]);
            n
        };
        let mut other_taint = node("other-taint");
        other_taint.spec.as_mut().unwrap().taints =
            Some(vec![Taint { key: "dedicated".into(), effect: "NoSchedule".into(), ..Default::default() }]);
        let mut not_ready = node("not-ready");
        not_ready.status.as_mut().unwrap().conditions =
            Some(vec![NodeCondition { type_: "Ready".into(), status: "False".into(), ..Default::default() }]);
        let cases = [
            (node("plain"), true),
            (labelled("excluded", "true"), false),
            (labelled("excluded-empty", ""), false),
            (labelled("excluded-garbage", "yes please"), false),
            (labelled("included-false", "false"), true),
            (labelled("included-0", "0"), true),
            (deleting, false),
            (tainted, false),
            (taint("karpenter-v1", "karpenter.sh/disrupted", None), false),
            (taint("karpenter-v0", "karpenter.sh/disruption", Some("disrupting")), false),
            (taint("karpenter-unrelated", "karpenter.sh/unregistered", None), true),
            (other_taint, true),
            (not_ready, true),
        ];
        for (n, want) in cases {
            assert_eq!(is_eligible(&n), want, "{:?}", n.metadata.name);
        }
    }

    #[test]
    fn heartbeat_changes_do_not_change_the_set() {
        let a = node("a");
        let mut a2 = a.clone();
        a2.status.as_mut().unwrap().conditions =
            Some(vec![NodeCondition { type_: "Ready".into(), status: "True".into(), ..Default::default() }]);
        assert_eq!(eligible([&a]), eligible([&a2]));
        let mut a3 = a.clone();
        a3.status.as_mut().unwrap().addresses.as_mut().unwrap()[0].address = "10.0.0.9".into();
        assert_ne!(eligible([&a]), eligible([&a3]));
    }

    #[test]
    fn target_keeps_provider_id_and_sorted_addresses() {
        let t = target(&node("n1"));
        assert_eq!(t.provider_id.as_deref(), Some("memory:///n1"));
        assert_eq!(t.addresses[0].kind, AddressKind::InternalIP);
        assert_eq!(t.dial_address(), Some("10.0.0.1".parse().unwrap()));
    }
}
