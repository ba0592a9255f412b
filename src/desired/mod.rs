//! Desired state: PURE functions from Kubernetes objects to what a provider should build.
//!
//! ```text
//!  Service + eligible Nodes ─────────────────────▶ service::build ─▶ LoadBalancerSpec (L4)
//!  Ingress + its Services, TLS Secrets + Nodes ──▶ ingress::build ─▶ L7Spec (+ warnings)
//!                         └──▶ Invalid { problems }  (event + condition, no cloud call)
//! ```
//!
//! No I/O happens here, so every rule is covered by table-driven tests, and the same inputs
//! always give the same spec (and spec hash). What both front ends read the same way (provider
//! options, health-check tuning, the all-addresses default) lives in this module.

pub mod annotations;
pub mod ingress;
pub mod nodes;
pub mod service;

#[cfg(test)]
mod properties;

use std::collections::BTreeMap;
use std::fmt;

use cloudlb_provider::IpFamily;
use ipnet::IpNet;

use crate::keys::{ANN_HC_HEALTHY, ANN_HC_INTERVAL, ANN_HC_TIMEOUT, ANN_HC_UNHEALTHY};
use annotations::parse_u32_in;

#[derive(Clone, Debug, Default)]
pub struct DesiredConfig {
    /// Annotation prefixes whose annotations are passed to the provider as options, with the
    /// prefix cut (e.g. `memory.cloudlb.io/`).
    pub option_prefixes: Vec<String>,
}

/// Everything wrong with an object, in words a user can act on.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Invalid {
    pub problems: Vec<String>,
}

impl fmt::Display for Invalid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.problems.join("; "))
    }
}

/// The annotations under the provider's prefixes, prefix cut.
pub(crate) fn provider_options(ann: &BTreeMap<String, String>, cfg: &DesiredConfig) -> BTreeMap<String, String> {
    ann.iter()
        .filter_map(|(k, v)| {
            cfg.option_prefixes
                .iter()
                .find_map(|p| k.strip_prefix(p.as_str()))
                .map(|rest| (rest.to_string(), v.clone()))
        })
        .collect()
}

/// `0.0.0.0/0` and/or `::/0`: who may connect when the user restricted nothing.
pub(crate) fn all_addresses(families: &[IpFamily]) -> Vec<IpNet> {
    families
        .iter()
        .map(|f| match f {
            IpFamily::IPv4 => IpNet::V4(Default::default()),
            IpFamily::IPv6 => IpNet::V6(Default::default()),
        })
        .collect()
}

/// Health-check tuning from the `cloudlb.io/healthcheck-*` annotations: (interval, timeout,
/// healthy threshold, unhealthy threshold), defaults 10 s, 5 s, 2, 3.
pub(crate) fn health_numbers(ann: &BTreeMap<String, String>, problems: &mut Vec<String>) -> (u32, u32, u32, u32) {
    let mut num = |key: &str, default: u32, min: u32, max: u32| match ann.get(key) {
        Some(v) => parse_u32_in(key, v, min, max).unwrap_or_else(|e| {
            problems.push(e);
            default
        }),
        None => default,
    };
    let interval = num(ANN_HC_INTERVAL, 10, 1, 300);
    let timeout = num(ANN_HC_TIMEOUT, 5, 1, 120);
    let healthy = num(ANN_HC_HEALTHY, 2, 1, 10);
    let unhealthy = num(ANN_HC_UNHEALTHY, 3, 1, 10);
    if timeout > interval {
        problems.push(format!(
            "health check timeout (annotation {ANN_HC_TIMEOUT}, {timeout}s) must not exceed its interval (annotation {ANN_HC_INTERVAL}, {interval}s)"
        ));
    }
    (interval, timeout, healthy, unhealthy)
}
