//! The L7 (HTTP) load balancer model: what an Ingress (and later a Gateway with its HTTPRoutes)
//! asks of a provider, independent of Kubernetes and of any cloud.
//!
//! It is shaped like Gateway API's HTTPRoute, so that both front ends translate into it and
//! every provider implements it once:
//!
//! ```text
//!  L7Spec
//!   ├─ listeners      port + HTTP | HTTPS (HTTP may redirect everything to HTTPS)
//!   ├─ certificates   PEM chain + key, by SNI host (exact, then wildcard, then default)
//!   ├─ virtual_hosts  in precedence order: exact hosts, wildcards (longest first), any host
//!   │    └─ routes    in precedence order: first match wins (== longest path, Exact on ties)
//!   │         └─ match (path Exact | Prefix, method, headers, query) ─▶ action
//!   ├─ default_action when no host or no route matches: a backend, or a fixed 404
//!   ├─ backends       (namespace, Service, port) ─▶ node port + health check
//!   └─ targets        the eligible nodes (shared with every other load balancer)
//! ```
//!
//! **Precedence is decided here, once**, by [`VirtualHost::sort_routes`] and
//! [`L7Spec::sort_virtual_hosts`]: providers only preserve the order (ALB rule priorities, GCLB
//! route-rule priorities, the local router's first match). [`L7Spec::select`] is the reference
//! evaluation: the local data plane implements exactly it, and the cloud providers' tests
//! evaluate what they built against it.
//!
//! **Wildcards differ by front end** and are kept per spec ([`WildcardSemantics`]): an Ingress
//! host `*.foo.com` matches exactly one extra label (`bar.foo.com`, not `baz.bar.foo.com`), a
//! Gateway hostname `*.foo.com` matches any number of labels.
//!
//! A backend whose Service or port cannot be resolved stays in the model with `node_port: None`
//! and the reason: the routes to it answer 503, the rest of the load balancer keeps working.

use std::collections::BTreeMap;
use std::fmt;
use std::net::IpAddr;
use std::sync::Arc;

use ipnet::IpNet;
use serde::{Deserialize, Serialize};

use crate::spec::{HealthCheck, Scheme, Target, digest, targets_digest};

/// Which front end's hostname rules apply.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, Default)]
#[serde(rename_all = "kebab-case")]
pub enum WildcardSemantics {
    /// Ingress: `*.foo.com` matches one extra DNS label.
    #[default]
    SingleLabel,
    /// Gateway API: `*.foo.com` matches one or more extra labels.
    AnyLabels,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum L7Protocol {
    Http,
    Https,
}

impl L7Protocol {
    pub fn as_str(self) -> &'static str {
        match self {
            L7Protocol::Http => "HTTP",
            L7Protocol::Https => "HTTPS",
        }
    }
}

/// A port the load balancer accepts HTTP(S) on.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct L7Listener {
    pub port: u16,
    pub protocol: L7Protocol,
    /// HTTP only: answer every request with a 308 redirect to `https://<host>:<port>` (the port
    /// is left out when it is 443) instead of routing it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub redirect_to_https: Option<u16>,
}

/// Which requests a virtual host takes, by their `Host` (or `:authority`).
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum HostMatch {
    /// The host, lowercase, without a port.
    Exact(String),
    /// `*.<suffix>`: holds the suffix (`foo.com` for `*.foo.com`), lowercase.
    Wildcard(String),
    /// Every host (an Ingress rule without `host`).
    Any,
}

impl HostMatch {
    /// Parses a host as Ingress and Gateway write it: `foo.com`, `*.foo.com`, or empty for any.
    pub fn parse(host: &str) -> HostMatch {
        let h = host.trim().trim_end_matches('.').to_ascii_lowercase();
        if h.is_empty() {
            HostMatch::Any
        } else if let Some(suffix) = h.strip_prefix("*.") {
            HostMatch::Wildcard(suffix.to_string())
        } else {
            HostMatch::Exact(h)
        }
    }

