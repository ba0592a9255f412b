//! What a load balancer should look like: the provider-neutral desired state.
//!
//! The controller builds a [`LoadBalancerSpec`] from a Service and the eligible Nodes (a pure
//! function in the root crate) and hands it to a provider, which converges the cloud to it.
//! Every collection is kept sorted so that the same inputs always give the same value and the
//! same [`LoadBalancerSpec::hash`]: the hash recorded after a successful `ensure` is what lets the
//! controller skip cloud calls when nothing changed.

use std::collections::BTreeMap;
use std::fmt;
use std::net::IpAddr;
use std::sync::Arc;

use ipnet::IpNet;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// Identifies one load balancer: the cluster it belongs to and the object that owns it.
///
/// The uid is part of the identity so that a Service deleted and re-created under the same name
/// never inherits (or deletes) its predecessor's resources.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct LoadBalancerId {
    pub cluster: String,
    pub namespace: String,
    pub name: String,
    pub uid: String,
}

impl LoadBalancerId {
    pub fn new(
        cluster: impl Into<String>,
        namespace: impl Into<String>,
        name: impl Into<String>,
        uid: impl Into<String>,
    ) -> Self {
        Self { cluster: cluster.into(), namespace: namespace.into(), name: name.into(), uid: uid.into() }
    }

    /// `namespace/name`, the owner as users write it.
    pub fn owner(&self) -> String {
        format!("{}/{}", self.namespace, self.name)
    }
}

impl fmt::Display for LoadBalancerId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{} ({})", self.namespace, self.name, self.uid)
    }
}

/// L4 protocol of a listener.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum Protocol {
    Tcp,
    Udp,
    Sctp,
}

impl Protocol {
    pub fn as_str(self) -> &'static str {
        match self {
            Protocol::Tcp => "TCP",
            Protocol::Udp => "UDP",
            Protocol::Sctp => "SCTP",
        }
    }
}

impl fmt::Display for Protocol {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One front-end port and the node port its traffic goes to.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Listener {
    pub port: u16,
    pub protocol: Protocol,
    pub node_port: u16,
    /// The Service port's name, if any (informational; not part of the identity).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
}

/// Kind of a node address, as in `Node.status.addresses[].type`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum AddressKind {
    InternalIP,
    ExternalIP,
    Hostname,
    InternalDNS,
    ExternalDNS,
}

#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct NodeAddress {
    pub kind: AddressKind,
    pub address: String,
}

/// A node the load balancer sends traffic to (on the listeners' node ports).
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Target {
    pub node: String,
    /// `Node.spec.providerID`, e.g. `aws:///us-east-1a/i-0abc` or `gce://project/zone/name`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub provider_id: Option<String>,
    pub addresses: Vec<NodeAddress>,
}

impl Target {
    /// The address a data plane should dial: InternalIP, else ExternalIP.
    pub fn dial_address(&self) -> Option<IpAddr> {
        [AddressKind::InternalIP, AddressKind::ExternalIP]
            .iter()
            .find_map(|kind| self.addresses.iter().filter(|a| a.kind == *kind).find_map(|a| a.address.parse().ok()))
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum HealthCheckProtocol {
    Http,
    Tcp,
}

/// What a health check asks about a node.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum HealthTarget {
    /// `externalTrafficPolicy: Cluster`: is the node forwarding at all? The default check is the
    /// node's kube-proxy (`:10256/healthz`); a provider that cannot reach it may instead probe
    /// the traffic port (TCP connect to each listener's node port).
    KubeProxy,
    /// `externalTrafficPolicy: Local`: does the node have a ready endpoint? Answered by kube-proxy
    /// on the Service's `healthCheckNodePort` (`port`), HTTP `/healthz`.
    ServiceHealthCheckNodePort,
}

/// How the load balancer decides a target is healthy.
///
/// `port: None` means "the traffic port" (each listener's node port).
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct HealthCheck {
    pub target: HealthTarget,
    pub protocol: HealthCheckProtocol,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub port: Option<u16>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path: Option<String>,
    pub interval_seconds: u32,
    pub timeout_seconds: u32,
    pub healthy_threshold: u32,
    pub unhealthy_threshold: u32,
}

/// Who can reach the load balancer's address.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, Default)]
#[serde(rename_all = "kebab-case")]
pub enum Scheme {
    #[default]
    InternetFacing,
    Internal,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, Default)]
