//! The Ingress front end: Ingresses whose IngressClass is ours get an L7 load balancer; the
//! address goes to `status.loadBalancer.ingress` (`kubectl get ingress` ADDRESS).
//!
//! An Ingress depends on more than itself, and is re-synced when any of it changes — and only
//! the Ingresses concerned:
//!
//! ```text
//!  IngressClass ──(any change)──────────────▶ every Ingress (claims may change)
//!  Service ──(ports, nodePorts, type)───────▶ Ingresses routing to it      ┐ reconcile_on
//!  Secret (type kubernetes.io/tls only) ────▶ Ingresses terminating with it ┘
//!  eligible node set ───────────────────────▶ every Ingress (only changed targets reach the provider)
//! ```
//!
//! The Ingress status has no conditions: problems are reported as events, once per change
//! (the last reported condition is remembered in memory).

use cloudlb_provider::{IngressPoint, L7Spec, LoadBalancerId, LoadBalancerStatus, Record};
use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::api::networking::v1::{Ingress, IngressLoadBalancerIngress, IngressPortStatus};
use kube::runtime::reflector::{ObjectRef, Store};
use serde_json::{Value, json};

use super::Context;
use super::context::key;
use super::frontend::{Built, Desired, FrontEnd, Layer};
use super::status::{Cond, HealthCond};
use crate::claim::ingress as claim;
use crate::desired::Invalid;
use crate::desired::ingress::group::{self, Member};
use crate::desired::ingress::{self as desired, Inputs};
use crate::desired::nodes::NodeSnapshot;

impl FrontEnd for Ingress {
    const KIND: &'static str = "Ingress";
    const LAYER: Layer = Layer::L7;

    fn claimed(&self, ctx: &Context) -> bool {
        let Some(caches) = &ctx.ingress else { return false };
        claim::is_claimed(self, &caches.classes.state(), &ctx.config.claim.ingress_controller)
    }

    fn requested_class(&self) -> String {
        claim::requested_class(self)
    }

    fn claim_settings(ctx: &Context) -> String {
        format!("--ingress-controller-name {}", ctx.config.claim.ingress_controller)
    }

    fn wants_load_balancer(&self) -> bool {
        true
    }

    fn build(&self, ctx: &Context, nodes: &NodeSnapshot) -> Result<Built, Invalid> {
        let (spec, warnings) = build_own(self, ctx, nodes)?;
        let Some((name, order)) = group::group_of(self).map_err(|p| Invalid { problems: vec![p] })? else {
            return Ok(Built { desired: Desired::L7(spec), warnings });
        };
        let me = Member { key: key(self), order, spec };
        let merged = group::merge(&name, std::iter::once(me).chain(other_members(self, ctx, nodes, &name)).collect());
        if let Some(why) = merged.excluded.get(&key(self)) {
            return Err(Invalid { problems: vec![why.clone()] });
        }
        let spec = checked_group(ctx, &name, merged.spec)?;
        let mut warnings = warnings;
        warnings.extend(merged.warnings.get(&key(self)).cloned().unwrap_or_default());
        Ok(Built { desired: Desired::L7(spec), warnings })
    }

    fn still_cached(&self, ctx: &Context) -> bool {
        let Some(caches) = &ctx.ingress else { return false };
        caches.ingresses.get(&ObjectRef::from_obj(self)).is_some_and(|i| i.metadata.uid == self.metadata.uid)
    }

    fn lb_id(&self, ctx: &Context) -> LoadBalancerId {
        match group::group_of(self) {
            Ok(Some((name, _))) => group::group_id(&ctx.config.cluster_name, &name),
            _ => ctx.lb_id(self),
        }
    }

    fn shared_remainder(&self, ctx: &Context, nodes: &NodeSnapshot) -> Option<Desired> {
        let Ok(Some((name, _))) = group::group_of(self) else { return None };
        remainder(self, ctx, nodes, &name)
    }

    fn annotate_record(&self, record: &mut Record) {
        if let Ok(Some((name, _))) = group::group_of(self) {
            record.set(RECORD_GROUP, name);
        }
    }

    fn left_behind(
        &self,
        ctx: &Context,
        nodes: &NodeSnapshot,
        record: Option<&Record>,
    ) -> Option<(LoadBalancerId, Option<Desired>)> {
        // What the record says this Ingress used; no record: nothing was made yet.
        let record = record.filter(|r| !r.0.is_empty())?;
        let before = record.get(RECORD_GROUP).map(String::from);
        let now = group::group_of(self).ok().flatten().map(|(n, _)| n);
        if before == now {
            return None;
        }
        match before {
            // It had its own load balancer and joined a group.
            None => Some((ctx.lb_id(self), None)),
            Some(old) => Some((group::group_id(&ctx.config.cluster_name, &old), remainder(self, ctx, nodes, &old))),
        }
    }

    fn has_address(&self) -> bool {
        !current(self).is_empty()
    }

    fn condition(&self) -> Option<Cond> {
        None
    }

    /// An Ingress's status has no conditions: the health shows in events only.
    fn health_condition(&self) -> Option<HealthCond> {
        None
    }

