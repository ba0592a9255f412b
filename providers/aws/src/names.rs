//! Deterministic names of the AWS resources made for one Service.
//!
//! ```text
//!   load balancer   k8s-<ns:6>-<name:8>-<hash:10>        (cloudlb_provider::naming::aws_name)
//!   security group  k8ssg-<ns:6>-<name:8>-<hash:10>
//!   target group    k8s-<name>-<hash:10>-<port><p>-<nodePort>   p = t(TCP) u(UDP) b(TCP_UDP)
//!   backend group   cloudlb-backend-<cluster:40>-<hash of cluster:10>   one per cluster
//! ```
//!
//! `<hash>` is a digest of (cluster, uid), so names never collide across clusters or Service
//! incarnations. Target groups need a per-port part (a target group's port is immutable, so a new
//! node port means a new target group); the hash comes before it and the readable Service name is
//! what gets cut, so every name stays <= 32 chars and still contains `-<hash>-`, which is how a
//! scan finds the target groups of one Service when no record is left. Names only make look-ups
//! cheap: ownership is always decided by tags (`tags.rs`).

use cloudlb_provider::LoadBalancerId;
use cloudlb_provider::naming::{aws_name, id_hash};

use crate::plan::TgProtocol;

pub fn load_balancer(id: &LoadBalancerId) -> String {
    aws_name("k8s", id)
}

pub fn security_group(id: &LoadBalancerId) -> String {
    aws_name("k8ssg", id)
}

/// The cluster's backend security group (`node_security.rs`): one for all its load balancers.
pub fn backend_security_group(cluster: &str) -> String {
    let readable = sanitize(cluster, 40);
    let hash = cloudlb_provider::naming::short_digest(cluster, 10);
    if readable.is_empty() { format!("cloudlb-backend-{hash}") } else { format!("cloudlb-backend-{readable}-{hash}") }
}

/// The part every target group name of `id` contains: `-<hash>-`.
pub fn target_group_marker(id: &LoadBalancerId) -> String {
    format!("-{}-", id_hash(id, 10))
}

pub fn target_group(id: &LoadBalancerId, port: u16, protocol: TgProtocol, node_port: u16) -> String {
    let suffix = format!("{}{}-{}", port, protocol.letter(), node_port);
    let hash = id_hash(id, 10);
    // "k8s-" + readable + "-" + hash + "-" + suffix <= 32
    let fixed = 4 + 1 + hash.len() + 1 + suffix.len();
    let room = 32usize.saturating_sub(fixed);
    let readable = sanitize(&id.name, room);
    if readable.is_empty() { format!("k8s-{hash}-{suffix}") } else { format!("k8s-{readable}-{hash}-{suffix}") }
}

use cloudlb_provider::naming::sanitize;

#[cfg(test)]
mod tests {
    use super::*;
    use cloudlb_provider::naming::is_valid_aws_name;

    #[test]
    fn target_group_names_are_valid_bounded_and_findable() {
        let ids = [
            LoadBalancerId::new("c", "default", "web", "u1"),
            LoadBalancerId::new("c", "ns", "a-very-long-service-name-that-goes-on-and-on", "u2"),
            LoadBalancerId::new("c", "ns", "---", "u3"),
            LoadBalancerId::new("c", "ns", "", "u4"),
        ];
        for id in &ids {
            for (port, proto, np) in
                [(80, TgProtocol::Tcp, 30080), (65535, TgProtocol::TcpUdp, 32767), (1, TgProtocol::Udp, 30000)]
            {
                let n = target_group(id, port, proto, np);
                assert!(is_valid_aws_name(&n), "{n}");
                assert!(!n.contains("--"), "{n}");
                assert!(n.contains(&target_group_marker(id)), "{n}");
            }
            assert!(is_valid_aws_name(&load_balancer(id)));
            assert!(is_valid_aws_name(&security_group(id)));
        }
        let id = &ids[0];
        assert_eq!(target_group(id, 80, TgProtocol::Tcp, 30080), target_group(id, 80, TgProtocol::Tcp, 30080));
        assert_ne!(target_group(id, 80, TgProtocol::Tcp, 30080), target_group(id, 80, TgProtocol::Tcp, 30081));
        assert_ne!(target_group(id, 80, TgProtocol::Tcp, 30080), target_group(id, 80, TgProtocol::Udp, 30080));
        assert_ne!(load_balancer(id), security_group(id));
    }

    #[test]
    fn backend_group_names_are_per_cluster_and_bounded() {
        let a = backend_security_group("prod");
        assert!(a.starts_with("cloudlb-backend-prod-"), "{a}");
        assert_eq!(a, backend_security_group("prod"));
        assert_ne!(a, backend_security_group("prod2"));
        assert!(backend_security_group(&"x".repeat(300)).len() <= 16 + 40 + 1 + 10);
        assert!(backend_security_group("---").starts_with("cloudlb-backend-"));
    }
}
