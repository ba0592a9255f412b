//! Ingress annotations for ALBs (`spec.options`, prefix already cut), parsed into typed settings.
//!
//! Keys and meanings follow the AWS Load Balancer Controller's `alb.ingress.kubernetes.io/*`
//! annotations, so an Ingress carries over unchanged; `aws.cloudlb.io/*` is the same key under
//! our own prefix. Like the NLB options: every value `ensure` would use is checked before any call
//! (fatal problems), keys we do not implement are warnings and are ignored, so a typo in a key
//! never blocks an Ingress.
//!
//! `ip-address-type` (`ipv4` | `dualstack`) is the NLB's code path (`crate::options::IpAddressType`:
//! given at create, SetIpAddressType in place). `load-balancer-name` is a warning that says why,
//! as for NLBs (`crate::options::name_not_supported`).

use std::collections::BTreeMap;

use cloudlb_provider::Scheme;
use cloudlb_provider::options::{OptionParser, Problem};
use ipnet::IpNet;

use crate::options::{DEFAULT_SSL_POLICY, HcProtocol, IpAddressType};

/// How users write the key (the AWS Load Balancer Controller's prefix).
pub const PREFIX: &str = "alb.ingress.kubernetes.io/";

pub const SUPPORTED: &[&str] = &[
    "scheme",
    "internal",
    "subnets",
    "listen-ports",
    "certificate-arn",
    "ssl-policy",
    "ssl-redirect",
    "inbound-cidrs",
    "healthcheck-path",
    "healthcheck-protocol",
    "healthcheck-port",
    "healthcheck-interval-seconds",
    "healthcheck-timeout-seconds",
    "healthy-threshold-count",
    "unhealthy-threshold-count",
    "success-codes",
    "target-type",
    "target-group-attributes",
    "load-balancer-attributes",
    "tags",
    "additional-resource-tags",
    "ip-address-type",
    // Ingress groups: read by the controller, which merges the members into one spec.
    "group.name",
    "group.order",
    crate::ensure::REPLACE_FAILED,
    "manage-backend-security-group-rules",
];

/// AWS Load Balancer Controller annotations this provider does not implement (yet): reported as
/// warnings so nobody believes they took effect.
pub const UNSUPPORTED: &[&str] = &[
    "load-balancer-name",
    "security-groups",
    "backend-protocol",
    "backend-protocol-version",
    "wafv2-acl-arn",
    "waf-acl-id",
    "shield-advanced-protection",
    "auth-type",
    "customer-owned-ipv4-pool",
    "mutual-authentication",
    "use-regex-path-match",
];

/// Health checks of the target groups (the LBC's defaults where a value is not given, except
/// the success codes, see [`DEFAULT_SUCCESS_CODES`]).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct HealthOptions {
    pub path: Option<String>,
    pub protocol: Option<HcProtocol>,
    pub port: Option<u16>,
    pub interval: Option<u32>,
    pub timeout: Option<u32>,
    pub healthy_threshold: Option<u32>,
    pub unhealthy_threshold: Option<u32>,
    pub success_codes: Option<String>,
}

/// 2xx and 3xx: an application that answers `/` with a redirect to its login page is alive.
/// (The AWS Load Balancer Controller defaults to 200 only.)
pub const DEFAULT_SUCCESS_CODES: &str = "200-399";

/// A listener asked for by `listen-ports`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct ListenPort {
    pub https: bool,
    pub port: u16,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AlbOptions {
    pub scheme: Option<Scheme>,
    pub subnets: Option<Vec<String>>,
    pub listen_ports: Option<Vec<ListenPort>>,
    /// ACM certificate ARNs; the first is the listeners' default certificate.
    pub certificate_arns: Vec<String>,
    pub ssl_policy: String,
    /// `ssl-redirect`: every plain-HTTP listener redirects to this HTTPS port.
    pub ssl_redirect: Option<u16>,
    pub inbound_cidrs: Option<Vec<IpNet>>,
    pub health: HealthOptions,
    pub target_group_attributes: BTreeMap<String, String>,
    pub lb_attributes: BTreeMap<String, String>,
    pub tags: BTreeMap<String, String>,
    /// See [`crate::options::Options::replace_failed`].
    pub replace_failed: bool,
    /// `manage-backend-security-group-rules`: `Some(false)` = no backend security group and no
    /// node rules for this ALB (`node_security.rs`); `None` = the provider's setting.
    pub manage_backend_rules: Option<bool>,
    pub ip_address_type: IpAddressType,
}

