//! The Service cache's compact form of a Service.
//!
//! Every Service of the cluster that cloudlb may read sits in one cache for the life of the
//! process. A `k8s_openapi` `Service` is built for editing, not for keeping: about 850 bytes of
//! mostly empty `Option`s before its strings, maps and lists, each a separate allocation. With
//! ten thousand load balancers that was half of the controller's memory. So the cache keeps what
//! it is keyed and filtered by as fields (identity, finalizers, deletion) and the rest of the
//! trimmed object as its JSON, and a pass decodes the full `Service` when it starts (a few
//! microseconds; at most `--concurrency` decoded copies exist at once).
//!
//! Decoding happens in the watch's deserializer: [`CachedService`] is what the Service watch
//! deserializes into, through `Service` (so the wire format and its checks are the same), then
//! [`FrontEnd::trim`] and [`service::cached`] decide what is kept.

use std::sync::Arc;

use k8s_openapi::NamespaceResourceScope;
use k8s_openapi::api::core::v1::Service;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use serde::{Deserialize, Deserializer};

use super::frontend::FrontEnd;
use super::service;

#[derive(Clone, Debug)]
pub struct CachedService {
    /// Identity (name, namespace, uid, resourceVersion), finalizers and deletion: what the cache
    /// is keyed by and what the sweeper filters on.
    metadata: ObjectMeta,
    /// The rest of the trimmed Service, as JSON.
    rest: Box<str>,
    /// Whether the cache keeps this Service at all ([`service::cached`] on the full object).
    kept: bool,
}

impl CachedService {
    pub fn new(mut svc: Service) -> Self {
        svc.trim();
        let kept = service::cached(&svc);
        let full = std::mem::take(&mut svc.metadata);
        let metadata = ObjectMeta {
            name: full.name,
            namespace: full.namespace,
            uid: full.uid,
            resource_version: full.resource_version,
            finalizers: full.finalizers,
            deletion_timestamp: full.deletion_timestamp,
            ..Default::default()
        };
        svc.metadata = ObjectMeta {
            annotations: full.annotations,
            creation_timestamp: full.creation_timestamp,
            deletion_grace_period_seconds: full.deletion_grace_period_seconds,
            generation: full.generation,
            ..Default::default()
        };
        // Serializing plain data to a string cannot fail; an empty rest would decode as a bare
        // Service, which reconcile then reports rather than acting on.
        let rest = serde_json::to_string(&svc).unwrap_or_default().into_boxed_str();
        Self { metadata, rest, kept }
    }

    /// Whether the Service cache keeps it.
    pub fn kept(&self) -> bool {
        self.kept
    }

    /// The Service as reconcile reads it.
    pub fn service(&self) -> Result<Service, serde_json::Error> {
        let mut svc: Service = serde_json::from_str(&self.rest)?;
        let m = &self.metadata;
        svc.metadata.name = m.name.clone();
        svc.metadata.namespace = m.namespace.clone();
        svc.metadata.uid = m.uid.clone();
        svc.metadata.resource_version = m.resource_version.clone();
        svc.metadata.finalizers = m.finalizers.clone();
        svc.metadata.deletion_timestamp = m.deletion_timestamp.clone();
        Ok(svc)
    }

    /// [`Self::service`] in an `Arc`, or `None` (logged) in the impossible case that what this
    /// process encoded does not decode.
    pub fn decoded(&self) -> Option<Arc<Service>> {
        match self.service() {
            Ok(svc) => Some(Arc::new(svc)),
            Err(e) => {
                tracing::error!(
                    service = ?self.metadata.name,
                    error = %e,
                    "cached Service does not decode; skipping it (a bug: please report)"
                );
                None
            }
        }
    }
}

impl<'de> Deserialize<'de> for CachedService {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        Service::deserialize(d).map(CachedService::new)
    }
}

impl k8s_openapi::Resource for CachedService {
    const API_VERSION: &'static str = <Service as k8s_openapi::Resource>::API_VERSION;
    const GROUP: &'static str = <Service as k8s_openapi::Resource>::GROUP;
    const KIND: &'static str = <Service as k8s_openapi::Resource>::KIND;
    const VERSION: &'static str = <Service as k8s_openapi::Resource>::VERSION;
    const URL_PATH_SEGMENT: &'static str = <Service as k8s_openapi::Resource>::URL_PATH_SEGMENT;
    type Scope = NamespaceResourceScope;
}

