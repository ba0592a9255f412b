//! Ingresses, IngressClasses and Secrets through a real kube-rs 5 client with the typed
//! k8s-openapi structs: CRUD, the Ingress status subresource and generation, the
//! DefaultIngressClass admission, validation (one 422 per rule, naming the field), Secret
//! stringData/type/TLS semantics, and `fieldSelector=type=kubernetes.io/tls` on list and watch.

mod common;

use common::{bounded, client, start};
use futures::{StreamExt, TryStreamExt};
use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::api::networking::v1::{Ingress, IngressClass};
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams, PostParams, WatchEvent, WatchParams};
use kube::runtime::WatchStreamExt;
use kube::{Client, ResourceExt};
use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::time::Duration;

const DEFAULT_CLASS: &str = "ingressclass.kubernetes.io/is-default-class";
const CLASS_ANNOTATION: &str = "kubernetes.io/ingress.class";

fn api_err(e: kube::Error) -> kube::core::Status {
    match e {
        kube::Error::Api(s) => *s,
        other => panic!("expected an API error, got {other:?}"),
    }
}

fn class(name: &str, default: Option<&str>) -> IngressClass {
    let mut c = json!({"metadata": {"name": name}, "spec": {"controller": "cloudlb.io/ingress-controller"}});
    if let Some(d) = default {
        c["metadata"]["annotations"] = json!({ DEFAULT_CLASS: d });
    }
    serde_json::from_value(c).unwrap()
}

/// One rule routing `host`/ to Service `web`:80.
fn ingress(name: &str, class: Option<&str>) -> Ingress {
    let mut i = json!({
        "metadata": {"name": name},
        "spec": {"rules": [{"host": "app.example.com", "http": {"paths": [
            {"path": "/", "pathType": "Prefix", "backend": {"service": {"name": "web", "port": {"number": 80}}}}
        ]}}]}
    });
    if let Some(c) = class {
        i["spec"]["ingressClassName"] = json!(c);
    }
    serde_json::from_value(i).unwrap()
}

fn class_name(i: &Ingress) -> Option<&str> {
    i.spec.as_ref().and_then(|s| s.ingress_class_name.as_deref())
}

fn lb_ips(i: &Ingress) -> Vec<String> {
    let st = i.status.as_ref().and_then(|s| s.load_balancer.as_ref()).and_then(|l| l.ingress.as_ref());
    st.into_iter().flatten().filter_map(|p| p.ip.clone()).collect()
}

/// The 422 of a write, with the fields its causes name.
fn invalid_fields(e: kube::Error) -> (kube::core::Status, Vec<String>) {
    let s = api_err(e);
    assert_eq!((s.code, s.reason.as_str()), (422, "Invalid"), "{}", s.message);
    let fields = s.details.as_ref().map(|d| d.causes.iter().map(|c| c.field.clone()).collect()).unwrap_or_default();
    (s, fields)
}

