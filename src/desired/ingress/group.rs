//! Ingress groups: several Ingresses (`cloudlb.io/group.name`, or the AWS Load Balancer
//! Controller's `alb.ingress.kubernetes.io/group.name`) share one load balancer. PURE: the
//! members' own specs in, one merged spec out.
//!
//! ```text
//!  members sorted by (group.order, namespace/name)
//!    first member  ─▶ the base: scheme, timeouts, provider options, targets
//!    every member  ─▶ listeners (union by port), hosts and routes, backends, certificates,
//!                     source ranges (union)
//!  within a host   ─▶ routes by group.order first, then the Kubernetes precedence across the
//!                     members (longest path, Exact on ties): with the default order 0 the
//!                     group routes like one big Ingress; an order puts a member's paths first
//! ```
//!
//! Where the AWS Load Balancer Controller fails the whole group on one conflicting member, a
//! member that cannot join (another scheme, a malformed group annotation) is reported on *that*
//! Ingress and left out; the rest keep working. Smaller conflicts (a second default backend, a
//! duplicate path, a differing provider option) keep the first member's and warn the later one.
//!
//! The group's load balancer has an id of its own ([`group_id`]): made, found and deleted like
//! any other, owned by no single Ingress.

use std::collections::BTreeMap;

use cloudlb_provider::l7::RouteAction;
use cloudlb_provider::{L7Spec, LoadBalancerId};
use k8s_openapi::api::networking::v1::Ingress;

use crate::keys::ingress as ann;

/// `(group name, order)` of an Ingress, `Ok(None)` when it is in no group, `Err` (a message
/// naming the annotation) when an annotation is malformed.
pub fn group_of(ing: &Ingress) -> Result<Option<(String, i32)>, String> {
    let empty = BTreeMap::new();
    let a = ing.metadata.annotations.as_ref().unwrap_or(&empty);
    fn pick<'a>(a: &'a BTreeMap<String, String>, keys: [&'static str; 2]) -> Option<(&'static str, &'a str)> {
        keys.into_iter().find_map(|k| a.get(k).map(|v| (k, v.trim())))
    }
    let Some((key, name)) = pick(a, [ann::GROUP_NAME, ann::ALB_GROUP_NAME]) else { return Ok(None) };
    let valid = !name.is_empty()
        && name.len() <= 63
        && name.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '.')
        && name.starts_with(|c: char| c.is_ascii_alphanumeric())
        && name.ends_with(|c: char| c.is_ascii_alphanumeric());
    if !valid {
        return Err(format!(
            "annotation {key}: {name:?} is not a valid group name (1-63 lowercase letters, digits, '-' or '.', \
             starting and ending with a letter or digit)"
        ));
    }
    let order = match pick(a, [ann::GROUP_ORDER, ann::ALB_GROUP_ORDER]) {
        None => 0,
        Some((key, v)) => match v.parse::<i32>() {
            Ok(n) if (-1000..=1000).contains(&n) => n,
            _ => return Err(format!("annotation {key}: {v:?} is not an integer from -1000 to 1000")),
        },
    };
    Ok(Some((name.to_string(), order)))
}

/// The id of group `name`'s load balancer in `cluster`.
pub fn group_id(cluster: &str, name: &str) -> LoadBalancerId {
    LoadBalancerId::new(cluster, "", name, format!("ingress-group/{name}"))
}

/// One member as the merge sees it.
#[derive(Clone, Debug)]
pub struct Member {
    /// `namespace/name`.
    pub key: String,
    pub order: i32,
    pub spec: L7Spec,
}

/// The group's spec, plus what the merge says about each member (by key).
#[derive(Debug, Default)]
pub struct Merged {
    /// `None` when no member could join.
    pub spec: Option<L7Spec>,
    /// Members left out, with the reason.
    pub excluded: BTreeMap<String, String>,
    /// Parts of a member the group does without.
    pub warnings: BTreeMap<String, Vec<String>>,
}

