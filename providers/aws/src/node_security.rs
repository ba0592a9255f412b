//! Node security groups: letting the load balancers' traffic and health checks into the nodes.
//!
//! A load balancer's own security group (`security_group.rs`) decides who may reach the load
//! balancer; nothing there lets the load balancer reach the nodes. On a real cluster the nodes'
//! security groups admit only what their owner opened, so every target would be unhealthy until
//! someone opened the node ports by hand. This module does it the way the AWS Load Balancer
//! Controller does, with a *backend security group*:
//!
//! ```text
//!   load balancer  security groups = [its own (source ranges), cloudlb-backend-<cluster>-<hash>]
//!                                                                     │ source of
//!   node security group  inbound: tcp/udp <node port>   from the backend group ◀┘
//!     (the instances'    inbound: tcp <health-check port> from the backend group
//!      primary ENI's)    (traffic-port, healthCheckNodePort, kube-proxy's 10256, an annotated port)
//! ```
//!
//! - **One backend group per cluster** (`names::backend_security_group`), tagged
//!   `cloudlb.io/cluster` + role `backend-security-group` (no owner uid: it is every load
//!   balancer's), made in the configured VPC with its tags on create. A rule naming a group as its
//!   source admits whatever carries the group, so one rule per port serves every load balancer.
//! - **Which node group**: the target instances' primary network interface (device index 0), from
//!   `ec2:DescribeInstances`. One group: that one. Several: the one tagged
//!   `kubernetes.io/cluster/<cluster>`; with none or several tagged the instance gets no rule and
//!   a warning log names the instance, its groups and both ways out (its failing health checks
//!   show in `cloudlb.io/TargetsHealthy`): one such node must not stop every load balancer. Instance → group is cached for the process
//!   (instances rarely change groups), so a node join costs one DescribeInstances for the new
//!   instances, whichever load balancer asks first (resolution is serialized, the others find it
//!   cached).
//! - **Which rules**: per target group its traffic port (tcp, udp or both) and its health-check
//!   port (tcp: health checks are TCP, HTTP or HTTPS). With `node_port_range_rule` every port in
//!   the range is covered by one rule per protocol instead.
//! - **Only ours are ever revoked**: a rule whose source is our backend group *and* that carries
//!   our per-cluster description. Rules with any other source (the user's, same port or not), and
//!   rules someone else made that admit the backend group (into a database's group, say), are
//!   never changed; the latter keep the backend group from being deleted (a warning says so).
//! - **Reference counting from the live state**, not from bookkeeping: a rule is needed while
//!   some load balancer carrying the backend group has a target group using its port (traffic or
//!   health check). Node ports are unique per Service, but an ALB's node ports are its backend
//!   Services' and shared by every Ingress pointing at them (and the Service's own NLB), and
//!   kube-proxy's 10256 or a fixed annotated health-check port is shared by many; counts kept in
//!   rule descriptions (255 characters) could not hold those. So a *sweep* reads the load
//!   balancers (those carrying the backend group), the target groups forwarded to from them, and
//!   the node groups having rules from the backend group, and revokes the rules nobody needs. It
//!   runs on every delete, and on an ensure whose ports changed (a target group went stale or its
//!   health-check port moved) or that detached the backend group. When no load balancer carries the
//!   backend group any more, the sweep deletes it as well: nothing is left behind when the last
//!   load balancer goes (and `cloudlb gc`, deleting load balancers, does the same).
//! - **Serialized in-process**: rule changes (read + authorize, sweep) and the backend group's
//!   attach / delete hold one `tokio::sync::Mutex`, so a concurrent ensure and delete cannot race a
//!   shared rule (or the backend group) away; only one leader acts per cluster. Rules are added
//!   after the listeners exist, so a sweep that starts later sees the target groups that need them.
//!
//! Cost in calls: an ensure reads the node groups' rules once (one `ec2:DescribeSecurityGroups`
//! with their ids) and, the first time in a process, finds the backend group by name (one more)
//! and describes its instances (one `ec2:DescribeInstances`, plus one DescribeSecurityGroups when
//! a primary interface has several groups). Adding rules is one `AuthorizeSecurityGroupIngress` per
//! node group missing some. A targets-only update trusts what the process knows about each node
//! group's rules: only a node group not seen with this load balancer's rules is read and changed.
//! A sweep costs one DescribeLoadBalancers and one DescribeTargetGroups per 400 in the region, one
//! DescribeSecurityGroups (paged), and one revoke per node group with rules nobody needs.
//!
//! Quota: a security group has 60 inbound rules by default (per address family), and each
//! load balancer adds one or two per node port to the node groups. Many load balancers exhaust it
//! (`RulesPerSecurityGroupLimitExceeded`, reported as a quota error naming the call): raise the
//! quota, or use `node_port_range_rule` (`--aws-node-port-range-rule 30000-32767`), which needs two
//! rules (tcp, udp) plus the health-check ports outside the range, whatever the number of load
//! balancers.
//!
//! moto 5.2.1 differs from AWS where this module leans on it, and the code is written for both:
//! it stores a second rule when the same (protocol, ports, source group) comes with another
//! description (AWS answers `InvalidPermission.Duplicate`), so every rule gets the same
//! per-cluster description; it revokes a rule only when the description repeats the stored one
//! (AWS ignores it), so revokes send the description as read; it deletes a group that other
//! groups' rules name (AWS refuses with DependencyViolation), so rules are revoked first; and it
//! links a target group to a load balancer on CreateListener / CreateRule only, not on
//! ModifyListener / ModifyRule, so an ensure's sweep counts its own needs from its plan too.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Mutex;

