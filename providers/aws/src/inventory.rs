//! Every load balancer of a cluster in the account, found by ownership tags through the tagging
//! API whatever the records say (`Provider::list_owned`, what `cloudlb gc` compares with the
//! cluster's objects): load balancers, target groups, security groups and imported certificates,
//! one entry per owner uid. Creation times come from `DescribeLoadBalancers` (20 per call); a
//! group of leftovers without a load balancer has none.
//!
//! The tagging API is eventually consistent: a resource tagged a moment ago may be missing from
//! a sweep; the next sweep finds it.

use std::collections::BTreeMap;
use std::time::SystemTime;

use cloudlb_provider::{LoadBalancerId, OwnedLoadBalancer, ProviderError};

use crate::clients::Api;
use crate::{errors, tagged, tags};

/// The part of an ELBv2 ARN naming the resource kind: `loadbalancer/app/…`, `targetgroup/…`.
fn kind_of(arn: &str) -> String {
    let resource = arn.splitn(6, ':').nth(5).unwrap_or(arn);
    match resource.split('/').collect::<Vec<_>>().as_slice() {
        ["loadbalancer", t, name, ..] => format!("loadbalancer/{t} {name}"),
        ["targetgroup", name, ..] => format!("targetgroup {name}"),
        ["security-group", id] => format!("security-group {id}"),
        ["certificate", id] => format!("certificate {id}"),
        _ => resource.to_string(),
    }
}

const L7_ROLES: &[&str] = &[
    tags::ROLE_ALB,
    tags::ROLE_ALB_TARGET_GROUP,
    tags::ROLE_ALB_LISTENER,
    tags::ROLE_ALB_RULE,
    tags::ROLE_ALB_SECURITY_GROUP,
    tags::ROLE_CERTIFICATE,
];

pub async fn list_owned(api: &Api<'_>, cluster: &str) -> Result<Vec<OwnedLoadBalancer>, ProviderError> {
    let found = tagged::of_cluster(api, cluster, tagged::LOAD_BALANCER_TYPES).await?;
    let lbs: Vec<String> = found.keys().filter(|a| a.contains(":loadbalancer/")).cloned().collect();
    let created = created_times(api, &lbs).await?;
    let mut by_uid: BTreeMap<String, OwnedLoadBalancer> = BTreeMap::new();
    for (arn, t) in found {
        let Some(uid) = t.get(tags::OWNER_UID) else { continue };
        let owner = t.get(tags::STACK).cloned().unwrap_or_default();
        let (namespace, name) = owner.split_once('/').unwrap_or(("", owner.as_str()));
        let entry = by_uid.entry(uid.clone()).or_insert_with(|| OwnedLoadBalancer {
            id: LoadBalancerId::new(cluster, namespace, name, uid.clone()),
            l7: false,
            created: None,
            resources: Vec::new(),
        });
        entry.l7 |= t.get(tags::RESOURCE).is_some_and(|r| L7_ROLES.contains(&r.as_str()));
        if let Some(c) = created.get(&arn) {
            entry.created = Some(entry.created.map_or(*c, |e| e.min(*c)));
        }
        entry.resources.push(kind_of(&arn));
    }
    Ok(by_uid.into_values().collect())
}

async fn created_times(api: &Api<'_>, arns: &[String]) -> Result<BTreeMap<String, SystemTime>, ProviderError> {
    const CALL: &str = "elbv2:DescribeLoadBalancers";
    let mut out = BTreeMap::new();
    for chunk in arns.chunks(20) {
        api.permit(CALL).await;
        let r = match api.elb.describe_load_balancers().set_load_balancer_arns(Some(chunk.to_vec())).send().await {
            Ok(r) => r,
            // One of them went away since the tagging API listed it: no times this round.
            Err(e) if errors::is(&e, &["LoadBalancerNotFound"]) => continue,
            Err(e) => return Err(errors::map(CALL, e)),
        };
        for lb in r.load_balancers() {
            if let (Some(arn), Some(t)) = (lb.load_balancer_arn(), lb.created_time())
                && let Ok(t) = SystemTime::try_from(*t)
            {
                out.insert(arn.to_string(), t);
            }
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    #[test]
    fn arns_read_as_kind_and_name() {
        let lb = "arn:aws:elasticloadbalancing:us-east-1:123:loadbalancer/net/k8s-ns-web-abc/50dc6c495c0c9188";
        assert_eq!(super::kind_of(lb), "loadbalancer/net k8s-ns-web-abc");
        let tg = "arn:aws:elasticloadbalancing:us-east-1:123:targetgroup/k8s-web-80/73e2d6bc24d8a067";
        assert_eq!(super::kind_of(tg), "targetgroup k8s-web-80");
        assert_eq!(super::kind_of("arn:aws:ec2:us-east-1:123:security-group/sg-1"), "security-group sg-1");
    }
}
