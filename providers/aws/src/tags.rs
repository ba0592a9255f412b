//! Ownership tags: the only thing that makes a resource ours.
//!
//! A resource found by its deterministic name is used (or deleted) only when it carries
//! `cloudlb.io/cluster=<cluster>` and `cloudlb.io/owner-uid=<uid>`; otherwise it is a
//! [`ProviderError::Conflict`] and left alone. IAM leans on them too: `deploy/aws/iam-policy.json`
//! allows changes only to resources whose `cloudlb.io/cluster` is the cluster's, and denies
//! changing [`CLUSTER`], [`OWNER_UID`] and [`RESOURCE`] after create, so these are never re-tagged
//! on an existing resource (`missing` only adds tags whose value differs, and ours never do).
//! The other tags are for humans, cost reports and the tools people already use
//! (`kubernetes.io/cluster/<name>`, `service.k8s.aws/stack`).
//!
//! We deliberately do not set `elbv2.k8s.aws/cluster`: the AWS Load Balancer Controller garbage
//! collects resources carrying it, and both controllers may run in one cluster.

use std::collections::BTreeMap;

use cloudlb_provider::{LoadBalancerId, ProviderError};

pub const CLUSTER: &str = "cloudlb.io/cluster";
pub const OWNER_UID: &str = "cloudlb.io/owner-uid";
pub const RESOURCE: &str = "cloudlb.io/resource";
pub const SPEC_HASH: &str = "cloudlb.io/spec-hash";
pub const STACK: &str = "service.k8s.aws/stack";
pub const SERVICE_NAME: &str = "kubernetes.io/service-name";

/// Values of [`RESOURCE`].
pub const ROLE_LOAD_BALANCER: &str = "load-balancer";
pub const ROLE_TARGET_GROUP: &str = "target-group";
pub const ROLE_LISTENER: &str = "listener";
pub const ROLE_SECURITY_GROUP: &str = "security-group";
/// The ALB path's roles: an Ingress's resources are never taken for a Service's (and back),
/// even when handed the other kind's record.
pub const ROLE_ALB: &str = "alb";
pub const ROLE_ALB_TARGET_GROUP: &str = "alb-target-group";
pub const ROLE_ALB_LISTENER: &str = "alb-listener";
pub const ROLE_ALB_RULE: &str = "alb-listener-rule";
pub const ROLE_ALB_SECURITY_GROUP: &str = "alb-security-group";
pub const ROLE_CERTIFICATE: &str = "certificate";
/// The cluster's backend security group (`node_security.rs`): tagged with the cluster and this
/// role but no owner uid, since it belongs to all the cluster's load balancers (so `cloudlb gc`,
/// which lists load balancers by owner uid, never takes it for one).
pub const ROLE_BACKEND_SECURITY_GROUP: &str = "backend-security-group";

/// Whether `tags` carry the role `role`.
pub fn has_role(tags: &BTreeMap<String, String>, role: &str) -> bool {
    tags.get(RESOURCE).map(String::as_str) == Some(role)
}

/// Tag keys the provider manages; `additional-resource-tags` may not use them.
pub fn is_reserved(key: &str) -> bool {
    key.starts_with("cloudlb.io/")
        || key.starts_with("kubernetes.io/cluster/")
        || key.starts_with("aws:")
        || key == STACK
        || key == SERVICE_NAME
}

pub fn cluster_key(cluster: &str) -> String {
    format!("kubernetes.io/cluster/{cluster}")
}

/// Every tag a resource of `role` gets (ownership first, then `additional`, which never
/// overrides ours).
pub fn desired(id: &LoadBalancerId, role: &str, additional: &BTreeMap<String, String>) -> BTreeMap<String, String> {
    let mut tags: BTreeMap<String, String> =
        additional.iter().filter(|(k, _)| !is_reserved(k)).map(|(k, v)| (k.clone(), v.clone())).collect();
    tags.insert(CLUSTER.into(), id.cluster.clone());
    tags.insert(OWNER_UID.into(), id.uid.clone());
    tags.insert(RESOURCE.into(), role.into());
    tags.insert(STACK.into(), id.owner());
    tags.insert(SERVICE_NAME.into(), id.owner());
    tags.insert(cluster_key(&id.cluster), "owned".into());
    tags
}

/// Every tag the cluster's backend security group gets.
pub fn backend_desired(cluster: &str) -> BTreeMap<String, String> {
    BTreeMap::from([
        (CLUSTER.to_string(), cluster.to_string()),
        (RESOURCE.to_string(), ROLE_BACKEND_SECURITY_GROUP.to_string()),
        (cluster_key(cluster), "owned".to_string()),
    ])
}

/// Whether `tags` say the group is `cluster`'s backend security group.
pub fn is_backend(cluster: &str, tags: &BTreeMap<String, String>) -> bool {
    tags.get(CLUSTER).map(String::as_str) == Some(cluster) && has_role(tags, ROLE_BACKEND_SECURITY_GROUP)
}

/// Whether `tags` say the resource belongs to `id`.
pub fn is_owned(id: &LoadBalancerId, tags: &BTreeMap<String, String>) -> bool {
    tags.get(CLUSTER) == Some(&id.cluster) && tags.get(OWNER_UID) == Some(&id.uid)
}

