//! Listener rules with **stable priorities**, changed without a moment where a request finds no
//! rule.
//!
//! A rule is identified by its conditions: one whose conditions are still wanted keeps its ARN,
//! and a changed backend is a ModifyRule of its action in place (never delete + create). New
//! rules get priorities in the gap between their neighbours, spread evenly, so adding a path
//! changes no other rule's priority (the AWS Load Balancer Controller numbers rules 1..N and
//! renumbers everything behind an insert). Only when a gap is full are the rules laid out again,
//! into an empty range of the priority space (SetRulePriorities, one call).
//!
//! Order of changes: moves, then in-place modifications, then creations, then deletions of
//! rules no longer wanted. Rules that are not ours (no ownership tags: added by a person or
//! another tool) are never touched, and their priorities are never taken.

use std::collections::{BTreeMap, BTreeSet};

use aws_sdk_elasticloadbalancingv2::types::{
    Action, ActionTypeEnum, FixedResponseActionConfig, ForwardActionConfig, HostHeaderConditionConfig,
    HttpHeaderConditionConfig, HttpRequestMethodConditionConfig, PathPatternConditionConfig,
    QueryStringConditionConfig, QueryStringKeyValuePair, RedirectActionConfig, RedirectActionStatusCodeEnum,
    RuleCondition, RulePriorityPair, TargetGroupTuple,
};
use cloudlb_provider::{LoadBalancerId, ProviderError};

use super::plan::{AlbAction, Conditions};
use crate::clients::Api;
use crate::{errors, tags};

/// Highest rule priority ALB accepts.
pub const MAX_PRIORITY: u32 = 50_000;
/// Distance between neighbours in a fresh layout: room for inserts.
pub const STEP: u32 = 100;

/// A rule as it exists on a listener.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Current {
    pub arn: String,
    pub priority: u32,
    pub conditions: Conditions,
    /// With target group ARNs.
    pub action: AlbAction,
    pub ours: bool,
}

/// What to do to one listener's rules, in this order.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Changes {
    /// (rule ARN, new priority), one SetRulePriorities call.
    pub moves: Vec<(String, u32)>,
    /// (rule ARN, index of the desired rule whose action it takes).
    pub modify: Vec<(String, usize)>,
    /// (index of the desired rule, priority).
    pub create: Vec<(usize, u32)>,
    pub delete: Vec<String>,
}

/// Indices (into `seq`) of a longest strictly increasing subsequence.
fn longest_increasing(seq: &[u32]) -> BTreeSet<usize> {
    // O(n^2) is fine for at most a hundred rules.
    let n = seq.len();
    let mut len = vec![1usize; n];
    let mut prev = vec![usize::MAX; n];
    for i in 0..n {
        for j in 0..i {
            if seq[j] < seq[i] && len[j] + 1 > len[i] {
                len[i] = len[j] + 1;
                prev[i] = j;
            }
        }
    }
    let mut out = BTreeSet::new();
    let Some(mut i) = (0..n).max_by_key(|&i| (len[i], std::cmp::Reverse(i))) else { return out };
    loop {
        out.insert(i);
        if prev[i] == usize::MAX {
            return out;
        }
        i = prev[i];
    }
}

/// `count` free priorities strictly between `low` and `high`, in order, avoiding `taken`:
/// STEP apart when appending after the last rule, evenly spread inside a gap; `None` when they do
/// not fit.
fn spread(low: u32, high: u32, count: usize, taken: &BTreeSet<u32>) -> Option<Vec<u32>> {
    if count == 0 {
        return Some(Vec::new());
    }
    if high > MAX_PRIORITY {
        let ps: Vec<u32> = (1..=count as u32).map(|k| low + k * STEP).collect();
        if ps.iter().all(|p| *p <= MAX_PRIORITY && !taken.contains(p)) {
            return Some(ps);
        }
    }
    let free: Vec<u32> = (low + 1..high.min(MAX_PRIORITY + 1)).filter(|p| !taken.contains(p)).collect();
    if free.len() < count {
        return None;
    }
    Some((1..=count).map(|i| free[i * free.len() / (count + 1)]).collect())
}

