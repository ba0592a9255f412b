//! `delete` and `get`: by deterministic name, ownership checked on every resource; the record
//! adds the zones of the instance groups.
//!
//! Deletion follows Compute's references backwards: forwarding rule -> address (ours only) ->
//! traffic firewall -> backend service -> per-Service health check and its firewall -> the
//! cluster's node check (only when no backend service uses it any more, then its firewall) ->
//! instance groups (only when unused). Every step treats "not found" as done, so a half-made or
//! half-deleted load balancer is finished off by re-running. A resource with our name that is
//! not ours is left alone. A user's reserved address has its own name and is never touched.

use std::collections::BTreeSet;

use cloudlb_provider::{LoadBalancerId, LoadBalancerStatus, ProviderError, Record};

use crate::clients::Api;
use crate::ensure;
use crate::ownership::{self, Owner};
use crate::record;
use crate::resources::health_check::Deleted;
use crate::resources::{address, backend_service, firewall, forwarding_rule, health_check, instance_group, operations};
use crate::{links, names};

pub const ZONES_LIST: &str = "compute.zones.list";

/// The zones of the configured region (one read).
async fn region_zones(api: &Api<'_>) -> Result<Vec<String>, ProviderError> {
    let c = &api.clients.zones;
    let filter = format!("region eq .*/regions/{}", api.region());
    let list = api.read(ZONES_LIST, c.list().set_project(api.project()).set_filter(filter).send()).await?;
    Ok(list.map(|l| l.items.into_iter().filter_map(|z| z.name).collect()).unwrap_or_default())
}

pub async fn delete(api: &Api<'_>, id: &LoadBalancerId, rec: Option<&Record>) -> Result<(), ProviderError> {
    let owner = Owner::Service(id);
    let name = names::load_balancer(id);

    // An insert that a killed predecessor left running would make its resource appear after
    // we looked: wait for it (see `operations`).
    let (hc_fw, node_hc, node_fw) = (
        names::health_check_firewall(id),
        names::node_health_check(&id.cluster),
        names::node_health_check_firewall(&id.cluster),
    );
    if let Some((op, target)) = operations::running_on(api, &[&name, &hc_fw, &node_hc, &node_fw]).await? {
        return Err(ProviderError::Provisioning {
            what: format!("{} (operation {op} on it is still running)", links::tail(&target)),
            retry_after: std::time::Duration::from_secs(2),
        });
    }

    if let Some(fr) = forwarding_rule::get(api, &name).await? {
        if ownership::is_owned(owner, fr.description.as_deref()) {
            forwarding_rule::delete(api, &name).await?;
        } else {
            tracing::warn!(lb = %id, name, "forwarding rule with our name is not ours; leaving it alone");
        }
    }

    let bs = backend_service::get(api, &name).await?;
    let mut zones: BTreeSet<String> = rec.map(record::zones).unwrap_or_default().into_iter().collect();
    let mut uses_node_check = true;
    if let Some(b) = &bs {
        zones.extend(ensure::zones_of(&backend_service::groups(b)));
        uses_node_check =
            backend_service::health_checks(b).iter().any(|h| links::name(h) == names::node_health_check(&id.cluster));
    }

    if let Some(a) = address::get(api, &name).await?
        && ownership::is_owned(owner, a.description.as_deref())
    {
        address::release(api, &name).await?;
    }
    firewall::delete_owned(api, owner, &name).await?;

    if let Some(b) = &bs {
        if ownership::is_owned(owner, b.description.as_deref()) {
            backend_service::delete(api, &name).await?;
        } else {
            tracing::warn!(lb = %id, name, "backend service with our name is not ours; leaving it alone");
        }
    }

    if let Some(h) = health_check::get(api, &name).await?
        && ownership::is_owned(owner, h.description.as_deref())
        && health_check::delete(api, &name).await? == Deleted::InUse
    {
        return Err(ProviderError::Retryable {
            call: health_check::DELETE,
            message: format!("health check {name} is still used by a backend service"),
        });
    }
    firewall::delete_owned(api, owner, &names::health_check_firewall(id)).await?;

    // The cluster's shared resources, unless an ensure in flight is about to use them.
    let _deleting = api.shared.write().await;
    let cluster = Owner::Cluster(&id.cluster);
    if uses_node_check {
        let node_hc = names::node_health_check(&id.cluster);
        if let Some(h) = health_check::get(api, &node_hc).await?
            && ownership::is_owned(cluster, h.description.as_deref())
        {
            match health_check::delete(api, &node_hc).await? {
                Deleted::InUse => {}
                Deleted::Gone | Deleted::Absent => {
                    firewall::delete_owned(api, cluster, &names::node_health_check_firewall(&id.cluster)).await?
                }
            }
        } else {
            firewall::delete_owned(api, cluster, &names::node_health_check_firewall(&id.cluster)).await?;
        }
    }

    let zones = zones_to_try(api, zones, bs.is_some()).await?;
    release_groups(api, &id.cluster, &zones).await
}

