//! The resource types this API serves, as data: one table drives routing, discovery, storage
//! and Table printing, and names each kind's hooks (`kinds/`), so adding a kind is one entry
//! here plus its module.
//!
//! `events` is special: Events are stored once (in their `events.k8s.io/v1` shape) and served
//! through two views, core/v1 `events` and `events.k8s.io/v1 events`, converted on the way in
//! and out — the same way the real apiserver stores one internal type for both.

/// How objects of a resource are presented to the client.
use crate::kinds::{self, Kind};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum View {
    /// Stored shape == served shape.
    Native,
    /// core/v1 Event view of the events.k8s.io/v1 storage.
    CoreEvent,
}

#[derive(Debug)]
pub struct ResourceDef {
    pub group: &'static str,
    pub version: &'static str,
    pub plural: &'static str,
    pub singular: &'static str,
    pub kind: &'static str,
    pub namespaced: bool,
    pub short_names: &'static [&'static str],
    pub categories: &'static [&'static str],
    /// Has a `status` subresource (main-resource writes then ignore `.status`).
    pub status_subresource: bool,
    /// Storage table (shared by both event views).
    pub storage: &'static str,
    pub view: View,
    /// `metadata.generation` is maintained (bumped on spec changes).
    pub generation: bool,
    /// Defaulting, admission, validation and allocation for this kind.
    pub hooks: &'static dyn Kind,
}

impl ResourceDef {
    pub fn api_version(&self) -> String {
        if self.group.is_empty() { self.version.to_string() } else { format!("{}/{}", self.group, self.version) }
    }
    pub fn list_kind(&self) -> String {
        format!("{}List", self.kind)
    }
    /// Name used in request statistics: `services`, `leases.coordination.k8s.io`.
    pub fn stat_name(&self) -> String {
        if self.group.is_empty() { self.plural.to_string() } else { format!("{}.{}", self.plural, self.group) }
    }
}

const VERBS: &[&str] = &["create", "delete", "get", "list", "patch", "update", "watch"];
pub const STATUS_VERBS: &[&str] = &["get", "patch", "update"];

pub fn verbs() -> &'static [&'static str] {
    VERBS
}

/// A namespaced, status-less, generation-less `v1` resource stored as itself with no hooks;
/// table entries override what differs.
const fn v1(group: &'static str, plural: &'static str, singular: &'static str, kind: &'static str) -> ResourceDef {
    ResourceDef {
        group,
        version: "v1",
        plural,
        singular,
        kind,
        namespaced: true,
        short_names: &[],
        categories: &[],
        status_subresource: false,
        storage: plural,
        view: View::Native,
        generation: false,
        hooks: &kinds::Plain,
    }
}

pub static RESOURCES: &[ResourceDef] = &[
    ResourceDef {
        short_names: &["svc"],
        categories: &["all"],
        status_subresource: true,
        generation: true,
        hooks: &kinds::services::Services,
        ..v1("", "services", "service", "Service")
    },
    ResourceDef {
        namespaced: false,
        short_names: &["no"],
        status_subresource: true,
        ..v1("", "nodes", "node", "Node")
    },
    ResourceDef {
        namespaced: false,
        short_names: &["ns"],
        status_subresource: true,
        hooks: &kinds::namespaces::Namespaces,
        ..v1("", "namespaces", "namespace", "Namespace")
    },
    ResourceDef {
        short_names: &["ev"],
        view: View::CoreEvent,
        hooks: &kinds::events::CoreEvents,
        ..v1("", "events", "event", "Event")
    },
    ResourceDef { short_names: &["ep"], ..v1("", "endpoints", "endpoints", "Endpoints") },
    ResourceDef {
        short_names: &["po"],
        categories: &["all"],
        status_subresource: true,
        ..v1("", "pods", "pod", "Pod")
    },
    ResourceDef { short_names: &["cm"], ..v1("", "configmaps", "configmap", "ConfigMap") },
    ResourceDef { hooks: &kinds::secrets::Secrets, ..v1("", "secrets", "secret", "Secret") },
    ResourceDef {
        short_names: &["ev"],
        hooks: &kinds::events::Events,
        ..v1("events.k8s.io", "events", "event", "Event")
    },
    ResourceDef {
        short_names: &["ing"],
        status_subresource: true,
        generation: true,
        hooks: &kinds::ingresses::Ingresses,
        ..v1("networking.k8s.io", "ingresses", "ingress", "Ingress")
    },
    ResourceDef {
        namespaced: false,
        generation: true,
        hooks: &kinds::ingress_classes::IngressClasses,
        ..v1("networking.k8s.io", "ingressclasses", "ingressclass", "IngressClass")
    },
    v1("coordination.k8s.io", "leases", "lease", "Lease"),
    v1("discovery.k8s.io", "endpointslices", "endpointslice", "EndpointSlice"),
];

/// API groups other than core, in discovery order.
pub const GROUPS: &[&str] = &["events.k8s.io", "networking.k8s.io", "coordination.k8s.io", "discovery.k8s.io"];

pub fn find(group: &str, version: &str, plural: &str) -> Option<&'static ResourceDef> {
    RESOURCES.iter().find(|r| r.group == group && r.version == version && r.plural == plural)
}

pub fn in_group_version<'a>(group: &'a str, version: &'a str) -> impl Iterator<Item = &'static ResourceDef> + use<'a> {
    RESOURCES.iter().filter(move |r| r.group == group && r.version == version)
}

/// The storage tables (deduplicated).
pub fn storages() -> Vec<&'static str> {
    let mut v: Vec<&'static str> = RESOURCES.iter().map(|r| r.storage).collect();
    v.sort_unstable();
    v.dedup();
    v
}

/// The definition a storage table is served under natively (for events: events.k8s.io/v1).
pub fn by_storage_native(storage: &str) -> Option<&'static ResourceDef> {
    RESOURCES.iter().find(|r| r.storage == storage && r.view == View::Native)
}
