//! `ensure_l7`: converge Compute to one Ingress's plan, **making before breaking**: everything a
//! change needs exists before anything points at it, and what is no longer wanted goes only after
//! nothing points at it any more.
//!
//! ```text
//!   read      forwarding rules, proxies, URL maps, address, firewall (by name); backend services,
//!             health checks, certificates (one list each, by the Ingress's prefix): a foreign
//!             resource under a wanted name stops the pass before any change
//!   address   ours (reserved once, shared by both rules) or the user's static one (read only)
//!   groups    the cluster's instance groups: members, and the backends' named ports
//!   firewall  Google's proxy/checker ranges -> the backends' node ports
//!   backends  health check, then backend service, per backend; the fixed-answer service
//!   certs     new certificates inserted (a rotated Secret is a new name)
//!   URL maps  the routing map; the redirect map when HTTP redirects
//!   proxies   HTTP -> routing or redirect map; HTTPS -> routing map + certificates
//!   rules     one per listener on the address; setTarget in place, port/IP re-created
//!   cleanup   rules, proxies, maps, certificates, backend services, checks, firewall and
//!             our address that nothing wants any more, in that order
//! ```
//!
//! A repointed path: the new backend service exists before the map names it, the old one is
//! deleted after. A rotated certificate: inserted, swapped into the proxy in one call, then the
//! old one deleted. An unchanged spec costs reads only.

use std::collections::{BTreeMap, BTreeSet};

use cloudlb_provider::{IngressPoint, IpMode, L7Spec, LoadBalancerId, LoadBalancerStatus, ProviderError, Record};
use google_cloud_compute_v1::model::{BackendService, HealthCheck, SslCertificate};

use super::plan::{self, PROXY_RANGES};
use super::{options, record, routing};
use crate::clients::Api;
use crate::errors::CallError;
use crate::links;
use crate::ownership::{self, Owner};
use crate::resources::firewall::{self, Rule};
use crate::resources::global::{address, backend_service, certificate, forwarding_rule, health_check, proxy, url_map};
use crate::resources::instance_group;

/// Every problem `ensure_l7` refuses to start with (what `validate_l7` reports).
pub fn fatal_problems(spec: &L7Spec) -> Vec<String> {
    let (opts, problems) = options::parse(&spec.options);
    let mut out: Vec<String> = problems.into_iter().filter(|p| p.fatal).map(|p| p.message).collect();
    out.extend(plan::problems(spec, &opts));
    out
}

fn invalid(message: String) -> ProviderError {
    ProviderError::Invalid { call: "gcp:l7", message }
}

/// What exists of one Ingress's load balancer.
pub struct Found {
    pub backend_services: Vec<BackendService>,
    pub health_checks: Vec<HealthCheck>,
    pub certificates: Vec<SslCertificate>,
}

impl Found {
    /// Everything under the Ingress's prefixes, ours or not (the callers check).
    pub async fn read(api: &Api<'_>, names: &plan::Names) -> Result<Self, CallError> {
        Ok(Self {
            backend_services: backend_service::list(api, &format!("{}-", names.base)).await?,
            health_checks: health_check::list(api, &names.backend_prefix()).await?,
            certificates: certificate::list(api, &names.certificate_prefix()).await?,
        })
    }
}

/// `Ok` when `description` is ours; a conflict naming `what` otherwise.
fn check(
    call: &'static str,
    id: &LoadBalancerId,
    what: String,
    description: Option<&str>,
) -> Result<(), ProviderError> {
    ownership::check(call, Owner::Service(id), &what, description)
}

fn is_ours(id: &LoadBalancerId, description: Option<&str>) -> bool {
    ownership::is_owned(Owner::Service(id), description)
}

