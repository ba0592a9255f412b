//! `ensure`: converge AWS to the plan, in dependency order, looking everything up before
//! creating it.
//!
//! ```text
//!   look up LB by name -> ownership + immutable checks (scheme, VPC, type, subnets)
//!   security group     -> find|create, rules = source ranges x listener ports, tags
//!   load balancer      -> create if missing (subnets: annotation | config | discovery),
//!                         else security group and IP address type in place
//!   target groups      -> find|create by name, health check, attributes, targets (batched)
//!   listeners          -> create | modify | delete by port
//!   stale target groups-> the ones our listeners (or the record) used before, no longer wanted
//!   attributes, tags   -> LB attributes, spec hash tag
//!   state              -> provisioning => ProviderError::Provisioning (retry in ~10 s)
//! ```
//!
//! Every step is idempotent and finds its resources again by name + tags, so a cancelled or
//! crashed `ensure` is finished by the next one and never duplicates anything.

use std::collections::{BTreeMap, BTreeSet};

use aws_sdk_elasticloadbalancingv2::types::LoadBalancerTypeEnum;
use cloudlb_provider::{
    IngressPoint, IpMode, LoadBalancerId, LoadBalancerSpec, LoadBalancerStatus, ProviderError, Record, Scheme,
};

use crate::clients::Api;
use crate::load_balancer::{self, Lb, State};
use crate::plan::{self, DesiredTargetGroup};
use crate::{listeners, options, record, security_group, subnets, tags, target_groups};

/// What `validate` reports: [`spec_problems`], then the security group's rule count against the
/// quota (`rules_quota`), from a plan (the rules do not depend on the id).
pub fn fatal_problems(spec: &LoadBalancerSpec, rules_quota: usize) -> Vec<String> {
    let mut out = spec_problems(spec);
    if out.is_empty() {
        let (opts, _) = options::parse(&spec.options);
        let rules = plan::build(&LoadBalancerId::new("validate", "", "", ""), spec, &opts).sg_rules;
        out.extend(plan::security_group_rules_problem(&rules, rules_quota));
    }
    out
}

/// The annotations' and the spec's fatal problems (no plan needed).
fn spec_problems(spec: &LoadBalancerSpec) -> Vec<String> {
    let (opts, problems) = options::parse(&spec.options);
    let mut out: Vec<String> = problems.into_iter().filter(|p| p.fatal).map(|p| p.message).collect();
    out.extend(plan::spec_problems(spec, &opts));
    out
}

