//! `ensure`: converge AWS to the plan, in dependency order, looking everything up before
//! creating it.
//!
//! ```text
//!   look up LB by name -> ownership + immutable checks (scheme, VPC, type, subnets)
//!   node groups        -> the targets' node security groups (cached; an ambiguous one is skipped)
//!   security group     -> find|create, rules = source ranges x listener ports, tags
//!   load balancer      -> create if missing (subnets: annotation | config | discovery), groups =
//!                         [its own, the cluster's backend group] (node_security.rs), else
//!                         security groups and IP address type in place
//!   target groups      -> find|create by name, health check, attributes, targets (batched)
//!   listeners          -> create | modify | delete by port
//!   node rules         -> the node groups admit the backend group on the target groups' ports
//!   stale target groups-> the ones our listeners (or the record) used before, no longer wanted
//!   sweep              -> node rules nobody needs, when this load balancer's ports changed
//!   attributes, tags   -> LB attributes, spec hash tag
//!   state              -> provisioning => the address with `provisioning` set; failed => Failed
//! ```
//!
//! Every step is idempotent and finds its resources again by name + tags, so a cancelled or
//! crashed `ensure` is finished by the next one and never duplicates anything.

use std::collections::{BTreeMap, BTreeSet};

use aws_sdk_elasticloadbalancingv2::types::LoadBalancerTypeEnum;
use std::time::Duration;

use cloudlb_provider::{
    IngressPoint, IpMode, LoadBalancerId, LoadBalancerSpec, LoadBalancerStatus, ProviderError, Record, Scheme,
    TargetHealth,
};

use crate::clients::Api;
use crate::load_balancer::{self, Lb, State};
use crate::plan::{self, DesiredTargetGroup};
use crate::{delete, listeners, node_security, options, record, security_group, subnets, tags, target_groups};

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
        replace_failed: opts.replace_failed,
    };
    let (existing, new_subnets) = look_up(api, id, &wanted, record_in).await?;

    // 1b. The nodes' security groups (reads only): an ambiguous one is skipped with a warning.
    let manage = api.config.manage_node_security_groups && plan.manage_backend;
    let node_groups =
        if manage { node_security::node_groups(api, &id.cluster, &plan.instances).await? } else { BTreeSet::new() };

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

    // 3. Load balancer, with its own group and the cluster's backend group.
    let lb_tags = tags::desired(id, tags::ROLE_LOAD_BALANCER, &plan.additional_tags);
    let create = load_balancer::CreateRequest {
        lb_type: LoadBalancerTypeEnum::Network,
        name: &plan.lb_name,
        scheme: plan.scheme,
        subnets: new_subnets.as_deref().unwrap_or_default(),
        eip_allocations: plan.eip_allocations.as_deref(),
        security_groups: &[],
        tags: &lb_tags,
        ip_address_type: plan.ip_address_type,
    };
    // The spec hash tag is written only at the end, once everything implements the spec.
    let attached = with_security_groups(api, &id.cluster, existing, create, &sg.id, manage).await?;
    let lb = attached.lb.clone();
    load_balancer::converge_ip_address_type(api, &lb, plan.ip_address_type).await?;

    // 4. Target groups.
    let tg_tags = tags::desired(id, tags::ROLE_TARGET_GROUP, &plan.additional_tags);
    let (tg_by_name, health, needs_changed) =
        ensure_target_groups(api, id, &plan.target_groups, &plan.instances, &tg_tags, |t| {
            group_label(&t.listener_port.to_string())
        })
        .await?;

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

    // 5b. The nodes' rules, now that the listeners forward to the target groups needing them.
    let needs = node_security::needs(&plan.target_groups, api.config.node_port_range_rule);
    if let Some(backend) = &attached.backend {
        node_security::converge(api, &id.cluster, backend, &node_groups, &needs, false).await?;
    }

    // 6. Target groups no longer used (only ours: checked by tags), also unrecorded ones.
    let wanted: BTreeSet<&String> = tg_by_name.values().collect();
    let recorded = record_in.map(|r| record::target_groups(r).into_iter().collect());
    let stale_deleted =
        delete::stale_target_groups(api, id, delete::Kind::Nlb, previously_used, &wanted, recorded).await?;
    // 6b. Node rules nobody needs any more (ports changed, or the backend group was detached).
    sweep_if_changed(api, &id.cluster, &attached, &needs, needs_changed || stale_deleted).await?;

    // 7. Attributes and tags of the load balancer (spec hash last: it says "done").
    load_balancer::converge_attributes(api, &lb.arn, &plan.lb_attributes).await?;
    let current_tags =
        tags::describe_elb(api, std::slice::from_ref(&lb.arn)).await?.remove(&lb.arn).unwrap_or_default();
    let mut want_tags = lb_tags;
    want_tags.insert(tags::SPEC_HASH.into(), plan.spec_hash.clone());
    tags::add_elb(api, &lb.arn, &tags::missing(&want_tags, &current_tags)).await?;

    // 8. Ready?
    let (lb, provisioning) = wait_active(api, lb).await?;
    let mut st = status(&lb, Some(&sg.id), &made, Some(plan.spec_hash));
    st.provisioning = provisioning;
    st.targets = Some(health);
    Ok(st)
}

