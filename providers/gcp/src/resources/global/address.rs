//! Global addresses: the one cloudlb reserves for an Ingress (both forwarding rules share it, and
//! it outlives a re-created rule), or the user's (`kubernetes.io/ingress.global-static-ip-name`),
//! only read, never changed or released.

use cloudlb_provider::LoadBalancerId;
use google_cloud_compute_v1::model::{Address, address};
use google_cloud_lro::Poller;

use crate::clients::{Api, gone};
use crate::errors::CallError;
use crate::ownership::{self, Owner};

pub const GET: &str = "compute.globalAddresses.get";
pub const INSERT: &str = "compute.globalAddresses.insert";
pub const DELETE: &str = "compute.globalAddresses.delete";

pub async fn get(api: &Api<'_>, name: &str) -> Result<Option<Address>, CallError> {
    let c = &api.clients.global.addresses;
    api.read(GET, c.get().set_project(api.project()).set_address(name).send()).await
}

/// Reserve an external IPv4 address named `name` for `id` (Premium tier: global addresses have no other).
pub async fn reserve(api: &Api<'_>, id: &LoadBalancerId, name: &str) -> Result<(), CallError> {
    let body = Address::new()
        .set_name(name)
        .set_address_type(address::AddressType::External)
        .set_ip_version(address::IpVersion::Ipv4)
        .set_description(ownership::description(Owner::Service(id), ownership::ADDRESS));
    let c = &api.clients.global.addresses;
    api.operate(INSERT, c.insert().set_project(api.project()).set_body(body).poller().until_done()).await.map(|_| ())
}

pub async fn release(api: &Api<'_>, name: &str) -> Result<(), CallError> {
    let c = &api.clients.global.addresses;
    gone(api.operate(DELETE, c.delete().set_project(api.project()).set_address(name).poller().until_done()).await)
}