#[tokio::test]
async fn ingress_crud_status_subresource_and_generation() {
    bounded(async {
        let sb = start().await;
        let c = client(&sb).await;
        let classes: Api<IngressClass> = Api::all(c.clone());
        let ings: Api<Ingress> = Api::namespaced(c.clone(), "default");
        classes.create(&PostParams::default(), &class("cloudlb", None)).await.unwrap();

        let mut sent = ingress("web", Some("cloudlb"));
        sent.status = serde_json::from_value(json!({"loadBalancer": {"ingress": [{"ip": "192.0.2.1"}]}})).unwrap();
        let created = ings.create(&PostParams::default(), &sent).await.unwrap();
        assert_eq!(created.metadata.generation, Some(1));
        assert!(lb_ips(&created).is_empty(), "create clears status");
        assert_eq!(class_name(&created), Some("cloudlb"));
        assert_eq!(ings.get("web").await.unwrap().uid(), created.uid());
        assert_eq!(ings.list(&ListParams::default()).await.unwrap().items.len(), 1);
        let all: Api<Ingress> = Api::all(c.clone());
        assert_eq!(all.list(&ListParams::default()).await.unwrap().items.len(), 1);

        // metadata change: new resourceVersion, same generation
        let labelled = ings
            .patch("web", &PatchParams::default(), &Patch::Merge(json!({"metadata": {"labels": {"team": "a"}}})))
            .await
            .unwrap();
        assert_ne!(labelled.resource_version(), created.resource_version());
        assert_eq!(labelled.metadata.generation, Some(1));
        // a main-resource write of status alone changes nothing
        let ignored = ings
            .patch(
                "web",
                &PatchParams::default(),
                &Patch::Merge(json!({"status": {"loadBalancer": {"ingress": [{"ip": "192.0.2.1"}]}}})),
            )
            .await
            .unwrap();
        assert_eq!(ignored.resource_version(), labelled.resource_version());
        assert!(lb_ips(&ignored).is_empty());
        // spec change bumps generation
        let moved = ings
            .patch(
                "web",
                &PatchParams::default(),
                &Patch::Merge(json!({"spec": {"tls": [{"hosts": ["app.example.com"], "secretName": "web-tls"}]}})),
            )
            .await
            .unwrap();
        assert_eq!(moved.metadata.generation, Some(2));
        // status subresource: sets status, never spec, never generation
        let st = ings
            .patch_status(
                "web",
                &PatchParams::default(),
                &Patch::Merge(json!({"spec": {"tls": null},
                    "status": {"loadBalancer": {"ingress": [{"ip": "192.0.2.10", "ports": [{"port": 443, "protocol": "TCP"}]}]}}})),
            )
            .await
            .unwrap();
        assert_eq!(lb_ips(&st), ["192.0.2.10"]);
        assert!(st.spec.as_ref().unwrap().tls.is_some(), "status writes ignore spec");
        assert_eq!(st.metadata.generation, Some(2));
        assert!(
            st.status.as_ref().unwrap().load_balancer.as_ref().unwrap().ingress.as_ref().unwrap()[0].ip_mode_absent(),
            "no ipMode on Ingress points"
        );
        // a PUT of the main resource with other status keeps the stored status
        let mut put = st.clone();
        put.status = None;
        put.spec.as_mut().unwrap().tls = None;
        let put = ings.replace("web", &PostParams::default(), &put).await.unwrap();
        assert_eq!(lb_ips(&put), ["192.0.2.10"]);
        assert_eq!(put.metadata.generation, Some(3));
        // replace_status with a changed spec: the spec is not taken
        let mut whole = put.clone();
        whole.spec.as_mut().unwrap().ingress_class_name = Some("other".into());
        whole.status = None;
        let replaced = ings.replace_status("web", &PostParams::default(), &whole).await.unwrap();
        assert_eq!(class_name(&replaced), Some("cloudlb"));
        assert!(lb_ips(&replaced).is_empty());

        // invalid status points: one 422 per rule, naming the field
        for (point, field) in [
            (json!({"ip": "not-an-ip"}), "status.loadBalancer.ingress[0].ip"),
            (json!({"hostname": "192.0.2.1"}), "status.loadBalancer.ingress[0].hostname"),
            (json!({"hostname": "Not_A_Name"}), "status.loadBalancer.ingress[0].hostname"),
            (json!({"ip": "192.0.2.1", "ports": [{"port": 0, "protocol": "TCP"}]}), "status.loadBalancer.ingress[0].ports[0].port"),
            (json!({"ip": "192.0.2.1", "ports": [{"port": 80}]}), "status.loadBalancer.ingress[0].ports[0].protocol"),
        ] {
            let e = ings
                .patch_status("web", &PatchParams::default(), &Patch::Merge(json!({"status": {"loadBalancer": {"ingress": [point]}}})))
                .await
                .unwrap_err();
            let (s, fields) = invalid_fields(e);
            assert_eq!(fields, [field], "{}", s.message);
            assert!(s.message.starts_with("Ingress.networking.k8s.io \"web\" is invalid: "), "{}", s.message);
        }

        ings.delete("web", &DeleteParams::default()).await.unwrap();
        assert_eq!(api_err(ings.get("web").await.unwrap_err()).code, 404);
        classes.delete("cloudlb", &DeleteParams::default()).await.unwrap();
        assert!(classes.list(&ListParams::default()).await.unwrap().items.is_empty());
    })
    .await
}

/// `ip_mode` does not exist on `IngressLoadBalancerIngress`; check the raw JSON instead.
trait NoIpMode {
    fn ip_mode_absent(&self) -> bool;
}
impl NoIpMode for k8s_openapi::api::networking::v1::IngressLoadBalancerIngress {
    fn ip_mode_absent(&self) -> bool {
        serde_json::to_value(self).unwrap().get("ipMode").is_none()
    }
}

