//! `cloudlb-gce-fake`: a fake Google Compute Engine REST API for the load-balancing
//! collections, on 127.0.0.1 over plain HTTP/1.1 and JSON.
//!
//! It is what cloudlb's `gcp` provider and its tests run against: the real Rust client
//! (`google-cloud-compute-v1` with `.with_endpoint("http://127.0.0.1:PORT")` and anonymous
//! credentials) talks to it exactly as to `compute.googleapis.com`, and it answers the way the real
//! API does where that matters to a controller: operations that finish later, 404/409/412/400
//! with Compute's error envelope, in-use errors (synchronous or inside the operation), fingerprints,
//! name rules, references normalized to absolute self-links, IP allocation, list filters and paging.
//! It is a library ([`GceFake`]) and a binary anyone can start:
//!
//! ```text
//! cargo run -p cloudlb-gce-fake --bin gce-fake -- --port 8089 --project demo
//! curl -s localhost:8089/compute/v1/projects/demo/zones
//! curl -s -XPOST localhost:8089/_fake/instances -d '{"zone":"us-central1-a","name":"node-1"}'
//! ```
//!
//! From a Rust test (the client side is `google-cloud-compute-v1`'s builder with
//! `.with_endpoint(fake.url())`, anonymous credentials, and a short polling backoff: with the
//! default backoff every operation takes seconds, exactly as the real API's would):
//!
//! ```rust,no_run
//! use cloudlb_gce_fake::{FakeConfig, Fault, FaultKind, GceFake, InstanceSpec};
//! # async fn demo() -> Result<(), cloudlb_gce_fake::Error> {
//! let fake = GceFake::start(FakeConfig::new("test-project")).await?; // us-central1, zones -a/-b/-c
//! fake.add_instance(InstanceSpec::new("us-central1-a", "node-1"))?;
//! // … run the provider against fake.url() …
//! fake.inject(Fault::once("POST", "regions/*/backendServices", FaultKind::RateLimited));
//! fake.clear_calls();
//! // … run an unchanged ensure …
//! assert!(fake.mutations().is_empty(), "{:?}", fake.mutations());
//! assert!(fake.resource("regions/us-central1/forwardingRules/a1b2").is_some());
//! # Ok(()) }
//! ```
//!
//! ```text
//!  client ──HTTP──> http.rs ─┬─ /_fake/…  admin.rs (instances, health, calls, faults, settings, dump)
//!                            └─ /compute/v1/projects/{p}/…  api.rs: route.rs (paths) → faults.rs
//!                                 → kinds/ (verbs + per-collection rules, refs.rs, ips.rs)
//!                                 → ops.rs (operation; the Change is applied at DONE by store.rs)
//!                                 → list.rs + filter.rs (lists) ; calls.rs (log of every request)
//! ```
//!
//! # Served
//!
//! Paths are under `/compute/v1/projects/{project}/`; every path the Rust client builds for these
//! methods (its `transport.rs`) is served there. Query parameters `$alt=json`, `$apiVersion`,
//! `requestId` (a retried mutation with the same id gets the first one's operation back), `filter`,
//! `maxResults` (≤ 500, default 500), `pageToken`, `orderBy` (`name` or `creationTimestamp desc`).
//!
//! | collection | path | verbs |
//! |---|---|---|
//! | addresses | `regions/{r}/addresses`, `global/addresses` | list, get, insert, delete, `setLabels` |
//! | forwardingRules | `regions/{r}/forwardingRules`, `global/forwardingRules` | list, get, insert, delete, patch, `setLabels`, `setTarget` |
//! | backendServices | `regions/{r}/backendServices`, `global/backendServices` | list, get, insert, delete, update (PUT), patch, `getHealth` |
//! | healthChecks | `regions/{r}/healthChecks`, `global/healthChecks` | list, get, insert, delete, update, patch |
//! | httpHealthChecks | `global/httpHealthChecks` | list, get, insert, delete, update, patch |
//! | targetPools | `regions/{r}/targetPools` | list, get, insert, delete, `addInstance`, `removeInstance`, `addHealthCheck`, `removeHealthCheck`, `getHealth` |
//! | firewalls | `global/firewalls` | list, get, insert, delete, update, patch |
//! | urlMaps | `global/urlMaps` | list, get, insert, delete, update, patch |
//! | targetHttpProxies | `global/targetHttpProxies`; **`targetHttpProxies/{n}/setUrlMap`** | list, get, insert, delete, patch, `setUrlMap` |
//! | targetHttpsProxies | `global/targetHttpsProxies`; **`targetHttpsProxies/{n}/setUrlMap`, `/setSslCertificates`** | list, get, insert, delete, patch, `setUrlMap`, `setSslCertificates` |
//! | sslCertificates | `global/sslCertificates` | list, get, insert, delete |
//! | instanceGroups | `zones/{z}/instanceGroups` | list, get, insert, delete, `addInstances`, `removeInstances`, `listInstances` (POST), `setNamedPorts` |
//! | instances | `zones/{z}/instances` | list, get (seeded through the admin API) |
//! | operations | `global/operations`, `regions/{r}/operations`, `zones/{z}/operations` | list, get, `wait` (POST) |
//! | zones, regions | `zones`, `zones/{z}`, `regions`, `regions/{r}` | list, get |
//!
//! The two proxy `setUrlMap` methods and `setSslCertificates` live at `projects/{p}/targetHttp(s)Proxies/…`
//! **without** `/global/`, as in the real API; the `/global/` spelling answers 404 there.
//!
//! # Behaviour
//!
//! * **Names**: 1–63 characters, `[a-z]([-a-z0-9]*[a-z0-9])?`, else 400 `invalid`.
//! * **Insert of a taken name**: synchronous 409 `alreadyExists` (also while the first insert's
//!   operation is unfinished).
//! * **Missing resource**: 404 `notFound`, "The resource 'projects/p/…/name' was not found".
//! * **References** (health checks, backends' groups, targets, backend services, URL maps,
//!   certificates, pool instances) are accepted as absolute URLs, `projects/p/…` or `global/…`,
//!   `regions/…`, `zones/…` paths, and stored as absolute `https://www.googleapis.com/compute/v1/…`
//!   self-links. A malformed one or one of the wrong kind or region is 400 `invalid`; one naming a
//!   resource whose insert has not finished is 400 `resourceNotReady`; one naming a missing resource
//!   is **404 `notFound` naming the referenced resource** (what GCE answers, e.g. "The resource
//!   'projects/p/global/targetHttpProxies/x' was not found"). Instance-group members that do not exist
//!   or are in another zone are 400 `invalid`.
//! * **In use**: deleting a health check used by a backend service or target pool, a backend
//!   service used by a forwarding rule or URL map, a target pool used by a forwarding rule, an
//!   instance group used by a backend service, a URL map used by a proxy, a proxy used by a
//!   forwarding rule, or a certificate used by an HTTPS proxy answers 400
//!   `resourceInUseByAnotherResource`, "The health_check resource 'projects/p/…' is already being used by
//!   'projects/p/…'", synchronously or (setting [`Delivery::InOperation`]) inside the `DONE`
//!   operation. An **address used by a forwarding rule can be deleted** (the rule keeps the IP), as
//!   on real GCE, where CPG relies on it.
//! * **Fingerprints**: `fingerprint` on forwarding rules, backend services, instance groups (of its
//!   named ports), URL maps and target proxies; `labelFingerprint` on addresses and forwarding rules.
//!   URL-safe base64 with padding, returned on GET, changed by every successful mutation (the
//!   instance-group and label fingerprints are content hashes, so they change when the named ports or
//!   labels do). Stale → 412 `conditionNotMet`. Absent: `PUT` → 412 (real GCE requires it on
//!   update); `PATCH` → accepted (unless `require_patch_fingerprint`); `setLabels` → 412 (real
//!   GCE's "Labels fingerprint either invalid or resource labels have changed"); `setNamedPorts` →
//!   accepted (the field is optional in the API).
//! * **Operations**: every mutation answers a `compute#operation` (`id` as a decimal string,
//!   `name`, `operationType`, `targetLink`, `targetId`, `status`, `progress`, `insertTime`,
//!   `startTime`, `selfLink`, `user`, `region`|`zone`), `RUNNING` (`PENDING` with a delay ≥ 2) until it
//!   has been polled `op_delay_polls` times (default 1: first GET `RUNNING`, second `DONE`; 0 = `DONE`
//!   at once). `POST …/wait` completes it at once. An operation nobody polls completes
//!   `settle_after` (default 2 s) after it started, at the next request. **The effect is visible
//!   only when the operation is `DONE`** (a GET before that still sees the old state, a new insert's
//!   GET is 404). A failed operation is `DONE` with `error.errors[{code,message}]`,
//!   `httpErrorStatusCode` and `httpErrorMessage`, and changes nothing. `setLabels` is `DONE` at
//!   once. Another mutation of a resource whose operation is unfinished is 400 `resourceNotReady`.
//! * **Defaults**: absolute `selfLink`, decimal-string `id`, `creationTimestamp`, `kind`,
//!   `description: ""`; forwarding rules `IPProtocol: TCP`, `networkTier: PREMIUM`,
//!   `loadBalancingScheme: EXTERNAL`, `portRange: "80"` stored as `"80-80"`; addresses
//!   `addressType: EXTERNAL`, `networkTier: PREMIUM`, `status` `RESERVED`/`IN_USE` and `users` computed;
//!   backend services, health checks, firewalls, proxies: see their modules under `kinds/`.
//! * **IPs**: an address without `address` gets the lowest free IP of its pool (regional external
//!   203.0.113.0/24, global external 198.51.100.0/24, internal 10.128.0.0/16; configurable), and so
//!   does a forwarding rule without `IPAddress` (ephemeral). A rule with the IP (or URL) of a reserved
//!   address uses it; several rules may share a reserved address if their protocol or ports differ.
//!   An address may reserve an IP a forwarding rule already uses (promotion). Conflicts: external →
//!   synchronous 400 ("Specified IP address is in-use and would result in a conflict.", "Forwarding
//!   rule's port range is conflicting with forwarding rule …"); internal → the operation fails with
//!   409 `IP_IN_USE_BY_ANOTHER_RESOURCE`.
//! * **Instance groups**: members are instance URLs of the group's zone; adding a member twice is 400
//!   `memberAlreadyExists`; removing a non-member is accepted; `listInstances` pages `{instance,
//!   status}`. `getHealth` (backend services, target pools) reports each member `HEALTHY` unless a
//!   test marked it unhealthy.
//! * **Faults**: rules "the next N calls of METHOD path-glob fail with 403 `rateLimitExceeded` /
//!   429 / 500 / 503 / anything", synchronously or inside the operation, and a random rate of the
//!   four; see [`Fault`] and [`RandomFaults`]. [`GceFake::delay`] holds the next N requests of
//!   METHOD path-glob for a while before serving them (library only), so a test can have a call in
//!   flight while something else happens.
//! * **Call log**: every API request with method, path, query, body, status, a `mutating` flag, the
//!   verb and target ([`Call`]); [`GceFake::mutations`] for "an unchanged ensure makes no mutating
//!   call" and ordering assertions.
//!
//! # Admin API
//!
//! Under `/_fake/` (see the table in the `admin` module's docs, repeated in the README) and the
//! same through [`GceFake`]: reset, seed and remove instances, mark them unhealthy, read and clear
//! the call log, add and clear faults, change settings, settle operations, dump every resource.
//!
//! # Known differences from the real Compute API
//!
//! * One project, one region (plus the regions of the configured zones). Other projects answer
//!   404, other regions and zones 400 "Unknown region/zone". No authentication, no IAM, no quotas
//!   (except a pool running dry: 403 `quotaExceeded`), no aggregated lists, no `returnPartialSuccess`.
//! * Only the collections and methods above. Networks and subnetworks are not collections:
//!   `network`/`subnetwork` fields are normalized to absolute links but never checked. NEGs, backend
//!   buckets, SSL policies, security policies and regional L7 resources are not served (a reference to
//!   them is 400 `invalid`).
//! * Operation time is counted in polls, not seconds; `wait` completes the operation at once instead
//!   of blocking; operations never stay `RUNNING` forever (at most `settle_after`). Real GCE sometimes
//!   shows a new resource (or an address in status `RESERVING`) before its operation is `DONE`; the
//!   fake never does.
//! * `fingerprint` changes on every mutation, even one that changes nothing; real GCE hashes the
//!   content. Fingerprint values are 8 random-looking bytes, not GCE's.
//! * Which failures real GCE reports synchronously and which inside the operation varies; the fake
//!   picks one per case (documented above) and lets tests choose for in-use errors and faults.
//! * Error messages follow GCE's where they are known (404, 409, in-use, label fingerprint, IP
//!   conflicts, "healthCheck missing", "The URL is malformed."); other 400 messages are the fake's own
//!   wording with reason `invalid`. Missing *references* answer 404 (see above); which of 400/404 GCE
//!   uses for every field is not verified.
//! * Validation covers what load balancers need (enums, port ranges, CIDRs, URL-map structure,
//!   health-check sub-objects, one health check per backend service, duplicate backends, proxy
//!   certificates); many rules GCE enforces between fields (scheme/protocol/target compatibility,
//!   network-tier rules of global resources, balancing-mode capacity fields) are not checked.
//! * URL maps: route rules and route actions are stored as sent and never evaluated; which
//!   features a scheme supports (e.g. `faultInjectionPolicy`, `:authority` regex header matches on
//!   `EXTERNAL_MANAGED`, which cloudlb's GCLB uses) is not checked, nor route-rule quotas. A global
//!   backend service without backends or health check is accepted (cloudlb's fixed-answer service);
//!   that GCE accepts one is from its documentation, not verified here.
//! * Forwarding rules: an external IP must be reserved as an address of the same scope before a rule
//!   can name it (no BYOIP); internal rules may name any free IP (subnet ranges are not modelled).
//!   `PATCH` may change only `networkTier`, `allowGlobalAccess`, `allowPscGlobalAccess`,
//!   `sourceIpRanges`, `description`. `setTarget` is refused on a rule with a backend service.
//! * Filters: the subset documented in `filter.rs` (legacy `eq`/`ne` regexps and `=`, `!=`, `:`, `AND`,
//!   `OR`, `NOT`); no numeric or timestamp comparisons (`<`, `>`). `orderBy` only `name` or
//!   `creationTimestamp desc`. Page tokens resume after the last name returned (no snapshot).
//! * SSL certificates are not parsed: no `expireTime` or `subjectAlternativeNames` for self-managed
//!   ones; managed certificates are `ACTIVE` at once.
//! * Health is whatever a test sets: no probing. Instances are seeded, not created through the API;
//!   deleting one (admin) removes it from instance groups, as deleting a VM does.
//! * `removeInstances` of a non-member is accepted (not verified against GCE).
//! * One IPv4 space for the whole project: addresses, forwarding rules and instances of every
//!   network, region and scope never share an IP (except rules sharing a reserved address). No IPv6.
//! * Output-only fields GCE computes but the fake does not: backend services' `usedBy`,
//!   `selfLinkWithId`, forwarding rules' `serviceName`, instances beyond name, zone, status,
//!   `networkInterfaces[0].networkIP`, tags and labels (no disks, metadata, service accounts); zones
//!   and regions are minimal. Operations carry no `warnings`, `statusMessage` or
//!   `clientOperationId`, `user` is fixed, and their names only look like GCE's.
//! * Label keys and values are checked loosely (lowercase letters, digits, `-`, `_`, ≤ 63).

