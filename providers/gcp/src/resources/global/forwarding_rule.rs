//! Global forwarding rules (`EXTERNAL_MANAGED`): one per listener (HTTP, HTTPS), on the shared
//! address, pointing at a target proxy. The target changes in place (`setTarget`); the port or
//! the address cannot, so those re-create the rule (the address stays reserved meanwhile).

use cloudlb_provider::LoadBalancerId;
use google_cloud_compute_v1::model::{ForwardingRule, TargetReference, forwarding_rule};
use google_cloud_lro::Poller;

use crate::clients::{Api, gone};
use crate::errors::CallError;
use crate::links;
use crate::ownership::{self, Owner};

pub const GET: &str = "compute.globalForwardingRules.get";
pub const INSERT: &str = "compute.globalForwardingRules.insert";
pub const SET_TARGET: &str = "compute.globalForwardingRules.setTarget";
pub const DELETE: &str = "compute.globalForwardingRules.delete";

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Desired {
    pub name: String,
    pub port: u16,
    /// The address's IP.
    pub ip: String,
    /// The target proxy's link.
    pub target: String,
}

/// How the rule differs from what is wanted.
#[derive(Debug, PartialEq, Eq)]
pub enum Diff {
    None,
    Target,
    /// Port, IP or scheme: only a new rule can have them.
    Recreate(String),
}

pub async fn get(api: &Api<'_>, name: &str) -> Result<Option<ForwardingRule>, CallError> {
    let c = &api.clients.global.forwarding_rules;
    api.read(GET, c.get().set_project(api.project()).set_forwarding_rule(name).send()).await
}

pub fn diff(cur: &ForwardingRule, d: &Desired) -> Diff {
    let range = format!("{0}-{0}", d.port);
    let scheme = cur.load_balancing_scheme.as_ref().and_then(|s| s.name()).unwrap_or("");
    if scheme != "EXTERNAL_MANAGED" {
        return Diff::Recreate(format!("scheme {scheme}"));
    }
    // Compute stores a single port as "80-80".
    if cur.port_range.as_deref() != Some(range.as_str()) {
        return Diff::Recreate(format!("port range {:?}", cur.port_range));
    }
    if cur.ip_address.as_deref() != Some(d.ip.as_str()) {
        return Diff::Recreate(format!("IP {:?}", cur.ip_address));
    }
    if !cur.target.as_deref().is_some_and(|t| links::same(t, &d.target)) {
        return Diff::Target;
    }
    Diff::None
}

pub async fn insert(api: &Api<'_>, id: &LoadBalancerId, d: &Desired) -> Result<(), CallError> {
    let body = ForwardingRule::new()
        .set_name(d.name.clone())
        .set_description(ownership::description(Owner::Service(id), ownership::FORWARDING_RULE))
        .set_load_balancing_scheme(forwarding_rule::LoadBalancingScheme::ExternalManaged)
        .set_ip_protocol(forwarding_rule::IPProtocol::from("TCP"))
        .set_ip_address(d.ip.clone())
        .set_port_range(d.port.to_string())
        .set_target(d.target.clone());
    let c = &api.clients.global.forwarding_rules;
    api.operate(INSERT, c.insert().set_project(api.project()).set_body(body).poller().until_done()).await.map(|_| ())
}

pub async fn set_target(api: &Api<'_>, name: &str, target: &str) -> Result<(), CallError> {
    let c = &api.clients.global.forwarding_rules;
    let req = c
        .set_target()
        .set_project(api.project())
        .set_forwarding_rule(name)
        .set_body(TargetReference::new().set_target(target))
        .poller()
        .until_done();
    api.operate(SET_TARGET, req).await.map(|_| ())
}

pub async fn delete(api: &Api<'_>, name: &str) -> Result<(), CallError> {
    let c = &api.clients.global.forwarding_rules;
    gone(
        api.operate(DELETE, c.delete().set_project(api.project()).set_forwarding_rule(name).poller().until_done())
            .await,
    )
}