/// The changes that make `current` implement `desired` (conditions, action with target group
/// ARNs) in order.
pub fn diff(desired: &[(Conditions, AlbAction)], current: &[Current]) -> Result<Changes, String> {
    let taken: BTreeSet<u32> = current.iter().map(|c| c.priority).collect();
    let mut unused: Vec<&Current> = current.iter().filter(|c| c.ours).collect();
    let mut matched: Vec<Option<&Current>> = Vec::with_capacity(desired.len());
    for (cond, _) in desired {
        let found = unused.iter().position(|c| &c.conditions == cond).map(|i| unused.remove(i));
        matched.push(found);
    }
    let mut changes = Changes { delete: unused.iter().map(|c| c.arn.clone()).collect(), ..Default::default() };
    for (i, m) in matched.iter().enumerate() {
        if let Some(c) = m
            && c.action != desired[i].1
        {
            changes.modify.push((c.arn.clone(), i));
        }
    }

    // Keep the longest run of matched rules already in order; place the others between them.
    let matched_idx: Vec<usize> = (0..desired.len()).filter(|i| matched[*i].is_some()).collect();
    let seq: Vec<u32> = matched_idx.iter().filter_map(|i| matched[*i].map(|c| c.priority)).collect();
    let keep: BTreeSet<usize> = longest_increasing(&seq).into_iter().map(|k| matched_idx[k]).collect();
    let mut assigned: Vec<u32> = vec![0; desired.len()];
    let mut placed = true;
    let mut i = 0;
    let mut low = 0u32;
    while i < desired.len() {
        if keep.contains(&i) {
            low = matched[i].map_or(0, |c| c.priority);
            assigned[i] = low;
            i += 1;
            continue;
        }
        let start = i;
        while i < desired.len() && !keep.contains(&i) {
            i += 1;
        }
        let high =
            if i < desired.len() { matched[i].map_or(MAX_PRIORITY + 1, |c| c.priority) } else { MAX_PRIORITY + 1 };
        match spread(low, high, i - start, &taken) {
            Some(ps) => {
                for (k, p) in ps.into_iter().enumerate() {
                    assigned[start + k] = p;
                }
                low = assigned[i - 1];
            }
            None => {
                placed = false;
                break;
            }
        }
    }
    if !placed {
        assigned = relayout(desired.len(), &taken).ok_or_else(|| {
            format!(
                "the listener has no room for {} rules between the {} rules on it (priorities 1-{MAX_PRIORITY})",
                desired.len(),
                current.len()
            )
        })?;
        for (i, m) in matched.iter().enumerate() {
            if let Some(c) = m {
                changes.moves.push((c.arn.clone(), assigned[i]));
            }
        }
    } else {
        for (i, m) in matched.iter().enumerate() {
            if let Some(c) = m
                && !keep.contains(&i)
            {
                changes.moves.push((c.arn.clone(), assigned[i]));
            }
        }
    }
    for (i, m) in matched.iter().enumerate() {
        if m.is_none() {
            changes.create.push((i, assigned[i]));
        }
    }
    Ok(changes)
}

/// A fresh layout for `n` rules in the widest free range of the priority space.
fn relayout(n: usize, taken: &BTreeSet<u32>) -> Option<Vec<u32>> {
    let mut bounds: Vec<u32> = vec![0];
    bounds.extend(taken.iter().copied());
    bounds.push(MAX_PRIORITY + 1);
    let (low, high) = bounds.windows(2).map(|w| (w[0], w[1])).max_by_key(|(a, b)| b - a)?;
    let room = (high - low - 1) as usize;
    if room < n {
        return None;
    }
    let step = ((high - low) / (n as u32 + 1)).clamp(1, STEP);
    Some((1..=n as u32).map(|i| low + i * step).collect())
}

// ---- reading rules -------------------------------------------------------------------------

fn conditions_from_aws(conds: &[RuleCondition]) -> Conditions {
    let mut c = Conditions::default();
    for rc in conds {
        match rc.field() {
            Some("host-header") => {
                let v = rc.host_header_config().map(|h| h.values().to_vec()).unwrap_or_else(|| rc.values().to_vec());
                c.host = v.first().map(|h| h.to_ascii_lowercase());
            }
            Some("path-pattern") => {
                let v = rc.path_pattern_config().map(|p| p.values().to_vec()).unwrap_or_else(|| rc.values().to_vec());
                c.paths.extend(v);
            }
            Some("http-request-method") => {
                c.method = rc.http_request_method_config().and_then(|m| m.values().first().cloned());
            }
            Some("http-header") => {
                if let Some(h) = rc.http_header_config() {
                    let name = h.http_header_name().unwrap_or_default().to_ascii_lowercase();
                    c.headers.extend(h.values().iter().map(|v| (name.clone(), v.clone())));
                }
            }
            Some("query-string") => {
                if let Some(q) = rc.query_string_config() {
                    c.query.extend(q.values().iter().map(|kv| {
                        (kv.key().unwrap_or_default().to_string(), kv.value().unwrap_or_default().to_string())
                    }));
                }
            }
            _ => {}
        }
    }
    c.paths.sort();
    c.headers.sort();
    c.query.sort();
    c
}

