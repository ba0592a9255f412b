//! Ingresses (`networking.k8s.io/v1`): what an Ingress controller observes of the apiserver.
//!
//! ```text
//!  create ──> status cleared (PrepareForCreate)
//!         ──> admission.rs  DefaultIngressClass: no class and no legacy annotation
//!                           -> spec.ingressClassName = the (newest) default IngressClass
//!         ──> validate.rs   ValidateIngressCreate (spec + class annotation must match)
//!  update ──> validate.rs   ValidateIngressUpdate (spec; never defaulted)
//!  status ──> status.rs     ValidateIngressStatusUpdate (ingress points)
//! ```
//! `metadata.generation` (bumped on spec changes only) and the status subresource are generic,
//! switched on in the resource table.

mod admission;
mod status;
mod validate;

use admission::INGRESS_CLASS_ANNOTATION;

use super::Kind;
use super::ingress_classes::GROUP;
use crate::status::{ApiError, ApiResult, FieldError};
use crate::store::Inner;
use serde_json::{Value, json};

pub struct Ingresses;

impl Kind for Ingresses {
    fn create(&self, inner: &mut Inner, ing: &mut Value) -> ApiResult<()> {
        ing["status"] = json!({ "loadBalancer": {} });
        admission::default_class(inner, ing);
        let mut errs = validate::spec(ing);
        validate::class_annotation(ing, &mut errs);
        finish(ing, errs)
    }

    fn update(&self, _: &mut Inner, _: &Value, new: &mut Value) -> ApiResult<()> {
        finish(new, validate::spec(new))
    }

    fn update_status(&self, _: &mut Inner, _: &Value, new: &mut Value) -> ApiResult<()> {
        finish(new, status::validate(new))
    }
}

fn finish(ing: &Value, errs: Vec<FieldError>) -> ApiResult<()> {
    if errs.is_empty() {
        return Ok(());
    }
    let name = ing.pointer("/metadata/name").and_then(Value::as_str).unwrap_or_default();
    Err(ApiError::invalid(GROUP, "Ingress", name, &errs))
}
