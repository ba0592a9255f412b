//! SDK errors -> [`ProviderError`], by AWS error code and HTTP status.
//!
//! The controller's retry policy depends only on the class, so this is the one place that decides
//! what "Throttling", "AccessDenied" or a 503 means. Every error names the failing call
//! (`elbv2:CreateLoadBalancer`) so that a message in a condition or event is actionable on its own.
//!
//! Emulators answer actions they do not implement with HTTP 500 and an HTML page (no AWS error
//! code); that is reported as `Invalid` ("the endpoint does not implement ...") rather than
//! retried forever as a server error.

use cloudlb_provider::error::chain;
use std::error::Error as StdError;

use aws_sdk_elasticloadbalancingv2::config::http::HttpResponse;
use aws_sdk_elasticloadbalancingv2::error::{ProvideErrorMetadata, SdkError};
use cloudlb_provider::ProviderError;

const THROTTLING: &[&str] = &[
    "Throttling",
    "ThrottlingException",
    "ThrottledException",
    "RequestLimitExceeded",
    "RequestThrottled",
    "RequestThrottledException",
    "TooManyRequestsException",
    "SlowDown",
    "PriorRequestNotComplete",
    "EC2ThrottledException",
];

const PERMISSION: &[&str] = &[
    "AccessDenied",
    "AccessDeniedException",
    "UnauthorizedOperation",
    "AuthFailure",
    "InvalidClientTokenId",
    "SignatureDoesNotMatch",
    "ExpiredToken",
    "UnrecognizedClientException",
    "OperationNotPermitted",
    "OperationNotPermittedException",
];

const TRANSIENT: &[&str] = &[
    "InternalFailure",
    "InternalError",
    "ServiceUnavailable",
    "ServiceUnavailableException",
    "Unavailable",
    "RequestTimeout",
    "RequestTimeoutException",
    "IDPCommunicationError",
    // A dependency still being released (e.g. a security group whose ENIs are going away).
    "DependencyViolation",
    "ResourceInUse",
    "ResourceInUseException",
];

/// The AWS error code of `err`, if the service sent one.
pub fn code<E: ProvideErrorMetadata>(err: &SdkError<E, HttpResponse>) -> Option<&str> {
    match err {
        SdkError::ServiceError(ctx) => ctx.err().code(),
        _ => None,
    }
}

/// Whether `err` carries one of `codes`.
pub fn is<E: ProvideErrorMetadata>(err: &SdkError<E, HttpResponse>, codes: &[&str]) -> bool {
    code(err).is_some_and(|c| codes.contains(&c))
}

fn is_quota(code: &str) -> bool {
    (code.starts_with("TooMany") && code != "TooManyRequestsException")
        || (code.ends_with("LimitExceeded") && code != "RequestLimitExceeded")
        || code.ends_with("LimitExceededException")
        || code.contains("QuotaExceeded")
}

fn is_invalid(code: &str) -> bool {
    code.starts_with("Validation")
        || code.starts_with("Invalid")
        || code.starts_with("Duplicate")
        || code.ends_with("NotFound")
        || code.ends_with("NotFoundException")
        || code == "MissingParameter"
        || code == "UnsupportedProtocol"
        || code == "UnsupportedOperation"
        || code == "IncompatibleProtocols"
}

