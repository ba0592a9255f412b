//! Deterministic names of the Compute resources made for one Service, and of the ones a cluster
//! shares.
//!
//! ```text
//!   per Service (regional, one name in several collections):
//!     forwarding rule, backend service, address, health check (ETP Local), traffic firewall
//!                                   k8s-<ns:16>-<name:24>-<hash:12>      (<= 58 chars)
//!     health-check firewall (ETP Local)   <that>-hc                      (<= 61 chars)
//!   per cluster (shared by every Service of the cluster):
//!     instance group (one per zone)       k8s-<cluster:24>-<chash:8>-ig
//!     node health check (kube-proxy)      k8s-<cluster:24>-<chash:8>-node-hc
//!     its firewall                        k8s-<cluster:24>-<chash:8>-node-hc-fw
//! ```
//!
//! `<hash>` is a digest of (cluster, uid), so names never collide across clusters or Service
//! incarnations; `<chash>` a digest of the cluster name. Every name matches GCE's
//! `[a-z]([-a-z0-9]*[a-z0-9])?` and is at most 63 characters. Names only make look-ups cheap:
//! ownership is decided by the `description` (`ownership.rs`).

use cloudlb_provider::LoadBalancerId;
use cloudlb_provider::naming::{gce_name, sanitize};
use sha2::{Digest, Sha256};

/// Forwarding rule, backend service, address, per-Service health check, traffic firewall.
pub fn load_balancer(id: &LoadBalancerId) -> String {
    gce_name("k8s", id)
}

/// The firewall letting Google's health checkers reach a per-Service health check's port.
pub fn health_check_firewall(id: &LoadBalancerId) -> String {
    format!("{}-hc", load_balancer(id))
}

fn cluster_part(cluster: &str) -> String {
    let hash: String = Sha256::digest(cluster.as_bytes())[..4].iter().map(|b| format!("{b:02x}")).collect();
    let readable = sanitize(cluster, 24);
    if readable.is_empty() { hash } else { format!("{readable}-{hash}") }
}

/// The cluster's unmanaged instance group (the same name in every zone).
pub fn instance_group(cluster: &str) -> String {
    format!("k8s-{}-ig", cluster_part(cluster))
}

/// The cluster's shared node health check (kube-proxy's `:10256/healthz`).
pub fn node_health_check(cluster: &str) -> String {
    format!("k8s-{}-node-hc", cluster_part(cluster))
}

pub fn node_health_check_firewall(cluster: &str) -> String {
    format!("k8s-{}-node-hc-fw", cluster_part(cluster))
}

#[cfg(test)]
mod tests {
    use super::*;
    use cloudlb_provider::naming::is_valid_gce_name;

    #[test]
    fn names_are_valid_bounded_and_distinct() {
        let long = "a-very-long-name-that-goes-on-and-on-and-on-for-ever-and-ever";
        let ids = [
            LoadBalancerId::new("prod", "default", "web", "u1"),
            LoadBalancerId::new(long, long, long, "u2"),
            LoadBalancerId::new("---", "...", "ÜNÏ", "u3"),
            LoadBalancerId::new("", "", "", "u4"),
        ];
        for id in &ids {
            for n in [
                load_balancer(id),
                health_check_firewall(id),
                instance_group(&id.cluster),
                node_health_check(&id.cluster),
                node_health_check_firewall(&id.cluster),
            ] {
                assert!(is_valid_gce_name(&n), "{n:?} from {id:?}");
            }
        }
        assert_ne!(load_balancer(&ids[0]), load_balancer(&LoadBalancerId::new("prod", "default", "web", "u9")));
        assert_ne!(instance_group("a"), instance_group("b"));
        assert_eq!(load_balancer(&ids[0]), load_balancer(&ids[0].clone()));
    }
}
