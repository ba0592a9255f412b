//! The resource types this API serves, as data: one table drives routing, discovery, storage
//! and Table printing, so adding a kind is one entry here.
//!
//! `events` is special: Events are stored once (in their `events.k8s.io/v1` shape) and served
//! through two views, core/v1 `events` and `events.k8s.io/v1 events`, converted on the way in
//! and out — the same way the real apiserver stores one internal type for both.

/// How objects of a resource are presented to the client.
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

macro_rules! def {
    ($group:expr, $plural:expr, $singular:expr, $kind:expr, $ns:expr, $short:expr, $cats:expr, $status:expr, $storage:expr, $view:expr, $gen:expr) => {
        ResourceDef {
            group: $group,
            version: "v1",
            plural: $plural,
            singular: $singular,
            kind: $kind,
            namespaced: $ns,
            short_names: $short,
            categories: $cats,
            status_subresource: $status,
            storage: $storage,
            view: $view,
            generation: $gen,
        }
    };
}

pub static RESOURCES: &[ResourceDef] = &[
    def!("", "services", "service", "Service", true, &["svc"], &["all"], true, "services", View::Native, true),
    def!("", "nodes", "node", "Node", false, &["no"], &[], true, "nodes", View::Native, false),
    def!("", "namespaces", "namespace", "Namespace", false, &["ns"], &[], true, "namespaces", View::Native, false),
    def!("", "events", "event", "Event", true, &["ev"], &[], false, "events", View::CoreEvent, false),
    def!("", "endpoints", "endpoints", "Endpoints", true, &["ep"], &[], false, "endpoints", View::Native, false),
    def!("", "pods", "pod", "Pod", true, &["po"], &["all"], true, "pods", View::Native, false),
    def!("", "configmaps", "configmap", "ConfigMap", true, &["cm"], &[], false, "configmaps", View::Native, false),
    def!("events.k8s.io", "events", "event", "Event", true, &["ev"], &[], false, "events", View::Native, false),
    def!("coordination.k8s.io", "leases", "lease", "Lease", true, &[], &[], false, "leases", View::Native, false),
    def!(
        "discovery.k8s.io",
        "endpointslices",
        "endpointslice",
        "EndpointSlice",
        true,
        &[],
        &[],
        false,
        "endpointslices",
        View::Native,
        false
    ),
];

/// API groups other than core, in discovery order.
pub const GROUPS: &[&str] = &["events.k8s.io", "coordination.k8s.io", "discovery.k8s.io"];

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

pub fn by_storage_native(storage: &str) -> Option<&'static ResourceDef> {
    RESOURCES.iter().find(|r| r.storage == storage && r.view == View::Native)
}
