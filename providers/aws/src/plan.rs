//! The desired AWS state for one Service, computed purely from (id, spec, options, config).
//!
//! Applying it is a separate step (`ensure.rs`); keeping this pure makes the interesting rules
//! (TCP_UDP merging, TLS ports, health checks, skipped targets, security-group rules) testable
//! without an emulator, and lets `validate` run the same checks without I/O.

use std::collections::{BTreeMap, BTreeSet};

use aws_sdk_elasticloadbalancingv2::types::ProtocolEnum;
use cloudlb_provider::{LoadBalancerId, LoadBalancerSpec, Protocol, Scheme, SessionAffinity, Target};
use ipnet::IpNet;

use crate::health::{self, HealthSettings};
use crate::names;
use crate::options::{DEFAULT_SSL_POLICY, IpAddressType, Options, PortRef, annotation};

/// Protocol of a target group (what the NLB speaks to the nodes).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum TgProtocol {
    Tcp,
    Udp,
    TcpUdp,
    /// ALB target groups.
    Http,
}

impl TgProtocol {
    pub fn letter(self) -> char {
        match self {
            TgProtocol::Tcp => 't',
            TgProtocol::Udp => 'u',
            TgProtocol::TcpUdp => 'b',
            TgProtocol::Http => 'h',
        }
    }
    pub fn to_aws(self) -> ProtocolEnum {
        match self {
            TgProtocol::Tcp => ProtocolEnum::Tcp,
            TgProtocol::Udp => ProtocolEnum::Udp,
            TgProtocol::TcpUdp => ProtocolEnum::TcpUdp,
            TgProtocol::Http => ProtocolEnum::Http,
        }
    }
}

/// Protocol of a listener (what clients speak to the NLB).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ListenerProtocol {
    Tcp,
    Udp,
    TcpUdp,
    Tls,
}

