//! `ensure_l7`: converge AWS to the ALB plan, make before break, looking everything up first.
//!
//! ```text
//!   look up ALB by name  -> ownership + immutable checks (type, scheme, VPC, subnets)
//!   node groups          -> the targets' node security groups (cached; ambiguity fails here)
//!   security group       -> find|create, rules = sources x listener ports
//!   ALB                  -> create if missing; groups = [its own, the cluster's backend group];
//!                           else security groups and IP address type in place
//!   target groups        -> find|create by name, health check, attributes, targets
//!   certificates         -> import new Secrets, re-import rotated ones in place (same ARN)
//!   listeners            -> create | modify (protocol, default action, policy) | delete by port
//!     certificates       -> default, then add new SNI ones, then remove old ones
//!     rules              -> move, modify in place, create, delete (rules.rs)
//!   node rules           -> the node groups admit the backend group on the target groups' ports
//!   stale target groups  -> the ones our listeners and rules used before, no longer wanted
//!   unused certificates  -> deleted once no listener names them
//!   attributes, tags     -> ALB attributes, spec hash tag last (it says "done")
//! ```
//!
//! New target groups and rules exist before the ones they replace are removed, and a repointed
//! path is one ModifyRule, so a change never leaves a request without a rule or a backend.

use std::collections::{BTreeMap, BTreeSet};

use aws_sdk_elasticloadbalancingv2::types::LoadBalancerTypeEnum;
use cloudlb_provider::{IpMode, L7Spec, LoadBalancerId, LoadBalancerStatus, ProviderError, Record};

use super::listeners::Wanted;
use super::plan::{AlbAction, AlbPlan, CertRef};
use super::{certificates, listeners as alb_listeners, options, plan, record as alb_record, rules};
use crate::clients::Api;
use crate::delete as nlb_delete;
use crate::ensure::{
    WantedLb, ensure_target_groups, group_label, look_up, sweep_if_changed, wait_active, with_security_groups,
};
use crate::load_balancer::{self, Lb};
use crate::{listeners, node_security, record, security_group, tags};

/// Every problem `ensure_l7` refuses to start with (what `validate_l7` reports), the security
/// group's rule count against the quota (`rules_quota`) included.
pub fn fatal_problems(id: &LoadBalancerId, spec: &L7Spec, rules_quota: usize) -> Vec<String> {
    let mut out = spec_problems(id, spec);
    if out.is_empty() {
        let (opts, _) = options::parse(&spec.options);
        let rules = plan::build(id, spec, &opts).0.sg_rules;
        out.extend(crate::plan::security_group_rules_problem(&rules, rules_quota));
    }
    out
}

/// The annotations' and the spec's fatal problems (no plan needed).
fn spec_problems(id: &LoadBalancerId, spec: &L7Spec) -> Vec<String> {
    let (opts, problems) = options::parse(&spec.options);
    let mut out: Vec<String> = problems.into_iter().filter(|p| p.fatal).map(|p| p.message).collect();
    if out.is_empty() {
        out.extend(plan::problems(id, spec, &opts));
    }
    out
}

/// An action with target group names replaced by ARNs.
fn resolve(a: &AlbAction, arns: &BTreeMap<String, String>) -> AlbAction {
    match a {
        AlbAction::Forward(list) => {
            AlbAction::Forward(list.iter().filter_map(|(name, w)| Some((arns.get(name)?.clone(), *w))).collect())
        }
        other => other.clone(),
    }
}