#[tokio::test]
async fn default_ingress_class_admission() {
    bounded(async {
        let sb = start().await;
        let c = client(&sb).await;
        let classes: Api<IngressClass> = Api::all(c.clone());
        let ings: Api<Ingress> = Api::namespaced(c.clone(), "default");

        // zero default classes (one that says "false"): no class is set
        classes.create(&PostParams::default(), &class("not-default", Some("false"))).await.unwrap();
        let none = ings.create(&PostParams::default(), &ingress("none", None)).await.unwrap();
        assert_eq!(class_name(&none), None);

        // one default class: a class-less Ingress gets it
        classes.create(&PostParams::default(), &class("a-old", Some("true"))).await.unwrap();
        let one = ings.create(&PostParams::default(), &ingress("one", None)).await.unwrap();
        assert_eq!(class_name(&one), Some("a-old"));
        // an explicit class is kept
        let explicit = ings.create(&PostParams::default(), &ingress("explicit", Some("not-default"))).await.unwrap();
        assert_eq!(class_name(&explicit), Some("not-default"));
        // the legacy annotation (any value) suppresses defaulting
        let mut legacy = ingress("legacy", None);
        legacy.metadata.annotations = Some(BTreeMap::from([(CLASS_ANNOTATION.to_string(), "nginx".to_string())]));
        let legacy = ings.create(&PostParams::default(), &legacy).await.unwrap();
        assert_eq!(class_name(&legacy), None);
        // updates are never defaulted: not the Ingress created class-less, nor one whose class is removed
        let upd = ings
            .patch("none", &PatchParams::default(), &Patch::Merge(json!({"metadata": {"labels": {"x": "y"}}})))
            .await
            .unwrap();
        assert_eq!(class_name(&upd), None);
        let mut cleared = ings.get("one").await.unwrap();
        cleared.spec.as_mut().unwrap().ingress_class_name = None;
        let cleared = ings.replace("one", &PostParams::default(), &cleared).await.unwrap();
        assert_eq!(class_name(&cleared), None);
        assert_eq!(cleared.metadata.generation, Some(2));

        // two default classes: the newest wins, even though its name sorts last
        // (creationTimestamp has one-second resolution: wait for the next second)
        tokio::time::sleep(Duration::from_millis(1100)).await;
        classes.create(&PostParams::default(), &class("z-new", Some("true"))).await.unwrap();
        let two = ings.create(&PostParams::default(), &ingress("two", None)).await.unwrap();
        assert_eq!(class_name(&two), Some("z-new"));
        // z-new stops being a default: back to a-old
        classes
            .patch(
                "z-new",
                &PatchParams::default(),
                &Patch::Merge(json!({"metadata": {"annotations": {DEFAULT_CLASS: null}}})),
            )
            .await
            .unwrap();
        let back = ings.create(&PostParams::default(), &ingress("back", None)).await.unwrap();
        assert_eq!(class_name(&back), Some("a-old"));

        // annotation and ingressClassName must agree on create
        let mut both = ingress("both", Some("a-old"));
        both.metadata.annotations = Some(BTreeMap::from([(CLASS_ANNOTATION.to_string(), "other".to_string())]));
        let (s, fields) = invalid_fields(ings.create(&PostParams::default(), &both).await.unwrap_err());
        assert_eq!(fields, [format!("annotations.{CLASS_ANNOTATION}")], "{}", s.message);
    })
    .await
}

