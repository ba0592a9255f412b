//! `delete` and `get`: work from the record first, by name + tags second; the record is only a
//! hint (see `record`), every resource is checked by its ownership tags before it is touched.
//!
//! Deletion order follows AWS's dependencies: listeners -> load balancer -> node rules nobody
//! needs any more (and the backend group after the last load balancer; `node_security.rs`) ->
//! target groups -> security group. The node-rule sweep works from what exists, not from the
//! record, so a repeated delete (or any later one) finishes what an interrupted one left. Every
//! step treats "not found" as done, so a half-made or half-deleted load balancer is finished off
//! by re-running. A resource with our name but without our tags is left
//! alone (never deleted). Besides the record and the load balancer's listeners, the target
//! groups and security groups are found by their ownership tags in one Resource Groups Tagging
//! API call (`tagged.rs`), which also finds groups an interrupted `ensure` made but never
//! attached or recorded. That API is eventually consistent: a group tagged seconds before the
//! delete may be missing from its answer; `cloudlb gc` (the same API, later) finds it then.

use std::collections::{BTreeMap, BTreeSet};

use aws_sdk_elasticloadbalancingv2::types::LoadBalancerTypeEnum;
use cloudlb_provider::{ErrorClass, LoadBalancerId, LoadBalancerStatus, ProviderError, Record};

use crate::clients::Api;
use crate::load_balancer::{self, Lb};
use crate::{ensure, listeners, names, node_security, record, security_group, tagged, tags, target_groups};

/// The load balancer the record names, when it is ours. A recorded load balancer tagged for
/// this object under another cluster name (`--cluster-name` changed) is a Conflict: making or
/// deleting by the new name would orphan it. Anything else the record names (another object's
/// or cluster's load balancer, a malformed or foreign ARN) is ignored with a warning: the record
/// is a hint anyone who can patch the object can edit.
pub async fn recorded_lb(
    api: &Api<'_>,
    id: &LoadBalancerId,
    rec: Option<&Record>,
) -> Result<Option<(Lb, BTreeMap<String, String>)>, ProviderError> {
    let Some(arn) = rec.and_then(record::load_balancer) else { return Ok(None) };
    let lb = match load_balancer::find_by_arn(api, arn).await {
        Ok(Some(lb)) => lb,
        Ok(None) => return Ok(None),
        // An ARN of another account or region: not ours to look at.
        Err(e) if e.class() == ErrorClass::Permanent => {
            tracing::warn!(arn, owner = %id, error = %e, "recorded load balancer cannot be read; ignoring the record");
            return Ok(None);
        }
        Err(e) => return Err(e),
    };
    let t = tags::describe_elb(api, std::slice::from_ref(&lb.arn)).await?.remove(&lb.arn).unwrap_or_default();
    if tags::is_owned(id, &t) {
        return Ok(Some((lb, t)));
    }
    if t.get(tags::OWNER_UID) == Some(&id.uid)
        && let Some(cluster) = t.get(tags::CLUSTER)
    {
        return Err(ProviderError::Conflict {
            call: "elbv2:DescribeTags",
            resource: format!("load balancer {} ({})", lb.name, lb.arn),
            message: format!(
                "it was made for this object by cloudlb with --cluster-name {cluster:?}, but cloudlb now runs with \
                 --cluster-name {:?}; run with --cluster-name {cluster:?} again (or delete the load balancer \
                 yourself) so that it is not left behind",
                id.cluster
            ),
        });
    }
    tracing::warn!(lb = %lb.name, arn = %lb.arn, owner = %id, "recorded load balancer is not ours; ignoring the record");
    Ok(None)
}

/// Our NLB for `id` (see [`find_of_type`]).
async fn find_lb(
    api: &Api<'_>,
    id: &LoadBalancerId,
    rec: Option<&Record>,
) -> Result<Option<(Lb, BTreeMap<String, String>)>, ProviderError> {
    find_of_type(api, id, rec, &names::load_balancer(id), LoadBalancerTypeEnum::Network).await
}

