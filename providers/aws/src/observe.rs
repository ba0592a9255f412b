//! `Provider::observe` on aws: the load balancer's state and its targets' health, from the
//! record, in as few reads as that takes.
//!
//! ```text
//!   DescribeLoadBalancers (the recorded ARN)     state: provisioning -> stop here (1 call)
//!   DescribeTags, once per process per resource  the record is only a hint: ownership first
//!   DescribeTargetHealth per recorded group      healthy / pending / unhealthy with AWS's reason
//! ```
//!
//! The controller calls this while a load balancer provisions (instead of a full ensure every
//! few seconds: the issue the cloud-controller-manager avoids too) and to follow target health.
//! The record is editable by anyone who can edit the object, so the load balancer and each group
//! must carry this object's ownership tags (checked once per process, remembered in
//! [`Verified`]); a record pointing elsewhere reads as "cannot tell" (`None`), never someone
//! else's health.

use cloudlb_provider::{LbState, LoadBalancerId, Observed, ProviderError, Record, TargetHealth};

use crate::clients::Api;
use crate::ensure::group_label;
use crate::load_balancer::{self, State};
use crate::targets::{self, Verified};
use crate::{record, tags, target_groups};

pub async fn observe(
    api: &Api<'_>,
    id: &LoadBalancerId,
    rec: Option<&Record>,
    verified: &Verified,
) -> Result<Option<Observed>, ProviderError> {
    let Some(rec) = rec else { return Ok(None) };
    let Some(arn) = record::load_balancer(rec) else { return Ok(None) };
    let Some(lb) = load_balancer::find_by_arn(api, arn).await? else { return Ok(None) };
    let arn = lb.arn.clone();
    if !owned(api, id, &arn, verified).await? {
        return Ok(None);
    }
    let state = match &lb.state {
        State::Active | State::Other(_) => LbState::Active,
        State::Provisioning => return Ok(Some(Observed { state: LbState::Provisioning, targets: None })),
        State::Failed(reason) => {
            let message = crate::ensure::failed(&lb, reason).to_string();
            return Ok(Some(Observed { state: LbState::Failed { message }, targets: None }));
        }
    };
    let groups = record::target_groups_by_key(rec);
    let arns: Vec<String> = groups.iter().map(|(_, a)| a.to_string()).collect();
    let refs: Vec<&String> = arns.iter().collect();
    match targets::verify(api, id, &refs, verified).await {
        Ok(true) => {}
        // A group gone or not ours: the drift check and the next ensure sort that out.
        Ok(false) | Err(ProviderError::Conflict { .. }) => return Ok(Some(Observed { state, targets: None })),
        Err(e) => return Err(e),
    }
    let mut health = TargetHealth::default();
    for (key, arn) in groups {
        let Some(r) = target_groups::registered_if_exists(api, arn).await? else {
            return Ok(Some(Observed { state, targets: None }));
        };
        health.groups.push(r.health(group_label(key)));
    }
    Ok(Some(Observed { state, targets: Some(health) }))
}

/// Whether the load balancer `arn` carries `id`'s ownership tags (one DescribeTags the first time).
async fn owned(api: &Api<'_>, id: &LoadBalancerId, arn: &String, verified: &Verified) -> Result<bool, ProviderError> {
    if verified.contains(&id.uid, arn) {
        return Ok(true);
    }
    let t = tags::describe_elb(api, std::slice::from_ref(arn)).await?.remove(arn).unwrap_or_default();
    if !tags::is_owned(id, &t) {
        tracing::warn!(arn = %arn, owner = %id, "recorded load balancer is not ours; not observing it");
        return Ok(false);
    }
    verified.insert(&id.uid, arn);
    Ok(true)
}