/// What an AWS action list does, in our terms (target groups by ARN).
pub fn action_from_aws(actions: &[Action]) -> AlbAction {
    let Some(a) = actions.iter().min_by_key(|a| a.order().unwrap_or(0)) else { return AlbAction::Fixed(0) };
    match a.r#type() {
        Some(ActionTypeEnum::Forward) => {
            let tuples: Vec<(String, u32)> = a
                .forward_config()
                .map(|f| {
                    f.target_groups()
                        .iter()
                        .filter_map(|t| {
                            Some((t.target_group_arn()?.to_string(), t.weight().unwrap_or(1).max(0) as u32))
                        })
                        .collect()
                })
                .unwrap_or_default();
            if tuples.is_empty() {
                AlbAction::Forward(a.target_group_arn().map(|t| vec![(t.to_string(), 1)]).unwrap_or_default())
            } else {
                AlbAction::Forward(tuples)
            }
        }
        Some(ActionTypeEnum::FixedResponse) => AlbAction::Fixed(
            a.fixed_response_config().and_then(|f| f.status_code()).and_then(|s| s.parse().ok()).unwrap_or(0),
        ),
        Some(ActionTypeEnum::Redirect) => {
            AlbAction::Redirect(a.redirect_config().and_then(|r| r.port()).and_then(|p| p.parse().ok()).unwrap_or(0))
        }
        _ => AlbAction::Fixed(0),
    }
}

/// The rules of a listener (the default rule left out), with ownership from their tags.
pub async fn list(api: &Api<'_>, id: &LoadBalancerId, listener_arn: &str) -> Result<Vec<Current>, ProviderError> {
    const CALL: &str = "elbv2:DescribeRules";
    let mut raw = Vec::new();
    if crate::planned::is(listener_arn) {
        return Ok(Vec::new());
    }
    let mut next: Option<String> = None;
    loop {
        api.permit(CALL).await;
        let r = match api.elb.describe_rules().listener_arn(listener_arn).set_marker(next.clone()).send().await {
            Ok(r) => r,
            Err(e) if errors::is(&e, &["ListenerNotFound"]) => return Ok(Vec::new()),
            Err(e) => return Err(errors::map(CALL, e)),
        };
        for rule in r.rules() {
            if rule.is_default() == Some(true) {
                continue;
            }
            let (Some(arn), Some(priority)) = (rule.rule_arn(), rule.priority().and_then(|p| p.parse::<u32>().ok()))
            else {
                continue;
            };
            raw.push(Current {
                arn: arn.to_string(),
                priority,
                conditions: conditions_from_aws(rule.conditions()),
                action: action_from_aws(rule.actions()),
                ours: false,
            });
        }
        next = r.next_marker().filter(|m| !m.is_empty()).map(String::from);
        if next.is_none() {
            break;
        }
    }
    let arns: Vec<String> = raw.iter().map(|c| c.arn.clone()).collect();
    let found = tags::describe_elb(api, &arns).await?;
    for c in &mut raw {
        c.ours = found.get(&c.arn).is_some_and(|t| tags::is_owned(id, t));
    }
    Ok(raw)
}

// ---- writing rules -------------------------------------------------------------------------

/// The AWS form of an action (target groups already resolved to ARNs).
pub fn action_to_aws(a: &AlbAction) -> Action {
    match a {
        AlbAction::Forward(list) if list.len() == 1 => {
            Action::builder().r#type(ActionTypeEnum::Forward).target_group_arn(&list[0].0).build()
        }
        AlbAction::Forward(list) => Action::builder()
            .r#type(ActionTypeEnum::Forward)
            .forward_config(
                ForwardActionConfig::builder()
                    .set_target_groups(Some(
                        list.iter()
                            .map(|(arn, w)| TargetGroupTuple::builder().target_group_arn(arn).weight(*w as i32).build())
                            .collect(),
                    ))
                    .build(),
            )
            .build(),
        AlbAction::Fixed(status) => Action::builder()
            .r#type(ActionTypeEnum::FixedResponse)
            .fixed_response_config(
                FixedResponseActionConfig::builder()
                    .status_code(status.to_string())
                    .content_type("text/plain")
                    .message_body(match status {
                        404 => "404 page not found\n",
                        503 => "503 no backend available (see the Ingress's events)\n",
                        _ => "",
                    })
                    .build(),
            )
            .build(),
        AlbAction::Redirect(port) => Action::builder()
            .r#type(ActionTypeEnum::Redirect)
            .redirect_config(
                RedirectActionConfig::builder()
                    .protocol("HTTPS")
                    .port(port.to_string())
                    .status_code(RedirectActionStatusCodeEnum::Http301)
                    .build(),
            )
            .build(),
    }
}

