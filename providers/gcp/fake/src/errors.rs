//! The errors the fake answers with, in Compute's legacy envelope.
//!
//! Compute does not use `google.rpc.Status`; a failed call answers
//! `{"error":{"code":404,"message":"…","errors":[{"message":"…","domain":"global","reason":"notFound"}]}}`
//! and a failed *operation* carries `error.errors[{code,message}]` plus `httpErrorStatusCode` and
//! `httpErrorMessage`. One [`ApiError`] renders both ways, so a check can decide late whether its
//! failure is synchronous or reported inside the `DONE` operation (real GCE does both).

use serde_json::{Value, json};

/// A Compute API error: HTTP status, `errors[].reason`, message, and the code it carries when it is
/// reported inside an operation. Boxed so `Result<_, ApiError>` stays small.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiError(Box<ErrorBody>);

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ErrorBody {
    pub code: u16,
    pub reason: String,
    pub domain: String,
    pub message: String,
    /// `error.errors[].code` when the failure is reported inside an operation
    /// (`RESOURCE_IN_USE_BY_ANOTHER_RESOURCE`, `IP_IN_USE_BY_ANOTHER_RESOURCE`, …).
    pub op_code: String,
    /// `errors[].location` / `locationType` (412s carry `If-Match` / `header`).
    pub location: Option<(String, String)>,
}

impl std::ops::Deref for ApiError {
    type Target = ErrorBody;
    fn deref(&self) -> &ErrorBody {
        &self.0
    }
}

impl std::ops::DerefMut for ApiError {
    fn deref_mut(&mut self) -> &mut ErrorBody {
        &mut self.0
    }
}

impl ApiError {
    pub fn new(code: u16, reason: &str, op_code: &str, message: impl Into<String>) -> Self {
        ApiError(Box::new(ErrorBody {
            code,
            reason: reason.into(),
            domain: "global".into(),
            message: message.into(),
            op_code: op_code.into(),
            location: None,
        }))
    }

    /// 404 `notFound`: "The resource 'projects/p/…/name' was not found".
    pub fn not_found(path: &str) -> Self {
        Self::new(404, "notFound", "RESOURCE_NOT_FOUND", format!("The resource '{path}' was not found"))
    }

    /// 409 `alreadyExists`: "The resource 'projects/p/…/name' already exists".
    pub fn already_exists(path: &str) -> Self {
        Self::new(409, "alreadyExists", "RESOURCE_ALREADY_EXISTS", format!("The resource '{path}' already exists"))
    }

    /// 400 `invalid` naming a field: "Invalid value for field 'resource.x': 'v'. why".
    pub fn invalid_field(field: &str, value: &str, why: &str) -> Self {
        Self::new(400, "invalid", "INVALID_FIELD_VALUE", format!("Invalid value for field '{field}': '{value}'. {why}"))
    }

    /// 400 `invalid` with a free-form message.
    pub fn invalid(message: impl Into<String>) -> Self {
        Self::new(400, "invalid", "INVALID_FIELD_VALUE", message)
    }

    /// 400 `required`: "Required field 'x' not specified".
    pub fn required(field: &str) -> Self {
        Self::new(400, "required", "REQUIRED_FIELD_MISSING", format!("Required field '{field}' not specified"))
    }

    /// 400 `resourceInUseByAnotherResource`:
    /// "The health_check resource 'projects/p/…' is already being used by 'projects/p/…'".
    pub fn in_use(noun: &str, path: &str, user: &str) -> Self {
        Self::new(
            400,
            "resourceInUseByAnotherResource",
            "RESOURCE_IN_USE_BY_ANOTHER_RESOURCE",
            format!("The {noun} resource '{path}' is already being used by '{user}'"),
        )
    }

    /// 400 `resourceNotReady`: a resource whose own operation has not finished yet.
    pub fn not_ready(path: &str) -> Self {
        Self::new(400, "resourceNotReady", "RESOURCE_NOT_READY", format!("The resource '{path}' is not ready"))
    }

    /// 412 `conditionNotMet` for a stale or missing `fingerprint`.
    pub fn fingerprint_mismatch() -> Self {
        let mut e = Self::new(
            412,
            "conditionNotMet",
            "CONDITION_NOT_MET",
            "Supplied fingerprint does not match current fingerprint.",
        );
        e.location = Some(("If-Match".into(), "header".into()));
        e
    }

