//! Annotation values (`spec.options`, prefix already cut) parsed into typed settings.
//!
//! Parsing is pure, so [`crate::AwsProvider::validate`] can report every fatal problem before any
//! cloud call, with the annotation, the value and what is accepted. `ensure` parses again and
//! refuses (`ProviderError::Invalid`) on the same ones, i.e. values it would have to use. Unknown
//! or unsupported keys are not fatal: the provider's `warnings` report them (an event and the
//! condition's message) and `ensure` ignores them, so a typo in a key never blocks a Service.
//!
//! Keys carried over from the AWS Load Balancer Controller and cloud-provider-aws:
//! - `cross-zone-load-balancing-enabled` is the load balancer attribute
//!   `load_balancing.cross_zone.enabled`; `attributes` may set the same attribute, and when both
//!   are set with different values that is a fatal problem naming both (neither silently wins).
//!   Like every attribute, it is left as it is when the annotation goes away.
//! - `ip-address-type` (`ipv4` | `dualstack`) is given at create and changed in place
//!   (SetIpAddressType); without it the load balancer is made with, or returns to, `ipv4`. With
//!   `dualstack`, "everyone" (`0.0.0.0/0`) in the source ranges also admits `::/0`, else IPv6
//!   clients would be dropped by the load balancer's security group.
//! - `target-node-labels` is read by the controller (an alias of `cloudlb.io/target-node-labels`,
//!   which it implements for every provider); this provider only accepts the key.
//! - `name` / `load-balancer-name` stay unsupported, reported as a warning that says why: the
//!   load balancer's name is derived from (cluster, Service uid), so it is unique and stable, and
//!   every look-up (ensure after a lost record, delete, gc) starts from it. A user-chosen name
//!   would need a second way to find the load balancer, a collision check across Services and
//!   clusters, and, since AWS cannot rename a load balancer, a re-create (new DNS name) on every
//!   change of the annotation; none of that is worth the risk of losing track of a load balancer.

use std::collections::BTreeMap;

use cloudlb_provider::options::OptionParser;
pub use cloudlb_provider::options::Problem;

use cloudlb_provider::Scheme;

use crate::OPTION_PREFIXES;

/// Keys this provider reads.
pub const SUPPORTED: &[&str] = &[
    "type",
    "nlb-target-type",
    "internal",
    "scheme",
    "subnets",
    "ssl-cert",
    "ssl-ports",
    "ssl-negotiation-policy",
    "backend-protocol",
    "proxy-protocol",
    "healthcheck-protocol",
    "healthcheck-port",
    "healthcheck-path",
    "healthcheck-interval",
    "healthcheck-timeout",
    "healthcheck-healthy-threshold",
    "healthcheck-unhealthy-threshold",
    "healthcheck-success-codes",
    "target-group-attributes",
    "attributes",
    "eip-allocations",
    "additional-resource-tags",
    crate::ensure::REPLACE_FAILED,
    "manage-backend-security-group-rules",
    "cross-zone-load-balancing-enabled",
    "ip-address-type",
    // Read by the controller (alias of cloudlb.io/target-node-labels), which selects the targets.
    "target-node-labels",
];

/// AWS Load Balancer Controller / cloud-provider-aws annotations users may bring along that this
/// provider does not implement (reported, so nobody believes they took effect).
pub const UNSUPPORTED: &[&str] = &[
    "private-ipv4-addresses",
    "security-groups",
    "extra-security-groups",
    "name",
    "load-balancer-name",
    "alpn-policy",
    "access-log-enabled",
    "connection-draining-enabled",
    "connection-idle-timeout",
];

/// Keys naming the load balancer, which cloudlb does not take (see the module doc).
pub const NAME_KEYS: &[&str] = &["name", "load-balancer-name"];