    /// Whether `host` (already normalized with [`normalize_host`]) is taken by this match.
    pub fn matches(&self, host: &str, semantics: WildcardSemantics) -> bool {
        match self {
            HostMatch::Exact(h) => h == host,
            HostMatch::Any => true,
            HostMatch::Wildcard(suffix) => {
                let Some(head) = host.strip_suffix(suffix.as_str()).and_then(|h| h.strip_suffix('.')) else {
                    return false;
                };
                !head.is_empty()
                    && match semantics {
                        WildcardSemantics::SingleLabel => !head.contains('.'),
                        WildcardSemantics::AnyLabels => !head.split('.').any(str::is_empty),
                    }
            }
        }
    }

    /// Precedence rank: exact hosts first, then wildcards with longer suffixes, then any.
    fn rank(&self) -> (u8, std::cmp::Reverse<usize>) {
        match self {
            HostMatch::Exact(_) => (0, std::cmp::Reverse(0)),
            HostMatch::Wildcard(s) => (1, std::cmp::Reverse(s.len())),
            HostMatch::Any => (2, std::cmp::Reverse(0)),
        }
    }
}

impl fmt::Display for HostMatch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            HostMatch::Exact(h) => f.write_str(h),
            HostMatch::Wildcard(s) => write!(f, "*.{s}"),
            HostMatch::Any => f.write_str("*"),
        }
    }
}

/// A request `Host` as matching sees it: lowercase, no port, no trailing dot.
pub fn normalize_host(host: &str) -> String {
    let h = host.trim();
    let h = if let Some(rest) = h.strip_prefix('[') {
        // [v6]:port
        rest.split(']').next().unwrap_or(rest)
    } else if h.matches(':').count() == 1 {
        h.split(':').next().unwrap_or(h)
    } else {
        h
    };
    h.trim_end_matches('.').to_ascii_lowercase()
}

/// How a route matches the request path.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum PathMatch {
    /// The whole path, case-sensitively: `/foo` matches neither `/foo/` nor `/FOO`.
    Exact(String),
    /// Element-wise prefix: `/foo` matches `/foo`, `/foo/` and `/foo/bar`, not `/foobar`; a
    /// trailing `/` is ignored on both sides; `/` matches everything.
    Prefix(String),
}

impl PathMatch {
    pub fn matches(&self, path: &str) -> bool {
        match self {
            PathMatch::Exact(p) => p == path,
            PathMatch::Prefix(p) => {
                let mut want = elements(p);
                let mut have = elements(path);
                loop {
                    match (want.next(), have.next()) {
                        (None, _) => return true,
                        (Some(_), None) => return false,
                        (Some(a), Some(b)) if a != b => return false,
                        _ => {}
                    }
                }
            }
        }
    }

    /// Length used for "longest path wins": a prefix without its trailing `/`.
    pub fn specificity(&self) -> usize {
        match self {
            PathMatch::Exact(p) => p.len(),
            PathMatch::Prefix(p) => p.trim_end_matches('/').len(),
        }
    }

    /// The same match written canonically (a prefix without trailing `/`, `/` for the root), so
    /// that `/foo` and `/foo/` are recognised as duplicates.
    pub fn canonical(&self) -> PathMatch {
        match self {
            PathMatch::Exact(p) => PathMatch::Exact(p.clone()),
            PathMatch::Prefix(p) => {
                let joined: Vec<&str> = elements(p).collect();
                PathMatch::Prefix(format!("/{}", joined.join("/")))
            }
        }
    }

    pub fn path(&self) -> &str {
        match self {
            PathMatch::Exact(p) | PathMatch::Prefix(p) => p,
        }
    }

    fn is_exact(&self) -> bool {
        matches!(self, PathMatch::Exact(_))
    }
}

impl fmt::Display for PathMatch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PathMatch::Exact(p) => write!(f, "Exact {p}"),
            PathMatch::Prefix(p) => write!(f, "Prefix {p}"),
        }
    }
}

fn elements(path: &str) -> impl Iterator<Item = &str> {
    path.split('/').filter(|e| !e.is_empty())
}

