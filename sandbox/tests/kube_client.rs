//! The sandbox through a real kube-rs 5 client: CRUD, the four patch types, status, finalizers,
//! watches (resume, 410), watcher/reflector, the events Recorder, selectors and pagination.

mod common;

use cloudlb_sandbox::SandboxConfig;
use common::{bounded, client, start, start_with};
use futures::{StreamExt, TryStreamExt};
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{Event as CoreEvent, Namespace, Node, Service};
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams, PostParams, WatchEvent, WatchParams};
use kube::runtime::events::{Event, EventType, Recorder, Reporter};
use kube::runtime::{WatchStreamExt, reflector, watcher};
use kube::{Resource, ResourceExt};
use serde_json::json;

fn lb(name: &str) -> Service {
    serde_json::from_value(json!({
        "apiVersion": "v1", "kind": "Service",
        "metadata": {"name": name, "labels": {"app": name}},
        "spec": {"type": "LoadBalancer", "selector": {"app": name},
                 "ports": [{"name": "http", "port": 80}, {"name": "https", "port": 443, "targetPort": 8443}]}
    }))
    .unwrap()
}

fn api_err(e: kube::Error) -> kube::core::Status {
    match e {
        kube::Error::Api(s) => *s,
        other => panic!("expected an API error, got {other:?}"),
    }
}

