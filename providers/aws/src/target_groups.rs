//! Target groups: one per listener port (TCP, UDP or TCP_UDP), target type `instance`, port =
//! the node port; the nodes' instance ids are the targets.
//!
//! Converging a target group costs describe calls only when nothing changed; changes are made
//! in as few mutating calls as the API allows: one ModifyTargetGroup for the health check, one
//! ModifyTargetGroupAttributes, and one RegisterTargets plus one DeregisterTargets per target
//! group with every added/removed instance (chunked at [`TARGETS_PER_CALL`]).

use std::collections::{BTreeMap, BTreeSet};

use aws_sdk_elasticloadbalancingv2::types::{
    Matcher, ProtocolEnum, TargetDescription, TargetGroupAttribute, TargetHealthStateEnum, TargetTypeEnum,
};
use cloudlb_provider::{GroupHealth, ProviderError, UnhealthyTarget};

use crate::clients::Api;
use crate::errors;
use crate::health::HealthSettings;
use crate::options::HcProtocol;
use crate::plan::{DesiredTargetGroup, attribute_default};

pub const TARGETS_PER_CALL: usize = 500;

#[derive(Clone, Debug, Default)]
pub struct Tg {
    pub arn: String,
    pub name: String,
    pub protocol: String,
    pub port: Option<i32>,
    pub health_protocol: Option<String>,
    pub health_port: Option<String>,
    pub health_path: Option<String>,
    pub interval: Option<i32>,
    pub timeout: Option<i32>,
    pub healthy: Option<i32>,
    pub unhealthy: Option<i32>,
    pub matcher: Option<String>,
    /// The load balancers whose listeners (or rules) forward to it.
    pub load_balancer_arns: Vec<String>,
}

fn from_aws(t: &aws_sdk_elasticloadbalancingv2::types::TargetGroup) -> Option<Tg> {
    Some(Tg {
        arn: t.target_group_arn()?.to_string(),
        name: t.target_group_name().unwrap_or_default().to_string(),
        protocol: t.protocol().map(|p| p.as_str().to_string()).unwrap_or_default(),
        port: t.port(),
        health_protocol: t.health_check_protocol().map(|p| p.as_str().to_string()),
        health_port: t.health_check_port().map(String::from),
        health_path: t.health_check_path().map(String::from),
        interval: t.health_check_interval_seconds(),
        timeout: t.health_check_timeout_seconds(),
        healthy: t.healthy_threshold_count(),
        unhealthy: t.unhealthy_threshold_count(),
        matcher: t.matcher().and_then(|m| m.http_code()).map(String::from),
        load_balancer_arns: t.load_balancer_arns().to_vec(),
    })
}

async fn describe_names(api: &Api<'_>, names: &[String]) -> Result<Option<Vec<Tg>>, ProviderError> {
    const CALL: &str = "elbv2:DescribeTargetGroups";
    api.permit(CALL).await;
    match api.elb.describe_target_groups().set_names(Some(names.to_vec())).send().await {
        Ok(r) => Ok(Some(r.target_groups().iter().filter_map(from_aws).collect())),
        Err(e) if errors::is(&e, &["TargetGroupNotFound"]) => Ok(None),
        Err(e) => Err(errors::map(CALL, e)),
    }
}

/// The target groups with these names that exist (one call when all exist, the steady state;
/// one call per name otherwise, because a single missing name fails the whole call).
pub async fn find_by_names(api: &Api<'_>, names: &[String]) -> Result<BTreeMap<String, Tg>, ProviderError> {
    let mut out = BTreeMap::new();
    if names.is_empty() {
        return Ok(out);
    }
    let found = match describe_names(api, names).await? {
        Some(all) => all,
        None if names.len() == 1 => Vec::new(),
        None => {
            let mut found = Vec::new();
            for n in names {
                found.extend(describe_names(api, std::slice::from_ref(n)).await?.unwrap_or_default());
            }
            found
        }
    };
    for tg in found {
        if names.contains(&tg.name) {
            out.insert(tg.name.clone(), tg);
        }
    }
    Ok(out)
}

/// Every target group of the region (one DescribeTargetGroups per 400).
pub async fn list_all(api: &Api<'_>) -> Result<Vec<Tg>, ProviderError> {
    const CALL: &str = "elbv2:DescribeTargetGroups";
    crate::clients::all_pages(api, CALL, |marker| async move {
        let r = api
            .elb
            .describe_target_groups()
            .set_marker(marker)
            .page_size(400)
            .send()
            .await
            .map_err(|e| errors::map(CALL, e))?;
        Ok((r.target_groups().iter().filter_map(from_aws).collect(), r.next_marker().map(String::from)))
    })
    .await
}