/// A header (or query parameter) that must have exactly this value.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct ExactMatch {
    /// Header names compare case-insensitively (kept lowercase); query names exactly.
    pub name: String,
    pub value: String,
}

/// Everything a request must satisfy for a route to take it.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct RouteMatch {
    pub path: PathMatch,
    /// Uppercase, e.g. `GET`; `None` for any method.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub method: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub headers: Vec<ExactMatch>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub query: Vec<ExactMatch>,
}

impl RouteMatch {
    pub fn path(path: PathMatch) -> Self {
        Self { path, method: None, headers: Vec::new(), query: Vec::new() }
    }

    pub fn matches(&self, req: &Request<'_>) -> bool {
        self.path.matches(req.path)
            && self.method.as_deref().is_none_or(|m| m.eq_ignore_ascii_case(req.method))
            && self
                .headers
                .iter()
                .all(|h| req.headers.iter().any(|(n, v)| n.eq_ignore_ascii_case(&h.name) && *v == h.value.as_str()))
            && self.query.iter().all(|q| req.query.iter().any(|(n, v)| *n == q.name.as_str() && *v == q.value.as_str()))
    }
}

/// Identifies a backend: a Service port in a namespace.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct BackendRef {
    pub namespace: String,
    pub service: String,
    pub port: ServicePort,
}

impl fmt::Display for BackendRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}:{}", self.namespace, self.service, self.port)
    }
}

/// A Service port, by number or by name (as an Ingress backend names it).
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ServicePort {
    Number(u16),
    Name(String),
}

impl fmt::Display for ServicePort {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ServicePort::Number(n) => write!(f, "{n}"),
            ServicePort::Name(n) => f.write_str(n),
        }
    }
}

/// A backend's share of a route's traffic.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct WeightedBackend {
    pub backend: BackendRef,
    pub weight: u32,
}

/// What happens to a matched request.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum RouteAction {
    /// To the backends, by weight (an Ingress path has exactly one, weight 1).
    Forward(Vec<WeightedBackend>),
    /// A fixed answer with a short body (e.g. 404 when nothing matches).
    Fixed { status: u16 },
}

impl RouteAction {
    pub fn not_found() -> Self {
        RouteAction::Fixed { status: 404 }
    }

    /// The backends this action can send to.
    pub fn backends(&self) -> impl Iterator<Item = &BackendRef> {
        let list: &[WeightedBackend] = match self {
            RouteAction::Forward(b) => b,
            RouteAction::Fixed { .. } => &[],
        };
        list.iter().map(|w| &w.backend)
    }
}

/// Where a route came from, for messages and for the last precedence tie-break.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct RouteOrigin {
    /// `Ingress` or `HTTPRoute`.
    pub kind: String,
    pub namespace: String,
    pub name: String,
    /// Index of the rule in the object, and of the path (or match) in the rule.
    pub rule: u32,
    pub index: u32,
}

impl fmt::Display for RouteOrigin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}/{} rule {} path {}", self.kind, self.namespace, self.name, self.rule, self.index)
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Route {
    #[serde(rename = "match")]
    pub matches: RouteMatch,
    pub action: RouteAction,
    pub origin: RouteOrigin,
}

#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct VirtualHost {
    pub host: HostMatch,
    /// In precedence order: the first route that matches takes the request.
    pub routes: Vec<Route>,
}

impl VirtualHost {
    /// Orders the routes so that "first match" means: the longest path (a prefix counted without
    /// its trailing `/`), Exact before Prefix on equal length, a route with a method before one
    /// without, more header matches first, more query matches first, then by origin (the order
    /// the front end gave: for Ingress, namespace/name then rule and path index).
    pub fn sort_routes(&mut self) {
        self.routes.sort_by(|a, b| {
            let (ma, mb) = (&a.matches, &b.matches);
            mb.path
                .specificity()
                .cmp(&ma.path.specificity())
                .then(mb.path.is_exact().cmp(&ma.path.is_exact()))
                .then(mb.method.is_some().cmp(&ma.method.is_some()))
                .then(mb.headers.len().cmp(&ma.headers.len()))
                .then(mb.query.len().cmp(&ma.query.len()))
                .then(a.origin.cmp(&b.origin))
        });
    }
}

