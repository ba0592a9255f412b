//! `ensure`: converge Compute to the plan, in dependency order, reading everything before
//! changing it.
//!
//! ```text
//!   read      forwarding rule, backend service, traffic firewall, our address (ownership:
//!             description): a foreign resource with our name stops the pass before any change
//!   IP        which IP the rule gets; a bad loadBalancerIP is Invalid here, before any change
//!   scheme    EXTERNAL <-> INTERNAL cannot change in place: rule + backend service re-made
//!   groups    one instance group per zone with nodes; membership by difference
//!   health    health check (per-Service or the cluster's node check) + its firewall
//!   backend   backend service: insert, or update with its fingerprint when it differs
//!   rule      forwarding rule: insert; re-create (IP held in a reserved address) when an
//!             immutable field differs; patch allowGlobalAccess
//!   firewall  source ranges -> Service ports at the rule's IP
//!   cleanup   release the address held for a re-creation; the old per-Service check after an
//!             ETP change; instance groups of zones that lost every node, once unused
//! ```
//!
//! Every step is idempotent and finds its resources again by name + description, so a cancelled
//! or crashed `ensure` is finished by the next one and never duplicates anything. An unchanged
//! spec costs reads only.

use std::collections::BTreeSet;
use std::net::IpAddr;

use cloudlb_provider::{
    IngressPoint, IpMode, LoadBalancerId, LoadBalancerSpec, LoadBalancerStatus, ProviderError, Record,
};
use google_cloud_compute_v1::model::{Address, ForwardingRule};

use crate::clients::Api;
use crate::options::{self, annotation};
use crate::ownership::{self, Owner};
use crate::plan::{self, HEALTH_CHECK_RANGES, IpRequest, Plan};
use crate::record;
use crate::resources::firewall::Rule;
use crate::resources::forwarding_rule::Diff;
use crate::resources::{address, backend_service, firewall, forwarding_rule, health_check, instance_group};
use crate::{links, names};

/// Every problem `ensure` refuses to start with (a subset of what `validate` reports).
pub fn fatal_problems(spec: &LoadBalancerSpec, config: &crate::GcpConfig) -> Vec<String> {
    let (opts, problems) = options::parse(&spec.options);
    let mut out: Vec<String> = problems.into_iter().filter(|p| p.fatal).map(|p| p.message).collect();
    out.extend(plan::spec_problems(spec, &opts, config));
    out
}

/// Which IP the forwarding rule gets.
#[derive(Debug, Default)]
struct IpChoice {
    /// The IP the rule must have; `None` = whatever it has (or an ephemeral one).
    want: Option<String>,
    /// Reserve this IP under our name before anything else.
    reserve: Option<String>,
    /// Our reserved address stays: the Service asks for its IP.
    keep_ours: bool,
    /// The user's reserved address in use (never released).
    user_address: Option<String>,
}

fn invalid(message: String) -> ProviderError {
    ProviderError::Invalid { call: "gcp:address", message }
}

