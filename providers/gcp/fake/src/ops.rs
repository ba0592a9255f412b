//! Operations (`compute#operation`): every mutation answers with one, and its effect becomes
//! visible when the operation reaches `DONE`.
//!
//! Time in the fake is driven by polls, so tests are deterministic: with `op_delay_polls = K`
//! the mutation answers `RUNNING` (`PENDING` when K ≥ 2), the first K `GET`s of the operation
//! still say `RUNNING`, and the (K+1)-th says `DONE`; K = 0 answers `DONE` at once. `wait`
//! completes the operation immediately (the real `wait` blocks until `DONE` or ~2 minutes). So that
//! an operation nobody polls (a client that crashed after the POST) still finishes, as on real
//! GCE, any operation older than `settle_after` completes on the next request to the fake (or the
//! next call of the library's accessors).
//! `setLabels` answers `DONE` right away, as real GCE does.
//!
//! An operation fails by finishing `DONE` with `error.errors[{code,message}]`,
//! `httpErrorStatusCode` and `httpErrorMessage`, and the change is not applied.

use crate::errors::{ApiError, ApiResult};
use crate::links::{self, Key};
use crate::store::{self, Change, State};
use serde_json::{Value, json};
use std::collections::{HashMap, VecDeque};
use std::time::Instant;

/// Keep at most this many finished operations (oldest forgotten first).
const FINISHED_KEPT: usize = 50_000;

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum OpScope {
    Global,
    Region(String),
    Zone(String),
}

impl OpScope {
    pub fn of(key: &Key) -> OpScope {
        match key.coll.def().scope {
            crate::collections::Scope::Global => OpScope::Global,
            crate::collections::Scope::Regional => OpScope::Region(key.loc.clone()),
            crate::collections::Scope::Zonal => OpScope::Zone(key.loc.clone()),
        }
    }

    fn path(&self, project: &str) -> String {
        match self {
            OpScope::Global => format!("projects/{project}/global/operations"),
            OpScope::Region(r) => format!("projects/{project}/regions/{r}/operations"),
            OpScope::Zone(z) => format!("projects/{project}/zones/{z}/operations"),
        }
    }
}

/// A mutation that was accepted: what it will change, and how its operation reads.
#[derive(Debug)]
pub struct Prepared {
    pub change: Option<Change>,
    pub op_type: &'static str,
    pub target: Key,
    pub target_id: u64,
    /// Finish at once (`setLabels`).
    pub immediate: bool,
    /// A failure to report inside the `DONE` operation instead of applying the change.
    pub deferred: Option<ApiError>,
}

#[derive(Debug)]
pub struct Op {
    pub name: String,
    pub id: u64,
    pub scope: OpScope,
    pub op_type: String,
    pub target: Key,
    pub target_id: u64,
    pub insert_time: String,
    pub end_time: Option<String>,
    pub polls: u32,
    pub delay: u32,
    pub created: Instant,
    pub done: bool,
    pub change: Option<Change>,
    pub deferred: Option<ApiError>,
    pub error: Option<ApiError>,
    pub request_id: Option<String>,
}

#[derive(Debug, Default)]
pub struct Ops {
    by_name: HashMap<String, Op>,
    /// Unfinished operations, oldest first.
    pending: Vec<String>,
    finished: VecDeque<String>,
    by_request_id: HashMap<String, String>,
    seq: u64,
}

impl Ops {
    pub fn pending_changes(&self) -> impl Iterator<Item = &Change> {
        self.pending.iter().filter_map(|n| self.by_name.get(n)).filter_map(|op| op.change.as_ref())
    }

    pub fn pending_for(&self, key: &Key) -> Option<&str> {
        self.pending
            .iter()
            .filter_map(|n| self.by_name.get(n))
            .find(|op| op.change.as_ref().is_some_and(|c| c.key() == key))
            .map(|op| op.name.as_str())
    }

    pub fn pending_count(&self) -> usize {
        self.pending.len()
    }

    /// The operation an earlier request with this `requestId` started, if any.
    pub fn by_request_id(&self, request_id: &str) -> Option<&str> {
        self.by_request_id.get(request_id).map(String::as_str)
    }

    pub fn all(&self) -> impl Iterator<Item = &Op> {
        self.by_name.values()
    }
}

/// Starts the operation for an accepted mutation and returns its JSON.
pub fn start(st: &mut State, p: Prepared, request_id: Option<&str>) -> Value {
    let id = st.next_id();
    st.ops.seq += 1;
    let ms = crate::time::now_millis();
    let name = format!("operation-{ms}-{:013x}-{:08x}-{:08x}", st.ops.seq, id as u32, (id >> 32) as u32);
    let delay = st.settings.op_delay_polls;
    let op = Op {
        name: name.clone(),
        id,
        scope: OpScope::of(&p.target),
        op_type: p.op_type.to_string(),
        target: p.target,
        target_id: p.target_id,
        insert_time: crate::time::now_rfc3339(),
        end_time: None,
        polls: 0,
        delay,
        created: Instant::now(),
        done: false,
        change: p.change,
        deferred: p.deferred,
        error: None,
        request_id: request_id.map(str::to_string),
    };
    st.ops.by_name.insert(name.clone(), op);
    st.ops.pending.push(name.clone());
    if let Some(rid) = request_id {
        st.ops.by_request_id.insert(rid.to_string(), name.clone());
    }
    if p.immediate || delay == 0 {
        complete(st, &name);
    }
    render_named(st, &name)
}