/// How a backend's node ports are checked.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Backend {
    pub id: BackendRef,
    /// The Service port's node port; `None` when the Service or port cannot be resolved (then
    /// `problem` says why, and requests routed here get 503).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node_port: Option<u16>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub problem: Option<String>,
    /// `port: None` means the backend's node port.
    pub health_check: HealthCheck,
}

/// A PEM private key; never printed.
#[derive(Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct PrivateKeyPem(pub String);

impl fmt::Debug for PrivateKeyPem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("PrivateKeyPem(<redacted>)")
    }
}

/// A certificate for the HTTPS listeners, from a TLS Secret.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Certificate {
    /// Where it comes from, `namespace/secret`: its identity for providers that upload it.
    pub name: String,
    /// SNI hosts it serves (`foo.com`, `*.foo.com`), lowercase; empty: the default certificate
    /// for clients that send no (or an unknown) server name.
    pub hosts: Vec<String>,
    /// PEM certificate chain, leaf first.
    pub chain_pem: String,
    pub key_pem: PrivateKeyPem,
    /// Digest of chain and key (16 hex): what changes when the Secret is rotated.
    pub fingerprint: String,
}

impl Certificate {
    /// A certificate with its fingerprint computed.
    pub fn new(name: String, mut hosts: Vec<String>, chain_pem: String, key_pem: String) -> Self {
        hosts.iter_mut().for_each(|h| *h = h.trim().to_ascii_lowercase());
        hosts.sort();
        hosts.dedup();
        let fingerprint = digest(&(&chain_pem, &key_pem));
        Self { name, hosts, chain_pem, key_pem: PrivateKeyPem(key_pem), fingerprint }
    }
}

/// Timeouts towards the nodes and for clients.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct L7Timeouts {
    /// Connecting to a node; a failed connect is retried once on another node.
    pub connect_seconds: u32,
    /// The whole exchange with the backend, from request sent to response headers received.
    pub request_seconds: u32,
    /// A keep-alive client connection without a request for this long is closed.
    pub idle_seconds: u32,
}

impl Default for L7Timeouts {
    fn default() -> Self {
        Self { connect_seconds: 5, request_seconds: 60, idle_seconds: 60 }
    }
}

/// The complete desired state of one L7 load balancer. Every collection has a defined order, so
/// the same inputs give the same value and the same [`L7Spec::hash`].
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct L7Spec {
    /// Sorted by port; never empty.
    pub listeners: Vec<L7Listener>,
    pub wildcards: WildcardSemantics,
    /// In precedence order (see [`L7Spec::sort_virtual_hosts`]); hosts are unique.
    pub virtual_hosts: Vec<VirtualHost>,
    /// When no virtual host or no route in the selected one matches.
    pub default_action: RouteAction,
    /// Every backend an action names, sorted by id, unique.
    pub backends: Vec<Backend>,
    /// Sorted by name.
    pub certificates: Vec<Certificate>,
    /// Sorted by node name; shared like [`crate::LoadBalancerSpec::targets`].
    pub targets: Arc<Vec<Target>>,
    /// Who may connect; `0.0.0.0/0` (and `::/0`) when unrestricted.
    pub source_ranges: Vec<IpNet>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub requested_ip: Option<IpAddr>,
    pub scheme: Scheme,
    pub timeouts: L7Timeouts,
    /// Provider-specific options (annotations under the provider's prefix, prefix cut).
    pub options: BTreeMap<String, String>,
}

/// A request as routing sees it.
#[derive(Clone, Copy, Debug)]
pub struct Request<'a> {
    /// Normalized with [`normalize_host`].
    pub host: &'a str,
    /// The path without the query string.
    pub path: &'a str,
    pub method: &'a str,
    pub headers: &'a [(&'a str, &'a str)],
    pub query: &'a [(&'a str, &'a str)],
}

