//! The URL map of one Ingress, built from the L7 model (pure).
//!
//! ```text
//!   virtual host (in precedence order) ─▶ host rule  foo.com | *.foo.com | *
//!                                        └▶ path matcher vh<i>: route rules, priority = model order
//!   route  Exact /p       ─▶ match rule  fullPathMatch /p
//!          Prefix /p      ─▶ match rules fullPathMatch /p, prefixMatch /p/    (element-wise, as Ingress)
//!          Prefix /       ─▶ match rule  prefixMatch /
//!          method, headers, query ─▶ headerMatches (:method), queryParameterMatches on each
//!   action forward        ─▶ service (one backend) | weightedBackendServices
//!          fixed 404/503  ─▶ the fixed-answer backend service + faultInjectionPolicy.abort 100 %
//!   default action        ─▶ the map's and every path matcher's default
//! ```
//!
//! **Why route rules, not path rules.** Path rules pick the longest matching path, their own
//! precedence; route rules are taken in priority order, so the order the model decided (longest
//! path, Exact before Prefix, more matches first, then origin) is kept exactly, and methods,
//! headers, query parameters and weights (Gateway API) need nothing new. Every rule is rewritten on
//! each change, so priorities need no stability.
//!
//! **Wildcard hosts.** Compute's `*.foo.com` takes any number of labels, an Ingress's only one. Under
//! [`WildcardSemantics::SingleLabel`] each wildcard matcher therefore starts with rules guarded by an
//! `:authority` regex for hosts of two or more extra labels, which route them as the model does: by
//! the catch-all host's routes, else the default action.
//!
//! **Fixed answers.** A URL map can only end in a backend service or a redirect; an answer without
//! a backend (404 when nothing matches, 503 for a backend that cannot be resolved) is a fault
//! injection that aborts every request, on a backend service without backends that only exists
//! for this.

use cloudlb_provider::L7Spec;
use cloudlb_provider::l7::{
    BackendRef, HostMatch, PathMatch, Route, RouteAction, RouteMatch, VirtualHost, WildcardSemantics,
};
use google_cloud_compute_v1::model::{
    HostRule, HttpFaultAbort, HttpFaultInjection, HttpHeaderMatch, HttpQueryParameterMatch, HttpRedirectAction,
    HttpRouteAction, HttpRouteRule, HttpRouteRuleMatch, PathMatcher, UrlMap, WeightedBackendService,
    http_redirect_action,
};

/// Most route rules Compute takes in one path matcher.
pub const MAX_ROUTE_RULES: usize = 200;

/// Where actions go: the backend service of a backend (`None`: not resolvable, answered 503), and
/// the fixed-answer backend service.
pub struct Links<'a> {
    pub backend: &'a dyn Fn(&BackendRef) -> Option<String>,
    pub fixed: &'a str,
}

/// What a route or a default becomes: `service` or `routeAction`.
#[derive(Clone, Debug, Default, PartialEq)]
struct Action {
    service: Option<String>,
    route_action: Option<HttpRouteAction>,
}

fn fixed(links: &Links<'_>, status: u16) -> Action {
    let abort = HttpFaultAbort::new().set_http_status(u32::from(status)).set_percentage(100.0);
    let route_action = HttpRouteAction::new()
        .set_weighted_backend_services([WeightedBackendService::new()
            .set_backend_service(links.fixed)
            .set_weight(100u32)])
        .set_fault_injection_policy(HttpFaultInjection::new().set_abort(abort));
    Action { service: None, route_action: Some(route_action) }
}

fn action(links: &Links<'_>, a: &RouteAction) -> Action {
    match a {
        RouteAction::Fixed { status } => fixed(links, *status),
        RouteAction::Forward(list) => {
            // A backend that cannot be resolved has no backend service: its share goes to the others.
            let resolved: Vec<(String, u32)> =
                list.iter().filter_map(|w| (links.backend)(&w.backend).map(|l| (l, w.weight))).collect();
            match resolved.as_slice() {
                [] => fixed(links, 503),
                [(one, _)] => Action { service: Some(one.clone()), route_action: None },
                many => {
                    // Compute takes weights 0..=1000.
                    let max = many.iter().map(|(_, w)| *w).max().unwrap_or(1).max(1);
                    let scale = |w: u32| if max <= 1000 { w } else { (u64::from(w) * 1000 / u64::from(max)) as u32 };
                    let weighted = many.iter().map(|(l, w)| {
                        WeightedBackendService::new().set_backend_service(l.clone()).set_weight(scale(*w))
                    });
                    Action {
                        service: None,
                        route_action: Some(HttpRouteAction::new().set_weighted_backend_services(weighted)),
                    }
                }
            }
        }
    }
}

