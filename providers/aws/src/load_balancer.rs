//! The Network Load Balancer itself: look-up, creation, the few things that can change in
//! place (security groups, IP address type, attributes, tags) and deletion.
//!
//! CreateLoadBalancer is not idempotent on every backend (moto creates a second load balancer
//! with the same name), so it is only ever called after a look-up by name found nothing. What
//! cannot change in place (type, scheme, VPC, annotated subnets) is refused with a message that
//! says how to proceed; the provider never tears a working load balancer down on its own.

use std::collections::BTreeMap;

use aws_sdk_elasticloadbalancingv2::types::{
    LoadBalancerAttribute, LoadBalancerSchemeEnum, LoadBalancerStateEnum, LoadBalancerTypeEnum, SubnetMapping,
};
use cloudlb_provider::{ProviderError, Scheme};

use crate::clients::Api;
use crate::errors;
use crate::options::IpAddressType;

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum State {
    Active,
    Provisioning,
    /// With AWS's reason, when it gives one.
    Failed(String),
    Other(String),
}

#[derive(Clone, Debug)]
pub struct Lb {
    pub arn: String,
    pub name: String,
    pub dns_name: String,
    pub scheme: Option<Scheme>,
    pub lb_type: String,
    pub vpc_id: String,
    pub state: State,
    pub subnets: Vec<String>,
    pub security_groups: Vec<String>,
    /// `ipv4`, `dualstack`, ... as AWS reports it (`None`: the backend did not say).
    pub ip_address_type: Option<String>,
}

fn from_aws(lb: &aws_sdk_elasticloadbalancingv2::types::LoadBalancer) -> Option<Lb> {
    let state = match lb.state().and_then(|s| s.code()) {
        Some(LoadBalancerStateEnum::Active) | Some(LoadBalancerStateEnum::ActiveImpaired) => State::Active,
        Some(LoadBalancerStateEnum::Provisioning) => State::Provisioning,
        Some(LoadBalancerStateEnum::Failed) => {
            State::Failed(lb.state().and_then(|s| s.reason()).unwrap_or_default().to_string())
        }
        Some(other) => State::Other(other.as_str().to_string()),
        None => State::Other("unknown".into()),
    };
    let mut subnets: Vec<String> =
        lb.availability_zones().iter().filter_map(|z| z.subnet_id().map(String::from)).collect();
    subnets.sort();
    Some(Lb {
        arn: lb.load_balancer_arn()?.to_string(),
        name: lb.load_balancer_name().unwrap_or_default().to_string(),
        dns_name: lb.dns_name().unwrap_or_default().to_string(),
        scheme: match lb.scheme() {
            Some(LoadBalancerSchemeEnum::Internal) => Some(Scheme::Internal),
            Some(LoadBalancerSchemeEnum::InternetFacing) => Some(Scheme::InternetFacing),
            _ => None,
        },
        lb_type: lb.r#type().map(|t| t.as_str().to_string()).unwrap_or_default(),
        vpc_id: lb.vpc_id().unwrap_or_default().to_string(),
        state,
        subnets,
        security_groups: lb.security_groups().to_vec(),
        ip_address_type: lb.ip_address_type().map(|t| t.as_str().to_string()),
    })
}

pub fn scheme_str(s: Scheme) -> &'static str {
    match s {
        Scheme::Internal => "internal",
        Scheme::InternetFacing => "internet-facing",
    }
}