#[serde(rename_all = "kebab-case")]
pub enum SessionAffinity {
    #[default]
    None,
    /// Requests from one client IP go to the same target for this many seconds.
    ClientIp { timeout_seconds: u32 },
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum IpFamily {
    IPv4,
    IPv6,
}

/// The complete desired state of one load balancer.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct LoadBalancerSpec {
    /// Sorted by (port, protocol); never empty.
    pub listeners: Vec<Listener>,
    /// Sorted by node name; may be empty (no eligible node), the address is still kept. Shared:
    /// every Service without a node selector targets the same list, so thousands of specs over a
    /// thousand nodes hold one copy (change it with `Arc::make_mut`).
    pub targets: Arc<Vec<Target>>,
    pub health_check: HealthCheck,
    /// Sorted and deduplicated; `0.0.0.0/0` (and `::/0`) when the user restricted nothing.
    pub source_ranges: Vec<IpNet>,
    /// `spec.loadBalancerIP` (deprecated but still used), when set.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub requested_ip: Option<IpAddr>,
    pub scheme: Scheme,
    pub session_affinity: SessionAffinity,
    /// Sorted; the families the Service asks for.
    pub ip_families: Vec<IpFamily>,
    /// Provider-specific options (annotations under the provider's prefix, with the prefix cut).
    pub options: BTreeMap<String, String>,
}

impl LoadBalancerSpec {
    /// A stable digest of the spec, `<frontend>.<targets>` (16 hex chars each): equal specs give
    /// equal hashes across processes and versions, as long as the serialized form does not
    /// change, and a change of targets alone can be told from a change of the rest.
    pub fn hash(&self) -> String {
        self.hash_with_targets(&targets_digest(&self.targets))
    }

    /// [`Self::hash`] with the targets' digest supplied by a caller that has it cached (with a
    /// thousand nodes, serializing the targets is most of the cost).
    pub fn hash_with_targets(&self, targets_digest: &str) -> String {
        format!("{}.{targets_digest}", self.frontend_digest())
    }

    /// Digest of everything but the targets.
    pub fn frontend_digest(&self) -> String {
        #[derive(Serialize)]
        struct Frontend<'a> {
            listeners: &'a [Listener],
            health_check: &'a HealthCheck,
            source_ranges: &'a [IpNet],
            requested_ip: &'a Option<IpAddr>,
            scheme: Scheme,
            session_affinity: SessionAffinity,
            ip_families: &'a [IpFamily],
            options: &'a BTreeMap<String, String>,
        }
        digest(&Frontend {
            listeners: &self.listeners,
            health_check: &self.health_check,
            source_ranges: &self.source_ranges,
            requested_ip: &self.requested_ip,
            scheme: self.scheme,
            session_affinity: self.session_affinity,
            ip_families: &self.ip_families,
            options: &self.options,
        })
    }

    /// The distinct protocols used by the listeners.
    pub fn protocols(&self) -> Vec<Protocol> {
        let mut p: Vec<Protocol> = self.listeners.iter().map(|l| l.protocol).collect();
        p.sort();
        p.dedup();
        p
    }

    /// Whether the spec restricts sources (anything but the all-addresses ranges).
    pub fn restricts_sources(&self) -> bool {
        self.source_ranges.iter().any(|r| r.prefix_len() != 0)
    }
}

/// Digest of a target list (16 hex chars).
pub fn targets_digest(targets: &[Target]) -> String {
    digest(&targets)
}