async fn resolve_ip(
    api: &Api<'_>,
    plan: &Plan,
    fr: Option<&ForwardingRule>,
    ours: Option<&Address>,
) -> Result<IpChoice, ProviderError> {
    let region = api.region();
    match &plan.ip {
        IpRequest::Address(name) => {
            let Some(a) = address::get(api, name).await? else {
                return Err(invalid(format!(
                    "annotation {}: address {name:?} does not exist in region {region}; reserve it first",
                    annotation("load-balancer-ip-addresses")
                )));
            };
            let kind = a.address_type.as_ref().and_then(|t| t.name()).unwrap_or("EXTERNAL");
            let want_kind = if plan.internal() { "INTERNAL" } else { "EXTERNAL" };
            if kind != want_kind {
                return Err(invalid(format!(
                    "annotation {}: address {name:?} is {kind}, but the load balancer is {want_kind}",
                    annotation("load-balancer-ip-addresses")
                )));
            }
            Ok(IpChoice {
                want: a.address.clone(),
                keep_ours: *name == plan.name,
                user_address: (*name != plan.name).then(|| links::regional(api.config, "addresses", name)),
                ..Default::default()
            })
        }
        IpRequest::Ip(ip) if plan.internal() => Ok(IpChoice { want: Some(ip.to_string()), ..Default::default() }),
        IpRequest::Ip(ip) => {
            let ip = ip.to_string();
            if ours.is_some_and(|a| a.address.as_deref() == Some(ip.as_str())) {
                return Ok(IpChoice { want: Some(ip), keep_ours: true, ..Default::default() });
            }
            if let Some(a) = address::find_by_ip(api, &ip).await? {
                let name = a.name.clone().unwrap_or_default();
                if let Some(other) = ownership::service_of(a.description.as_deref()) {
                    return Err(ProviderError::Conflict {
                        call: address::LIST,
                        resource: format!("address {name}"),
                        message: format!(
                            "loadBalancerIP {ip} is held by cloudlb for Service {other}; two load balancers cannot \
                             share it"
                        ),
                    });
                }
                return Ok(IpChoice {
                    want: Some(ip),
                    user_address: Some(links::regional(api.config, "addresses", &name)),
                    ..Default::default()
                });
            }
            if fr.and_then(forwarding_rule::ip) == Some(ip.as_str()) {
                // The rule's ephemeral IP: hold it, as the Service asks for it.
                return Ok(IpChoice {
                    want: Some(ip.clone()),
                    reserve: Some(ip),
                    keep_ours: true,
                    ..Default::default()
                });
            }
            Err(invalid(format!(
                "loadBalancerIP {ip} is neither a reserved address of region {region} nor this load balancer's current \
                 IP; reserve it first (gcloud compute addresses create NAME --region {region} --addresses {ip})"
            )))
        }
        IpRequest::Any => {
            // An address left reserved by an interrupted re-creation (or a removed loadBalancerIP)
            // gives a new rule its IP back; it is released once the rule holds it.
            let want = if fr.is_none() && !plan.internal() { ours.and_then(|a| a.address.clone()) } else { None };
            Ok(IpChoice { want, ..Default::default() })
        }
    }
}

