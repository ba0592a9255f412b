//! Options a user sets per Service with annotations under [`crate::OPTION_PREFIX`]
//! (`local.cloudlb.io/<key>`); the controller hands them over in `spec.options` with the prefix
//! cut.
//!
//! One parser serves both [`cloudlb_provider::Provider::validate`] (readable messages before
//! anything is built) and `ensure` (which refuses a bad value with the same message), so the two
//! can never disagree about what is valid.

use std::collections::BTreeMap;
use std::time::Duration;

use crate::OPTION_PREFIX;
use crate::balance::Policy;

pub(crate) const PROXY_PROTOCOL: &str = "proxy-protocol";
pub(crate) const DRAIN_TIMEOUT_SECONDS: &str = "drain-timeout-seconds";
pub(crate) const BALANCE: &str = "balance";

/// Every key this provider understands.
pub(crate) const KNOWN: &[&str] = &[BALANCE, DRAIN_TIMEOUT_SECONDS, PROXY_PROTOCOL];

/// Longest drain accepted (one hour): longer would keep removed nodes' connections for ever.
const MAX_DRAIN_SECONDS: u64 = 3600;

/// The options of one load balancer, parsed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct LbOptions {
    /// Send a PROXY protocol v2 header to the backends (TCP listeners).
    pub proxy_v2: bool,
    /// Overrides [`crate::LocalConfig::drain_timeout`] for this load balancer.
    pub drain_timeout: Option<Duration>,
    pub policy: Policy,
}

impl Default for LbOptions {
    fn default() -> Self {
        Self { proxy_v2: false, drain_timeout: None, policy: Policy::LeastConnections }
    }
}

/// The parsed options, and a readable message for each bad value of a known key.
pub(crate) fn parse(options: &BTreeMap<String, String>) -> (LbOptions, Vec<String>) {
    let mut out = LbOptions::default();
    let mut problems = Vec::new();
    for (key, value) in options {
        let v = value.trim();
        match key.as_str() {
            PROXY_PROTOCOL => match v.to_ascii_lowercase().as_str() {
                "v2" => out.proxy_v2 = true,
                "" | "none" | "off" => out.proxy_v2 = false,
                _ => problems.push(format!(
                    "{OPTION_PREFIX}{PROXY_PROTOCOL}: {value:?} is not supported; accepted: \"v2\" (send a PROXY protocol v2 header to the backends) or \"none\""
                )),
            },
            DRAIN_TIMEOUT_SECONDS => match v.parse::<u64>() {
                Ok(s) if s <= MAX_DRAIN_SECONDS => out.drain_timeout = Some(Duration::from_secs(s)),
                _ => problems.push(format!(
                    "{OPTION_PREFIX}{DRAIN_TIMEOUT_SECONDS}: {value:?} is not a whole number of seconds between 0 and {MAX_DRAIN_SECONDS}"
                )),
            },
            BALANCE => match v.to_ascii_lowercase().as_str() {
                "least-connections" | "" => out.policy = Policy::LeastConnections,
                "round-robin" => out.policy = Policy::RoundRobin,
                _ => problems.push(format!(
                    "{OPTION_PREFIX}{BALANCE}: {value:?} is not a balancing policy; accepted: \"least-connections\" (default) or \"round-robin\""
                )),
            },
            _ => {}
        }
    }
    (out, problems)
}

/// Keys under our prefix that this provider does not know (most likely typos).
pub(crate) fn unknown(options: &BTreeMap<String, String>) -> Vec<String> {
    options
        .keys()
        .filter(|k| !KNOWN.contains(&k.as_str()))
        .map(|k| {
            format!(
                "{OPTION_PREFIX}{k} is not an option of the local provider; accepted: {}",
                KNOWN.iter().map(|k| format!("{OPTION_PREFIX}{k}")).collect::<Vec<_>>().join(", ")
            )
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn opts(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    }

    #[test]
    fn accepts_known_values() {
        let (o, p) =
            parse(&opts(&[("proxy-protocol", "v2"), ("drain-timeout-seconds", "5"), ("balance", "round-robin")]));
        assert!(p.is_empty(), "{p:?}");
        assert!(o.proxy_v2);
        assert_eq!(o.drain_timeout, Some(Duration::from_secs(5)));
        assert_eq!(o.policy, Policy::RoundRobin);
        assert_eq!(parse(&BTreeMap::new()).0, LbOptions::default());
    }

    #[test]
    fn bad_values_name_annotation_value_and_accepted() {
        let (_, p) = parse(&opts(&[("proxy-protocol", "v1")]));
        assert_eq!(p.len(), 1);
        assert!(
            p[0].contains("local.cloudlb.io/proxy-protocol") && p[0].contains("\"v1\"") && p[0].contains("\"v2\""),
            "{}",
            p[0]
        );
        let (_, p) = parse(&opts(&[("drain-timeout-seconds", "-3")]));
        assert!(
            p[0].contains("local.cloudlb.io/drain-timeout-seconds") && p[0].contains("\"-3\"") && p[0].contains("3600"),
            "{}",
            p[0]
        );
        let (_, p) = parse(&opts(&[("balance", "random")]));
        assert!(p[0].contains("round-robin"), "{}", p[0]);
    }

    #[test]
    fn unknown_keys_are_reported() {
        let u = unknown(&opts(&[("drain-timeout-second", "5"), ("proxy-protocol", "v2")]));
        assert_eq!(u.len(), 1);
        assert!(
            u[0].contains("local.cloudlb.io/drain-timeout-second ")
                && u[0].contains("local.cloudlb.io/drain-timeout-seconds"),
            "{}",
            u[0]
        );
    }
}
