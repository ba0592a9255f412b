//! Every load balancer of a cluster in the project, found by the descriptions of its resources
//! whatever the records say (`Provider::list_owned`, what `cloudlb gc` compares with the
//! cluster's objects).
//!
//! One list per collection a load balancer has resources in, filtered by the server to our name
//! prefix (`k8s…`: Services' `k8s-`, Ingresses' `k8s7-`, the cluster's shared ones); a resource
//! counts when its description names the cluster and an owner uid (shared resources name none and
//! are never listed: they go when nothing uses them). 13 reads per sweep, whatever the number of
//! load balancers (plus one per 500 resources of a collection).

use std::collections::BTreeMap;
use std::time::SystemTime;

use cloudlb_provider::{LoadBalancerId, OwnedLoadBalancer, ProviderError};

use crate::clients::Api;
use crate::ownership;
use crate::resources::global::{all_pages, name_prefix_filter};

pub const FORWARDING_RULES: &str = "compute.forwardingRules.list";
pub const BACKEND_SERVICES: &str = "compute.regionBackendServices.list";
pub const HEALTH_CHECKS: &str = "compute.regionHealthChecks.list";
pub const FIREWALLS: &str = "compute.firewalls.list";
pub const GLOBAL_ADDRESSES: &str = "compute.globalAddresses.list";
pub const GLOBAL_FORWARDING_RULES: &str = "compute.globalForwardingRules.list";
pub const URL_MAPS: &str = "compute.urlMaps.list";
pub const HTTP_PROXIES: &str = "compute.targetHttpProxies.list";
pub const HTTPS_PROXIES: &str = "compute.targetHttpsProxies.list";

/// The list calls of a sweep (for the IAM role).
pub const CALLS: &[&str] = &[
    FORWARDING_RULES,
    BACKEND_SERVICES,
    HEALTH_CHECKS,
    FIREWALLS,
    GLOBAL_ADDRESSES,
    GLOBAL_FORWARDING_RULES,
    URL_MAPS,
    HTTP_PROXIES,
    HTTPS_PROXIES,
];

/// One resource as a list shows it.
struct Item {
    what: &'static str,
    name: Option<String>,
    description: Option<String>,
    created: Option<String>,
}

/// Lists one collection into `out`: `$client` and the list builder's extra setters (`region`).
macro_rules! list {
    ($api:expr, $out:expr, $call:expr, $what:expr, $client:ident $(, $setter:ident($arg:expr))*) => {{
        let c = &$client;
        let filter = name_prefix_filter("k8s");
        let items = all_pages(
            $api,
            $call,
            |token: Option<String>| {
                c.list()
                    .set_project($api.project())
                    $(.$setter($arg))*
                    .set_filter(filter.clone())
                    .set_or_clear_page_token(token)
                    .send()
            },
            |p| (p.items, p.next_page_token),
        )
        .await?;
        $out.extend(items.into_iter().map(|i| Item {
            what: $what,
            name: i.name,
            description: i.description,
            created: i.creation_timestamp,
        }));
    }};
}

pub async fn list_owned(api: &Api<'_>, cluster: &str) -> Result<Vec<OwnedLoadBalancer>, ProviderError> {
    let mut items: Vec<Item> = Vec::new();
    let (cl, g) = (&api.clients, &api.clients.global);
    let (fr, bs, hc, addr, fw) =
        (&cl.forwarding_rules, &cl.backend_services, &cl.health_checks, &cl.addresses, &cl.firewalls);
    list!(api, items, FORWARDING_RULES, "forwardingRules", fr, set_region(api.region()));
    list!(api, items, BACKEND_SERVICES, "backendServices", bs, set_region(api.region()));
    list!(api, items, HEALTH_CHECKS, "healthChecks", hc, set_region(api.region()));
    list!(api, items, crate::resources::address::LIST, "addresses", addr, set_region(api.region()));
    list!(api, items, FIREWALLS, "firewalls", fw);
    let (gaddr, gfr, gbs, ghc) = (&g.addresses, &g.forwarding_rules, &g.backend_services, &g.health_checks);
    list!(api, items, GLOBAL_ADDRESSES, "global/addresses", gaddr);
    list!(api, items, GLOBAL_FORWARDING_RULES, "global/forwardingRules", gfr);
    list!(api, items, crate::resources::global::backend_service::LIST, "global/backendServices", gbs);
    list!(api, items, crate::resources::global::health_check::LIST, "global/healthChecks", ghc);
    let (um, hp, sp, certs) = (&g.url_maps, &g.http_proxies, &g.https_proxies, &g.certificates);
    list!(api, items, URL_MAPS, "urlMaps", um);
    list!(api, items, HTTP_PROXIES, "targetHttpProxies", hp);
    list!(api, items, HTTPS_PROXIES, "targetHttpsProxies", sp);
    list!(api, items, crate::resources::global::certificate::LIST, "sslCertificates", certs);
    Ok(group(cluster, items))
}

