//! The collections this fake serves, as data: one table drives routing, storage keys,
//! self-links, `kind`, fingerprints, the verbs each collection has and the reference fields
//! that make up the in-use graph. Adding a collection is one entry here plus, when it has
//! semantics beyond "store what was sent", a module under `kinds/`.

/// Where a collection lives in the URL: `global/…`, `regions/{r}/…` or `zones/{z}/…`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Scope {
    Global,
    Regional,
    Zonal,
}

/// One collection. Regional and global twins (`regions/r/addresses`, `global/addresses`) are
/// distinct collections, as they are distinct APIs in Compute.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum Coll {
    Address,
    GlobalAddress,
    ForwardingRule,
    GlobalForwardingRule,
    RegionBackendService,
    BackendService,
    RegionHealthCheck,
    HealthCheck,
    HttpHealthCheck,
    TargetPool,
    Firewall,
    UrlMap,
    TargetHttpProxy,
    TargetHttpsProxy,
    SslCertificate,
    InstanceGroup,
    Instance,
}

/// A field of a resource that names another resource, and which collections it may name.
///
/// `path` is a tiny path language: segments separated by `.`, a trailing `[]` iterates an array
/// (`backends[].group`, `pathMatchers[].pathRules[].service`).
#[derive(Debug)]
pub struct RefSpec {
    pub path: &'static str,
    pub targets: &'static [Coll],
}

#[derive(Debug)]
pub struct Def {
    pub coll: Coll,
    pub scope: Scope,
    /// URL segment: `addresses`, `forwardingRules`, …
    pub segment: &'static str,
    /// `kind` of one resource: `compute#address`.
    pub kind: &'static str,
    /// `kind` of a list: `compute#addressList`.
    pub list_kind: &'static str,
    /// Noun in in-use messages: "The health_check resource '…' is already being used by '…'".
    pub noun: &'static str,
    /// Carries `fingerprint` (optimistic locking on update/patch).
    pub fingerprint: bool,
    /// Carries `labels` and `labelFingerprint` (`setLabels`).
    pub labels: bool,
    /// Clients may insert and delete (instances are seeded through the admin API instead).
    pub writable: bool,
    /// `PUT` (update, full replace).
    pub update: bool,
    /// `PATCH` (JSON merge patch).
    pub patch: bool,
    /// Custom `POST …/{name}/{action}` methods.
    pub actions: &'static [&'static str],
    /// Reference fields (normalized to absolute self-links, checked for existence, in-use edges).
    pub refs: &'static [RefSpec],
}

use Coll::*;

const BS_REFS: &[RefSpec] = &[
    RefSpec { path: "healthChecks[]", targets: &[HealthCheck, RegionHealthCheck, HttpHealthCheck] },
    RefSpec { path: "backends[].group", targets: &[InstanceGroup] },
];

const URL_MAP_REFS: &[RefSpec] = &[
    RefSpec { path: "defaultService", targets: &[BackendService] },
    RefSpec { path: "defaultRouteAction.weightedBackendServices[].backendService", targets: &[BackendService] },
    RefSpec { path: "pathMatchers[].defaultService", targets: &[BackendService] },
    RefSpec {
        path: "pathMatchers[].defaultRouteAction.weightedBackendServices[].backendService",
        targets: &[BackendService],
    },
    RefSpec { path: "pathMatchers[].pathRules[].service", targets: &[BackendService] },
    RefSpec {
        path: "pathMatchers[].pathRules[].routeAction.weightedBackendServices[].backendService",
        targets: &[BackendService],
    },
    RefSpec { path: "pathMatchers[].routeRules[].service", targets: &[BackendService] },
    RefSpec {
        path: "pathMatchers[].routeRules[].routeAction.weightedBackendServices[].backendService",
        targets: &[BackendService],
    },
];

