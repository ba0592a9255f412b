//! Serving one Compute API request: parse, log, inject faults, dispatch to the verb, and turn
//! the outcome (a resource, a list, an operation, an error) into a status and a JSON body.

use crate::calls::Call;
use crate::collections::Coll;
use crate::config::Delivery;
use crate::errors::{ApiError, ApiResult};
use crate::kinds::{self, Outcome};
use crate::links::{self, Key};
use crate::list::{self, ListParams};
use crate::ops;
use crate::route::{self, Route, Shape};
use crate::store::{Shared, State};
use serde_json::{Value, json};

/// Locks the state; a poisoned lock (a panic while holding it) still yields the state.
pub fn lock(shared: &Shared) -> std::sync::MutexGuard<'_, State> {
    shared.lock().unwrap_or_else(|p| p.into_inner())
}

pub fn parse_query(query: &str) -> Vec<(String, String)> {
    form_urlencoded::parse(query.as_bytes()).map(|(k, v)| (k.into_owned(), v.into_owned())).collect()
}

/// What the handler answers: status, body, and the operation it started (for the log).
struct Answer {
    status: u16,
    body: Value,
    operation: Option<String>,
}

impl Answer {
    fn ok(body: Value) -> Answer {
        Answer { status: 200, body, operation: None }
    }
    fn err(e: &ApiError) -> Answer {
        Answer { status: e.code, body: e.to_body(), operation: None }
    }
}

/// Serves one request and records it in the call log.
pub fn handle(shared: &Shared, method: &str, path: &str, query: &str, body: &[u8]) -> (u16, Value) {
    let mut st = lock(shared);
    ops::settle_due(&mut st);
    let params = parse_query(query);
    let body_json: Result<Option<Value>, ApiError> = if body.iter().all(u8::is_ascii_whitespace) {
        Ok(None)
    } else {
        serde_json::from_slice(body)
            .map(Some)
            .map_err(|e| ApiError::invalid(format!("Invalid JSON payload received. {e}")))
    };
    let shape = route::shape(path);
    let answer = match (&shape, &body_json) {
        (Err(e), _) | (Ok(_), Err(e)) => Answer::err(e),
        (Ok(s), Ok(b)) => match serve(&mut st, method, path, s, &params, b.clone()) {
            Ok(a) => a,
            Err(e) => Answer::err(&e),
        },
    };
    let s = shape.unwrap_or_default();
    st.log_call(Call {
        seq: 0,
        method: method.to_string(),
        path: path.to_string(),
        query: query.to_string(),
        body: body_json.ok().flatten(),
        status: answer.status,
        mutating: route::is_mutating(method, &s),
        verb: s.verb(method),
        scope: s.scope,
        collection: s.collection,
        name: s.name,
        operation: answer.operation,
    });
    (answer.status, answer.body)
}