impl L7Spec {
    /// Orders virtual hosts: exact hosts (by name), wildcards with the longest suffix first,
    /// then the catch-all.
    pub fn sort_virtual_hosts(&mut self) {
        self.virtual_hosts.sort_by(|a, b| a.host.rank().cmp(&b.host.rank()).then(a.host.cmp(&b.host)));
    }

    /// The reference routing decision: the first virtual host whose host matches, then its
    /// first matching route; the default action when either finds nothing.
    pub fn select(&self, req: &Request<'_>) -> &RouteAction {
        let vhost = self.virtual_hosts.iter().find(|v| v.host.matches(req.host, self.wildcards));
        vhost.and_then(|v| v.routes.iter().find(|r| r.matches.matches(req))).map_or(&self.default_action, |r| &r.action)
    }

    pub fn backend(&self, id: &BackendRef) -> Option<&Backend> {
        self.backends.binary_search_by(|b| b.id.cmp(id)).ok().map(|i| &self.backends[i])
    }

    /// The certificate for an SNI name: exact host, then a single-label wildcard, then the
    /// default (one without hosts), then the first one.
    pub fn certificate_for(&self, server_name: Option<&str>) -> Option<&Certificate> {
        if let Some(name) = server_name.map(|n| n.trim_end_matches('.').to_ascii_lowercase()) {
            if let Some(c) = self.certificates.iter().find(|c| c.hosts.contains(&name)) {
                return Some(c);
            }
            let wildcard = name.split_once('.').map(|(_, rest)| format!("*.{rest}"));
            if let Some(w) = wildcard
                && let Some(c) = self.certificates.iter().find(|c| c.hosts.contains(&w))
            {
                return Some(c);
            }
        }
        self.certificates.iter().find(|c| c.hosts.is_empty()).or_else(|| self.certificates.first())
    }

    /// `<frontend>.<targets>` (16 hex chars each), like [`crate::LoadBalancerSpec::hash`]: a
    /// change of the nodes alone can be told from a change of the rest.
    pub fn hash(&self) -> String {
        self.hash_with_targets(&targets_digest(&self.targets))
    }

    pub fn hash_with_targets(&self, targets_digest: &str) -> String {
        format!("{}.{targets_digest}", self.frontend_digest())
    }

    /// Digest of everything but the targets. Certificates count by name, hosts and fingerprint
    /// (the key material itself never leaves this process in a hash input's place).
    pub fn frontend_digest(&self) -> String {
        #[derive(Serialize)]
        struct Frontend<'a> {
            listeners: &'a [L7Listener],
            wildcards: WildcardSemantics,
            virtual_hosts: &'a [VirtualHost],
            default_action: &'a RouteAction,
            backends: &'a [Backend],
            certificates: Vec<(&'a str, &'a [String], &'a str)>,
            source_ranges: &'a [IpNet],
            requested_ip: &'a Option<IpAddr>,
            scheme: Scheme,
            timeouts: L7Timeouts,
            options: &'a BTreeMap<String, String>,
        }
        digest(&Frontend {
            listeners: &self.listeners,
            wildcards: self.wildcards,
            virtual_hosts: &self.virtual_hosts,
            default_action: &self.default_action,
            backends: &self.backends,
            certificates: self
                .certificates
                .iter()
                .map(|c| (c.name.as_str(), c.hosts.as_slice(), c.fingerprint.as_str()))
                .collect(),
            source_ranges: &self.source_ranges,
            requested_ip: &self.requested_ip,
            scheme: self.scheme,
            timeouts: self.timeouts,
            options: &self.options,
        })
    }

    /// Whether the spec restricts sources (anything but the all-addresses ranges).
    pub fn restricts_sources(&self) -> bool {
        self.source_ranges.iter().any(|r| r.prefix_len() != 0)
    }

    /// Number of routes over all virtual hosts.
    pub fn route_count(&self) -> usize {
        self.virtual_hosts.iter().map(|v| v.routes.len()).sum()
    }
}

#[cfg(test)]
mod tests;
