//! Service semantics the apiserver adds on top of storage: ClusterIP and NodePort allocation,
//! defaulting, type-dependent field clean-up and validation — the parts a LoadBalancer
//! controller observes (it reads `nodePort`/`healthCheckNodePort`, and writes status, which is
//! validated and defaulted: `ipMode` becomes `VIP` when unset, see DESIGN §8).
//!
//! ```text
//!  create/update ──> defaults.rs (carry allocated values, drop type-dependent fields, default)
//!                ──> validate.rs (static rules)
//!                ──> alloc.rs    (claim, allocate, commit — nothing leaks on failure)
//!  status        ──> status.rs   (ingress points, conditions)
//!  removed       ──> alloc.rs    (release)
//! ```

mod alloc;
mod defaults;
mod spec;
mod status;
mod validate;

pub use alloc::Allocator;

use super::{Kind, NameRule};
use crate::status::{ApiError, ApiResult, FieldError};
use crate::store::Inner;
use defaults::{default, drop_type_dependent, patch_allocated};
use serde_json::{Value, json};
use spec::str_at;
use validate::validate;

/// The Service kind's hooks.
pub struct Services;

impl Kind for Services {
    /// `metadata.name` is a DNS-1035 label, checked by [`validate`] with the other fields.
    fn name_rule(&self) -> NameRule {
        NameRule::OwnHook
    }

    fn create(&self, inner: &mut Inner, obj: &mut Value) -> ApiResult<()> {
        reset_status_on_create(obj);
        prepare(&mut inner.alloc, None, obj)
    }

    fn update(&self, inner: &mut Inner, old: &Value, new: &mut Value) -> ApiResult<()> {
        prepare(&mut inner.alloc, Some(old), new)
    }

    fn update_status(&self, _: &mut Inner, _: &Value, new: &mut Value) -> ApiResult<()> {
        status::prepare_status(new)
    }

    fn removed(&self, inner: &mut Inner, last: &Value) {
        inner.alloc.release(last);
    }
}

/// Create/update hook: default, validate, then allocate. `old` is `None` on create.
fn prepare(alloc: &mut Allocator, old: Option<&Value>, new: &mut Value) -> ApiResult<()> {
    if let Some(old) = old {
        patch_allocated(old, new);
        drop_type_dependent(old, new);
    }
    default(new);
    let name = str_at(new, "/metadata/name").to_string();
    let invalid = |errs: &[FieldError]| ApiError::invalid("", "Service", &name, errs);
    let errs = validate(new, old, alloc.np_range);
    if !errs.is_empty() {
        return Err(invalid(&errs));
    }
    alloc.allocate(old, new)
}

/// Clears status on create (the real `PrepareForCreate`).
fn reset_status_on_create(svc: &mut Value) {
    svc["status"] = json!({ "loadBalancer": {} });
}

#[cfg(test)]
mod tests {
    use super::status::prepare_status;
    use super::*;

    fn svc(spec: Value) -> Value {
        json!({"metadata": {"name": "s", "namespace": "default"}, "spec": spec})
    }

    #[test]
    fn allocates_and_keeps() {
        let mut a = Allocator::new("10.96.0.0/16", (30000, 32767)).unwrap();
        let mut s = svc(
            json!({"type": "LoadBalancer", "externalTrafficPolicy": "Local", "ports": [{"port": 80}, {"port": 443, "name": "b"}]}),
        );
        // two ports need names
        assert!(prepare(&mut a, None, &mut s).is_err());
        s["spec"]["ports"][0]["name"] = json!("a");
        prepare(&mut a, None, &mut s).unwrap();
        assert_eq!(s["spec"]["clusterIP"], "10.96.0.2");
        assert_eq!(s["spec"]["ports"][0]["nodePort"], 30000);
        assert_eq!(s["spec"]["ports"][1]["targetPort"], 443);
        assert_eq!(s["spec"]["healthCheckNodePort"], 30002);
        // an update without the allocated values keeps them
        let mut upd = svc(
            json!({"type": "LoadBalancer", "externalTrafficPolicy": "Local", "ports": [{"port": 80, "name": "a"}, {"port": 443, "name": "b"}]}),
        );
        prepare(&mut a, Some(&s), &mut upd).unwrap();
        assert_eq!(upd, s);
        // a second service cannot take a used port
        let mut s2 = json!({"metadata": {"name": "t", "namespace": "default"}, "spec": {"type": "NodePort", "ports": [{"port": 80, "nodePort": 30000}]}});
        let e = prepare(&mut a, None, &mut s2).unwrap_err();
        assert_eq!(e.code, 422, "{}", e.message);
        // switching to ClusterIP releases the ports
        let mut c = s.clone();
        c["spec"]["type"] = json!("ClusterIP");
        prepare(&mut a, Some(&s), &mut c).unwrap();
        assert!(c["spec"]["ports"][0].get("nodePort").is_none());
        assert!(c["spec"].get("healthCheckNodePort").is_none());
        assert!(c["spec"].get("externalTrafficPolicy").is_none());
        prepare(&mut a, None, &mut s2).unwrap();
    }

    #[test]
    fn source_ranges_and_status() {
        let mut a = Allocator::new("10.96.0.0/16", (30000, 32767)).unwrap();
        let mut s = svc(
            json!({"type": "LoadBalancer", "ports": [{"port": 80}], "loadBalancerSourceRanges": ["10.0.0.0/8", "bogus"]}),
        );
        let e = prepare(&mut a, None, &mut s).unwrap_err();
        assert!(e.message.contains("must be a list of IP ranges"), "{}", e.message);
        let mut st = json!({"metadata": {"name": "s"}, "status": {"loadBalancer": {"ingress": [{"ip": "1.2.3.4"}, {"hostname": "a.example.com"}]}}});
        prepare_status(&mut st).unwrap();
        assert_eq!(st["status"]["loadBalancer"]["ingress"][0]["ipMode"], "VIP");
        assert!(st["status"]["loadBalancer"]["ingress"][1].get("ipMode").is_none());
        let mut bad = json!({"metadata": {"name": "s"}, "status": {"loadBalancer": {"ingress": [{"hostname": "a.example.com", "ipMode": "Proxy"}]}}});
        assert!(prepare_status(&mut bad).is_err());
    }
}
