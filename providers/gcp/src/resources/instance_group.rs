//! Unmanaged instance groups, one per zone, holding the cluster's nodes: the backends of every
//! backend service of the cluster (shared, like GKE's `k8s-ig--<uid>`).
//!
//! Membership is converged by difference: one `listInstances` read, then `addInstances` /
//! `removeInstances` for what changed only (in batches of 1000), so a node joining costs one
//! mutating call per zone it touches, and an unchanged set costs none. A group is deleted only
//! when no backend service uses it any more (the delete is tried; "in use" means keep it).

use std::collections::BTreeSet;

use cloudlb_provider::ProviderError;
use google_cloud_compute_v1::model::{
    InstanceGroup, InstanceGroupsAddInstancesRequest, InstanceGroupsListInstancesRequest,
    InstanceGroupsRemoveInstancesRequest, InstanceGroupsSetNamedPortsRequest, InstanceReference, NamedPort,
    instance_groups_list_instances_request,
};
use google_cloud_lro::Poller;

use crate::clients::Api;
use crate::errors::CallError;
use crate::links;
use crate::ownership::{self, Owner};

pub const GET: &str = "compute.instanceGroups.get";
pub const INSERT: &str = "compute.instanceGroups.insert";
pub const LIST_INSTANCES: &str = "compute.instanceGroups.listInstances";
pub const ADD_INSTANCES: &str = "compute.instanceGroups.addInstances";
pub const REMOVE_INSTANCES: &str = "compute.instanceGroups.removeInstances";
pub const DELETE: &str = "compute.instanceGroups.delete";
pub const SET_NAMED_PORTS: &str = "compute.instanceGroups.setNamedPorts";

/// The named port of a node port, as L7 backend services name it (`port30080`).
pub fn port_name(node_port: u16) -> String {
    format!("port{node_port}")
}

/// Instances per `addInstances` / `removeInstances` call.
pub const BATCH: usize = 1000;

pub fn link(api: &Api<'_>, zone: &str, name: &str) -> String {
    links::zonal(api.config, zone, "instanceGroups", name)
}

pub async fn get(api: &Api<'_>, zone: &str, name: &str) -> Result<Option<InstanceGroup>, CallError> {
    let c = &api.clients.instance_groups;
    api.read(GET, c.get().set_project(api.project()).set_zone(zone).set_instance_group(name).send()).await
}

/// Member instance links (every page).
pub async fn members(api: &Api<'_>, zone: &str, name: &str) -> Result<BTreeSet<String>, CallError> {
    let c = &api.clients.instance_groups;
    let mut out = BTreeSet::new();
    let mut token: Option<String> = None;
    loop {
        let req = c
            .list_instances()
            .set_project(api.project())
            .set_zone(zone)
            .set_instance_group(name)
            .set_or_clear_page_token(token.clone())
            .set_body(
                InstanceGroupsListInstancesRequest::new()
                    .set_instance_state(instance_groups_list_instances_request::InstanceState::All),
            )
            .send();
        let Some(page) = api.read(LIST_INSTANCES, req).await? else { return Ok(out) };
        out.extend(page.items.into_iter().filter_map(|i| i.instance).map(|l| links::tail(&l).to_string()));
        match page.next_page_token.filter(|t| !t.is_empty()) {
            Some(t) => token = Some(t),
            None => return Ok(out),
        }
    }
}