fn hc_protocol(p: HcProtocol) -> ProtocolEnum {
    match p {
        HcProtocol::Tcp => ProtocolEnum::Tcp,
        HcProtocol::Http => ProtocolEnum::Http,
        HcProtocol::Https => ProtocolEnum::Https,
    }
}

pub async fn create(
    api: &Api<'_>,
    desired: &DesiredTargetGroup,
    tags: &BTreeMap<String, String>,
) -> Result<Tg, ProviderError> {
    const CALL: &str = "elbv2:CreateTargetGroup";
    let h = &desired.health;
    let mut b = api
        .elb
        .create_target_group()
        .name(&desired.name)
        .protocol(desired.protocol.to_aws())
        .port(i32::from(desired.node_port))
        .vpc_id(&api.config.vpc_id)
        .target_type(TargetTypeEnum::Instance)
        .health_check_enabled(true)
        .health_check_protocol(hc_protocol(h.protocol))
        .health_check_port(h.port.to_aws())
        .health_check_interval_seconds(h.interval as i32)
        .health_check_timeout_seconds(h.timeout as i32)
        .healthy_threshold_count(h.healthy_threshold as i32)
        .unhealthy_threshold_count(h.unhealthy_threshold as i32)
        .set_tags(Some(crate::tags::to_elb(tags)));
    if let Some(path) = &h.path {
        b = b.health_check_path(path);
    }
    if let Some(codes) = &h.success_codes {
        b = b.matcher(Matcher::builder().http_code(codes).build());
    }
    if !api.mutate(CALL).await {
        return Ok(Tg {
            arn: crate::planned::arn("targetgroup", &desired.name),
            name: desired.name.clone(),
            protocol: desired.protocol.to_aws().as_str().to_string(),
            port: Some(i32::from(desired.node_port)),
            ..Default::default()
        });
    }
    let r = b.send().await.map_err(|e| errors::map(CALL, e))?;
    r.target_groups().iter().filter_map(from_aws).next().ok_or_else(|| ProviderError::Retryable {
        call: CALL,
        message: "the response contained no target group".into(),
    })
}

/// Whether the health check of `tg` differs from `h`. Fields a backend does not report are not
/// compared (moto, for one, keeps no matcher on TCP target groups).
pub fn health_differs(tg: &Tg, h: &HealthSettings) -> bool {
    let ne_i = |cur: Option<i32>, want: u32| cur.is_some_and(|c| c != want as i32);
    let ne_s = |cur: &Option<String>, want: &str| cur.as_deref().is_some_and(|c| !c.eq_ignore_ascii_case(want));
    ne_s(&tg.health_protocol, h.protocol.as_str())
        || ne_s(&tg.health_port, &h.port.to_aws())
        || ne_i(tg.interval, h.interval)
        || ne_i(tg.timeout, h.timeout)
        || ne_i(tg.healthy, h.healthy_threshold)
        || ne_i(tg.unhealthy, h.unhealthy_threshold)
        || (h.protocol.is_http() && h.path.as_deref().is_some_and(|p| ne_s(&tg.health_path, p)))
        || (h.protocol.is_http() && h.success_codes.as_deref().is_some_and(|c| ne_s(&tg.matcher, c)))
}

pub async fn converge_health(api: &Api<'_>, tg: &Tg, h: &HealthSettings) -> Result<bool, ProviderError> {
    if !health_differs(tg, h) {
        return Ok(false);
    }
    const CALL: &str = "elbv2:ModifyTargetGroup";
    let mut b = api
        .elb
        .modify_target_group()
        .target_group_arn(&tg.arn)
        .health_check_protocol(hc_protocol(h.protocol))
        .health_check_port(h.port.to_aws())
        .health_check_interval_seconds(h.interval as i32)
        .health_check_timeout_seconds(h.timeout as i32)
        .healthy_threshold_count(h.healthy_threshold as i32)
        .unhealthy_threshold_count(h.unhealthy_threshold as i32);
    if let Some(path) = &h.path {
        b = b.health_check_path(path);
    }
    if let Some(codes) = &h.success_codes {
        b = b.matcher(Matcher::builder().http_code(codes).build());
    }
    if api.mutate(CALL).await {
        b.send().await.map_err(|e| errors::map(CALL, e))?;
    }
    Ok(true)
}