mod admin;
mod api;
mod calls;
mod collections;
mod config;
mod errors;
mod faults;
mod filter;
mod http;
mod ips;
mod kinds;
mod links;
mod list;
mod names;
mod ops;
mod refs;
mod route;
mod store;
mod time;

pub use admin::InstanceSpec;
pub use calls::Call;
pub use config::{Delivery, FakeConfig};
pub use faults::{Fault, FaultKind, RandomFaults};
pub use ips::{Pools, parse_cidrs};

use serde_json::Value;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// Errors of this crate (starting the server, and admin calls the fake refuses).
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("binding the fake Compute API listener")]
    Bind(#[source] std::io::Error),
    #[error("reading the bound address of the listener")]
    LocalAddr(#[source] std::io::Error),
    #[error("invalid configuration: {0}")]
    Config(String),
    /// An admin request the fake refused, with the HTTP status and message it would answer.
    #[error("the fake refused: {code} {message}")]
    Refused { code: u16, message: String },
}

impl From<errors::ApiError> for Error {
    fn from(e: errors::ApiError) -> Self {
        Error::Refused { code: e.code, message: e.message.clone() }
    }
}

/// A running fake Compute API. Dropping it (or [`GceFake::shutdown`]) stops serving.
pub struct GceFake {
    addr: SocketAddr,
    project: String,
    region: String,
    zones: Vec<String>,
    state: store::Shared,
    shutdown: tokio::sync::watch::Sender<bool>,
    task: Option<tokio::task::JoinHandle<()>>,
}

impl GceFake {
    /// Binds (default `127.0.0.1:0`, a free port) and starts serving on the current tokio runtime.
    pub async fn start(config: FakeConfig) -> Result<GceFake, Error> {
        if config.region.is_empty() {
            return Err(Error::Config("empty region".into()));
        }
        if config.project.is_empty() {
            return Err(Error::Config("empty project".into()));
        }
        if config.zones.is_empty() {
            return Err(Error::Config("at least one zone is needed".into()));
        }
        let listener = tokio::net::TcpListener::bind(config.bind).await.map_err(Error::Bind)?;
        let addr = listener.local_addr().map_err(Error::LocalAddr)?;
        let settings = store::Settings {
            op_delay_polls: config.op_delay_polls,
            settle_after: config.settle_after,
            in_use: config.in_use,
            require_patch_fingerprint: config.require_patch_fingerprint,
        };
        let faults = faults::Faults::new(config.random_faults, config.seed);
        let state = Arc::new(Mutex::new(store::State::new(
            config.project.clone(),
            config.region.clone(),
            config.zones.clone(),
            settings,
            config.pools.clone(),
            faults,
        )));
        let router = http::router(http::App { state: state.clone() });
        let (tx, mut rx) = tokio::sync::watch::channel(false);
        let task = tokio::spawn(async move {
            let served = axum::serve(listener, router)
                .with_graceful_shutdown(async move {
                    let _ = rx.wait_for(|s| *s).await;
                })
                .await;
            if let Err(e) = served {
                tracing::warn!(error = %e, "fake Compute API stopped with an error");
            }
        });
        tracing::debug!(%addr, project = %config.project, "fake Compute API listening");
        Ok(GceFake {
            addr,
            project: config.project,
            region: config.region,
            zones: config.zones,
            state,
            shutdown: tx,
            task: Some(task),
        })
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `http://127.0.0.1:PORT`: the endpoint for the client's `.with_endpoint(…)`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub fn project(&self) -> &str {
        &self.project
    }

    pub fn region(&self) -> &str {
        &self.region
    }

    pub fn zones(&self) -> &[String] {
        &self.zones
    }

    /// Absolute self-link of a project-relative path: `self_link("zones/z/instances/i")`.
    pub fn self_link(&self, rel: &str) -> String {
        format!("{}projects/{}/{}", links::API_PREFIX, self.project, rel.trim_start_matches('/'))
    }

    /// Locks the state; like any request, this first completes operations older than `settle_after`.
    fn lock(&self) -> std::sync::MutexGuard<'_, store::State> {
        let mut st = api::lock(&self.state);
        ops::settle_due(&mut st);
        st
    }

    /// Empties resources, instances, operations, the call log, faults and unhealthy marks.
    pub fn reset(&self) {
        self.lock().reset();
    }

    /// Seeds an instance (a node); returns it as the API shows it.
    pub fn add_instance(&self, spec: InstanceSpec) -> Result<Value, Error> {
        Ok(admin::add_instance(&mut self.lock(), &spec)?)
    }

    /// Removes an instance; it also leaves every instance group.
    pub fn remove_instance(&self, zone: &str, name: &str) -> Result<(), Error> {
        Ok(admin::remove_instance(&mut self.lock(), zone, name)?)
    }

    /// Marks an instance healthy or unhealthy for `getHealth`.
    pub fn set_healthy(&self, zone: &str, name: &str, healthy: bool) -> Result<(), Error> {
        Ok(admin::set_health(&mut self.lock(), zone, name, healthy)?)
    }

    /// Every API request so far, in order.
    pub fn calls(&self) -> Vec<Call> {
        self.lock().calls.clone()
    }

    /// The requests that asked for a change (whatever their outcome), in order.
    pub fn mutations(&self) -> Vec<Call> {
        self.lock().calls.iter().filter(|c| c.mutating).cloned().collect()
    }

    pub fn clear_calls(&self) {
        self.lock().calls.clear();
    }

    /// Adds a fault rule (checked before random faults, first matching rule first).
    pub fn inject(&self, fault: Fault) {
        self.lock().faults.rules.push(fault);
    }

    /// Holds the next `times` requests matching `method` and the glob `path` (project-relative,
    /// as for faults) for `by` before serving them.
    pub fn delay(&self, method: &str, path: &str, by: std::time::Duration, times: u32) {
        let d = faults::Delay { method: Some(method.to_string()), path: path.to_string(), by, times: Some(times) };
        self.lock().faults.delays.push(d);
    }

    /// Removes every fault rule and delay and turns random faults off.
    pub fn clear_faults(&self) {
        self.lock().faults.clear();
    }

    pub fn set_random_faults(&self, rate: f64, in_operation_share: f64) {
        self.lock().faults.random = RandomFaults { rate, in_operation_share };
    }

    pub fn set_op_delay_polls(&self, k: u32) {
        self.lock().settings.op_delay_polls = k;
    }

    pub fn set_settle_after(&self, d: Option<Duration>) {
        self.lock().settings.settle_after = d;
    }

    /// How delete-while-in-use failures are delivered from now on.
    pub fn set_in_use_delivery(&self, d: Delivery) {
        self.lock().settings.in_use = d;
    }

    pub fn set_require_patch_fingerprint(&self, on: bool) {
        self.lock().settings.require_patch_fingerprint = on;
    }

    /// Completes every unfinished operation now (as if enough time had passed); returns how many.
    pub fn settle(&self) -> usize {
        ops::settle_all(&mut self.lock())
    }

    /// Unfinished operations.
    pub fn pending_operations(&self) -> usize {
        self.lock().ops.pending_count()
    }

    /// A resource as GET shows it, by project-relative path (`regions/r/backendServices/bs`);
    /// `None` if absent (or not yet `DONE`).
    pub fn resource(&self, rel: &str) -> Option<Value> {
        let st = self.lock();
        let key = api::key_of(&st, rel)?;
        st.resources.get(&key).map(|v| st.render(&key, v))
    }

    /// Names of the stored resources of a collection path (`regions/r/forwardingRules`,
    /// `global/urlMaps`, `zones/z/instanceGroups`), in name order.
    pub fn names(&self, collection: &str) -> Vec<String> {
        let st = self.lock();
        let probe = format!("{}/x", collection.trim_matches('/'));
        let Some(key) = api::key_of(&st, &probe) else { return Vec::new() };
        st.list(key.coll, &key.loc).map(|(k, _)| k.name.clone()).collect()
    }

    /// Member instance self-links of an instance group.
    pub fn members(&self, zone: &str, group: &str) -> Vec<String> {
        let st = self.lock();
        let key = links::Key::new(collections::Coll::InstanceGroup, zone, group);
        st.members.get(&key).map(|m| m.iter().cloned().collect()).unwrap_or_default()
    }

    /// Every stored resource keyed by project-relative path, plus instance-group members and the
    /// number of unfinished operations (what `GET /_fake/resources` answers).
    pub fn dump(&self) -> Value {
        admin::dump(&self.lock(), "")
    }

    /// Stops accepting requests and waits (up to 5 s) for connections to close.
    pub async fn shutdown(mut self) {
        self.shutdown.send_replace(true);
        if let Some(task) = self.task.take() {
            let abort = task.abort_handle();
            if tokio::time::timeout(Duration::from_secs(5), task).await.is_err() {
                abort.abort();
            }
        }
    }
}

impl Drop for GceFake {
    fn drop(&mut self) {
        self.shutdown.send_replace(true);
    }
}
