//! Annotation values (`spec.options`, prefix already cut) parsed into typed settings.
//!
//! The provider reads annotations under `cloud.google.com/`, `networking.gke.io/` and
//! `gcp.cloudlb.io/` (see [`crate::OPTION_PREFIXES`]), so Services written for GKE keep working:
//! `networking.gke.io/load-balancer-type: Internal`, `cloud.google.com/network-tier: Standard`, ….
//! The prefix is cut before the provider sees them, so the three prefixes share one key space.
//!
//! Parsing is pure, so `GcpProvider::validate` (the `Provider` method) reports every fatal
//! problem before any cloud call, naming the annotation, the value and what is accepted; `ensure`
//! refuses (`Invalid`) on the same ones, values it would have to use. Unknown or unsupported keys
//! are not fatal: `GcpProvider::warnings` reports them (an event and the condition's message) and
//! `ensure` ignores them, so a typo in a key never blocks a Service.

use std::collections::BTreeMap;

use cloudlb_provider::options::OptionParser;
pub use cloudlb_provider::options::Problem;

use cloudlb_provider::Scheme;
use cloudlb_provider::naming::is_valid_gce_name;

/// Keys this provider reads, with the prefix users write them under.
pub const SUPPORTED: &[(&str, &str)] = &[
    ("load-balancer-type", "networking.gke.io/"),
    ("network-tier", "cloud.google.com/"),
    ("internal-load-balancer-subnet", "networking.gke.io/"),
    ("internal-load-balancer-allow-global-access", "networking.gke.io/"),
    ("load-balancer-ip-addresses", "networking.gke.io/"),
    ("l4-rbs", "cloud.google.com/"),
];

/// The controller's per-Service node selection. The root crate passes it to this provider as the
/// option with the empty key (it is registered as an exact "prefix"), so that it can be refused:
/// every Service of a cluster shares the zones' instance groups (GCE lets a VM be in one
/// load-balanced instance group only), so a Service cannot target a subset of the nodes.
pub const TARGET_NODE_LABELS: &str = "cloudlb.io/target-node-labels";
/// The AWS controllers' name for it, which the root crate reads too and passes the same way (for
/// the message; the root crate's test checks it names the key the controller reads).
pub const TARGET_NODE_LABELS_AWS: &str = "service.beta.kubernetes.io/aws-load-balancer-target-node-labels";

/// GKE annotations users may bring along that this provider does not implement (reported, so
/// nobody believes they took effect).
pub const UNSUPPORTED: &[&str] = &[
    "neg",
    "neg-status",
    "backend-config",
    "app-protocols",
    "weighted-load-balancing",
    "load-balancer-backend-share",
    "l4-netlb-v2",
];

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Tier {
    Premium,
    Standard,
}

impl Tier {
    pub fn as_str(self) -> &'static str {
        match self {
            Tier::Premium => "PREMIUM",
            Tier::Standard => "STANDARD",
        }
    }
}

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Options {
    /// From `load-balancer-type`; `None` = the spec's scheme (`cloudlb.io/internal`).
    pub scheme: Option<Scheme>,
    pub network_tier: Option<Tier>,
    /// Subnetwork of an internal load balancer (overrides `--gcp-subnetwork`).
    pub subnet: Option<String>,
    pub global_access: Option<bool>,
    /// A reserved address (by name) to use; it is the user's and never released.
    pub address_name: Option<String>,
}

/// How users write the key: its usual prefix + key.
pub fn annotation(key: &str) -> String {
    let prefix = SUPPORTED.iter().find(|(k, _)| *k == key).map(|(_, p)| *p).unwrap_or("gcp.cloudlb.io/");
    format!("{prefix}{key}")
}

/// A GCE resource name.
fn name(p: &mut OptionParser<'_>, key: &str, what: &str) -> Option<String> {
    let v = p.get(key)?;
    if is_valid_gce_name(v) {
        Some(v.to_string())
    } else {
        p.bad(key, v, &format!("the name of {what} (1-63 of a-z, 0-9 and '-', starting with a letter)"));
        None
    }
}

