//! HTTP routing: one fallback handler parses Kubernetes API paths
//! (`/api/v1/namespaces/{ns}/{plural}/{name}/{sub}`, `/apis/{g}/{v}/...`), picks the verb from
//! the method and query, and maps results to JSON responses or `Status` errors.
//!
//! Parsing paths by hand (instead of an axum route per shape) keeps the cluster-scoped vs
//! namespaced ambiguity (`/api/v1/namespaces/x` is a Namespace, `/api/v1/namespaces/x/services`
//! a list) in one readable place. Protobuf is never produced; every response is JSON.

use crate::discovery;
use crate::patch::PatchType;
use crate::registry::{self, Deleted, ListQuery, PatchOptions, Sub};
use crate::resources::{self, ResourceDef};
use crate::selectors::{FieldSelector, LabelSelector};
use crate::stats::Counters;
use crate::status::{ApiError, ApiResult};
use crate::store::Shared;
use crate::table::{self, IncludeObject};
use crate::watch::{self, Shape, WatchRequest};
use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, Uri, header};
use axum::response::Response;
use serde_json::{Value, json};
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

#[derive(Clone)]
pub struct App {
    pub store: Shared,
    pub stats: Arc<Counters>,
    pub shutdown: tokio::sync::watch::Receiver<bool>,
    pub server_address: String,
}

pub fn router(app: App) -> axum::Router {
    axum::Router::new().fallback(handle).with_state(app)
}

