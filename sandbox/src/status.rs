//! API errors as `metav1.Status` objects.
//!
//! Clients branch on `code` and `reason` (kube-rs: `is_not_found`, 409 retries; kubectl: exit
//! messages; kube-runtime's watcher: 410 `Expired` means "relist"), so every failure leaves the
//! server as a Status with the same code, reason and message shape the real apiserver uses.

use serde_json::{Value, json};

#[derive(Debug, Clone)]
pub struct ApiError {
    pub code: u16,
    pub reason: &'static str,
    pub message: String,
    pub details: Option<Value>,
}

impl ApiError {
    pub fn new(code: u16, reason: &'static str, message: impl Into<String>) -> Self {
        ApiError { code, reason, message: message.into(), details: None }
    }

    fn with_details(mut self, group: &str, kind: &str, name: &str) -> Self {
        let mut d = json!({ "name": name, "kind": kind });
        if !group.is_empty() {
            d["group"] = json!(group);
        }
        self.details = Some(d);
        self
    }

    /// `services "x" not found`
    pub fn not_found(group: &str, plural: &str, name: &str) -> Self {
        Self::new(404, "NotFound", format!("{} \"{name}\" not found", qualified(group, plural)))
            .with_details(group, plural, name)
    }

    pub fn already_exists(group: &str, plural: &str, name: &str) -> Self {
        Self::new(409, "AlreadyExists", format!("{} \"{name}\" already exists", qualified(group, plural)))
            .with_details(group, plural, name)
    }

    pub fn conflict(group: &str, plural: &str, name: &str, why: &str) -> Self {
        Self::new(
            409,
            "Conflict",
            format!("Operation cannot be fulfilled on {} \"{name}\": {why}", qualified(group, plural)),
        )
        .with_details(group, plural, name)
    }

    pub fn stale(group: &str, plural: &str, name: &str) -> Self {
        Self::conflict(
            group,
            plural,
            name,
            "the object has been modified; please apply your changes to the latest version and try again",
        )
    }

    /// 422 `Kind[.group] "name" is invalid: field: detail` with one cause per field error
    /// (`Service "web" is invalid: ...`, `Ingress.networking.k8s.io "web" is invalid: ...`).
    pub fn invalid(group: &str, kind: &str, name: &str, errors: &[FieldError]) -> Self {
        let msgs: Vec<String> = errors.iter().map(FieldError::to_string).collect();
        let qualified = if group.is_empty() { kind.to_string() } else { format!("{kind}.{group}") };
        let message = if msgs.len() == 1 {
            format!("{qualified} \"{name}\" is invalid: {}", msgs[0])
        } else {
            format!("{qualified} \"{name}\" is invalid: [{}]", msgs.join(", "))
        };
        let mut e = Self::new(422, "Invalid", message).with_details(group, kind, name);
        if let Some(d) = e.details.as_mut() {
            d["causes"] = Value::Array(
                errors
                    .iter()
                    .map(|f| json!({ "reason": f.cause_reason(), "message": f.detail_message(), "field": f.field }))
                    .collect(),
            );
        }
        e
    }

    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(400, "BadRequest", message)
    }

    pub fn internal(message: impl Into<String>) -> Self {
        Self::new(500, "InternalError", format!("Internal error occurred: {}", message.into()))
    }

    pub fn method_not_allowed(message: impl Into<String>) -> Self {
        Self::new(405, "MethodNotAllowed", message)
    }

    pub fn expired(message: impl Into<String>) -> Self {
        Self::new(410, "Expired", message)
    }

    pub fn forbidden(message: impl Into<String>) -> Self {
        Self::new(403, "Forbidden", message)
    }

    pub fn to_status(&self) -> Value {
        let mut v = json!({
            "kind": "Status",
            "apiVersion": "v1",
            "metadata": {},
            "status": "Failure",
            "message": self.message,
            "reason": self.reason,
            "code": self.code,
        });
        if let Some(d) = &self.details {
            v["details"] = d.clone();
        }
        v
    }
}

