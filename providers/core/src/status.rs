//! What a provider reports back: the address(es) users see, and the record of what it made.
//!
//! The [`Record`] is stored on the Kubernetes object by the controller and handed back to the
//! provider on every later call, so that deletion works from what was *made*, never from
//! annotations the user may have changed since (the leak users report with other controllers).

use std::collections::BTreeMap;
use std::net::IpAddr;

use serde::{Deserialize, Serialize};

/// How traffic reaches the backends, reported in `status.loadBalancer.ingress[].ipMode`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, Default)]
pub enum IpMode {
    /// Packets arrive with the load balancer's IP as destination (pass-through).
    #[default]
    VIP,
    /// The load balancer terminates connections and opens new ones to the targets.
    Proxy,
}

impl IpMode {
    pub fn as_str(self) -> &'static str {
        match self {
            IpMode::VIP => "VIP",
            IpMode::Proxy => "Proxy",
        }
    }
}

/// One address of the load balancer: an IP or a DNS name (AWS).
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum IngressPoint {
    Ip(IpAddr),
    Hostname(String),
}

/// Provider-owned identifiers of what was made (ARNs, self-links, allocated IPs). Opaque to
/// the controller, small (it lives in an annotation), deterministic (sorted map).
#[derive(Clone, Debug, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Record(pub BTreeMap<String, String>);

impl Record {
    pub fn get(&self, key: &str) -> Option<&str> {
        self.0.get(key).map(String::as_str)
    }

    pub fn set(&mut self, key: impl Into<String>, value: impl Into<String>) {
        self.0.insert(key.into(), value.into());
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub fn to_json(&self) -> String {
        serde_json::to_string(&self.0).unwrap_or_else(|_| "{}".into())
    }

    pub fn from_json(text: &str) -> Result<Self, serde_json::Error> {
        serde_json::from_str(text).map(Record)
    }
}

/// The observed state of a load balancer after `ensure`, or as `get` finds it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct LoadBalancerStatus {
    /// Sorted; at least one entry once the load balancer has an address.
    pub ingress: Vec<IngressPoint>,
    pub ip_mode: IpMode,
    pub record: Record,
    /// Hash of the spec the cloud currently implements, when the provider can tell it
    /// (used by the drift check); `None` when unknown.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub spec_hash: Option<String>,
    /// The cloud is still making the load balancer: its address is known (publish it) but may
    /// not answer yet; look again (with [`crate::Provider::observe`]) after this long.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub provisioning: Option<std::time::Duration>,
    /// The targets' health, when the provider read it anyway (see [`crate::observed`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub targets: Option<crate::TargetHealth>,
}

impl LoadBalancerStatus {
    /// A finished load balancer's status (not provisioning, targets' health not read).
    pub fn new(ingress: Vec<IngressPoint>, ip_mode: IpMode, record: Record, spec_hash: Option<String>) -> Self {
        Self { ingress, ip_mode, record, spec_hash, provisioning: None, targets: None }
    }
}