/// Why a name annotation is ignored (NLB and ALB).
pub fn name_not_supported(annotation: &str) -> String {
    format!(
        "annotation {annotation} is not supported: cloudlb names each load balancer itself (k8s-<namespace>-<name>-<hash>, \
         alb-... for Ingresses), unique per cluster and object, and finds it again by that name and its tags; \
         AWS cannot rename a load balancer, so a chosen name would mean re-creating it on every change; the \
         annotation is ignored"
    )
}

/// The load balancer attribute `cross-zone-load-balancing-enabled` sets.
pub const CROSS_ZONE: &str = "load_balancing.cross_zone.enabled";

/// `ip-address-type`: what the load balancer's addresses are (NLB and ALB).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum IpAddressType {
    #[default]
    Ipv4,
    Dualstack,
}

impl IpAddressType {
    pub const ACCEPTED: &[&str] = &["ipv4", "dualstack"];

    pub fn as_str(self) -> &'static str {
        match self {
            IpAddressType::Ipv4 => "ipv4",
            IpAddressType::Dualstack => "dualstack",
        }
    }

    pub fn to_aws(self) -> aws_sdk_elasticloadbalancingv2::types::IpAddressType {
        match self {
            IpAddressType::Ipv4 => aws_sdk_elasticloadbalancingv2::types::IpAddressType::Ipv4,
            IpAddressType::Dualstack => aws_sdk_elasticloadbalancingv2::types::IpAddressType::Dualstack,
        }
    }
}

/// `ip-address-type` (`None` when absent or invalid; an invalid value is a fatal problem).
pub fn ip_address_type(p: &mut OptionParser<'_>) -> Option<IpAddressType> {
    p.one_of("ip-address-type", IpAddressType::ACCEPTED).map(|v| match v.as_str() {
        "dualstack" => IpAddressType::Dualstack,
        _ => IpAddressType::Ipv4,
    })
}

/// Default TLS policy for `ssl-cert` listeners (TLS 1.3 and 1.2).
pub const DEFAULT_SSL_POLICY: &str = "ELBSecurityPolicy-TLS13-1-2-2021-06";

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HcProtocol {
    Tcp,
    Http,
    Https,
}

impl HcProtocol {
    pub fn as_str(self) -> &'static str {
        match self {
            HcProtocol::Tcp => "TCP",
            HcProtocol::Http => "HTTP",
            HcProtocol::Https => "HTTPS",
        }
    }
    pub fn is_http(self) -> bool {
        matches!(self, HcProtocol::Http | HcProtocol::Https)
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HcPort {
    TrafficPort,
    Port(u16),
}

impl HcPort {
    pub fn to_aws(self) -> String {
        match self {
            HcPort::TrafficPort => "traffic-port".into(),
            HcPort::Port(p) => p.to_string(),
        }
    }
}

/// Health-check annotations; each overrides what the spec asks for.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct HealthOverrides {
    pub protocol: Option<HcProtocol>,
    pub port: Option<HcPort>,
    pub path: Option<String>,
    pub interval: Option<u32>,
    pub timeout: Option<u32>,
    pub healthy_threshold: Option<u32>,
    pub unhealthy_threshold: Option<u32>,
    pub success_codes: Option<String>,
}

/// A Service port by number or by name (`ssl-ports`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PortRef {
    Number(u16),
    Name(String),
}

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Options {
    /// From `scheme`, else `internal`; `None` = the spec's scheme.
    pub scheme: Option<Scheme>,
    pub subnets: Option<Vec<String>>,
    pub ssl_cert: Option<String>,
    /// `None` = every TCP port (when `ssl_cert` is set).
    pub ssl_ports: Option<Vec<PortRef>>,
    pub ssl_policy: Option<String>,
    pub proxy_protocol: bool,
    pub health: HealthOverrides,
    pub target_group_attributes: BTreeMap<String, String>,
    pub lb_attributes: BTreeMap<String, String>,
    pub eip_allocations: Option<Vec<String>>,
    pub additional_tags: BTreeMap<String, String>,
    /// `replace-failed-load-balancer`: a load balancer AWS could not provision is deleted and
    /// made again instead of reported.
    pub replace_failed: bool,
    /// `manage-backend-security-group-rules`: `Some(false)` = this load balancer gets no backend
    /// security group and no node rules (`node_security.rs`); `None` = the provider's setting.
    pub manage_backend_rules: Option<bool>,
    /// `ip-address-type`; absent = IPv4 (what the load balancer is made with, and returns to).
    pub ip_address_type: IpAddressType,
}