/// How a target group is named to users (in the health condition), from what follows
/// `target-group/` in the record: a Service's listener port, an Ingress's target group name.
pub(crate) fn group_label(key: &str) -> String {
    match key.parse::<u16>() {
        Ok(port) => format!("port {port}"),
        Err(_) => format!("target group {key}"),
    }
}

/// What a load balancer must be to be used in place.
pub(crate) struct WantedLb<'a> {
    pub name: &'a str,
    pub lb_type: LoadBalancerTypeEnum,
    /// The object kind, for messages (`Service`, `Ingress`).
    pub kind: &'a str,
    pub scheme: Scheme,
    pub annotated_subnets: Option<&'a [String]>,
    /// Delete and re-create a load balancer AWS could not provision (else: `Failed`).
    pub replace_failed: bool,
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
    if let State::Failed(reason) = &lb.state {
        if !want.replace_failed {
            return Err(failed(&lb, reason));
        }
        // Ours (checked above) and useless: its listeners go with it; target groups and the
        // security group are kept and used by the new one. The name is free again once AWS has
        // deleted it, so the new one is made by the next pass.
        tracing::warn!(lb = %lb.name, arn = %lb.arn, reason, "replacing a load balancer AWS could not provision");
        load_balancer::delete(api, &lb.arn).await?;
        return Err(ProviderError::Provisioning {
            what: format!("the replacement of failed load balancer {}", lb.name),
            retry_after: api.config.provisioning_retry,
        });
    }
    Ok((Some(lb), None))
}

/// Find (ownership- and shape-checked) or create every target group, converge its health check,
/// attributes and targets. Returns the ARN by name, the targets' health (each group named by
/// `label`), and whether an existing group's node rules (traffic or health-check port) change
/// (`node_security::needs_differ`).
pub(crate) async fn ensure_target_groups(
    api: &Api<'_>,
    id: &LoadBalancerId,
    groups: &[DesiredTargetGroup],
    instances: &BTreeSet<String>,
    tg_tags: &BTreeMap<String, String>,
    label: impl Fn(&DesiredTargetGroup) -> String,
) -> Result<(BTreeMap<String, String>, TargetHealth, bool), ProviderError> {
    let names: Vec<String> = groups.iter().map(|t| t.name.clone()).collect();
    let found = target_groups::find_by_names(api, &names).await?;
    let found_arns: Vec<String> = found.values().map(|t| t.arn.clone()).collect();
    let found_tags = tags::describe_elb(api, &found_arns).await?;
    let mut out = BTreeMap::new();
    let mut health = TargetHealth::default();
    let mut needs_changed = false;
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
                needs_changed |= node_security::needs_differ(tg, dtg, api.config.node_port_range_rule);
                target_groups::converge_health(api, tg, &dtg.health).await?;
                tg.clone()
            }
            None => target_groups::create(api, dtg, tg_tags).await?,
        };
        target_groups::converge_attributes(api, &tg.arn, &dtg.attributes).await?;
        let registrations = target_groups::converge_targets(api, &tg.arn, dtg.node_port, instances).await?;
        health.groups.push(registrations.health(label(dtg)));
        out.insert(dtg.name.clone(), tg.arn);
    }
    Ok((out, health, needs_changed))
}

/// A load balancer (found, or created) with its security groups.
pub(crate) struct Attached {
    pub lb: Lb,
    /// The cluster's backend group, when the load balancer carries it.
    pub backend: Option<String>,
    /// The backend group (or any group but its own) was taken off the load balancer.
    pub detached: bool,
}

