//! Health checks (global, regional) and legacy HTTP health checks.
//!
//! `healthChecks`: `type` is required and its matching sub-object must be present (real GCE:
//! "Invalid value for field 'resource.httpHealthCheck': ''. HTTP healthCheck missing.");
//! defaults `checkIntervalSec` 5, `timeoutSec` 5, `healthyThreshold` 2, `unhealthyThreshold` 2,
//! `proxyHeader: NONE` on HTTP(S) checks, `requestPath: "/"`, port 80 (443 for HTTPS/SSL) unless
//! `portSpecification: USE_SERVING_PORT` or a `portName` is given. `timeoutSec` may not exceed
//! `checkIntervalSec`. `httpHealthChecks`: the same timing defaults, `port` 80, `requestPath` "/".

use super::{Ctx, default, int_in, one_of, str_field};
use crate::errors::{ApiError, ApiResult};
use serde_json::{Value, json};

const TYPES: &[(&str, &str, &str)] = &[
    ("TCP", "tcpHealthCheck", "TCP"),
    ("SSL", "sslHealthCheck", "SSL"),
    ("HTTP", "httpHealthCheck", "HTTP"),
    ("HTTPS", "httpsHealthCheck", "HTTPS"),
    ("HTTP2", "http2HealthCheck", "HTTP2"),
    ("GRPC", "grpcHealthCheck", "GRPC"),
    ("GRPC_WITH_TLS", "grpcTlsHealthCheck", "GRPC with TLS"),
];

fn timing(v: &mut Value) -> ApiResult<()> {
    default(v, "checkIntervalSec", json!(5));
    default(v, "timeoutSec", json!(5));
    default(v, "healthyThreshold", json!(2));
    default(v, "unhealthyThreshold", json!(2));
    int_in(v, "checkIntervalSec", 1, 300)?;
    int_in(v, "timeoutSec", 1, 300)?;
    int_in(v, "healthyThreshold", 1, 10)?;
    int_in(v, "unhealthyThreshold", 1, 10)?;
    let interval = v.get("checkIntervalSec").and_then(Value::as_i64).unwrap_or(5);
    let timeout = v.get("timeoutSec").and_then(Value::as_i64).unwrap_or(5);
    if timeout > interval {
        return Err(ApiError::invalid_field(
            "resource.timeoutSec",
            &timeout.to_string(),
            "TimeoutSec should be less than or equal to checkIntervalSec.",
        ));
    }
    Ok(())
}

pub fn check(_ctx: &mut Ctx, v: &mut Value) -> ApiResult<()> {
    timing(v)?;
    let ty = str_field(v, "type").ok_or_else(|| ApiError::required("resource.type"))?.to_string();
    let Some((_, field, label)) = TYPES.iter().find(|(t, _, _)| *t == ty) else {
        return one_of(v, "type", &TYPES.iter().map(|t| t.0).collect::<Vec<_>>());
    };
    let Some(sub) = v.get_mut(*field).filter(|s| s.is_object()) else {
        return Err(ApiError::invalid_field(
            &format!("resource.{field}"),
            "",
            &format!("{label} healthCheck missing."),
        ));
    };
    one_of(sub, "portSpecification", &["USE_FIXED_PORT", "USE_NAMED_PORT", "USE_SERVING_PORT"])?;
    int_in(sub, "port", 1, 65535)?;
    let serving = str_field(sub, "portSpecification") == Some("USE_SERVING_PORT") || sub.get("portName").is_some();
    if !serving {
        default(sub, "port", json!(if matches!(ty.as_str(), "HTTPS" | "SSL") { 443 } else { 80 }));
    }
    if matches!(ty.as_str(), "HTTP" | "HTTPS" | "HTTP2") {
        default(sub, "proxyHeader", json!("NONE"));
        default(sub, "requestPath", json!("/"));
        if let Some(p) = str_field(sub, "requestPath")
            && !p.starts_with('/')
        {
            return Err(ApiError::invalid_field(
                &format!("resource.{field}.requestPath"),
                p,
                "The request path must start with '/'.",
            ));
        }
    }
    Ok(())
}

pub fn check_legacy(_ctx: &mut Ctx, v: &mut Value) -> ApiResult<()> {
    timing(v)?;
    default(v, "port", json!(80));
    default(v, "requestPath", json!("/"));
    int_in(v, "port", 1, 65535)?;
    Ok(())
}