pub static DEFS: &[Def] = &[
    Def {
        coll: Address,
        scope: Scope::Regional,
        segment: "addresses",
        kind: "compute#address",
        list_kind: "compute#addressList",
        noun: "address",
        fingerprint: false,
        labels: true,
        writable: true,
        update: false,
        patch: false,
        actions: &["setLabels"],
        refs: &[],
    },
    Def {
        coll: GlobalAddress,
        scope: Scope::Global,
        segment: "addresses",
        kind: "compute#address",
        list_kind: "compute#addressList",
        noun: "address",
        fingerprint: false,
        labels: true,
        writable: true,
        update: false,
        patch: false,
        actions: &["setLabels"],
        refs: &[],
    },
    Def {
        coll: ForwardingRule,
        scope: Scope::Regional,
        segment: "forwardingRules",
        kind: "compute#forwardingRule",
        list_kind: "compute#forwardingRuleList",
        noun: "forwarding_rule",
        fingerprint: true,
        labels: true,
        writable: true,
        update: false,
        patch: true,
        actions: &["setLabels", "setTarget"],
        refs: &[
            RefSpec { path: "target", targets: &[TargetPool] },
            RefSpec { path: "backendService", targets: &[RegionBackendService] },
        ],
    },
    Def {
        coll: GlobalForwardingRule,
        scope: Scope::Global,
        segment: "forwardingRules",
        kind: "compute#forwardingRule",
        list_kind: "compute#forwardingRuleList",
        noun: "forwarding_rule",
        fingerprint: true,
        labels: true,
        writable: true,
        update: false,
        patch: true,
        actions: &["setLabels", "setTarget"],
        refs: &[RefSpec { path: "target", targets: &[TargetHttpProxy, TargetHttpsProxy] }],
    },
    Def {
        coll: RegionBackendService,
        scope: Scope::Regional,
        segment: "backendServices",
        kind: "compute#backendService",
        list_kind: "compute#backendServiceList",
        noun: "backend_service",
        fingerprint: true,
        labels: false,
        writable: true,
        update: true,
        patch: true,
        actions: &["getHealth"],
        refs: BS_REFS,
    },
    Def {
        coll: BackendService,
        scope: Scope::Global,
        segment: "backendServices",
        kind: "compute#backendService",
        list_kind: "compute#backendServiceList",
        noun: "backend_service",
        fingerprint: true,
        labels: false,
        writable: true,
        update: true,
        patch: true,
        actions: &["getHealth"],
        refs: BS_REFS,
    },
    Def {
        coll: RegionHealthCheck,
        scope: Scope::Regional,
        segment: "healthChecks",
        kind: "compute#healthCheck",
        list_kind: "compute#healthCheckList",
        noun: "health_check",
        fingerprint: false,
        labels: false,
        writable: true,
        update: true,
        patch: true,
        actions: &[],
        refs: &[],
    },
    Def {
        coll: HealthCheck,
        scope: Scope::Global,
        segment: "healthChecks",
        kind: "compute#healthCheck",
        list_kind: "compute#healthCheckList",
        noun: "health_check",
        fingerprint: false,
        labels: false,
        writable: true,
        update: true,
        patch: true,
        actions: &[],
        refs: &[],
    },
    Def {
        coll: HttpHealthCheck,
        scope: Scope::Global,
        segment: "httpHealthChecks",
        kind: "compute#httpHealthCheck",
        list_kind: "compute#httpHealthCheckList",
        noun: "http_health_check",
        fingerprint: false,
        labels: false,
        writable: true,
        update: true,
        patch: true,
        actions: &[],
        refs: &[],
    },
    Def {
        coll: TargetPool,
        scope: Scope::Regional,
        segment: "targetPools",
        kind: "compute#targetPool",
        list_kind: "compute#targetPoolList",
        noun: "target_pool",
        fingerprint: false,
        labels: false,
        writable: true,
        update: false,
        patch: false,
        actions: &["addInstance", "removeInstance", "addHealthCheck", "removeHealthCheck", "getHealth"],
        refs: &[
            RefSpec { path: "healthChecks[]", targets: &[HttpHealthCheck] },
            RefSpec { path: "instances[]", targets: &[Instance] },
        ],
    },
    Def {
        coll: Firewall,
        scope: Scope::Global,
        segment: "firewalls",
        kind: "compute#firewall",
        list_kind: "compute#firewallList",
        noun: "firewall",
        fingerprint: false,
        labels: false,
        writable: true,
        update: true,
        patch: true,
        actions: &[],
        refs: &[],
    },
    Def {
        coll: UrlMap,
        scope: Scope::Global,
        segment: "urlMaps",
        kind: "compute#urlMap",
        list_kind: "compute#urlMapList",
        noun: "url_map",
        fingerprint: true,
        labels: false,
        writable: true,
        update: true,
        patch: true,
        actions: &[],
        refs: URL_MAP_REFS,
    },
    Def {
        coll: TargetHttpProxy,
        scope: Scope::Global,
        segment: "targetHttpProxies",
        kind: "compute#targetHttpProxy",
        list_kind: "compute#targetHttpProxyList",
        noun: "target_http_proxy",
        fingerprint: true,
        labels: false,
        writable: true,
        update: false,
        patch: true,
        actions: &[],
        refs: &[RefSpec { path: "urlMap", targets: &[UrlMap] }],
    },
    Def {
        coll: TargetHttpsProxy,
        scope: Scope::Global,
        segment: "targetHttpsProxies",
        kind: "compute#targetHttpsProxy",
        list_kind: "compute#targetHttpsProxyList",
        noun: "target_https_proxy",
        fingerprint: true,
        labels: false,
        writable: true,
        update: false,
        patch: true,
        actions: &[],
        refs: &[
            RefSpec { path: "urlMap", targets: &[UrlMap] },
            RefSpec { path: "sslCertificates[]", targets: &[SslCertificate] },
        ],
    },
    Def {
        coll: SslCertificate,
        scope: Scope::Global,
        segment: "sslCertificates",
        kind: "compute#sslCertificate",
        list_kind: "compute#sslCertificateList",
        noun: "ssl_certificate",
        fingerprint: false,
        labels: false,
        writable: true,
        update: false,
        patch: false,
        actions: &[],
        refs: &[],
    },
    Def {
        coll: InstanceGroup,
        scope: Scope::Zonal,
        segment: "instanceGroups",
        kind: "compute#instanceGroup",
        list_kind: "compute#instanceGroupList",
        noun: "instance_group",
        fingerprint: true,
        labels: false,
        writable: true,
        update: false,
        patch: false,
        actions: &["addInstances", "removeInstances", "listInstances", "setNamedPorts"],
        refs: &[],
    },
    Def {
        coll: Instance,
        scope: Scope::Zonal,
        segment: "instances",
        kind: "compute#instance",
        list_kind: "compute#instanceList",
        noun: "instance",
        fingerprint: false,
        labels: false,
        writable: false,
        update: false,
        patch: false,
        actions: &[],
        refs: &[],
    },
];

