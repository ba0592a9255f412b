//! The plan: what one Service's load balancer is made of, computed from the spec alone (pure).
//!
//! ```text
//!   listeners ──▶ protocol: TCP | UDP | both (backend service UNSPECIFIED + rule L3_DEFAULT)
//!             ──▶ forwarding-rule ports (<= 5 listed, else all ports) and firewall ports
//!   ETP Local ──▶ per-Service HTTP check on healthCheckNodePort /healthz
//!   otherwise ──▶ the cluster's shared node check, kube-proxy :10256/healthz
//!   targets   ──▶ instances per zone, from providerID gce://<project>/<zone>/<name>
//!   loadBalancerIP / address annotation ──▶ which IP the forwarding rule gets
//! ```
//!
//! The firewall opens the *Service* ports to the load balancer's IP: a backend-service network
//! load balancer is a pass-through, so packets reach the node with the forwarding rule's IP and
//! the Service port as destination (kube-proxy takes them from there); node ports are never on
//! the wire. Applying the plan is `ensure.rs`; `validate` reuses [`spec_problems`] without I/O.

use std::collections::{BTreeMap, BTreeSet};
use std::net::{IpAddr, Ipv4Addr};

use cloudlb_provider::{HealthTarget, LoadBalancerId, LoadBalancerSpec, Protocol, Scheme, SessionAffinity, Target};
use ipnet::IpNet;

use crate::config::GcpConfig;
use crate::options::{Options, Tier, annotation};
use crate::{links, names};