async fn describe(api: &Api<'_>, name: Option<&str>, arn: Option<&str>) -> Result<Option<Lb>, ProviderError> {
    const CALL: &str = "elbv2:DescribeLoadBalancers";
    api.permit(CALL).await;
    let mut req = api.elb.describe_load_balancers();
    if let Some(n) = name {
        req = req.names(n);
    }
    if let Some(a) = arn {
        req = req.load_balancer_arns(a);
    }
    match req.send().await {
        Ok(r) => {
            let found: Vec<Lb> = r.load_balancers().iter().filter_map(from_aws).collect();
            // Match exactly (never trust a backend to filter for us).
            Ok(found.into_iter().find(|lb| name.is_none_or(|n| lb.name == n) && arn.is_none_or(|a| lb.arn == a)))
        }
        Err(e) if errors::is(&e, &["LoadBalancerNotFound"]) => Ok(None),
        Err(e) => Err(errors::map(CALL, e)),
    }
}

/// Every load balancer of the region (one DescribeLoadBalancers per 400).
pub async fn list_all(api: &Api<'_>) -> Result<Vec<Lb>, ProviderError> {
    const CALL: &str = "elbv2:DescribeLoadBalancers";
    crate::clients::all_pages(api, CALL, |marker| async move {
        let r = api
            .elb
            .describe_load_balancers()
            .set_marker(marker)
            .page_size(400)
            .send()
            .await
            .map_err(|e| errors::map(CALL, e))?;
        Ok((r.load_balancers().iter().filter_map(from_aws).collect(), r.next_marker().map(String::from)))
    })
    .await
}

pub async fn find_by_name(api: &Api<'_>, name: &str) -> Result<Option<Lb>, ProviderError> {
    describe(api, Some(name), None).await
}

pub async fn find_by_arn(api: &Api<'_>, arn: &str) -> Result<Option<Lb>, ProviderError> {
    describe(api, None, Some(arn)).await
}

/// Why `lb` (of `lb_type`, made for an object of `kind`) cannot implement the plan in place, if
/// it cannot.
pub fn immutable_problems(
    lb: &Lb,
    lb_type: LoadBalancerTypeEnum,
    kind: &str,
    scheme: Scheme,
    vpc_id: &str,
    annotated_subnets: Option<&[String]>,
) -> Vec<String> {
    let how = format!(
        "AWS cannot change this on an existing load balancer; to proceed, revert the change, or delete and \
         re-create the {kind} (its DNS name will change)"
    );
    let mut problems = Vec::new();
    if lb.lb_type != lb_type.as_str() {
        problems.push(format!(
            "load balancer {} is of type {:?}, not {}; {how}",
            lb.name,
            lb.lb_type,
            lb_type.as_str()
        ));
    }
    if let Some(current) = lb.scheme
        && current != scheme
    {
        problems.push(format!(
            "load balancer {} is {} but the {kind} now asks for {} (annotations internal / scheme); {how}",
            lb.name,
            scheme_str(current),
            scheme_str(scheme),
        ));
    }
    if !lb.vpc_id.is_empty() && lb.vpc_id != vpc_id {
        problems.push(format!(
            "load balancer {} is in VPC {} but cloudlb is configured for VPC {vpc_id}; {how}",
            lb.name, lb.vpc_id
        ));
    }
    if let Some(want) = annotated_subnets {
        let mut want = want.to_vec();
        want.sort();
        if want != lb.subnets {
            problems.push(format!(
                "load balancer {} is in subnets {} but annotation subnets asks for {}; {how}",
                lb.name,
                lb.subnets.join(","),
                want.join(",")
            ));
        }
    }
    problems
}

pub struct CreateRequest<'a> {
    pub lb_type: LoadBalancerTypeEnum,
    pub name: &'a str,
    pub scheme: Scheme,
    pub subnets: &'a [String],
    pub eip_allocations: Option<&'a [String]>,
    /// Its own group first, then the cluster's backend group (when managed).
    pub security_groups: &'a [String],
    pub tags: &'a BTreeMap<String, String>,
    pub ip_address_type: IpAddressType,
}