/// Merges the members (in any order) into one spec.
pub fn merge(group: &str, mut members: Vec<Member>) -> Merged {
    members.sort_by(|a, b| (a.order, &a.key).cmp(&(b.order, &b.key)));
    let mut out = Merged::default();
    let warn = |out: &mut Merged, key: &str, w: String| out.warnings.entry(key.to_string()).or_default().push(w);
    let mut order_of: BTreeMap<(String, String), i32> = BTreeMap::new();
    let mut merged: Option<(String, L7Spec)> = None;
    for m in members {
        let Some((base_key, spec)) = merged.as_mut() else {
            order_of.insert(split(&m.key), m.order);
            let mut base = m.spec;
            base.options.retain(|k, _| !k.starts_with("group."));
            merged = Some((m.key, base));
            continue;
        };
        if m.spec.scheme != spec.scheme {
            out.excluded.insert(
                m.key.clone(),
                format!(
                    "Ingress group {group:?} is {:?} (set by {base_key}, its first member) but this Ingress asks for {:?}; \
                     it is left out of the group until they agree",
                    spec.scheme, m.spec.scheme
                ),
            );
            continue;
        }
        order_of.insert(split(&m.key), m.order);
        for l in &m.spec.listeners {
            match spec.listeners.iter().find(|x| x.port == l.port) {
                Some(x) if x.protocol != l.protocol => warn(
                    &mut out,
                    &m.key,
                    format!(
                        "port {} is {} in the group (set by {base_key}); this Ingress's {} is not served there",
                        l.port,
                        x.protocol.as_str(),
                        l.protocol.as_str()
                    ),
                ),
                Some(_) => {}
                None => spec.listeners.push(l.clone()),
            }
        }
        for v in m.spec.virtual_hosts {
            match spec.virtual_hosts.iter_mut().find(|x| x.host == v.host) {
                Some(x) => {
                    for r in v.routes {
                        if x.routes.iter().any(|y| y.matches == r.matches) {
                            warn(
                                &mut out,
                                &m.key,
                                format!(
                                    "host {} path {}: another member of group {group:?} has it first; this one is left out",
                                    x.host, r.matches.path
                                ),
                            );
                        } else {
                            x.routes.push(r);
                        }
                    }
                }
                None => spec.virtual_hosts.push(v),
            }
        }
        if m.spec.default_action != RouteAction::not_found() {
            if spec.default_action == RouteAction::not_found() {
                spec.default_action = m.spec.default_action.clone();
            } else if spec.default_action != m.spec.default_action {
                warn(
                    &mut out,
                    &m.key,
                    format!("group {group:?} already has a default backend; this Ingress's is not used"),
                );
            }
        }
        for b in m.spec.backends {
            if spec.backend(&b.id).is_none() {
                spec.backends.push(b);
                spec.backends.sort_by(|a, b| a.id.cmp(&b.id));
            }
        }
        for c in m.spec.certificates {
            if !spec.certificates.iter().any(|x| x.name == c.name) {
                spec.certificates.push(c);
            }
        }
        spec.source_ranges.extend(m.spec.source_ranges);
        for (k, v) in m.spec.options.iter().filter(|(k, _)| !k.starts_with("group.")) {
            match spec.options.get(k) {
                Some(first) if first != v => {
                    let w = format!("option {k}: the group uses {first:?} (from {base_key}), not {v:?}");
                    warn(&mut out, &m.key, w);
                }
                Some(_) => {}
                None => {
                    spec.options.insert(k.clone(), v.clone());
                }
            }
        }
    }
    let Some((_, mut spec)) = merged else { return out };
    spec.listeners.sort();
    spec.certificates.sort_by(|a, b| a.name.cmp(&b.name));
    spec.source_ranges.sort();
    spec.source_ranges.dedup();
    for v in &mut spec.virtual_hosts {
        v.sort_routes();
        // Stable: the Kubernetes precedence stays within one group.order.
        v.routes
            .sort_by_key(|r| order_of.get(&(r.origin.namespace.clone(), r.origin.name.clone())).copied().unwrap_or(0));
    }
    spec.sort_virtual_hosts();
    out.spec = Some(spec);
    out
}

fn split(key: &str) -> (String, String) {
    let (ns, name) = key.split_once('/').unwrap_or(("", key));
    (ns.to_string(), name.to_string())
}

#[cfg(test)]
mod tests;