/// `Ok` when owned, else the conflict error naming the resource and what its tags say.
pub fn check_owned(
    call: &'static str,
    id: &LoadBalancerId,
    resource: &str,
    tags: &BTreeMap<String, String>,
) -> Result<(), ProviderError> {
    if is_owned(id, tags) {
        return Ok(());
    }
    let message = match (tags.get(CLUSTER), tags.get(OWNER_UID)) {
        (None, _) | (_, None) => format!(
            "it has no {CLUSTER}/{OWNER_UID} tags, so it was not made by cloudlb for {id}; rename or delete it, \
             cloudlb never adopts resources"
        ),
        (Some(c), Some(u)) => {
            format!("it is tagged for cluster {c:?} and owner uid {u:?}, not for cluster {:?} / {id}", id.cluster)
        }
    };
    Err(ProviderError::Conflict { call, resource: resource.to_string(), message })
}

/// The tags of `desired` whose value differs in (or is missing from) `current`.
pub fn missing(desired: &BTreeMap<String, String>, current: &BTreeMap<String, String>) -> BTreeMap<String, String> {
    desired.iter().filter(|(k, v)| current.get(*k) != Some(*v)).map(|(k, v)| (k.clone(), v.clone())).collect()
}

// ---- reading and writing ELBv2 tags -------------------------------------------------------

use aws_sdk_elasticloadbalancingv2::types::Tag as ElbTag;

use crate::clients::Api;
use crate::errors;

/// ELBv2 tags of `arns` (DescribeTags takes at most 20 ARNs per call). A resource that no longer
/// exists is simply absent from the result.
pub async fn describe_elb(
    api: &Api<'_>,
    arns: &[String],
) -> Result<BTreeMap<String, BTreeMap<String, String>>, ProviderError> {
    const CALL: &str = "elbv2:DescribeTags";
    let mut out = BTreeMap::new();
    // A planned resource (a dry run) has no tags yet.
    let arns: Vec<String> = arns.iter().filter(|a| !crate::planned::is(a)).cloned().collect();
    for chunk in arns.chunks(20) {
        api.permit(CALL).await;
        let res = api.elb.describe_tags().set_resource_arns(Some(chunk.to_vec())).send().await;
        let resp = match res {
            Ok(r) => r,
            Err(e) if errors::is(&e, &["LoadBalancerNotFound", "TargetGroupNotFound", "ListenerNotFound"]) => {
                // One missing ARN fails the whole call: ask one by one.
                if chunk.len() > 1 {
                    for arn in chunk {
                        out.extend(Box::pin(describe_elb(api, std::slice::from_ref(arn))).await?);
                    }
                }
                continue;
            }
            Err(e) => return Err(errors::map(CALL, e)),
        };
        for d in resp.tag_descriptions() {
            let Some(arn) = d.resource_arn() else { continue };
            let tags = d
                .tags()
                .iter()
                .filter_map(|t| Some((t.key()?.to_string(), t.value().unwrap_or_default().to_string())))
                .collect();
            out.insert(arn.to_string(), tags);
        }
    }
    Ok(out)
}

pub fn to_elb(tags: &BTreeMap<String, String>) -> Vec<ElbTag> {
    tags.iter().map(|(k, v)| ElbTag::builder().key(k).value(v).build()).collect()
}

/// Add (or overwrite) `tags` on an ELBv2 resource; no call when `tags` is empty.
pub async fn add_elb(api: &Api<'_>, arn: &str, tags: &BTreeMap<String, String>) -> Result<(), ProviderError> {
    const CALL: &str = "elbv2:AddTags";
    if tags.is_empty() || !api.mutate(CALL).await {
        return Ok(());
    }
    api.elb
        .add_tags()
        .resource_arns(arn)
        .set_tags(Some(to_elb(tags)))
        .send()
        .await
        .map_err(|e| errors::map(CALL, e))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ownership_needs_cluster_and_uid() {
        let id = LoadBalancerId::new("prod", "ns", "web", "u1");
        let tags = desired(&id, ROLE_LOAD_BALANCER, &BTreeMap::new());
        assert!(is_owned(&id, &tags));
        assert!(check_owned("x", &id, "r", &tags).is_ok());
        let other = LoadBalancerId::new("prod", "ns", "web", "u2");
        assert!(!is_owned(&other, &tags));
        let err = check_owned("elbv2:DescribeTags", &other, "lb", &tags).unwrap_err();
        assert!(err.to_string().contains("u1"), "{err}");
        assert!(check_owned("x", &id, "r", &BTreeMap::new()).is_err());
    }

    #[test]
    fn additional_tags_never_override_ownership() {
        let id = LoadBalancerId::new("prod", "ns", "web", "u1");
        let extra = BTreeMap::from([("team".to_string(), "a".to_string()), (CLUSTER.to_string(), "evil".to_string())]);
        let tags = desired(&id, ROLE_TARGET_GROUP, &extra);
        assert_eq!(tags.get("team").map(String::as_str), Some("a"));
        assert_eq!(tags.get(CLUSTER).map(String::as_str), Some("prod"));
        assert_eq!(tags.get("kubernetes.io/cluster/prod").map(String::as_str), Some("owned"));
    }
}