    fn status_patch(
        &self,
        lb: Option<(&LoadBalancerStatus, &Desired)>,
        _cond: &Cond,
        _health: Option<&HealthCond>,
    ) -> Option<Value> {
        let (st, Desired::L7(spec)) = lb? else { return None };
        let ports: Vec<IngressPortStatus> = desired::listener_ports(spec)
            .into_iter()
            .map(|port| IngressPortStatus { port: i32::from(port), protocol: "TCP".into(), error: None })
            .collect();
        let want: Vec<IngressLoadBalancerIngress> = st
            .ingress
            .iter()
            .map(|p| match p {
                IngressPoint::Ip(ip) => IngressLoadBalancerIngress {
                    ip: Some(ip.to_string()),
                    ports: Some(ports.clone()),
                    ..Default::default()
                },
                IngressPoint::Hostname(h) => IngressLoadBalancerIngress {
                    hostname: Some(h.clone()),
                    ports: Some(ports.clone()),
                    ..Default::default()
                },
            })
            .collect();
        (current(self) != want).then(|| json!({ "status": { "loadBalancer": { "ingress": want } } }))
    }

    fn clear_status_patch(&self) -> Option<Value> {
        (!current(self).is_empty()).then(|| json!({ "status": { "loadBalancer": { "ingress": null } } }))
    }

    fn trim(&mut self) {
        super::service::trim_meta(&mut self.metadata);
    }
}

/// Record key of the Ingress group whose load balancer the record describes.
const RECORD_GROUP: &str = "cloudlb.io/group";

/// This Ingress's own spec (without its group), checked against the provider.
fn build_own(ing: &Ingress, ctx: &Context, nodes: &NodeSnapshot) -> Result<(L7Spec, Vec<String>), Invalid> {
    let (Some(caches), Some(config)) = (&ctx.ingress, &ctx.config.ingress) else {
        return Err(Invalid { problems: vec!["Ingresses are not watched by this controller".into()] });
    };
    let services = |ns: &str, name: &str| ctx.service(ns, name);
    let secrets = |ns: &str, name: &str| caches.secrets.get(&ObjectRef::new(name).within(ns));
    let last_good = |name: &str| ctx.last_good_certificate(name);
    let inputs = Inputs { services: &services, secrets: &secrets, last_good: &last_good, nodes, config };
    let built = desired::build_for(ing, &inputs, &ctx.caps, ctx.provider.as_ref())?;
    ctx.remember_certificates(&built.valid_certificates);
    Ok((built.spec, built.warnings))
}

/// The other members of group `name` that can join it: claimed, not being deleted, valid.
fn other_members(me: &Ingress, ctx: &Context, nodes: &NodeSnapshot, name: &str) -> Vec<Member> {
    let Some(caches) = &ctx.ingress else { return Vec::new() };
    caches
        .ingresses
        .state()
        .iter()
        .filter(|i| i.metadata.uid != me.metadata.uid)
        .filter(|i| i.metadata.deletion_timestamp.is_none() && i.claimed(ctx))
        .filter_map(|i| {
            let (n, order) = group::group_of(i).ok().flatten()?;
            if n != name {
                return None;
            }
            let (spec, _) = build_own(i, ctx, nodes).ok()?;
            Some(Member { key: key(i.as_ref()), order, spec })
        })
        .collect()
}

/// Group `name`'s load balancer without `me`; `None` when no other member can keep it.
fn remainder(me: &Ingress, ctx: &Context, nodes: &NodeSnapshot, name: &str) -> Option<Desired> {
    let merged = group::merge(name, other_members(me, ctx, nodes, name));
    checked_group(ctx, name, merged.spec).ok().map(Desired::L7)
}

/// The merged spec, when there is one and the provider can build it.
fn checked_group(ctx: &Context, name: &str, spec: Option<L7Spec>) -> Result<L7Spec, Invalid> {
    let spec = spec.ok_or_else(|| Invalid { problems: vec![format!("Ingress group {name:?} has no valid member")] })?;
    let mut problems = ctx.caps.l7.as_ref().map(|c| c.check(&spec)).unwrap_or_default();
    problems.extend(ctx.provider.validate_l7(&spec));
    if problems.is_empty() {
        Ok(spec)
    } else {
        Err(Invalid { problems: problems.into_iter().map(|p| format!("Ingress group {name:?}: {p}")).collect() })
    }
}

fn current(ing: &Ingress) -> Vec<IngressLoadBalancerIngress> {
    ing.status.as_ref().and_then(|s| s.load_balancer.as_ref()).and_then(|lb| lb.ingress.clone()).unwrap_or_default()
}

/// The Ingresses (from `ingresses`) that route to the Service `(namespace, name)`.
pub fn routing_to(ingresses: &Store<Ingress>, namespace: &str, name: &str) -> Vec<ObjectRef<Ingress>> {
    ingresses
        .state()
        .iter()
        .filter(|i| i.metadata.namespace.as_deref() == Some(namespace))
        .filter(|i| desired::referenced_services(i).iter().any(|(_, n)| n == name))
        .map(|i| ObjectRef::from_obj(i.as_ref()))
        .collect()
}

/// The Ingresses that terminate TLS with the Secret `(namespace, name)`.
pub fn using_secret(ingresses: &Store<Ingress>, namespace: &str, name: &str) -> Vec<ObjectRef<Ingress>> {
    ingresses
        .state()
        .iter()
        .filter(|i| i.metadata.namespace.as_deref() == Some(namespace))
        .filter(|i| desired::referenced_secrets(i).iter().any(|(_, n)| n == name))
        .map(|i| ObjectRef::from_obj(i.as_ref()))
        .collect()
}

/// Secrets as the Ingress controller watches them: only `kubernetes.io/tls`.
pub const TLS_SECRET_SELECTOR: &str = "type=kubernetes.io/tls";

/// Keeps only what the builder reads of a Secret.
pub fn trim_secret(secret: &mut Secret) {
    secret.metadata.managed_fields = None;
    secret.metadata.annotations = None;
    secret.metadata.labels = None;
    if let Some(data) = secret.data.as_mut() {
        data.retain(|k, _| k == "tls.crt" || k == "tls.key");
    }
    secret.string_data = None;
}