/// Actions that live at `projects/{p}/targetHttp(s)Proxies/{n}/…` **without** `/global/`
/// (a quirk of the real API; `setSslPolicy` and friends do have `/global/`).
pub const ROOT_PROXY_ACTIONS: &[(&str, &[&str])] =
    &[("targetHttpProxies", &["setUrlMap"]), ("targetHttpsProxies", &["setUrlMap", "setSslCertificates"])];

/// Actions that read and never mutate even though they are `POST`s.
pub const READ_ONLY_ACTIONS: &[&str] = &["listInstances", "getHealth"];

impl Coll {
    /// The table entry (DEFS is in enum order; a unit test holds it there).
    pub fn def(self) -> &'static Def {
        &DEFS[self as usize]
    }
}

/// The collection at `scope`/`segment`, if served.
pub fn lookup(scope: Scope, segment: &str) -> Option<&'static Def> {
    DEFS.iter().find(|d| d.scope == scope && d.segment == segment)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_is_in_enum_order_and_unique_per_scope() {
        for (i, d) in DEFS.iter().enumerate() {
            assert_eq!(d.coll as usize, i, "{:?} out of order", d.coll);
            assert_eq!(lookup(d.scope, d.segment).map(|x| x.coll), Some(d.coll));
        }
    }

    #[test]
    fn fingerprints_follow_the_model() {
        let fp: Vec<Coll> = DEFS.iter().filter(|d| d.fingerprint).map(|d| d.coll).collect();
        assert!(fp.contains(&ForwardingRule) && fp.contains(&UrlMap) && fp.contains(&InstanceGroup));
        assert!(!fp.contains(&Firewall) && !fp.contains(&HealthCheck));
        let labels: Vec<Coll> = DEFS.iter().filter(|d| d.labels).map(|d| d.coll).collect();
        assert_eq!(labels, vec![Address, GlobalAddress, ForwardingRule, GlobalForwardingRule]);
    }
}