pub async fn ensure(api: &Api<'_>, id: &LoadBalancerId, spec: &L7Spec) -> Result<LoadBalancerStatus, ProviderError> {
    let problems = fatal_problems(spec);
    if !problems.is_empty() {
        return Err(invalid(problems.join("; ")));
    }
    let (opts, _) = options::parse(&spec.options);
    let plan = plan::build(id, spec, &opts, api.config);
    let n = &plan.names;
    // Until our backend services use the shared groups, no delete may remove them.
    let shared = api.shared.read().await;
    for s in &plan.skipped {
        tracing::warn!(lb = %id, node = %s.node, reason = %s.reason, "node is not a backend");
    }

    // 1. What exists, and is it ours?
    let fr_http = forwarding_rule::get(api, &n.http_rule).await?;
    let fr_https = forwarding_rule::get(api, &n.https_rule).await?;
    for (fr, name) in [(&fr_http, &n.http_rule), (&fr_https, &n.https_rule)] {
        if let Some(f) = fr {
            check(forwarding_rule::GET, id, format!("forwarding rule {name}"), f.description.as_deref())?;
        }
    }
    let hp = proxy::get_http(api, &n.http_proxy).await?;
    if let Some(p) = &hp {
        check(proxy::HTTP_GET, id, format!("target HTTP proxy {}", n.http_proxy), p.description.as_deref())?;
    }
    let sp = proxy::get_https(api, &n.https_proxy).await?;
    if let Some(p) = &sp {
        check(proxy::HTTPS_GET, id, format!("target HTTPS proxy {}", n.https_proxy), p.description.as_deref())?;
    }
    let um = url_map::get(api, &n.url_map).await?;
    let rd = url_map::get(api, &n.redirect_map).await?;
    for (m, name) in [(&um, &n.url_map), (&rd, &n.redirect_map)] {
        if let Some(m) = m {
            check(url_map::GET, id, format!("URL map {name}"), m.description.as_deref())?;
        }
    }
    let ours_addr = address::get(api, &n.address).await?;
    if let Some(a) = &ours_addr {
        check(address::GET, id, format!("global address {}", n.address), a.description.as_deref())?;
    }
    let fw = firewall::get(api, &n.firewall).await?;
    if let Some(f) = &fw {
        check(firewall::GET, id, format!("firewall {}", n.firewall), f.description.as_deref())?;
    }
    let found = Found::read(api, n).await?;
    let wanted_bs: BTreeSet<&str> = plan
        .backends
        .iter()
        .map(|b| b.name.as_str())
        .chain(plan.needs_fixed.then_some(n.fixed_backend.as_str()))
        .collect();
    for b in &found.backend_services {
        let name = b.name.as_deref().unwrap_or("");
        if wanted_bs.contains(name) {
            check(backend_service::LIST, id, format!("backend service {name}"), b.description.as_deref())?;
        }
    }
    for h in &found.health_checks {
        let name = h.name.as_deref().unwrap_or("");
        if wanted_bs.contains(name) {
            check(health_check::LIST, id, format!("health check {name}"), h.description.as_deref())?;
        }
    }
    let wanted_certs: BTreeSet<&str> = plan.certificates.iter().map(|(name, _)| name.as_str()).collect();
    for c in &found.certificates {
        let name = c.name.as_deref().unwrap_or("");
        if wanted_certs.contains(name) {
            check(certificate::LIST, id, format!("SSL certificate {name}"), c.description.as_deref())?;
        }
    }

    // 2. The user's certificates and address (reads only: a missing one fails here, before any
    // change), else our address.
    for name in &plan.pre_shared {
        if certificate::get(api, name).await?.is_none() {
            return Err(invalid(format!(
                "annotation {}: SSL certificate {name:?} does not exist in project {}",
                options::annotation("pre-shared-cert"),
                api.project()
            )));
        }
    }

    let (ip, user_address) = match &plan.static_ip {
        Some(name) => {
            let Some(a) = address::get(api, name).await? else {
                return Err(invalid(format!(
                    "annotation {}: global address {name:?} does not exist; reserve it first (gcloud compute \
                     addresses create {name} --global)",
                    options::annotation("global-static-ip-name")
                )));
            };
            if a.address_type.as_ref().and_then(|t| t.name()).is_some_and(|t| t != "EXTERNAL") {
                return Err(invalid(format!(
                    "annotation {}: global address {name:?} is not EXTERNAL",
                    options::annotation("global-static-ip-name")
                )));
            }
            let ip = a.address.clone().ok_or_else(|| ProviderError::Retryable {
                call: address::GET,
                message: format!("global address {name} has no IP yet"),
            })?;
            (ip, Some(name.clone()))
        }
        None => {
            let a = match ours_addr.clone() {
                Some(a) => a,
                None => {
                    address::reserve(api, id, &n.address).await?;
                    address::get(api, &n.address).await?.ok_or_else(|| ProviderError::Retryable {
                        call: address::GET,
                        message: format!("global address {} is not visible yet after its creation", n.address),
                    })?
                }
            };
            let ip = a.address.ok_or_else(|| ProviderError::Retryable {
                call: address::GET,
                message: format!("global address {} has no IP yet", n.address),
            })?;
            (ip, None)
        }
    };

    // 3. The cluster's instance groups: members and the backends' named ports.
    let ig_name = crate::names::instance_group(&id.cluster);
    let named: BTreeSet<u16> = plan.backends.iter().map(|b| b.node_port).collect();
    let mut groups: Vec<(String, String)> = Vec::new();
    for (zone, wanted) in &plan.instances {
        let link = instance_group::ensure(api, &id.cluster, zone, &ig_name, wanted, &named).await?;
        groups.push((zone.clone(), link));
    }
    let group_links: Vec<String> = groups.iter().map(|(_, l)| l.clone()).collect();

    // 4. Google's front ends may reach the node ports.
    if !plan.node_ports.is_empty() {
        let rule = Rule {
            name: n.firewall.clone(),
            role: ownership::FIREWALL,
            allowed: BTreeMap::from([("tcp", plan.node_ports.iter().copied().collect())]),
            source_ranges: PROXY_RANGES.iter().map(|s| s.to_string()).collect(),
            destination_ranges: Vec::new(),
        };
        firewall::converge(api, Owner::Service(id), &rule, fw.clone()).await?;
    }

    // 5. Backends: check, then service (new ones exist before the map names them).
    let mut stale_ports = false;
    for b in &plan.backends {
        let cur_hc = found.health_checks.iter().find(|h| h.name.as_deref() == Some(b.name.as_str()));
        match cur_hc {
            None => health_check::insert(api, id, &b.health).await?,
            Some(h) if !health_check::matches(h, &b.health) => health_check::update(api, id, &b.health).await?,
            Some(_) => {}
        }
        let desired = backend_service::Desired {
            name: b.name.clone(),
            port_name: Some(instance_group::port_name(b.node_port)),
            health_check: Some(health_check::link(api, &b.name)),
            groups: group_links.clone(),
            timeout_sec: plan.timeout_sec,
        };
        let cur = found.backend_services.iter().find(|s| s.name.as_deref() == Some(b.name.as_str()));
        stale_ports |= cur.is_some_and(|s| s.port_name != desired.port_name);
        converge_backend_service(api, id, cur, &desired).await?;
    }
    if plan.needs_fixed {
        let desired = backend_service::Desired {
            name: n.fixed_backend.clone(),
            port_name: None,
            health_check: None,
            groups: Vec::new(),
            timeout_sec: plan.timeout_sec,
        };
        let cur = found.backend_services.iter().find(|s| s.name.as_deref() == Some(n.fixed_backend.as_str()));
        converge_backend_service(api, id, cur, &desired).await?;
    }

    // 6. Certificates: new content is a new certificate.
    for (name, c) in &plan.certificates {
        if !found.certificates.iter().any(|x| x.name.as_deref() == Some(name.as_str())) {
            certificate::insert(api, id, name, &c.chain_pem, &c.key_pem.0).await?;
        }
    }
    let cert_links: Vec<String> = plan
        .certificates
        .iter()
        .map(|(name, _)| name)
        .chain(&plan.pre_shared)
        .map(|name| certificate::link(api, name))
        .collect();

    // 7. URL maps.
    let hash = spec.hash();
    converge_map(api, id, um.as_ref(), &plan.url_map, Some(&hash)).await?;
    if plan.redirect {
        converge_map(api, id, rd.as_ref(), &routing::redirect_map(&n.redirect_map), None).await?;
    }
    let um_link = url_map::link(api, &n.url_map);

    // 8. Proxies.
    if plan.http_port.is_some() {
        let target = if plan.redirect { url_map::link(api, &n.redirect_map) } else { um_link.clone() };
        proxy::converge_http(api, id, &n.http_proxy, hp.as_ref(), &target).await?;
    }
    if plan.https_port.is_some() {
        proxy::converge_https(api, id, &n.https_proxy, sp.as_ref(), &um_link, &cert_links).await?;
    }

    // 9. Forwarding rules on the address.
    let listeners = [
        (plan.http_port, &n.http_rule, proxy::http_link(api, &n.http_proxy), &fr_http, record::HTTP_RULE),
        (plan.https_port, &n.https_rule, proxy::https_link(api, &n.https_proxy), &fr_https, record::HTTPS_RULE),
    ];
    for (port, name, target, cur, _) in &listeners {
        let Some(port) = port else { continue };
        let desired =
            forwarding_rule::Desired { name: (*name).clone(), port: *port, ip: ip.clone(), target: target.clone() };
        match cur.as_ref().map(|c| forwarding_rule::diff(c, &desired)) {
            None => forwarding_rule::insert(api, id, &desired).await?,
            Some(forwarding_rule::Diff::None) => {}
            Some(forwarding_rule::Diff::Target) => forwarding_rule::set_target(api, name, target).await?,
            Some(forwarding_rule::Diff::Recreate(why)) => {
                tracing::info!(lb = %id, rule = %name, why, "forwarding rule cannot change in place; re-creating it");
                forwarding_rule::delete(api, name).await?;
                forwarding_rule::insert(api, id, &desired).await?;
            }
        }
    }

    // 10. Cleanup: nothing points at these any more.
    if plan.http_port.is_none() && fr_http.is_some() {
        forwarding_rule::delete(api, &n.http_rule).await?;
    }
    if plan.https_port.is_none() && fr_https.is_some() {
        forwarding_rule::delete(api, &n.https_rule).await?;
    }
    if plan.http_port.is_none() && hp.is_some() {
        proxy::delete_http(api, &n.http_proxy).await?;
    }
    if plan.https_port.is_none() && sp.is_some() {
        proxy::delete_https(api, &n.https_proxy).await?;
    }
    if !plan.redirect && rd.is_some() {
        url_map::delete(api, &n.redirect_map).await?;
    }
    for c in &found.certificates {
        let name = c.name.as_deref().unwrap_or("");
        if !wanted_certs.contains(name) && is_ours(id, c.description.as_deref()) {
            certificate::delete(api, name).await?;
        }
    }
    let mut dropped_backend = false;
    for b in &found.backend_services {
        let name = b.name.as_deref().unwrap_or("");
        if !wanted_bs.contains(name) && is_ours(id, b.description.as_deref()) {
            backend_service::delete(api, name).await?;
            dropped_backend = true;
        }
    }
    for h in &found.health_checks {
        let name = h.name.as_deref().unwrap_or("");
        if !wanted_bs.contains(name) && is_ours(id, h.description.as_deref()) {
            health_check::delete(api, name).await?;
        }
    }
    if plan.node_ports.is_empty() && fw.is_some() {
        firewall::delete_owned(api, Owner::Service(id), &n.firewall).await?;
    }
    if user_address.is_some() && ours_addr.is_some() {
        address::release(api, &n.address).await?;
    }
    drop(shared);
    if dropped_backend || stale_ports {
        // Exclusively, like every removal from the shared groups: an ensure in flight may have
        // added a named port its backend service does not use yet.
        let _pruning = api.shared.write().await;
        let zones: Vec<String> = groups.iter().map(|(z, _)| z.clone()).collect();
        super::prune_named_ports(api, &id.cluster, &zones).await?;
    }

    let mut rec = Record::default();
    rec.set(record::IP, ip.clone());
    rec.set(record::URL_MAP, um_link);
    match &user_address {
        Some(name) => rec.set(record::USER_ADDRESS, links::global(api.config, "addresses", name)),
        None => rec.set(record::ADDRESS, links::global(api.config, "addresses", &n.address)),
    }
    for (port, name, _, _, key) in &listeners {
        if port.is_some() {
            rec.set(*key, links::global(api.config, "forwardingRules", name));
        }
    }
    for (zone, link) in &groups {
        crate::record::set_instance_group(&mut rec, zone, link);
    }
    status(&ip, rec, Some(hash))
}