use aws_sdk_ec2::types::{Filter, IpPermission, UserIdGroupPair};
use cloudlb_provider::ProviderError;
use tokio::sync::MutexGuard;

use crate::clients::Api;
use crate::options::HcPort;
use crate::plan::{DesiredTargetGroup, TgProtocol};
use crate::target_groups::Tg;
use crate::{errors, load_balancer, names, security_group, tags, target_groups};

/// One inbound rule on a node security group whose source is the backend group.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct NodeRule {
    /// `tcp` or `udp`.
    pub protocol: &'static str,
    pub from: u16,
    pub to: u16,
}

/// What the provider remembers between calls (one per provider, i.e. per cluster).
#[derive(Default)]
pub struct NodeSecurity {
    /// Instance id → its node security group.
    instance_groups: Mutex<HashMap<String, String>>,
    /// Node security group → the rules from the backend group it was last seen (or made) with.
    known_rules: Mutex<HashMap<String, BTreeSet<NodeRule>>>,
    /// Cluster → the id of its backend group (found by name and tags, or made).
    backend: Mutex<HashMap<String, String>>,
    /// Serializes instance look-ups, so concurrent node-churn updates describe an instance once.
    resolving: tokio::sync::Mutex<()>,
    /// Serializes rule changes and the backend group's attach / delete.
    changing: tokio::sync::Mutex<()>,
}

fn locked<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl NodeSecurity {
    /// Hold while attaching the backend group to a load balancer (and while deleting it).
    pub async fn lock_changes(&self) -> MutexGuard<'_, ()> {
        self.changing.lock().await
    }

    /// The backend group id of `cluster`, when this process knows it.
    pub fn cached_backend(&self, cluster: &str) -> Option<String> {
        locked(&self.backend).get(cluster).cloned()
    }

    fn forget_backend_only(&self) {
        locked(&self.backend).clear();
    }

    fn forget_backend(&self, cluster: &str) {
        locked(&self.backend).remove(cluster);
        locked(&self.known_rules).clear();
    }

    /// Forget what is known about `groups` (gone, or changed behind our back).
    fn forget_groups(&self, groups: &[String]) {
        locked(&self.instance_groups).retain(|_, g| !groups.contains(g));
        locked(&self.known_rules).retain(|g, _| !groups.contains(g));
    }
}

// ---- which rules --------------------------------------------------------------------------

fn rule(protocol: &'static str, port: u16, range: Option<(u16, u16)>) -> NodeRule {
    match range {
        Some((from, to)) if (from..=to).contains(&port) => NodeRule { protocol, from, to },
        _ => NodeRule { protocol, from: port, to: port },
    }
}