/// Make the group of `zone` exist (ownership checked), hold exactly `wanted`, and name at least
/// `named_ports` (L7 backend services send to a named port; other names are kept: other load
/// balancers of the cluster use them); its self-link.
pub async fn ensure(
    api: &Api<'_>,
    cluster: &str,
    zone: &str,
    name: &str,
    wanted: &BTreeSet<String>,
    named_ports: &BTreeSet<u16>,
) -> Result<String, ProviderError> {
    let owner = Owner::Cluster(cluster);
    let c = &api.clients.instance_groups;
    let mut _changing = None;
    let found = match get(api, zone, name).await? {
        None => {
            _changing = Some(api.changing_shared.lock().await);
            get(api, zone, name).await?
        }
        found => found,
    };
    let found = match found {
        Some(g) => Some(g),
        None => {
            let body = InstanceGroup::new()
                .set_name(name)
                .set_description(ownership::description(owner, ownership::INSTANCE_GROUP))
                .set_network(links::network(api.config))
                .set_named_ports(
                    named_ports.iter().map(|p| NamedPort::new().set_name(port_name(*p)).set_port(i32::from(*p))),
                );
            let req = c.insert().set_project(api.project()).set_zone(zone).set_body(body).poller().until_done();
            match api.operate(INSERT, req).await {
                Ok(_) => None,
                // Made by another ensure of the cluster since we read: converge that one.
                Err(e) if e.is_already_exists() => Some(get(api, zone, name).await?.ok_or(e)?),
                Err(e) => return Err(e.into()),
            }
        }
    };
    let wanted: BTreeSet<String> = wanted.iter().map(|l| links::tail(l).to_string()).collect();
    let mut current = match &found {
        Some(g) => {
            ownership::check(GET, owner, &format!("instance group {name} in {zone}"), g.description.as_deref())?;
            if lacks_named_ports(g, named_ports) {
                add_named_ports(api, zone, name, named_ports).await?;
            }
            members(api, zone, name).await?
        }
        None => BTreeSet::new(),
    };
    if current != wanted && _changing.is_none() {
        // Every ensure of the cluster converges this group: one changes it while the others
        // wait, then find it done (instead of all adding the same node at once and all but one
        // failing with resourceNotReady or memberAlreadyExists).
        _changing = Some(api.changing_shared.lock().await);
        current = members(api, zone, name).await?;
    }
    let add: Vec<&String> = wanted.difference(&current).collect();
    let remove: Vec<&String> = current.difference(&wanted).collect();
    let refs = |chunk: &[&String]| -> Vec<InstanceReference> {
        chunk.iter().map(|l| InstanceReference::new().set_instance(format!("{}{l}", links::API))).collect()
    };
    for chunk in add.chunks(BATCH) {
        let req = c
            .add_instances()
            .set_project(api.project())
            .set_zone(zone)
            .set_instance_group(name)
            .set_body(InstanceGroupsAddInstancesRequest::new().set_instances(refs(chunk)))
            .poller()
            .until_done();
        api.operate(ADD_INSTANCES, req).await?;
    }
    for chunk in remove.chunks(BATCH) {
        let req = c
            .remove_instances()
            .set_project(api.project())
            .set_zone(zone)
            .set_instance_group(name)
            .set_body(InstanceGroupsRemoveInstancesRequest::new().set_instances(refs(chunk)))
            .poller()
            .until_done();
        api.operate(REMOVE_INSTANCES, req).await?;
    }
    Ok(link(api, zone, name))
}

fn lacks_named_ports(g: &InstanceGroup, want: &BTreeSet<u16>) -> bool {
    want.iter().any(|p| {
        let name = port_name(*p);
        !g.named_ports.iter().any(|n| n.name.as_deref() == Some(name.as_str()) && n.port == Some(i32::from(*p)))
    })
}

/// Add the named ports of `want` the group lacks, keeping every other. Under the shared-change
/// lock with a fresh read, and with its fingerprint: two ensures adding different ports never
/// overwrite each other (a concurrent change elsewhere is a 412, retried by the next pass).
async fn add_named_ports(api: &Api<'_>, zone: &str, name: &str, want: &BTreeSet<u16>) -> Result<(), ProviderError> {
    let _changing = api.changing_shared.lock().await;
    let Some(g) = get(api, zone, name).await? else { return Ok(()) };
    if !lacks_named_ports(&g, want) {
        return Ok(());
    }
    let mut ports: Vec<NamedPort> = g
        .named_ports
        .iter()
        .filter(|n| !n.name.as_deref().is_some_and(|x| want.iter().any(|p| port_name(*p) == x)))
        .cloned()
        .collect();
    ports.extend(want.iter().map(|p| NamedPort::new().set_name(port_name(*p)).set_port(i32::from(*p))));
    set_named_ports(api, zone, name, &g, ports).await
}

