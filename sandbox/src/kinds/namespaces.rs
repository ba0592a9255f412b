//! Namespaces: what the apiserver sets on create (the `kubernetes` finalizer, phase `Active`,
//! the `kubernetes.io/metadata.name` label). Deletion is a store-wide cascade and stays in
//! `registry.rs`, next to the other objects it removes.

use super::{Kind, NameRule};
use crate::status::ApiResult;
use crate::store::Inner;
use serde_json::{Value, json};

pub struct Namespaces;

impl Kind for Namespaces {
    fn name_rule(&self) -> NameRule {
        NameRule::Label
    }

    fn create(&self, _: &mut Inner, ns: &mut Value) -> ApiResult<()> {
        let name = ns.pointer("/metadata/name").and_then(Value::as_str).unwrap_or_default().to_string();
        ns["spec"] = json!({ "finalizers": ["kubernetes"] });
        ns["status"] = json!({ "phase": "Active" });
        if let Some(Value::Object(m)) = ns.get_mut("metadata") {
            let labels = m.entry("labels").or_insert_with(|| json!({}));
            if let Value::Object(l) = labels {
                l.insert("kubernetes.io/metadata.name".into(), json!(name));
            }
        }
        Ok(())
    }
}