/// The rules one target group needs: its traffic port (tcp and/or udp) and its health-check port
/// (tcp; `None` = the traffic port).
fn target_group_rules(
    tcp: bool,
    udp: bool,
    port: u16,
    health_port: Option<u16>,
    range: Option<(u16, u16)>,
    out: &mut BTreeSet<NodeRule>,
) {
    if tcp {
        out.insert(rule("tcp", port, range));
    }
    if udp {
        out.insert(rule("udp", port, range));
    }
    out.insert(rule("tcp", health_port.unwrap_or(port), range));
}

/// The node rules a plan's target groups need. Pure.
pub fn needs(groups: &[DesiredTargetGroup], range: Option<(u16, u16)>) -> BTreeSet<NodeRule> {
    let mut out = BTreeSet::new();
    for g in groups {
        let (tcp, udp) = match g.protocol {
            TgProtocol::Tcp | TgProtocol::Http => (true, false),
            TgProtocol::Udp => (false, true),
            TgProtocol::TcpUdp => (true, true),
        };
        let health = match g.health.port {
            HcPort::TrafficPort => None,
            HcPort::Port(p) => Some(p),
        };
        target_group_rules(tcp, udp, g.node_port, health, range, &mut out);
    }
    out
}

/// The node rules an existing target group needs (its protocol, port and health-check port as
/// AWS reports them).
fn live_needs(tg: &Tg, range: Option<(u16, u16)>, out: &mut BTreeSet<NodeRule>) {
    let Some(port) = tg.port.and_then(|p| u16::try_from(p).ok()) else { return };
    let (tcp, udp) = match tg.protocol.as_str() {
        "UDP" => (false, true),
        "TCP_UDP" => (true, true),
        _ => (true, false),
    };
    let health = tg.health_port.as_deref().and_then(|p| p.parse::<u16>().ok());
    target_group_rules(tcp, udp, port, health, range, out);
}

/// Whether an existing target group's node rules differ from what its desired state needs (a
/// sweep is then due: its old ports may be nobody's any more).
pub fn needs_differ(tg: &Tg, desired: &DesiredTargetGroup, range: Option<(u16, u16)>) -> bool {
    let mut live = BTreeSet::new();
    live_needs(tg, range, &mut live);
    live != needs(std::slice::from_ref(desired), range)
}

/// The description of every rule we make: one per cluster (see the module doc on moto), in the
/// characters AWS accepts in rule descriptions.
fn description(cluster: &str) -> String {
    let safe: String = cluster
        .chars()
        .filter(|c| c.is_ascii_alphanumeric() || " ._-:/()#,@[]+=&;{}!$*".contains(*c))
        .take(100)
        .collect();
    format!("cloudlb {safe}: traffic and health checks from its load balancers (backend group)")
}

// ---- which node groups ----------------------------------------------------------------------

/// The node security groups of `instances` (cached; the unknown ones are described). An instance
/// whose primary interface has several groups and not exactly one tagged
/// `kubernetes.io/cluster/<cluster>` is left out with a warning naming both ways out (not cached:
/// looked up again next time); failing instead would stop every load balancer of the cluster for
/// one node. Instances that do not exist are left out (their registration fails on its own).
pub async fn node_groups(
    api: &Api<'_>,
    cluster: &str,
    instances: &BTreeSet<String>,
) -> Result<BTreeSet<String>, ProviderError> {
    let ns = api.node;
    let _one_at_a_time = ns.resolving.lock().await;
    let unknown: Vec<String> = {
        let cache = locked(&ns.instance_groups);
        instances.iter().filter(|i| !cache.contains_key(*i)).cloned().collect()
    };
    if !unknown.is_empty() {
        let found = describe_instances(api, &unknown).await?;
        let several: Vec<String> =
            found.values().filter(|g| g.len() > 1).flatten().cloned().collect::<BTreeSet<_>>().into_iter().collect();
        let group_tags = if several.is_empty() { BTreeMap::new() } else { group_tags(api, &several).await? };
        let key = tags::cluster_key(cluster);
        let mut problems = Vec::new();
        let mut resolved = Vec::new();
        for (instance, groups) in &found {
            match groups.as_slice() {
                [] => tracing::warn!(%instance, "instance has no security group; no node rule for it"),
                [one] => resolved.push((instance.clone(), one.clone())),
                many => {
                    let tagged: Vec<&String> =
                        many.iter().filter(|g| group_tags.get(*g).is_some_and(|t| t.contains_key(&key))).collect();
                    match tagged.as_slice() {
                        [one] => resolved.push((instance.clone(), (*one).clone())),
                        _ => problems.push(format!(
                            "instance {instance}'s primary network interface has security groups {} and {} tagged \
                             {key}, so cloudlb cannot tell which one to open to the load balancers: tag \
                             exactly one of them with {key}, or manage the nodes' security groups yourself and turn \
                             this off (--aws-manage-node-security-groups=false, or the annotation \
                             service.beta.kubernetes.io/aws-load-balancer-manage-backend-security-group-rules: \
                             \"false\")",
                            many.join(", "),
                            if tagged.is_empty() {
                                "none of them is".to_string()
                            } else {
                                format!("{} of them are", tagged.len())
                            }
                        )),
                    }
                }
            }
        }
        locked(&ns.instance_groups).extend(resolved);
        // One node that cannot be resolved must not stop every load balancer of the cluster:
        // it gets no rule (and is looked up again by the next ensure); its health checks then
        // fail, which `cloudlb.io/TargetsHealthy` shows with AWS's reason.
        for p in problems {
            tracing::warn!("{p}; no node rule for it");
        }
    }
    let cache = locked(&ns.instance_groups);
    Ok(instances.iter().filter_map(|i| cache.get(i).cloned()).collect())
}