/// Map an SDK error of `call` to a [`ProviderError`].
pub fn map<E>(call: &'static str, err: SdkError<E, HttpResponse>) -> ProviderError
where
    E: ProvideErrorMetadata + StdError + Send + Sync + 'static,
{
    match &err {
        SdkError::ServiceError(ctx) => {
            let status = ctx.raw().status().as_u16();
            let code = ctx.err().code().unwrap_or("").to_string();
            let message = ctx.err().message().map(String::from).unwrap_or_else(|| ctx.err().to_string());
            classify(call, status, &code, &message, ctx.raw().body().bytes())
        }
        SdkError::TimeoutError(_) => ProviderError::Retryable { call, message: "the call timed out".into() },
        SdkError::DispatchFailure(_) => {
            ProviderError::Retryable { call, message: format!("could not reach the AWS endpoint: {}", chain(&err)) }
        }
        SdkError::ResponseError(e) => {
            let status = e.raw().status().as_u16();
            classify(call, status, "", &chain(&err), e.raw().body().bytes())
        }
        SdkError::ConstructionFailure(_) => ProviderError::Invalid { call, message: chain(&err) },
        _ => ProviderError::Retryable { call, message: chain(&err) },
    }
}

/// Whether a response with this HTTP status and AWS error code asks us to slow down.
pub fn is_throttling(status: u16, code: &str) -> bool {
    THROTTLING.contains(&code) || status == 429
}

/// The AWS error code of a raw error response: `<Code>` of the XML the query protocols (ELBv2,
/// EC2) answer with, else the JSON protocols' (ACM, tagging) `x-amzn-ErrorType` header or
/// `__type` field, without its namespace (`com.amazon...#ThrottlingException`) or URL suffix.
pub fn response_code(error_type_header: Option<&str>, body: Option<&[u8]>) -> Option<String> {
    let body = body.map(String::from_utf8_lossy);
    let xml = || {
        let b = body.as_deref()?;
        let start = b.find("<Code>")? + "<Code>".len();
        Some(b[start..].split('<').next()?.trim().to_string())
    };
    let json = || {
        let v: serde_json::Value = serde_json::from_str(body.as_deref()?).ok()?;
        v.get("__type").or_else(|| v.get("code"))?.as_str().map(String::from)
    };
    let raw = error_type_header.map(String::from).or_else(xml).or_else(json)?;
    let code = raw.rsplit('#').next().unwrap_or(&raw);
    let code = code.split(':').next().unwrap_or(code).trim();
    (!code.is_empty()).then(|| code.to_string())
}

fn classify(call: &'static str, status: u16, code: &str, message: &str, body: Option<&[u8]>) -> ProviderError {
    let text = if code.is_empty() { message.to_string() } else { format!("{code}: {message}") };
    if is_throttling(status, code) {
        return ProviderError::Throttled { call, message: text, retry_after: None };
    }
    if PERMISSION.contains(&code) {
        return ProviderError::Permission {
            call,
            message: format!("{text} (allow {} for cloudlb's IAM role; see deploy/aws/README.md)", iam_action(call)),
        };
    }
    if is_quota(code) {
        return ProviderError::Quota { call, message: text };
    }
    if TRANSIENT.contains(&code) {
        return ProviderError::Retryable { call, message: text };
    }
    if code.is_empty() && status >= 500 {
        let html = body.is_some_and(|b| {
            let head = String::from_utf8_lossy(&b[..b.len().min(512)]).to_ascii_lowercase();
            head.contains("<!doctype html") || head.contains("<html")
        });
        if html && status == 500 {
            return ProviderError::Invalid {
                call,
                message: format!(
                    "the endpoint does not implement {call} (HTTP 500 with an HTML page instead of an AWS error; \
                     an emulator without this action?)"
                ),
            };
        }
        return ProviderError::Retryable { call, message: format!("HTTP {status}: {text}") };
    }
    if status >= 500 {
        return ProviderError::Retryable { call, message: text };
    }
    if is_invalid(code) || (400..500).contains(&status) && !code.is_empty() {
        return ProviderError::Invalid { call, message: text };
    }
    ProviderError::Retryable { call, message: format!("HTTP {status}: {text}") }
}

/// The IAM action of a call name: `elbv2:X` -> `elasticloadbalancing:X`, `ec2:X` unchanged.
fn iam_action(call: &str) -> String {
    match call.strip_prefix("elbv2:") {
        Some(action) => format!("elasticloadbalancing:{action}"),
        None => call.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use cloudlb_provider::ErrorClass;

    #[test]
    fn classes_by_code_and_status() {
        let c = |status, code: &str| classify("elbv2:CreateLoadBalancer", status, code, "m", None);
        assert!(matches!(c(400, "Throttling"), ProviderError::Throttled { .. }));
        assert!(matches!(c(503, "RequestLimitExceeded"), ProviderError::Throttled { .. }));
        assert!(matches!(c(429, ""), ProviderError::Throttled { .. }));
        assert!(matches!(c(403, "AccessDenied"), ProviderError::Permission { .. }));
        assert!(matches!(c(400, "TooManyLoadBalancers"), ProviderError::Quota { .. }));
        assert!(matches!(c(400, "SecurityGroupLimitExceeded"), ProviderError::Quota { .. }));
        assert!(matches!(c(400, "ValidationError"), ProviderError::Invalid { .. }));
        assert!(matches!(c(400, "InvalidConfigurationRequest"), ProviderError::Invalid { .. }));
        assert!(matches!(c(503, ""), ProviderError::Retryable { .. }));
        assert!(matches!(c(500, "InternalFailure"), ProviderError::Retryable { .. }));
        assert!(matches!(c(400, "DependencyViolation"), ProviderError::Retryable { .. }));
        let e = c(403, "AccessDenied");
        assert_eq!(e.class(), ErrorClass::Permanent);
        assert!(e.to_string().contains("elbv2:CreateLoadBalancer"), "{e}");
        assert!(e.to_string().contains("allow elasticloadbalancing:CreateLoadBalancer"), "{e}");
    }

    #[test]
    fn emulator_html_500_is_a_clear_invalid() {
        let e = classify("elbv2:SetSecurityGroups", 500, "", "m", Some(b"<!DOCTYPE html><html>500</html>"));
        assert!(matches!(e, ProviderError::Invalid { .. }), "{e:?}");
        assert!(e.to_string().contains("does not implement elbv2:SetSecurityGroups"));
    }

    #[test]
    fn error_codes_are_read_from_raw_responses() {
        let elb = b"<ErrorResponse xmlns=\"http://elasticloadbalancing.amazonaws.com/doc/2015-12-01/\"><Error>\
<Type>Sender</Type><Code>Throttling</Code><Message>Rate exceeded</Message></Error></ErrorResponse>";
        assert_eq!(response_code(None, Some(elb)).as_deref(), Some("Throttling"));
        let ec2 = b"<Response><Errors><Error><Code>RequestLimitExceeded</Code></Error></Errors></Response>";
        assert_eq!(response_code(None, Some(ec2)).as_deref(), Some("RequestLimitExceeded"));
        let acm = br#"{"__type":"com.amazonaws.acm#ThrottlingException","message":"slow down"}"#;
        assert_eq!(response_code(None, Some(acm)).as_deref(), Some("ThrottlingException"));
        let header = "ThrottlingException:http://internal.amazon.com/coral/com.amazon.coral.availability/";
        assert_eq!(response_code(Some(header), Some(b"{}")).as_deref(), Some("ThrottlingException"));
        assert_eq!(response_code(None, Some(b"<html>oops</html>")), None);
        assert_eq!(response_code(None, None), None);
        assert!(is_throttling(400, "Throttling") && is_throttling(503, "RequestLimitExceeded"));
        assert!(is_throttling(429, "") && !is_throttling(400, "ValidationError") && !is_throttling(503, ""));
    }
}