pub async fn ensure(
    api: &Api<'_>,
    id: &LoadBalancerId,
    spec: &LoadBalancerSpec,
    _record: Option<&Record>,
) -> Result<LoadBalancerStatus, ProviderError> {
    let problems = fatal_problems(spec, api.config);
    if !problems.is_empty() {
        return Err(ProviderError::Invalid { call: "gcp:validate", message: problems.join("; ") });
    }
    let (opts, _) = options::parse(&spec.options);
    let plan = plan::build(id, spec, &opts, api.config);
    // Until our backend service uses the shared groups and check, no delete may remove them.
    let shared = api.shared.read().await;
    for s in &plan.skipped {
        tracing::warn!(lb = %id, node = %s.node, reason = %s.reason, "node is not a backend");
    }
    let owner = Owner::Service(id);

    // 1. What exists, and is it ours?
    let mut fr = forwarding_rule::get(api, &plan.name).await?;
    if let Some(f) = &fr {
        let what = format!("forwarding rule {}", plan.name);
        ownership::check(forwarding_rule::GET, owner, &what, f.description.as_deref())?;
    }
    let mut bs = backend_service::get(api, &plan.name).await?;
    if let Some(b) = &bs {
        let what = format!("backend service {}", plan.name);
        ownership::check(backend_service::GET, owner, &what, b.description.as_deref())?;
    }
    let traffic_fw = firewall::get(api, &plan.name).await?;
    if let Some(f) = &traffic_fw {
        ownership::check(firewall::GET, owner, &format!("firewall {}", plan.name), f.description.as_deref())?;
    }
    let ours = address::get(api, &plan.name).await?;
    if let Some(a) = &ours {
        ownership::check(address::GET, owner, &format!("address {}", plan.name), a.description.as_deref())?;
    }

    // 2. The IP (reads only: a bad request fails here, before anything changes).
    let choice = resolve_ip(api, &plan, fr.as_ref(), ours.as_ref()).await?;
    let mut ours_exists = ours.is_some();

    // What the backend service used before this pass (also when it is re-made below).
    let old_hc: Option<String> = bs.as_ref().and_then(|b| backend_service::health_checks(b).first().cloned());
    let old_groups: Vec<String> = bs.as_ref().map(backend_service::groups).unwrap_or_default();

    // 3. The scheme of a backend service cannot change.
    if let Some(b) = &bs
        && backend_service::scheme(b) != plan.scheme_name()
    {
        tracing::info!(lb = %id, from = backend_service::scheme(b), to = plan.scheme_name(), "scheme changed; re-creating");
        if fr.is_some() {
            forwarding_rule::delete(api, &plan.name).await?;
            fr = None;
        }
        backend_service::delete(api, &plan.name).await?;
        bs = None;
    }

    // 4. Hold the requested IP.
    if let Some(ip) = &choice.reserve {
        if ours_exists {
            address::release(api, &plan.name).await?;
        }
        address::reserve(api, id, &plan.name, ip, plan.tier.as_str()).await?;
        ours_exists = true;
    }

    // 5. Instance groups: one per zone with nodes. A zone that lost every node keeps its group
    // until no backend service uses it, emptied now so that no Service sends traffic there.
    let ig_name = names::instance_group(&id.cluster);
    let mut groups: Vec<(String, String)> = Vec::new();
    for (zone, wanted) in &plan.instances {
        let link = instance_group::ensure(api, &id.cluster, zone, &ig_name, wanted, &BTreeSet::new()).await?;
        groups.push((zone.clone(), link));
    }
    let group_links: Vec<String> = groups.iter().map(|(_, l)| l.clone()).collect();
    let dropped: Vec<String> =
        old_groups.into_iter().filter(|g| !group_links.iter().any(|l| links::same(l, g))).collect();
    for g in &dropped {
        if let Some(zone) = links::zone(g)
            && links::name(g) == ig_name
        {
            instance_group::empty(api, &id.cluster, zone, &ig_name).await?;
        }
    }

    // 6. Health check and the firewall for Google's checkers.
    let hc_owner = if plan.health.shared { Owner::Cluster(&id.cluster) } else { owner };
    let hc_link = health_check::ensure(api, hc_owner, &plan.health).await?;
    let hc_rule = Rule {
        name: plan.health.firewall.clone(),
        role: if plan.health.shared { ownership::NODE_HEALTH_CHECK_FIREWALL } else { ownership::HEALTH_CHECK_FIREWALL },
        allowed: [("tcp", vec![plan.health.port])].into_iter().collect(),
        source_ranges: HEALTH_CHECK_RANGES.iter().map(|s| s.to_string()).collect(),
        destination_ranges: Vec::new(),
    };
    firewall::ensure(api, hc_owner, &hc_rule).await?;

    // 7. Backend service (a protocol change is refused while a rule uses it: the rule goes first).
    let desired_bs = backend_service::Desired {
        name: plan.name.clone(),
        scheme: plan.scheme_name(),
        protocol: plan.bs_protocol,
        session_affinity: plan.session_affinity,
        health_check: hc_link.clone(),
        groups: group_links.clone(),
        network: plan.internal().then(|| links::network(api.config)),
    };
    let bs_link = backend_service::link(api, &plan.name);
    let mut desired_fr = forwarding_rule::Desired {
        name: plan.name.clone(),
        scheme: plan.scheme_name(),
        protocol: plan.fr_protocol,
        ports: plan.ports.clone(),
        backend_service: bs_link.clone(),
        ip: choice.want.clone(),
        tier: plan.tier.as_str(),
        subnetwork: plan.subnetwork.clone(),
        network: plan.internal().then(|| links::network(api.config)),
        global_access: plan.global_access,
    };
    let diff = fr.as_ref().map(|f| forwarding_rule::diff(f, &desired_fr));
    let protocol_change = bs.as_ref().is_some_and(|b| backend_service::protocol(b) != plan.bs_protocol);
    if let Some(cur) = &fr
        && (matches!(diff, Some(Diff::Recreate(_))) || protocol_change)
    {
        let why = match &diff {
            Some(Diff::Recreate(why)) => why.clone(),
            _ => "backend service protocol".into(),
        };
        tracing::info!(lb = %id, why, "forwarding rule cannot change in place; re-creating it with its IP");
        if desired_fr.ip.is_none() {
            let current = forwarding_rule::ip(cur).map(String::from);
            // An external ephemeral IP would be lost with the rule: hold it in a reserved address.
            if let Some(ip) = &current
                && !plan.internal()
                && !ours_exists
            {
                address::reserve(api, id, &plan.name, ip, plan.tier.as_str()).await?;
                ours_exists = true;
            }
            desired_fr.ip = current;
        }
        forwarding_rule::delete(api, &plan.name).await?;
        fr = None;
    }
    match &bs {
        Some(b) if !backend_service::matches(b, &desired_bs) => {
            match backend_service::update(api, id, b, &desired_bs).await {
                // Someone changed it since our read (another pass, a person): read again, once.
                Err(e) if e.is_stale_fingerprint() => {
                    tracing::info!(lb = %id, "backend service changed under us; updating with a fresh fingerprint");
                    match backend_service::get(api, &plan.name).await? {
                        Some(fresh) if !backend_service::matches(&fresh, &desired_bs) => {
                            backend_service::update(api, id, &fresh, &desired_bs).await?
                        }
                        Some(_) => {}
                        None => backend_service::insert(api, id, &desired_bs).await?,
                    }
                }
                other => other?,
            }
        }
        Some(_) => {}
        None => backend_service::insert(api, id, &desired_bs).await?,
    }

    // 8. Forwarding rule.
    let fr = match fr {
        None => {
            forwarding_rule::insert(api, id, &desired_fr).await?;
            forwarding_rule::get(api, &plan.name).await?.ok_or_else(|| ProviderError::Retryable {
                call: forwarding_rule::GET,
                message: format!("forwarding rule {} is not visible yet after its creation", plan.name),
            })?
        }
        Some(cur) => {
            if diff == Some(Diff::PatchGlobalAccess) {
                forwarding_rule::patch_global_access(api, &cur, plan.global_access).await?;
            }
            cur
        }
    };
    let Some(lb_ip) = forwarding_rule::ip(&fr).map(String::from) else {
        return Err(ProviderError::Retryable {
            call: forwarding_rule::GET,
            message: format!("forwarding rule {} has no IP address yet", plan.name),
        });
    };

    // 9. Traffic firewall: source ranges to the Service ports at the rule's IP.
    let rule = Rule {
        name: plan.name.clone(),
        role: ownership::FIREWALL,
        allowed: plan.allowed.clone(),
        source_ranges: plan.source_ranges.clone(),
        destination_ranges: vec![format!("{lb_ip}/32")],
    };
    firewall::converge(api, owner, &rule, traffic_fw).await?;

    // 10. Cleanup.
    if ours_exists && !choice.keep_ours {
        // The rule holds the IP now (as an ephemeral one): the reservation was only to keep it.
        address::release(api, &plan.name).await?;
    }
    if let Some(old) = &old_hc
        && !links::same(old, &hc_link)
        && links::name(old) == plan.name
    {
        health_check::delete(api, &plan.name).await?;
        firewall::delete_owned(api, owner, &names::health_check_firewall(id)).await?;
    }
    drop(shared);
    if !dropped.is_empty() {
        let _deleting = api.shared.write().await;
        for g in &dropped {
            if let Some(zone) = links::zone(g)
                && links::name(g) == ig_name
            {
                instance_group::delete_if_unused(api, &id.cluster, zone, &ig_name).await?;
            }
        }
    }

    let mut rec = Record::default();
    rec.set(record::IP, lb_ip.clone());
    rec.set(record::FORWARDING_RULE, forwarding_rule::link(api, &plan.name));
    rec.set(record::BACKEND_SERVICE, bs_link);
    rec.set(record::HEALTH_CHECK, hc_link);
    rec.set(record::FIREWALL, links::global(api.config, "firewalls", &plan.name));
    rec.set(record::HEALTH_CHECK_FIREWALL, links::global(api.config, "firewalls", &plan.health.firewall));
    if choice.keep_ours {
        rec.set(record::ADDRESS, links::regional(api.config, "addresses", &plan.name));
    }
    if let Some(u) = &choice.user_address {
        rec.set(record::USER_ADDRESS, u.clone());
    }
    for (zone, link) in &groups {
        record::set_instance_group(&mut rec, zone, link);
    }
    status(&lb_ip, rec, Some(plan.spec_hash.clone()))
}

pub fn status(ip: &str, record: Record, spec_hash: Option<String>) -> Result<LoadBalancerStatus, ProviderError> {
    let parsed: IpAddr = ip.parse().map_err(|_| ProviderError::Retryable {
        call: forwarding_rule::GET,
        message: format!("the forwarding rule's IPAddress {ip:?} is not an IP address"),
    })?;
    Ok(LoadBalancerStatus::new(vec![IngressPoint::Ip(parsed)], IpMode::VIP, record, spec_hash))
}

/// Zones of `links` (instance groups).
pub fn zones_of(group_links: &[String]) -> BTreeSet<String> {
    group_links.iter().filter_map(|l| links::zone(l)).map(String::from).collect()
}
