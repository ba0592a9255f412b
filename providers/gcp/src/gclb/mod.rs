//! Ingresses on Google Cloud: the global external Application Load Balancer (`EXTERNAL_MANAGED`,
//! the current GCLB; GKE's Ingress controller still builds the classic one).
//!
//! ```text
//!   Ingress ─▶ global address (ours, or kubernetes.io/ingress.global-static-ip-name)
//!                ├─ forwarding rule :80  ─▶ target HTTP proxy  ─▶ URL map (or the redirect map)
//!                └─ forwarding rule :443 ─▶ target HTTPS proxy ─▶ URL map
//!                                               └─ SSL certificates (spec.tls; pre-shared-cert)
//!   URL map ─▶ backend service per backend (EXTERNAL_MANAGED, HTTP, named port port<nodePort>)
//!                ├─ health check (HTTP on the node port; path from the annotation, else /)
//!                └─ the cluster's instance groups (shared with the L4 path)
//!   firewall: 130.211.0.0/22, 35.191.0.0/16 -> the backends' node ports
//! ```
//!
//! `options.rs` reads the annotations, `plan.rs` and `routing.rs` compute everything from the spec
//! (pure, unit-tested), `evaluate.rs` is Compute's routing as documented (what tests check maps
//! against), `ensure.rs` applies make-before-break, and this module deletes and reads back.
//!
//! Why per-Ingress backend services (GKE's controller shares one per node port): an Ingress's
//! timeouts and health-check path never change another Ingress's backends, and a delete removes
//! exactly what one Ingress made. The cost is one backend service per (Ingress, backend) against
//! the project's quota.

pub mod ensure;
pub mod evaluate;
pub mod options;
pub mod plan;
pub mod record;
pub mod routing;

use std::collections::BTreeSet;

use cloudlb_provider::{L7Spec, LoadBalancerId, LoadBalancerStatus, ProviderError, Record};

use crate::clients::Api;
use crate::ownership::{self, Owner};
use crate::resources::firewall;
use crate::resources::global::{address, backend_service, certificate, forwarding_rule, health_check, proxy, url_map};
use crate::resources::{instance_group, operations};
use crate::{links, names};

/// Warnings of an Ingress spec: ignored annotations, nodes that cannot be backends. Pure.
pub fn warnings(spec: &L7Spec, config: &crate::GcpConfig) -> Vec<String> {
    let (_, problems) = options::parse(&spec.options);
    let ignored = problems.into_iter().filter(|p| !p.fatal).map(|p| format!("{} (ignored)", p.message));
    let skipped = crate::plan::targets(&spec.targets, config)
        .1
        .into_iter()
        .map(|s| format!("node {} is not a backend: {}", s.node, s.reason));
    ignored.chain(skipped).collect()
}

/// Only the nodes changed: converge the instance groups' members. A zone gained or lost changes
/// the backend services' backends too, which only a full ensure does.
pub async fn update_targets(
    api: &Api<'_>,
    id: &LoadBalancerId,
    spec: &L7Spec,
    rec: Option<&Record>,
) -> Result<(), ProviderError> {
    // Only what membership needs, not the whole plan (URL map, certificates): this runs per
    // Ingress on every node change.
    let (instances, _) = crate::plan::targets(&spec.targets, api.config);
    let recorded: BTreeSet<String> = rec.map(crate::record::zones).unwrap_or_default().into_iter().collect();
    let wanted: BTreeSet<String> = instances.keys().cloned().collect();
    if rec.is_none() || recorded != wanted {
        return ensure::ensure(api, id, spec).await.map(|_| ());
    }
    let _shared = api.shared.read().await;
    let ig = names::instance_group(&id.cluster);
    let named: BTreeSet<u16> = spec.backends.iter().filter_map(|b| b.node_port).collect();
    for (zone, members) in &instances {
        instance_group::ensure(api, &id.cluster, zone, &ig, members, &named).await?;
    }
    Ok(())
}

/// Remove the `port<N>` names of the cluster's groups in `zones` that no L7 backend service of the
/// cluster uses any more (one list of the cluster's L7 backend services). The caller holds the
/// shared lock exclusively, so no ensure is between adding a name and attaching its service.
pub async fn prune_named_ports(api: &Api<'_>, cluster: &str, zones: &[String]) -> Result<(), ProviderError> {
    let in_use: BTreeSet<u16> = backend_service::list(api, "k8s7-")
        .await?
        .iter()
        .filter(|b| ownership::cluster_of(b.description.as_deref()).as_deref() == Some(cluster))
        .filter_map(|b| b.port_name.as_deref()?.strip_prefix("port")?.parse().ok())
        .collect();
    let ig = names::instance_group(cluster);
    for zone in zones {
        instance_group::prune_named_ports(api, cluster, zone, &ig, &in_use).await?;
    }
    Ok(())
}

