//! Watch streams: newline-delimited JSON events over a chunked response.
//!
//! ```text
//!  resourceVersion ""/"0" or sendInitialEvents=true ──> ADDED for every current object
//!                                                      (+ BOOKMARK "k8s.io/initial-events-end")
//!  resourceVersion N ──> every change after N from the per-resource history,
//!                        or one ERROR 410 Expired when N fell out of it (client relists)
//!  then: wait on the table's notifier, send new changes, BOOKMARKs every few seconds,
//!        end at timeoutSeconds or server shutdown.
//! ```
//! Label/field selectors apply to the state before and after each MODIFIED, turning it into
//! ADDED/DELETED when an object enters/leaves the selection, as the apiserver's watch cache does.

use crate::registry::{self, ListQuery};
use crate::resources::{ResourceDef, View};
use crate::selectors::{FieldSelector, LabelSelector};
use crate::status::ApiError;
use crate::store::{ChangeKind, Shared, Since, encode_event};
use crate::table;
use bytes::Bytes;
use serde_json::{Value, json};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::mpsc;

pub const BOOKMARK_INTERVAL: Duration = Duration::from_secs(5);

/// How objects are rendered on the wire.
#[derive(Debug, Clone)]
pub enum Shape {
    Object,
    Table { include_object: table::IncludeObject },
    Metadata,
}

pub struct WatchRequest {
    pub def: &'static ResourceDef,
    pub ns: Option<String>,
    pub labels: LabelSelector,
    pub fields: FieldSelector,
    pub resource_version: Option<String>,
    pub send_initial_events: bool,
    pub bookmarks: bool,
    pub timeout: Option<Duration>,
    pub shape: Shape,
}

struct Renderer {
    def: &'static ResourceDef,
    shape: Shape,
    first_table: bool,
}

impl Renderer {
    fn render(&mut self, served: &Value) -> Value {
        match &self.shape {
            Shape::Object => served.clone(),
            Shape::Metadata => table::partial_metadata(served),
            Shape::Table { include_object } => {
                let with_columns = std::mem::replace(&mut self.first_table, false);
                table::table_for(
                    self.def,
                    std::slice::from_ref(&Arc::new(served.clone())),
                    *include_object,
                    with_columns,
                    None,
                    None,
                )
            }
        }
    }

    /// Encode one event; uses the change's shared line when the shape allows it.
    fn line(&mut self, kind: &str, stored: &Arc<Value>, shared: Option<&crate::store::Change>) -> Bytes {
        if let (Shape::Object, View::Native, Some(c)) = (&self.shape, self.def.view, shared)
            && c.kind.as_str() == kind
        {
            return c.line();
        }
        let served = registry::view_out(self.def, stored);
        encode_event(kind, &self.render(&served))
    }

    fn bookmark(&self, rv: u64, initial_end: bool) -> Bytes {
        let mut m = json!({ "resourceVersion": rv.to_string() });
        if initial_end {
            m["annotations"] = json!({ "k8s.io/initial-events-end": "true" });
        }
        let (kind, api_version) = match self.shape {
            Shape::Object => (self.def.kind.to_string(), self.def.api_version()),
            Shape::Metadata => ("PartialObjectMetadata".into(), "meta.k8s.io/v1".into()),
            Shape::Table { .. } => ("Table".into(), "meta.k8s.io/v1".into()),
        };
        encode_event("BOOKMARK", &json!({ "kind": kind, "apiVersion": api_version, "metadata": m }))
    }
}

fn served_matches(
    def: &ResourceDef,
    obj: &Arc<Value>,
    ns: Option<&str>,
    labels: &LabelSelector,
    fields: &FieldSelector,
) -> bool {
    if let Some(ns) = ns
        && obj.pointer("/metadata/namespace").and_then(Value::as_str).unwrap_or_default() != ns
    {
        return false;
    }
    if labels.is_empty() && fields.is_empty() {
        return true;
    }
    registry::matches(&registry::view_out(def, obj), labels, fields)
}