fn serve(
    st: &mut State,
    method: &str,
    path: &str,
    s: &Shape,
    q: &[(String, String)],
    body: Option<Value>,
) -> ApiResult<Answer> {
    if s.project != st.project {
        return Err(ApiError::not_found(&format!("projects/{}", s.project)));
    }
    let mutating = route::is_mutating(method, s);
    let mut fault_in_op = None;
    if let Some((err, delivery)) = st.faults.check(method, &s.rel, s.collection == "operations") {
        if delivery == Delivery::InOperation && mutating {
            fault_in_op = Some(err);
        } else {
            return Err(err);
        }
    }
    let route = route::resolve(s, method, path, |r| st.known_region(r), |z| st.known_zone(z))?;
    let request_id = q.iter().find(|(k, _)| k == "requestId").map(|(_, v)| v.clone()).filter(|v| !v.is_empty());
    if mutating
        && let Some(rid) = &request_id
        && let Some(name) = st.ops.by_request_id(rid).map(str::to_string)
    {
        // A retried request (same requestId): GCE answers with the operation of the first one.
        let op = st.ops.all().find(|o| o.name == name).map(|o| ops::render(st, o)).unwrap_or(Value::Null);
        return Ok(Answer { status: 200, body: op, operation: Some(name) });
    }
    let params = ListParams::from_query(q);
    let prepared = match route {
        Route::List { coll, loc } => return list_collection(st, coll, &loc, &params).map(Answer::ok),
        Route::Get(key) => {
            let v = st.resources.get(&key).ok_or_else(|| ApiError::not_found(&key.path(&st.project)))?;
            return Ok(Answer::ok(st.render(&key, v)));
        }
        Route::Insert { coll, loc } => kinds::insert(st, coll, &loc, body)?,
        Route::Delete(key) => kinds::delete(st, &key)?,
        Route::Update(key) => kinds::update(st, &key, body)?,
        Route::Patch(key) => kinds::patch(st, &key, body)?,
        Route::Action { key, action } => match kinds::action(st, &key, &action, body)? {
            Outcome::Mutation(p) => p,
            Outcome::Read(v) => return Ok(Answer::ok(v)),
            Outcome::ReadList { kind, id, self_link, items } => {
                let (items, next) = list::page(items, &params, "instance")?;
                return Ok(Answer::ok(list::response(kind, &id, &self_link, items, next)));
            }
        },
        Route::OpList(scope) => {
            let items = ops::list(st, &scope);
            let (items, next) = list::page(items, &params, "name")?;
            let rel = format!("projects/{}/{}/operations", st.project, s.scope);
            let link = format!("{}{rel}", links::API_PREFIX);
            return Ok(Answer::ok(list::response("compute#operationList", &rel, &link, items, next)));
        }
        Route::OpGet(scope, name) => return ops::poll(st, &scope, &name).map(Answer::ok),
        Route::OpWait(scope, name) => return ops::wait(st, &scope, &name).map(Answer::ok),
        Route::Zones => {
            let items = st.zones.iter().map(|z| zone_json(st, z)).collect();
            let (items, next) = list::page(items, &params, "name")?;
            let rel = format!("projects/{}/zones", st.project);
            return Ok(Answer::ok(list::response(
                "compute#zoneList",
                &rel,
                &format!("{}{rel}", links::API_PREFIX),
                items,
                next,
            )));
        }
        Route::Zone(z) => {
            if !st.known_zone(&z) {
                return Err(ApiError::not_found(&format!("projects/{}/zones/{z}", st.project)));
            }
            return Ok(Answer::ok(zone_json(st, &z)));
        }
        Route::Regions => {
            let items = regions(st).iter().map(|r| region_json(st, r)).collect();
            let (items, next) = list::page(items, &params, "name")?;
            let rel = format!("projects/{}/regions", st.project);
            return Ok(Answer::ok(list::response(
                "compute#regionList",
                &rel,
                &format!("{}{rel}", links::API_PREFIX),
                items,
                next,
            )));
        }
        Route::Region(r) => {
            if !st.known_region(&r) {
                return Err(ApiError::not_found(&format!("projects/{}/regions/{r}", st.project)));
            }
            return Ok(Answer::ok(region_json(st, &r)));
        }
    };
    let mut prepared = prepared;
    if let Some(f) = fault_in_op {
        prepared.deferred = Some(f);
    }
    let op = ops::start(st, prepared, request_id.as_deref());
    let name = op.get("name").and_then(Value::as_str).map(str::to_string);
    Ok(Answer { status: 200, body: op, operation: name })
}

fn list_collection(st: &State, coll: Coll, loc: &str, params: &ListParams) -> ApiResult<Value> {
    let items: Vec<Value> = st.list(coll, loc).map(|(k, v)| st.render(k, v)).collect();
    let (items, next) = list::page(items, params, "name")?;
    let def = coll.def();
    let link = links::collection_link(&st.project, coll, loc);
    let id = link.trim_start_matches(links::API_PREFIX).to_string();
    Ok(list::response(def.list_kind, &id, &link, items, next))
}

fn regions(st: &State) -> Vec<String> {
    let mut rs = vec![st.region.clone()];
    for z in &st.zones {
        let r = links::region_of_zone(z).to_string();
        if !rs.contains(&r) {
            rs.push(r);
        }
    }
    rs
}

fn location_id(name: &str) -> String {
    // Stable, GCE-looking numeric ids for zones and regions.
    let h = name.bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3));
    (h % 9_000_000_000_000_000 + 1_000_000_000_000_000).to_string()
}

fn zone_json(st: &State, z: &str) -> Value {
    json!({
        "kind": "compute#zone",
        "id": location_id(z),
        "name": z,
        "description": z,
        "status": "UP",
        "region": links::region_link(&st.project, links::region_of_zone(z)),
        "selfLink": links::zone_link(&st.project, z),
    })
}

fn region_json(st: &State, r: &str) -> Value {
    let zones: Vec<String> =
        st.zones.iter().filter(|z| links::region_of_zone(z) == r).map(|z| links::zone_link(&st.project, z)).collect();
    json!({
        "kind": "compute#region",
        "id": location_id(r),
        "name": r,
        "description": r,
        "status": "UP",
        "zones": zones,
        "selfLink": links::region_link(&st.project, r),
    })
}

/// The key named by a project-relative path (`regions/r/backendServices/bs`).
pub fn key_of(st: &State, rel: &str) -> Option<Key> {
    links::parse_ref(rel, &st.project).filter(|r| r.project == st.project).map(|r| r.key)
}