/// Our load balancer of `lb_type` for `id`: the recorded one when it is ours and of that type
/// (a Service's NLB is never taken for an Ingress's ALB, and back), else the one named `name`;
/// `None` when absent or not ours.
pub(crate) async fn find_of_type(
    api: &Api<'_>,
    id: &LoadBalancerId,
    rec: Option<&Record>,
    name: &str,
    lb_type: LoadBalancerTypeEnum,
) -> Result<Option<(Lb, BTreeMap<String, String>)>, ProviderError> {
    let of_type = |lb: &Lb| lb.lb_type == lb_type.as_str();
    if let Some(found) = recorded_lb(api, id, rec).await?
        && of_type(&found.0)
    {
        return Ok(Some(found));
    }
    let Some(lb) = load_balancer::find_by_name(api, name).await? else { return Ok(None) };
    let t = tags::describe_elb(api, std::slice::from_ref(&lb.arn)).await?.remove(&lb.arn).unwrap_or_default();
    if !tags::is_owned(id, &t) || !of_type(&lb) {
        tracing::warn!(lb = %lb.name, arn = %lb.arn, owner = %id, "load balancer with our name is not ours; leaving it alone");
        return Ok(None);
    }
    Ok(Some((lb, t)))
}

pub async fn delete(api: &Api<'_>, id: &LoadBalancerId, rec: Option<&Record>) -> Result<(), ProviderError> {
    let mut tg_arns: BTreeSet<String> = rec.map(record::target_groups).unwrap_or_default().into_iter().collect();
    let lb = find_lb(api, id, rec).await?;
    let mut lb_security_groups = Vec::new();
    if let Some((lb, _)) = &lb {
        for l in listeners::list(api, &lb.arn).await?.values() {
            if let Some(tg) = &l.target_group {
                tg_arns.insert(tg.clone());
            }
            listeners::delete(api, &l.arn).await?;
        }
        load_balancer::delete(api, &lb.arn).await?;
        lb_security_groups = lb.security_groups.clone();
    }
    // Listeners are deleted only through our own load balancer, never from the record: a
    // listener ARN there may be anyone's (and a gone load balancer took its listeners along).

    // The nodes' rules this load balancer alone needed (it is gone, so it no longer counts), and
    // the backend group if it was the last one; its error is reported after the rest is done.
    let swept = node_security::sweep(api, &id.cluster, None, node_security::LastOne::Delete).await;

    // Target groups (also one an interrupted ensure never attached or recorded) and the
    // security group.
    let mut sg_ids: BTreeSet<String> = own_groups(api, &id.cluster, lb_security_groups);
    if let Some(sg) = rec.and_then(record::security_group) {
        sg_ids.insert(sg.to_string());
    }
    delete_groups(api, id, Kind::Nlb, tg_arns, sg_ids, &names::security_group(id)).await?;
    swept
}

/// A load balancer's groups without the cluster's backend group (never one load balancer's to
/// delete; `node_security::sweep` does when the last one goes).
pub(crate) fn own_groups(api: &Api<'_>, cluster: &str, groups: Vec<String>) -> BTreeSet<String> {
    let backend = api.node.cached_backend(cluster);
    groups.into_iter().filter(|g| Some(g) != backend.as_ref()).collect()
}

/// Which load balancer's groups [`delete_groups`] deletes: a Service's NLB or an Ingress's ALB
/// (told apart by the ALB roles' tags, so one kind's delete never takes the other's).
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    Nlb,
    Alb,
}

/// Deletes the target groups and the security groups of `id` and `kind`: the candidates given
/// (recorded, attached), every one the tagging API lists with `id`'s ownership tags (one an
/// interrupted ensure made and never attached or recorded), and the security group named
/// `sg_name`. Each is deleted only when its tags say it is `id`'s and of `kind`; the others are
/// left alone.
pub(crate) async fn delete_groups(
    api: &Api<'_>,
    id: &LoadBalancerId,
    kind: Kind,
    tg_arns: BTreeSet<String>,
    mut sg_ids: BTreeSet<String>,
    sg_name: &str,
) -> Result<(), ProviderError> {
    let tagged = tagged::owned(api, id, &[tagged::TARGET_GROUPS, tagged::SECURITY_GROUPS]).await?;
    for (arn, _) in tagged.iter().filter(|(a, _)| !is_target_group(a)) {
        if let Some(sg) = arn.rsplit('/').next().filter(|s| s.starts_with("sg-")) {
            sg_ids.insert(sg.to_string());
        }
    }
    delete_target_groups(api, id, kind, tg_arns, &BTreeSet::new(), tagged).await?;
    if let Some(sg) = security_group::find(api, sg_name).await? {
        sg_ids.insert(sg.id);
    }
    for sg_id in sg_ids {
        let Some(sg) = security_group::find_by_id(api, &sg_id).await? else { continue };
        if tags::is_owned(id, &sg.tags) && of_kind(kind, &sg.tags, tags::ROLE_ALB_SECURITY_GROUP) {
            security_group::delete(api, &sg.id).await?;
        }
    }
    Ok(())
}

