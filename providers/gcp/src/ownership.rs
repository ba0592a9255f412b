//! Ownership: the `description` JSON is what makes a resource ours.
//!
//! Only addresses and forwarding rules carry labels in Compute; health checks, backend services,
//! firewalls and instance groups carry nothing but a free-text `description`. So, like Google's
//! own controllers, every resource cloudlb makes gets a JSON description:
//!
//! ```text
//!   per Service: {"cloudlb.io/cluster":"prod","cloudlb.io/owner":"ns/web",
//!                 "cloudlb.io/owner-uid":"<uid>","cloudlb.io/resource":"forwarding-rule"}
//!   per cluster: {"cloudlb.io/cluster":"prod","cloudlb.io/resource":"instance-group"}
//! ```
//!
//! A resource found under our deterministic name whose description does not say so is a
//! [`ProviderError::Conflict`]: never adopted, changed or deleted. Addresses and forwarding rules
//! also get labels (`cloudlb-cluster`, `cloudlb-owner-uid`) for billing and `gcloud --filter`;
//! they are written at creation and never trusted for ownership.

use std::collections::{BTreeMap, HashMap};

use cloudlb_provider::naming::sanitize;
use cloudlb_provider::{LoadBalancerId, ProviderError};

pub const CLUSTER: &str = "cloudlb.io/cluster";
pub const OWNER: &str = "cloudlb.io/owner";
pub const OWNER_UID: &str = "cloudlb.io/owner-uid";
pub const RESOURCE: &str = "cloudlb.io/resource";

pub const FORWARDING_RULE: &str = "forwarding-rule";
pub const BACKEND_SERVICE: &str = "backend-service";
pub const ADDRESS: &str = "address";
pub const HEALTH_CHECK: &str = "health-check";
pub const FIREWALL: &str = "firewall";
pub const HEALTH_CHECK_FIREWALL: &str = "health-check-firewall";
pub const INSTANCE_GROUP: &str = "instance-group";
pub const NODE_HEALTH_CHECK: &str = "node-health-check";
pub const NODE_HEALTH_CHECK_FIREWALL: &str = "node-health-check-firewall";
pub const URL_MAP: &str = "url-map";
pub const TARGET_PROXY: &str = "target-proxy";
pub const SSL_CERTIFICATE: &str = "ssl-certificate";

/// Who a resource belongs to: one Service, or the whole cluster (shared resources).
#[derive(Clone, Copy, Debug)]
pub enum Owner<'a> {
    Service(&'a LoadBalancerId),
    Cluster(&'a str),
}

impl Owner<'_> {
    fn cluster(&self) -> &str {
        match self {
            Owner::Service(id) => &id.cluster,
            Owner::Cluster(c) => c,
        }
    }
}

/// The description of a resource of `role` owned by `owner`.
pub fn description(owner: Owner<'_>, role: &str) -> String {
    description_with(owner, role, &[])
}

/// [`description`] with more keys (e.g. the spec hash a URL map implements).
pub fn description_with(owner: Owner<'_>, role: &str, extra: &[(&'static str, &str)]) -> String {
    let mut m: BTreeMap<&str, String> = extra.iter().map(|(k, v)| (*k, v.to_string())).collect();
    m.insert(CLUSTER, owner.cluster().to_string());
    m.insert(RESOURCE, role.to_string());
    if let Owner::Service(id) = owner {
        m.insert(OWNER, id.owner());
        m.insert(OWNER_UID, id.uid.clone());
    }
    serde_json::to_string(&m).unwrap_or_default()
}

fn parse(description: Option<&str>) -> BTreeMap<String, String> {
    description.and_then(|d| serde_json::from_str(d).ok()).unwrap_or_default()
}

/// The Service (`namespace/name`) a description says cloudlb made the resource for, if any.
pub fn service_of(description: Option<&str>) -> Option<String> {
    let m = parse(description);
    m.get(OWNER_UID)?;
    m.get(OWNER).cloned()
}

/// The value of `key` in a description.
pub fn field(description: Option<&str>, key: &str) -> Option<String> {
    parse(description).get(key).cloned()
}

/// The cluster a description names, if it is one of ours.
pub fn cluster_of(description: Option<&str>) -> Option<String> {
    parse(description).get(CLUSTER).cloned()
}

/// Whether `description` says the resource belongs to `owner`.
pub fn is_owned(owner: Owner<'_>, description: Option<&str>) -> bool {
    let m = parse(description);
    if m.get(CLUSTER).map(String::as_str) != Some(owner.cluster()) {
        return false;
    }
    match owner {
        Owner::Service(id) => m.get(OWNER_UID) == Some(&id.uid),
        Owner::Cluster(_) => !m.contains_key(OWNER_UID),
    }
}

/// `Ok` when owned, else the conflict naming the resource and what its description says.
pub fn check(
    call: &'static str,
    owner: Owner<'_>,
    resource: &str,
    description: Option<&str>,
) -> Result<(), ProviderError> {
    if is_owned(owner, description) {
        return Ok(());
    }
    let m = parse(description);
    let whose = match owner {
        Owner::Service(id) => format!("{id} in cluster {:?}", id.cluster),
        Owner::Cluster(c) => format!("cluster {c:?}"),
    };
    let message = match (m.get(CLUSTER), m.get(OWNER)) {
        (None, _) => format!(
            "its description {:?} does not say it was made by cloudlb for {whose}; rename or delete it, cloudlb \
             never adopts resources",
            description.unwrap_or("")
        ),
        (Some(c), Some(o)) => format!(
            "it belongs to {o} ({}) in cluster {c:?}, not to {whose}",
            m.get(OWNER_UID).map(String::as_str).unwrap_or("?")
        ),
        (Some(c), None) => format!("it belongs to cluster {c:?}, not to {whose}"),
    };
    Err(ProviderError::Conflict { call, resource: resource.to_string(), message })
}

/// Labels of addresses and forwarding rules (informational).
pub fn labels(id: &LoadBalancerId) -> HashMap<String, String> {
    let value = |s: &str| {
        let v = sanitize(s, 63);
        if v.is_empty() { "none".to_string() } else { v }
    };
    HashMap::from([
        ("cloudlb-cluster".to_string(), value(&id.cluster)),
        ("cloudlb-owner-uid".to_string(), value(&id.uid)),
    ])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ownership_needs_cluster_and_uid() {
        let id = LoadBalancerId::new("prod", "ns", "web", "u1");
        let d = description(Owner::Service(&id), FORWARDING_RULE);
        assert!(is_owned(Owner::Service(&id), Some(&d)));
        assert!(d.contains("\"cloudlb.io/owner\":\"ns/web\""), "{d}");
        let other = LoadBalancerId::new("prod", "ns", "web", "u2");
        assert!(!is_owned(Owner::Service(&other), Some(&d)));
        let e = check("compute.forwardingRules.get", Owner::Service(&other), "fr", Some(&d)).unwrap_err();
        assert!(e.to_string().contains("ns/web (u1)"), "{e}");
        assert!(check("x", Owner::Service(&id), "fr", Some("made by hand")).is_err());
        assert!(check("x", Owner::Service(&id), "fr", None).is_err());
        // Shared resources: the cluster, and no owner.
        let shared = description(Owner::Cluster("prod"), INSTANCE_GROUP);
        assert!(is_owned(Owner::Cluster("prod"), Some(&shared)));
        assert!(!is_owned(Owner::Cluster("staging"), Some(&shared)));
        assert!(!is_owned(Owner::Cluster("prod"), Some(&d)), "a Service's resource is not a shared one");
    }
}