#[tokio::test]
async fn create_get_list_and_service_allocation() {
    bounded(async {
        let sb = start().await;
        let c = client(&sb).await;
        let svcs: Api<Service> = Api::namespaced(c.clone(), "default");
        let s = svcs.create(&PostParams::default(), &lb("web")).await.unwrap();
        let spec = s.spec.clone().unwrap();
        assert!(spec.cluster_ip.as_deref().unwrap().starts_with("10.96."));
        assert_eq!(spec.cluster_ips.unwrap().len(), 1);
        assert_eq!(spec.ip_families.unwrap(), vec!["IPv4"]);
        assert_eq!(spec.session_affinity.as_deref(), Some("None"));
        assert_eq!(spec.external_traffic_policy.as_deref(), Some("Cluster"));
        assert_eq!(spec.internal_traffic_policy.as_deref(), Some("Cluster"));
        let ports = spec.ports.unwrap();
        let nps: Vec<i32> = ports.iter().map(|p| p.node_port.unwrap()).collect();
        assert!(nps.iter().all(|p| (30000..=32767).contains(p)) && nps[0] != nps[1]);
        assert_eq!(ports[0].protocol.as_deref(), Some("TCP"));
        assert_eq!(ports[0].target_port, Some(k8s_openapi::apimachinery::pkg::util::intstr::IntOrString::Int(80)));
        assert!(s.metadata.uid.is_some() && s.metadata.creation_timestamp.is_some());
        assert_eq!(s.metadata.generation, Some(1));
        assert!(spec.health_check_node_port.is_none());

        // eTP Local gets a healthCheckNodePort
        let mut local = lb("local");
        local.spec.as_mut().unwrap().external_traffic_policy = Some("Local".into());
        let local = svcs.create(&PostParams::default(), &local).await.unwrap();
        let h = local.spec.unwrap().health_check_node_port.unwrap();
        assert!((30000..=32767).contains(&h));

        // AlreadyExists, duplicate nodePort, duplicate port, bad source range, missing namespace
        let e = api_err(svcs.create(&PostParams::default(), &lb("web")).await.unwrap_err());
        assert_eq!((e.code, e.reason.as_str()), (409, "AlreadyExists"));
        let mut dup = lb("dup");
        dup.spec.as_mut().unwrap().ports.as_mut().unwrap()[0].node_port = Some(nps[0]);
        let e = api_err(svcs.create(&PostParams::default(), &dup).await.unwrap_err());
        assert_eq!((e.code, e.reason.as_str()), (422, "Invalid"), "{}", e.message);
        assert!(e.message.contains("provided port is already allocated"), "{}", e.message);
        let mut dup = lb("dup");
        dup.spec.as_mut().unwrap().ports.as_mut().unwrap()[1].port = 80;
        let e = api_err(svcs.create(&PostParams::default(), &dup).await.unwrap_err());
        assert!(e.message.contains("Duplicate value"), "{}", e.message);
        let mut dup = lb("dup");
        dup.spec.as_mut().unwrap().ports.as_mut().unwrap()[0].node_port = Some(80);
        let e = api_err(svcs.create(&PostParams::default(), &dup).await.unwrap_err());
        assert!(e.message.contains("provided port is not in the valid range"), "{}", e.message);
        let mut bad = lb("bad");
        bad.spec.as_mut().unwrap().load_balancer_source_ranges = Some(vec!["10.0.0.0/8".into(), "nope".into()]);
        let e = api_err(svcs.create(&PostParams::default(), &bad).await.unwrap_err());
        assert_eq!(e.code, 422);
        let missing: Api<Service> = Api::namespaced(c.clone(), "nope");
        let e = api_err(missing.create(&PostParams::default(), &lb("x")).await.unwrap_err());
        assert_eq!((e.code, e.reason.as_str()), (404, "NotFound"));
        assert_eq!(e.message, "namespaces \"nope\" not found");

        // get / list / all-namespaces / 404
        assert_eq!(svcs.get("web").await.unwrap().uid(), s.uid());
        let e = api_err(svcs.get("nope").await.unwrap_err());
        assert_eq!((e.code, e.message.as_str()), (404, "services \"nope\" not found"));
        let all: Api<Service> = Api::all(c.clone());
        let l = all.list(&ListParams::default()).await.unwrap();
        assert_eq!(l.items.len(), 2);
        assert!(l.metadata.resource_version.unwrap().parse::<u64>().unwrap() > 0);
        let ns: Api<Namespace> = Api::all(c.clone());
        let names: Vec<String> = ns.list(&ListParams::default()).await.unwrap().iter().map(|n| n.name_any()).collect();
        assert_eq!(names, ["default", "kube-node-lease", "kube-public", "kube-system"]);

        // generateName
        let mut g = lb("");
        g.metadata.name = None;
        g.metadata.generate_name = Some("gen-".into());
        let g = svcs.create(&PostParams::default(), &g).await.unwrap();
        assert!(g.name_any().starts_with("gen-") && g.name_any().len() == 9);

        // deleting releases node ports: a new service may take them
        svcs.delete("web", &DeleteParams::default()).await.unwrap();
        let mut reuse = lb("reuse");
        reuse.spec.as_mut().unwrap().ports.as_mut().unwrap()[0].node_port = Some(nps[0]);
        svcs.create(&PostParams::default(), &reuse).await.unwrap();
        let e = api_err(svcs.delete("web", &DeleteParams::default()).await.unwrap_err());
        assert_eq!(e.code, 404);

        // type change to ClusterIP drops node ports
        let r = svcs
            .patch("reuse", &PatchParams::default(), &Patch::Merge(json!({"spec": {"type": "ClusterIP"}})))
            .await
            .unwrap();
        assert!(r.spec.unwrap().ports.unwrap().iter().all(|p| p.node_port.is_none()));
        let st = sb.stats();
        assert!(st.count("create", "services") >= 8);
        assert_eq!(st.count("delete", "services"), 2);
    })
    .await
}