/// Starts a watch; returns the receiving end of its lines. Errors that the apiserver reports
/// as an HTTP error (bad resourceVersion) come back as `Err`.
pub fn start(
    store: Shared,
    req: WatchRequest,
    mut shutdown: tokio::sync::watch::Receiver<bool>,
) -> Result<mpsc::Receiver<Bytes>, ApiError> {
    let from = match req.resource_version.as_deref() {
        None | Some("") | Some("0") => None,
        Some(s) => Some(s.parse::<u64>().map_err(|_| ApiError::bad_request(format!("invalid resource version: {s}")))?),
    };
    let initial = from.is_none() || req.send_initial_events;
    let (tx, rx) = mpsc::channel::<Bytes>(256);
    let mut notify = {
        let guard = store.read().map_err(|_| ApiError::internal("store lock poisoned"))?;
        guard.table(req.def.storage).map(|t| t.notify.subscribe()).ok_or_else(|| ApiError::internal("no table"))?
    };
    tokio::spawn(async move {
        let ns = if req.def.namespaced { req.ns.clone() } else { None };
        let mut r = Renderer { def: req.def, shape: req.shape.clone(), first_table: true };
        let deadline = req.timeout.map(|t| tokio::time::Instant::now() + t);
        // --- initial state
        let mut last_rv;
        if initial {
            let listed = {
                let Ok(guard) = store.read() else { return };
                let q = ListQuery {
                    ns: ns.as_deref(),
                    labels: &req.labels,
                    fields: &req.fields,
                    limit: None,
                    continue_token: None,
                };
                registry::list(&guard, req.def, &q)
            };
            let snapshot = match listed {
                Ok(l) => l,
                Err(e) => {
                    let _ = tx.send(encode_event("ERROR", &e.to_status())).await;
                    return;
                }
            };
            last_rv = snapshot.rv.max(from.unwrap_or(0));
            for item in &snapshot.items {
                // list returns served shape already
                let line = encode_event("ADDED", &r.render(item));
                if tx.send(line).await.is_err() {
                    return;
                }
            }
            if req.send_initial_events && tx.send(r.bookmark(last_rv, true)).await.is_err() {
                return;
            }
        } else {
            last_rv = from.unwrap_or(0);
        }
        let mut bookmark_tick =
            tokio::time::interval_at(tokio::time::Instant::now() + BOOKMARK_INTERVAL, BOOKMARK_INTERVAL);
        loop {
            // --- drain changes after last_rv
            let (changes, current) = {
                let Ok(guard) = store.read() else { return };
                (guard.since(req.def.storage, last_rv), guard.rv)
            };
            match changes {
                Since::Expired { oldest } => {
                    let e = ApiError::expired(format!("too old resource version: {last_rv} ({oldest})"));
                    let _ = tx.send(encode_event("ERROR", &e.to_status())).await;
                    return;
                }
                Since::Changes(cs) => {
                    for c in cs {
                        let now = served_matches(req.def, &c.object, ns.as_deref(), &req.labels, &req.fields);
                        let kind = match (c.kind, &c.prev) {
                            (ChangeKind::Modified, Some(prev)) => {
                                let before = served_matches(req.def, prev, ns.as_deref(), &req.labels, &req.fields);
                                match (before, now) {
                                    (true, true) => Some("MODIFIED"),
                                    (false, true) => Some("ADDED"),
                                    (true, false) => Some("DELETED"),
                                    (false, false) => None,
                                }
                            }
                            (k, _) => now.then_some(k.as_str()),
                        };
                        if let Some(kind) = kind
                            && tx.send(r.line(kind, &c.object, Some(&c))).await.is_err()
                        {
                            return;
                        }
                        last_rv = c.rv;
                    }
                    last_rv = last_rv.max(current);
                }
            }
            // --- wait for more
            let sleep = async {
                match deadline {
                    Some(d) => tokio::time::sleep_until(d).await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                changed = notify.changed() => if changed.is_err() { return },
                _ = sleep => return,
                _ = shutdown.changed() => return,
                _ = tx.closed() => return,
                _ = bookmark_tick.tick(), if req.bookmarks => {
                    if tx.send(r.bookmark(last_rv, false)).await.is_err() {
                        return;
                    }
                }
            }
        }
    });
    Ok(rx)
}