#[tokio::test]
async fn ingress_validation_names_the_field() {
    bounded(async {
        let sb = start().await;
        let c = client(&sb).await;
        let ings: Api<Ingress> = Api::namespaced(c.clone(), "default");
        ings.create(&PostParams::default(), &ingress("v", None)).await.unwrap();
        let svc = |port: Value| json!({"service": {"name": "web", "port": port}});
        let rule = |path: Value| json!({"spec": {"rules": [{"http": {"paths": [path]}}]}});
        let p = |path: &str, path_type: &str| {
            rule(json!({"path": path, "pathType": path_type, "backend": svc(json!({"number": 80}))}))
        };
        let with_backend = |backend: Value| rule(json!({"path": "/", "pathType": "Prefix", "backend": backend}));
        let host = |h: &str| {
            json!({"spec": {"rules": [{"host": h, "http": {"paths": [{"path": "/", "pathType": "Exact", "backend": svc(json!({"number": 80}))}]}}]}})
        };
        let path0 = "spec.rules[0].http.paths[0]";
        let cases: Vec<(Value, String)> = vec![
            (rule(json!({"path": "/", "backend": svc(json!({"number": 80}))})), format!("{path0}.pathType")),
            (p("/", "Regex"), format!("{path0}.pathType")),
            (p("relative", "Exact"), format!("{path0}.path")),
            (p("relative", "Prefix"), format!("{path0}.path")),
            (p("relative", "ImplementationSpecific"), format!("{path0}.path")),
            (p("/a//b", "Exact"), format!("{path0}.path")),
            (p("/a/./b", "Prefix"), format!("{path0}.path")),
            (p("/a/../b", "Exact"), format!("{path0}.path")),
            (p("/a%2fb", "Prefix"), format!("{path0}.path")),
            (p("/a%2Fb", "Exact"), format!("{path0}.path")),
            (p("/a/..", "Prefix"), format!("{path0}.path")),
            (p("/a/.", "Exact"), format!("{path0}.path")),
            (with_backend(json!({})), format!("{path0}.backend")),
            (
                with_backend(json!({"service": {"name": "web", "port": {"number": 80}}, "resource": {"kind": "Bucket", "name": "b"}})),
                format!("{path0}.backend"),
            ),
            (with_backend(svc(json!({"number": 80, "name": "http"}))), format!("{path0}.backend")),
            (with_backend(svc(json!({}))), format!("{path0}.backend")),
            (with_backend(svc(json!({"number": 70000}))), format!("{path0}.backend.service.port.number")),
            (with_backend(svc(json!({"name": "Http"}))), format!("{path0}.backend.service.port.name")),
            (with_backend(json!({"service": {"name": "1web", "port": {"number": 80}}})), format!("{path0}.backend.service.name")),
            (with_backend(json!({"resource": {"name": "b"}})), format!("{path0}.backend.resource.kind")),
            (host("192.0.2.1"), "spec.rules[0].host".into()),
            (host("App.example.com"), "spec.rules[0].host".into()),
            (host("app.*.example.com"), "spec.rules[0].host".into()),
            (host("*"), "spec.rules[0].host".into()),
            (json!({"spec": {"ingressClassName": "Not_Valid"}}), "spec.ingressClassName".into()),
            (json!({"spec": {"tls": [{"hosts": ["bad_host"]}]}}), "spec.tls[0].hosts[0]".into()),
            (json!({"spec": {"tls": [{"secretName": "Bad_Secret"}]}}), "spec.tls[0].secretName".into()),
            (json!({"spec": {"rules": null}}), "spec".into()),
        ];
        for (patch, field) in cases {
            let e = ings.patch("v", &PatchParams::default(), &Patch::Merge(patch.clone())).await.unwrap_err();
            let (s, fields) = invalid_fields(e);
            assert_eq!(fields, std::slice::from_ref(&field), "{patch}: {}", s.message);
            assert!(s.message.starts_with(&format!("Ingress.networking.k8s.io \"v\" is invalid: {field}: ")), "{}", s.message);
        }
        // the valid neighbours of those rules are accepted
        for ok in [
            host("*.example.com"),
            p("/a/.well-known", "Exact"),
            p("", "ImplementationSpecific"),
            with_backend(svc(json!({"name": "http"}))),
            with_backend(json!({"resource": {"apiGroup": "k8s.example.com", "kind": "Bucket", "name": "b"}})),
            json!({"spec": {"rules": null, "defaultBackend": svc(json!({"number": 8080}))}}),
        ] {
            ings.patch("v", &PatchParams::default(), &Patch::Merge(ok.clone())).await.unwrap_or_else(|e| panic!("{ok}: {e}"));
        }
        // several errors: all of them, in one 422
        let e = ings.patch("v", &PatchParams::default(), &Patch::Merge(json!({"spec": {"ingressClassName": "A",
            "tls": [{"hosts": ["bad_host"]}]}}))).await.unwrap_err();
        let (_, fields) = invalid_fields(e);
        assert_eq!(fields, ["spec.tls[0].hosts[0]", "spec.ingressClassName"]);
        // create is validated too, and nothing is stored
        let mut bad = ingress("bad", None);
        bad.spec.as_mut().unwrap().rules.as_mut().unwrap()[0].host = Some("192.0.2.1".into());
        invalid_fields(ings.create(&PostParams::default(), &bad).await.unwrap_err());
        assert_eq!(api_err(ings.get("bad").await.unwrap_err()).code, 404);
    })
    .await
}

