//! Regional addresses: the user's reserved IPs (found by name or by IP, never released) and the
//! one cloudlb reserves under the load balancer's name, only while a Service asks for its IP
//! (`loadBalancerIP`) or while a forwarding rule is re-created (the IP is held, then released: the
//! rule keeps it as an ephemeral IP).

use cloudlb_provider::LoadBalancerId;
use google_cloud_compute_v1::model::{Address, address};
use google_cloud_lro::Poller;

use crate::clients::Api;
use crate::errors::CallError;
use crate::ownership::{self, Owner};

pub const GET: &str = "compute.addresses.get";
pub const LIST: &str = "compute.addresses.list";
pub const INSERT: &str = "compute.addresses.insert";
pub const DELETE: &str = "compute.addresses.delete";

pub async fn get(api: &Api<'_>, name: &str) -> Result<Option<Address>, CallError> {
    let c = &api.clients.addresses;
    api.read(GET, c.get().set_project(api.project()).set_region(api.region()).set_address(name).send()).await
}

/// The reserved address of the region holding `ip`, if any.
pub async fn find_by_ip(api: &Api<'_>, ip: &str) -> Result<Option<Address>, CallError> {
    let c = &api.clients.addresses;
    let filter = format!("address = \"{ip}\"");
    let list =
        api.read(LIST, c.list().set_project(api.project()).set_region(api.region()).set_filter(filter).send()).await?;
    Ok(list.and_then(|l| l.items.into_iter().find(|a| a.address.as_deref() == Some(ip))))
}

/// Reserve `ip` (external, `tier`) under `name` for `id`.
pub async fn reserve(api: &Api<'_>, id: &LoadBalancerId, name: &str, ip: &str, tier: &str) -> Result<(), CallError> {
    let body = Address::new()
        .set_name(name)
        .set_address(ip)
        .set_address_type(address::AddressType::External)
        .set_network_tier(address::NetworkTier::from(tier))
        .set_description(ownership::description(Owner::Service(id), ownership::ADDRESS))
        .set_labels(ownership::labels(id));
    let c = &api.clients.addresses;
    let req = c.insert().set_project(api.project()).set_region(api.region()).set_body(body).poller().until_done();
    api.operate(INSERT, req).await.map(|_| ())
}

/// Release the address `name`; `Ok` when it is already gone.
pub async fn release(api: &Api<'_>, name: &str) -> Result<(), CallError> {
    let c = &api.clients.addresses;
    let req = c.delete().set_project(api.project()).set_region(api.region()).set_address(name).poller().until_done();
    match api.operate(DELETE, req).await {
        Err(e) if e.is_not_found() => Ok(()),
        other => other.map(|_| ()),
    }
}