/// `GET …/operations/{name}`: one poll.
pub fn poll(st: &mut State, scope: &OpScope, name: &str) -> ApiResult<Value> {
    find(st, scope, name)?;
    let due = match st.ops.by_name.get_mut(name) {
        Some(op) if !op.done => {
            op.polls += 1;
            op.polls > op.delay
        }
        _ => false,
    };
    if due {
        complete(st, name);
    }
    Ok(render_named(st, name))
}

/// `POST …/operations/{name}/wait`: completes the operation and returns it.
pub fn wait(st: &mut State, scope: &OpScope, name: &str) -> ApiResult<Value> {
    find(st, scope, name)?;
    complete(st, name);
    Ok(render_named(st, name))
}

/// `GET …/operations` (list, newest last).
pub fn list(st: &State, scope: &OpScope) -> Vec<Value> {
    let mut ops: Vec<&Op> = st.ops.by_name.values().filter(|o| &o.scope == scope).collect();
    ops.sort_by_key(|o| o.id);
    ops.into_iter().map(|o| render(st, o)).collect()
}

fn find(st: &State, scope: &OpScope, name: &str) -> ApiResult<()> {
    match st.ops.by_name.get(name) {
        Some(op) if &op.scope == scope => Ok(()),
        _ => Err(ApiError::not_found(&format!("{}/{name}", scope.path(&st.project)))),
    }
}

/// Completes every unfinished operation older than `settle_after`.
pub fn settle_due(st: &mut State) {
    let Some(after) = st.settings.settle_after else { return };
    let due: Vec<String> = st
        .ops
        .pending
        .iter()
        .filter(|n| st.ops.by_name.get(*n).is_some_and(|op| op.created.elapsed() >= after))
        .cloned()
        .collect();
    for n in due {
        complete(st, &n);
    }
}

/// Completes every unfinished operation, oldest first. Returns how many there were.
pub fn settle_all(st: &mut State) -> usize {
    let all = st.ops.pending.clone();
    for n in &all {
        complete(st, n);
    }
    all.len()
}

/// Moves an operation to `DONE`: applies its change, or records why it failed.
pub fn complete(st: &mut State, name: &str) {
    let (change, deferred) = match st.ops.by_name.get_mut(name) {
        Some(op) if !op.done => (op.change.take(), op.deferred.take()),
        _ => return,
    };
    st.ops.pending.retain(|n| n != name);
    let error = match deferred {
        Some(e) => Some(e),
        None => change.and_then(|c| store::apply(st, c).err()),
    };
    if let Some(op) = st.ops.by_name.get_mut(name) {
        op.done = true;
        op.error = error;
        op.end_time = Some(crate::time::now_rfc3339());
    }
    st.ops.finished.push_back(name.to_string());
    while st.ops.finished.len() > FINISHED_KEPT {
        if let Some(old) = st.ops.finished.pop_front()
            && let Some(op) = st.ops.by_name.remove(&old)
            && let Some(rid) = op.request_id
        {
            st.ops.by_request_id.remove(&rid);
        }
    }
}

fn render_named(st: &State, name: &str) -> Value {
    st.ops.by_name.get(name).map(|op| render(st, op)).unwrap_or(Value::Null)
}

pub fn render(st: &State, op: &Op) -> Value {
    let project = &st.project;
    let status = if op.done {
        "DONE"
    } else if op.polls == 0 && op.delay >= 2 {
        "PENDING"
    } else {
        "RUNNING"
    };
    let mut v = json!({
        "kind": "compute#operation",
        "id": op.id.to_string(),
        "name": op.name,
        "operationType": op.op_type,
        "targetLink": op.target.self_link(project),
        "targetId": op.target_id.to_string(),
        "status": status,
        "user": "gce-fake@example.com",
        "progress": if op.done { 100 } else { 0 },
        "insertTime": op.insert_time,
        "startTime": op.insert_time,
        "selfLink": format!("{}{}/{}", links::API_PREFIX, op.scope.path(project), op.name),
    });
    match &op.scope {
        OpScope::Global => {}
        OpScope::Region(r) => v["region"] = json!(links::region_link(project, r)),
        OpScope::Zone(z) => v["zone"] = json!(links::zone_link(project, z)),
    }
    if let Some(t) = &op.end_time {
        v["endTime"] = json!(t);
    }
    if let Some(e) = &op.error {
        let (err, code, msg) = e.op_fields();
        v["error"] = err;
        v["httpErrorStatusCode"] = json!(code);
        v["httpErrorMessage"] = json!(msg);
    }
    v
}