fn qualified(group: &str, plural: &str) -> String {
    if group.is_empty() { plural.to_string() } else { format!("{plural}.{group}") }
}

/// One validation failure, printed like `field.Error` in apimachinery.
#[derive(Debug, Clone)]
pub struct FieldError {
    pub field: String,
    pub kind: FieldErrorKind,
}

#[derive(Debug, Clone)]
pub enum FieldErrorKind {
    Invalid { value: String, detail: String },
    Required(String),
    Duplicate(String),
    Forbidden(String),
    NotSupported { value: String, supported: Vec<String> },
    TooLong { max: usize },
}

impl FieldError {
    pub fn invalid(field: impl Into<String>, value: impl std::fmt::Display, detail: impl Into<String>) -> Self {
        FieldError {
            field: field.into(),
            kind: FieldErrorKind::Invalid { value: value.to_string(), detail: detail.into() },
        }
    }
    pub fn required(field: impl Into<String>, detail: impl Into<String>) -> Self {
        FieldError { field: field.into(), kind: FieldErrorKind::Required(detail.into()) }
    }
    pub fn duplicate(field: impl Into<String>, value: impl std::fmt::Display) -> Self {
        FieldError { field: field.into(), kind: FieldErrorKind::Duplicate(value.to_string()) }
    }
    pub fn forbidden(field: impl Into<String>, detail: impl Into<String>) -> Self {
        FieldError { field: field.into(), kind: FieldErrorKind::Forbidden(detail.into()) }
    }
    pub fn not_supported(field: impl Into<String>, value: impl std::fmt::Display, supported: &[&str]) -> Self {
        FieldError {
            field: field.into(),
            kind: FieldErrorKind::NotSupported {
                value: value.to_string(),
                supported: supported.iter().map(|s| s.to_string()).collect(),
            },
        }
    }
    pub fn too_long(field: impl Into<String>, max: usize) -> Self {
        FieldError { field: field.into(), kind: FieldErrorKind::TooLong { max } }
    }

    fn cause_reason(&self) -> &'static str {
        match self.kind {
            FieldErrorKind::Invalid { .. } => "FieldValueInvalid",
            FieldErrorKind::Required(_) => "FieldValueRequired",
            FieldErrorKind::Duplicate(_) => "FieldValueDuplicate",
            FieldErrorKind::Forbidden(_) => "FieldValueForbidden",
            FieldErrorKind::NotSupported { .. } => "FieldValueNotSupported",
            FieldErrorKind::TooLong { .. } => "FieldValueTooLong",
        }
    }

    fn detail_message(&self) -> String {
        let s = self.to_string();
        s.strip_prefix(&format!("{}: ", self.field)).unwrap_or(&s).to_string()
    }
}

impl std::fmt::Display for FieldError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let field = &self.field;
        match &self.kind {
            FieldErrorKind::Invalid { value, detail } => write!(f, "{field}: Invalid value: {value}: {detail}"),
            FieldErrorKind::Required(d) if d.is_empty() => write!(f, "{field}: Required value"),
            FieldErrorKind::Required(d) => write!(f, "{field}: Required value: {d}"),
            FieldErrorKind::Duplicate(v) => write!(f, "{field}: Duplicate value: {v}"),
            FieldErrorKind::Forbidden(d) => write!(f, "{field}: Forbidden: {d}"),
            FieldErrorKind::NotSupported { value, supported } => {
                let list: Vec<String> = supported.iter().map(|s| format!("\"{s}\"")).collect();
                write!(f, "{field}: Unsupported value: {value}: supported values: {}", list.join(", "))
            }
            FieldErrorKind::TooLong { max } => write!(f, "{field}: Too long: may not be more than {max} bytes"),
        }
    }
}

/// Quote a string value the way apimachinery prints it in messages (`"x"`).
pub fn q(s: &str) -> String {
    format!("{s:?}")
}

pub type ApiResult<T> = Result<T, ApiError>;
