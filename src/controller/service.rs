//! The Service front end: `type: LoadBalancer` Services of our class get an L4 load balancer;
//! the address goes to `status.loadBalancer.ingress` and our condition to `status.conditions`.

use cloudlb_provider::LoadBalancerStatus;
use k8s_openapi::api::core::v1::{Service, ServicePort, ServiceSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::Resource;
use kube::runtime::reflector::ObjectRef;
use serde_json::Value;

use super::Context;
use super::cached::CachedService;
use super::frontend::{Built, Desired, FrontEnd, Layer};
use super::reconcile::has_finalizer;
use super::status::{self, Cond, HealthCond};
use crate::claim::is_claimed;
use crate::desired::Invalid;
use crate::desired::nodes::NodeSnapshot;
use crate::keys::LAST_APPLIED;
use crate::keys::ingress::HEALTHCHECK_PATH;

/// Whether the Service cache holds this Service at all: load balancers, Services carrying our
/// finalizer, and NodePort Services (Ingress backends). ClusterIP, headless and ExternalName
/// Services, usually most of a cluster's, are never read: an Ingress backend of that kind gets
/// the same warning as a missing one.
pub fn cached(svc: &Service) -> bool {
    svc.wants_load_balancer()
        || has_finalizer(svc)
        || svc.spec.as_ref().and_then(|s| s.type_.as_deref()) == Some("NodePort")
}

impl FrontEnd for Service {
    const KIND: &'static str = "Service";
    const LAYER: Layer = Layer::L4;

    fn claimed(&self, ctx: &Context) -> bool {
        is_claimed(self, &ctx.config.claim)
    }

    fn requested_class(&self) -> String {
        self.spec.as_ref().and_then(|s| s.load_balancer_class.clone()).unwrap_or_default()
    }

    fn claim_settings(ctx: &Context) -> String {
        let claim = &ctx.config.claim;
        format!("--load-balancer-class {}, --manage-unclassed {}", claim.class, claim.manage_unclassed)
    }

    fn wants_load_balancer(&self) -> bool {
        self.spec.as_ref().and_then(|s| s.type_.as_deref()) == Some("LoadBalancer")
    }

    fn build(&self, ctx: &Context, nodes: &NodeSnapshot) -> Result<Built, Invalid> {
        let spec =
            crate::desired::service::build_for(self, nodes, &ctx.config.desired, &ctx.caps, ctx.provider.as_ref())?;
        Ok(Built { desired: Desired::L4(spec), warnings: Vec::new() })
    }

    fn has_address(&self) -> bool {
        self.status
            .as_ref()
            .and_then(|s| s.load_balancer.as_ref())
            .and_then(|lb| lb.ingress.as_ref())
            .is_some_and(|i| !i.is_empty())
    }

    fn condition(&self) -> Option<Cond> {
        status::condition(self)
    }

    fn status_patch(
        &self,
        lb: Option<(&LoadBalancerStatus, &Desired)>,
        cond: &Cond,
        health: Option<&HealthCond>,
    ) -> Option<Value> {
        let ingress = lb.and_then(|(st, desired)| match desired {
            Desired::L4(spec) => Some(status::ingress(&st.ingress, st.ip_mode, &spec.listeners)),
            Desired::L7(_) => None,
        });
        status::patch(self, ingress, Some(cond), health)
    }

    fn health_condition(&self) -> Option<HealthCond> {
        status::health_condition(self)
    }

    fn clear_status_patch(&self) -> Option<Value> {
        status::clear(self)
    }

    /// Services that are not load balancers and do not carry our finalizer are cut down to their
    /// identity and type, and for NodePort Services the ports (name, port, nodePort, protocol)
    /// and health-check path an Ingress backend needs: a cluster has many more of them than load
    /// balancers, and they must cost next to nothing.
    /// Load balancers keep what the builder and the status writes read: not the pod selector,
    /// cluster IPs, labels or owner references (with ten thousand Services that is a fifth of the
    /// cache), and never `kubectl apply`'s copy of the whole object.
    fn still_cached(&self, ctx: &Context) -> bool {
        // The cached metadata alone: no decode of the rest on every pass.
        let key = ObjectRef::<CachedService>::new(self.metadata.name.as_deref().unwrap_or_default())
            .within(self.metadata.namespace.as_deref().unwrap_or_default());
        ctx.services.get(&key).is_some_and(|c| c.meta().uid == self.metadata.uid)
    }

    fn trim(&mut self) {
        trim_meta(&mut self.metadata);
        let relevant = self.wants_load_balancer() || has_finalizer(self);
        let spec = self.spec.get_or_insert_with(Default::default);
        if relevant {
            spec.selector = None;
            spec.cluster_ip = None;
            spec.cluster_ips = None;
            spec.external_ips = None;
            spec.external_name = None;
            spec.internal_traffic_policy = None;
            spec.publish_not_ready_addresses = None;
            spec.traffic_distribution = None;
        } else {
            let node_ports = spec.type_.as_deref() == Some("NodePort");
            let ports = node_ports.then(|| {
                spec.ports
                    .take()
                    .unwrap_or_default()
                    .into_iter()
                    .map(|p| ServicePort {
                        name: p.name,
                        port: p.port,
                        node_port: p.node_port,
                        protocol: p.protocol,
                        ..Default::default()
                    })
                    .collect()
            });
            *spec = ServiceSpec {
                type_: spec.type_.take(),
                load_balancer_class: spec.load_balancer_class.take(),
                ports,
                ..Default::default()
            };
            self.metadata.annotations = self
                .metadata
                .annotations
                .take()
                .filter(|_| node_ports)
                .map(|a| a.into_iter().filter(|(k, _)| k == HEALTHCHECK_PATH).collect())
                .filter(|a: &std::collections::BTreeMap<String, String>| !a.is_empty());
            self.status = None;
        }
    }
}

/// What no front end reads of any cached object's metadata.
pub fn trim_meta(meta: &mut ObjectMeta) {
    meta.managed_fields = None;
    meta.labels = None;
    meta.owner_references = None;
    meta.generate_name = None;
    meta.self_link = None;
    if let Some(a) = meta.annotations.as_mut() {
        a.remove(LAST_APPLIED);
    }
}
