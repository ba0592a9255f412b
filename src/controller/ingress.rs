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

use cloudlb_provider::{IngressPoint, LoadBalancerStatus};
use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::api::networking::v1::{Ingress, IngressLoadBalancerIngress, IngressPortStatus};
use kube::runtime::reflector::{ObjectRef, Store};
use serde_json::{Value, json};

use super::Context;
use super::frontend::{Built, Desired, FrontEnd, Layer};
use super::status::Cond;
use crate::claim::ingress as claim;
use crate::desired::Invalid;
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
        let (Some(caches), Some(config)) = (&ctx.ingress, &ctx.config.ingress) else {
            return Err(Invalid { problems: vec!["Ingresses are not watched by this controller".into()] });
        };
        let services = |ns: &str, name: &str| ctx.service(ns, name);
        let secrets = |ns: &str, name: &str| caches.secrets.get(&ObjectRef::new(name).within(ns));
        let last_good = |name: &str| ctx.last_good_certificate(name);
        let inputs = Inputs { services: &services, secrets: &secrets, last_good: &last_good, nodes, config };
        let built = desired::build_for(self, &inputs, &ctx.caps, ctx.provider.as_ref())?;
        ctx.remember_certificates(&built.valid_certificates);
        Ok(Built { desired: Desired::L7(built.spec), warnings: built.warnings })
    }

    fn has_address(&self) -> bool {
        !current(self).is_empty()
    }

    fn condition(&self) -> Option<Cond> {
        None
    }

    fn status_patch(&self, lb: Option<(&LoadBalancerStatus, &Desired)>, _cond: &Cond) -> Option<Value> {
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