/// Set the attributes of `desired` that differ (a missing managed attribute counts as its AWS
/// default); attributes we do not manage are left alone.
pub async fn converge_attributes(
    api: &Api<'_>,
    arn: &str,
    desired: &BTreeMap<String, String>,
) -> Result<bool, ProviderError> {
    const DESCRIBE: &str = "elbv2:DescribeTargetGroupAttributes";
    let current: BTreeMap<String, String> = if crate::planned::is(arn) {
        BTreeMap::new()
    } else {
        api.permit(DESCRIBE).await;
        api.elb
            .describe_target_group_attributes()
            .target_group_arn(arn)
            .send()
            .await
            .map_err(|e| errors::map(DESCRIBE, e))?
            .attributes()
            .iter()
            .filter_map(|a| Some((a.key()?.to_string(), a.value().unwrap_or_default().to_string())))
            .collect()
    };
    let changes: Vec<TargetGroupAttribute> = desired
        .iter()
        .filter(|(k, v)| {
            let cur = current.get(*k).map(String::as_str).or_else(|| attribute_default(k));
            cur != Some(v.as_str())
        })
        .map(|(k, v)| TargetGroupAttribute::builder().key(k).value(v).build())
        .collect();
    if changes.is_empty() {
        return Ok(false);
    }
    const CALL: &str = "elbv2:ModifyTargetGroupAttributes";
    if api.mutate(CALL).await {
        api.elb
            .modify_target_group_attributes()
            .target_group_arn(arn)
            .set_attributes(Some(changes))
            .send()
            .await
            .map_err(|e| errors::map(CALL, e))?;
    }
    Ok(true)
}

/// What a target group's `DescribeTargetHealth` says: the registered instance ids (draining
/// ones excluded: they are on their way out and must be registered again if wanted) and how
/// each target counts for health.
#[derive(Clone, Debug, Default)]
pub struct Registrations {
    pub ids: BTreeSet<String>,
    counted: BTreeMap<String, Counted>,
}

#[derive(Clone, Debug)]
enum Counted {
    Healthy,
    Pending,
    Unhealthy { reason: String, description: String },
}

impl Registrations {
    /// After `apply_targets` added and removed these: the added ones are pending (their first
    /// checks run), the removed ones no longer count.
    fn after(mut self, added: Vec<String>, removed: Vec<String>) -> Self {
        for r in removed {
            self.ids.remove(&r);
            self.counted.remove(&r);
        }
        for a in added {
            self.counted.insert(a.clone(), Counted::Pending);
            self.ids.insert(a);
        }
        self
    }

    /// The targets' health as the controller reads it, under `name`.
    pub fn health(&self, name: String) -> GroupHealth {
        let mut g = GroupHealth { name, ..Default::default() };
        for (target, c) in &self.counted {
            match c {
                Counted::Healthy => g.healthy += 1,
                Counted::Pending => g.pending += 1,
                Counted::Unhealthy { reason, description } => g.unhealthy.push(UnhealthyTarget {
                    target: target.clone(),
                    reason: reason.clone(),
                    description: description.clone(),
                }),
            }
        }
        g
    }
}

/// How one target's AWS health counts: `initial` (first checks running), `draining`, and
/// `unused` because the group is not in use yet (`Target.NotInUse`: a group created a moment
/// before its listener) are pending; `healthy` is healthy; the rest (`unhealthy`, `unavailable`,
/// `unused` for a stopped instance or a zone the load balancer does not serve) is unhealthy,
/// with AWS's reason.
fn counted(h: Option<&aws_sdk_elasticloadbalancingv2::types::TargetHealth>) -> Counted {
    use aws_sdk_elasticloadbalancingv2::types::TargetHealthReasonEnum as Reason;
    let state = h.and_then(|h| h.state());
    let reason = h.and_then(|h| h.reason());
    match state {
        Some(TargetHealthStateEnum::Healthy) => Counted::Healthy,
        Some(TargetHealthStateEnum::Initial | TargetHealthStateEnum::Draining) => Counted::Pending,
        Some(TargetHealthStateEnum::Unused) if matches!(reason, Some(Reason::NotInUse)) => Counted::Pending,
        _ => Counted::Unhealthy {
            reason: reason
                .map(|r| r.as_str().to_string())
                .or_else(|| state.map(|s| s.as_str().to_string()))
                .unwrap_or_default(),
            description: h.and_then(|h| h.description()).unwrap_or_default().to_string(),
        },
    }
}