/// The zones whose instance groups a delete looks at: those known (record, backend service), or,
/// when none is and no backend service named any (an ensure that never got as far as the
/// backend service), every zone of the region.
pub(crate) async fn zones_to_try(
    api: &Api<'_>,
    known: BTreeSet<String>,
    had_backend_service: bool,
) -> Result<BTreeSet<String>, ProviderError> {
    if known.is_empty() && !had_backend_service {
        Ok(region_zones(api).await?.into_iter().collect())
    } else {
        Ok(known)
    }
}

/// Delete the cluster's instance groups of `zones` that nothing uses any more. The caller holds
/// the shared lock exclusively.
pub(crate) async fn release_groups(
    api: &Api<'_>,
    cluster: &str,
    zones: &BTreeSet<String>,
) -> Result<(), ProviderError> {
    let ig = names::instance_group(cluster);
    for zone in zones {
        instance_group::delete_if_unused(api, cluster, zone, &ig).await?;
    }
    Ok(())
}

pub async fn get(
    api: &Api<'_>,
    id: &LoadBalancerId,
    _rec: Option<&Record>,
) -> Result<Option<LoadBalancerStatus>, ProviderError> {
    let owner = Owner::Service(id);
    let name = names::load_balancer(id);
    let Some(fr) = forwarding_rule::get(api, &name).await? else { return Ok(None) };
    if !ownership::is_owned(owner, fr.description.as_deref()) {
        tracing::warn!(lb = %id, name, "forwarding rule with our name is not ours");
        return Ok(None);
    }
    let Some(ip) = forwarding_rule::ip(&fr).map(String::from) else { return Ok(None) };
    let mut missing = Vec::new();
    let mut rec = Record::default();
    rec.set(record::IP, ip.clone());
    rec.set(record::FORWARDING_RULE, forwarding_rule::link(api, &name));

    match backend_service::get(api, &name).await?.filter(|b| ownership::is_owned(owner, b.description.as_deref())) {
        None => missing.push(format!("backend service {name}")),
        Some(b) => {
            rec.set(record::BACKEND_SERVICE, backend_service::link(api, &name));
            for g in backend_service::groups(&b) {
                if let Some(zone) = links::zone(&g) {
                    record::set_instance_group(&mut rec, zone, &g);
                }
            }
            match backend_service::health_checks(&b).first() {
                None => missing.push("the backend service's health check".into()),
                Some(hc) => {
                    let hc_name = links::name(hc).to_string();
                    let (fw_name, fw_owner) = if hc_name == name {
                        (names::health_check_firewall(id), owner)
                    } else {
                        (names::node_health_check_firewall(&id.cluster), Owner::Cluster(&id.cluster))
                    };
                    match health_check::get(api, &hc_name).await? {
                        None => missing.push(format!("health check {hc_name}")),
                        Some(_) => rec.set(record::HEALTH_CHECK, health_check::link(api, &hc_name)),
                    }
                    match firewall::get(api, &fw_name).await? {
                        Some(f) if ownership::is_owned(fw_owner, f.description.as_deref()) => {
                            rec.set(record::HEALTH_CHECK_FIREWALL, links::global(api.config, "firewalls", &fw_name))
                        }
                        _ => missing.push(format!("firewall {fw_name}")),
                    }
                }
            }
        }
    }
    match firewall::get(api, &name).await? {
        Some(f) if ownership::is_owned(owner, f.description.as_deref()) => {
            rec.set(record::FIREWALL, links::global(api.config, "firewalls", &name))
        }
        _ => missing.push(format!("firewall {name}")),
    }
    // Which spec the cloud implements cannot be read back (Compute has nowhere to keep it that
    // would not cost a write on every node change), so a complete load balancer reports `None`
    // ("unknown"); an incomplete one reports a value no spec hash equals, so the drift check
    // repairs it.
    let spec_hash = (!missing.is_empty()).then(|| format!("incomplete: missing {}", missing.join(", ")));
    if let Some(h) = &spec_hash {
        tracing::info!(lb = %id, "{h}");
    }
    Ok(Some(ensure::status(&ip, rec, spec_hash)?))
}