/// Parse every option; problems in a readable form (never fails).
pub fn parse(options: &BTreeMap<String, String>) -> (Options, Vec<Problem>) {
    let mut p = OptionParser::new(options, annotation);
    let mut out = Options::default();

    for key in options.keys() {
        if SUPPORTED.iter().any(|(k, _)| k == key) {
            continue;
        }
        if key.is_empty() {
            p.problems.push(Problem {
                message: format!(
                    "annotation {TARGET_NODE_LABELS} (or its AWS alias {TARGET_NODE_LABELS_AWS}) is not supported by \
                     cloudlb's gcp provider: the cluster's instance groups are shared by every Service, so all of \
                     them target the same nodes; remove it"
                ),
                fatal: true,
            });
            continue;
        }
        let message = if UNSUPPORTED.contains(&key.as_str()) {
            format!(
                "annotation {key} (cloud.google.com/ or networking.gke.io/) is not supported by cloudlb's gcp provider; remove it"
            )
        } else {
            format!(
                "annotation {key:?} under cloud.google.com/, networking.gke.io/ or gcp.cloudlb.io/ is not known to \
                 cloudlb's gcp provider (a typo?); known keys: {}",
                SUPPORTED.iter().map(|(k, p)| format!("{p}{k}")).collect::<Vec<_>>().join(", ")
            )
        };
        p.problems.push(Problem { message, fatal: false });
    }

    out.scheme = p
        .one_of("load-balancer-type", &["Internal", "External"])
        .map(|s| if s == "internal" { Scheme::Internal } else { Scheme::InternetFacing });
    out.network_tier = p
        .one_of("network-tier", &["Premium", "Standard"])
        .map(|s| if s == "standard" { Tier::Standard } else { Tier::Premium });
    out.subnet = name(&mut p, "internal-load-balancer-subnet", "a subnetwork of the region");
    out.global_access = p.bool("internal-load-balancer-allow-global-access");
    if let Some(v) = p.get("load-balancer-ip-addresses") {
        let names: Vec<&str> = v.split(',').map(str::trim).filter(|s| !s.is_empty()).collect();
        match names.as_slice() {
            [one] if is_valid_gce_name(one) => out.address_name = Some(one.to_string()),
            [_] | [] => p.bad("load-balancer-ip-addresses", v, "the name of one reserved regional address"),
            _ => p.bad(
                "load-balancer-ip-addresses",
                v,
                "the name of one reserved IPv4 address (cloudlb's gcp provider builds IPv4 load balancers only)",
            ),
        }
    }
    p.one_of("l4-rbs", &["enabled"]);
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
            ("load-balancer-type", "Internal"),
            ("network-tier", "Standard"),
            ("internal-load-balancer-subnet", "nodes"),
            ("internal-load-balancer-allow-global-access", "true"),
            ("load-balancer-ip-addresses", "my-ip"),
            ("l4-rbs", "enabled"),
        ]));
        assert!(problems.is_empty(), "{problems:?}");
        assert_eq!(o.scheme, Some(Scheme::Internal));
        assert_eq!(o.network_tier, Some(Tier::Standard));
        assert_eq!(o.subnet.as_deref(), Some("nodes"));
        assert_eq!(o.global_access, Some(true));
        assert_eq!(o.address_name.as_deref(), Some("my-ip"));
        // The legacy spelling cloud.google.com/load-balancer-type: "internal".
        assert_eq!(parse(&opts(&[("load-balancer-type", "internal")])).0.scheme, Some(Scheme::Internal));
    }

    #[test]
    fn bad_values_name_the_annotation_and_value() {
        let cases = [
            ("load-balancer-type", "Intenral", "networking.gke.io/load-balancer-type: \"Intenral\""),
            ("network-tier", "gold", "cloud.google.com/network-tier: \"gold\""),
            ("internal-load-balancer-subnet", "Bad_Subnet", "\"Bad_Subnet\""),
            ("internal-load-balancer-allow-global-access", "yes", "\"yes\""),
            ("load-balancer-ip-addresses", "a,b", "\"a,b\""),
        ];
        for (k, v, want) in cases {
            let (_, problems) = parse(&opts(&[(k, v)]));
            assert_eq!(problems.len(), 1, "{k}={v}: {problems:?}");
            assert!(problems[0].fatal);
            assert!(problems[0].message.contains(want), "{k}={v}: {}", problems[0].message);
        }
    }

    #[test]
    fn per_service_node_selection_is_refused() {
        let (_, problems) = parse(&opts(&[("", "pool=a")]));
        assert!(problems.len() == 1 && problems[0].fatal, "{problems:?}");
        assert!(problems[0].message.contains(TARGET_NODE_LABELS), "{problems:?}");
    }

    #[test]
    fn unknown_and_unsupported_keys_are_reported_but_not_fatal() {
        let (_, problems) = parse(&opts(&[("load-balancer-typo", "x"), ("neg", "{}")]));
        assert_eq!(problems.len(), 2, "{problems:?}");
        assert!(problems.iter().all(|p| !p.fatal));
        assert!(problems.iter().any(|p| p.message.contains("load-balancer-typo") && p.message.contains("typo")));
        assert!(problems.iter().any(|p| p.message.contains("not supported")));
    }
}