#[tokio::test]
async fn patches_status_generation_and_noop_writes() {
    bounded(async {
        let sb = start().await;
        let c = client(&sb).await;
        let svcs: Api<Service> = Api::namespaced(c.clone(), "default");
        let s0 = svcs.create(&PostParams::default(), &lb("p")).await.unwrap();
        let np80 = s0.spec.as_ref().unwrap().ports.as_ref().unwrap()[0].node_port;

        // merge patch of metadata: rv bumps, generation does not
        let s1 = svcs
            .patch("p", &PatchParams::default(), &Patch::Merge(json!({"metadata": {"annotations": {"a": "1"}}})))
            .await
            .unwrap();
        assert_ne!(s1.resource_version(), s0.resource_version());
        assert_eq!(s1.metadata.generation, Some(1));

        // the same patch again is a no-op: same resourceVersion
        let s2 = svcs
            .patch("p", &PatchParams::default(), &Patch::Merge(json!({"metadata": {"annotations": {"a": "1"}}})))
            .await
            .unwrap();
        assert_eq!(s2.resource_version(), s1.resource_version());

        // strategic merge: ports merge by port, nodePort kept, generation bumps
        let s3 = svcs
            .patch(
                "p",
                &PatchParams::default(),
                &Patch::Strategic(json!({"spec": {"ports": [{"port": 80, "name": "http", "targetPort": 8080}]}})),
            )
            .await
            .unwrap();
        let ports = s3.spec.as_ref().unwrap().ports.clone().unwrap();
        assert_eq!(ports.len(), 2);
        assert_eq!(ports[0].node_port, np80);
        assert_eq!(s3.metadata.generation, Some(2));

        // JSON patch with kube-runtime's finalizer preamble (test null on a missing field)
        let s4 = svcs
            .patch(
                "p",
                &PatchParams::default(),
                &Patch::<()>::Json(
                    serde_json::from_value(json!([
                        {"op": "test", "path": "/metadata/finalizers", "value": null},
                        {"op": "add", "path": "/metadata/finalizers", "value": ["cloudlb.io/load-balancer-cleanup"]}
                    ]))
                    .unwrap(),
                ),
            )
            .await
            .unwrap();
        assert_eq!(s4.finalizers(), ["cloudlb.io/load-balancer-cleanup"]);
        // failing test -> 422
        let e = api_err(
            svcs.patch(
                "p",
                &PatchParams::default(),
                &Patch::<()>::Json(serde_json::from_value(json!([{"op": "test", "path": "/metadata/finalizers", "value": null}])).unwrap()),
            )
            .await
            .unwrap_err(),
        );
        assert_eq!(e.code, 422);

        // status: main-resource writes ignore .status; the subresource defaults ipMode
        let ignored = svcs
            .patch("p", &PatchParams::default(), &Patch::Merge(json!({"status": {"loadBalancer": {"ingress": [{"ip": "1.2.3.4"}]}}})))
            .await
            .unwrap();
        assert_eq!(ignored.resource_version(), s4.resource_version());
        let st = svcs
            .patch_status("p", &PatchParams::default(), &Patch::Merge(json!({"status": {"loadBalancer": {"ingress": [{"ip": "1.2.3.4"}]}}})))
            .await
            .unwrap();
        let ing = st.status.clone().unwrap().load_balancer.unwrap().ingress.unwrap();
        assert_eq!(ing[0].ip_mode.as_deref(), Some("VIP"));
        assert_eq!(st.metadata.generation, Some(2));
        // the same status again (with ipMode set explicitly) is a no-op
        let again = svcs
            .patch_status(
                "p",
                &PatchParams::default(),
                &Patch::Merge(json!({"status": {"loadBalancer": {"ingress": [{"ip": "1.2.3.4", "ipMode": "VIP"}]}}})),
            )
            .await
            .unwrap();
        assert_eq!(again.resource_version(), st.resource_version());
        // status writes cannot change spec or labels
        let mut whole = again.clone();
        whole.spec.as_mut().unwrap().type_ = Some("NodePort".into());
        whole.status.as_mut().unwrap().load_balancer.as_mut().unwrap().ingress = None;
        let replaced = svcs.replace_status("p", &PostParams::default(), &whole).await.unwrap();
        assert_eq!(replaced.spec.unwrap().type_.as_deref(), Some("LoadBalancer"));
        assert!(replaced.status.unwrap().load_balancer.unwrap().ingress.is_none());
        // invalid status: ipMode without ip; condition without reason
        let e = api_err(
            svcs.patch_status("p", &PatchParams::default(), &Patch::Merge(json!({"status": {"loadBalancer": {"ingress": [{"hostname": "a.example.com", "ipMode": "Proxy"}]}}})))
                .await
                .unwrap_err(),
        );
        assert_eq!(e.code, 422, "{}", e.message);
        let e = api_err(
            svcs.patch_status("p", &PatchParams::default(), &Patch::Merge(json!({"status": {"conditions": [{"type": "Ready", "status": "True"}]}})))
                .await
                .unwrap_err(),
        );
        assert_eq!(e.code, 422, "{}", e.message);

        // stale resourceVersion: PUT and merge patch -> 409 Conflict
        let cur = svcs.get("p").await.unwrap();
        let mut stale = s0.clone();
        stale.metadata.finalizers = cur.metadata.finalizers.clone();
        let e = api_err(svcs.replace("p", &PostParams::default(), &stale).await.unwrap_err());
        assert_eq!((e.code, e.reason.as_str()), (409, "Conflict"));
        let e = api_err(
            svcs.patch("p", &PatchParams::default(), &Patch::Merge(json!({"metadata": {"resourceVersion": "1", "labels": {"x": "y"}}})))
                .await
                .unwrap_err(),
        );
        assert_eq!(e.code, 409);
        // PUT with the current resourceVersion and without nodePorts keeps them
        let mut put = cur.clone();
        for p in put.spec.as_mut().unwrap().ports.as_mut().unwrap() {
            p.node_port = None;
        }
        put.spec.as_mut().unwrap().cluster_ip = None;
        put.spec.as_mut().unwrap().cluster_ips = None;
        let put = svcs.replace("p", &PostParams::default(), &put).await.unwrap();
        assert_eq!(put.resource_version(), cur.resource_version(), "PUT of the same object is a no-op");

        // server-side apply: create and update, fieldManager required
        let ssa = PatchParams::apply("test-manager").force();
        let applied = svcs
            .patch(
                "ssa",
                &ssa,
                &Patch::Apply(json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "ssa", "labels": {"a": "1"}},
                    "spec": {"ports": [{"port": 53, "protocol": "UDP"}, {"port": 53, "protocol": "TCP", "name": "tcp"}]}})),
            )
            .await
            .unwrap_err();
        // two ports need names
        assert_eq!(api_err(applied).code, 422);
        let applied = svcs
            .patch(
                "ssa",
                &ssa,
                &Patch::Apply(json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "ssa", "labels": {"a": "1"}},
                    "spec": {"ports": [{"port": 53, "protocol": "UDP", "name": "udp"}, {"port": 53, "protocol": "TCP", "name": "tcp"}]}})),
            )
            .await
            .unwrap();
        assert_eq!(applied.spec.unwrap().ports.unwrap().len(), 2);
        let applied = svcs
            .patch(
                "ssa",
                &ssa,
                &Patch::Apply(json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "ssa"},
                    "spec": {"ports": [{"port": 53, "protocol": "UDP", "name": "udp"}, {"port": 53, "protocol": "TCP", "name": "tcp"}]}})),
            )
            .await
            .unwrap();
        assert!(applied.labels().is_empty(), "a label the manager stopped applying is removed");
        let e = api_err(svcs.patch("ssa", &PatchParams::default(), &Patch::Apply(json!({"metadata": {"name": "ssa"}}))).await.unwrap_err());
        assert_eq!(e.code, 422);
        let st = sb.stats();
        assert!(st.count("patch", "services/status") >= 4);
    })
    .await
}