/// Our resources of `cluster`, one entry per owner uid.
fn group(cluster: &str, items: Vec<Item>) -> Vec<OwnedLoadBalancer> {
    let mut by_uid: BTreeMap<String, OwnedLoadBalancer> = BTreeMap::new();
    for i in items {
        let d = i.description.as_deref();
        if ownership::cluster_of(d).as_deref() != Some(cluster) {
            continue;
        }
        let (Some(uid), Some(owner)) =
            (ownership::field(d, ownership::OWNER_UID), ownership::field(d, ownership::OWNER))
        else {
            continue;
        };
        let (namespace, name) = owner.split_once('/').unwrap_or(("", owner.as_str()));
        let name_of = i.name.unwrap_or_default();
        let entry = by_uid.entry(uid.clone()).or_insert_with(|| OwnedLoadBalancer {
            id: LoadBalancerId::new(cluster, namespace, name, uid),
            l7: false,
            created: None,
            resources: Vec::new(),
        });
        entry.l7 |= name_of.starts_with("k8s7-");
        let created = i.created.as_deref().and_then(parse_time);
        entry.created = match (entry.created, created) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        entry.resources.push(format!("{} {name_of}", i.what));
    }
    by_uid.into_values().collect()
}

/// Compute's `creationTimestamp` (RFC 3339 with an offset).
fn parse_time(s: &str) -> Option<SystemTime> {
    let t: jiff::Timestamp = s.parse().ok()?;
    Some(SystemTime::from(t))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resources_group_by_owner_and_shared_or_foreign_ones_are_left_out() {
        let id = LoadBalancerId::new("prod", "ns", "web", "u1");
        let ours = |role| Some(ownership::description(ownership::Owner::Service(&id), role));
        let item = |what, name: &str, description, created: &str| Item {
            what,
            name: Some(name.into()),
            description,
            created: Some(created.into()),
        };
        let other = LoadBalancerId::new("staging", "ns", "web", "u2");
        let groups = group(
            "prod",
            vec![
                item("urlMaps", "k8s7-ns-web-x-um", ours(ownership::URL_MAP), "2026-12-01T08:00:00.000-08:00"),
                item("global/addresses", "k8s7-ns-web-x-ip", ours(ownership::ADDRESS), "2026-12-01T07:00:00.000-08:00"),
                item(
                    "instanceGroups",
                    "k8s-prod-ig",
                    Some(ownership::description(ownership::Owner::Cluster("prod"), "instance-group")),
                    "2026-12-01T07:00:00Z",
                ),
                item(
                    "forwardingRules",
                    "k8s-ns-web-y",
                    Some(ownership::description(ownership::Owner::Service(&other), "forwarding-rule")),
                    "2026-12-01T07:00:00Z",
                ),
                item("firewalls", "k8s-by-hand", Some("made by hand".into()), "2026-12-01T07:00:00Z"),
            ],
        );
        assert_eq!(groups.len(), 1, "{groups:?}");
        let g = &groups[0];
        assert_eq!(g.id, id);
        assert!(g.l7);
        assert_eq!(g.resources, ["urlMaps k8s7-ns-web-x-um", "global/addresses k8s7-ns-web-x-ip"]);
        assert_eq!(g.created, parse_time("2026-12-01T15:00:00Z"), "the oldest resource's time");
    }
}