/// Instance id → the groups of its primary network interface (device index 0; the instance's
/// groups when the interfaces are not reported). By filter, so a missing instance fails nothing.
async fn describe_instances(api: &Api<'_>, ids: &[String]) -> Result<BTreeMap<String, Vec<String>>, ProviderError> {
    const CALL: &str = "ec2:DescribeInstances";
    let mut out = BTreeMap::new();
    for chunk in ids.chunks(200) {
        let mut token: Option<String> = None;
        loop {
            api.permit(CALL).await;
            let r = api
                .ec2
                .describe_instances()
                .filters(Filter::builder().name("instance-id").set_values(Some(chunk.to_vec())).build())
                .set_next_token(token.clone())
                .send()
                .await
                .map_err(|e| errors::map(CALL, e))?;
            for i in r.reservations().iter().flat_map(|r| r.instances()) {
                let Some(id) = i.instance_id() else { continue };
                let primary = i
                    .network_interfaces()
                    .iter()
                    .find(|n| n.attachment().and_then(|a| a.device_index()) == Some(0))
                    .map(|n| n.groups().iter().filter_map(|g| g.group_id().map(String::from)).collect::<Vec<_>>());
                let groups = primary.unwrap_or_else(|| {
                    i.security_groups().iter().filter_map(|g| g.group_id().map(String::from)).collect()
                });
                out.insert(id.to_string(), groups);
            }
            token = r.next_token().filter(|t| !t.is_empty()).map(String::from);
            if token.is_none() {
                break;
            }
        }
    }
    Ok(out)
}

/// Group id → tags.
async fn group_tags(
    api: &Api<'_>,
    ids: &[String],
) -> Result<BTreeMap<String, BTreeMap<String, String>>, ProviderError> {
    const CALL: &str = "ec2:DescribeSecurityGroups";
    api.permit(CALL).await;
    let r = api
        .ec2
        .describe_security_groups()
        .set_group_ids(Some(ids.to_vec()))
        .send()
        .await
        .map_err(|e| errors::map(CALL, e))?;
    Ok(r.security_groups()
        .iter()
        .filter_map(|g| {
            let t = g.tags().iter().filter_map(|t| Some((t.key()?.to_string(), t.value()?.to_string()))).collect();
            Some((g.group_id()?.to_string(), t))
        })
        .collect())
}

// ---- the backend group ----------------------------------------------------------------------