#[tokio::test]
async fn finalizers_delay_deletion_and_watch_sees_it() {
    bounded(async {
        let sb = start().await;
        let c = client(&sb).await;
        let svcs: Api<Service> = Api::namespaced(c.clone(), "default");
        let mut s = lb("f");
        s.metadata.finalizers = Some(vec!["cloudlb.io/load-balancer-cleanup".into()]);
        let created = svcs.create(&PostParams::default(), &s).await.unwrap();
        let mut stream = svcs
            .watch(&WatchParams::default().fields("metadata.name=f"), &created.resource_version().unwrap())
            .await
            .unwrap()
            .boxed();
        let d = svcs.delete("f", &DeleteParams::default()).await.unwrap();
        let pending = d.left().expect("object returned while finalizers are pending");
        assert!(pending.metadata.deletion_timestamp.is_some());
        match stream.try_next().await.unwrap() {
            Some(WatchEvent::Modified(o)) => assert!(o.metadata.deletion_timestamp.is_some()),
            other => panic!("unexpected {other:?}"),
        }
        assert!(svcs.get("f").await.is_ok());
        // adding a finalizer while deleting is forbidden
        let e = api_err(
            svcs.patch(
                "f",
                &PatchParams::default(),
                &Patch::Merge(json!({"metadata": {"finalizers": ["a", "cloudlb.io/load-balancer-cleanup"]}})),
            )
            .await
            .unwrap_err(),
        );
        assert_eq!(e.code, 422);
        // removing the last finalizer (kube-runtime style JSON patch) deletes the object
        svcs.patch(
            "f",
            &PatchParams::default(),
            &Patch::<()>::Json(
                serde_json::from_value(json!([
                    {"op": "test", "path": "/metadata/finalizers/0", "value": "cloudlb.io/load-balancer-cleanup"},
                    {"op": "remove", "path": "/metadata/finalizers/0"}
                ]))
                .unwrap(),
            ),
        )
        .await
        .unwrap();
        match stream.try_next().await.unwrap() {
            Some(WatchEvent::Deleted(o)) => assert_eq!(o.name_any(), "f"),
            other => panic!("unexpected {other:?}"),
        }
        assert_eq!(api_err(svcs.get("f").await.unwrap_err()).code, 404);
    })
    .await
}