#[tokio::test]
async fn ingress_class_controller_and_parameters() {
    bounded(async {
        let sb = start().await;
        let c = client(&sb).await;
        let classes: Api<IngressClass> = Api::all(c.clone());
        let mut no_controller = class("x", None);
        no_controller.spec.as_mut().unwrap().controller = None;
        let (_, fields) = invalid_fields(classes.create(&PostParams::default(), &no_controller).await.unwrap_err());
        assert_eq!(fields, ["spec.controller"]);
        let mut bare = class("x", None);
        bare.spec.as_mut().unwrap().controller = Some("not-a-domain-path".into());
        let (_, fields) = invalid_fields(classes.create(&PostParams::default(), &bare).await.unwrap_err());
        assert_eq!(fields, ["spec.controller"]);

        let created = classes.create(&PostParams::default(), &class("x", Some("true"))).await.unwrap();
        assert_eq!(created.metadata.generation, Some(1));
        assert!(created.metadata.namespace.is_none());
        let (s, fields) = invalid_fields(
            classes
                .patch(
                    "x",
                    &PatchParams::default(),
                    &Patch::Merge(json!({"spec": {"controller": "example.com/other"}})),
                )
                .await
                .unwrap_err(),
        );
        assert_eq!(fields, ["spec.controller"]);
        assert!(s.message.contains("field is immutable"), "{}", s.message);
        // annotations may change (no generation bump); parameters bump it, scope defaults to Cluster
        let a = classes
            .patch(
                "x",
                &PatchParams::default(),
                &Patch::Merge(json!({"metadata": {"annotations": {DEFAULT_CLASS: "false"}}})),
            )
            .await
            .unwrap();
        assert_eq!(a.metadata.generation, Some(1));
        let p = classes
            .patch(
                "x",
                &PatchParams::default(),
                &Patch::Merge(
                    json!({"spec": {"parameters": {"apiGroup": "k8s.example.net", "kind": "Params", "name": "p"}}}),
                ),
            )
            .await
            .unwrap();
        assert_eq!(p.metadata.generation, Some(2));
        assert_eq!(p.spec.unwrap().parameters.unwrap().scope.as_deref(), Some("Cluster"));
        let (_, fields) = invalid_fields(
            classes
                .patch(
                    "x",
                    &PatchParams::default(),
                    &Patch::Merge(json!({"spec": {"parameters": {"scope": "Namespace"}}})),
                )
                .await
                .unwrap_err(),
        );
        assert_eq!(fields, ["spec.parameters.namespace"]);
    })
    .await
}

fn secret(name: &str, ty: Option<&str>, data: &[(&str, &str)], string_data: &[(&str, &str)]) -> Secret {
    Secret {
        metadata: kube::api::ObjectMeta { name: Some(name.into()), ..Default::default() },
        type_: ty.map(str::to_string),
        data: (!data.is_empty())
            .then(|| data.iter().map(|(k, v)| (k.to_string(), ByteString(v.as_bytes().to_vec()))).collect()),
        string_data: (!string_data.is_empty())
            .then(|| string_data.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()),
        ..Default::default()
    }
}

fn data_of(s: &Secret) -> BTreeMap<String, String> {
    s.data.iter().flatten().map(|(k, v)| (k.clone(), String::from_utf8(v.0.clone()).unwrap())).collect()
}