/// The cluster's backend group, when it exists (cached, else by name; tag-checked).
pub async fn find_backend(api: &Api<'_>, cluster: &str) -> Result<Option<String>, ProviderError> {
    if let Some(id) = api.node.cached_backend(cluster) {
        return Ok(Some(id));
    }
    let name = names::backend_security_group(cluster);
    let Some(sg) = security_group::find(api, &name).await? else { return Ok(None) };
    if !tags::is_backend(cluster, &sg.tags) {
        return Err(ProviderError::Conflict {
            call: "ec2:DescribeSecurityGroups",
            resource: format!("security group {} ({})", sg.name, sg.id),
            message: format!(
                "it has our backend group's name but not the tags {}={cluster} and {}={}; cloudlb never adopts \
                 resources: rename or delete it",
                tags::CLUSTER,
                tags::RESOURCE,
                tags::ROLE_BACKEND_SECURITY_GROUP
            ),
        });
    }
    locked(&api.node.backend).insert(cluster.to_string(), sg.id.clone());
    Ok(Some(sg.id))
}

/// The cluster's backend group, made when missing. Call with [`NodeSecurity::lock_changes`] held
/// until the group is attached, so that a sweep cannot delete it in between.
pub async fn ensure_backend(api: &Api<'_>, cluster: &str) -> Result<String, ProviderError> {
    if let Some(id) = find_backend(api, cluster).await? {
        return Ok(id);
    }
    let name = names::backend_security_group(cluster);
    let description =
        format!("cloudlb: backend group of cluster {cluster}'s load balancers; the nodes' security groups admit it")
            .chars()
            .filter(|c| c.is_ascii_graphic() || *c == ' ')
            .collect::<String>();
    let sg = security_group::create(api, &name, &description, &tags::backend_desired(cluster)).await?;
    if !crate::planned::is(&sg.id) {
        locked(&api.node.backend).insert(cluster.to_string(), sg.id.clone());
    }
    Ok(sg.id)
}

// ---- reading and changing rules -------------------------------------------------------------

/// Node group → its rules whose source is `backend` (with the description as stored).
type Rules = BTreeMap<String, BTreeMap<NodeRule, Option<String>>>;

fn rules_from(g: &aws_sdk_ec2::types::SecurityGroup, backend: &str) -> BTreeMap<NodeRule, Option<String>> {
    let mut out = BTreeMap::new();
    for p in g.ip_permissions() {
        let protocol = match p.ip_protocol() {
            Some("tcp") | Some("6") => "tcp",
            Some("udp") | Some("17") => "udp",
            _ => continue,
        };
        let (Some(from), Some(to)) = (p.from_port(), p.to_port()) else { continue };
        let (Ok(from), Ok(to)) = (u16::try_from(from), u16::try_from(to)) else { continue };
        for pair in p.user_id_group_pairs().iter().filter(|pair| pair.group_id() == Some(backend)) {
            out.insert(NodeRule { protocol, from, to }, pair.description().map(String::from));
        }
    }
    out
}

/// The rules from `backend` on the groups `ids`.
async fn rules_of(api: &Api<'_>, backend: &str, ids: &[String]) -> Result<Rules, ProviderError> {
    const CALL: &str = "ec2:DescribeSecurityGroups";
    api.permit(CALL).await;
    match api.ec2.describe_security_groups().set_group_ids(Some(ids.to_vec())).send().await {
        Ok(r) => Ok(r
            .security_groups()
            .iter()
            .filter_map(|g| Some((g.group_id()?.to_string(), rules_from(g, backend))))
            .collect()),
        Err(e) if errors::is(&e, &["InvalidGroup.NotFound"]) => {
            api.node.forget_groups(ids);
            Err(ProviderError::Retryable {
                call: CALL,
                message: format!(
                    "a node security group ({}) no longer exists; the instances' groups are looked up again on the \
                     next attempt",
                    ids.join(", ")
                ),
            })
        }
        Err(e) => Err(errors::map(CALL, e)),
    }
}

/// Every group with a rule whose source is `backend` (by the `ip-permission.group-id` filter),
/// with those rules.
async fn rules_referencing(api: &Api<'_>, backend: &str) -> Result<Rules, ProviderError> {
    const CALL: &str = "ec2:DescribeSecurityGroups";
    let pages = crate::clients::all_pages(api, CALL, |token| async move {
        let r = api
            .ec2
            .describe_security_groups()
            .filters(Filter::builder().name("ip-permission.group-id").values(backend).build())
            .set_next_token(token)
            .send()
            .await
            .map_err(|e| errors::map(CALL, e))?;
        let groups: Vec<(String, _)> = r
            .security_groups()
            .iter()
            .filter_map(|g| Some((g.group_id()?.to_string(), rules_from(g, backend))))
            .filter(|(_, rules)| !rules.is_empty())
            .collect();
        Ok((groups, r.next_token().map(String::from)))
    })
    .await?;
    Ok(pages.into_iter().collect())
}

