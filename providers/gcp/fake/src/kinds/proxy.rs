//! Target HTTP and HTTPS proxies: `urlMap` is required; HTTPS proxies need 1–15
//! `sslCertificates` (or a `certificateMap`) and default `quicOverride: NONE`. `setUrlMap` and
//! `setSslCertificates` are served at `projects/{p}/targetHttp(s)Proxies/{n}/…` without `/global/`,
//! exactly where the real API (and so the Rust client) has them.

use super::{Ctx, default, one_of, str_field};
use crate::collections::Coll;
use crate::errors::{ApiError, ApiResult};
use crate::links::Key;
use crate::ops::Prepared;
use crate::store::State;
use serde_json::{Value, json};

pub fn check(ctx: &mut Ctx, v: &mut Value) -> ApiResult<()> {
    if v.get("urlMap").is_none() {
        return Err(ApiError::required("resource.urlMap"));
    }
    if ctx.key.coll == Coll::TargetHttpsProxy {
        default(v, "quicOverride", json!("NONE"));
        one_of(v, "quicOverride", &["NONE", "ENABLE", "DISABLE"])?;
        check_certs(v.get("sslCertificates"), v.get("certificateMap").is_some())?;
    }
    Ok(())
}

fn check_certs(certs: Option<&Value>, has_map: bool) -> ApiResult<()> {
    let n = certs.and_then(Value::as_array).map_or(0, Vec::len);
    if n == 0 && !has_map {
        return Err(ApiError::required("resource.sslCertificates"));
    }
    if n > 15 {
        return Err(ApiError::invalid_field(
            "resource.sslCertificates",
            &n.to_string(),
            "At most 15 SSL certificates may be attached to a target HTTPS proxy.",
        ));
    }
    Ok(())
}

fn stored(st: &State, key: &Key) -> ApiResult<Value> {
    st.resources.get(key).cloned().ok_or_else(|| ApiError::not_found(&key.path(&st.project)))
}

/// `POST projects/{p}/targetHttp(s)Proxies/{n}/setUrlMap` with `{urlMap}`.
pub fn set_url_map(st: &mut State, key: &Key, body: Option<Value>) -> ApiResult<Prepared> {
    let mut v = stored(st, key)?;
    let url_map =
        body.as_ref().and_then(|b| str_field(b, "urlMap")).ok_or_else(|| ApiError::required("urlMap"))?.to_string();
    v["urlMap"] = json!(url_map);
    super::replace_with(st, key, v, "setUrlMap", true)
}

/// `POST projects/{p}/targetHttpsProxies/{n}/setSslCertificates` with `{sslCertificates:[…]}`.
pub fn set_ssl_certificates(st: &mut State, key: &Key, body: Option<Value>) -> ApiResult<Prepared> {
    let mut v = stored(st, key)?;
    let certs = body.as_ref().and_then(|b| b.get("sslCertificates")).cloned().unwrap_or_else(|| json!([]));
    check_certs(Some(&certs), false)?;
    v["sslCertificates"] = certs;
    super::replace_with(st, key, v, "setSslCertificates", true)
}