async fn converge_backend_service(
    api: &Api<'_>,
    id: &LoadBalancerId,
    cur: Option<&BackendService>,
    desired: &backend_service::Desired,
) -> Result<(), ProviderError> {
    match cur {
        None => backend_service::insert(api, id, desired).await?,
        Some(b) if !backend_service::matches(b, desired) => match backend_service::update(api, id, b, desired).await {
            // Changed since the list (another pass, a person): read again, once.
            Err(e) if e.is_stale_fingerprint() => match backend_service::get(api, &desired.name).await? {
                Some(fresh) if !backend_service::matches(&fresh, desired) => {
                    backend_service::update(api, id, &fresh, desired).await?
                }
                Some(_) => {}
                None => backend_service::insert(api, id, desired).await?,
            },
            other => other?,
        },
        Some(_) => {}
    }
    Ok(())
}

async fn converge_map(
    api: &Api<'_>,
    id: &LoadBalancerId,
    cur: Option<&google_cloud_compute_v1::model::UrlMap>,
    want: &google_cloud_compute_v1::model::UrlMap,
    spec_hash: Option<&str>,
) -> Result<(), ProviderError> {
    match cur {
        None => url_map::insert(api, id, want, spec_hash).await?,
        Some(m) if !routing::same_routing(m, want) || url_map::spec_hash(m).as_deref() != spec_hash => {
            url_map::update(api, id, m, want, spec_hash).await?
        }
        Some(_) => {}
    }
    Ok(())
}

pub fn status(ip: &str, record: Record, spec_hash: Option<String>) -> Result<LoadBalancerStatus, ProviderError> {
    let parsed = ip.parse().map_err(|_| ProviderError::Retryable {
        call: address::GET,
        message: format!("the address {ip:?} is not an IP address"),
    })?;
    Ok(LoadBalancerStatus::new(vec![IngressPoint::Ip(parsed)], IpMode::Proxy, record, spec_hash))
}