pub async fn ensure(
    api: &Api<'_>,
    id: &LoadBalancerId,
    spec: &LoadBalancerSpec,
    record_in: Option<&Record>,
) -> Result<LoadBalancerStatus, ProviderError> {
    let invalid = |problems: Vec<String>| ProviderError::Invalid { call: "aws:validate", message: problems.join("; ") };
    let problems = spec_problems(spec);
    if !problems.is_empty() {
        return Err(invalid(problems));
    }
    let (opts, _) = options::parse(&spec.options);
    let plan = plan::build(id, spec, &opts);
    if let Some(p) = plan::security_group_rules_problem(&plan.sg_rules, api.config.security_group_rules_quota) {
        return Err(invalid(vec![p]));
    }
    for s in &plan.skipped {
        tracing::warn!(lb = %id, node = %s.node, reason = %s.reason, "node is not registered as a target");
    }

    // 1. The load balancer, if it exists: ours, and implementable in place?
    let wanted = WantedLb {
        name: &plan.lb_name,
        lb_type: LoadBalancerTypeEnum::Network,
        kind: "Service",
        scheme: plan.scheme,
        annotated_subnets: plan.annotated_subnets.as_deref(),
    };
    let (existing, new_subnets) = look_up(api, id, &wanted, record_in).await?;

    // 2. Security group (source ranges).
    let sg = security_group::ensure(
        api,
        id,
        &plan.sg_name,
        &plan.sg_rules,
        tags::ROLE_SECURITY_GROUP,
        &plan.additional_tags,
    )
    .await?;

    // 3. Load balancer.
    let lb_tags = tags::desired(id, tags::ROLE_LOAD_BALANCER, &plan.additional_tags);
    let lb = match existing {
        Some(lb) => lb,
        None => {
            let subnets = new_subnets.unwrap_or_default();
            // The spec hash tag is written only at the end, once everything implements the spec.
            load_balancer::create(
                api,
                load_balancer::CreateRequest {
                    lb_type: LoadBalancerTypeEnum::Network,
                    name: &plan.lb_name,
                    scheme: plan.scheme,
                    subnets: &subnets,
                    eip_allocations: plan.eip_allocations.as_deref(),
                    security_group: &sg.id,
                    tags: &lb_tags,
                    ip_address_type: plan.ip_address_type,
                },
            )
            .await?
        }
    };
    if lb.security_groups.is_empty() {
        tracing::warn!(lb = %lb.name, "load balancer has no security group (created without one); source ranges are not enforced");
    } else if lb.security_groups != [sg.id.clone()] {
        load_balancer::set_security_groups(api, &lb.arn, std::slice::from_ref(&sg.id)).await?;
    }
    load_balancer::converge_ip_address_type(api, &lb, plan.ip_address_type).await?;

    // 4. Target groups.
    let tg_tags = tags::desired(id, tags::ROLE_TARGET_GROUP, &plan.additional_tags);
    let tg_by_name = ensure_target_groups(api, id, &plan.target_groups, &plan.instances, &tg_tags).await?;

    // 5. Listeners.
    let current = listeners::list(api, &lb.arn).await?;
    let mut previously_used: BTreeSet<String> = current.values().filter_map(|l| l.target_group.clone()).collect();
    if let Some(r) = record_in {
        previously_used.extend(record::target_groups(r));
    }
    let listener_tags = tags::desired(id, tags::ROLE_LISTENER, &plan.additional_tags);
    let mut made: BTreeMap<u16, (String, Option<String>)> = BTreeMap::new();
    for dl in &plan.listeners {
        let Some(tg_arn) = tg_by_name.get(&dl.target_group) else { continue };
        let l = match current.get(&dl.port) {
            Some(l) if listeners::matches(l, dl, tg_arn) => l.clone(),
            Some(l) => listeners::modify(api, l, dl, tg_arn).await?,
            None => listeners::create(api, &lb.arn, dl, tg_arn, &listener_tags).await?,
        };
        made.insert(dl.port, (l.arn, Some(tg_arn.clone())));
    }
    for (port, l) in &current {
        if !made.contains_key(port) {
            listeners::delete(api, &l.arn).await?;
        }
    }

    // 6. Target groups no longer used (only ours: checked by tags).
    let wanted: BTreeSet<&String> = tg_by_name.values().collect();
    let stale: Vec<String> = previously_used.into_iter().filter(|a| !wanted.contains(a)).collect();
    if !stale.is_empty() {
        let stale_tags = tags::describe_elb(api, &stale).await?;
        for (arn, t) in &stale_tags {
            if tags::is_owned(id, t) {
                target_groups::delete(api, arn).await?;
            }
        }
    }

    // 7. Attributes and tags of the load balancer (spec hash last: it says "done").
    load_balancer::converge_attributes(api, &lb.arn, &plan.lb_attributes).await?;
    let current_tags =
        tags::describe_elb(api, std::slice::from_ref(&lb.arn)).await?.remove(&lb.arn).unwrap_or_default();
    let mut want_tags = lb_tags;
    want_tags.insert(tags::SPEC_HASH.into(), plan.spec_hash.clone());
    tags::add_elb(api, &lb.arn, &tags::missing(&want_tags, &current_tags)).await?;

    // 8. Ready?
    let lb = wait_active(api, lb).await?;
    Ok(status(&lb, Some(&sg.id), &made, Some(plan.spec_hash)))
}

/// What a load balancer must be to be used in place.
pub(crate) struct WantedLb<'a> {
    pub name: &'a str,
    pub lb_type: LoadBalancerTypeEnum,
    /// The object kind, for messages (`Service`, `Ingress`).
    pub kind: &'a str,
    pub scheme: Scheme,
    pub annotated_subnets: Option<&'a [String]>,
}

/// The load balancer by name, if it exists: ours (else Conflict) and usable in place (else
/// Invalid with a way forward). A recorded one that is not the one by name is looked at (only
/// then: no extra call when they agree), so that a `--cluster-name` change is a Conflict
/// instead of a second load balancer. For a new one, its subnets, resolved before anything is
/// made so that a missing subnet tag leaves nothing behind.
pub(crate) async fn look_up(
    api: &Api<'_>,
    id: &LoadBalancerId,
    want: &WantedLb<'_>,
    record_in: Option<&Record>,
) -> Result<(Option<Lb>, Option<Vec<String>>), ProviderError> {
    let existing = load_balancer::find_by_name(api, want.name).await?;
    if record_in.and_then(record::load_balancer).is_some_and(|arn| existing.as_ref().is_none_or(|lb| lb.arn != arn)) {
        crate::delete::recorded_lb(api, id, record_in).await?;
    }
    let Some(lb) = existing else {
        let subnets = subnets::resolve(api, want.annotated_subnets, &id.cluster, want.scheme).await?;
        return Ok((None, Some(subnets)));
    };
    let t = tags::describe_elb(api, std::slice::from_ref(&lb.arn)).await?;
    let lb_tags = t.get(&lb.arn).cloned().unwrap_or_default();
    tags::check_owned("elbv2:DescribeTags", id, &format!("load balancer {} ({})", lb.name, lb.arn), &lb_tags)?;
    let problems = load_balancer::immutable_problems(
        &lb,
        want.lb_type.clone(),
        want.kind,
        want.scheme,
        &api.config.vpc_id,
        want.annotated_subnets,
    );
    if !problems.is_empty() {
        return Err(ProviderError::Invalid { call: "elbv2:DescribeLoadBalancers", message: problems.join("; ") });
    }
    Ok((Some(lb), None))
}