pub async fn create(api: &Api<'_>, req: CreateRequest<'_>) -> Result<Lb, ProviderError> {
    const CALL: &str = "elbv2:CreateLoadBalancer";
    let mut b = api
        .elb
        .create_load_balancer()
        .name(req.name)
        .r#type(req.lb_type.clone())
        .scheme(match req.scheme {
            Scheme::Internal => LoadBalancerSchemeEnum::Internal,
            Scheme::InternetFacing => LoadBalancerSchemeEnum::InternetFacing,
        })
        .ip_address_type(req.ip_address_type.to_aws())
        .set_security_groups(Some(req.security_groups.to_vec()))
        .set_tags(Some(crate::tags::to_elb(req.tags)));
    match req.eip_allocations {
        Some(eips) => {
            if eips.len() != req.subnets.len() {
                return Err(ProviderError::Invalid {
                    call: CALL,
                    message: format!(
                        "annotation {}eip-allocations lists {} allocations but the load balancer gets {} subnets ({}); give one per subnet",
                        crate::OPTION_PREFIXES[0],
                        eips.len(),
                        req.subnets.len(),
                        req.subnets.join(",")
                    ),
                });
            }
            for (subnet, eip) in req.subnets.iter().zip(eips) {
                b = b.subnet_mappings(SubnetMapping::builder().subnet_id(subnet).allocation_id(eip).build());
            }
        }
        None => b = b.set_subnets(Some(req.subnets.to_vec())),
    }
    if !api.mutate(CALL).await {
        return Ok(Lb {
            arn: crate::planned::arn("loadbalancer", req.name),
            name: req.name.to_string(),
            dns_name: String::new(),
            scheme: Some(req.scheme),
            lb_type: req.lb_type.as_str().to_string(),
            vpc_id: api.config.vpc_id.clone(),
            state: State::Active,
            subnets: req.subnets.to_vec(),
            security_groups: req.security_groups.to_vec(),
            ip_address_type: Some(req.ip_address_type.as_str().to_string()),
        });
    }
    let resp = b.send().await.map_err(|e| dualstack_hint(errors::map(CALL, e), req.ip_address_type))?;
    resp.load_balancers().iter().filter_map(from_aws).next().ok_or_else(|| ProviderError::Retryable {
        call: CALL,
        message: "the response contained no load balancer".into(),
    })
}

pub async fn set_security_groups(api: &Api<'_>, arn: &str, groups: &[String]) -> Result<(), ProviderError> {
    const CALL: &str = "elbv2:SetSecurityGroups";
    if !api.mutate(CALL).await {
        return Ok(());
    }
    api.elb
        .set_security_groups()
        .load_balancer_arn(arn)
        .set_security_groups(Some(groups.to_vec()))
        .send()
        .await
        .map_err(|e| errors::map(CALL, e))?;
    Ok(())
}

/// AWS refuses `dualstack` unless every subnet of the load balancer has an IPv6 CIDR block: say
/// so next to AWS's own message.
fn dualstack_hint(e: ProviderError, t: IpAddressType) -> ProviderError {
    match e {
        ProviderError::Invalid { call, message } if t == IpAddressType::Dualstack => ProviderError::Invalid {
            call,
            message: format!(
                "{message} (annotation ip-address-type is \"dualstack\": every subnet of the load balancer needs \
                 an IPv6 CIDR block; add them, or remove the annotation)"
            ),
        },
        other => other,
    }
}

/// Change the IP address type of `lb` when it is not `want` (no call when it is, or when the
/// backend did not report it).
pub async fn converge_ip_address_type(api: &Api<'_>, lb: &Lb, want: IpAddressType) -> Result<(), ProviderError> {
    const CALL: &str = "elbv2:SetIpAddressType";
    if lb.ip_address_type.as_deref().is_none_or(|current| current == want.as_str()) || !api.mutate(CALL).await {
        return Ok(());
    }
    api.elb
        .set_ip_address_type()
        .load_balancer_arn(&lb.arn)
        .ip_address_type(want.to_aws())
        .send()
        .await
        .map_err(|e| dualstack_hint(errors::map(CALL, e), want))?;
    Ok(())
}