pub async fn ensure(
    api: &Api<'_>,
    id: &LoadBalancerId,
    spec: &L7Spec,
    record_in: Option<&Record>,
) -> Result<LoadBalancerStatus, ProviderError> {
    let invalid = |problems: Vec<String>| ProviderError::Invalid { call: "aws:validate", message: problems.join("; ") };
    let problems = spec_problems(id, spec);
    if !problems.is_empty() {
        return Err(invalid(problems));
    }
    let (opts, _) = options::parse(&spec.options);
    let (plan, warnings) = plan::build(id, spec, &opts);
    if let Some(p) = crate::plan::security_group_rules_problem(&plan.sg_rules, api.config.security_group_rules_quota) {
        return Err(invalid(vec![p]));
    }
    for w in &warnings {
        tracing::warn!(lb = %id, "{w}");
    }

    // 1. The ALB, if it exists: ours, and implementable in place?
    let wanted = WantedLb {
        name: &plan.lb_name,
        lb_type: LoadBalancerTypeEnum::Application,
        kind: "Ingress",
        scheme: plan.scheme,
        annotated_subnets: plan.annotated_subnets.as_deref(),
        replace_failed: opts.replace_failed,
    };
    let (existing, new_subnets) = look_up(api, id, &wanted, record_in).await?;

    // 1b. The nodes' security groups (reads only): an ambiguous one fails here, before any change.
    let manage = api.config.manage_node_security_groups && plan.manage_backend;
    let node_groups =
        if manage { node_security::node_groups(api, &id.cluster, &plan.instances).await? } else { BTreeSet::new() };

    // 2. Security group, 3. the ALB (with the cluster's backend group).
    let sg = security_group::ensure(
        api,
        id,
        &plan.sg_name,
        &plan.sg_rules,
        tags::ROLE_ALB_SECURITY_GROUP,
        &plan.additional_tags,
    )
    .await?;
    let lb_tags = tags::desired(id, tags::ROLE_ALB, &plan.additional_tags);
    let create = load_balancer::CreateRequest {
        lb_type: LoadBalancerTypeEnum::Application,
        name: &plan.lb_name,
        scheme: plan.scheme,
        subnets: new_subnets.as_deref().unwrap_or_default(),
        eip_allocations: None,
        security_groups: &[],
        tags: &lb_tags,
        ip_address_type: plan.ip_address_type,
    };
    let attached = with_security_groups(api, &id.cluster, existing, create, &sg.id, manage).await?;
    let lb = attached.lb.clone();
    load_balancer::converge_ip_address_type(api, &lb, plan.ip_address_type).await?;

    // 4. Target groups (before any rule or listener points at them).
    let tg_tags = tags::desired(id, tags::ROLE_ALB_TARGET_GROUP, &plan.additional_tags);
    let (tg_arns, health, needs_changed) =
        ensure_target_groups(api, id, &plan.target_groups, &plan.instances, &tg_tags, |t| group_label(&t.name)).await?;

    // 5. Certificates.
    let wanted_certs: Vec<&cloudlb_provider::l7::Certificate> = plan
        .certificates
        .iter()
        .filter_map(|c| match c {
            CertRef::Secret(name) => spec.certificates.iter().find(|x| &x.name == name),
            CertRef::Arn(_) => None,
        })
        .collect();
    let recorded_certs = record_in.map(alb_record::certificates).unwrap_or_default();
    let wanted_names: Vec<&str> = wanted_certs.iter().map(|c| c.name.as_str()).collect();
    let current_certs = if wanted_names.is_empty() && recorded_certs.is_empty() {
        Vec::new()
    } else {
        certificates::current(api, id, &recorded_certs, &wanted_names).await?
    };
    let (cert_arns, unused_certs) =
        certificates::ensure(api, id, &wanted_certs, current_certs, &plan.additional_tags).await?;
    let listener_certs: Vec<String> = plan
        .certificates
        .iter()
        .filter_map(|c| match c {
            CertRef::Arn(a) => Some(a.clone()),
            CertRef::Secret(n) => cert_arns.get(n).cloned(),
        })
        .collect();

    // 6. Listeners, their certificates and rules.
    let (made_listeners, previously_used) = converge_listeners(api, id, &lb, &plan, &tg_arns, &listener_certs).await?;

    // 6b. The nodes' rules, now that listeners and rules forward to the target groups needing them.
    let needs = node_security::needs(&plan.target_groups, api.config.node_port_range_rule);
    if let Some(backend) = &attached.backend {
        node_security::converge(api, &id.cluster, backend, &node_groups, &needs, false).await?;
    }

    // 7. Target groups no longer used (only ours: checked by tags).
    let mut candidates = previously_used;
    let recorded: Option<BTreeSet<String>> = record_in.map(|r| record::target_groups(r).into_iter().collect());
    candidates.extend(recorded.iter().flatten().cloned());
    let wanted: BTreeSet<&String> = tg_arns.values().collect();
    let stale_deleted =
        nlb_delete::stale_target_groups(api, id, nlb_delete::Kind::Alb, candidates, &wanted, recorded).await?;
    // 7b. Node rules nobody needs any more (ports changed, or the backend group was detached).
    sweep_if_changed(api, &id.cluster, &attached, &needs, needs_changed || stale_deleted).await?;
    // 8. Certificates no longer used by any listener.
    for arn in &unused_certs {
        certificates::delete(api, arn).await?;
    }

    // 9. Attributes and tags (spec hash last).
    load_balancer::converge_attributes(api, &lb.arn, &plan.lb_attributes).await?;
    let current_tags =
        tags::describe_elb(api, std::slice::from_ref(&lb.arn)).await?.remove(&lb.arn).unwrap_or_default();
    let mut want_tags = lb_tags;
    want_tags.insert(tags::SPEC_HASH.into(), plan.spec_hash.clone());
    tags::add_elb(api, &lb.arn, &tags::missing(&want_tags, &current_tags)).await?;

    let (lb, provisioning) = wait_active(api, lb).await?;
    let rec = alb_record::build(&alb_record::Made {
        lb_arn: &lb.arn,
        sg_id: Some(&sg.id),
        listeners: &made_listeners,
        target_groups: &tg_arns,
        certificates: &cert_arns,
    });
    let mut st = status(&lb, rec, Some(plan.spec_hash));
    st.provisioning = provisioning;
    st.targets = Some(health);
    Ok(st)
}