/// Find (ownership- and shape-checked) or create every target group, converge its health check,
/// attributes and targets. Returns the ARN by name.
pub(crate) async fn ensure_target_groups(
    api: &Api<'_>,
    id: &LoadBalancerId,
    groups: &[DesiredTargetGroup],
    instances: &BTreeSet<String>,
    tg_tags: &BTreeMap<String, String>,
) -> Result<BTreeMap<String, String>, ProviderError> {
    let names: Vec<String> = groups.iter().map(|t| t.name.clone()).collect();
    let found = target_groups::find_by_names(api, &names).await?;
    let found_arns: Vec<String> = found.values().map(|t| t.arn.clone()).collect();
    let found_tags = tags::describe_elb(api, &found_arns).await?;
    let mut out = BTreeMap::new();
    for dtg in groups {
        let tg = match found.get(&dtg.name) {
            Some(tg) => {
                let t = found_tags.get(&tg.arn).cloned().unwrap_or_default();
                tags::check_owned("elbv2:DescribeTags", id, &format!("target group {} ({})", tg.name, tg.arn), &t)?;
                if tg.port != Some(i32::from(dtg.node_port)) || tg.protocol != dtg.protocol.to_aws().as_str() {
                    return Err(ProviderError::Conflict {
                        call: "elbv2:DescribeTargetGroups",
                        resource: format!("target group {} ({})", tg.name, tg.arn),
                        message: format!(
                            "it is {} port {:?}, but its name means {} port {}; delete it so cloudlb can re-create it",
                            tg.protocol,
                            tg.port,
                            dtg.protocol.to_aws().as_str(),
                            dtg.node_port
                        ),
                    });
                }
                tags::add_elb(api, &tg.arn, &tags::missing(tg_tags, &t)).await?;
                target_groups::converge_health(api, tg, &dtg.health).await?;
                tg.clone()
            }
            None => target_groups::create(api, dtg, tg_tags).await?,
        };
        target_groups::converge_attributes(api, &tg.arn, &dtg.attributes).await?;
        target_groups::converge_targets(api, &tg.arn, dtg.node_port, instances).await?;
        out.insert(dtg.name.clone(), tg.arn);
    }
    Ok(out)
}

/// Re-read a load balancer that is still provisioning once (some backends report `active` on
/// the next read); still provisioning -> `ProviderError::Provisioning`.
pub(crate) async fn wait_active(api: &Api<'_>, lb: Lb) -> Result<Lb, ProviderError> {
    let lb = match lb.state {
        State::Provisioning => load_balancer::find_by_arn(api, &lb.arn).await?.unwrap_or(lb),
        _ => lb,
    };
    match &lb.state {
        State::Active => Ok(lb),
        State::Provisioning => Err(ProviderError::Provisioning {
            what: format!("load balancer {}", lb.name),
            retry_after: api.config.provisioning_retry,
        }),
        State::Failed => Err(ProviderError::Retryable {
            call: "elbv2:DescribeLoadBalancers",
            message: format!("load balancer {} is in state failed; AWS could not provision it", lb.name),
        }),
        State::Other(s) => Err(ProviderError::Retryable {
            call: "elbv2:DescribeLoadBalancers",
            message: format!("load balancer {} is in state {s}", lb.name),
        }),
    }
}

pub fn status(
    lb: &Lb,
    sg_id: Option<&str>,
    listeners: &BTreeMap<u16, (String, Option<String>)>,
    spec_hash: Option<String>,
) -> LoadBalancerStatus {
    LoadBalancerStatus {
        ingress: if lb.dns_name.is_empty() { Vec::new() } else { vec![IngressPoint::Hostname(lb.dns_name.clone())] },
        ip_mode: IpMode::VIP,
        record: record::build(&lb.arn, sg_id, listeners),
        spec_hash,
    }
}