impl Default for AlbOptions {
    fn default() -> Self {
        Self {
            scheme: None,
            subnets: None,
            listen_ports: None,
            certificate_arns: Vec::new(),
            ssl_policy: DEFAULT_SSL_POLICY.into(),
            ssl_redirect: None,
            inbound_cidrs: None,
            health: HealthOptions::default(),
            target_group_attributes: BTreeMap::new(),
            lb_attributes: BTreeMap::new(),
            tags: BTreeMap::new(),
            replace_failed: false,
            manage_backend_rules: None,
            ip_address_type: IpAddressType::Ipv4,
        }
    }
}

pub fn annotation(key: &str) -> String {
    format!("{PREFIX}{key}")
}

fn is_subnet_id(s: &str) -> bool {
    s.strip_prefix("subnet-").is_some_and(|h| !h.is_empty() && h.chars().all(|c| c.is_ascii_hexdigit()))
}

fn is_success_codes(s: &str) -> bool {
    let code = |c: &str| c.len() == 3 && c.parse::<u16>().is_ok_and(|n| (200..=499).contains(&n));
    !s.is_empty()
        && s.split(',').all(|part| match part.split_once('-') {
            Some((a, b)) => code(a) && code(b) && a <= b,
            None => code(part),
        })
}

/// `[{"HTTP": 80}, {"HTTPS": 443}]`.
fn parse_listen_ports(v: &str) -> Result<Vec<ListenPort>, ()> {
    let list: Vec<BTreeMap<String, serde_json::Value>> = serde_json::from_str(v).map_err(|_| ())?;
    let mut out = Vec::new();
    for item in list {
        if item.len() != 1 {
            return Err(());
        }
        for (proto, port) in item {
            let port = port.as_u64().and_then(|p| u16::try_from(p).ok()).filter(|p| *p > 0).ok_or(())?;
            let https = match proto.to_ascii_uppercase().as_str() {
                "HTTP" => false,
                "HTTPS" => true,
                _ => return Err(()),
            };
            out.push(ListenPort { https, port });
        }
    }
    out.sort();
    out.dedup();
    if out.is_empty() || out.windows(2).any(|w| w[0].port == w[1].port) {
        return Err(());
    }
    Ok(out)
}