fn is_target_group(arn: &str) -> bool {
    arn.contains(":targetgroup/")
}

/// Whether tags of a group say it belongs to a load balancer of `kind` (an ALB's groups carry
/// the ALB role `alb_role`).
fn of_kind(kind: Kind, t: &BTreeMap<String, String>, alb_role: &str) -> bool {
    (kind == Kind::Alb) == tags::has_role(t, alb_role)
}

/// Deletes the target groups among `candidates` and the tagging API's answer `tagged` (ARN →
/// tags; only its target groups are used) that are `id`'s, of `kind` and not `wanted`. The
/// candidates the tagging API did not list are checked with `DescribeTags` first. Whether any
/// was deleted.
pub(crate) async fn delete_target_groups(
    api: &Api<'_>,
    id: &LoadBalancerId,
    kind: Kind,
    candidates: BTreeSet<String>,
    wanted: &BTreeSet<&String>,
    tagged: BTreeMap<String, BTreeMap<String, String>>,
) -> Result<bool, ProviderError> {
    let mut found: BTreeMap<String, BTreeMap<String, String>> =
        tagged.into_iter().filter(|(a, _)| is_target_group(a) && !wanted.contains(a)).collect();
    let unknown: Vec<String> =
        candidates.into_iter().filter(|a| !wanted.contains(a) && !found.contains_key(a)).collect();
    found.extend(tags::describe_elb(api, &unknown).await?);
    let mut deleted = false;
    for (arn, t) in found {
        if tags::is_owned(id, &t) && of_kind(kind, &t, tags::ROLE_ALB_TARGET_GROUP) {
            target_groups::delete(api, &arn).await?;
            deleted = true;
        } else {
            tracing::warn!(arn = %arn, owner = %id, "target group is not ours; leaving it alone");
        }
    }
    Ok(deleted)
}

/// The target groups an ensure of `id` no longer wants go: the `candidates` (what its listeners
/// and the record named) and, when the ensure may have followed an interrupted one (no record,
/// or a record whose target groups are not the wanted ones), every target group the tagging API
/// lists as `id`'s: one an interrupted ensure made and never attached or recorded. An ensure that
/// changes nothing makes no call here. Whether any was deleted.
pub(crate) async fn stale_target_groups(
    api: &Api<'_>,
    id: &LoadBalancerId,
    kind: Kind,
    candidates: BTreeSet<String>,
    wanted: &BTreeSet<&String>,
    recorded: Option<BTreeSet<String>>,
) -> Result<bool, ProviderError> {
    let settled = recorded.is_some_and(|r| r.len() == wanted.len() && r.iter().all(|a| wanted.contains(a)));
    let tagged = if settled { BTreeMap::new() } else { tagged::owned(api, id, &[tagged::TARGET_GROUPS]).await? };
    delete_target_groups(api, id, kind, candidates, wanted, tagged).await
}

pub async fn get(
    api: &Api<'_>,
    id: &LoadBalancerId,
    rec: Option<&Record>,
) -> Result<Option<LoadBalancerStatus>, ProviderError> {
    let Some((lb, t)) = find_lb(api, id, rec).await? else { return Ok(None) };
    let made: BTreeMap<u16, (String, Option<String>)> =
        listeners::list(api, &lb.arn).await?.into_iter().map(|(port, l)| (port, (l.arn, l.target_group))).collect();
    let sg = node_security::frontend_of(api, &id.cluster, &lb.security_groups);
    Ok(Some(ensure::status(&lb, sg, &made, t.get(tags::SPEC_HASH).cloned())))
}