/// The match rules of one route: one per path form, each carrying the method, header and query
/// conditions.
fn match_rules(m: &RouteMatch, extra: Option<&HttpHeaderMatch>) -> Vec<HttpRouteRuleMatch> {
    let paths: Vec<(Option<String>, Option<String>)> = match m.path.canonical() {
        PathMatch::Exact(p) => vec![(Some(p), None)],
        PathMatch::Prefix(p) if p == "/" => vec![(None, Some("/".into()))],
        PathMatch::Prefix(p) => vec![(Some(p.clone()), None), (None, Some(format!("{p}/")))],
    };
    let mut headers: Vec<HttpHeaderMatch> = Vec::new();
    if let Some(method) = &m.method {
        headers.push(HttpHeaderMatch::new().set_header_name(":method").set_exact_match(method.to_ascii_uppercase()));
    }
    headers.extend(
        m.headers
            .iter()
            .map(|h| HttpHeaderMatch::new().set_header_name(h.name.clone()).set_exact_match(h.value.clone())),
    );
    headers.extend(extra.cloned());
    let query: Vec<HttpQueryParameterMatch> = m
        .query
        .iter()
        .map(|q| HttpQueryParameterMatch::new().set_name(q.name.clone()).set_exact_match(q.value.clone()))
        .collect();
    paths
        .into_iter()
        .map(|(full, prefix)| {
            HttpRouteRuleMatch::new()
                .set_or_clear_full_path_match(full)
                .set_or_clear_prefix_match(prefix)
                .set_header_matches(headers.clone())
                .set_query_parameter_matches(query.clone())
        })
        .collect()
}

fn rule(priority: usize, matches: Vec<HttpRouteRuleMatch>, a: Action) -> HttpRouteRule {
    HttpRouteRule::new()
        .set_priority(priority as i32)
        .set_match_rules(matches)
        .set_or_clear_service(a.service)
        .set_or_clear_route_action(a.route_action)
}

/// `:authority` of two or more labels before `suffix` (the hosts Compute's `*.suffix` takes and
/// an Ingress's does not), with an optional port.
pub fn multi_label_authority(suffix: &str) -> HttpHeaderMatch {
    let re = format!(r"(?i)^[^.:]+(\.[^.:]+)+\.{}(:[0-9]+)?$", regex_escape(suffix));
    HttpHeaderMatch::new().set_header_name(":authority").set_regex_match(re)
}

fn regex_escape(s: &str) -> String {
    s.chars().flat_map(|c| if c.is_ascii_alphanumeric() || c == '-' { vec![c] } else { vec!['\\', c] }).collect()
}

/// The routes of the model's catch-all host (what a multi-label host falls to).
fn catch_all(spec: &L7Spec) -> &[Route] {
    spec.virtual_hosts.iter().find(|v| v.host == HostMatch::Any).map_or(&[], |v| v.routes.as_slice())
}

fn path_matcher(spec: &L7Spec, i: usize, vh: &VirtualHost, links: &Links<'_>) -> PathMatcher {
    let default = action(links, &spec.default_action);
    let mut rules: Vec<HttpRouteRule> = Vec::new();
    if let HostMatch::Wildcard(suffix) = &vh.host
        && spec.wildcards == WildcardSemantics::SingleLabel
    {
        let guard = multi_label_authority(suffix);
        for r in catch_all(spec) {
            rules.push(rule(rules.len(), match_rules(&r.matches, Some(&guard)), action(links, &r.action)));
        }
        let everything = RouteMatch::path(PathMatch::Prefix("/".into()));
        rules.push(rule(rules.len(), match_rules(&everything, Some(&guard)), default.clone()));
    }
    for r in &vh.routes {
        rules.push(rule(rules.len(), match_rules(&r.matches, None), action(links, &r.action)));
    }
    PathMatcher::new()
        .set_name(format!("vh{i}"))
        .set_or_clear_default_service(default.service)
        .set_or_clear_default_route_action(default.route_action)
        .set_route_rules(rules)
}

