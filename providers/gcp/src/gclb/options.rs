//! The Ingress annotations the GCLB path reads (`spec.options`, prefix cut), the same names as
//! GKE's Ingress controller so manifests carry over:
//!
//! | annotation | effect |
//! |---|---|
//! | `kubernetes.io/ingress.global-static-ip-name` | the user's reserved global address: used, never changed or released |
//! | `ingress.gcp.kubernetes.io/pre-shared-cert` | the user's SSL certificates (comma-separated names), served with those of `spec.tls` |
//! | `kubernetes.io/ingress.allow-http` | read by the controller (an alias of `cloudlb.io/allow-http`) |
//! | `kubernetes.io/ingress.class` | read by the controller's claim |
//!
//! As on the L4 path, unknown keys and GKE features this provider does not build (FrontendConfig,
//! managed certificates, regional or internal Ingress) are warnings, never blocking; a malformed
//! value of a key it uses is fatal and stops the pass before any call.

use std::collections::BTreeMap;

use cloudlb_provider::naming::is_valid_gce_name;
use cloudlb_provider::options::{OptionParser, Problem};

use crate::options::TARGET_NODE_LABELS;

/// Keys read, with the prefix users write them under.
pub const SUPPORTED: &[(&str, &str)] = &[
    ("global-static-ip-name", "kubernetes.io/ingress."),
    ("pre-shared-cert", "ingress.gcp.kubernetes.io/"),
    ("allow-http", "kubernetes.io/ingress."),
    ("class", "kubernetes.io/ingress."),
];

/// GKE Ingress annotations users bring along that this provider does not build, with what to do.
pub const UNSUPPORTED: &[(&str, &str)] = &[
    ("regional-static-ip-name", "regional Application Load Balancers are not built; use global-static-ip-name"),
    ("v1beta1.FrontendConfig", "FrontendConfig is not read; use cloudlb.io/ssl-redirect for HTTP to HTTPS"),
    ("managed-certificates", "Google-managed certificates are not built; use spec.tls or pre-shared-cert"),
    ("static-ip", "not read; use kubernetes.io/ingress.global-static-ip-name"),
];

/// Most certificates a target HTTPS proxy takes.
pub const MAX_CERTIFICATES: usize = 15;

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct L7Options {
    /// A reserved global address, by name (the user's).
    pub static_ip_name: Option<String>,
    /// The user's SSL certificates, by name, in the order given.
    pub pre_shared_certs: Vec<String>,
}

pub fn annotation(key: &str) -> String {
    let prefix = SUPPORTED.iter().find(|(k, _)| *k == key).map(|(_, p)| *p).unwrap_or("gcp.cloudlb.io/");
    format!("{prefix}{key}")
}

/// Parse every option of an Ingress; problems in readable form (never fails).
pub fn parse(options: &BTreeMap<String, String>) -> (L7Options, Vec<Problem>) {
    let mut p = OptionParser::new(options, annotation);
    let mut out = L7Options::default();
    for key in options.keys() {
        if SUPPORTED.iter().any(|(k, _)| k == key) {
            continue;
        }
        let problem = if key.is_empty() {
            Problem {
                message: format!(
                    "annotation {TARGET_NODE_LABELS} is not supported by cloudlb's gcp provider: the cluster's \
                     instance groups are shared by every load balancer, so all of them target the same nodes; remove it"
                ),
                fatal: true,
            }
        } else if let Some((_, what)) = UNSUPPORTED.iter().find(|(k, _)| k == key) {
            Problem { message: format!("annotation {key}: {what}"), fatal: false }
        } else if crate::options::SUPPORTED.iter().any(|(k, _)| k == key) {
            Problem {
                message: format!("annotation {key} applies to Services only; an Ingress ignores it"),
                fatal: false,
            }
        } else {
            Problem {
                message: format!(
                    "annotation {key:?} is not known to cloudlb's gcp provider for Ingresses (a typo?); known: {}",
                    SUPPORTED.iter().map(|(k, p)| format!("{p}{k}")).collect::<Vec<_>>().join(", ")
                ),
                fatal: false,
            }
        };
        p.problems.push(problem);
    }
    if let Some(v) = p.get("global-static-ip-name") {
        let v = v.trim();
        if is_valid_gce_name(v) {
            out.static_ip_name = Some(v.to_string());
        } else {
            p.bad("global-static-ip-name", v, "the name of a reserved global address");
        }
    }
    if let Some(v) = p.get("pre-shared-cert") {
        let names: Vec<&str> = v.split(',').map(str::trim).filter(|s| !s.is_empty()).collect();
        if names.is_empty() || !names.iter().all(|n| is_valid_gce_name(n)) {
            p.bad("pre-shared-cert", v, "comma-separated names of SSL certificates of the project");
        } else if names.len() > MAX_CERTIFICATES {
            p.bad("pre-shared-cert", v, &format!("at most {MAX_CERTIFICATES} certificates"));
        } else {
            out.pre_shared_certs = names.into_iter().map(String::from).collect();
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
            ("global-static-ip-name", "web-ip"),
            ("pre-shared-cert", "cert-a, cert-b"),
            ("allow-http", "false"),
            ("class", "gce"),
        ]));
        assert!(problems.is_empty(), "{problems:?}");
        assert_eq!(o.static_ip_name.as_deref(), Some("web-ip"));
        assert_eq!(o.pre_shared_certs, vec!["cert-a".to_string(), "cert-b".to_string()]);
    }

    #[test]
    fn bad_values_are_fatal_and_name_the_annotation() {
        for (k, v, want) in [
            ("global-static-ip-name", "Web_IP", "kubernetes.io/ingress.global-static-ip-name: \"Web_IP\""),
            ("pre-shared-cert", "a,,B", "ingress.gcp.kubernetes.io/pre-shared-cert"),
            ("", "pool=a", TARGET_NODE_LABELS),
        ] {
            let (_, problems) = parse(&opts(&[(k, v)]));
            assert!(problems.len() == 1 && problems[0].fatal, "{k}={v}: {problems:?}");
            assert!(problems[0].message.contains(want), "{k}={v}: {}", problems[0].message);
        }
    }

    #[test]
    fn unknown_unsupported_and_service_keys_are_warnings() {
        let (_, problems) = parse(&opts(&[
            ("global-static-ip-nmae", "x"),
            ("v1beta1.FrontendConfig", "fc"),
            ("network-tier", "Standard"),
        ]));
        assert_eq!(problems.len(), 3, "{problems:?}");
        assert!(problems.iter().all(|p| !p.fatal));
        assert!(problems.iter().any(|p| p.message.contains("typo")));
        assert!(problems.iter().any(|p| p.message.contains("FrontendConfig is not read")));
        assert!(problems.iter().any(|p| p.message.contains("Services only")));
    }
}
