//! The regional forwarding rule: the load balancer's IP, protocol and ports, pointing at the
//! backend service. Its existence is what "the load balancer exists" means (`get`).
//!
//! A forwarding rule is immutable except for a few fields (`allowGlobalAccess` is patched in
//! place); any other change re-creates it, keeping the IP (see `ensure.rs`, which holds the IP in
//! a reserved address while the rule is re-made).

use cloudlb_provider::LoadBalancerId;
use google_cloud_compute_v1::model::{ForwardingRule, forwarding_rule};
use google_cloud_lro::Poller;

use crate::clients::Api;
use crate::errors::CallError;
use crate::links;
use crate::ownership::{self, Owner};
use crate::plan::Ports;

pub const GET: &str = "compute.forwardingRules.get";
pub const INSERT: &str = "compute.forwardingRules.insert";
pub const PATCH: &str = "compute.forwardingRules.patch";
pub const DELETE: &str = "compute.forwardingRules.delete";

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Desired {
    pub name: String,
    pub scheme: &'static str,
    pub protocol: &'static str,
    pub ports: Ports,
    pub backend_service: String,
    /// `None` = an ephemeral IP.
    pub ip: Option<String>,
    pub tier: &'static str,
    /// Internal only.
    pub subnetwork: Option<String>,
    pub network: Option<String>,
    pub global_access: bool,
}

/// What it takes to make the existing rule the desired one.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Diff {
    Same,
    /// Only `allowGlobalAccess` differs.
    PatchGlobalAccess,
    /// Immutable fields differ; the reason is logged.
    Recreate(String),
}

pub fn link(api: &Api<'_>, name: &str) -> String {
    links::regional(api.config, "forwardingRules", name)
}

pub async fn get(api: &Api<'_>, name: &str) -> Result<Option<ForwardingRule>, CallError> {
    let c = &api.clients.forwarding_rules;
    api.read(GET, c.get().set_project(api.project()).set_region(api.region()).set_forwarding_rule(name).send()).await
}

pub fn ip(cur: &ForwardingRule) -> Option<&str> {
    cur.ip_address.as_deref().filter(|s| !s.is_empty())
}

fn ports_of(cur: &ForwardingRule) -> Ports {
    if cur.all_ports == Some(true) || (cur.ports.is_empty() && cur.port_range.is_none()) {
        return Ports::All;
    }
    let mut ports: Vec<u16> = cur.ports.iter().filter_map(|p| p.parse().ok()).collect();
    if let Some((lo, hi)) = cur.port_range.as_deref().and_then(|r| r.split_once('-'))
        && let (Ok(lo), Ok(hi)) = (lo.parse::<u16>(), hi.parse::<u16>())
    {
        ports.extend(lo..=hi);
    }
    ports.sort_unstable();
    ports.dedup();
    Ports::List(ports)
}

pub fn diff(cur: &ForwardingRule, d: &Desired) -> Diff {
    let name = |e: Option<&str>| e.unwrap_or("").to_string();
    let mut why = Vec::new();
    let scheme = name(cur.load_balancing_scheme.as_ref().and_then(|s| s.name()));
    if scheme != d.scheme {
        why.push(format!("scheme {scheme} -> {}", d.scheme));
    }
    let protocol = name(cur.ip_protocol.as_ref().and_then(|s| s.name()));
    if protocol != d.protocol {
        why.push(format!("protocol {protocol} -> {}", d.protocol));
    }
    let ports = ports_of(cur);
    if ports != d.ports {
        why.push(format!("ports {ports:?} -> {:?}", d.ports));
    }
    if !cur.backend_service.as_deref().is_some_and(|b| links::same(b, &d.backend_service)) {
        why.push("backend service".into());
    }
    if let Some(want) = &d.ip
        && ip(cur) != Some(want.as_str())
    {
        why.push(format!("IP {:?} -> {want}", ip(cur)));
    }
    if d.scheme == "EXTERNAL" {
        let tier = name(cur.network_tier.as_ref().and_then(|s| s.name()));
        if !tier.is_empty() && tier != d.tier {
            why.push(format!("network tier {tier} -> {}", d.tier));
        }
    }
    if let Some(s) = &d.subnetwork
        && !cur.subnetwork.as_deref().is_some_and(|c| links::same(c, s))
    {
        why.push("subnetwork".into());
    }
    if !why.is_empty() {
        return Diff::Recreate(why.join(", "));
    }
    if d.scheme == "INTERNAL" && cur.allow_global_access.unwrap_or(false) != d.global_access {
        return Diff::PatchGlobalAccess;
    }
    Diff::Same
}

pub async fn insert(api: &Api<'_>, id: &LoadBalancerId, d: &Desired) -> Result<(), CallError> {
    let mut body = ForwardingRule::new()
        .set_name(d.name.clone())
        .set_description(ownership::description(Owner::Service(id), ownership::FORWARDING_RULE))
        .set_labels(ownership::labels(id))
        .set_load_balancing_scheme(forwarding_rule::LoadBalancingScheme::from(d.scheme))
        .set_ip_protocol(forwarding_rule::IPProtocol::from(d.protocol))
        .set_backend_service(d.backend_service.clone())
        .set_or_clear_ip_address(d.ip.clone());
    body = match &d.ports {
        Ports::All => body.set_all_ports(true),
        Ports::List(p) => body.set_ports(p.iter().map(u16::to_string)),
    };
    if d.scheme == "EXTERNAL" {
        body = body.set_network_tier(forwarding_rule::NetworkTier::from(d.tier));
    } else {
        body = body
            .set_or_clear_subnetwork(d.subnetwork.clone())
            .set_or_clear_network(d.network.clone())
            .set_allow_global_access(d.global_access);
    }
    let c = &api.clients.forwarding_rules;
    let req = c.insert().set_project(api.project()).set_region(api.region()).set_body(body).poller().until_done();
    api.operate(INSERT, req).await.map(|_| ())
}

pub async fn patch_global_access(api: &Api<'_>, cur: &ForwardingRule, value: bool) -> Result<(), CallError> {
    let name = cur.name.clone().unwrap_or_default();
    let body = ForwardingRule::new().set_allow_global_access(value).set_or_clear_fingerprint(cur.fingerprint.clone());
    let c = &api.clients.forwarding_rules;
    let req = c
        .patch()
        .set_project(api.project())
        .set_region(api.region())
        .set_forwarding_rule(name)
        .set_body(body)
        .poller()
        .until_done();
    api.operate(PATCH, req).await.map(|_| ())
}

/// Delete; `Ok` when already gone.
pub async fn delete(api: &Api<'_>, name: &str) -> Result<(), CallError> {
    let c = &api.clients.forwarding_rules;
    let req =
        c.delete().set_project(api.project()).set_region(api.region()).set_forwarding_rule(name).poller().until_done();
    match api.operate(DELETE, req).await {
        Err(e) if e.is_not_found() => Ok(()),
        other => other.map(|_| ()),
    }
}