async fn set_named_ports(
    api: &Api<'_>,
    zone: &str,
    name: &str,
    g: &InstanceGroup,
    ports: Vec<NamedPort>,
) -> Result<(), ProviderError> {
    let c = &api.clients.instance_groups;
    let body = InstanceGroupsSetNamedPortsRequest::new()
        .set_named_ports(ports)
        .set_or_clear_fingerprint(g.fingerprint.clone());
    let req = c
        .set_named_ports()
        .set_project(api.project())
        .set_zone(zone)
        .set_instance_group(name)
        .set_body(body)
        .poller()
        .until_done();
    api.operate(SET_NAMED_PORTS, req).await?;
    Ok(())
}

/// Drop the group's `port<N>` names that no port of `in_use` has (an Ingress deleted, a
/// Service's node port changed); names of another form are not ours and stay.
pub async fn prune_named_ports(
    api: &Api<'_>,
    cluster: &str,
    zone: &str,
    name: &str,
    in_use: &BTreeSet<u16>,
) -> Result<(), ProviderError> {
    let _changing = api.changing_shared.lock().await;
    let Some(g) = get(api, zone, name).await? else { return Ok(()) };
    if !ownership::is_owned(Owner::Cluster(cluster), g.description.as_deref()) {
        return Ok(());
    }
    let keep = |n: &NamedPort| {
        let ours = n.name.as_deref().and_then(|x| x.strip_prefix("port")).and_then(|p| p.parse::<u16>().ok());
        match ours {
            Some(p) => in_use.contains(&p) && n.port == Some(i32::from(p)),
            None => true,
        }
    };
    if g.named_ports.iter().all(keep) {
        return Ok(());
    }
    let ports: Vec<NamedPort> = g.named_ports.iter().filter(|n| keep(n)).cloned().collect();
    set_named_ports(api, zone, name, &g, ports).await
}

/// Remove every member of the cluster's group in `zone` (a zone that lost all its nodes); nothing
/// when the group is gone, not ours, or already empty.
pub async fn empty(api: &Api<'_>, cluster: &str, zone: &str, name: &str) -> Result<(), ProviderError> {
    let Some(g) = get(api, zone, name).await? else { return Ok(()) };
    if !ownership::is_owned(Owner::Cluster(cluster), g.description.as_deref()) {
        return Ok(());
    }
    let current: Vec<String> = members(api, zone, name).await?.into_iter().collect();
    let c = &api.clients.instance_groups;
    for chunk in current.chunks(BATCH) {
        let refs: Vec<InstanceReference> =
            chunk.iter().map(|l| InstanceReference::new().set_instance(format!("{}{l}", links::API))).collect();
        let req = c
            .remove_instances()
            .set_project(api.project())
            .set_zone(zone)
            .set_instance_group(name)
            .set_body(InstanceGroupsRemoveInstancesRequest::new().set_instances(refs))
            .poller()
            .until_done();
        api.operate(REMOVE_INSTANCES, req).await?;
    }
    Ok(())
}

/// Delete the cluster's group in `zone` unless a backend service still uses it; `true` when it
/// is gone.
pub async fn delete_if_unused(api: &Api<'_>, cluster: &str, zone: &str, name: &str) -> Result<bool, CallError> {
    let Some(g) = get(api, zone, name).await? else { return Ok(true) };
    if !ownership::is_owned(Owner::Cluster(cluster), g.description.as_deref()) {
        tracing::warn!(zone, group = name, "instance group with our name is not ours; leaving it alone");
        return Ok(false);
    }
    let c = &api.clients.instance_groups;
    let req = c.delete().set_project(api.project()).set_zone(zone).set_instance_group(name).poller().until_done();
    match api.operate(DELETE, req).await {
        Ok(_) => Ok(true),
        Err(e) if e.is_not_found() => Ok(true),
        Err(e) if e.is_in_use() => Ok(false),
        Err(e) => Err(e),
    }
}
