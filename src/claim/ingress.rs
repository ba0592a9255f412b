//! Which Ingresses are ours.
//!
//! An Ingress is ours when the IngressClass it resolves to has our `spec.controller`:
//!
//! ```text
//!  spec.ingressClassName ──────────────┐
//!  else annotation kubernetes.io/ingress.class ──▶ IngressClass by name ──▶ controller ours?
//!  else the default IngressClass (is-default-class: "true"; newest wins, as the apiserver's
//!       DefaultIngressClass admission picks)
//! ```
//!
//! A class that does not exist, or belongs to another controller, is never ours: such an
//! Ingress never gets an address from us. What the Ingress *asked for* (the name it wrote, or
//! `""` for the default) is recorded when it is claimed: a later change of that field is an
//! ownership change (our load balancer goes), while a class that merely disappears (deleted
//! IngressClass, changed flags) leaves a working load balancer alone, like a flag typo on the
//! Service side.

use std::borrow::Borrow;

use k8s_openapi::api::networking::v1::{Ingress, IngressClass};

use crate::keys::{ANN_DEFAULT_INGRESS_CLASS, ANN_INGRESS_CLASS};

/// The class an Ingress names: `spec.ingressClassName`, else the legacy annotation, else `""`
/// (meaning "the default class").
pub fn requested_class(ing: &Ingress) -> String {
    ing.spec
        .as_ref()
        .and_then(|s| s.ingress_class_name.clone())
        .or_else(|| ing.metadata.annotations.as_ref().and_then(|a| a.get(ANN_INGRESS_CLASS).cloned()))
        .map(|c| c.trim().to_string())
        .unwrap_or_default()
}

fn is_default(class: &IngressClass) -> bool {
    class.metadata.annotations.as_ref().and_then(|a| a.get(ANN_DEFAULT_INGRESS_CLASS)).map(String::as_str)
        == Some("true")
}

/// The IngressClass an Ingress resolves to, if any.
pub fn resolve<'a, C>(ing: &Ingress, classes: &'a [C]) -> Option<&'a IngressClass>
where
    C: Borrow<IngressClass>,
{
    let requested = requested_class(ing);
    let classes = classes.iter().map(Borrow::borrow);
    if requested.is_empty() {
        classes.filter(|c| is_default(c)).max_by(|a, b| {
            let created = |c: &IngressClass| c.metadata.creation_timestamp.clone().map(|t| t.0);
            created(a).cmp(&created(b)).then_with(|| b.metadata.name.cmp(&a.metadata.name))
        })
    } else {
        classes.into_iter().find(|c| c.metadata.name.as_deref() == Some(requested.as_str()))
    }
}

/// Whether `ing` is ours: its class resolves to one whose controller is `controller`.
pub fn is_claimed<C: Borrow<IngressClass>>(ing: &Ingress, classes: &[C], controller: &str) -> bool {
    resolve(ing, classes).and_then(|c| c.spec.as_ref()).and_then(|s| s.controller.as_deref()) == Some(controller)
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::networking::v1::{IngressClassSpec, IngressSpec};
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, Time};
    use k8s_openapi::jiff::Timestamp;

    const OURS: &str = "cloudlb.io/ingress-controller";

    fn class(name: &str, controller: &str, default: bool, created: i64) -> IngressClass {
        IngressClass {
            metadata: ObjectMeta {
                name: Some(name.into()),
                annotations: default.then(|| [(ANN_DEFAULT_INGRESS_CLASS.to_string(), "true".to_string())].into()),
                creation_timestamp: Some(Time(Timestamp::from_second(created).unwrap())),
                ..Default::default()
            },
            spec: Some(IngressClassSpec { controller: Some(controller.into()), ..Default::default() }),
        }
    }

    fn ingress(class_name: Option<&str>, annotation: Option<&str>) -> Ingress {
        Ingress {
            metadata: ObjectMeta {
                name: Some("web".into()),
                annotations: annotation.map(|a| [(ANN_INGRESS_CLASS.to_string(), a.to_string())].into()),
                ..Default::default()
            },
            spec: Some(IngressSpec { ingress_class_name: class_name.map(Into::into), ..Default::default() }),
            status: None,
        }
    }

    #[test]
    fn claim_table() {
        let ours = class("cloudlb", OURS, false, 1);
        let ours_default = class("cloudlb-default", OURS, true, 1);
        let foreign = class("nginx", "k8s.io/ingress-nginx", false, 1);
        let foreign_default_newer = class("nginx-default", "k8s.io/ingress-nginx", true, 2);
        let cases: Vec<(Ingress, Vec<IngressClass>, bool, &str)> = vec![
            (ingress(Some("cloudlb"), None), vec![ours.clone()], true, "named class of ours"),
            (ingress(Some("nginx"), None), vec![ours.clone(), foreign.clone()], false, "named foreign class"),
            (ingress(Some("missing"), None), vec![ours.clone()], false, "named class that does not exist"),
            (ingress(None, Some("cloudlb")), vec![ours.clone()], true, "legacy annotation naming ours"),
            (ingress(None, Some("nginx")), vec![ours.clone(), foreign.clone()], false, "legacy annotation, foreign"),
            (ingress(Some("nginx"), Some("cloudlb")), vec![ours.clone(), foreign.clone()], false, "field wins"),
            (ingress(None, None), vec![ours.clone()], false, "no class and no default"),
            (ingress(None, None), vec![ours_default.clone()], true, "our default class"),
            (ingress(None, None), vec![ours_default.clone(), foreign_default_newer.clone()], false, "newest default"),
            (ingress(None, None), vec![foreign_default_newer.clone()], false, "foreign default"),
            (ingress(Some("cloudlb-default"), None), vec![ours_default.clone()], true, "default named"),
        ];
        for (ing, classes, want, what) in cases {
            assert_eq!(is_claimed(&ing, &classes, OURS), want, "{what}");
        }
    }

    #[test]
    fn requested_class_is_what_the_ingress_wrote() {
        assert_eq!(requested_class(&ingress(Some(" cloudlb "), None)), "cloudlb");
        assert_eq!(requested_class(&ingress(None, Some("legacy"))), "legacy");
        assert_eq!(requested_class(&ingress(None, None)), "");
    }
}
