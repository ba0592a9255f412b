//! SSL certificates (immutable: insert and delete only, as in the real API). Self-managed
//! certificates need PEM-looking `certificate` and `privateKey` (the fake does not parse X.509,
//! so `expireTime` and `subjectAlternativeNames` are not filled in); the private key is stored but
//! never returned. Managed certificates need `managed.domains` and report them `ACTIVE` at once.

use super::{Ctx, default, one_of, str_field};
use crate::errors::{ApiError, ApiResult};
use serde_json::{Map, Value, json};

pub fn check(_ctx: &mut Ctx, v: &mut Value) -> ApiResult<()> {
    default(v, "type", json!("SELF_MANAGED"));
    one_of(v, "type", &["SELF_MANAGED", "MANAGED"])?;
    if str_field(v, "type") == Some("MANAGED") {
        let domains: Vec<String> = v
            .pointer("/managed/domains")
            .and_then(Value::as_array)
            .map(|a| a.iter().filter_map(|d| d.as_str().map(str::to_string)).collect())
            .unwrap_or_default();
        if domains.is_empty() {
            return Err(ApiError::required("resource.managed.domains"));
        }
        let status: Map<String, Value> = domains.iter().map(|d| (d.clone(), json!("ACTIVE"))).collect();
        v["managed"]["status"] = json!("ACTIVE");
        v["managed"]["domainStatus"] = Value::Object(status);
        v["subjectAlternativeNames"] = json!(domains);
        return Ok(());
    }
    let cert = str_field(v, "certificate").unwrap_or("");
    if !cert.trim_start().starts_with("-----BEGIN CERTIFICATE-----") {
        return Err(ApiError::invalid_field("resource.certificate", "", "The SSL certificate could not be parsed."));
    }
    let key = str_field(v, "privateKey").unwrap_or("");
    if !(key.trim_start().starts_with("-----BEGIN") && key.contains("PRIVATE KEY-----")) {
        return Err(ApiError::invalid_field("resource.privateKey", "", "The SSL key could not be parsed."));
    }
    Ok(())
}