/// How users write the key: the first prefix + key.
pub fn annotation(key: &str) -> String {
    format!("{}{key}", OPTION_PREFIXES[0])
}

fn is_id(s: &str, prefix: &str) -> bool {
    s.strip_prefix(prefix).is_some_and(|rest| !rest.is_empty() && rest.chars().all(|c| c.is_ascii_hexdigit()))
}

fn is_success_codes(s: &str) -> bool {
    let code = |c: &str| c.len() == 3 && c.parse::<u16>().is_ok_and(|n| (200..=599).contains(&n));
    !s.is_empty()
        && s.split(',').all(|part| match part.split_once('-') {
            Some((a, b)) => code(a) && code(b) && a <= b,
            None => code(part),
        })
}

fn is_attribute_key(k: &str) -> bool {
    !k.is_empty() && k.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_' || c == '.')
}

/// `scheme` (`internal` | `internet-facing`) or `internal` (`true` | `false`), which must agree
/// when both are set (the NLB and ALB annotations share these keys).
pub fn scheme(p: &mut OptionParser<'_>, annotation: fn(&str) -> String) -> Option<Scheme> {
    let internal = p.bool("internal");
    let scheme = p
        .one_of("scheme", &["internal", "internet-facing"])
        .map(|s| if s == "internal" { Scheme::Internal } else { Scheme::InternetFacing });
    if let (Some(i), Some(s)) = (internal, scheme)
        && i != (s == Scheme::Internal)
    {
        p.problems.push(Problem {
            message: format!(
                "annotations {} and {} disagree; set only one",
                annotation("internal"),
                annotation("scheme")
            ),
            fatal: true,
        });
    }
    scheme.or(internal.map(|i| if i { Scheme::Internal } else { Scheme::InternetFacing }))
}

