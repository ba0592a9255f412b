//! VPC firewall rules: the traffic rule of one load balancer (its source ranges to its Service
//! ports at its IP) and the health-check rule (Google's checker ranges to the check's port).
//!
//! Firewalls have no fingerprint; a change is a full `update` (PUT), which also clears fields a
//! merge-`patch` could not (an emptied `destinationRanges`).

use std::collections::BTreeMap;

use cloudlb_provider::ProviderError;
use google_cloud_compute_v1::model::{Firewall, firewall};
use google_cloud_lro::Poller;

use crate::clients::Api;
use crate::errors::CallError;
use crate::links;
use crate::ownership::{self, Owner};

pub const GET: &str = "compute.firewalls.get";
pub const INSERT: &str = "compute.firewalls.insert";
pub const UPDATE: &str = "compute.firewalls.update";
pub const DELETE: &str = "compute.firewalls.delete";

/// One rule as the plan wants it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Rule {
    pub name: String,
    pub role: &'static str,
    /// Lowercase protocol -> ports.
    pub allowed: BTreeMap<&'static str, Vec<u16>>,
    pub source_ranges: Vec<String>,
    pub destination_ranges: Vec<String>,
}

pub async fn get(api: &Api<'_>, name: &str) -> Result<Option<Firewall>, CallError> {
    let c = &api.clients.firewalls;
    api.read(GET, c.get().set_project(api.project()).set_firewall(name).send()).await
}

fn sorted(v: &[String]) -> Vec<String> {
    let mut v = v.to_vec();
    v.sort();
    v.dedup();
    v
}

fn allowed_of(f: &Firewall) -> BTreeMap<String, Vec<String>> {
    f.allowed
        .iter()
        .map(|a| (a.ip_protocol.clone().unwrap_or_default().to_ascii_lowercase(), sorted(&a.ports)))
        .collect()
}

fn wanted_allowed(r: &Rule) -> BTreeMap<String, Vec<String>> {
    r.allowed
        .iter()
        .map(|(p, ports)| (p.to_string(), sorted(&ports.iter().map(u16::to_string).collect::<Vec<_>>())))
        .collect()
}

fn matches(api: &Api<'_>, cur: &Firewall, r: &Rule) -> bool {
    allowed_of(cur) == wanted_allowed(r)
        && sorted(&cur.source_ranges) == sorted(&r.source_ranges)
        && sorted(&cur.destination_ranges) == sorted(&r.destination_ranges)
        && sorted(&cur.target_tags) == sorted(&api.config.node_tags)
        && cur.network.as_deref().is_some_and(|n| links::same(n, &links::network(api.config)))
        && cur.denied.is_empty()
}

fn body(api: &Api<'_>, owner: Owner<'_>, r: &Rule) -> Firewall {
    let allowed: Vec<firewall::Allowed> = r
        .allowed
        .iter()
        .map(|(p, ports)| firewall::Allowed::new().set_ip_protocol(*p).set_ports(ports.iter().map(u16::to_string)))
        .collect();
    Firewall::new()
        .set_name(r.name.clone())
        .set_description(ownership::description(owner, r.role))
        .set_network(links::network(api.config))
        .set_direction(firewall::Direction::Ingress)
        .set_priority(1000)
        .set_allowed(allowed)
        .set_source_ranges(r.source_ranges.clone())
        .set_destination_ranges(r.destination_ranges.clone())
        .set_target_tags(api.config.node_tags.clone())
}

/// Find (ownership checked), create or correct the rule.
pub async fn ensure(api: &Api<'_>, owner: Owner<'_>, r: &Rule) -> Result<(), ProviderError> {
    let current = get(api, &r.name).await?;
    converge(api, owner, r, current).await
}

/// [`ensure`] with the rule as read earlier (`None`: absent).
pub async fn converge(
    api: &Api<'_>,
    owner: Owner<'_>,
    r: &Rule,
    current: Option<Firewall>,
) -> Result<(), ProviderError> {
    let c = &api.clients.firewalls;
    let mut _changing = None;
    let current = match (current, owner) {
        (None, Owner::Cluster(_)) => {
            _changing = Some(api.changing_shared.lock().await);
            get(api, &r.name).await?
        }
        (current, _) => current,
    };
    let cur = match current {
        Some(cur) => cur,
        None => {
            let req = c.insert().set_project(api.project()).set_body(body(api, owner, r)).poller().until_done();
            match api.operate(INSERT, req).await {
                Ok(_) => return Ok(()),
                // The cluster's shared rule, made by another ensure since we read: converge that.
                Err(e) if e.is_already_exists() => get(api, &r.name).await?.ok_or(e)?,
                Err(e) => return Err(e.into()),
            }
        }
    };
    ownership::check(GET, owner, &format!("firewall {}", r.name), cur.description.as_deref())?;
    if !matches(api, &cur, r) {
        let req = c
            .update()
            .set_project(api.project())
            .set_firewall(r.name.clone())
            .set_body(body(api, owner, r))
            .poller()
            .until_done();
        api.operate(UPDATE, req).await?;
    }
    Ok(())
}

/// Delete the rule `name` if it is `owner`'s; `Ok` when absent. A rule with our name that is not
/// ours is left alone (logged).
pub async fn delete_owned(api: &Api<'_>, owner: Owner<'_>, name: &str) -> Result<(), CallError> {
    let Some(cur) = get(api, name).await? else { return Ok(()) };
    if !ownership::is_owned(owner, cur.description.as_deref()) {
        tracing::warn!(firewall = name, "firewall with our name is not ours; leaving it alone");
        return Ok(());
    }
    let c = &api.clients.firewalls;
    match api.operate(DELETE, c.delete().set_project(api.project()).set_firewall(name).poller().until_done()).await {
        Err(e) if e.is_not_found() => Ok(()),
        other => other.map(|_| ()),
    }
}
