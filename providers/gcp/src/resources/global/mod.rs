//! The global collections of the external Application Load Balancer (an Ingress): one module per
//! collection, each call named, rate-limited and awaited like the regional ones (`clients.rs`).
//!
//! ```text
//!   address ◀── forwarding rules (:80, :443) ──▶ target HTTP proxy ──▶ URL map (or the redirect map)
//!                                            └─▶ target HTTPS proxy ──▶ URL map
//!                                                       └─▶ SSL certificates
//!   URL map ──▶ backend services ──▶ health checks, the cluster's instance groups (named ports)
//! ```
//!
//! Deletes answer `Ok` when the resource is already gone; "in use" is reported as such, so a
//! caller can tell "someone still needs it" from a failure.

pub mod address;
pub mod backend_service;
pub mod certificate;
pub mod forwarding_rule;
pub mod health_check;
pub mod proxy;
pub mod url_map;

/// Every global method the L7 path calls.
pub const ALL_CALLS: &[&str] = &[
    address::GET,
    address::INSERT,
    address::DELETE,
    backend_service::GET,
    backend_service::LIST,
    backend_service::INSERT,
    backend_service::UPDATE,
    backend_service::DELETE,
    certificate::LIST,
    certificate::GET,
    certificate::INSERT,
    certificate::DELETE,
    forwarding_rule::GET,
    forwarding_rule::INSERT,
    forwarding_rule::SET_TARGET,
    forwarding_rule::DELETE,
    health_check::LIST,
    health_check::INSERT,
    health_check::UPDATE,
    health_check::DELETE,
    proxy::HTTP_GET,
    proxy::HTTP_INSERT,
    proxy::HTTP_SET_URL_MAP,
    proxy::HTTP_DELETE,
    proxy::HTTPS_GET,
    proxy::HTTPS_INSERT,
    proxy::HTTPS_SET_URL_MAP,
    proxy::HTTPS_SET_CERTIFICATES,
    proxy::HTTPS_DELETE,
    url_map::GET,
    url_map::INSERT,
    url_map::UPDATE,
    url_map::DELETE,
];

/// `name = "<prefix>*"`: the server-side filter of a list by name prefix.
pub(crate) fn name_prefix_filter(prefix: &str) -> String {
    format!("name = \"{prefix}*\"")
}

/// Every item of a paged list: `list(token)` sends one page's request, `split` takes a page apart
/// into its items and the next page's token.
pub(crate) async fn all_pages<P, T, F, Fut>(
    api: &crate::clients::Api<'_>,
    call: &'static str,
    list: F,
    split: fn(P) -> (Vec<T>, Option<String>),
) -> Result<Vec<T>, crate::errors::CallError>
where
    F: Fn(Option<String>) -> Fut,
    Fut: std::future::Future<Output = google_cloud_gax::Result<P>>,
{
    let mut out = Vec::new();
    let mut token: Option<String> = None;
    loop {
        let Some(page) = api.read(call, list(token.take())).await? else { return Ok(out) };
        let (items, next) = split(page);
        out.extend(items);
        match next.filter(|t| !t.is_empty()) {
            Some(t) => token = Some(t),
            None => return Ok(out),
        }
    }
}