#[tokio::test]
async fn watch_resume_expired_and_selectors() {
    bounded(async {
        let sb = start_with(SandboxConfig { watch_history: 4, ..Default::default() }).await;
        let c = client(&sb).await;
        let svcs: Api<Service> = Api::namespaced(c.clone(), "default");
        let first = svcs.create(&PostParams::default(), &lb("w0")).await.unwrap();
        let rv0 = first.resource_version().unwrap();
        for i in 1..3 {
            svcs.create(&PostParams::default(), &lb(&format!("w{i}"))).await.unwrap();
        }
        // resume from rv0: exactly the later two ADDED
        let mut s = svcs.watch(&WatchParams::default(), &rv0).await.unwrap().boxed();
        for want in ["w1", "w2"] {
            match s.try_next().await.unwrap() {
                Some(WatchEvent::Added(o)) => assert_eq!(o.name_any(), want),
                other => panic!("unexpected {other:?}"),
            }
        }
        // label selector transitions: a label change moving an object out is a DELETED
        let mut sel = svcs.watch(&WatchParams::default().labels("app=w1"), &rv0).await.unwrap().boxed();
        match sel.try_next().await.unwrap() {
            Some(WatchEvent::Added(o)) => assert_eq!(o.name_any(), "w1"),
            other => panic!("unexpected {other:?}"),
        }
        svcs.patch("w1", &PatchParams::default(), &Patch::Merge(json!({"metadata": {"labels": {"app": "other"}}})))
            .await
            .unwrap();
        match sel.try_next().await.unwrap() {
            Some(WatchEvent::Deleted(o)) => assert_eq!(o.name_any(), "w1"),
            other => panic!("unexpected {other:?}"),
        }
        // rv "0": the current state as ADDED
        let mut z = svcs.watch(&WatchParams::default(), "0").await.unwrap().boxed();
        let mut names = Vec::new();
        for _ in 0..3 {
            if let Some(WatchEvent::Added(o)) = z.try_next().await.unwrap() {
                names.push(o.name_any());
            }
        }
        assert_eq!(names, ["w0", "w1", "w2"]);
        // overflow the history: an old rv is Expired (410)
        for i in 3..9 {
            svcs.create(&PostParams::default(), &lb(&format!("w{i}"))).await.unwrap();
        }
        let mut old = svcs.watch(&WatchParams::default(), &rv0).await.unwrap().boxed();
        match old.try_next().await.unwrap() {
            Some(WatchEvent::Error(e)) => assert_eq!((e.code, e.reason.as_str()), (410, "Expired")),
            other => panic!("unexpected {other:?}"),
        }
        // the watch timeout ends the stream
        let mut t = svcs
            .watch(
                &WatchParams::default().timeout(1),
                &svcs.list(&ListParams::default()).await.unwrap().metadata.resource_version.unwrap(),
            )
            .await
            .unwrap()
            .boxed();
        assert!(t.try_next().await.unwrap().is_none());

        // list selectors and pagination
        let l = svcs.list(&ListParams::default().labels("app in (w2,w3)")).await.unwrap();
        assert_eq!(l.items.len(), 2);
        let l = svcs.list(&ListParams::default().fields("metadata.name!=w0,spec.type=LoadBalancer")).await.unwrap();
        assert_eq!(l.items.len(), 8);
        let mut seen = Vec::new();
        let mut lp = ListParams::default().limit(3);
        loop {
            let page = svcs.list(&lp).await.unwrap();
            assert!(page.items.len() <= 3);
            seen.extend(page.items.iter().map(|s| s.name_any()));
            match page.metadata.continue_ {
                Some(c) if !c.is_empty() => lp = lp.continue_token(&c),
                _ => break,
            }
        }
        assert_eq!(seen.len(), 9);
    })
    .await
}