/// Every option parsed; problems in a readable form (never fails).
pub fn parse(options: &BTreeMap<String, String>) -> (AlbOptions, Vec<Problem>) {
    let mut p = OptionParser::new(options, annotation);
    let mut out = AlbOptions::default();
    for key in options.keys() {
        if SUPPORTED.contains(&key.as_str()) {
            continue;
        }
        let message = if key == "load-balancer-name" {
            crate::options::name_not_supported(&annotation(key))
        } else if UNSUPPORTED.contains(&key.as_str())
            || key.starts_with("actions.")
            || key.starts_with("conditions.")
            || key.starts_with("auth-")
        {
            format!("annotation {} is not supported by cloudlb's ALBs yet; it is ignored", annotation(key))
        } else {
            format!(
                "annotation {} is not known to cloudlb's ALBs (a typo?); known keys after the prefix: {}",
                annotation(key),
                SUPPORTED.join(", ")
            )
        };
        p.problems.push(Problem { message, fatal: false });
    }

    out.scheme = crate::options::scheme(&mut p, annotation);
    out.manage_backend_rules = p.bool("manage-backend-security-group-rules");
    out.ip_address_type = crate::options::ip_address_type(&mut p).unwrap_or_default();

    if let Some(subnets) = p.list("subnets") {
        for s in subnets.iter().filter(|s| !is_subnet_id(s)) {
            p.bad("subnets", s, "a comma-separated list of subnet ids (subnet-0123abcd); names are not supported");
        }
        if subnets.len() < 2 {
            p.bad(
                "subnets",
                &subnets.join(","),
                "at least two subnet ids in two availability zones (an ALB needs two)",
            );
        }
        out.subnets = Some(subnets);
    }

    if let Some(v) = p.get("listen-ports") {
        match parse_listen_ports(v) {
            Ok(ports) => out.listen_ports = Some(ports),
            Err(()) => p.bad(
                "listen-ports",
                v,
                "a JSON list of {\"HTTP\": port} / {\"HTTPS\": port} objects with distinct ports, e.g. [{\"HTTP\":80},{\"HTTPS\":443}]",
            ),
        }
    }
    if let Some(arns) = p.list("certificate-arn") {
        for a in arns.iter().filter(|a| !(a.starts_with("arn:") && (a.contains(":acm:") || a.contains(":iam:")))) {
            p.bad("certificate-arn", a, "a comma-separated list of ACM (or IAM) certificate ARNs");
        }
        out.certificate_arns = arns;
    }
    if let Some(policy) = p.get("ssl-policy").filter(|s| !s.is_empty()) {
        out.ssl_policy = policy.to_string();
    }
    out.ssl_redirect = p.int("ssl-redirect", 1, 65535, "").and_then(|n| u16::try_from(n).ok());

    if let Some(list) = p.list("inbound-cidrs") {
        let mut cidrs = Vec::new();
        for c in &list {
            match c.parse::<IpNet>() {
                Ok(n) => cidrs.push(n.trunc()),
                Err(_) => p.bad("inbound-cidrs", c, "a comma-separated list of CIDRs, e.g. 10.0.0.0/8,192.168.0.0/16"),
            }
        }
        if list.is_empty() {
            p.bad("inbound-cidrs", "", "at least one CIDR");
        }
        cidrs.sort();
        cidrs.dedup();
        out.inbound_cidrs = Some(cidrs);
    }

    let h = &mut out.health;
    if let Some(path) = p.get("healthcheck-path") {
        if path.starts_with('/') {
            h.path = Some(path.to_string());
        } else {
            p.bad("healthcheck-path", path, "a path starting with /");
        }
    }
    h.protocol = p.one_of("healthcheck-protocol", &["HTTP", "HTTPS"]).map(|s| match s.as_str() {
        "https" => HcProtocol::Https,
        _ => HcProtocol::Http,
    });
    if let Some(v) = p.get("healthcheck-port").filter(|v| !v.eq_ignore_ascii_case("traffic-port")) {
        match v.parse::<u16>() {
            Ok(n) if n > 0 => h.port = Some(n),
            _ => p.bad("healthcheck-port", v, "\"traffic-port\" or a port number"),
        }
    }
    h.interval = p.int("healthcheck-interval-seconds", 5, 300, " seconds");
    h.timeout = p.int("healthcheck-timeout-seconds", 2, 120, " seconds");
    h.healthy_threshold = p.int("healthy-threshold-count", 2, 10, "");
    h.unhealthy_threshold = p.int("unhealthy-threshold-count", 2, 10, "");
    if let (Some(i), Some(t)) = (h.interval, h.timeout)
        && t >= i
    {
        p.problems.push(Problem {
            message: format!(
                "annotation {} ({t}s) must be shorter than {} ({i}s)",
                annotation("healthcheck-timeout-seconds"),
                annotation("healthcheck-interval-seconds")
            ),
            fatal: true,
        });
    }
    if let Some(codes) = p.get("success-codes") {
        if is_success_codes(codes) {
            h.success_codes = Some(codes.to_string());
        } else {
            p.bad(
                "success-codes",
                codes,
                "HTTP codes from 200 to 499 as a list or range, e.g. 200 or 200,302 or 200-399",
            );
        }
    }
    if let Some(t) = p.one_of("target-type", &["instance", "ip"])
        && t == "ip"
    {
        p.problems.push(Problem {
            message: format!(
                "annotation {}: \"ip\" is not supported yet; the targets are the nodes' instances on the Service's node port",
                annotation("target-type")
            ),
            fatal: false,
        });
    }
    out.target_group_attributes = p.key_values("target-group-attributes", "attribute");
    out.lb_attributes = p.key_values("load-balancer-attributes", "attribute");
    out.tags = p.key_values("additional-resource-tags", "tag");
    out.tags.extend(p.key_values("tags", "tag"));
    for k in out.tags.keys().filter(|k| crate::tags::is_reserved(k)).cloned().collect::<Vec<_>>() {
        p.problems.push(Problem {
            message: format!("annotation {}: tag {k:?} is managed by cloudlb and is ignored", annotation("tags")),
            fatal: false,
        });
    }
    out.replace_failed = p.bool(crate::ensure::REPLACE_FAILED).unwrap_or(false);
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
            ("scheme", "internal"),
            ("listen-ports", r#"[{"HTTP": 80}, {"HTTPS": 8443}]"#),
            ("certificate-arn", "arn:aws:acm:us-east-1:1:certificate/a, arn:aws:acm:us-east-1:1:certificate/b"),
            ("ssl-redirect", "8443"),
            ("inbound-cidrs", "10.0.0.0/8, 192.168.1.7/24"),
            ("healthcheck-path", "/ready"),
            ("healthcheck-interval-seconds", "20"),
            ("success-codes", "200,302"),
            ("tags", "team=a,env=prod"),
            ("target-group-attributes", "deregistration_delay.timeout_seconds=30"),
            ("ip-address-type", "dualstack"),
        ]));
        assert!(problems.is_empty(), "{problems:?}");
        assert_eq!(o.scheme, Some(Scheme::Internal));
        assert_eq!(
            o.listen_ports,
            Some(vec![ListenPort { https: false, port: 80 }, ListenPort { https: true, port: 8443 }])
        );
        assert_eq!(o.certificate_arns.len(), 2);
        assert_eq!(o.ssl_redirect, Some(8443));
        assert_eq!(o.inbound_cidrs.as_ref().map(Vec::len), Some(2));
        assert_eq!(o.inbound_cidrs.as_ref().unwrap()[1].to_string(), "192.168.1.0/24");
        assert_eq!(o.health.path.as_deref(), Some("/ready"));
        assert_eq!(o.health.interval, Some(20));
        assert_eq!(o.tags.len(), 2);
        assert_eq!(o.ip_address_type, IpAddressType::Dualstack);
    }

    #[test]
    fn bad_values_are_fatal_unknown_keys_are_warnings() {
        let (_, problems) = parse(&opts(&[
            ("listen-ports", r#"[{"HTTP": 80}, {"HTTPS": 80}]"#),
            ("subnets", "subnet-1"),
            ("inbound-cidrs", "10.0.0.0/33"),
            ("healthcheck-path", "ready"),
            ("success-codes", "600"),
            ("ip-address-type", "ipv6"),
            ("load-balancer-name", "shared"),
            ("sceme", "internal"),
        ]));
        let fatal: Vec<&str> = problems.iter().filter(|p| p.fatal).map(|p| p.message.as_str()).collect();
        let warn: Vec<&str> = problems.iter().filter(|p| !p.fatal).map(|p| p.message.as_str()).collect();
        assert_eq!(fatal.len(), 6, "{fatal:#?}");
        assert!(fatal.iter().any(|m| m.contains("ip-address-type") && m.contains("\"dualstack\"")), "{fatal:#?}");
        assert!(fatal.iter().all(|m| m.contains("alb.ingress.kubernetes.io/")), "{fatal:#?}");
        assert_eq!(warn.len(), 2, "{warn:#?}");
        assert!(warn[0].contains("load-balancer-name") && warn[0].contains("cannot rename"), "{warn:#?}");
        assert!(warn[1].contains("sceme") && warn[1].contains("typo"), "{warn:#?}");
    }
}
