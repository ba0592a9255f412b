//! Backend services (regional and global): defaults as real GCE fills them, backend checks, and
//! `getHealth`.
//!
//! Defaults (recorded from real GCE by Config Connector's golden logs): `sessionAffinity: NONE`,
//! `timeoutSec: 30`, `port: 80`, `affinityCookieTtlSec: 0`, `connectionDraining.drainingTimeoutSec: 0`,
//! `enableCDN: false`; `protocol` HTTP (global) / TCP (regional); `loadBalancingScheme` EXTERNAL
//! (global) / INTERNAL (regional); each backend's `balancingMode` CONNECTION for L4 protocols on a
//! regional service, UTILIZATION otherwise. At most one health check; a group may appear once.

use super::{Ctx, default, int_in, one_of, str_field};
use crate::errors::{ApiError, ApiResult};
use crate::links::{self, Key};
use crate::store::State;
use serde_json::{Value, json};

const PROTOCOLS: &[&str] = &["HTTP", "HTTPS", "HTTP2", "TCP", "SSL", "UDP", "GRPC", "UNSPECIFIED", "H2C"];
const SCHEMES: &[&str] = &["EXTERNAL", "EXTERNAL_MANAGED", "INTERNAL", "INTERNAL_MANAGED", "INTERNAL_SELF_MANAGED"];

pub fn check(ctx: &mut Ctx, v: &mut Value) -> ApiResult<()> {
    let global = ctx.global();
    default(v, "protocol", json!(if global { "HTTP" } else { "TCP" }));
    default(v, "loadBalancingScheme", json!(if global { "EXTERNAL" } else { "INTERNAL" }));
    default(v, "sessionAffinity", json!("NONE"));
    default(v, "timeoutSec", json!(30));
    default(v, "port", json!(80));
    default(v, "affinityCookieTtlSec", json!(0));
    default(v, "connectionDraining", json!({"drainingTimeoutSec": 0}));
    default(v, "enableCDN", json!(false));
    one_of(v, "protocol", PROTOCOLS)?;
    one_of(v, "loadBalancingScheme", SCHEMES)?;
    one_of(
        v,
        "sessionAffinity",
        &[
            "NONE",
            "CLIENT_IP",
            "CLIENT_IP_PROTO",
            "CLIENT_IP_PORT_PROTO",
            "CLIENT_IP_NO_DESTINATION",
            "GENERATED_COOKIE",
            "HEADER_FIELD",
            "HTTP_COOKIE",
            "STRONG_COOKIE_AFFINITY",
        ],
    )?;
    int_in(v, "timeoutSec", 1, 2_147_483_647)?;
    if let Some(hcs) = v.get("healthChecks").and_then(Value::as_array)
        && hcs.len() > 1
    {
        return Err(ApiError::invalid_field(
            "resource.healthChecks",
            &Value::Array(hcs.clone()).to_string(),
            "A backend service can have at most one health check.",
        ));
    }
    let l4 = !global && matches!(str_field(v, "protocol"), Some("TCP" | "UDP" | "SSL" | "UNSPECIFIED"));
    let mode = if l4 { "CONNECTION" } else { "UTILIZATION" };
    let mut seen = Vec::new();
    if let Some(backends) = v.get_mut("backends").and_then(Value::as_array_mut) {
        for (i, b) in backends.iter_mut().enumerate() {
            let group = str_field(b, "group").unwrap_or("").to_string();
            if group.is_empty() {
                return Err(ApiError::required(&format!("resource.backends[{i}].group")));
            }
            if seen.contains(&group) {
                return Err(ApiError::invalid_field(
                    &format!("resource.backends[{i}].group"),
                    &group,
                    "Duplicate backend group.",
                ));
            }
            seen.push(group);
            default(b, "balancingMode", json!(mode));
            one_of(b, "balancingMode", &["CONNECTION", "UTILIZATION", "RATE", "CUSTOM_METRICS"])?;
            if !l4 {
                default(b, "capacityScaler", json!(1));
            }
        }
    }
    super::normalize_networks(ctx, v);
    Ok(())
}

/// `getHealth` with `{group}`: one entry per member instance, `HEALTHY` unless marked unhealthy
/// through the admin API.
pub fn get_health(st: &State, key: &Key, body: Option<Value>) -> ApiResult<Value> {
    let bs = st.resources.get(key).ok_or_else(|| ApiError::not_found(&key.path(&st.project)))?;
    let group_text = body.as_ref().and_then(|b| str_field(b, "group")).ok_or_else(|| ApiError::required("group"))?;
    let group = links::parse_ref(group_text, &st.project)
        .filter(|r| r.key.coll == crate::collections::Coll::InstanceGroup)
        .ok_or_else(|| ApiError::invalid_field("group", group_text, "The URL is malformed."))?;
    let link = group.key.self_link(&st.project);
    let is_backend = bs
        .get("backends")
        .and_then(Value::as_array)
        .is_some_and(|bs| bs.iter().any(|b| str_field(b, "group") == Some(&link)));
    if !is_backend {
        return Err(ApiError::invalid_field(
            "group",
            group_text,
            &format!("Could not find BackendService backend with group '{link}'."),
        ));
    }
    let statuses: Vec<Value> = st
        .members
        .get(&group.key)
        .into_iter()
        .flatten()
        .map(|inst| {
            let ip = links::parse_ref(inst, &st.project)
                .and_then(|r| st.resources.get(&r.key))
                .and_then(|i| i.pointer("/networkInterfaces/0/networkIP"))
                .cloned()
                .unwrap_or(Value::Null);
            let state = if st.unhealthy.contains(inst) { "UNHEALTHY" } else { "HEALTHY" };
            json!({ "instance": inst, "ipAddress": ip, "healthState": state })
        })
        .collect();
    let mut out = json!({ "kind": "compute#backendServiceGroupHealth" });
    if !statuses.is_empty() {
        out["healthStatus"] = json!(statuses);
    }
    Ok(out)
}