/// Set the attributes of `desired` that differ; attributes not mentioned are left alone.
pub async fn converge_attributes(
    api: &Api<'_>,
    arn: &str,
    desired: &BTreeMap<String, String>,
) -> Result<(), ProviderError> {
    if desired.is_empty() {
        return Ok(());
    }
    const DESCRIBE: &str = "elbv2:DescribeLoadBalancerAttributes";
    let current: BTreeMap<String, String> = if crate::planned::is(arn) {
        BTreeMap::new()
    } else {
        api.permit(DESCRIBE).await;
        api.elb
            .describe_load_balancer_attributes()
            .load_balancer_arn(arn)
            .send()
            .await
            .map_err(|e| errors::map(DESCRIBE, e))?
            .attributes()
            .iter()
            .filter_map(|a| Some((a.key()?.to_string(), a.value().unwrap_or_default().to_string())))
            .collect()
    };
    let changes: Vec<LoadBalancerAttribute> = desired
        .iter()
        .filter(|(k, v)| current.get(*k) != Some(*v))
        .map(|(k, v)| LoadBalancerAttribute::builder().key(k).value(v).build())
        .collect();
    if changes.is_empty() {
        return Ok(());
    }
    const CALL: &str = "elbv2:ModifyLoadBalancerAttributes";
    if !api.mutate(CALL).await {
        return Ok(());
    }
    api.elb
        .modify_load_balancer_attributes()
        .load_balancer_arn(arn)
        .set_attributes(Some(changes))
        .send()
        .await
        .map_err(|e| errors::map(CALL, e))?;
    Ok(())
}

/// Delete; a load balancer that is already gone is success.
pub async fn delete(api: &Api<'_>, arn: &str) -> Result<(), ProviderError> {
    const CALL: &str = "elbv2:DeleteLoadBalancer";
    if !api.mutate(CALL).await {
        return Ok(());
    }
    match api.elb.delete_load_balancer().load_balancer_arn(arn).send().await {
        Ok(_) => Ok(()),
        Err(e) if errors::is(&e, &["LoadBalancerNotFound"]) => Ok(()),
        Err(e) => Err(errors::map(CALL, e)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lb() -> Lb {
        Lb {
            arn: "arn".into(),
            name: "k8s-a-b-123".into(),
            dns_name: "x".into(),
            scheme: Some(Scheme::InternetFacing),
            lb_type: "network".into(),
            vpc_id: "vpc-1".into(),
            state: State::Active,
            subnets: vec!["subnet-1".into(), "subnet-2".into()],
            security_groups: vec![],
            ip_address_type: Some("ipv4".into()),
        }
    }

    #[test]
    fn scheme_change_is_refused_with_a_way_forward() {
        let p = immutable_problems(&lb(), LoadBalancerTypeEnum::Network, "Service", Scheme::Internal, "vpc-1", None);
        assert_eq!(p.len(), 1);
        assert!(p[0].contains("internet-facing") && p[0].contains("internal"), "{}", p[0]);
        assert!(p[0].contains("delete and re-create the Service"), "{}", p[0]);
        assert!(
            immutable_problems(&lb(), LoadBalancerTypeEnum::Network, "Service", Scheme::InternetFacing, "vpc-1", None)
                .is_empty()
        );
        let subnets = vec!["subnet-2".to_string(), "subnet-1".to_string()];
        assert!(
            immutable_problems(
                &lb(),
                LoadBalancerTypeEnum::Network,
                "Service",
                Scheme::InternetFacing,
                "vpc-1",
                Some(&subnets)
            )
            .is_empty()
        );
        assert_eq!(
            immutable_problems(
                &lb(),
                LoadBalancerTypeEnum::Network,
                "Service",
                Scheme::InternetFacing,
                "vpc-2",
                Some(&subnets[..1])
            )
            .len(),
            2
        );
    }
}
