//! Lists: `filter`, `orderBy`, `maxResults` (default and maximum 500) and `pageToken`.
//!
//! Items are in name order (`orderBy=name`, the default) or newest first
//! (`orderBy=creationTimestamp desc`, the only other order GCE accepts). A page token names the
//! last item returned (by name) or, for the time order, an offset; it is opaque to clients and
//! reading on after concurrent changes continues after that name rather than from a snapshot.

use crate::errors::{ApiError, ApiResult};
use crate::filter;
use base64::Engine as _;
use serde_json::{Value, json};

#[derive(Debug, Default, Clone)]
pub struct ListParams {
    pub filter: Option<String>,
    pub max_results: Option<String>,
    pub page_token: Option<String>,
    pub order_by: Option<String>,
}

impl ListParams {
    pub fn from_query(pairs: &[(String, String)]) -> ListParams {
        let get = |k: &str| pairs.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone());
        ListParams {
            filter: get("filter"),
            max_results: get("maxResults"),
            page_token: get("pageToken"),
            order_by: get("orderBy"),
        }
    }
}

enum Order {
    Name,
    NewestFirst,
}

fn encode(s: &str) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(s)
}

fn decode(s: &str) -> Option<String> {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(s).ok().and_then(|b| String::from_utf8(b).ok())
}

/// One page of `items` (already rendered), and the token of the next page.
/// `name_field` is the field items are ordered and resumed by (`name`, or `instance` for
/// `listInstances`).
pub fn page(mut items: Vec<Value>, p: &ListParams, name_field: &str) -> ApiResult<(Vec<Value>, Option<String>)> {
    if let Some(f) = p.filter.as_deref() {
        let parsed = filter::parse(f)
            .map_err(|why| ApiError::invalid_field("filter", f, &format!("Invalid list filter expression: {why}.")))?;
        items.retain(|it| parsed.matches(it));
    }
    let order = match p.order_by.as_deref().map(str::trim) {
        None | Some("") | Some("name") | Some("name asc") => Order::Name,
        Some("creationTimestamp desc") => Order::NewestFirst,
        Some(o) => {
            return Err(ApiError::invalid_field(
                "orderBy",
                o,
                "Sorting is only supported by 'name' or 'creationTimestamp desc'.",
            ));
        }
    };
    let name = |v: &Value| v.get(name_field).and_then(Value::as_str).unwrap_or("").to_string();
    match order {
        Order::Name => items.sort_by_key(|v| name(v)),
        Order::NewestFirst => items.sort_by(|a, b| {
            let ts = |v: &Value| v.get("creationTimestamp").and_then(Value::as_str).unwrap_or("").to_string();
            let id = |v: &Value| v.get("id").and_then(Value::as_str).and_then(|s| s.parse::<u64>().ok()).unwrap_or(0);
            (ts(b), id(b)).cmp(&(ts(a), id(a)))
        }),
    }
    let max = match p.max_results.as_deref() {
        None => 500,
        Some(s) => match s.parse::<usize>() {
            Ok(0) => 500,
            Ok(n) if n <= 500 => n,
            _ => return Err(ApiError::invalid_field("maxResults", s, "Must be an integer between 0 and 500.")),
        },
    };
    let bad_token = |t: &str| ApiError::invalid_field("pageToken", t, "Invalid page token.");
    let start = match p.page_token.as_deref().filter(|t| !t.is_empty()) {
        None => 0,
        Some(t) => {
            let decoded = decode(t).ok_or_else(|| bad_token(t))?;
            match (&order, decoded.split_once(':')) {
                (Order::Name, Some(("n", last))) => {
                    items.iter().position(|v| name(v).as_str() > last).unwrap_or(items.len())
                }
                (Order::NewestFirst, Some(("o", off))) => {
                    off.parse::<usize>().map_err(|_| bad_token(t))?.min(items.len())
                }
                _ => return Err(bad_token(t)),
            }
        }
    };
    let end = (start + max).min(items.len());
    let next = (end < items.len()).then(|| match order {
        Order::Name => encode(&format!("n:{}", name(&items[end - 1]))),
        Order::NewestFirst => encode(&format!("o:{end}")),
    });
    let page = items.drain(start..end).collect();
    Ok((page, next))
}

/// `{kind, id, items, selfLink, nextPageToken}`; `items` is omitted when empty, as GCE does.
pub fn response(kind: &str, id: &str, self_link: &str, items: Vec<Value>, next: Option<String>) -> Value {
    let mut v = json!({ "kind": kind, "id": id, "selfLink": self_link });
    if !items.is_empty() {
        v["items"] = Value::Array(items);
    }
    if let Some(t) = next {
        v["nextPageToken"] = json!(t);
    }
    v
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(v: &[Value]) -> Vec<&str> {
        v.iter().map(|x| x["name"].as_str().unwrap()).collect()
    }

    #[test]
    fn pages_by_name() {
        let items: Vec<Value> = ["c", "a", "e", "b", "d"].iter().map(|n| json!({"name": n})).collect();
        let p = ListParams { max_results: Some("2".into()), ..Default::default() };
        let (first, t1) = page(items.clone(), &p, "name").unwrap();
        assert_eq!(names(&first), ["a", "b"]);
        let p2 = ListParams { page_token: t1, ..p.clone() };
        let (second, t2) = page(items.clone(), &p2, "name").unwrap();
        assert_eq!(names(&second), ["c", "d"]);
        let p3 = ListParams { page_token: t2, ..p.clone() };
        let (third, t3) = page(items, &p3, "name").unwrap();
        assert_eq!(names(&third), ["e"]);
        assert_eq!(t3, None);
    }

    #[test]
    fn filters_and_rejects_bad_params() {
        let items: Vec<Value> = ["k8s-a", "k8s-b", "other"].iter().map(|n| json!({"name": n})).collect();
        let p = ListParams { filter: Some("name eq k8s-.*".into()), ..Default::default() };
        assert_eq!(names(&page(items.clone(), &p, "name").unwrap().0), ["k8s-a", "k8s-b"]);
        for bad in [
            ListParams { filter: Some("name ~ x".into()), ..Default::default() },
            ListParams { max_results: Some("501".into()), ..Default::default() },
            ListParams { page_token: Some("!!".into()), ..Default::default() },
            ListParams { order_by: Some("description".into()), ..Default::default() },
        ] {
            assert_eq!(page(items.clone(), &bad, "name").unwrap_err().code, 400);
        }
    }
}