/// Parse every option; problems in a readable form (never fails).
pub fn parse(options: &BTreeMap<String, String>) -> (Options, Vec<Problem>) {
    let mut p = OptionParser::new(options, annotation);
    let mut out = Options::default();

    for key in options.keys() {
        if SUPPORTED.contains(&key.as_str()) {
            continue;
        }
        let message = if NAME_KEYS.contains(&key.as_str()) {
            name_not_supported(&annotation(key))
        } else if UNSUPPORTED.contains(&key.as_str()) {
            format!("annotation {} is not supported by cloudlb's aws provider; remove it", annotation(key))
        } else {
            format!(
                "annotation {} is not known to cloudlb's aws provider (a typo?); known keys after the prefix: {}",
                annotation(key),
                SUPPORTED.join(", ")
            )
        };
        p.problems.push(Problem { message, fatal: false });
    }

    p.one_of("type", &["nlb", "external"]);
    p.one_of("nlb-target-type", &["instance"]);
    p.one_of("backend-protocol", &["tcp"]);

    out.scheme = scheme(&mut p, annotation);
    out.manage_backend_rules = p.bool("manage-backend-security-group-rules");

    if let Some(subnets) = p.list("subnets") {
        for s in &subnets {
            if !is_id(s, "subnet-") {
                p.bad(
                    "subnets",
                    s,
                    "a comma-separated list of subnet ids (subnet-0123abcd); subnet names are not supported",
                );
            }
        }
        if subnets.is_empty() {
            p.bad("subnets", "", "at least one subnet id");
        }
        out.subnets = Some(subnets);
    }

    if let Some(certs) = p.list("ssl-cert") {
        match certs.as_slice() {
            [one] if one.starts_with("arn:") => out.ssl_cert = Some(one.clone()),
            [one] => p.bad("ssl-cert", one, "a certificate ARN (arn:aws:acm:...)"),
            _ => {
                let v = certs.join(",");
                p.bad("ssl-cert", &v, "exactly one certificate ARN")
            }
        }
    }
    if let Some(ports) = p.list("ssl-ports") {
        if ports.iter().any(|s| s == "*") {
            out.ssl_ports = None;
        } else {
            out.ssl_ports = Some(
                ports
                    .into_iter()
                    .map(|s| match s.parse::<u16>() {
                        Ok(n) => PortRef::Number(n),
                        Err(_) => PortRef::Name(s),
                    })
                    .collect(),
            );
        }
    }
    out.ssl_policy = p.get("ssl-negotiation-policy").filter(|s| !s.is_empty()).map(String::from);
    if p.get("proxy-protocol").is_some() {
        out.proxy_protocol = p.one_of("proxy-protocol", &["*"]).is_some();
    }

    let h = &mut out.health;
    h.protocol = p.one_of("healthcheck-protocol", &["TCP", "HTTP", "HTTPS"]).map(|s| match s.as_str() {
        "http" => HcProtocol::Http,
        "https" => HcProtocol::Https,
        _ => HcProtocol::Tcp,
    });
    if let Some(v) = p.get("healthcheck-port").map(String::from) {
        if v == "traffic-port" {
            h.port = Some(HcPort::TrafficPort);
        } else {
            match v.parse::<u16>() {
                Ok(n) if n > 0 => h.port = Some(HcPort::Port(n)),
                _ => p.bad("healthcheck-port", &v, "\"traffic-port\" or a port number from 1 to 65535"),
            }
        }
    }
    if let Some(v) = p.get("healthcheck-path").map(String::from) {
        if v.starts_with('/') && v.len() <= 1024 {
            h.path = Some(v);
        } else {
            p.bad("healthcheck-path", &v, "an absolute path starting with \"/\" (at most 1024 chars)");
        }
    }
    h.interval = p.int("healthcheck-interval", 5, 300, " seconds");
    h.timeout = p.int("healthcheck-timeout", 2, 120, " seconds");
    h.healthy_threshold = p.int("healthcheck-healthy-threshold", 2, 10, "");
    h.unhealthy_threshold = p.int("healthcheck-unhealthy-threshold", 2, 10, "");
    if let Some(v) = p.get("healthcheck-success-codes").map(String::from) {
        if is_success_codes(&v) {
            h.success_codes = Some(v);
        } else {
            p.bad("healthcheck-success-codes", &v, "HTTP codes from 200 to 599 as \"200\", \"200,202\" or \"200-399\"");
        }
    }

    out.target_group_attributes = p.key_values("target-group-attributes", "attribute");
    out.lb_attributes = p.key_values("attributes", "attribute");
    for (key, attrs) in
        [("target-group-attributes", out.target_group_attributes.clone()), ("attributes", out.lb_attributes.clone())]
    {
        for k in attrs.keys().filter(|k| !is_attribute_key(k)) {
            p.bad(
                key,
                k,
                "attribute keys of lowercase letters, digits, '_' and '.', e.g. deregistration_delay.timeout_seconds",
            );
        }
    }

    if let Some(enabled) = p.bool("cross-zone-load-balancing-enabled") {
        let value = enabled.to_string();
        match out.lb_attributes.get(CROSS_ZONE) {
            Some(other) if !other.eq_ignore_ascii_case(&value) => p.problems.push(Problem {
                message: format!(
                    "annotations {} ({value:?}) and {} ({CROSS_ZONE}={other:?}) disagree; set only one",
                    annotation("cross-zone-load-balancing-enabled"),
                    annotation("attributes")
                ),
                fatal: true,
            }),
            _ => {
                out.lb_attributes.insert(CROSS_ZONE.into(), value);
            }
        }
    }
    out.ip_address_type = ip_address_type(&mut p).unwrap_or_default();

    if let Some(eips) = p.list("eip-allocations") {
        for e in &eips {
            if !is_id(e, "eipalloc-") {
                p.bad(
                    "eip-allocations",
                    e,
                    "a comma-separated list of allocation ids (eipalloc-0123abcd), one per subnet",
                );
            }
        }
        out.eip_allocations = Some(eips);
    }

    out.additional_tags = p.key_values("additional-resource-tags", "tag");
    out.replace_failed = p.bool(crate::ensure::REPLACE_FAILED).unwrap_or(false);
    for (k, v) in out.additional_tags.clone() {
        if crate::tags::is_reserved(&k) {
            p.bad("additional-resource-tags", &format!("{k}={v}"), "tag keys other than cloudlb.io/*, kubernetes.io/cluster/*, aws:*, service.k8s.aws/stack and kubernetes.io/service-name (cloudlb sets those)");
        } else if k.len() > 128 || v.len() > 256 {
            p.bad(
                "additional-resource-tags",
                &format!("{k}={v}"),
                "keys of at most 128 and values of at most 256 characters",
            );
        }
    }

    (out, p.problems)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn opts(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    }

    #[test]
    fn good_values_parse() {
        let (o, problems) = parse(&opts(&[
            ("internal", "true"),
            ("healthcheck-interval", "30"),
            ("healthcheck-port", "traffic-port"),
            ("healthcheck-protocol", "http"),
            ("healthcheck-path", "/ready"),
            ("healthcheck-success-codes", "200-399"),
            ("ssl-cert", "arn:aws:acm:us-east-1:123:certificate/abc"),
            ("ssl-ports", "443,https"),
            ("proxy-protocol", "*"),
            ("target-group-attributes", "deregistration_delay.timeout_seconds=10, preserve_client_ip.enabled=true"),
            ("eip-allocations", "eipalloc-0a,eipalloc-0b"),
            ("additional-resource-tags", "team=web,env=prod"),
            ("type", "nlb"),
        ]));
        assert!(problems.is_empty(), "{problems:?}");
        assert_eq!(o.scheme, Some(Scheme::Internal));
        assert_eq!(o.health.interval, Some(30));
        assert_eq!(o.health.protocol, Some(HcProtocol::Http));
        assert_eq!(o.ssl_ports, Some(vec![PortRef::Number(443), PortRef::Name("https".into())]));
        assert!(o.proxy_protocol);
        assert_eq!(o.target_group_attributes.len(), 2);
        assert_eq!(o.additional_tags.get("team").map(String::as_str), Some("web"));
    }

    #[test]
    fn bad_values_name_annotation_value_and_what_is_accepted() {
        let cases = [
            ("internal", "yes", "\"true\" or \"false\""),
            ("scheme", "public", "internet-facing"),
            ("healthcheck-interval", "abc", "5 to 300"),
            ("healthcheck-interval", "1", "5 to 300"),
            ("healthcheck-timeout", "500", "2 to 120"),
            ("healthcheck-healthy-threshold", "11", "2 to 10"),
            ("healthcheck-port", "http", "traffic-port"),
            ("healthcheck-path", "healthz", "starting with"),
            ("healthcheck-success-codes", "2xx", "200-399"),
            ("proxy-protocol", "v2", "\"*\""),
            ("ssl-cert", "mycert", "ARN"),
            ("eip-allocations", "1.2.3.4", "eipalloc-"),
            ("subnets", "public-a", "subnet ids"),
            ("target-group-attributes", "novalue", "pairs"),
            ("additional-resource-tags", "cloudlb.io/cluster=x", "tag keys other than"),
            ("nlb-target-type", "ip", "instance"),
        ];
        for (key, value, accepted) in cases {
            let (_, problems) = parse(&opts(&[(key, value)]));
            assert_eq!(problems.len(), 1, "{key}={value}: {problems:?}");
            let m = &problems[0].message;
            assert!(problems[0].fatal);
            assert!(m.contains(&annotation(key)), "{m}");
            assert!(m.contains(value), "{m}");
            assert!(m.contains(accepted), "{m}");
        }
    }

    #[test]
    fn unknown_and_unsupported_keys_are_reported_but_not_fatal() {
        let (_, problems) = parse(&opts(&[("healthcheck-intervall", "10"), ("security-groups", "sg-1")]));
        assert_eq!(problems.len(), 2);
        assert!(problems.iter().all(|p| !p.fatal));
        assert!(problems.iter().any(|p| p.message.contains("typo")));
        assert!(problems.iter().any(|p| p.message.contains("not supported")));
    }

    #[test]
    fn cross_zone_and_ip_address_type() {
        let (o, problems) =
            parse(&opts(&[("cross-zone-load-balancing-enabled", "TRUE"), ("ip-address-type", "DualStack")]));
        assert!(problems.is_empty(), "{problems:?}");
        assert_eq!(o.lb_attributes.get(CROSS_ZONE).map(String::as_str), Some("true"));
        assert_eq!(o.ip_address_type, IpAddressType::Dualstack);
        let (o, problems) = parse(&opts(&[]));
        assert!(problems.is_empty());
        assert_eq!((o.ip_address_type, o.lb_attributes.get(CROSS_ZONE)), (IpAddressType::Ipv4, None));

        // The same attribute through `attributes`: agreeing is fine, disagreeing is fatal and names both.
        let (o, problems) = parse(&opts(&[
            ("cross-zone-load-balancing-enabled", "false"),
            ("attributes", "load_balancing.cross_zone.enabled=false,deletion_protection.enabled=true"),
        ]));
        assert!(problems.is_empty(), "{problems:?}");
        assert_eq!(o.lb_attributes.len(), 2);
        let (_, problems) = parse(&opts(&[
            ("cross-zone-load-balancing-enabled", "false"),
            ("attributes", "load_balancing.cross_zone.enabled=true"),
        ]));
        assert_eq!(problems.len(), 1, "{problems:?}");
        assert!(problems[0].fatal);
        let m = &problems[0].message;
        assert!(m.contains(&annotation("cross-zone-load-balancing-enabled")) && m.contains(&annotation("attributes")));
        assert!(m.contains("disagree"), "{m}");

        for (key, value, accepted) in [
            ("cross-zone-load-balancing-enabled", "yes", "\"true\" or \"false\""),
            ("ip-address-type", "ipv6", "\"ipv4\", \"dualstack\""),
        ] {
            let (_, problems) = parse(&opts(&[(key, value)]));
            assert_eq!(problems.len(), 1, "{problems:?}");
            assert!(problems[0].fatal);
            let m = &problems[0].message;
            assert!(m.contains(&annotation(key)) && m.contains(value) && m.contains(accepted), "{m}");
        }
    }

    #[test]
    fn target_node_labels_is_accepted_and_a_name_is_a_warning_that_says_why() {
        let (_, problems) = parse(&opts(&[("target-node-labels", "pool=edge")]));
        assert!(problems.is_empty(), "read by the controller, not warned about: {problems:?}");
        for key in NAME_KEYS {
            let (_, problems) = parse(&opts(&[(key, "my-lb")]));
            assert_eq!(problems.len(), 1, "{problems:?}");
            assert!(!problems[0].fatal);
            let m = &problems[0].message;
            assert!(m.contains(&annotation(key)) && m.contains("cannot rename") && m.contains("ignored"), "{m}");
        }
    }

    #[test]
    fn conflicting_scheme_annotations() {
        let (_, problems) = parse(&opts(&[("internal", "true"), ("scheme", "internet-facing")]));
        assert_eq!(problems.len(), 1);
        assert!(problems[0].message.contains("disagree"));
        let (o, problems) = parse(&opts(&[("internal", "false")]));
        assert!(problems.is_empty());
        assert_eq!(o.scheme, Some(Scheme::InternetFacing));
    }
}