fn host_pattern(h: &HostMatch) -> String {
    match h {
        HostMatch::Exact(h) => h.clone(),
        HostMatch::Wildcard(s) => format!("*.{s}"),
        HostMatch::Any => "*".into(),
    }
}

/// The URL map `name` for `spec`.
pub fn url_map(spec: &L7Spec, name: &str, links: &Links<'_>) -> UrlMap {
    let default = action(links, &spec.default_action);
    let matchers: Vec<PathMatcher> =
        spec.virtual_hosts.iter().enumerate().map(|(i, vh)| path_matcher(spec, i, vh, links)).collect();
    let hosts = spec
        .virtual_hosts
        .iter()
        .enumerate()
        .map(|(i, vh)| HostRule::new().set_hosts([host_pattern(&vh.host)]).set_path_matcher(format!("vh{i}")));
    UrlMap::new()
        .set_name(name)
        .set_or_clear_default_service(default.service)
        .set_or_clear_default_route_action(default.route_action)
        .set_host_rules(hosts)
        .set_path_matchers(matchers)
}

/// The map of an HTTP listener that redirects everything to HTTPS (308, query kept).
pub fn redirect_map(name: &str) -> UrlMap {
    UrlMap::new().set_name(name).set_default_url_redirect(
        HttpRedirectAction::new()
            .set_https_redirect(true)
            .set_strip_query(false)
            .set_redirect_response_code(http_redirect_action::RedirectResponseCode::PermanentRedirect),
    )
}

/// Route rules per path matcher this spec needs (checked against [`MAX_ROUTE_RULES`]).
pub fn route_rule_counts(spec: &L7Spec) -> Vec<(String, usize)> {
    let guard = if spec.wildcards == WildcardSemantics::SingleLabel { catch_all(spec).len() + 1 } else { 0 };
    spec.virtual_hosts
        .iter()
        .map(|vh| {
            let extra = if matches!(vh.host, HostMatch::Wildcard(_)) { guard } else { 0 };
            (host_pattern(&vh.host), vh.routes.len() + extra)
        })
        .collect()
}

/// Whether two maps route alike: the fields this module sets, links compared from `projects/` on
/// (Compute answers with absolute links and fills in defaults this does not compare).
pub fn same_routing(a: &UrlMap, b: &UrlMap) -> bool {
    canonical(a) == canonical(b)
}

const COMPARED: &[&str] = &[
    "defaultService",
    "defaultRouteAction",
    "defaultUrlRedirect",
    "hostRules",
    "hosts",
    "pathMatcher",
    "pathMatchers",
    "name",
    "routeRules",
    "priority",
    "matchRules",
    "fullPathMatch",
    "prefixMatch",
    "headerMatches",
    "headerName",
    "exactMatch",
    "regexMatch",
    "queryParameterMatches",
    "service",
    "routeAction",
    "weightedBackendServices",
    "backendService",
    "weight",
    "faultInjectionPolicy",
    "abort",
    "httpStatus",
    "percentage",
    "httpsRedirect",
    "redirectResponseCode",
    "stripQuery",
];

fn canonical(m: &UrlMap) -> serde_json::Value {
    fn walk(v: serde_json::Value) -> serde_json::Value {
        use serde_json::Value;
        match v {
            Value::Object(o) => Value::Object(
                o.into_iter()
                    .filter(|(k, v)| COMPARED.contains(&k.as_str()) && !v.is_null() && *v != Value::Array(vec![]))
                    .map(|(k, v)| (k, walk(v)))
                    .collect(),
            ),
            Value::Array(a) => Value::Array(a.into_iter().map(walk).collect()),
            Value::String(s) if s.starts_with("http") => Value::String(crate::links::tail(&s).to_string()),
            Value::Number(n) => Value::from(n.as_f64().unwrap_or_default()),
            other => other,
        }
    }
    let mut v = walk(serde_json::to_value(m).unwrap_or_default());
    if let Some(o) = v.as_object_mut() {
        o.remove("name");
    }
    v
}