/// Remove everything of `id`, references first: rules, proxies, maps, certificates, backend
/// services, checks, firewall, our address; then the groups' named ports and the groups
/// themselves when nothing uses them. What is not ours is left alone; a user's address is never
/// touched. Re-running finishes a half-done delete.
pub async fn delete(api: &Api<'_>, id: &LoadBalancerId, rec: Option<&Record>) -> Result<(), ProviderError> {
    let n = plan::Names::new(id);
    let owner = Owner::Service(id);
    let found = ensure::Found::read(api, &n).await?;
    let listed = found
        .backend_services
        .iter()
        .filter_map(|b| b.name.as_deref())
        .chain(found.certificates.iter().filter_map(|c| c.name.as_deref()));
    let names: Vec<&str> = [
        n.http_rule.as_str(),
        &n.https_rule,
        &n.http_proxy,
        &n.https_proxy,
        &n.url_map,
        &n.redirect_map,
        &n.address,
        &n.firewall,
        &n.fixed_backend,
    ]
    .into_iter()
    .chain(listed)
    .collect();
    // An insert a killed predecessor left running would make its resource appear after we looked.
    if let Some((op, target)) = operations::running_on(api, &names).await? {
        return Err(ProviderError::Provisioning {
            what: format!("{} (operation {op} on it is still running)", links::tail(&target)),
            retry_after: std::time::Duration::from_secs(2),
        });
    }
    let mine = |d: Option<&str>| ownership::is_owned(owner, d);
    for name in [&n.http_rule, &n.https_rule] {
        if let Some(f) = forwarding_rule::get(api, name).await?
            && mine(f.description.as_deref())
        {
            forwarding_rule::delete(api, name).await?;
        }
    }
    if let Some(p) = proxy::get_http(api, &n.http_proxy).await?
        && mine(p.description.as_deref())
    {
        proxy::delete_http(api, &n.http_proxy).await?;
    }
    if let Some(p) = proxy::get_https(api, &n.https_proxy).await?
        && mine(p.description.as_deref())
    {
        proxy::delete_https(api, &n.https_proxy).await?;
    }
    for name in [&n.url_map, &n.redirect_map] {
        if let Some(m) = url_map::get(api, name).await?
            && mine(m.description.as_deref())
        {
            url_map::delete(api, name).await?;
        }
    }
    for c in found.certificates.iter().filter(|c| mine(c.description.as_deref())) {
        certificate::delete(api, c.name.as_deref().unwrap_or_default()).await?;
    }
    let mut zones: BTreeSet<String> = rec.map(crate::record::zones).unwrap_or_default().into_iter().collect();
    let had_backend_service = found.backend_services.iter().any(|b| mine(b.description.as_deref()));
    for b in found.backend_services.iter().filter(|b| mine(b.description.as_deref())) {
        zones.extend(b.backends.iter().filter_map(|x| links::zone(x.group.as_deref()?)).map(String::from));
        backend_service::delete(api, b.name.as_deref().unwrap_or_default()).await?;
    }
    for h in found.health_checks.iter().filter(|h| mine(h.description.as_deref())) {
        health_check::delete(api, h.name.as_deref().unwrap_or_default()).await?;
    }
    firewall::delete_owned(api, owner, &n.firewall).await?;
    if let Some(a) = address::get(api, &n.address).await?
        && mine(a.description.as_deref())
    {
        address::release(api, &n.address).await?;
    }

    // The cluster's groups, unless an ensure in flight is about to use them.
    let _deleting = api.shared.write().await;
    let zones = crate::delete::zones_to_try(api, zones, had_backend_service).await?;
    prune_named_ports(api, &id.cluster, &zones.iter().cloned().collect::<Vec<_>>()).await?;
    crate::delete::release_groups(api, &id.cluster, &zones).await
}

/// What exists of `id`: `None` without its URL map or address; the spec hash its URL map
/// records, or one no spec has ("incomplete: …") when a recorded part is missing, so the drift
/// check repairs it.
pub async fn get(
    api: &Api<'_>,
    id: &LoadBalancerId,
    rec: Option<&Record>,
) -> Result<Option<LoadBalancerStatus>, ProviderError> {
    let n = plan::Names::new(id);
    let owner = Owner::Service(id);
    let Some(m) = url_map::get(api, &n.url_map).await? else { return Ok(None) };
    if !ownership::is_owned(owner, m.description.as_deref()) {
        tracing::warn!(lb = %id, name = %n.url_map, "URL map with our name is not ours");
        return Ok(None);
    }
    let user = rec.and_then(|r| r.get(record::USER_ADDRESS)).map(|l| links::name(l).to_string());
    let addr = address::get(api, user.as_deref().unwrap_or(&n.address)).await?;
    let Some(ip) = addr.and_then(|a| a.address) else { return Ok(None) };
    let mut out = Record::default();
    out.set(record::IP, ip.clone());
    out.set(record::URL_MAP, url_map::link(api, &n.url_map));
    match &user {
        Some(u) => out.set(record::USER_ADDRESS, links::global(api.config, "addresses", u)),
        None => out.set(record::ADDRESS, links::global(api.config, "addresses", &n.address)),
    }
    let mut missing = Vec::new();
    for (key, name) in [(record::HTTP_RULE, &n.http_rule), (record::HTTPS_RULE, &n.https_rule)] {
        let recorded = rec.is_some_and(|r| r.get(key).is_some());
        match forwarding_rule::get(api, name).await? {
            Some(f) if ownership::is_owned(owner, f.description.as_deref()) => {
                out.set(key, links::global(api.config, "forwardingRules", name))
            }
            _ if recorded => missing.push(format!("forwarding rule {name}")),
            _ => {}
        }
    }
    if let Some(r) = rec {
        for zone in crate::record::zones(r) {
            crate::record::set_instance_group(
                &mut out,
                &zone,
                &instance_group::link(api, &zone, &names::instance_group(&id.cluster)),
            );
        }
    }
    let spec_hash = if missing.is_empty() {
        url_map::spec_hash(&m)
    } else {
        Some(format!("incomplete: missing {}", missing.join(", ")))
    };
    Ok(Some(ensure::status(&ip, out, spec_hash)?))
}

#[cfg(test)]
mod tests;