/// [`Registrations`] of the target group; an error when it does not exist.
pub async fn registered(api: &Api<'_>, arn: &str) -> Result<Registrations, ProviderError> {
    const CALL: &str = "elbv2:DescribeTargetHealth";
    registered_if_exists(api, arn)
        .await?
        .ok_or_else(|| ProviderError::Retryable { call: CALL, message: format!("target group {arn} does not exist") })
}

/// [`registered`], or `None` when the target group does not exist.
pub async fn registered_if_exists(api: &Api<'_>, arn: &str) -> Result<Option<Registrations>, ProviderError> {
    const CALL: &str = "elbv2:DescribeTargetHealth";
    if crate::planned::is(arn) {
        return Ok(Some(Registrations::default()));
    }
    api.permit(CALL).await;
    let r = match api.elb.describe_target_health().target_group_arn(arn).send().await {
        Ok(r) => r,
        Err(e) if errors::is(&e, &["TargetGroupNotFound"]) => return Ok(None),
        Err(e) => return Err(errors::map(CALL, e)),
    };
    let mut out = Registrations::default();
    for d in r.target_health_descriptions() {
        let Some(id) = d.target().and_then(|t| t.id()) else { continue };
        out.counted.insert(id.to_string(), counted(d.target_health()));
        if !matches!(d.target_health().and_then(|h| h.state()), Some(TargetHealthStateEnum::Draining)) {
            out.ids.insert(id.to_string());
        }
    }
    Ok(Some(out))
}

/// Register the missing instances and deregister the extra ones: at most one call of each per
/// target group (per [`TARGETS_PER_CALL`] instances). Returns the registrations afterwards.
pub async fn converge_targets(
    api: &Api<'_>,
    arn: &str,
    node_port: u16,
    instances: &BTreeSet<String>,
) -> Result<Registrations, ProviderError> {
    let current = registered(api, arn).await?;
    let (added, removed) = apply_targets(api, arn, node_port, instances, &current.ids).await?;
    Ok(current.after(added, removed))
}

/// Register `instances` missing from `current` and deregister the extra ones: at most one
/// call of each per [`TARGETS_PER_CALL`] instances. Returns (added, removed).
pub async fn apply_targets(
    api: &Api<'_>,
    arn: &str,
    node_port: u16,
    instances: &BTreeSet<String>,
    current: &BTreeSet<String>,
) -> Result<(Vec<String>, Vec<String>), ProviderError> {
    let add: Vec<&String> = instances.difference(current).collect();
    let remove: Vec<&String> = current.difference(instances).collect();
    let describe = |ids: &[&String]| -> Vec<TargetDescription> {
        ids.iter().map(|i| TargetDescription::builder().id(i.as_str()).port(i32::from(node_port)).build()).collect()
    };
    for chunk in add.chunks(TARGETS_PER_CALL) {
        const CALL: &str = "elbv2:RegisterTargets";
        if !api.mutate(CALL).await {
            continue;
        }
        api.elb
            .register_targets()
            .target_group_arn(arn)
            .set_targets(Some(describe(chunk)))
            .send()
            .await
            .map_err(|e| errors::map(CALL, e))?;
    }
    for chunk in remove.chunks(TARGETS_PER_CALL) {
        const CALL: &str = "elbv2:DeregisterTargets";
        if !api.mutate(CALL).await {
            continue;
        }
        // Registered targets are described without our port when registered by someone else;
        // deregister by id only, which removes the instance on every port.
        let ids: Vec<TargetDescription> =
            chunk.iter().map(|i| TargetDescription::builder().id(i.as_str()).build()).collect();
        match api.elb.deregister_targets().target_group_arn(arn).set_targets(Some(ids)).send().await {
            Ok(_) => {}
            Err(e) if errors::is(&e, &["InvalidTarget"]) => {}
            Err(e) => return Err(errors::map(CALL, e)),
        }
    }
    Ok((add.into_iter().cloned().collect(), remove.into_iter().cloned().collect()))
}

/// Delete; already gone is success. Still attached to a listener (being deleted) is retryable.
pub async fn delete(api: &Api<'_>, arn: &str) -> Result<(), ProviderError> {
    const CALL: &str = "elbv2:DeleteTargetGroup";
    if !api.mutate(CALL).await {
        return Ok(());
    }
    match api.elb.delete_target_group().target_group_arn(arn).send().await {
        Ok(_) => Ok(()),
        Err(e) if errors::is(&e, &["TargetGroupNotFound"]) => Ok(()),
        Err(e) => Err(errors::map(CALL, e)),
    }
}
