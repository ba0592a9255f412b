//! How Compute routes a request through a URL map, as its documentation describes it: the reference
//! the tests check built maps against (a map is right when, for every request, this answer and
//! [`cloudlb_provider::L7Spec::select`] agree), and a way to ask "where does this request go?".
//!
//! * Host rules: an exact host first, then the longest matching wildcard (`*.foo.com` takes any
//!   number of labels, `*` everything); no match: the map's default.
//! * Route rules in ascending priority; the first with a matching match rule wins (match rules
//!   are alternatives; within one, every condition must hold). No match: the matcher's default.
//! * `:method` and `:authority` are matched as headers; header names ignore case.
//!
//! Covered: the fields `routing.rs` sets (full path, prefix, exact and regex header matches, exact
//! query matches, services, weights, a 100 % abort, redirects). Not modelled: path rules, path
//! templates, `ignoreCase`, header present/range/prefix/suffix matches, partial faults.

/// The client's model of a URL map (deserialize Compute's JSON into it to evaluate a stored map).
pub use google_cloud_compute_v1::model::UrlMap;
use google_cloud_compute_v1::model::{HttpHeaderMatch, HttpRouteAction, HttpRouteRuleMatch, PathMatcher};

/// Where a request ends.
#[derive(Clone, Debug, PartialEq)]
pub enum Outcome {
    /// A backend service (its link from `projects/` on).
    Service(String),
    /// Backend services by weight.
    Weighted(Vec<(String, u32)>),
    /// A fixed status (a fault injection aborting every request).
    Abort(u32),
    /// A redirect to HTTPS.
    HttpsRedirect,
    /// Nothing Compute would accept (no default).
    Nothing,
}

/// A request as the URL map sees it.
pub struct Request<'a> {
    /// As sent, possibly with a port.
    pub authority: &'a str,
    pub path: &'a str,
    pub method: &'a str,
    pub headers: &'a [(&'a str, &'a str)],
    pub query: &'a [(&'a str, &'a str)],
}

pub fn evaluate(map: &UrlMap, req: &Request<'_>) -> Outcome {
    let host = req
        .authority
        .rsplit_once(':')
        .map_or(req.authority, |(h, p)| if p.parse::<u16>().is_ok() { h } else { req.authority });
    let host = host.to_ascii_lowercase();
    let mut best: Option<(usize, &str)> = None;
    for rule in &map.host_rules {
        for pattern in &rule.hosts {
            let rank = if *pattern == host {
                usize::MAX
            } else if let Some(suffix) = pattern.strip_prefix('*') {
                if host.ends_with(suffix) && host.len() > suffix.len() { suffix.len() } else { continue }
            } else {
                continue;
            };
            if best.is_none_or(|(r, _)| rank > r) {
                best = Some((rank, rule.path_matcher.as_deref().unwrap_or("")));
            }
        }
    }
    let matcher = best.and_then(|(_, name)| map.path_matchers.iter().find(|m| m.name.as_deref() == Some(name)));
    match matcher {
        Some(m) => in_matcher(m, req),
        None => default(
            map.default_service.as_deref(),
            map.default_route_action.as_ref(),
            map.default_url_redirect.is_some(),
        ),
    }
}

fn in_matcher(m: &PathMatcher, req: &Request<'_>) -> Outcome {
    let mut rules: Vec<_> = m.route_rules.iter().collect();
    rules.sort_by_key(|r| r.priority.unwrap_or(i32::MAX));
    for r in rules {
        if r.match_rules.iter().any(|mr| rule_matches(mr, req)) {
            if r.url_redirect.as_ref().is_some_and(|u| u.https_redirect == Some(true)) {
                return Outcome::HttpsRedirect;
            }
            return default(r.service.as_deref(), r.route_action.as_ref(), false);
        }
    }
    default(m.default_service.as_deref(), m.default_route_action.as_ref(), m.default_url_redirect.is_some())
}

fn default(service: Option<&str>, action: Option<&HttpRouteAction>, redirect: bool) -> Outcome {
    if redirect {
        return Outcome::HttpsRedirect;
    }
    if let Some(a) = action {
        if let Some(abort) = a.fault_injection_policy.as_ref().and_then(|f| f.abort.as_ref())
            && abort.percentage == Some(100.0)
        {
            return Outcome::Abort(abort.http_status.unwrap_or(0));
        }
        let weighted: Vec<(String, u32)> = a
            .weighted_backend_services
            .iter()
            .filter_map(|w| {
                Some((crate::links::tail(w.backend_service.as_deref()?).to_string(), w.weight.unwrap_or(0)))
            })
            .collect();
        if !weighted.is_empty() {
            return Outcome::Weighted(weighted);
        }
    }
    match service {
        Some(s) => Outcome::Service(crate::links::tail(s).to_string()),
        None => Outcome::Nothing,
    }
}

fn rule_matches(mr: &HttpRouteRuleMatch, req: &Request<'_>) -> bool {
    let path_ok = match (&mr.full_path_match, &mr.prefix_match) {
        (Some(full), _) => req.path == full,
        (None, Some(prefix)) => req.path.starts_with(prefix.as_str()),
        (None, None) => true,
    };
    path_ok
        && mr.header_matches.iter().all(|h| header_matches(h, req))
        && mr.query_parameter_matches.iter().all(|q| {
            let name = q.name.as_deref().unwrap_or("");
            req.query.iter().any(|(n, v)| *n == name && q.exact_match.as_deref().is_none_or(|e| e == *v))
        })
}

fn header_matches(h: &HttpHeaderMatch, req: &Request<'_>) -> bool {
    let name = h.header_name.as_deref().unwrap_or("").to_ascii_lowercase();
    let values: Vec<&str> = match name.as_str() {
        ":method" => vec![req.method],
        ":authority" | "host" => vec![req.authority],
        _ => req.headers.iter().filter(|(n, _)| n.eq_ignore_ascii_case(&name)).map(|(_, v)| *v).collect(),
    };
    values.iter().any(|v| {
        h.exact_match.as_deref().is_none_or(|e| e == *v)
            && h.regex_match.as_deref().is_none_or(|re| regex::Regex::new(re).is_ok_and(|r| r.is_match(v)))
    })
}
