//! The headers a reverse proxy must change, in both directions.
//!
//! - **Hop-by-hop** headers describe one connection, not the message (RFC 9110 §7.6.1): the
//!   fixed list below plus every header the `Connection` header names are removed from requests
//!   and responses. An `Upgrade` (WebSocket) request keeps `Upgrade` and gets
//!   `Connection: upgrade`, so the node can accept the upgrade.
//! - **X-Forwarded-For** gets the client's address appended (the node sees the proxy's), and
//!   **X-Forwarded-Proto** / **X-Forwarded-Port** are set to what the client used, replacing
//!   whatever the client sent: those two are facts of this hop.
//! - **Host** is never rewritten; an HTTP/2 request (which has `:authority`, no `Host`) gets
//!   `Host` from its authority, as HTTP/1.1 towards the node requires.

use std::net::IpAddr;

use http::header::{self, HeaderMap, HeaderName, HeaderValue};

const KEEP_ALIVE: HeaderName = HeaderName::from_static("keep-alive");
const PROXY_CONNECTION: HeaderName = HeaderName::from_static("proxy-connection");
pub(crate) const X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");
pub(crate) const X_FORWARDED_PROTO: HeaderName = HeaderName::from_static("x-forwarded-proto");
pub(crate) const X_FORWARDED_PORT: HeaderName = HeaderName::from_static("x-forwarded-port");

/// Hop-by-hop headers removed in both directions (the list Go's and nginx's proxies use).
const HOP_BY_HOP: [HeaderName; 9] = [
    header::CONNECTION,
    KEEP_ALIVE,
    PROXY_CONNECTION,
    header::PROXY_AUTHENTICATE,
    header::PROXY_AUTHORIZATION,
    header::TE,
    header::TRAILER,
    header::TRANSFER_ENCODING,
    header::UPGRADE,
];

/// Whether an HTTP/1.1 request asks to switch protocols (`Connection: upgrade` + `Upgrade`).
pub(crate) fn is_upgrade(headers: &HeaderMap) -> bool {
    headers.contains_key(header::UPGRADE) && connection_tokens(headers).any(|t| t.eq_ignore_ascii_case("upgrade"))
}

fn connection_tokens(headers: &HeaderMap) -> impl Iterator<Item = &str> {
    headers
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(str::trim)
        .filter(|t| !t.is_empty())
}

/// Remove hop-by-hop headers; with `upgrade`, keep `Upgrade` and say `Connection: upgrade`.
pub(crate) fn strip_hop_by_hop(headers: &mut HeaderMap, upgrade: bool) {
    // Most messages have none: one pass over the names (standard names compare as integers)
    // instead of a hash lookup per hop-by-hop name.
    if !upgrade && !headers.keys().any(|k| HOP_BY_HOP.contains(k)) {
        return;
    }
    if headers.contains_key(header::CONNECTION) {
        let named: Vec<HeaderName> =
            connection_tokens(headers).filter_map(|t| HeaderName::from_bytes(t.as_bytes()).ok()).collect();
        for name in named {
            if !(upgrade && name == header::UPGRADE) {
                headers.remove(&name);
            }
        }
    }
    for name in &HOP_BY_HOP {
        if !(upgrade && *name == header::UPGRADE) {
            headers.remove(name);
        }
    }
    if upgrade {
        headers.insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
    }
}

/// What one client connection adds to every request: computed once per connection.
#[derive(Clone, Debug)]
pub(crate) struct Forwarded {
    client: HeaderValue,
    proto: HeaderValue,
    port: HeaderValue,
}

impl Forwarded {
    pub(crate) fn new(client: IpAddr, https: bool, port: u16) -> Self {
        let client = client.to_canonical().to_string();
        Self {
            client: HeaderValue::from_str(&client).unwrap_or_else(|_| HeaderValue::from_static("unknown")),
            proto: HeaderValue::from_static(if https { "https" } else { "http" }),
            port: HeaderValue::from(port),
        }
    }

    /// Append the client to `X-Forwarded-For`, set `X-Forwarded-Proto` and `-Port`.
    pub(crate) fn apply(&self, headers: &mut HeaderMap) {
        let mut previous = headers.get_all(&X_FORWARDED_FOR).iter().filter_map(|v| v.to_str().ok()).peekable();
        let value = if previous.peek().is_some() {
            let mut joined = previous.collect::<Vec<_>>().join(", ");
            joined.push_str(", ");
            joined.push_str(self.client.to_str().unwrap_or_default());
            HeaderValue::from_str(&joined).ok()
        } else {
            Some(self.client.clone())
        };
        if let Some(v) = value {
            headers.insert(X_FORWARDED_FOR, v);
        }
        headers.insert(X_FORWARDED_PROTO, self.proto.clone());
        headers.insert(X_FORWARDED_PORT, self.port.clone());
    }
}

/// [`Forwarded::apply`] in one call (tests).
#[cfg(test)]
fn set_forwarded(headers: &mut HeaderMap, client: IpAddr, https: bool, port: u16) {
    Forwarded::new(client, https, port).apply(headers);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn map(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(HeaderName::from_bytes(k.as_bytes()).unwrap(), HeaderValue::from_str(v).unwrap());
        }
        h
    }

    #[test]
    fn hop_by_hop_and_connection_named_headers_go() {
        let mut h = map(&[
            ("connection", "keep-alive, X-Secret"),
            ("keep-alive", "timeout=5"),
            ("x-secret", "1"),
            ("te", "trailers"),
            ("transfer-encoding", "chunked"),
            ("upgrade", "h2c"),
            ("proxy-authorization", "Basic x"),
            ("x-kept", "yes"),
            ("host", "foo.com"),
        ]);
        assert!(!is_upgrade(&h));
        strip_hop_by_hop(&mut h, false);
        let left: Vec<&str> = h.keys().map(|k| k.as_str()).collect();
        assert_eq!(left, vec!["x-kept", "host"]);
    }

    #[test]
    fn upgrade_keeps_upgrade() {
        let mut h = map(&[("connection", "Upgrade"), ("upgrade", "websocket"), ("keep-alive", "1")]);
        assert!(is_upgrade(&h));
        strip_hop_by_hop(&mut h, true);
        assert_eq!(h.get("upgrade").unwrap(), "websocket");
        assert_eq!(h.get("connection").unwrap(), "upgrade");
        assert!(h.get("keep-alive").is_none());
    }

    #[test]
    fn forwarded_headers_append_and_replace() {
        let mut h =
            map(&[("x-forwarded-for", "1.1.1.1"), ("x-forwarded-for", "2.2.2.2"), ("x-forwarded-proto", "ftp")]);
        set_forwarded(&mut h, "::ffff:127.0.0.9".parse().unwrap(), true, 8443);
        assert_eq!(h.get_all("x-forwarded-for").iter().count(), 1);
        assert_eq!(h.get("x-forwarded-for").unwrap(), "1.1.1.1, 2.2.2.2, 127.0.0.9");
        assert_eq!(h.get("x-forwarded-proto").unwrap(), "https");
        assert_eq!(h.get("x-forwarded-port").unwrap(), "8443");
        let mut fresh = HeaderMap::new();
        set_forwarded(&mut fresh, "10.0.0.1".parse().unwrap(), false, 80);
        assert_eq!(fresh.get("x-forwarded-for").unwrap(), "10.0.0.1");
        assert_eq!(fresh.get("x-forwarded-proto").unwrap(), "http");
    }
}