#[tokio::test]
async fn secrets_string_data_tls_keys_and_type_immutability() {
    bounded(async {
        let sb = start().await;
        let c = client(&sb).await;
        let secrets: Api<Secret> = Api::namespaced(c.clone(), "default");

        // stringData merges into data (winning over data), is not stored; type defaults to Opaque
        let s = secrets
            .create(
                &PostParams::default(),
                &secret("plain", None, &[("a", "1"), ("b", "old")], &[("b", "new"), ("c", "3")]),
            )
            .await
            .unwrap();
        assert_eq!(s.type_.as_deref(), Some("Opaque"));
        assert!(s.string_data.is_none());
        assert_eq!(
            data_of(&s),
            BTreeMap::from([("a".into(), "1".into()), ("b".into(), "new".into()), ("c".into(), "3".into())])
        );
        assert!(secrets.get("plain").await.unwrap().string_data.is_none());
        // stringData on a patch merges too; the same value again is a no-op
        let p = secrets
            .patch("plain", &PatchParams::default(), &Patch::Merge(json!({"stringData": {"a": "one"}})))
            .await
            .unwrap();
        assert_eq!(data_of(&p)["a"], "one");
        let again = secrets
            .patch("plain", &PatchParams::default(), &Patch::Merge(json!({"stringData": {"a": "one"}})))
            .await
            .unwrap();
        assert_eq!(again.resource_version(), p.resource_version());
        // data must be base64: 400 with Go's decoder message
        let e = api_err(
            secrets
                .patch("plain", &PatchParams::default(), &Patch::Merge(json!({"data": {"x": "!!!!"}})))
                .await
                .unwrap_err(),
        );
        assert_eq!((e.code, e.reason.as_str()), (400, "BadRequest"), "{}", e.message);
        assert!(e.message.ends_with("illegal base64 data at input byte 0"), "{}", e.message);
        // keys must be config keys
        let (_, fields) = invalid_fields(
            secrets
                .patch("plain", &PatchParams::default(), &Patch::Merge(json!({"stringData": {"a/b": "x"}})))
                .await
                .unwrap_err(),
        );
        assert_eq!(fields, ["data[a/b]"]);

        // kubernetes.io/tls requires tls.crt and tls.key (data or stringData)
        let (s, fields) = invalid_fields(
            secrets
                .create(&PostParams::default(), &secret("tls", Some("kubernetes.io/tls"), &[("tls.crt", "C")], &[]))
                .await
                .unwrap_err(),
        );
        assert_eq!(fields, ["data[tls.key]"], "{}", s.message);
        let (_, fields) = invalid_fields(
            secrets
                .create(&PostParams::default(), &secret("tls", Some("kubernetes.io/tls"), &[], &[]))
                .await
                .unwrap_err(),
        );
        assert_eq!(fields, ["data[tls.crt]", "data[tls.key]"]);
        let tls = secrets
            .create(
                &PostParams::default(),
                &secret("tls", Some("kubernetes.io/tls"), &[("tls.crt", "C")], &[("tls.key", "K")]),
            )
            .await
            .unwrap();
        assert_eq!(data_of(&tls).len(), 2);
        // removing a required key is refused
        let (_, fields) = invalid_fields(
            secrets
                .patch("tls", &PatchParams::default(), &Patch::Merge(json!({"data": {"tls.key": null}})))
                .await
                .unwrap_err(),
        );
        assert_eq!(fields, ["data[tls.key]"]);

        // type is immutable: an explicit change, and a PUT without type (defaulted to Opaque)
        let (s, fields) = invalid_fields(
            secrets.patch("tls", &PatchParams::default(), &Patch::Merge(json!({"type": "Opaque"}))).await.unwrap_err(),
        );
        assert_eq!(fields, ["type"]);
        assert!(s.message.contains("type: Invalid value: \"Opaque\": field is immutable"), "{}", s.message);
        let mut untyped = tls.clone();
        untyped.type_ = None;
        let (_, fields) = invalid_fields(secrets.replace("tls", &PostParams::default(), &untyped).await.unwrap_err());
        assert!(fields.contains(&"type".to_string()), "{fields:?}");
        assert_eq!(secrets.get("tls").await.unwrap().type_.as_deref(), Some("kubernetes.io/tls"));

        // immutable: true freezes data
        let frozen = secrets
            .create(
                &PostParams::default(),
                &Secret { immutable: Some(true), ..secret("frozen", None, &[("a", "1")], &[]) },
            )
            .await
            .unwrap();
        assert_eq!(frozen.immutable, Some(true));
        let (_, fields) = invalid_fields(
            secrets
                .patch("frozen", &PatchParams::default(), &Patch::Merge(json!({"stringData": {"a": "2"}})))
                .await
                .unwrap_err(),
        );
        assert_eq!(fields, ["data"]);
        secrets.delete("frozen", &DeleteParams::default()).await.unwrap();
    })
    .await
}