    /// 412 `conditionNotMet` for a stale or missing `labelFingerprint` (real GCE's wording).
    pub fn label_fingerprint_mismatch() -> Self {
        let mut e = Self::new(
            412,
            "conditionNotMet",
            "CONDITION_NOT_MET",
            "Labels fingerprint either invalid or resource labels have changed",
        );
        e.location = Some(("If-Match".into(), "header".into()));
        e
    }

    /// 400 `memberAlreadyExists` from `instanceGroups.addInstances`.
    pub fn member_exists(instance: &str, group: &str) -> Self {
        Self::new(
            400,
            "memberAlreadyExists",
            "MEMBER_ALREADY_EXISTS",
            format!("Resource '{instance}' is already a member of '{group}'."),
        )
    }

    /// 409 `IP_IN_USE_BY_ANOTHER_RESOURCE` (internal addresses; reported inside the operation).
    pub fn internal_ip_in_use(ip: &str) -> Self {
        Self::new(
            409,
            "ipInUseByAnotherResource",
            "IP_IN_USE_BY_ANOTHER_RESOURCE",
            format!("IP '{ip}' is already being used by another resource."),
        )
    }

    /// 403 `quotaExceeded` (an address pool of the fake ran dry).
    pub fn quota(metric: &str, region: &str) -> Self {
        let mut e = Self::new(
            403,
            "quotaExceeded",
            "QUOTA_EXCEEDED",
            format!("Quota '{metric}' exceeded.  Limit: 0.0 in region {region}."),
        );
        e.domain = "usageLimits".into();
        e
    }

    /// 405 for a verb a collection does not have.
    pub fn method_not_allowed(method: &str, path: &str) -> Self {
        Self::new(
            405,
            "httpMethodNotAllowed",
            "METHOD_NOT_ALLOWED",
            format!("HTTP method {method} is not supported by this URL ({path})"),
        )
    }

    /// The synchronous body: `{"error":{"code","message","errors":[{"message","domain","reason"}]}}`.
    pub fn to_body(&self) -> Value {
        let mut item = json!({ "message": self.message, "domain": self.domain, "reason": self.reason });
        if let Some((loc, ty)) = &self.location {
            item["location"] = json!(loc);
            item["locationType"] = json!(ty);
        }
        json!({ "error": { "code": self.code, "message": self.message, "errors": [item] } })
    }

    /// The fields a failed operation carries: `error`, `httpErrorStatusCode`, `httpErrorMessage`.
    pub fn op_fields(&self) -> (Value, i64, String) {
        (
            json!({ "errors": [{ "code": self.op_code, "message": self.message }] }),
            i64::from(self.code),
            http_error_message(self.code).to_string(),
        )
    }
}

/// Compute's upper-case reason phrase in `httpErrorMessage` ("BAD REQUEST", "NOT FOUND").
pub fn http_error_message(code: u16) -> &'static str {
    match code {
        400 => "BAD REQUEST",
        403 => "FORBIDDEN",
        404 => "NOT FOUND",
        405 => "METHOD NOT ALLOWED",
        409 => "CONFLICT",
        412 => "PRECONDITION FAILED",
        429 => "TOO MANY REQUESTS",
        500 => "INTERNAL SERVER ERROR",
        503 => "SERVICE UNAVAILABLE",
        _ => "ERROR",
    }
}

pub type ApiResult<T> = Result<T, ApiError>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sync_body_has_the_legacy_shape() {
        let b = ApiError::not_found("projects/p/global/healthChecks/x").to_body();
        assert_eq!(b["error"]["code"], 404);
        assert_eq!(b["error"]["errors"][0]["reason"], "notFound");
        assert_eq!(b["error"]["errors"][0]["domain"], "global");
        assert_eq!(b["error"]["message"], "The resource 'projects/p/global/healthChecks/x' was not found");
    }

    #[test]
    fn op_fields_carry_code_and_http_status() {
        let (err, code, msg) = ApiError::in_use("health_check", "a", "b").op_fields();
        assert_eq!(err["errors"][0]["code"], "RESOURCE_IN_USE_BY_ANOTHER_RESOURCE");
        assert_eq!(code, 400);
        assert_eq!(msg, "BAD REQUEST");
    }
}