#[tokio::test]
async fn watcher_and_reflector_see_changes() {
    bounded(async {
        let sb = start().await;
        let c = client(&sb).await;
        let svcs: Api<Service> = Api::namespaced(c.clone(), "default");
        svcs.create(&PostParams::default(), &lb("pre")).await.unwrap();
        for cfg in [watcher::Config::default(), watcher::Config::default().streaming_lists()] {
            let (reader, writer) = reflector::store::<Service>();
            let mut events = watcher(svcs.clone(), cfg).reflect(writer).applied_objects().boxed();
            let first = events.try_next().await.unwrap().unwrap();
            assert_eq!(first.name_any(), "pre");
            svcs.create(&PostParams::default(), &lb("live")).await.unwrap();
            assert_eq!(events.try_next().await.unwrap().unwrap().name_any(), "live");
            reader.wait_until_ready().await.unwrap();
            svcs.patch("live", &PatchParams::default(), &Patch::Merge(json!({"metadata": {"labels": {"x": "y"}}})))
                .await
                .unwrap();
            let m = events.try_next().await.unwrap().unwrap();
            assert_eq!(m.labels().get("x").map(String::as_str), Some("y"));
            assert_eq!(reader.state().len(), 2);
            svcs.delete("live", &DeleteParams::default()).await.unwrap();
            // the reflector applies the DELETED while its stream is polled; applied_objects()
            // yields nothing for it, so poll until the store shrinks
            while reader.state().len() != 1 {
                let _ = tokio::time::timeout(std::time::Duration::from_millis(50), events.try_next()).await;
            }
            drop(events);
        }
    })
    .await
}

#[tokio::test]
async fn recorder_events_show_through_core_v1_with_field_selector() {
    bounded(async {
        let sb = start().await;
        let c = client(&sb).await;
        let svcs: Api<Service> = Api::namespaced(c.clone(), "default");
        let s = svcs.create(&PostParams::default(), &lb("ev")).await.unwrap();
        let reporter = Reporter { controller: "cloudlb".into(), instance: Some("cloudlb-0".into()) };
        let rec = Recorder::new(c.clone(), reporter);
        let ev = Event {
            type_: EventType::Normal,
            reason: "EnsuringLoadBalancer".into(),
            note: Some("Ensuring load balancer".into()),
            action: "Ensure".into(),
            secondary: None,
        };
        let oref = s.object_ref(&());
        rec.publish(&ev, &oref).await.unwrap();
        rec.publish(&ev, &oref).await.unwrap(); // series bump via merge patch
        let core: Api<CoreEvent> = Api::namespaced(c.clone(), "default");
        let fs = format!(
            "involvedObject.name=ev,involvedObject.namespace=default,involvedObject.kind=Service,involvedObject.uid={}",
            s.uid().unwrap()
        );
        let l = core.list(&ListParams::default().fields(&fs)).await.unwrap();
        assert_eq!(l.items.len(), 1);
        let e = &l.items[0];
        assert_eq!(e.reason.as_deref(), Some("EnsuringLoadBalancer"));
        assert_eq!(e.message.as_deref(), Some("Ensuring load balancer"));
        assert_eq!(e.reporting_component.as_deref(), Some("cloudlb"));
        assert_eq!(e.series.as_ref().and_then(|s| s.count), Some(2));
        let none = core.list(&ListParams::default().fields("involvedObject.name=other")).await.unwrap();
        assert!(none.items.is_empty());
        let ev1: Api<k8s_openapi::api::events::v1::Event> = Api::namespaced(c.clone(), "default");
        assert_eq!(ev1.list(&ListParams::default()).await.unwrap().items.len(), 1);
        let st = sb.stats();
        assert_eq!(st.count("create", "events.events.k8s.io"), 1);
        assert_eq!(st.count("patch", "events.events.k8s.io"), 1);
    })
    .await
}