fn permission(rule: &NodeRule, backend: &str, description: Option<&str>) -> IpPermission {
    IpPermission::builder()
        .ip_protocol(rule.protocol)
        .from_port(i32::from(rule.from))
        .to_port(i32::from(rule.to))
        .user_id_group_pairs(
            UserIdGroupPair::builder().group_id(backend).set_description(description.map(String::from)).build(),
        )
        .build()
}

/// Authorize `rules` from `backend` on `group`; a rule already there is success (a batch with one
/// is retried rule by rule: AWS refuses the whole batch). `false` = a dry run, nothing sent.
async fn authorize(
    api: &Api<'_>,
    group: &str,
    backend: &str,
    rules: &[NodeRule],
    description: &str,
) -> Result<bool, ProviderError> {
    const CALL: &str = "ec2:AuthorizeSecurityGroupIngress";
    if !api.mutate(CALL).await {
        return Ok(false);
    }
    let perms: Vec<IpPermission> = rules.iter().map(|r| permission(r, backend, Some(description))).collect();
    match api.ec2.authorize_security_group_ingress().group_id(group).set_ip_permissions(Some(perms)).send().await {
        Ok(_) => Ok(true),
        Err(e) if errors::is(&e, &["InvalidPermission.Duplicate"]) && rules.len() > 1 => {
            for r in rules {
                Box::pin(authorize(api, group, backend, std::slice::from_ref(r), description)).await?;
            }
            Ok(true)
        }
        Err(e) if errors::is(&e, &["InvalidPermission.Duplicate"]) => Ok(true),
        Err(e) if errors::is(&e, &["InvalidGroup.NotFound"]) => {
            api.node.forget_groups(&[group.to_string()]);
            api.node.forget_backend_only();
            Err(ProviderError::Retryable {
                call: CALL,
                message: format!(
                    "security group {group} or the backend group {backend} no longer exists; looked up again on the \
                     next attempt"
                ),
            })
        }
        Err(e) => Err(errors::map(CALL, e)),
    }
}

/// Revoke `rules` (with their descriptions as stored) from `group`; gone already is success.
async fn revoke(
    api: &Api<'_>,
    group: &str,
    backend: &str,
    rules: &[(NodeRule, Option<String>)],
) -> Result<bool, ProviderError> {
    const CALL: &str = "ec2:RevokeSecurityGroupIngress";
    if rules.is_empty() || !api.mutate(CALL).await {
        return Ok(false);
    }
    let perms: Vec<IpPermission> = rules.iter().map(|(r, d)| permission(r, backend, d.as_deref())).collect();
    match api.ec2.revoke_security_group_ingress().group_id(group).set_ip_permissions(Some(perms)).send().await {
        Ok(_) => Ok(true),
        Err(e) if errors::is(&e, &["InvalidPermission.NotFound"]) && rules.len() > 1 => {
            for r in rules {
                Box::pin(revoke(api, group, backend, std::slice::from_ref(r))).await?;
            }
            Ok(true)
        }
        Err(e) if errors::is(&e, &["InvalidPermission.NotFound", "InvalidGroup.NotFound"]) => Ok(true),
        Err(e) => Err(errors::map(CALL, e)),
    }
}

