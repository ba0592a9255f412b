//! Targets-only updates ([`Provider::update_targets`](cloudlb_provider::Provider::update_targets)):
//! when nothing but the node set changed, only the target groups' registrations change. Per
//! target group that is one DescribeTargetHealth, and at most one RegisterTargets and one
//! DeregisterTargets; no load balancer, listener, attribute or tag call. The nodes' security
//! groups (`node_security.rs`) cost one DescribeInstances for instances the process has not seen
//! and, only when a new node brings a node security group not known to have this load balancer's
//! rules, one DescribeSecurityGroups and one AuthorizeSecurityGroupIngress; all before any
//! registration, so a new node is admitted before it is a target.
//!
//! The target groups come from the record, which anyone who can edit the Service can edit. So
//! each target group's ownership tags are checked once per process (one DescribeTags for all of
//! a load balancer's groups) and remembered: a record pointing at another Service's or another
//! cluster's target group is a Conflict and changes nothing of theirs. Without a usable record
//! (none, a port missing from it, a target group gone) the caller falls back to a full ensure,
//! which finds everything by name and tags and rebuilds what is missing.

use std::collections::{BTreeSet, HashSet};
use std::sync::Mutex;

use cloudlb_provider::{LoadBalancerId, LoadBalancerSpec, ProviderError, Record};

use crate::clients::Api;
use crate::{node_security, options, plan, record, tags, target_groups};

/// Target groups whose ownership tags were checked, as (owner uid, ARN).
#[derive(Default)]
pub struct Verified(Mutex<HashSet<(String, String)>>);

impl Verified {
    pub(crate) fn contains(&self, uid: &str, arn: &str) -> bool {
        self.0.lock().unwrap_or_else(|p| p.into_inner()).contains(&(uid.to_string(), arn.to_string()))
    }

    pub(crate) fn insert(&self, uid: &str, arn: &str) {
        self.0.lock().unwrap_or_else(|p| p.into_inner()).insert((uid.to_string(), arn.to_string()));
    }

    /// Forgets a load balancer's target groups (it was deleted).
    pub fn forget(&self, uid: &str) {
        self.0.lock().unwrap_or_else(|p| p.into_inner()).retain(|(u, _)| u != uid);
    }
}

/// Converges the registrations of every target group of `id` to the spec's instances.
/// `Ok(false)`: the record cannot be used (nothing was changed); do a full ensure instead.
pub async fn update(
    api: &Api<'_>,
    id: &LoadBalancerId,
    spec: &LoadBalancerSpec,
    record: Option<&Record>,
    verified: &Verified,
) -> Result<bool, ProviderError> {
    let Some(record) = record else { return Ok(false) };
    let (opts, _) = options::parse(&spec.options);
    let plan = plan::build(id, spec, &opts);
    let mut groups = Vec::with_capacity(plan.target_groups.len());
    for tg in &plan.target_groups {
        let Some(arn) = record::target_group(record, tg.listener_port) else { return Ok(false) };
        groups.push((arn.to_string(), tg.node_port));
    }
    if !node_rules(api, id, plan.manage_backend, &plan.target_groups, &plan.instances).await? {
        return Ok(false);
    }
    update_groups(api, id, &groups, &plan.instances, verified).await
}

/// The node rules of a targets-only update (when managed): `Ok(false)` when the backend group is
/// unknown and a full ensure must run.
pub async fn node_rules(
    api: &Api<'_>,
    id: &LoadBalancerId,
    manage_backend: bool,
    target_groups: &[plan::DesiredTargetGroup],
    instances: &BTreeSet<String>,
) -> Result<bool, ProviderError> {
    if !api.config.manage_node_security_groups || !manage_backend || instances.is_empty() {
        return Ok(true);
    }
    let want = node_security::needs(target_groups, api.config.node_port_range_rule);
    node_security::targets_only(api, &id.cluster, instances, &want).await
}

/// Converges the registrations of `groups` (target group ARN, node port) to `instances`, after
/// checking (once per process) that each group is ours. `Ok(false)`: a group is gone; nothing
/// was changed.
pub async fn update_groups(
    api: &Api<'_>,
    id: &LoadBalancerId,
    groups: &[(String, u16)],
    instances: &BTreeSet<String>,
    verified: &Verified,
) -> Result<bool, ProviderError> {
    let arns: Vec<&String> = groups.iter().map(|(arn, _)| arn).collect();
    if !verify(api, id, &arns, verified).await? {
        return Ok(false);
    }
    // Read every group first: a group that is gone means the record is stale, and a full
    // ensure must run before anything is changed.
    let mut current = Vec::with_capacity(groups.len());
    for (arn, _) in groups {
        match target_groups::registered_if_exists(api, arn).await? {
            Some(c) => current.push(c),
            None => return Ok(false),
        }
    }
    for ((arn, node_port), current) in groups.iter().zip(&current) {
        target_groups::apply_targets(api, arn, *node_port, instances, &current.ids).await?;
    }
    Ok(true)
}

/// Checks (once per process per group: one DescribeTags for all unchecked ones) that each of
/// `arns` is `id`'s. `Ok(false)`: one of them is gone. A group of someone else is a Conflict.
pub async fn verify(
    api: &Api<'_>,
    id: &LoadBalancerId,
    arns: &[&String],
    verified: &Verified,
) -> Result<bool, ProviderError> {
    let unverified: Vec<String> =
        arns.iter().filter(|arn| !verified.contains(&id.uid, arn)).map(|a| a.to_string()).collect();
    if unverified.is_empty() {
        return Ok(true);
    }
    let found = tags::describe_elb(api, &unverified).await?;
    for arn in &unverified {
        let Some(t) = found.get(arn) else { return Ok(false) };
        tags::check_owned("elbv2:DescribeTags", id, arn, t)?;
        verified.insert(&id.uid, arn);
    }
    Ok(true)
}