#[tokio::test]
async fn nodes_and_leases() {
    bounded(async {
        let sb = start().await;
        let c = client(&sb).await;
        let nodes: Api<Node> = Api::all(c.clone());
        let n: Node = serde_json::from_value(json!({
            "metadata": {"name": "n1", "labels": {"node-role.kubernetes.io/worker": ""}},
            "spec": {"providerID": "aws:///us-east-1a/i-1", "taints": [{"key": "a", "effect": "NoSchedule"}]},
            "status": {"addresses": [{"type": "InternalIP", "address": "10.0.0.1"}],
                       "conditions": [{"type": "Ready", "status": "True"}]}
        }))
        .unwrap();
        let created = nodes.create(&PostParams::default(), &n).await.unwrap();
        assert_eq!(created.status.unwrap().addresses.unwrap()[0].address, "10.0.0.1");
        // taints are atomic under strategic merge, like the real API
        let p = nodes
            .patch(
                "n1",
                &PatchParams::default(),
                &Patch::Strategic(json!({"spec": {"taints": [{"key": "b", "effect": "NoSchedule"}]}})),
            )
            .await
            .unwrap();
        assert_eq!(p.spec.unwrap().taints.unwrap().len(), 1);
        let p = nodes
            .patch_status(
                "n1",
                &PatchParams::default(),
                &Patch::Strategic(json!({"status": {"addresses": [{"type": "ExternalIP", "address": "1.1.1.1"}]}})),
            )
            .await
            .unwrap();
        assert_eq!(p.status.unwrap().addresses.unwrap().len(), 2);
        let leases: Api<Lease> = Api::namespaced(c.clone(), "kube-system");
        let l: Lease = serde_json::from_value(
            json!({"metadata": {"name": "cloudlb"}, "spec": {"holderIdentity": "a", "leaseDurationSeconds": 15}}),
        )
        .unwrap();
        let l = leases.create(&PostParams::default(), &l).await.unwrap();
        let mut l2 = l.clone();
        l2.spec.as_mut().unwrap().holder_identity = Some("b".into());
        leases.replace("cloudlb", &PostParams::default(), &l2).await.unwrap();
        let e = api_err(leases.replace("cloudlb", &PostParams::default(), &l2).await.unwrap_err());
        assert_eq!(e.code, 409);
        sb.shutdown().await;
    })
    .await
}

#[tokio::test]
async fn shutdown_ends_open_watches() {
    bounded(async {
        let sb = start().await;
        let c = client(&sb).await;
        let svcs: Api<Service> = Api::namespaced(c.clone(), "default");
        let rv = svcs.list(&ListParams::default()).await.unwrap().metadata.resource_version.unwrap();
        let mut w = svcs.watch(&WatchParams::default(), &rv).await.unwrap().boxed();
        sb.shutdown().await;
        // the stream ends (cleanly or with a connection error), it does not hang
        let _ = w.try_next().await;
    })
    .await
}