/// Make sure every group of `groups` has `want` from `backend`. `trust_known`: skip reading a
/// group this process already saw (or made) with all of them (targets-only updates); else read
/// every group (a full ensure, which also repairs rules removed behind our back).
pub async fn converge(
    api: &Api<'_>,
    cluster: &str,
    backend: &str,
    groups: &BTreeSet<String>,
    want: &BTreeSet<NodeRule>,
    trust_known: bool,
) -> Result<(), ProviderError> {
    if groups.is_empty() || want.is_empty() {
        return Ok(());
    }
    let ns = api.node;
    let _serialized = ns.changing.lock().await;
    let to_read: Vec<String> = {
        let known = locked(&ns.known_rules);
        groups.iter().filter(|g| !trust_known || known.get(*g).is_none_or(|k| !want.is_subset(k))).cloned().collect()
    };
    if to_read.is_empty() {
        return Ok(());
    }
    let current = rules_of(api, backend, &to_read).await?;
    let description = description(cluster);
    for g in &to_read {
        let have: BTreeSet<NodeRule> = current.get(g).map(|r| r.keys().copied().collect()).unwrap_or_default();
        let missing: Vec<NodeRule> = want.difference(&have).copied().collect();
        let mut now = have;
        if !missing.is_empty() && authorize(api, g, backend, &missing, &description).await? {
            now.extend(missing);
        }
        locked(&ns.known_rules).insert(g.clone(), now);
    }
    Ok(())
}

/// What a sweep should do when no load balancer carries the backend group any more.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum LastOne {
    /// Delete it; still in use (DependencyViolation) is an error to retry (a delete).
    Delete,
    /// Delete it; still in use is left for a later sweep (an ensure that detached it).
    TryDelete,
}