/// Listeners by port: created, modified or deleted, then each one's certificates and rules.
/// Returns the listener ARNs by port and the target groups they (and their rules) used before.
async fn converge_listeners(
    api: &Api<'_>,
    id: &LoadBalancerId,
    lb: &Lb,
    plan: &AlbPlan,
    tg_arns: &BTreeMap<String, String>,
    certs: &[String],
) -> Result<(BTreeMap<u16, String>, BTreeSet<String>), ProviderError> {
    let current = listeners::list(api, &lb.arn).await?;
    let mut previously_used: BTreeSet<String> =
        current.values().flat_map(|l| rules::forwarded(&rules::action_from_aws(&l.actions))).collect();
    let listener_tags = tags::desired(id, tags::ROLE_ALB_LISTENER, &plan.additional_tags);
    let rule_tags = tags::desired(id, tags::ROLE_ALB_RULE, &plan.additional_tags);
    let desired_rules: Vec<_> =
        plan.rules.iter().map(|r| (r.conditions.clone(), resolve(&r.action, tg_arns))).collect();
    let mut made = BTreeMap::new();
    for lp in &plan.listeners {
        let want = Wanted {
            port: lp.port,
            https: lp.https,
            default_action: resolve(&lp.default_action, tg_arns),
            ssl_policy: &plan.ssl_policy,
            certificate: certs.first().map(String::as_str),
        };
        let arn = match current.get(&lp.port) {
            Some(l) if alb_listeners::matches(l, &want) => l.arn.clone(),
            Some(l) => {
                alb_listeners::modify(api, l, &want).await?;
                l.arn.clone()
            }
            None => alb_listeners::create(api, &lb.arn, &want, &listener_tags).await?,
        };
        if lp.https {
            certificates::converge_listener(api, &arn, certs).await?;
        }
        let rules_here: &[_] = if lp.with_rules { &desired_rules } else { &[] };
        previously_used.extend(rules::converge(api, id, &arn, rules_here, &rule_tags).await?);
        made.insert(lp.port, arn);
    }
    for (port, l) in &current {
        if !made.contains_key(port) {
            listeners::delete(api, &l.arn).await?;
        }
    }
    Ok((made, previously_used))
}

pub fn status(lb: &Lb, record: Record, spec_hash: Option<String>) -> LoadBalancerStatus {
    LoadBalancerStatus::new(crate::ensure::address(lb), IpMode::Proxy, record, spec_hash)
}
