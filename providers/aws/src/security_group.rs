//! The security group the provider creates and owns for each load balancer: it enforces
//! `loadBalancerSourceRanges` (one ingress rule per listener port and protocol per range).
//!
//! NLBs accept security groups only if they were created with at least one (AWS refuses to add
//! the first one later), so every load balancer is created with its own group, even when the
//! Service restricts nothing (`0.0.0.0/0`): a later restriction is then a rule change, not a
//! re-creation. Rules are converged exactly: missing ones are authorized, ours that are no longer
//! wanted are revoked.
//!
//! The nodes' side (the cluster's backend group every load balancer also carries, and the rules
//! on the nodes' groups admitting it) is `node_security.rs`.

use std::collections::{BTreeMap, BTreeSet};

use aws_sdk_ec2::types::{Filter, IpPermission, IpRange, Ipv6Range, ResourceType, Tag, TagSpecification};
use cloudlb_provider::{LoadBalancerId, ProviderError};
use ipnet::IpNet;

use crate::clients::Api;
use crate::errors;
use crate::plan::SgRule;
use crate::tags;

#[derive(Clone, Debug)]
pub struct Sg {
    pub id: String,
    pub name: String,
    pub tags: BTreeMap<String, String>,
    pub rules: BTreeSet<SgRule>,
}

fn from_aws(g: &aws_sdk_ec2::types::SecurityGroup) -> Option<Sg> {
    let mut rules = BTreeSet::new();
    for p in g.ip_permissions() {
        let protocol = match p.ip_protocol() {
            Some("tcp") | Some("6") => "tcp",
            Some("udp") | Some("17") => "udp",
            _ => continue,
        };
        let (Some(from), Some(to)) = (p.from_port(), p.to_port()) else { continue };
        if from != to {
            continue;
        }
        let Ok(port) = u16::try_from(from) else { continue };
        let cidrs = p
            .ip_ranges()
            .iter()
            .filter_map(|r| r.cidr_ip())
            .chain(p.ipv6_ranges().iter().filter_map(|r| r.cidr_ipv6()));
        for c in cidrs {
            if let Ok(cidr) = c.parse::<IpNet>() {
                rules.insert(SgRule { protocol, port, cidr: cidr.trunc() });
            }
        }
    }
    Some(Sg {
        id: g.group_id()?.to_string(),
        name: g.group_name().unwrap_or_default().to_string(),
        tags: g
            .tags()
            .iter()
            .filter_map(|t| Some((t.key()?.to_string(), t.value().unwrap_or_default().to_string())))
            .collect(),
        rules,
    })
}

async fn describe(api: &Api<'_>, filters: Vec<Filter>, ids: Option<Vec<String>>) -> Result<Vec<Sg>, ProviderError> {
    const CALL: &str = "ec2:DescribeSecurityGroups";
    api.permit(CALL).await;
    match api.ec2.describe_security_groups().set_filters(Some(filters)).set_group_ids(ids).send().await {
        Ok(r) => Ok(r.security_groups().iter().filter_map(from_aws).collect()),
        Err(e) if errors::is(&e, &["InvalidGroup.NotFound", "InvalidGroupId.Malformed"]) => Ok(Vec::new()),
        Err(e) => Err(errors::map(CALL, e)),
    }
}

/// The group named `name` in the configured VPC, whoever owns it.
pub async fn find(api: &Api<'_>, name: &str) -> Result<Option<Sg>, ProviderError> {
    let filters = vec![
        Filter::builder().name("group-name").values(name).build(),
        Filter::builder().name("vpc-id").values(&api.config.vpc_id).build(),
    ];
    Ok(describe(api, filters, None).await?.into_iter().find(|g| g.name == name))
}

pub async fn find_by_id(api: &Api<'_>, id: &str) -> Result<Option<Sg>, ProviderError> {
    Ok(describe(api, Vec::new(), Some(vec![id.to_string()])).await?.into_iter().next())
}

/// Create the group `name` in the configured VPC with `tags` (on create, which the IAM policy
/// requires); a duplicate (a lost response of an earlier call) is looked up instead.
pub(crate) async fn create(
    api: &Api<'_>,
    name: &str,
    description: &str,
    tags: &BTreeMap<String, String>,
) -> Result<Sg, ProviderError> {
    const CALL: &str = "ec2:CreateSecurityGroup";
    let spec = TagSpecification::builder()
        .resource_type(ResourceType::SecurityGroup)
        .set_tags(Some(tags.iter().map(|(k, v)| Tag::builder().key(k).value(v).build()).collect()))
        .build();
    if !api.mutate(CALL).await {
        let id = crate::planned::arn("security-group", name);
        return Ok(Sg { id, name: name.to_string(), tags: tags.clone(), rules: BTreeSet::new() });
    }
    let res = api
        .ec2
        .create_security_group()
        .group_name(name)
        .description(description)
        .vpc_id(&api.config.vpc_id)
        .tag_specifications(spec)
        .send()
        .await;
    match res {
        Ok(r) => Ok(Sg {
            id: r.group_id().unwrap_or_default().to_string(),
            name: name.to_string(),
            tags: tags.clone(),
            rules: BTreeSet::new(),
        }),
        // Created by a concurrent or earlier (lost-response) call: look it up again.
        Err(e) if errors::is(&e, &["InvalidGroup.Duplicate"]) => {
            find(api, name).await?.ok_or_else(|| ProviderError::Retryable {
                call: CALL,
                message: format!("security group {name} reported as duplicate but not found"),
            })
        }
        Err(e) => Err(errors::map(CALL, e)),
    }
}