/// kube-proxy's health port and path (externalTrafficPolicy: Cluster).
pub const KUBE_PROXY_PORT: u16 = 10256;
pub const HEALTHZ: &str = "/healthz";
/// Where Google's health checkers (and the load balancers' probes) come from.
pub const HEALTH_CHECK_RANGES: &[&str] = &["35.191.0.0/16", "130.211.0.0/22", "209.85.152.0/22", "209.85.204.0/22"];
/// A forwarding rule lists at most this many ports; more means all ports.
pub const MAX_LISTED_PORTS: usize = 5;

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SkippedTarget {
    pub node: String,
    pub reason: String,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Ports {
    List(Vec<u16>),
    All,
}

/// The regional health check the backend service uses.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Health {
    pub name: String,
    /// The cluster's node check (kube-proxy), shared by every `externalTrafficPolicy: Cluster` Service.
    pub shared: bool,
    pub port: u16,
    pub path: String,
    pub interval: i32,
    pub timeout: i32,
    pub healthy: i32,
    pub unhealthy: i32,
    /// The firewall letting Google's checkers reach `port`.
    pub firewall: String,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum IpRequest {
    /// Keep whatever the forwarding rule has (ephemeral, kept across in-place updates).
    Any,
    /// `spec.loadBalancerIP`.
    Ip(Ipv4Addr),
    /// A reserved address by name (annotation); the user's, never released.
    Address(String),
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Plan {
    /// Forwarding rule, backend service, address, traffic firewall (and per-Service check).
    pub name: String,
    pub scheme: Scheme,
    /// Backend service protocol: `TCP`, `UDP` or `UNSPECIFIED` (both).
    pub bs_protocol: &'static str,
    /// Forwarding rule protocol: `TCP`, `UDP` or `L3_DEFAULT` (both).
    pub fr_protocol: &'static str,
    pub ports: Ports,
    pub session_affinity: &'static str,
    pub health: Health,
    /// Firewall: lowercase protocol -> Service ports.
    pub allowed: BTreeMap<&'static str, Vec<u16>>,
    pub source_ranges: Vec<String>,
    /// Zone -> instance self-links.
    pub instances: BTreeMap<String, BTreeSet<String>>,
    pub skipped: Vec<SkippedTarget>,
    pub ip: IpRequest,
    pub tier: Tier,
    /// Internal only: the subnetwork link.
    pub subnetwork: Option<String>,
    pub global_access: bool,
    pub spec_hash: String,
}

/// Whether this plan's forwarding rule gets its IP from the internal (subnet) space.
impl Plan {
    pub fn internal(&self) -> bool {
        self.scheme == Scheme::Internal
    }

    pub fn scheme_name(&self) -> &'static str {
        if self.internal() { "INTERNAL" } else { "EXTERNAL" }
    }
}

/// `(project, zone, name)` of a providerID `gce://<project>/<zone>/<name>`.
pub fn parse_provider_id(provider_id: &str) -> Option<(&str, &str, &str)> {
    let rest = provider_id.strip_prefix("gce://")?;
    let mut parts = rest.split('/');
    let (project, zone, name) = (parts.next()?, parts.next()?, parts.next()?);
    if parts.next().is_some() || project.is_empty() || zone.is_empty() || name.is_empty() {
        return None;
    }
    Some((project, zone, name))
}

/// Which targets can join an instance group (zone -> instance links), and which cannot, why.
pub fn targets(targets: &[Target], config: &GcpConfig) -> (BTreeMap<String, BTreeSet<String>>, Vec<SkippedTarget>) {
    let mut ok: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    let mut skipped = Vec::new();
    let zone_prefix = format!("{}-", config.region);
    for t in targets {
        let reason = match t.provider_id.as_deref() {
            None => "the node has no providerID (is it registered by the GCE cloud provider?)".to_string(),
            Some(pid) => match parse_provider_id(pid) {
                None => {
                    format!("providerID {pid:?} does not name a GCE instance (expected gce://<project>/<zone>/<name>)")
                }
                Some((project, _, _)) if project != config.project => {
                    format!("providerID {pid:?} is in project {project}, the load balancers are in {}", config.project)
                }
                Some((_, zone, _)) if !zone.starts_with(&zone_prefix) => {
                    format!("providerID {pid:?} is in zone {zone}, outside region {}", config.region)
                }
                Some((project, zone, name)) => {
                    ok.entry(zone.to_string()).or_default().insert(links::instance(project, zone, name));
                    continue;
                }
            },
        };
        skipped.push(SkippedTarget { node: t.node.clone(), reason });
    }
    (ok, skipped)
}

/// The scheme after annotations.
pub fn scheme(spec: &LoadBalancerSpec, opts: &Options) -> Scheme {
    opts.scheme.unwrap_or(spec.scheme)
}

fn is_public(ip: Ipv4Addr) -> bool {
    !(ip.is_private()
        || ip.is_loopback()
        || ip.is_link_local()
        || ip.is_unspecified()
        || ip.is_broadcast()
        || ip.is_multicast()
        || ip.octets()[0] == 100 && (ip.octets()[1] & 0xc0) == 64)
}

/// Cross-field problems of spec + options + configuration (no I/O).
pub fn spec_problems(spec: &LoadBalancerSpec, opts: &Options, config: &GcpConfig) -> Vec<String> {
    let mut problems = Vec::new();
    for l in &spec.listeners {
        if l.protocol == Protocol::Sctp {
            problems.push(format!(
                "port {}: protocol SCTP is not supported by GCE backend-service load balancers (use TCP or UDP)",
                l.port
            ));
        }
    }
    let scheme = scheme(spec, opts);
    if let Some(s) = opts.scheme
        && spec.scheme == Scheme::Internal
        && s == Scheme::InternetFacing
    {
        problems.push(format!(
            "annotation {}: \"External\" contradicts cloudlb.io/internal: \"true\"; set only one",
            annotation("load-balancer-type")
        ));
    }
    match spec.requested_ip {
        Some(IpAddr::V6(ip)) => {
            problems.push(format!("loadBalancerIP {ip}: IPv6 is not supported by cloudlb's gcp provider"))
        }
        Some(IpAddr::V4(ip)) if scheme == Scheme::InternetFacing && !is_public(ip) => problems.push(format!(
            "loadBalancerIP {ip} is not a public address; an external load balancer needs an external IP reserved \
             in region {}",
            config.region
        )),
        Some(IpAddr::V4(ip)) if scheme == Scheme::Internal && is_public(ip) => problems.push(format!(
            "loadBalancerIP {ip} is a public address; an internal load balancer needs a free IP of its subnetwork"
        )),
        _ => {}
    }
    if spec.requested_ip.is_some() && opts.address_name.is_some() {
        problems.push(format!(
            "loadBalancerIP and annotation {} both ask for an address; set only one",
            annotation("load-balancer-ip-addresses")
        ));
    }
    let v4_sources = spec.source_ranges.iter().filter(|r| matches!(r, IpNet::V4(_))).count();
    if v4_sources == 0 && !spec.source_ranges.is_empty() {
        problems.push(format!(
            "loadBalancerSourceRanges {:?} has no IPv4 range; cloudlb's gcp provider builds IPv4 load balancers",
            spec.source_ranges.iter().map(ToString::to_string).collect::<Vec<_>>()
        ));
    }
    match scheme {
        Scheme::Internal => {
            if opts.network_tier == Some(Tier::Standard) {
                problems.push(format!(
                    "annotation {}: \"Standard\" applies to external load balancers only; this Service is internal",
                    annotation("network-tier")
                ));
            }
            if opts.subnet.is_none() && config.subnetwork.is_none() {
                problems.push(format!(
                    "an internal load balancer needs a subnetwork: start cloudlb with --gcp-subnetwork or set \
                     annotation {}",
                    annotation("internal-load-balancer-subnet")
                ));
            }
        }
        Scheme::InternetFacing => {
            for (key, set) in [
                ("internal-load-balancer-subnet", opts.subnet.is_some()),
                ("internal-load-balancer-allow-global-access", opts.global_access.is_some()),
            ] {
                if set {
                    problems.push(format!(
                        "annotation {} applies to internal load balancers only; this Service is external",
                        annotation(key)
                    ));
                }
            }
        }
    }
    problems
}

fn health(id: &LoadBalancerId, spec: &LoadBalancerSpec) -> Health {
    let hc = &spec.health_check;
    match (hc.target, hc.port) {
        (HealthTarget::ServiceHealthCheckNodePort, Some(port)) => {
            let interval = i32::try_from(hc.interval_seconds.clamp(1, 300)).unwrap_or(10);
            Health {
                name: names::load_balancer(id),
                shared: false,
                port,
                path: hc.path.clone().unwrap_or_else(|| HEALTHZ.to_string()),
                interval,
                timeout: i32::try_from(hc.timeout_seconds.clamp(1, 300)).unwrap_or(5).min(interval),
                healthy: i32::try_from(hc.healthy_threshold.clamp(1, 10)).unwrap_or(2),
                unhealthy: i32::try_from(hc.unhealthy_threshold.clamp(1, 10)).unwrap_or(3),
                firewall: names::health_check_firewall(id),
            }
        }
        // Shared by every Service of the cluster, so per-Service tuning cannot apply; these are
        // the timings Google's controllers use for the node check.
        _ => Health {
            name: names::node_health_check(&id.cluster),
            shared: true,
            port: KUBE_PROXY_PORT,
            path: HEALTHZ.to_string(),
            interval: 8,
            timeout: 1,
            healthy: 1,
            unhealthy: 3,
            firewall: names::node_health_check_firewall(&id.cluster),
        },
    }
}

pub fn build(id: &LoadBalancerId, spec: &LoadBalancerSpec, opts: &Options, config: &GcpConfig) -> Plan {
    let scheme = scheme(spec, opts);
    let protocols = spec.protocols();
    let tcp = protocols.contains(&Protocol::Tcp);
    let udp = protocols.contains(&Protocol::Udp);
    let (bs_protocol, fr_protocol) = match (tcp, udp) {
        (true, true) => ("UNSPECIFIED", "L3_DEFAULT"),
        (false, true) => ("UDP", "UDP"),
        _ => ("TCP", "TCP"),
    };
    let mut allowed: BTreeMap<&'static str, Vec<u16>> = BTreeMap::new();
    for l in &spec.listeners {
        let key = match l.protocol {
            Protocol::Tcp => "tcp",
            Protocol::Udp => "udp",
            Protocol::Sctp => continue,
        };
        let ports = allowed.entry(key).or_default();
        if !ports.contains(&l.port) {
            ports.push(l.port);
        }
    }
    allowed.values_mut().for_each(|p| p.sort_unstable());
    let mut ports: Vec<u16> = allowed.values().flatten().copied().collect();
    ports.sort_unstable();
    ports.dedup();
    let ports =
        if fr_protocol == "L3_DEFAULT" || ports.len() > MAX_LISTED_PORTS { Ports::All } else { Ports::List(ports) };
    let mut source_ranges: Vec<String> =
        spec.source_ranges.iter().filter(|r| matches!(r, IpNet::V4(_))).map(|r| r.trunc().to_string()).collect();
    if source_ranges.is_empty() {
        source_ranges.push("0.0.0.0/0".into());
    }
    source_ranges.sort();
    source_ranges.dedup();
    let (instances, skipped) = targets(&spec.targets, config);
    let ip = match (spec.requested_ip, &opts.address_name) {
        (_, Some(name)) => IpRequest::Address(name.clone()),
        (Some(IpAddr::V4(ip)), None) => IpRequest::Ip(ip),
        _ => IpRequest::Any,
    };
    let subnetwork = match scheme {
        Scheme::Internal => {
            opts.subnet.as_deref().or(config.subnetwork.as_deref()).map(|s| links::subnetwork(config, s))
        }
        Scheme::InternetFacing => None,
    };
    Plan {
        name: names::load_balancer(id),
        scheme,
        bs_protocol,
        fr_protocol,
        ports,
        session_affinity: match spec.session_affinity {
            SessionAffinity::None => "NONE",
            SessionAffinity::ClientIp { .. } => "CLIENT_IP",
        },
        health: health(id, spec),
        allowed,
        source_ranges,
        instances,
        skipped,
        ip,
        tier: if scheme == Scheme::Internal { Tier::Premium } else { opts.network_tier.unwrap_or(Tier::Premium) },
        subnetwork,
        global_access: scheme == Scheme::Internal && opts.global_access.unwrap_or(false),
        spec_hash: spec.hash(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use cloudlb_provider::{HealthCheckProtocol, Listener, Target, conformance};

    fn config() -> GcpConfig {
        GcpConfig::new("proj", "us-central1", "default")
    }

    fn target(node: &str, pid: Option<&str>) -> Target {
        Target { node: node.into(), provider_id: pid.map(String::from), addresses: vec![] }
    }

    #[test]
    fn provider_ids() {
        assert_eq!(parse_provider_id("gce://p/us-central1-a/n1"), Some(("p", "us-central1-a", "n1")));
        assert_eq!(parse_provider_id("gce://p/z"), None);
        assert_eq!(parse_provider_id("aws:///us-east-1a/i-0abc"), None);
        assert_eq!(parse_provider_id("gce://p/z/n/extra"), None);
    }

    #[test]
    fn targets_group_by_zone_and_skip_what_cannot_join() {
        let mut spec = conformance::spec(&[80]);
        spec.targets = vec![
            target("a", Some("gce://proj/us-central1-a/a")),
            target("b", Some("gce://proj/us-central1-b/b")),
            target("c", Some("gce://proj/us-central1-a/c")),
            target("other-project", Some("gce://elsewhere/us-central1-a/x")),
            target("other-region", Some("gce://proj/europe-west1-b/y")),
            target("kind", Some("kind://docker/kind/node")),
            target("none", None),
        ]
        .into();
        let (ok, skipped) = targets(&spec.targets, &config());
        assert_eq!(ok.keys().collect::<Vec<_>>(), ["us-central1-a", "us-central1-b"]);
        assert_eq!(ok["us-central1-a"].len(), 2);
        assert!(ok["us-central1-a"].iter().all(|l| l.contains("/projects/proj/zones/us-central1-a/instances/")));
        let skipped: BTreeMap<_, _> = skipped.into_iter().map(|s| (s.node, s.reason)).collect();
        assert_eq!(skipped.len(), 4);
        assert!(skipped["other-project"].contains("project elsewhere"));
        assert!(skipped["other-region"].contains("outside region us-central1"));
        assert!(skipped["kind"].contains("kind://docker/kind/node"));
        assert!(skipped["none"].contains("no providerID"));
    }

    #[test]
    fn protocols_ports_and_firewall() {
        let id = conformance::id("plan");
        let mut spec = conformance::spec(&[80, 443]);
        let p = build(&id, &spec, &Options::default(), &config());
        assert_eq!((p.bs_protocol, p.fr_protocol), ("TCP", "TCP"));
        assert_eq!(p.ports, Ports::List(vec![80, 443]));
        assert_eq!(p.allowed.get("tcp"), Some(&vec![80, 443]));
        assert_eq!(p.source_ranges, vec!["0.0.0.0/0".to_string()]);
        assert!(p.health.shared && p.health.port == KUBE_PROXY_PORT);

        spec.listeners.push(Listener { port: 53, protocol: Protocol::Udp, node_port: 30053, name: None });
        spec.listeners.sort();
        let p = build(&id, &spec, &Options::default(), &config());
        assert_eq!((p.bs_protocol, p.fr_protocol), ("UNSPECIFIED", "L3_DEFAULT"));
        assert_eq!(p.ports, Ports::All, "L3_DEFAULT rules take every port");
        assert_eq!(p.allowed.get("udp"), Some(&vec![53]));

        let spec = conformance::spec(&[1, 2, 3, 4, 5, 6]);
        assert_eq!(build(&id, &spec, &Options::default(), &config()).ports, Ports::All);
    }

    #[test]
    fn local_traffic_policy_gets_its_own_check() {
        let id = conformance::id("etp");
        let mut spec = conformance::spec(&[80]);
        spec.health_check.target = HealthTarget::ServiceHealthCheckNodePort;
        spec.health_check.protocol = HealthCheckProtocol::Http;
        spec.health_check.port = Some(31999);
        spec.health_check.path = Some("/healthz".into());
        let p = build(&id, &spec, &Options::default(), &config());
        assert!(!p.health.shared);
        assert_eq!((p.health.port, p.health.path.as_str()), (31999, "/healthz"));
        assert_eq!(p.health.name, names::load_balancer(&id));
        assert_eq!(p.health.firewall, names::health_check_firewall(&id));
    }

    #[test]
    fn problems_name_field_and_value() {
        let c = config();
        let mut spec = conformance::spec(&[80]);
        spec.listeners.push(Listener { port: 9, protocol: Protocol::Sctp, node_port: 30009, name: None });
        spec.requested_ip = Some("10.0.0.5".parse().unwrap());
        let problems = spec_problems(&spec, &Options::default(), &c);
        assert_eq!(problems.len(), 2, "{problems:?}");
        assert!(problems[0].contains("SCTP"));
        assert!(problems[1].contains("loadBalancerIP 10.0.0.5"));

        let mut spec = conformance::spec(&[80]);
        spec.scheme = Scheme::Internal;
        let problems = spec_problems(&spec, &Options::default(), &c);
        assert!(problems.len() == 1 && problems[0].contains("--gcp-subnetwork"), "{problems:?}");
        let mut with_subnet = c.clone();
        with_subnet.subnetwork = Some("nodes".into());
        assert!(spec_problems(&spec, &Options::default(), &with_subnet).is_empty());
        let p = build(&conformance::id("i"), &spec, &Options::default(), &with_subnet);
        assert_eq!(p.subnetwork.as_deref(), Some(links::subnetwork(&with_subnet, "nodes").as_str()));

        let mut spec = conformance::spec(&[80]);
        spec.source_ranges = vec!["2001:db8::/32".parse().unwrap()];
        let problems = spec_problems(&spec, &Options::default(), &c);
        assert!(problems.len() == 1 && problems[0].contains("2001:db8::/32"), "{problems:?}");
    }
}
