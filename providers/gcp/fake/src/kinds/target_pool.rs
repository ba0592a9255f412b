//! Target pools (legacy network load balancing): instances and legacy HTTP health checks by
//! reference, `addInstance`/`removeInstance`/`addHealthCheck`/`removeHealthCheck`, `getHealth`.

use super::{Ctx, default, one_of, str_field};
use crate::errors::{ApiError, ApiResult};
use crate::links::{self, Key};
use crate::ops::Prepared;
use crate::store::State;
use serde_json::{Value, json};

pub fn check(_ctx: &mut Ctx, v: &mut Value) -> ApiResult<()> {
    default(v, "sessionAffinity", json!("NONE"));
    one_of(v, "sessionAffinity", &["NONE", "CLIENT_IP", "CLIENT_IP_PROTO"])?;
    if v.get("healthChecks").and_then(Value::as_array).is_some_and(|a| a.len() > 1) {
        return Err(ApiError::invalid_field(
            "resource.healthChecks",
            "",
            "A target pool can have at most one health check.",
        ));
    }
    Ok(())
}

/// Links in `body[list][].field`.
fn listed(body: Option<&Value>, list: &str, field: &str) -> Vec<String> {
    body.and_then(|b| b.get(list))
        .and_then(Value::as_array)
        .map(|a| a.iter().filter_map(|x| str_field(x, field).map(str::to_string)).collect())
        .unwrap_or_default()
}

fn absolute(st: &State, text: &str) -> String {
    links::parse_ref(text, &st.project).map(|r| r.key.self_link(&st.project)).unwrap_or_else(|| text.to_string())
}

pub fn action(st: &mut State, key: &Key, action: &str, body: Option<Value>) -> ApiResult<Prepared> {
    let mut v = st.resources.get(key).cloned().ok_or_else(|| ApiError::not_found(&key.path(&st.project)))?;
    let (field, list, item) = match action {
        "addInstance" | "removeInstance" => ("instances", "instances", "instance"),
        _ => ("healthChecks", "healthChecks", "healthCheck"),
    };
    let given: Vec<String> = listed(body.as_ref(), list, item).iter().map(|t| absolute(st, t)).collect();
    let mut current: Vec<String> = v
        .get(field)
        .and_then(Value::as_array)
        .map(|a| a.iter().filter_map(|x| x.as_str().map(str::to_string)).collect())
        .unwrap_or_default();
    if action.starts_with("add") {
        for g in given {
            if !current.contains(&g) {
                current.push(g);
            }
        }
    } else {
        current.retain(|c| !given.contains(c));
    }
    if field == "healthChecks" && current.len() > 1 {
        return Err(ApiError::invalid_field("healthChecks", "", "A target pool can have at most one health check."));
    }
    v[field] = json!(current);
    let op_type = match action {
        "addInstance" => "addInstance",
        "removeInstance" => "removeInstance",
        "addHealthCheck" => "addHealthCheck",
        _ => "removeHealthCheck",
    };
    super::replace_with(st, key, v, op_type, false)
}

/// `getHealth` with `{instance}`.
pub fn get_health(st: &State, key: &Key, body: Option<Value>) -> ApiResult<Value> {
    let tp = st.resources.get(key).ok_or_else(|| ApiError::not_found(&key.path(&st.project)))?;
    let text = body.as_ref().and_then(|b| str_field(b, "instance")).ok_or_else(|| ApiError::required("instance"))?;
    let inst = absolute(st, text);
    let member =
        tp.get("instances").and_then(Value::as_array).is_some_and(|a| a.iter().any(|x| x.as_str() == Some(&inst)));
    if !member {
        return Err(ApiError::invalid_field("instance", text, "The instance is not a member of the target pool."));
    }
    let ip = links::parse_ref(&inst, &st.project)
        .and_then(|r| st.resources.get(&r.key))
        .and_then(|i| i.pointer("/networkInterfaces/0/networkIP"))
        .cloned()
        .unwrap_or(Value::Null);
    let state = if st.unhealthy.contains(&inst) { "UNHEALTHY" } else { "HEALTHY" };
    Ok(json!({
        "kind": "compute#targetPoolInstanceHealth",
        "healthStatus": [{ "instance": inst, "ipAddress": ip, "healthState": state }],
    }))
}
