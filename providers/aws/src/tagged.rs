//! Finding our resources by their ownership tags, in one call per page, through the Resource
//! Groups Tagging API: what an interrupted `ensure` made but never recorded (an imported
//! certificate, a target group) is found without scanning every resource of the account.
//!
//! The tagging API is eventually consistent (a resource tagged a moment ago may be missing from
//! the answer), so it complements the record and the look-ups by name; it never replaces them.

use std::collections::BTreeMap;

use aws_sdk_resourcegroupstagging::types::TagFilter;
use cloudlb_provider::{LoadBalancerId, ProviderError};

use crate::clients::Api;
use crate::{errors, tags};

/// Resource type filter for [`owned`]: ACM certificates.
pub const CERTIFICATES: &str = "acm";
/// Resource type filter for [`owned`]: ELBv2 target groups.
pub const TARGET_GROUPS: &str = "elasticloadbalancing:targetgroup";
/// Resource type filter for [`owned`]: EC2 security groups.
pub const SECURITY_GROUPS: &str = "ec2:security-group";

/// Every resource of `types` tagged for `id` (cluster and owner uid), as ARN → tags.
pub async fn owned(
    api: &Api<'_>,
    id: &LoadBalancerId,
    types: &[&str],
) -> Result<BTreeMap<String, BTreeMap<String, String>>, ProviderError> {
    let filters = [(tags::CLUSTER, id.cluster.as_str()), (tags::OWNER_UID, id.uid.as_str())];
    let found = tagged(api, &filters, types).await?;
    Ok(found.into_iter().filter(|(_, t)| tags::is_owned(id, t)).collect())
}

/// Resource types of a load balancer, for [`of_cluster`].
pub const LOAD_BALANCER_TYPES: &[&str] =
    &["elasticloadbalancing:loadbalancer", "elasticloadbalancing:targetgroup", "ec2:security-group", "acm:certificate"];

/// Every resource of `types` tagged for `cluster` (with an owner uid), as ARN → tags.
pub async fn of_cluster(
    api: &Api<'_>,
    cluster: &str,
    types: &[&str],
) -> Result<BTreeMap<String, BTreeMap<String, String>>, ProviderError> {
    let found = tagged(api, &[(tags::CLUSTER, cluster)], types).await?;
    Ok(found
        .into_iter()
        .filter(|(_, t)| t.get(tags::CLUSTER).map(String::as_str) == Some(cluster) && t.contains_key(tags::OWNER_UID))
        .collect())
}

/// The resources the tagging API lists for `filters` (key = value, all of them), every page.
/// Callers check the tags again: a backend is never trusted to filter for us.
async fn tagged(
    api: &Api<'_>,
    filters: &[(&str, &str)],
    types: &[&str],
) -> Result<BTreeMap<String, BTreeMap<String, String>>, ProviderError> {
    const CALL: &str = "tagging:GetResources";
    let mut out = BTreeMap::new();
    let mut token: Option<String> = None;
    loop {
        api.permit(CALL).await;
        let tag_filters = filters.iter().map(|(k, v)| TagFilter::builder().key(*k).values(*v).build()).collect();
        let r = api
            .tagging
            .get_resources()
            .set_tag_filters(Some(tag_filters))
            .set_resource_type_filters(Some(types.iter().map(|t| t.to_string()).collect()))
            .set_pagination_token(token.clone())
            .send()
            .await
            .map_err(|e| errors::map(CALL, e))?;
        for m in r.resource_tag_mapping_list() {
            let Some(arn) = m.resource_arn() else { continue };
            let t: BTreeMap<String, String> =
                m.tags().iter().map(|t| (t.key().to_string(), t.value().to_string())).collect();
            out.insert(arn.to_string(), t);
        }
        token = r.pagination_token().filter(|t| !t.is_empty()).map(String::from);
        if token.is_none() {
            return Ok(out);
        }
    }
}