fn permission(rule: &SgRule, description: &str) -> IpPermission {
    let b = IpPermission::builder()
        .ip_protocol(rule.protocol)
        .from_port(i32::from(rule.port))
        .to_port(i32::from(rule.port));
    match rule.cidr {
        IpNet::V4(c) => b.ip_ranges(IpRange::builder().cidr_ip(c.to_string()).description(description).build()).build(),
        IpNet::V6(c) => {
            b.ipv6_ranges(Ipv6Range::builder().cidr_ipv6(c.to_string()).description(description).build()).build()
        }
    }
}

/// Find (ownership-checked) or create the group, then converge its rules and tags.
pub async fn ensure(
    api: &Api<'_>,
    id: &LoadBalancerId,
    name: &str,
    rules: &BTreeSet<SgRule>,
    role: &str,
    additional_tags: &BTreeMap<String, String>,
) -> Result<Sg, ProviderError> {
    let desired_tags = tags::desired(id, role, additional_tags);
    let sg = match find(api, name).await? {
        Some(sg) => {
            tags::check_owned(
                "ec2:DescribeSecurityGroups",
                id,
                &format!("security group {} ({})", sg.name, sg.id),
                &sg.tags,
            )?;
            let missing = tags::missing(&desired_tags, &sg.tags);
            if !missing.is_empty() {
                const CALL: &str = "ec2:CreateTags";
                if api.mutate(CALL).await {
                    api.ec2
                        .create_tags()
                        .resources(&sg.id)
                        .set_tags(Some(missing.iter().map(|(k, v)| Tag::builder().key(k).value(v).build()).collect()))
                        .send()
                        .await
                        .map_err(|e| errors::map(CALL, e))?;
                }
            }
            sg
        }
        None => {
            let description = format!("cloudlb: load balancer of {} in cluster {}", id.owner(), id.cluster);
            create(api, name, &description, &desired_tags).await?
        }
    };
    let description = format!("cloudlb {}", id.owner());
    let to_add: Vec<IpPermission> = rules.difference(&sg.rules).map(|r| permission(r, &description)).collect();
    let to_remove: Vec<IpPermission> = sg.rules.difference(rules).map(|r| permission(r, &description)).collect();
    const AUTHORIZE: &str = "ec2:AuthorizeSecurityGroupIngress";
    if !to_add.is_empty() && api.mutate(AUTHORIZE).await {
        const CALL: &str = AUTHORIZE;
        match api.ec2.authorize_security_group_ingress().group_id(&sg.id).set_ip_permissions(Some(to_add)).send().await
        {
            Ok(_) => {}
            // A lost response of an earlier call: the rule is there, which is what we want.
            Err(e) if errors::is(&e, &["InvalidPermission.Duplicate"]) => {}
            Err(e) => return Err(errors::map(CALL, e)),
        }
    }
    const REVOKE: &str = "ec2:RevokeSecurityGroupIngress";
    if !to_remove.is_empty() && api.mutate(REVOKE).await {
        const CALL: &str = REVOKE;
        match api.ec2.revoke_security_group_ingress().group_id(&sg.id).set_ip_permissions(Some(to_remove)).send().await
        {
            Ok(_) => {}
            Err(e) if errors::is(&e, &["InvalidPermission.NotFound"]) => {}
            Err(e) => return Err(errors::map(CALL, e)),
        }
    }
    Ok(Sg { rules: rules.clone(), ..sg })
}

/// Delete the group; gone already is success. While the deleted load balancer's network
/// interfaces still use it (or, for the backend group, another group's rule names it), AWS
/// answers DependencyViolation: that is retryable.
pub async fn delete(api: &Api<'_>, sg_id: &str) -> Result<(), ProviderError> {
    const CALL: &str = "ec2:DeleteSecurityGroup";
    if !api.mutate(CALL).await {
        return Ok(());
    }
    match api.ec2.delete_security_group().group_id(sg_id).send().await {
        Ok(_) => Ok(()),
        Err(e) if errors::is(&e, &["InvalidGroup.NotFound", "InvalidGroupId.Malformed"]) => Ok(()),
        Err(e) if errors::is(&e, &["DependencyViolation"]) => Err(ProviderError::Retryable {
            call: CALL,
            message: format!(
                "security group {sg_id} is still in use (the deleted load balancer's network interfaces take a few minutes to go away); will retry"
            ),
        }),
        Err(e) => Err(errors::map(CALL, e)),
    }
}