/// Revoke every rule from the backend group that no load balancer carrying the group needs
/// (`own`: the needs of the load balancer being ensured, counted whatever AWS reports), and delete
/// the group once no load balancer carries it. No backend group: nothing to do.
pub async fn sweep(
    api: &Api<'_>,
    cluster: &str,
    own: Option<&BTreeSet<NodeRule>>,
    last: LastOne,
) -> Result<(), ProviderError> {
    let ns = api.node;
    let _serialized = ns.changing.lock().await;
    let backend = match find_backend(api, cluster).await {
        Ok(Some(b)) => b,
        Ok(None) => return Ok(()),
        // A group with the backend group's name that is not ours has no rules of ours to sweep;
        // a delete must not hang on it (an ensure reports it).
        Err(e @ ProviderError::Conflict { .. }) => {
            tracing::warn!(error = %e, "not sweeping node security group rules");
            return Ok(());
        }
        Err(e) => return Err(e),
    };
    if crate::planned::is(&backend) {
        return Ok(());
    }
    let range = api.config.node_port_range_rule;
    let ours: BTreeSet<String> = load_balancer::list_all(api)
        .await?
        .into_iter()
        .filter(|lb| lb.security_groups.contains(&backend))
        .map(|lb| lb.arn)
        .collect();
    let mut needed: BTreeSet<NodeRule> = own.cloned().unwrap_or_default();
    if !ours.is_empty() {
        for tg in target_groups::list_all(api).await? {
            if tg.load_balancer_arns.iter().any(|a| ours.contains(a)) {
                live_needs(&tg, range, &mut needed);
            }
        }
    }
    // Only rules carrying our description are ours: a rule someone else made that admits the
    // backend group (into a database's group, say) is never revoked, and keeps the group.
    let mine = description(cluster);
    let mut foreign = 0usize;
    for (group, rules) in rules_referencing(api, &backend).await? {
        let (rules, theirs): (Vec<_>, Vec<_>) = rules.into_iter().partition(|(_, d)| d.as_deref() == Some(&mine));
        foreign += theirs.len();
        let stale: Vec<(NodeRule, Option<String>)> = rules.into_iter().filter(|(r, _)| !needed.contains(r)).collect();
        if revoke(api, &group, &backend, &stale).await?
            && let Some(k) = locked(&ns.known_rules).get_mut(&group)
        {
            for (r, _) in &stale {
                k.remove(r);
            }
        }
    }
    if ours.is_empty() && own.is_none() && foreign > 0 {
        tracing::warn!(
            group = %backend,
            rules = foreign,
            "backend security group not deleted: rules cloudlb did not make still admit it"
        );
    } else if ours.is_empty() && own.is_none() {
        match security_group::delete(api, &backend).await {
            Ok(()) => ns.forget_backend(cluster),
            Err(e) if last == LastOne::TryDelete => {
                tracing::info!(group = %backend, error = %e, "backend security group not deleted yet; a later sweep will");
            }
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// The group of `groups` that is the load balancer's own (not the cluster's backend group, when
/// this process knows it): what the record keeps.
pub fn frontend_of<'a>(api: &Api<'_>, cluster: &str, groups: &'a [String]) -> Option<&'a str> {
    let backend = api.node.cached_backend(cluster);
    groups.iter().find(|g| Some(*g) != backend.as_ref()).or(groups.first()).map(String::as_str)
}

/// A targets-only update's part: the rules for the nodes' groups, trusting what the process
/// knows. `Ok(false)`: the backend group is unknown (a full ensure must run).
pub async fn targets_only(
    api: &Api<'_>,
    cluster: &str,
    instances: &BTreeSet<String>,
    want: &BTreeSet<NodeRule>,
) -> Result<bool, ProviderError> {
    let groups = node_groups(api, cluster, instances).await?;
    if groups.is_empty() {
        return Ok(true);
    }
    let Some(backend) = find_backend(api, cluster).await? else { return Ok(false) };
    converge(api, cluster, &backend, &groups, want, true).await?;
    Ok(true)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::health::HealthSettings;
    use crate::options::HcProtocol;

    fn tg(protocol: TgProtocol, node_port: u16, health: HcPort) -> DesiredTargetGroup {
        DesiredTargetGroup {
            name: "x".into(),
            listener_port: 80,
            protocol,
            node_port,
            health: HealthSettings {
                protocol: HcProtocol::Tcp,
                port: health,
                path: None,
                interval: 10,
                timeout: 5,
                healthy_threshold: 2,
                unhealthy_threshold: 2,
                success_codes: None,
            },
            attributes: BTreeMap::new(),
        }
    }

    fn r(protocol: &'static str, from: u16, to: u16) -> NodeRule {
        NodeRule { protocol, from, to }
    }

    #[test]
    fn traffic_and_health_check_ports_by_protocol() {
        let groups = [
            tg(TgProtocol::Tcp, 30080, HcPort::TrafficPort),
            tg(TgProtocol::Udp, 30053, HcPort::Port(10256)),
            tg(TgProtocol::TcpUdp, 30054, HcPort::Port(31000)),
        ];
        let got: Vec<NodeRule> = needs(&groups, None).into_iter().collect();
        let want = vec![
            r("tcp", 10256, 10256),
            r("tcp", 30054, 30054),
            r("tcp", 30080, 30080),
            r("tcp", 31000, 31000),
            r("udp", 30053, 30053),
            r("udp", 30054, 30054),
        ];
        assert_eq!(got, want);
    }

    #[test]
    fn a_port_range_rule_covers_every_node_port_but_not_kube_proxy() {
        let groups = [
            tg(TgProtocol::Tcp, 30080, HcPort::TrafficPort),
            tg(TgProtocol::Udp, 30053, HcPort::Port(10256)),
            tg(TgProtocol::Tcp, 31443, HcPort::Port(32001)),
        ];
        let got: Vec<NodeRule> = needs(&groups, Some((30000, 32767))).into_iter().collect();
        assert_eq!(got, vec![r("tcp", 10256, 10256), r("tcp", 30000, 32767), r("udp", 30000, 32767)]);
    }

    #[test]
    fn live_target_groups_need_what_their_plan_needs() {
        let live = Tg {
            arn: "a".into(),
            name: "x".into(),
            protocol: "UDP".into(),
            port: Some(30053),
            health_protocol: Some("HTTP".into()),
            health_port: Some("10256".into()),
            ..Default::default()
        };
        assert!(!needs_differ(&live, &tg(TgProtocol::Udp, 30053, HcPort::Port(10256)), None));
        assert!(needs_differ(&live, &tg(TgProtocol::Udp, 30053, HcPort::TrafficPort), None));
        let traffic =
            Tg { protocol: "TCP".into(), port: Some(30080), health_port: Some("traffic-port".into()), ..live };
        assert!(!needs_differ(&traffic, &tg(TgProtocol::Tcp, 30080, HcPort::TrafficPort), None));
    }

    #[test]
    fn descriptions_use_only_the_characters_aws_accepts() {
        let d = description("prod<eu>\"1\"");
        assert!(d.starts_with("cloudlb prodeu1: "), "{d}");
        assert!(d.len() <= 255);
    }
}
