//! Which subnets a new load balancer goes into.
//!
//! In order: the `subnets` annotation, `AwsConfig::subnets`, else discovery the way the AWS
//! controllers do it: subnets of the VPC tagged `kubernetes.io/role/elb` (internet-facing) or
//! `kubernetes.io/role/internal-elb` (internal) **and** `kubernetes.io/cluster/<cluster>` =
//! `owned` | `shared`; one per availability zone, the lowest subnet id winning ties (so the
//! choice is stable across calls). Finding none is a spec problem (`Invalid`) whose message
//! names the tags to add, not a retryable failure.

use std::collections::BTreeMap;

use aws_sdk_ec2::types::Filter;
use cloudlb_provider::{ProviderError, Scheme};

use crate::clients::Api;
use crate::errors;
use crate::tags::cluster_key;

pub const ROLE_PUBLIC: &str = "kubernetes.io/role/elb";
pub const ROLE_INTERNAL: &str = "kubernetes.io/role/internal-elb";

pub fn role_tag(scheme: Scheme) -> &'static str {
    match scheme {
        Scheme::InternetFacing => ROLE_PUBLIC,
        Scheme::Internal => ROLE_INTERNAL,
    }
}

/// One subnet per zone, lowest id first within a zone; result sorted by zone.
pub fn pick_per_zone(candidates: &[(String, String)]) -> Vec<String> {
    let mut by_zone: BTreeMap<&str, &str> = BTreeMap::new();
    for (subnet, zone) in candidates {
        by_zone
            .entry(zone.as_str())
            .and_modify(|cur| {
                if subnet.as_str() < *cur {
                    *cur = subnet.as_str();
                }
            })
            .or_insert(subnet.as_str());
    }
    by_zone.into_values().map(String::from).collect()
}

pub fn none_found_message(vpc: &str, cluster: &str, scheme: Scheme) -> String {
    let kind = match scheme {
        Scheme::InternetFacing => "an internet-facing",
        Scheme::Internal => "an internal",
    };
    format!(
        "no subnet found for {kind} load balancer in VPC {vpc}: tag at least one subnet per availability zone with \
         {role}=1 and {cluster_tag}=owned (or shared), or list subnets with the \
         service.beta.kubernetes.io/aws-load-balancer-subnets annotation or the provider's subnets setting",
        role = role_tag(scheme),
        cluster_tag = cluster_key(cluster),
    )
}

/// The subnets for a new load balancer of `scheme`.
pub async fn resolve(
    api: &Api<'_>,
    annotated: Option<&[String]>,
    cluster: &str,
    scheme: Scheme,
) -> Result<Vec<String>, ProviderError> {
    if let Some(s) = annotated {
        return Ok(s.to_vec());
    }
    if let Some(s) = &api.config.subnets
        && !s.is_empty()
    {
        return Ok(s.clone());
    }
    discover(api, cluster, scheme).await
}

pub async fn discover(api: &Api<'_>, cluster: &str, scheme: Scheme) -> Result<Vec<String>, ProviderError> {
    const CALL: &str = "ec2:DescribeSubnets";
    let mut candidates = Vec::new();
    let mut token: Option<String> = None;
    loop {
        api.permit(CALL).await;
        let resp = api
            .ec2
            .describe_subnets()
            .filters(Filter::builder().name("vpc-id").values(&api.config.vpc_id).build())
            .filters(Filter::builder().name("tag-key").values(role_tag(scheme)).build())
            .filters(
                Filter::builder()
                    .name(format!("tag:{}", cluster_key(cluster)))
                    .values("owned")
                    .values("shared")
                    .build(),
            )
            .set_next_token(token.clone())
            .send()
            .await
            .map_err(|e| errors::map(CALL, e))?;
        for s in resp.subnets() {
            // Re-check the tags: the filter is the server's business, correctness is ours.
            let tag = |k: &str| s.tags().iter().find(|t| t.key() == Some(k)).and_then(|t| t.value());
            let role_ok = tag(role_tag(scheme)).is_some_and(|v| v.is_empty() || v == "1" || v == "true");
            let cluster_ok = matches!(tag(&cluster_key(cluster)), Some("owned") | Some("shared"));
            if let (true, true, Some(id), Some(zone)) = (role_ok, cluster_ok, s.subnet_id(), s.availability_zone()) {
                candidates.push((id.to_string(), zone.to_string()));
            }
        }
        token = resp.next_token().map(String::from);
        if token.is_none() {
            break;
        }
    }
    let picked = pick_per_zone(&candidates);
    if picked.is_empty() {
        return Err(ProviderError::Invalid {
            call: CALL,
            message: none_found_message(&api.config.vpc_id, cluster, scheme),
        });
    }
    Ok(picked)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_per_zone_lowest_id_wins() {
        let c = |s: &str, z: &str| (s.to_string(), z.to_string());
        let picked =
            pick_per_zone(&[c("subnet-b", "us-east-1a"), c("subnet-a", "us-east-1a"), c("subnet-c", "us-east-1b")]);
        assert_eq!(picked, vec!["subnet-a".to_string(), "subnet-c".to_string()]);
        assert!(pick_per_zone(&[]).is_empty());
    }

    #[test]
    fn missing_message_names_the_tags() {
        let m = none_found_message("vpc-1", "prod", Scheme::Internal);
        assert!(m.contains("kubernetes.io/role/internal-elb"), "{m}");
        assert!(m.contains("kubernetes.io/cluster/prod"), "{m}");
        assert!(m.contains("vpc-1"), "{m}");
    }
}
