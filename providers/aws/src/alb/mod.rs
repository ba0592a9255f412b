//! Application Load Balancers for Ingresses: the L7 half of the aws provider.
//!
//! ```text
//!   Ingress (L7 spec) ──▶ ALB + security group (source ranges | inbound-cidrs)
//!     listeners         HTTP / HTTPS (certificates: ACM ARNs, TLS Secrets imported into ACM)
//!       rules           host + path conditions in the model's precedence, stable priorities
//!         forward ──▶   one HTTP target group per backend (Service, port) ──▶ nodes' NodePorts
//! ```
//!
//! It reuses what the NLB path built and proved (names, ownership tags, look-up before create,
//! the security group, target groups, subnets, throttling, errors, the record as a hint) and adds
//! what is particular to HTTP: the option set users bring from the AWS Load Balancer Controller
//! (`options.rs`), the plan from the L7 model (`plan.rs`, pure), listener rules with stable
//! priorities (`rules.rs`), certificates (`certificates.rs`) and ALB listeners (`listeners.rs`).
//!
//! Where it does better than the AWS Load Balancer Controller: rules follow the Kubernetes
//! precedence (Exact, then longest Prefix) across the whole Ingress and keep their priorities
//! when a path is added; a repointed path is modified in place; rules it did not make are left
//! alone; TLS Secrets work without ACM discovery; the default scheme is internet-facing (an
//! Ingress is usually meant to be reached; the AWS Load Balancer Controller defaults to
//! internal, a common surprise), with `scheme: internal` or `cloudlb.io/internal` for the other.
//!
//! Ingress groups (`group.name`, `group.order`) are the controller's: it merges the members into
//! one spec with the group's own id (`src/desired/ingress/group.rs`), so the provider builds one
//! ALB from one spec as for any Ingress.
//!
//! Not yet: `ip` targets, WAF, authentication actions, `actions.*` / `conditions.*` annotations
//! (all reported as warnings).

mod certificates;
mod ensure;
mod listeners;
pub mod options;
pub mod plan;
mod record;
mod rules;

use std::collections::{BTreeMap, BTreeSet};

use aws_sdk_elasticloadbalancingv2::types::LoadBalancerTypeEnum;
use cloudlb_provider::{L7Spec, LoadBalancerId, LoadBalancerStatus, ProviderError, Record};

use crate::clients::Api;
use crate::load_balancer::{self, Lb};
use crate::targets::Verified;
use crate::{delete as nlb_delete, listeners as nlb_listeners, node_security, tags};

pub use ensure::{ensure, fatal_problems};

/// Non-fatal problems: ignored options, left-out paths, nodes that cannot be targets.
pub fn warnings(id: &LoadBalancerId, spec: &L7Spec) -> Vec<String> {
    let (opts, problems) = options::parse(&spec.options);
    let mut out: Vec<String> =
        problems.into_iter().filter(|p| !p.fatal).map(|p| format!("{} (ignored)", p.message)).collect();
    let (plan, left_out) = plan::build(id, spec, &opts);
    out.extend(left_out);
    out.extend(plan.skipped.iter().map(|s| format!("node {} is not a target: {}", s.node, s.reason)));
    out
}

/// Targets-only update from the record: `Ok(false)` when the record cannot be used.
pub async fn update_targets(
    api: &Api<'_>,
    id: &LoadBalancerId,
    spec: &L7Spec,
    rec: Option<&Record>,
    verified: &Verified,
) -> Result<bool, ProviderError> {
    let Some(rec) = rec else { return Ok(false) };
    let (opts, _) = options::parse(&spec.options);
    let (plan, _) = plan::build(id, spec, &opts);
    let mut groups = Vec::with_capacity(plan.target_groups.len());
    for tg in &plan.target_groups {
        let Some(arn) = record::target_group(rec, &tg.name) else { return Ok(false) };
        groups.push((arn.to_string(), tg.node_port));
    }
    if !crate::targets::node_rules(api, id, plan.manage_backend, &plan.target_groups, &plan.instances).await? {
        return Ok(false);
    }
    crate::targets::update_groups(api, id, &groups, &plan.instances, verified).await
}

/// Our ALB for `id`.
async fn find(
    api: &Api<'_>,
    id: &LoadBalancerId,
    rec: Option<&Record>,
) -> Result<Option<(Lb, BTreeMap<String, String>)>, ProviderError> {
    nlb_delete::find_of_type(api, id, rec, &plan::load_balancer_name(id), LoadBalancerTypeEnum::Application).await
}

/// Delete in dependency order: the ALB (its listeners and rules go with it), the target groups
/// (recorded, and every one whose name carries this id's marker), the security group (recorded,
/// attached, by name), the certificates (recorded, and the ones the tagging API knows). Each is
/// deleted only when its tags say it is this Ingress's and of the ALB kind.
pub async fn delete(api: &Api<'_>, id: &LoadBalancerId, rec: Option<&Record>) -> Result<(), ProviderError> {
    let mut sg_ids: BTreeSet<String> =
        rec.and_then(crate::record::security_group).map(String::from).into_iter().collect();
    if let Some((lb, _)) = find(api, id, rec).await? {
        load_balancer::delete(api, &lb.arn).await?;
        sg_ids.extend(nlb_delete::own_groups(api, &id.cluster, lb.security_groups));
    }
    // Node rules only this ALB needed (see `crate::delete`); its error after the rest is done.
    let swept = node_security::sweep(api, &id.cluster, None, node_security::LastOne::Delete).await;
    let tg_arns = rec.map(crate::record::target_groups).unwrap_or_default().into_iter().collect();
    let sg_name = plan::security_group_name(id);
    nlb_delete::delete_groups(api, id, nlb_delete::Kind::Alb, tg_arns, sg_ids, &sg_name).await?;
    let tagged = certificates::all(api, id).await?;
    let recorded: Vec<String> = rec
        .map(record::certificates)
        .unwrap_or_default()
        .into_iter()
        .filter(|arn| !tagged.iter().any(|c| &c.arn == arn))
        .collect();
    let recorded = certificates::current(api, id, &recorded, &[]).await?;
    for c in tagged.iter().chain(&recorded) {
        certificates::delete(api, &c.arn).await?;
    }
    swept
}

pub async fn get(
    api: &Api<'_>,
    id: &LoadBalancerId,
    rec: Option<&Record>,
) -> Result<Option<LoadBalancerStatus>, ProviderError> {
    let Some((lb, t)) = find(api, id, rec).await? else { return Ok(None) };
    let listeners = nlb_listeners::list(api, &lb.arn).await?.into_iter().map(|(port, l)| (port, l.arn)).collect();
    let sg = node_security::frontend_of(api, &id.cluster, &lb.security_groups);
    let empty = Default::default();
    let made =
        record::Made { lb_arn: &lb.arn, sg_id: sg, listeners: &listeners, target_groups: &empty, certificates: &empty };
    // What get cannot see cheaply (target groups, certificates) is kept from the record given.
    let mut out = rec.cloned().unwrap_or_default();
    out.0.extend(record::build(&made).0);
    Ok(Some(ensure::status(&lb, out, t.get(tags::SPEC_HASH).cloned())))
}