impl ListenerProtocol {
    pub fn to_aws(self) -> ProtocolEnum {
        match self {
            ListenerProtocol::Tcp => ProtocolEnum::Tcp,
            ListenerProtocol::Udp => ProtocolEnum::Udp,
            ListenerProtocol::TcpUdp => ProtocolEnum::TcpUdp,
            ListenerProtocol::Tls => ProtocolEnum::Tls,
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DesiredTargetGroup {
    pub name: String,
    /// The listener (Service) port it serves.
    pub listener_port: u16,
    pub protocol: TgProtocol,
    pub node_port: u16,
    pub health: HealthSettings,
    /// Attributes we set (managed defaults + `proxy-protocol` + `target-group-attributes`).
    pub attributes: BTreeMap<String, String>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DesiredListener {
    pub port: u16,
    pub protocol: ListenerProtocol,
    /// Name of the target group it forwards to.
    pub target_group: String,
    pub certificate: Option<String>,
    pub ssl_policy: Option<String>,
}

/// One ingress rule of the load balancer's security group.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct SgRule {
    /// `tcp` or `udp`.
    pub protocol: &'static str,
    pub port: u16,
    pub cidr: IpNet,
}

/// A node the load balancer cannot target, and why.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SkippedTarget {
    pub node: String,
    pub reason: String,
}

#[derive(Clone, Debug)]
pub struct Plan {
    pub lb_name: String,
    pub sg_name: String,
    pub scheme: Scheme,
    /// Subnets from the `subnets` annotation: enforced on an existing load balancer.
    pub annotated_subnets: Option<Vec<String>>,
    pub listeners: Vec<DesiredListener>,
    pub target_groups: Vec<DesiredTargetGroup>,
    /// Instance ids to register in every target group.
    pub instances: BTreeSet<String>,
    pub skipped: Vec<SkippedTarget>,
    pub sg_rules: BTreeSet<SgRule>,
    pub lb_attributes: BTreeMap<String, String>,
    pub eip_allocations: Option<Vec<String>>,
    pub additional_tags: BTreeMap<String, String>,
    /// Whether this load balancer gets the backend security group and node rules (unless the
    /// provider has them off): the `manage-backend-security-group-rules` annotation.
    pub manage_backend: bool,
    pub ip_address_type: IpAddressType,
    pub spec_hash: String,
}

/// With `dualstack`, "everyone over IPv4" (`0.0.0.0/0`) in `sources` is everyone over IPv6 too:
/// the load balancer's security group would drop every IPv6 client otherwise (Services are
/// IPv4-only here, so the controller's default source range is `0.0.0.0/0` alone).
pub fn with_ip_address_type(mut sources: Vec<IpNet>, ip_address_type: IpAddressType) -> Vec<IpNet> {
    let everyone_v4 = IpNet::V4(ipnet::Ipv4Net::default());
    let everyone_v6 = IpNet::V6(ipnet::Ipv6Net::default());
    if ip_address_type == IpAddressType::Dualstack && sources.contains(&everyone_v4) && !sources.contains(&everyone_v6)
    {
        sources.push(everyone_v6);
    }
    sources
}

/// Target-group attributes we always manage, with the value meaning "off" (the AWS default), so
/// that removing an annotation turns the feature off again.
pub const PROXY_PROTOCOL_V2: &str = "proxy_protocol_v2.enabled";
pub const STICKINESS_ENABLED: &str = "stickiness.enabled";
pub const STICKINESS_TYPE: &str = "stickiness.type";

/// AWS's value of a managed attribute when the target group does not list it.
pub fn attribute_default(key: &str) -> Option<&'static str> {
    match key {
        PROXY_PROTOCOL_V2 | STICKINESS_ENABLED => Some("false"),
        STICKINESS_TYPE => Some("source_ip"),
        _ => None,
    }
}

/// The EC2 instance id in a node's providerID (`aws:///us-east-1a/i-0abc...`).
pub fn instance_id(provider_id: &str) -> Option<String> {
    let rest = provider_id.strip_prefix("aws://")?;
    let last = rest.rsplit('/').next()?;
    let hex = last.strip_prefix("i-")?;
    (hex.len() >= 8 && hex.chars().all(|c| c.is_ascii_hexdigit())).then(|| last.to_string())
}

/// Which spec targets can be registered, and which cannot (with the reason).
pub fn targets(targets: &[Target]) -> (BTreeSet<String>, Vec<SkippedTarget>) {
    let mut ok = BTreeSet::new();
    let mut skipped = Vec::new();
    for t in targets {
        match t.provider_id.as_deref() {
            Some(pid) => match instance_id(pid) {
                Some(i) => {
                    ok.insert(i);
                }
                None => skipped.push(SkippedTarget {
                    node: t.node.clone(),
                    reason: format!("providerID {pid:?} does not name an EC2 instance (expected aws:///<zone>/i-...)"),
                }),
            },
            None => skipped.push(SkippedTarget {
                node: t.node.clone(),
                reason: "the node has no providerID (is the node registered by the AWS cloud provider?)".into(),
            }),
        }
    }
    (ok, skipped)
}

struct PortGroup {
    port: u16,
    tcp: Option<u16>,
    udp: Option<u16>,
    names: Vec<String>,
}

fn port_groups(spec: &LoadBalancerSpec) -> Vec<PortGroup> {
    let mut groups: BTreeMap<u16, PortGroup> = BTreeMap::new();
    for l in &spec.listeners {
        let g = groups.entry(l.port).or_insert(PortGroup { port: l.port, tcp: None, udp: None, names: vec![] });
        match l.protocol {
            Protocol::Tcp => g.tcp = Some(l.node_port),
            Protocol::Udp => g.udp = Some(l.node_port),
            Protocol::Sctp => {}
        }
        if let Some(n) = &l.name {
            g.names.push(n.clone());
        }
    }
    groups.into_values().collect()
}

fn wants_tls(opts: &Options, g: &PortGroup) -> bool {
    opts.ssl_cert.is_some()
        && match &opts.ssl_ports {
            None => true,
            Some(refs) => refs.iter().any(|r| match r {
                PortRef::Number(n) => *n == g.port,
                PortRef::Name(n) => g.names.contains(n),
            }),
        }
}

/// Cross-field problems of spec + options (no I/O): what `validate` adds to the option problems.
pub fn spec_problems(spec: &LoadBalancerSpec, opts: &Options) -> Vec<String> {
    let mut problems = Vec::new();
    let groups = port_groups(spec);
    for l in &spec.listeners {
        if l.protocol == Protocol::Sctp {
            problems.push(format!("port {}: SCTP is not supported by Network Load Balancers (use TCP or UDP)", l.port));
        }
    }
    for g in &groups {
        if let (Some(t), Some(u)) = (g.tcp, g.udp)
            && t != u
        {
            problems.push(format!(
                "port {} is used with TCP (nodePort {t}) and UDP (nodePort {u}): an NLB serves both on one TCP_UDP \
                 listener forwarding to a single node port; give both Service ports the same nodePort",
                g.port
            ));
        }
        if wants_tls(opts, g) && opts.ssl_ports.is_some() && g.udp.is_some() {
            problems.push(format!(
                "annotation {}: port {} carries UDP, but TLS listeners are TCP only",
                annotation("ssl-ports"),
                g.port
            ));
        }
    }
    if let Some(refs) = &opts.ssl_ports {
        if opts.ssl_cert.is_none() {
            problems.push(format!(
                "annotation {} is set without {}: a TLS listener needs a certificate",
                annotation("ssl-ports"),
                annotation("ssl-cert")
            ));
        }
        for r in refs {
            let found = groups.iter().any(|g| match r {
                PortRef::Number(n) => *n == g.port,
                PortRef::Name(n) => g.names.contains(n),
            });
            if !found {
                let v = match r {
                    PortRef::Number(n) => n.to_string(),
                    PortRef::Name(n) => n.clone(),
                };
                problems.push(format!(
                    "annotation {}: {v:?} is not a port of this Service; accepted: \"*\" or the Service's port numbers/names",
                    annotation("ssl-ports")
                ));
            }
        }
    }
    let h = health::desired(&spec.health_check, TgProtocol::Tcp, &opts.health);
    if h.timeout >= h.interval {
        problems.push(format!(
            "health check timeout {} s must be shorter than its interval {} s (annotations {} and {})",
            h.timeout,
            h.interval,
            annotation("healthcheck-timeout"),
            annotation("healthcheck-interval")
        ));
    }
    let scheme = opts.scheme.unwrap_or(spec.scheme);
    if opts.eip_allocations.is_some() && scheme == Scheme::Internal {
        problems.push(format!(
            "annotation {} needs an internet-facing load balancer, but the Service is internal",
            annotation("eip-allocations")
        ));
    }
    if let (Some(eips), Some(subnets)) = (&opts.eip_allocations, &opts.subnets)
        && eips.len() != subnets.len()
    {
        problems.push(format!(
            "annotation {} lists {} allocations but {} lists {} subnets; give one allocation per subnet",
            annotation("eip-allocations"),
            eips.len(),
            annotation("subnets"),
            subnets.len()
        ));
    }
    problems
}

/// Whether `rules` fit one security group under `quota` (per address family), else the problem
/// with the numbers: how many rules, from how many source ranges and ports.
pub fn security_group_rules_problem(rules: &BTreeSet<SgRule>, quota: usize) -> Option<String> {
    let v4 = rules.iter().filter(|r| matches!(r.cidr, IpNet::V4(_))).count();
    let v6 = rules.len() - v4;
    let (family, n) = if v4 >= v6 { ("IPv4", v4) } else { ("IPv6", v6) };
    if n <= quota {
        return None;
    }
    let ranges: BTreeSet<&IpNet> =
        rules.iter().filter(|r| matches!(r.cidr, IpNet::V4(_)) == (family == "IPv4")).map(|r| &r.cidr).collect();
    let ports: BTreeSet<(&str, u16)> = rules.iter().map(|r| (r.protocol, r.port)).collect();
    Some(format!(
        "the load balancer's security group would need {n} inbound {family} rules ({} source ranges x {} \
         ports and protocols), more than the quota of {quota} per security group: aggregate the source ranges \
         into fewer CIDRs or use fewer ports, or raise the quota in AWS and start cloudlb with \
         --aws-security-group-rules-quota",
        ranges.len(),
        ports.len()
    ))
}

pub fn build(id: &LoadBalancerId, spec: &LoadBalancerSpec, opts: &Options) -> Plan {
    let scheme = opts.scheme.unwrap_or(spec.scheme);
    let mut listeners = Vec::new();
    let mut target_groups = Vec::new();
    let mut sg_rules = BTreeSet::new();
    let sources: Vec<IpNet> = if spec.source_ranges.is_empty() {
        vec![IpNet::V4(ipnet::Ipv4Net::default())]
    } else {
        spec.source_ranges.clone()
    };
    let sources = with_ip_address_type(sources, opts.ip_address_type);
    for g in port_groups(spec) {
        let (tg_protocol, node_port) = match (g.tcp, g.udp) {
            (Some(t), Some(_)) => (TgProtocol::TcpUdp, t),
            (Some(t), None) => (TgProtocol::Tcp, t),
            (None, Some(u)) => (TgProtocol::Udp, u),
            (None, None) => continue, // SCTP only: refused by capabilities/validate
        };
        let tls = tg_protocol == TgProtocol::Tcp && wants_tls(opts, &g);
        let protocol = match (tg_protocol, tls) {
            (TgProtocol::Tcp | TgProtocol::Http, true) => ListenerProtocol::Tls,
            (TgProtocol::Tcp | TgProtocol::Http, false) => ListenerProtocol::Tcp,
            (TgProtocol::Udp, _) => ListenerProtocol::Udp,
            (TgProtocol::TcpUdp, _) => ListenerProtocol::TcpUdp,
        };
        let name = names::target_group(id, g.port, tg_protocol, node_port);
        // PROXY protocol v2 exists for TCP (and TLS) target groups only; AWS refuses it on UDP.
        let mut attributes = BTreeMap::new();
        if tg_protocol == TgProtocol::Tcp {
            attributes.insert(PROXY_PROTOCOL_V2.to_string(), opts.proxy_protocol.to_string());
        }
        match spec.session_affinity {
            SessionAffinity::None => {
                attributes.insert(STICKINESS_ENABLED.into(), "false".into());
            }
            SessionAffinity::ClientIp { .. } => {
                attributes.insert(STICKINESS_ENABLED.into(), "true".into());
                attributes.insert(STICKINESS_TYPE.into(), "source_ip".into());
            }
        }
        attributes.extend(opts.target_group_attributes.clone());
        target_groups.push(DesiredTargetGroup {
            name: name.clone(),
            listener_port: g.port,
            protocol: tg_protocol,
            node_port,
            health: health::desired(&spec.health_check, tg_protocol, &opts.health),
            attributes,
        });
        listeners.push(DesiredListener {
            port: g.port,
            protocol,
            target_group: name,
            certificate: if tls { opts.ssl_cert.clone() } else { None },
            ssl_policy: tls.then(|| opts.ssl_policy.clone().unwrap_or_else(|| DEFAULT_SSL_POLICY.into())),
        });
        for cidr in &sources {
            if g.tcp.is_some() {
                sg_rules.insert(SgRule { protocol: "tcp", port: g.port, cidr: cidr.trunc() });
            }
            if g.udp.is_some() {
                sg_rules.insert(SgRule { protocol: "udp", port: g.port, cidr: cidr.trunc() });
            }
        }
    }
    let (instances, skipped) = targets(&spec.targets);
    Plan {
        lb_name: names::load_balancer(id),
        sg_name: names::security_group(id),
        scheme,
        annotated_subnets: opts.subnets.clone(),
        listeners,
        target_groups,
        instances,
        skipped,
        sg_rules,
        lb_attributes: opts.lb_attributes.clone(),
        eip_allocations: opts.eip_allocations.clone(),
        additional_tags: opts.additional_tags.clone(),
        manage_backend: opts.manage_backend_rules.unwrap_or(true),
        ip_address_type: opts.ip_address_type,
        spec_hash: spec.hash(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use cloudlb_provider::conformance;
    use cloudlb_provider::{Listener, Target};

    fn listener(port: u16, protocol: Protocol, node_port: u16, name: Option<&str>) -> Listener {
        Listener { port, protocol, node_port, name: name.map(String::from) }
    }

    #[test]
    fn instance_ids_from_provider_ids() {
        assert_eq!(instance_id("aws:///us-east-1a/i-0123456789abcdef0").as_deref(), Some("i-0123456789abcdef0"));
        assert_eq!(instance_id("aws:////i-01234567").as_deref(), Some("i-01234567"));
        assert_eq!(instance_id("gce://p/z/n"), None);
        assert_eq!(instance_id("aws:///us-east-1a/fargate-ip-10-0-0-1"), None);
        assert_eq!(instance_id("aws:///us-east-1a/i-xyz"), None);
    }

    #[test]
    fn tcp_and_udp_on_one_port_become_tcp_udp() {
        let id = conformance::id("dns");
        let mut spec = conformance::spec(&[80]);
        spec.listeners = vec![
            listener(53, Protocol::Tcp, 30053, None),
            listener(53, Protocol::Udp, 30053, None),
            listener(80, Protocol::Tcp, 30080, None),
        ];
        let plan = build(&id, &spec, &Options::default());
        assert_eq!(plan.listeners.len(), 2);
        assert_eq!(plan.listeners[0].protocol, ListenerProtocol::TcpUdp);
        assert_eq!(plan.target_groups[0].protocol, TgProtocol::TcpUdp);
        assert_eq!(plan.target_groups[0].node_port, 30053);
        assert_eq!(plan.sg_rules.iter().filter(|r| r.port == 53).count(), 2);
        assert!(spec_problems(&spec, &Options::default()).is_empty());
        spec.listeners[1].node_port = 30054;
        let problems = spec_problems(&spec, &Options::default());
        assert_eq!(problems.len(), 1);
        assert!(problems[0].contains("same nodePort"), "{problems:?}");
    }

    #[test]
    fn health_check_timeout_must_be_below_interval() {
        let spec = conformance::spec(&[80]);
        let (opts, _) = crate::options::parse(&BTreeMap::from([("healthcheck-timeout".to_string(), "10".to_string())]));
        let problems = spec_problems(&spec, &opts);
        assert_eq!(problems.len(), 1, "{problems:?}");
        assert!(problems[0].contains("healthcheck-timeout"));
    }

    #[test]
    fn tls_ports_by_number_and_name() {
        let id = conformance::id("tls");
        let mut spec = conformance::spec(&[80]);
        spec.listeners =
            vec![listener(80, Protocol::Tcp, 30080, Some("http")), listener(443, Protocol::Tcp, 30443, Some("https"))];
        let (opts, _) = crate::options::parse(&BTreeMap::from([
            ("ssl-cert".to_string(), "arn:aws:acm:us-east-1:1:certificate/x".to_string()),
            ("ssl-ports".to_string(), "https".to_string()),
        ]));
        let plan = build(&id, &spec, &opts);
        assert_eq!(plan.listeners[0].protocol, ListenerProtocol::Tcp);
        assert_eq!(plan.listeners[1].protocol, ListenerProtocol::Tls);
        assert_eq!(plan.listeners[1].ssl_policy.as_deref(), Some(DEFAULT_SSL_POLICY));
        assert!(spec_problems(&spec, &opts).is_empty());
        let (opts, _) = crate::options::parse(&BTreeMap::from([("ssl-ports".to_string(), "8443".to_string())]));
        let problems = spec_problems(&spec, &opts);
        assert_eq!(problems.len(), 2, "{problems:?}");
    }

    #[test]
    fn targets_without_instance_ids_are_skipped_with_a_reason() {
        let mut spec = conformance::spec(&[80]);
        std::sync::Arc::make_mut(&mut spec.targets).push(Target {
            node: "good".into(),
            provider_id: Some("aws:///us-east-1a/i-0abcdef0123456789".into()),
            addresses: vec![],
        });
        std::sync::Arc::make_mut(&mut spec.targets).push(Target {
            node: "bad".into(),
            provider_id: Some("kind://x/y".into()),
            addresses: vec![],
        });
        let (ok, skipped) = targets(&spec.targets);
        assert_eq!(ok.into_iter().collect::<Vec<_>>(), vec!["i-0abcdef0123456789".to_string()]);
        assert_eq!(skipped.len(), 2);
        assert!(skipped.iter().any(|s| s.node == "bad" && s.reason.contains("kind://x/y")));
    }

    #[test]
    fn source_ranges_become_rules_and_affinity_becomes_stickiness() {
        let id = conformance::id("sg");
        let mut spec = conformance::spec(&[80, 443]);
        spec.source_ranges = vec!["10.0.0.0/8".parse().unwrap(), "192.168.0.0/16".parse().unwrap()];
        spec.session_affinity = SessionAffinity::ClientIp { timeout_seconds: 100 };
        let plan = build(&id, &spec, &Options { proxy_protocol: true, ..Default::default() });
        assert_eq!(plan.sg_rules.len(), 4);
        let a = &plan.target_groups[0].attributes;
        assert_eq!(a.get(STICKINESS_ENABLED).map(String::as_str), Some("true"));
        assert_eq!(a.get(PROXY_PROTOCOL_V2).map(String::as_str), Some("true"));
    }

    #[test]
    fn dualstack_lets_everyone_in_over_ipv6_too_and_keeps_restrictions() {
        let id = conformance::id("ds");
        let mut spec = conformance::spec(&[80]);
        let dualstack = Options { ip_address_type: IpAddressType::Dualstack, ..Default::default() };
        let cidrs = |plan: &Plan| plan.sg_rules.iter().map(|r| r.cidr.to_string()).collect::<Vec<_>>();
        assert_eq!(cidrs(&build(&id, &spec, &Options::default())), ["0.0.0.0/0"]);
        assert_eq!(cidrs(&build(&id, &spec, &dualstack)), ["0.0.0.0/0", "::/0"]);
        spec.source_ranges = vec!["10.0.0.0/8".parse().unwrap()];
        assert_eq!(cidrs(&build(&id, &spec, &dualstack)), ["10.0.0.0/8"], "a restriction stays one");
        assert_eq!(build(&id, &spec, &dualstack).ip_address_type, IpAddressType::Dualstack);
    }
}
