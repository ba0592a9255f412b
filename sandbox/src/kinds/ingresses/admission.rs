//! The `DefaultIngressClass` admission plugin: on create (never on update), an Ingress that names
//! no class — neither `spec.ingressClassName` nor the legacy `kubernetes.io/ingress.class`
//! annotation — gets the default IngressClass's name. With several IngressClasses annotated
//! `ingressclass.kubernetes.io/is-default-class: "true"` the newest wins (creationTimestamp,
//! then name ascending on a tie), as since Kubernetes 1.28; with none, the Ingress stays
//! class-less.

use crate::store::Inner;
use crate::time;
use serde_json::{Value, json};
use std::cmp::Reverse;

pub const INGRESS_CLASS_ANNOTATION: &str = "kubernetes.io/ingress.class";
pub const DEFAULT_CLASS_ANNOTATION: &str = "ingressclass.kubernetes.io/is-default-class";

fn annotation<'a>(obj: &'a Value, key: &str) -> Option<&'a Value> {
    obj.pointer("/metadata/annotations").and_then(|a| a.get(key))
}

/// The default class among `classes`: newest first, then name ascending.
fn pick<'a>(classes: impl Iterator<Item = &'a Value>) -> Option<&'a str> {
    classes
        .filter(|c| annotation(c, DEFAULT_CLASS_ANNOTATION).and_then(Value::as_str) == Some("true"))
        .filter_map(|c| {
            let created = time::parse_rfc3339(c.pointer("/metadata/creationTimestamp")?.as_str()?).unwrap_or(0);
            Some((created, c.pointer("/metadata/name")?.as_str()?))
        })
        .max_by_key(|(created, name)| (*created, Reverse(*name)))
        .map(|(_, name)| name)
}

pub(super) fn default_class(inner: &Inner, ing: &mut Value) {
    if ing.pointer("/spec/ingressClassName").is_some_and(|c| !c.is_null())
        || annotation(ing, INGRESS_CLASS_ANNOTATION).is_some()
    {
        return;
    }
    let Some(table) = inner.table("ingressclasses") else { return };
    let Some(class) = pick(table.objects.values().map(|c| &**c)) else { return };
    if !ing.get("spec").is_some_and(Value::is_object) {
        ing["spec"] = json!({});
    }
    ing["spec"]["ingressClassName"] = json!(class);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn class(name: &str, created: &str, default: Option<&str>) -> Value {
        let mut c = json!({"metadata": {"name": name, "creationTimestamp": created}});
        if let Some(d) = default {
            c["metadata"]["annotations"] = json!({ DEFAULT_CLASS_ANNOTATION: d });
        }
        c
    }

    #[test]
    fn newest_default_then_name() {
        let t1 = "2025-01-01T00:00:01Z";
        let t2 = "2025-01-01T00:00:02Z";
        assert_eq!(pick([class("a", t1, None)].iter()), None);
        assert_eq!(pick([class("a", t1, Some("false")), class("b", t1, Some("true"))].iter()), Some("b"));
        assert_eq!(pick([class("a", t1, Some("true")), class("z", t2, Some("true"))].iter()), Some("z"));
        assert_eq!(pick([class("z", t1, Some("true")), class("a", t2, Some("true"))].iter()), Some("a"));
        // same second: name ascending
        assert_eq!(pick([class("b", t2, Some("true")), class("a", t2, Some("true"))].iter()), Some("a"));
    }
}