fn conditions_to_aws(c: &Conditions) -> Vec<RuleCondition> {
    let mut out = Vec::new();
    if let Some(h) = &c.host {
        out.push(
            RuleCondition::builder()
                .field("host-header")
                .host_header_config(HostHeaderConditionConfig::builder().values(h).build())
                .build(),
        );
    }
    if !c.paths.is_empty() {
        out.push(
            RuleCondition::builder()
                .field("path-pattern")
                .path_pattern_config(PathPatternConditionConfig::builder().set_values(Some(c.paths.clone())).build())
                .build(),
        );
    }
    if let Some(m) = &c.method {
        out.push(
            RuleCondition::builder()
                .field("http-request-method")
                .http_request_method_config(HttpRequestMethodConditionConfig::builder().values(m).build())
                .build(),
        );
    }
    for (name, value) in &c.headers {
        out.push(
            RuleCondition::builder()
                .field("http-header")
                .http_header_config(HttpHeaderConditionConfig::builder().http_header_name(name).values(value).build())
                .build(),
        );
    }
    if !c.query.is_empty() {
        out.push(
            RuleCondition::builder()
                .field("query-string")
                .query_string_config(
                    QueryStringConditionConfig::builder()
                        .set_values(Some(
                            c.query
                                .iter()
                                .map(|(k, v)| QueryStringKeyValuePair::builder().key(k).value(v).build())
                                .collect(),
                        ))
                        .build(),
                )
                .build(),
        );
    }
    out
}

/// Converge the rules of one listener to `desired` (conditions, action with target group ARNs).
/// Returns the target groups our rules forwarded to before (candidates for clean-up).
pub async fn converge(
    api: &Api<'_>,
    id: &LoadBalancerId,
    listener_arn: &str,
    desired: &[(Conditions, AlbAction)],
    rule_tags: &BTreeMap<String, String>,
) -> Result<BTreeSet<String>, ProviderError> {
    let current = list(api, id, listener_arn).await?;
    let changes =
        diff(desired, &current).map_err(|message| ProviderError::Invalid { call: "elbv2:DescribeRules", message })?;
    apply(api, listener_arn, desired, &changes, rule_tags).await?;
    Ok(current.iter().filter(|c| c.ours).flat_map(|c| forwarded(&c.action)).collect())
}

/// The target groups an action forwards to.
pub fn forwarded(a: &AlbAction) -> Vec<String> {
    match a {
        AlbAction::Forward(list) => list.iter().map(|(tg, _)| tg.clone()).collect(),
        _ => Vec::new(),
    }
}

async fn apply(
    api: &Api<'_>,
    listener_arn: &str,
    desired: &[(Conditions, AlbAction)],
    changes: &Changes,
    rule_tags: &BTreeMap<String, String>,
) -> Result<(), ProviderError> {
    if !changes.moves.is_empty() {
        const CALL: &str = "elbv2:SetRulePriorities";
        let send = api.mutate(CALL).await;
        let pairs: Vec<RulePriorityPair> = changes
            .moves
            .iter()
            .map(|(arn, p)| RulePriorityPair::builder().rule_arn(arn).priority(*p as i32).build())
            .collect();
        if send {
            api.elb
                .set_rule_priorities()
                .set_rule_priorities(Some(pairs))
                .send()
                .await
                .map_err(|e| errors::map(CALL, e))?;
        }
    }
    for (arn, i) in &changes.modify {
        const CALL: &str = "elbv2:ModifyRule";
        if !api.mutate(CALL).await {
            continue;
        }
        api.elb
            .modify_rule()
            .rule_arn(arn)
            .actions(action_to_aws(&desired[*i].1))
            .send()
            .await
            .map_err(|e| errors::map(CALL, e))?;
    }
    for (i, priority) in &changes.create {
        const CALL: &str = "elbv2:CreateRule";
        if !api.mutate(CALL).await {
            continue;
        }
        let (cond, action) = &desired[*i];
        api.elb
            .create_rule()
            .listener_arn(listener_arn)
            .priority(*priority as i32)
            .set_conditions(Some(conditions_to_aws(cond)))
            .actions(action_to_aws(action))
            .set_tags(Some(tags::to_elb(rule_tags)))
            .send()
            .await
            .map_err(|e| errors::map(CALL, e))?;
    }
    for arn in &changes.delete {
        delete(api, arn).await?;
    }
    Ok(())
}

pub async fn delete(api: &Api<'_>, arn: &str) -> Result<(), ProviderError> {
    const CALL: &str = "elbv2:DeleteRule";
    if !api.mutate(CALL).await {
        return Ok(());
    }
    match api.elb.delete_rule().rule_arn(arn).send().await {
        Ok(_) => Ok(()),
        Err(e) if errors::is(&e, &["RuleNotFound", "ListenerNotFound"]) => Ok(()),
        Err(e) => Err(errors::map(CALL, e)),
    }
}

#[cfg(test)]
mod tests;