fn bytes_response(code: u16, content_type: &'static str, body: impl Into<Body>) -> Response {
    let mut r = Response::new(body.into());
    *r.status_mut() = StatusCode::from_u16(code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    r.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    r.headers_mut().insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache, private"));
    r
}

fn json_response(code: u16, v: &Value) -> Response {
    match serde_json::to_vec(v) {
        Ok(b) => bytes_response(code, "application/json", b),
        Err(e) => error_response(&ApiError::internal(e.to_string())),
    }
}

fn error_response(e: &ApiError) -> Response {
    json_response(e.code, &e.to_status())
}

/// `{"kind":..,"apiVersion":..,"metadata":{..},"items":[..]}` without building one big Value.
fn list_response(kind: &str, api_version: &str, rv: u64, cont: Option<&str>, items: &[Arc<Value>]) -> Response {
    let mut buf = Vec::with_capacity(64 + items.len() * 1024);
    let mut meta = json!({ "resourceVersion": rv.to_string() });
    if let Some(c) = cont {
        meta["continue"] = json!(c);
    }
    let head = json!({ "kind": kind, "apiVersion": api_version, "metadata": meta });
    let Ok(head) = serde_json::to_vec(&head) else {
        return error_response(&ApiError::internal("encode list"));
    };
    buf.extend_from_slice(&head[..head.len() - 1]);
    buf.extend_from_slice(b",\"items\":[");
    for (i, it) in items.iter().enumerate() {
        if i > 0 {
            buf.push(b',');
        }
        if serde_json::to_writer(&mut buf, &**it).is_err() {
            return error_response(&ApiError::internal("encode item"));
        }
    }
    buf.extend_from_slice(b"]}");
    bytes_response(200, "application/json", buf)
}

struct Target {
    def: &'static ResourceDef,
    ns: Option<String>,
    name: Option<String>,
    sub: Sub,
}

enum Route {
    Resources { group: String, version: String },
    Group(String),
    Resource(Target),
}

fn parse_route(path: &str) -> Option<Route> {
    let segs: Vec<&str> = path.split('/').filter(|s| !s.is_empty()).collect();
    let (group, version, rest) = match segs.as_slice() {
        ["api", v, rest @ ..] => ("", *v, rest),
        ["apis", g] => return Some(Route::Group(g.to_string())),
        ["apis", g, v, rest @ ..] => (*g, *v, rest),
        _ => return None,
    };
    if rest.is_empty() {
        return Some(Route::Resources { group: group.into(), version: version.into() });
    }
    let (ns, plural, name, sub) = match rest {
        ["namespaces", ns, plural, tail @ ..]
            if resources::find(group, version, plural).is_some_and(|d| d.namespaced) =>
        {
            (Some(ns.to_string()), *plural, tail.first(), tail.get(1..).unwrap_or_default())
        }
        [plural, tail @ ..] => (None, *plural, tail.first(), tail.get(1..).unwrap_or_default()),
        [] => return None,
    };
    let def = resources::find(group, version, plural)?;
    let sub = match sub {
        [] => Sub::Main,
        ["status"] if def.status_subresource => Sub::Status,
        _ => return None,
    };
    if def.namespaced && name.is_some() && ns.is_none() {
        return None;
    }
    Some(Route::Resource(Target { def, ns, name: name.map(|n| n.to_string()), sub }))
}

fn shape_from_accept(headers: &HeaderMap, q: &HashMap<String, String>) -> Shape {
    let accept = headers.get(header::ACCEPT).and_then(|v| v.to_str().ok()).unwrap_or_default();
    // the first acceptable media type wins
    for part in accept.split(',') {
        let p = part.replace(' ', "");
        if p.contains("as=Table") {
            return Shape::Table { include_object: IncludeObject::parse(q.get("includeObject").map(String::as_str)) };
        }
        if p.contains("as=PartialObjectMetadata") {
            return Shape::Metadata;
        }
        if p.starts_with("application/json") || p.starts_with("*/*") || p.starts_with("application/*") {
            return Shape::Object;
        }
    }
    Shape::Object
}

fn truthy(q: &HashMap<String, String>, k: &str) -> bool {
    matches!(q.get(k).map(String::as_str), Some("true" | "1"))
}

pub async fn handle(State(app): State<App>, method: Method, uri: Uri, headers: HeaderMap, body: Bytes) -> Response {
    let path = uri.path();
    let q: HashMap<String, String> =
        uri.query().map(|qs| form_urlencoded::parse(qs.as_bytes()).into_owned().collect()).unwrap_or_default();
    match path.trim_end_matches('/') {
        "/version" => return json_response(200, &discovery::version()),
        "/healthz" | "/readyz" | "/livez" => return bytes_response(200, "text/plain; charset=utf-8", "ok"),
        "/api" => return json_response(200, &discovery::api_versions(&app.server_address)),
        "/apis" => return json_response(200, &discovery::api_group_list()),
        // An empty protobuf message is a valid (schema-less) OpenAPI v2 document.
        "/openapi/v2" => {
            return bytes_response(200, "application/com.github.proto-openapi.spec.v2.v1.0+protobuf", Vec::new());
        }
        "/openapi/v3" => return json_response(200, &discovery::openapi_v3_root()),
        p if p.starts_with("/openapi/v3/") => return json_response(200, &discovery::openapi_v3_doc()),
        p if p.starts_with("/healthz/") || p.starts_with("/readyz/") || p.starts_with("/livez/") => {
            return bytes_response(200, "text/plain; charset=utf-8", "ok");
        }
        _ => {}
    }
    let not_found =
        || error_response(&ApiError::new(404, "NotFound", "the server could not find the requested resource"));
    let target = match parse_route(path) {
        Some(Route::Resources { group, version }) => {
            return match discovery::resource_list(&group, &version) {
                Some(d) => json_response(200, &d),
                None => not_found(),
            };
        }
        Some(Route::Group(g)) => {
            return match discovery::api_group(&g) {
                Some(d) => json_response(200, &d),
                None => not_found(),
            };
        }
        Some(Route::Resource(t)) => t,
        None => return not_found(),
    };
    let stat = match target.sub {
        Sub::Main => target.def.stat_name(),
        Sub::Status => format!("{}/status", target.def.stat_name()),
    };
    if q.get("dryRun").is_some_and(|d| !d.is_empty()) && method != Method::GET {
        return error_response(&ApiError::bad_request("dryRun is not supported by the sandbox API"));
    }
    let shape = shape_from_accept(&headers, &q);
    let ns = target.ns.clone().unwrap_or_default();
    let result: ApiResult<Response> = match (&method, target.name.as_deref()) {
        (&Method::GET, None) if truthy(&q, "watch") => {
            app.stats.record("watch", stat);
            serve_watch(&app, &target, &q, shape)
        }
        (&Method::GET, None) => {
            app.stats.record("list", stat);
            serve_list(&app, &target, &q, shape)
        }
        (&Method::GET, Some(name)) => {
            app.stats.record("get", stat);
            read(&app, |inner| registry::get(inner, target.def, &ns, name))
                .map(|o| object_response(200, target.def, &o, &shape))
        }
        (&Method::POST, None) => {
            app.stats.record("create", stat);
            match registry::parse_body(&body, true) {
                Ok(v) => write(&app, |inner| registry::create(inner, target.def, &ns, v))
                    .map(|o| object_response(201, target.def, &registry::view_out(target.def, &o), &shape)),
                Err(e) => Err(e),
            }
        }
        (&Method::PUT, Some(name)) => {
            app.stats.record("update", stat);
            match registry::parse_body(&body, true) {
                Ok(v) => write(&app, |inner| registry::update(inner, target.def, &ns, name, target.sub, v))
                    .map(|o| object_response(200, target.def, &registry::view_out(target.def, &o), &shape)),
                Err(e) => Err(e),
            }
        }
        (&Method::PATCH, Some(name)) => {
            app.stats.record("patch", stat);
            let ct = headers.get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or_default();
            match PatchType::from_content_type(ct) {
                None => Err(ApiError::new(
                    415,
                    "UnsupportedMediaType",
                    format!(
                        "the body of the request was in an unknown format - accepted media types include: application/json-patch+json, application/merge-patch+json, application/apply-patch+yaml, application/strategic-merge-patch+json (got {ct:?})"
                    ),
                )),
                Some(pt) => {
                    // `force` is accepted and ignored: there are no field-ownership conflicts.
                    let opts = PatchOptions { field_manager: q.get("fieldManager").cloned() };
                    write(&app, |inner| registry::patch(inner, target.def, &ns, name, target.sub, pt, &body, &opts))
                        .map(|(o, created)| {
                            object_response(
                                if created { 201 } else { 200 },
                                target.def,
                                &registry::view_out(target.def, &o),
                                &shape,
                            )
                        })
                }
            }
        }
        (&Method::DELETE, Some(name)) => {
            app.stats.record("delete", stat);
            let opts = if body.is_empty() { None } else { serde_json::from_slice::<Value>(&body).ok() };
            write(&app, |inner| registry::delete(inner, target.def, &ns, name, opts.as_ref())).map(|d| match d {
                Deleted::Pending(o) => object_response(200, target.def, &o, &shape),
                Deleted::Gone(o) => {
                    let mut details = json!({
                        "name": name,
                        "kind": target.def.plural,
                        "uid": o.pointer("/metadata/uid").cloned().unwrap_or(Value::Null),
                    });
                    if !target.def.group.is_empty() {
                        details["group"] = json!(target.def.group);
                    }
                    json_response(200, &json!({ "kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success", "details": details }))
                }
            })
        }
        _ => Err(ApiError::method_not_allowed(format!(
            "the server does not allow this method on the requested resource ({method})"
        ))),
    };
    result.unwrap_or_else(|e| error_response(&e))
}

fn read<T>(app: &App, f: impl FnOnce(&crate::store::Inner) -> ApiResult<T>) -> ApiResult<T> {
    let guard = app.store.read().map_err(|_| ApiError::internal("store lock poisoned"))?;
    f(&guard)
}

fn write<T>(app: &App, f: impl FnOnce(&mut crate::store::Inner) -> ApiResult<T>) -> ApiResult<T> {
    let mut guard = app.store.write().map_err(|_| ApiError::internal("store lock poisoned"))?;
    f(&mut guard)
}

fn object_response(code: u16, def: &ResourceDef, obj: &Arc<Value>, shape: &Shape) -> Response {
    match shape {
        Shape::Object => match serde_json::to_vec(&**obj) {
            Ok(b) => bytes_response(code, "application/json", b),
            Err(e) => error_response(&ApiError::internal(e.to_string())),
        },
        Shape::Metadata => json_response(code, &table::partial_metadata(obj)),
        Shape::Table { include_object } => {
            json_response(code, &table::table_for(def, std::slice::from_ref(obj), *include_object, true, None, None))
        }
    }
}

fn selectors(q: &HashMap<String, String>) -> ApiResult<(LabelSelector, FieldSelector)> {
    let l = LabelSelector::parse(q.get("labelSelector").map(String::as_str).unwrap_or_default())?;
    let f = FieldSelector::parse(q.get("fieldSelector").map(String::as_str).unwrap_or_default())?;
    Ok((l, f))
}

fn serve_list(app: &App, t: &Target, q: &HashMap<String, String>, shape: Shape) -> ApiResult<Response> {
    let (labels, fields) = selectors(q)?;
    let limit = q.get("limit").and_then(|l| l.parse::<usize>().ok());
    let lq = ListQuery {
        ns: t.ns.as_deref(),
        labels: &labels,
        fields: &fields,
        limit,
        continue_token: q.get("continue").map(String::as_str),
    };
    let res = read(app, |inner| registry::list(inner, t.def, &lq))?;
    Ok(match shape {
        Shape::Object => {
            list_response(&t.def.list_kind(), &t.def.api_version(), res.rv, res.continue_token.as_deref(), &res.items)
        }
        Shape::Metadata => {
            let items: Vec<Arc<Value>> = res.items.iter().map(|o| Arc::new(table::partial_metadata(o))).collect();
            list_response("PartialObjectMetadataList", "meta.k8s.io/v1", res.rv, res.continue_token.as_deref(), &items)
        }
        Shape::Table { include_object } => json_response(
            200,
            &table::table_for(t.def, &res.items, include_object, true, Some(res.rv), res.continue_token.as_deref()),
        ),
    })
}

fn serve_watch(app: &App, t: &Target, q: &HashMap<String, String>, shape: Shape) -> ApiResult<Response> {
    let (labels, fields) = selectors(q)?;
    let req = WatchRequest {
        def: t.def,
        ns: t.ns.clone(),
        labels,
        fields,
        resource_version: q.get("resourceVersion").cloned(),
        send_initial_events: truthy(q, "sendInitialEvents"),
        bookmarks: truthy(q, "allowWatchBookmarks"),
        timeout: q
            .get("timeoutSeconds")
            .and_then(|s| s.parse::<u64>().ok())
            .filter(|s| *s > 0)
            .map(Duration::from_secs),
        shape,
    };
    if *app.shutdown.borrow() {
        return Err(ApiError::new(503, "ServiceUnavailable", "the server is shutting down"));
    }
    let rx = watch::start(app.store.clone(), req, app.shutdown.clone())?;
    let stream = futures::stream::unfold(rx, |mut rx| async move {
        rx.recv().await.map(|b| (Ok::<_, std::convert::Infallible>(b), rx))
    });
    let mut r = Response::new(Body::from_stream(stream));
    r.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
    r.headers_mut().insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache, private"));
    Ok(r)
}