async fn next_event(
    stream: &mut (impl futures::Stream<Item = kube::Result<WatchEvent<Secret>>> + Unpin),
) -> WatchEvent<Secret> {
    tokio::time::timeout(Duration::from_secs(10), stream.try_next())
        .await
        .expect("a watch event within 10 s")
        .expect("watch stream healthy")
        .expect("watch stream open")
}

#[tokio::test]
async fn tls_secret_field_selector_list_and_watch() {
    bounded(async {
        let sb = start().await;
        let c: Client = client(&sb).await;
        let secrets: Api<Secret> = Api::namespaced(c.clone(), "default");
        let tls = |name: &str| secret(name, Some("kubernetes.io/tls"), &[("tls.crt", "C"), ("tls.key", "K")], &[]);
        secrets.create(&PostParams::default(), &tls("pre-tls")).await.unwrap();
        secrets.create(&PostParams::default(), &secret("pre-opaque", None, &[("a", "1")], &[])).await.unwrap();
        const SEL: &str = "type=kubernetes.io/tls";

        // list
        let l = secrets.list(&ListParams::default().fields(SEL)).await.unwrap();
        assert_eq!(l.items.iter().map(|s| s.name_any()).collect::<Vec<_>>(), ["pre-tls"]);
        let everywhere: Api<Secret> = Api::all(c.clone());
        assert_eq!(everywhere.list(&ListParams::default().fields(SEL)).await.unwrap().items.len(), 1);
        assert_eq!(
            secrets.list(&ListParams::default().fields("type!=kubernetes.io/tls")).await.unwrap().items.len(),
            1
        );

        // watch from the list's resourceVersion: only TLS Secrets' changes arrive
        let rv = l.metadata.resource_version.clone().unwrap();
        let mut w = secrets.watch(&WatchParams::default().fields(SEL), &rv).await.unwrap().boxed();
        secrets.create(&PostParams::default(), &secret("later-opaque", None, &[("a", "1")], &[])).await.unwrap();
        secrets.create(&PostParams::default(), &tls("later-tls")).await.unwrap();
        match next_event(&mut w).await {
            WatchEvent::Added(s) => assert_eq!(s.name_any(), "later-tls"),
            other => panic!("unexpected {other:?}"),
        }
        secrets
            .patch("later-opaque", &PatchParams::default(), &Patch::Merge(json!({"stringData": {"b": "2"}})))
            .await
            .unwrap();
        secrets
            .patch("later-tls", &PatchParams::default(), &Patch::Merge(json!({"stringData": {"tls.crt": "C2"}})))
            .await
            .unwrap();
        match next_event(&mut w).await {
            WatchEvent::Modified(s) => assert_eq!(data_of(&s)["tls.crt"], "C2"),
            other => panic!("unexpected {other:?}"),
        }
        secrets.delete("later-opaque", &DeleteParams::default()).await.unwrap();
        secrets.delete("pre-tls", &DeleteParams::default()).await.unwrap();
        match next_event(&mut w).await {
            WatchEvent::Deleted(s) => assert_eq!(s.name_any(), "pre-tls"),
            other => panic!("unexpected {other:?}"),
        }

        // kube-runtime's watcher, configured as the controller configures it
        let cfg = kube::runtime::watcher::Config::default().fields(SEL);
        let mut objs = kube::runtime::watcher(secrets.clone(), cfg).applied_objects().boxed();
        let first = tokio::time::timeout(Duration::from_secs(10), objs.try_next()).await.unwrap().unwrap().unwrap();
        assert_eq!(first.name_any(), "later-tls");
        secrets.create(&PostParams::default(), &secret("opaque-3", None, &[("a", "1")], &[])).await.unwrap();
        secrets.create(&PostParams::default(), &tls("tls-3")).await.unwrap();
        let next = tokio::time::timeout(Duration::from_secs(10), objs.try_next()).await.unwrap().unwrap().unwrap();
        assert_eq!(next.name_any(), "tls-3");
        assert_eq!(next.type_.as_deref(), Some("kubernetes.io/tls"));
    })
    .await
}