impl k8s_openapi::Metadata for CachedService {
    type Ty = ObjectMeta;

    fn metadata(&self) -> &ObjectMeta {
        &self.metadata
    }

    fn metadata_mut(&mut self) -> &mut ObjectMeta {
        &mut self.metadata
    }
}

/// An object as a cache holds it, and the front end a pass works on.
pub trait Cached: kube::Resource<DynamicType = ()> + Clone + Send + Sync + 'static {
    type Full: FrontEnd;

    /// The object a pass works on (`None` only if it cannot be decoded, see
    /// [`CachedService::decoded`]).
    fn full(this: &Arc<Self>) -> Option<Arc<Self::Full>>;
}

impl Cached for CachedService {
    type Full = Service;

    fn full(this: &Arc<Self>) -> Option<Arc<Service>> {
        this.decoded()
    }
}

impl Cached for k8s_openapi::api::networking::v1::Ingress {
    type Full = Self;

    fn full(this: &Arc<Self>) -> Option<Arc<Self>> {
        Some(this.clone())
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn service(v: serde_json::Value) -> Service {
        serde_json::from_value(v).expect("service")
    }

    #[test]
    fn round_trip_keeps_what_reconcile_reads_and_drops_what_it_does_not() {
        let svc = service(json!({
            "apiVersion": "v1", "kind": "Service",
            "metadata": {"name": "web", "namespace": "default", "uid": "u1", "resourceVersion": "7",
                         "finalizers": ["cloudlb.io/load-balancer-cleanup"], "generation": 3,
                         "labels": {"app": "web"},
                         "annotations": {"cloudlb.io/internal": "true",
                                         "kubectl.kubernetes.io/last-applied-configuration": "{...}"}},
            "spec": {"type": "LoadBalancer", "selector": {"app": "web"}, "clusterIP": "10.0.0.1",
                     "ports": [{"port": 80, "protocol": "TCP", "nodePort": 30080}]},
            "status": {"loadBalancer": {"ingress": [{"ip": "192.0.2.1"}]}}
        }));
        let cached = CachedService::new(svc);
        assert!(cached.kept());
        assert_eq!(cached.metadata.name.as_deref(), Some("web"));
        let back = cached.service().expect("decodes");
        assert_eq!(back.metadata.uid.as_deref(), Some("u1"));
        assert_eq!(back.metadata.resource_version.as_deref(), Some("7"));
        assert_eq!(back.metadata.generation, Some(3));
        assert_eq!(back.metadata.finalizers.as_deref(), Some(&["cloudlb.io/load-balancer-cleanup".to_string()][..]));
        let ann = back.metadata.annotations.unwrap_or_default();
        assert_eq!(ann.get("cloudlb.io/internal").map(String::as_str), Some("true"));
        assert!(!ann.contains_key("kubectl.kubernetes.io/last-applied-configuration"));
        assert_eq!(back.metadata.labels, None);
        let spec = back.spec.unwrap_or_default();
        assert_eq!(spec.selector, None, "the pod selector is never read");
        assert_eq!(spec.ports.unwrap_or_default()[0].node_port, Some(30080));
        assert_eq!(back.status.and_then(|s| s.load_balancer).and_then(|l| l.ingress).map(|i| i.len()), Some(1));
    }

    #[test]
    fn cluster_ip_services_are_not_kept() {
        let svc = service(json!({"apiVersion": "v1", "kind": "Service",
            "metadata": {"name": "db", "namespace": "default"}, "spec": {"type": "ClusterIP"}}));
        assert!(!CachedService::new(svc).kept());
        let svc = service(json!({"apiVersion": "v1", "kind": "Service",
            "metadata": {"name": "backend", "namespace": "default"}, "spec": {"type": "NodePort"}}));
        assert!(CachedService::new(svc).kept(), "Ingress backends are NodePort Services");
    }

    #[test]
    fn a_list_item_without_kind_deserializes() {
        let cached: CachedService = serde_json::from_value(json!({
            "metadata": {"name": "web", "namespace": "default"}, "spec": {"type": "LoadBalancer"}
        }))
        .expect("list items carry no apiVersion/kind");
        assert!(cached.kept());
    }
}