/// Step 3 of both ensures: the load balancer (created with `create` and its groups when
/// missing) carrying exactly its own group `frontend` and, when `manage`, the cluster's backend
/// group (`node_security.rs`; made if missing, under the lock that keeps a sweep from deleting
/// it before it is attached). A load balancer made without any security group cannot get one:
/// it is left as it is, with a warning.
pub(crate) async fn with_security_groups(
    api: &Api<'_>,
    cluster: &str,
    existing: Option<Lb>,
    create: load_balancer::CreateRequest<'_>,
    frontend: &str,
    manage: bool,
) -> Result<Attached, ProviderError> {
    let _serialized = if manage { Some(api.node.lock_changes().await) } else { None };
    let backend = if manage { Some(node_security::ensure_backend(api, cluster).await?) } else { None };
    let want: Vec<String> = std::iter::once(frontend.to_string()).chain(backend.clone()).collect();
    let lb = match existing {
        Some(lb) => lb,
        None => load_balancer::create(api, load_balancer::CreateRequest { security_groups: &want, ..create }).await?,
    };
    if lb.security_groups.is_empty() {
        tracing::warn!(
            lb = %lb.name,
            "load balancer has no security group (created without one); source ranges are not enforced and the \
             nodes' security groups are not opened to it"
        );
        return Ok(Attached { lb, backend: None, detached: false });
    }
    let current: BTreeSet<&String> = lb.security_groups.iter().collect();
    let mut detached = false;
    if current != want.iter().collect::<BTreeSet<_>>() {
        detached = lb.security_groups.iter().any(|g| !want.contains(g));
        load_balancer::set_security_groups(api, &lb.arn, &want).await?;
    }
    Ok(Attached { lb, backend, detached })
}

/// Step 6b of both ensures: a sweep (`node_security::sweep`) when this load balancer's node
/// rules may have lost users: its ports changed, or the backend group was taken off it.
pub(crate) async fn sweep_if_changed(
    api: &Api<'_>,
    cluster: &str,
    attached: &Attached,
    needs: &BTreeSet<node_security::NodeRule>,
    ports_changed: bool,
) -> Result<(), ProviderError> {
    if (attached.backend.is_some() && ports_changed) || attached.detached {
        let own = attached.backend.as_ref().map(|_| needs);
        node_security::sweep(api, cluster, own, node_security::LastOne::TryDelete).await?;
    }
    Ok(())
}

/// Re-read a load balancer that is still provisioning once (some backends report `active` on
/// the next read). Still provisioning: its DNS name is known, so the caller reports it with
/// `provisioning` set and the controller publishes it and watches the state with `observe` (one
/// describe) instead of running whole ensures. `failed`: [`failed`].
pub(crate) async fn wait_active(api: &Api<'_>, lb: Lb) -> Result<(Lb, Option<Duration>), ProviderError> {
    let lb = match lb.state {
        State::Provisioning => load_balancer::find_by_arn(api, &lb.arn).await?.unwrap_or(lb),
        _ => lb,
    };
    match &lb.state {
        State::Active => Ok((lb, None)),
        State::Provisioning => Ok((lb, Some(api.config.provisioning_retry))),
        State::Failed(reason) => Err(failed(&lb, reason)),
        State::Other(s) => Err(ProviderError::Retryable {
            call: "elbv2:DescribeLoadBalancers",
            message: format!("load balancer {} is in state {s}", lb.name),
        }),
    }
}

/// The option that lets an ensure replace a load balancer AWS could not provision.
pub const REPLACE_FAILED: &str = "replace-failed-load-balancer";

/// A load balancer in state `failed`: AWS gave up making it and the same calls will not fix it,
/// so this is permanent (no retry loop), with what the user can do.
pub(crate) fn failed(lb: &Lb, reason: &str) -> ProviderError {
    let why = if reason.is_empty() { String::new() } else { format!(" ({reason})") };
    ProviderError::Failed {
        call: "elbv2:DescribeLoadBalancers",
        what: format!("load balancer {} ({})", lb.name, lb.arn),
        message: format!(
            "AWS could not provision it{why} and retrying will not help; annotate the object with \
             aws.cloudlb.io/{REPLACE_FAILED}: \"true\" to let cloudlb delete and re-create it (its address \
             changes), or delete it yourself and cloudlb makes a new one"
        ),
    }
}

pub fn status(
    lb: &Lb,
    sg_id: Option<&str>,
    listeners: &BTreeMap<u16, (String, Option<String>)>,
    spec_hash: Option<String>,
) -> LoadBalancerStatus {
    LoadBalancerStatus::new(address(lb), IpMode::VIP, record::build(&lb.arn, sg_id, listeners), spec_hash)
}

/// The load balancer's DNS name, once AWS has given it one.
pub(crate) fn address(lb: &Lb) -> Vec<IngressPoint> {
    if lb.dns_name.is_empty() { Vec::new() } else { vec![IngressPoint::Hostname(lb.dns_name.clone())] }
}