/// The last targets list digested and its digest: every load balancer without a node selector
/// shares one list (`Arc`), so with a thousand nodes the digest is computed once per node change
/// instead of once per load balancer. Holding the `Arc` keeps the pointer comparison sound.
#[derive(Default)]
pub struct TargetsDigestCache(std::sync::Mutex<Option<(Arc<Vec<Target>>, String)>>);

impl TargetsDigestCache {
    pub fn digest(&self, targets: &Arc<Vec<Target>>) -> String {
        let mut last = self.0.lock().unwrap_or_else(|p| p.into_inner());
        if let Some((list, digest)) = last.as_ref()
            && Arc::ptr_eq(list, targets)
        {
            return digest.clone();
        }
        let digest = targets_digest(targets);
        *last = Some((targets.clone(), digest.clone()));
        digest
    }
}

/// SHA-256 over the value's JSON, streamed into the hasher: a spec with a thousand targets is
/// never held as one buffer (64 reconciles at once would hold 64 of them).
pub(crate) fn digest(value: &impl Serialize) -> String {
    struct Hasher(Sha256);
    impl std::io::Write for Hasher {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0.update(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    let mut hasher = Hasher(Sha256::new());
    // Serializing plain data into a writer that never fails cannot fail.
    let _ = serde_json::to_writer(&mut hasher, value);
    let digest = hasher.0.finalize();
    digest[..8].iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    pub(crate) fn sample() -> LoadBalancerSpec {
        LoadBalancerSpec {
            listeners: vec![Listener { port: 80, protocol: Protocol::Tcp, node_port: 30080, name: None }],
            targets: Arc::default(),
            health_check: HealthCheck {
                target: HealthTarget::KubeProxy,
                protocol: HealthCheckProtocol::Http,
                port: Some(10256),
                path: Some("/healthz".into()),
                interval_seconds: 10,
                timeout_seconds: 5,
                healthy_threshold: 2,
                unhealthy_threshold: 3,
            },
            source_ranges: vec!["0.0.0.0/0".parse().unwrap()],
            requested_ip: None,
            scheme: Scheme::InternetFacing,
            session_affinity: SessionAffinity::None,
            ip_families: vec![IpFamily::IPv4],
            options: BTreeMap::new(),
        }
    }

    #[test]
    fn hash_is_stable_and_sensitive() {
        let a = sample();
        assert_eq!(a.hash(), sample().hash());
        assert_eq!(a.hash().len(), 33);
        let mut b = sample();
        b.listeners[0].node_port = 30081;
        assert_ne!(a.hash(), b.hash());
        assert_ne!(a.frontend_digest(), b.frontend_digest());
        let mut c = sample();
        Arc::make_mut(&mut c.targets).push(Target { node: "n".into(), provider_id: None, addresses: vec![] });
        assert_eq!(a.frontend_digest(), c.frontend_digest(), "targets are not part of the frontend");
        assert_ne!(a.hash(), c.hash());
        assert_eq!(c.hash(), c.hash_with_targets(&targets_digest(&c.targets)));
    }

    #[test]
    fn dial_address_prefers_internal() {
        let t = Target {
            node: "n".into(),
            provider_id: None,
            addresses: vec![
                NodeAddress { kind: AddressKind::ExternalIP, address: "1.2.3.4".into() },
                NodeAddress { kind: AddressKind::InternalIP, address: "10.0.0.1".into() },
            ],
        };
        assert_eq!(t.dial_address(), Some("10.0.0.1".parse().unwrap()));
        let t = Target { addresses: vec![t.addresses[0].clone()], ..t };
        assert_eq!(t.dial_address(), Some("1.2.3.4".parse().unwrap()));
    }

    #[test]
    fn restricts_sources() {
        let mut s = sample();
        assert!(!s.restricts_sources());
        s.source_ranges = vec!["10.0.0.0/8".parse().unwrap()];
        assert!(s.restricts_sources());
    }
}
