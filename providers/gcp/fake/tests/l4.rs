//! The L4 collections through the real `google-cloud-compute-v1` client: addresses, regional
//! forwarding rules, regional backend services and health checks, instance groups, instances,
//! firewalls, operations; errors as the provider will classify them.

mod common;

use cloudlb_gce_fake::{Delivery, InstanceSpec};
use common::*;
use google_cloud_compute_v1::model::operation::Status as OpStatus;
use google_cloud_compute_v1::model::{
    self, Address, Backend, BackendService, Firewall, ForwardingRule, HealthCheck, InstanceGroup,
    InstanceGroupsAddInstancesRequest, InstanceGroupsListInstancesRequest, InstanceGroupsRemoveInstancesRequest,
    InstanceGroupsSetNamedPortsRequest, InstanceReference, NamedPort, RegionSetLabelsRequest, ResourceGroupReference,
};
use google_cloud_lro::Poller;

fn http_hc(name: &str, port: i32) -> HealthCheck {
    HealthCheck::new()
        .set_name(name)
        .set_type(model::health_check::Type::Http)
        .set_http_health_check(model::HTTPHealthCheck::new().set_port(port).set_request_path("/healthz"))
}

/// Creates a regional HTTP health check and a regional backend service using it.
async fn hc_and_bs(fake: &cloudlb_gce_fake::GceFake, hc: &str, bs: &str) {
    let hcs = client!(RegionHealthChecks, fake);
    done_ok(
        hcs.insert()
            .set_project(PROJECT)
            .set_region(REGION)
            .set_body(http_hc(hc, 10256))
            .poller()
            .until_done()
            .await
            .unwrap(),
    );
    let bss = client!(RegionBackendServices, fake);
    let body = BackendService::new()
        .set_name(bs)
        .set_load_balancing_scheme(model::backend_service::LoadBalancingScheme::External)
        .set_protocol(model::backend_service::Protocol::Tcp)
        .set_health_checks([format!("regions/{REGION}/healthChecks/{hc}")]);
    done_ok(bss.insert().set_project(PROJECT).set_region(REGION).set_body(body).poller().until_done().await.unwrap());
}

#[tokio::test]
async fn address_insert_operation_sequence_and_shape() {
    let fake = start().await;
    let addrs = client!(Addresses, fake);
    let ops = client!(RegionOperations, fake);

    let op = addrs
        .insert()
        .set_project(PROJECT)
        .set_region(REGION)
        .set_body(Address::new().set_name("lb-ip"))
        .send()
        .await
        .unwrap();
    assert_eq!(op.status, Some(OpStatus::Running));
    assert_eq!(op.progress, Some(0));
    assert_eq!(op.operation_type.as_deref(), Some("insert"));
    assert!(op.id.is_some() && op.target_id.is_some() && op.insert_time.is_some() && op.start_time.is_some());
    assert_eq!(
        op.target_link.as_deref(),
        Some(
            format!("https://www.googleapis.com/compute/v1/projects/{PROJECT}/regions/{REGION}/addresses/lb-ip")
                .as_str()
        )
    );
    assert_eq!(
        op.region.as_deref(),
        Some(format!("https://www.googleapis.com/compute/v1/projects/{PROJECT}/regions/{REGION}").as_str())
    );
    let name = op.name.clone().unwrap();
    assert!(op.self_link.as_deref().unwrap().ends_with(&format!("/regions/{REGION}/operations/{name}")));

    // Not visible before DONE.
    let err = addrs.get().set_project(PROJECT).set_region(REGION).set_address("lb-ip").send().await.unwrap_err();
    assert_eq!(http_code(&err), Some(404));

    let first = ops.get().set_project(PROJECT).set_region(REGION).set_operation(&name).send().await.unwrap();
    assert_eq!(first.status, Some(OpStatus::Running));
    let second = ops.get().set_project(PROJECT).set_region(REGION).set_operation(&name).send().await.unwrap();
    assert_eq!(second.status, Some(OpStatus::Done));
    assert_eq!(second.progress, Some(100));
    assert!(second.end_time.is_some());
    assert_eq!(second.target_id, op.target_id);

    let a = addrs.get().set_project(PROJECT).set_region(REGION).set_address("lb-ip").send().await.unwrap();
    assert_eq!(a.address.as_deref(), Some("203.0.113.1"));
    assert_eq!(a.status, Some(model::address::Status::Reserved));
    assert_eq!(a.address_type, Some(model::address::AddressType::External));
    assert_eq!(a.network_tier, Some(model::address::NetworkTier::Premium));
    assert_eq!(a.kind.as_deref(), Some("compute#address"));
    assert_eq!(a.description.as_deref(), Some(""));
    assert_eq!(a.id, op.target_id);
    assert!(a.creation_timestamp.is_some());
    assert_eq!(
        a.label_fingerprint.as_deref(),
        Some(&b"\xe3\x65\xa6\x4a\x90\x7c\xad\x23"[..]),
        "42WmSpB8rSM= for no labels"
    );
    assert_eq!(a.self_link, op.target_link);

    // A second address gets the next IP; the wire shape of ids is a decimal string.
    done_ok(
        addrs
            .insert()
            .set_project(PROJECT)
            .set_region(REGION)
            .set_body(Address::new().set_name("lb-ip-2"))
            .poller()
            .until_done()
            .await
            .unwrap(),
    );
    let (code, raw_addr) = raw(&fake, "GET", &api(&format!("regions/{REGION}/addresses/lb-ip-2")), None).await;
    assert_eq!(code, 200);
    assert_eq!(raw_addr["address"], "203.0.113.2");
    assert!(raw_addr["id"].as_str().is_some_and(|s| s.chars().all(|c| c.is_ascii_digit())), "{raw_addr}");
}

#[tokio::test]
async fn poller_walks_pending_running_done_and_wait_completes() {
    let fake = start().await;
    fake.set_op_delay_polls(3);
    let addrs = client!(Addresses, fake);
    let op = addrs
        .insert()
        .set_project(PROJECT)
        .set_region(REGION)
        .set_body(Address::new().set_name("a1"))
        .send()
        .await
        .unwrap();
    assert_eq!(op.status, Some(OpStatus::Pending));

    fake.clear_calls();
    let done = addrs
        .insert()
        .set_project(PROJECT)
        .set_region(REGION)
        .set_body(Address::new().set_name("a2"))
        .poller()
        .until_done()
        .await
        .unwrap();
    done_ok(done);
    let polls = fake.calls().iter().filter(|c| c.collection == "operations" && c.verb == "get").count();
    assert_eq!(polls, 4, "3 RUNNING polls then DONE: {:?}", fake.calls());

    // wait completes an operation at once.
    let ops = client!(RegionOperations, fake);
    let name = op.name.unwrap();
    let waited = ops.wait().set_project(PROJECT).set_region(REGION).set_operation(&name).send().await.unwrap();
    assert_eq!(waited.status, Some(OpStatus::Done));
    assert!(addrs.get().set_project(PROJECT).set_region(REGION).set_address("a1").send().await.is_ok());

    // delay 0: DONE in the answer itself, visible at once.
    fake.set_op_delay_polls(0);
    let op = addrs
        .insert()
        .set_project(PROJECT)
        .set_region(REGION)
        .set_body(Address::new().set_name("a3"))
        .send()
        .await
        .unwrap();
    assert_eq!(op.status, Some(OpStatus::Done));
    assert!(addrs.get().set_project(PROJECT).set_region(REGION).set_address("a3").send().await.is_ok());

    // An operation of another scope is not found there.
    let gops = client!(GlobalOperations, fake);
    let err = gops.get().set_project(PROJECT).set_operation(&name).send().await.unwrap_err();
    assert_eq!(http_code(&err), Some(404));
}

#[tokio::test]
async fn unpolled_operations_settle_by_time_or_on_demand() {
    let fake = start_with(
        cloudlb_gce_fake::FakeConfig::new(PROJECT).with_settle_after(Some(std::time::Duration::from_millis(50))),
    )
    .await;
    let addrs = client!(Addresses, fake);
    addrs
        .insert()
        .set_project(PROJECT)
        .set_region(REGION)
        .set_body(Address::new().set_name("dropped"))
        .send()
        .await
        .unwrap();
    assert_eq!(fake.pending_operations(), 1);
    // Any request after settle_after completes it; poll with a bounded number of GETs.
    let mut seen = false;
    for _ in 0..100 {
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        if addrs.get().set_project(PROJECT).set_region(REGION).set_address("dropped").send().await.is_ok() {
            seen = true;
            break;
        }
    }
    assert!(seen, "an unpolled operation finishes by itself");

    fake.set_settle_after(None);
    addrs
        .insert()
        .set_project(PROJECT)
        .set_region(REGION)
        .set_body(Address::new().set_name("dropped-2"))
        .send()
        .await
        .unwrap();
    assert_eq!(fake.settle(), 1);
    assert!(fake.resource(&format!("regions/{REGION}/addresses/dropped-2")).is_some());
}

#[tokio::test]
async fn duplicate_missing_and_invalid_names() {
    let fake = start().await;
    let addrs = client!(Addresses, fake);
    let insert = |n: &str| addrs.insert().set_project(PROJECT).set_region(REGION).set_body(Address::new().set_name(n));
    insert("dup").send().await.unwrap();
    // Taken while its insert is still RUNNING, and after.
    let err = insert("dup").send().await.unwrap_err();
    assert_eq!((http_code(&err), reason(&err).as_str()), (Some(409), "alreadyExists"));
    fake.settle();
    let err = insert("dup").send().await.unwrap_err();
    assert_eq!((http_code(&err), reason(&err).as_str()), (Some(409), "alreadyExists"));
    assert_eq!(
        message(&err),
        format!("The resource 'projects/{PROJECT}/regions/{REGION}/addresses/dup' already exists")
    );

    let err = addrs.get().set_project(PROJECT).set_region(REGION).set_address("nope").send().await.unwrap_err();
    assert_eq!((http_code(&err), reason(&err).as_str()), (Some(404), "notFound"));
    assert_eq!(
        message(&err),
        format!("The resource 'projects/{PROJECT}/regions/{REGION}/addresses/nope' was not found")
    );
    let err = addrs.delete().set_project(PROJECT).set_region(REGION).set_address("nope").send().await.unwrap_err();
    assert_eq!(http_code(&err), Some(404));

    for bad in ["Upper", "1abc", "ends-", &"a".repeat(64)] {
        let err = insert(bad).send().await.unwrap_err();
        assert_eq!((http_code(&err), reason(&err).as_str()), (Some(400), "invalid"), "{bad}");
    }
    // Unknown region.
    let err = addrs.get().set_project(PROJECT).set_region("mars-north1").set_address("x").send().await.unwrap_err();
    assert_eq!(http_code(&err), Some(400));
}

#[tokio::test]
async fn set_labels_needs_the_current_label_fingerprint_and_is_done_at_once() {
    let fake = start().await;
    let addrs = client!(Addresses, fake);
    done_ok(
        addrs
            .insert()
            .set_project(PROJECT)
            .set_region(REGION)
            .set_body(Address::new().set_name("l"))
            .poller()
            .until_done()
            .await
            .unwrap(),
    );
    let a = addrs.get().set_project(PROJECT).set_region(REGION).set_address("l").send().await.unwrap();
    let set = |fp: Option<bytes::Bytes>| {
        addrs.set_labels().set_project(PROJECT).set_region(REGION).set_resource("l").set_body(
            RegionSetLabelsRequest::new().set_labels([("cloudlb-cluster", "c1")]).set_or_clear_label_fingerprint(fp),
        )
    };
    let err = set(None).send().await.unwrap_err();
    assert_eq!((http_code(&err), reason(&err).as_str()), (Some(412), "conditionNotMet"));
    let err = set(Some(bytes::Bytes::from_static(b"12345678"))).send().await.unwrap_err();
    assert_eq!(http_code(&err), Some(412));
    assert_eq!(message(&err), "Labels fingerprint either invalid or resource labels have changed");

    let op = set(a.label_fingerprint.clone()).send().await.unwrap();
    assert_eq!(op.status, Some(OpStatus::Done), "setLabels is DONE at once");
    let b = addrs.get().set_project(PROJECT).set_region(REGION).set_address("l").send().await.unwrap();
    assert_eq!(b.labels.get("cloudlb-cluster").map(String::as_str), Some("c1"));
    assert_ne!(b.label_fingerprint, a.label_fingerprint);
    // The old fingerprint is now stale.
    let err = set(a.label_fingerprint).send().await.unwrap_err();
    assert_eq!(http_code(&err), Some(412));
}

#[tokio::test]
async fn forwarding_rules_ips_ports_and_address_promotion() {
    let fake = start().await;
    hc_and_bs(&fake, "hc", "bs").await;
    let frs = client!(ForwardingRules, fake);
    let addrs = client!(Addresses, fake);
    let bs_link = fake.self_link(&format!("regions/{REGION}/backendServices/bs"));
    let fr = |name: &str| {
        ForwardingRule::new()
            .set_name(name)
            .set_load_balancing_scheme(model::forwarding_rule::LoadBalancingScheme::External)
            .set_backend_service(format!("projects/{PROJECT}/regions/{REGION}/backendServices/bs"))
            .set_port_range("80")
    };
    done_ok(
        frs.insert().set_project(PROJECT).set_region(REGION).set_body(fr("fr1")).poller().until_done().await.unwrap(),
    );
    let got = frs.get().set_project(PROJECT).set_region(REGION).set_forwarding_rule("fr1").send().await.unwrap();
    assert_eq!(got.ip_address.as_deref(), Some("203.0.113.1"), "ephemeral IP");
    assert_eq!(got.port_range.as_deref(), Some("80-80"));
    assert_eq!(got.ip_protocol, Some(model::forwarding_rule::IPProtocol::Tcp));
    assert_eq!(got.network_tier, Some(model::forwarding_rule::NetworkTier::Premium));
    assert_eq!(got.backend_service.as_deref(), Some(bs_link.as_str()), "partial reference stored absolute");
    assert!(got.fingerprint.is_some() && got.label_fingerprint.is_some());

    // The ephemeral IP cannot be taken by another rule.
    let err = frs
        .insert()
        .set_project(PROJECT)
        .set_region(REGION)
        .set_body(fr("fr2").set_ip_address("203.0.113.1").set_ip_protocol(model::forwarding_rule::IPProtocol::Udp))
        .send()
        .await
        .unwrap_err();
    assert_eq!(http_code(&err), Some(400));
    assert!(message(&err).contains("in-use and would result in a conflict"), "{}", message(&err));

    // Promote it to a static address (CPG's flow): the address is IN_USE by the rule.
    done_ok(
        addrs
            .insert()
            .set_project(PROJECT)
            .set_region(REGION)
            .set_body(Address::new().set_name("keep").set_address("203.0.113.1"))
            .poller()
            .until_done()
            .await
            .unwrap(),
    );
    let a = addrs.get().set_project(PROJECT).set_region(REGION).set_address("keep").send().await.unwrap();
    assert_eq!(a.status, Some(model::address::Status::InUse));
    assert_eq!(a.users, vec![got.self_link.clone().unwrap()]);

    // Now a UDP rule may share the reserved IP; an overlapping TCP rule may not.
    done_ok(
        frs.insert()
            .set_project(PROJECT)
            .set_region(REGION)
            .set_body(
                fr("fr-udp").set_ip_address("203.0.113.1").set_ip_protocol(model::forwarding_rule::IPProtocol::Udp),
            )
            .poller()
            .until_done()
            .await
            .unwrap(),
    );
    let err = frs
        .insert()
        .set_project(PROJECT)
        .set_region(REGION)
        .set_body(fr("fr-tcp").set_ip_address("203.0.113.1").set_port_range("70-90"))
        .send()
        .await
        .unwrap_err();
    assert_eq!(http_code(&err), Some(400));
    assert!(message(&err).contains("port range is conflicting with forwarding rule"), "{}", message(&err));

    // An address in use by a forwarding rule can be deleted; the rule keeps its IP.
    done_ok(
        addrs.delete().set_project(PROJECT).set_region(REGION).set_address("keep").poller().until_done().await.unwrap(),
    );
    let still = frs.get().set_project(PROJECT).set_region(REGION).set_forwarding_rule("fr1").send().await.unwrap();
    assert_eq!(still.ip_address.as_deref(), Some("203.0.113.1"));

    // An unreserved external IP cannot be named.
    let err = frs
        .insert()
        .set_project(PROJECT)
        .set_region(REGION)
        .set_body(fr("fr3").set_ip_address("203.0.113.77"))
        .send()
        .await
        .unwrap_err();
    assert_eq!(http_code(&err), Some(400));

    // PATCH may change networkTier only (and a few others); portRange is not patchable.
    let cur = frs.get().set_project(PROJECT).set_region(REGION).set_forwarding_rule("fr1").send().await.unwrap();
    let err = frs
        .patch()
        .set_project(PROJECT)
        .set_region(REGION)
        .set_forwarding_rule("fr1")
        .set_body(ForwardingRule::new().set_port_range("81"))
        .send()
        .await
        .unwrap_err();
    assert_eq!(http_code(&err), Some(400));
    let op = frs
        .patch()
        .set_project(PROJECT)
        .set_region(REGION)
        .set_forwarding_rule("fr1")
        .set_body(ForwardingRule::new().set_allow_global_access(true).set_or_clear_fingerprint(cur.fingerprint.clone()))
        .poller()
        .until_done()
        .await
        .unwrap();
    done_ok(op);
    let after = frs.get().set_project(PROJECT).set_region(REGION).set_forwarding_rule("fr1").send().await.unwrap();
    assert_eq!(after.allow_global_access, Some(true));
    assert_ne!(after.fingerprint, cur.fingerprint, "fingerprint changes on every mutation");
    let err = frs
        .patch()
        .set_project(PROJECT)
        .set_region(REGION)
        .set_forwarding_rule("fr1")
        .set_body(ForwardingRule::new().set_allow_global_access(false).set_or_clear_fingerprint(cur.fingerprint))
        .send()
        .await
        .unwrap_err();
    assert_eq!((http_code(&err), reason(&err).as_str()), (Some(412), "conditionNotMet"));

    // Internal rules come from the internal pool.
    done_ok(
        frs.insert()
            .set_project(PROJECT)
            .set_region(REGION)
            .set_body(
                fr("ilb")
                    .set_load_balancing_scheme(model::forwarding_rule::LoadBalancingScheme::Internal)
                    .set_ports(["80", "443"])
                    .set_or_clear_port_range(None::<String>),
            )
            .poller()
            .until_done()
            .await
            .unwrap(),
    );
    let ilb = frs.get().set_project(PROJECT).set_region(REGION).set_forwarding_rule("ilb").send().await.unwrap();
    assert!(ilb.ip_address.as_deref().unwrap().starts_with("10.128."), "{ilb:?}");
    assert_eq!(ilb.ports, vec!["80", "443"]);
}

#[tokio::test]
async fn internal_ip_conflict_fails_inside_the_operation_with_409() {
    let fake = start().await;
    let addrs = client!(Addresses, fake);
    let internal = |n: &str| {
        Address::new().set_name(n).set_address_type(model::address::AddressType::Internal).set_address("10.128.5.5")
    };
    done_ok(
        addrs
            .insert()
            .set_project(PROJECT)
            .set_region(REGION)
            .set_body(internal("i1"))
            .poller()
            .until_done()
            .await
            .unwrap(),
    );
    let op = addrs
        .insert()
        .set_project(PROJECT)
        .set_region(REGION)
        .set_body(internal("i2"))
        .poller()
        .until_done()
        .await
        .unwrap();
    assert_eq!(op.status, Some(OpStatus::Done), "until_done() is Ok even for a failed operation");
    let (code, err_code, msg) = op_failure(op);
    assert_eq!((code, err_code.as_str()), (409, "IP_IN_USE_BY_ANOTHER_RESOURCE"));
    assert_eq!(msg, "IP '10.128.5.5' is already being used by another resource.");
    assert!(fake.resource(&format!("regions/{REGION}/addresses/i2")).is_none(), "a failed operation changes nothing");

    // External conflict: synchronous 400.
    done_ok(
        addrs
            .insert()
            .set_project(PROJECT)
            .set_region(REGION)
            .set_body(Address::new().set_name("e1"))
            .poller()
            .until_done()
            .await
            .unwrap(),
    );
    let err = addrs
        .insert()
        .set_project(PROJECT)
        .set_region(REGION)
        .set_body(Address::new().set_name("e2").set_address("203.0.113.1"))
        .send()
        .await
        .unwrap_err();
    assert_eq!(http_code(&err), Some(400));
}

#[tokio::test]
async fn backend_service_update_patch_and_fingerprints() {
    let fake = start().await;
    hc_and_bs(&fake, "hc", "bs").await;
    let bss = client!(RegionBackendServices, fake);
    let get = || bss.get().set_project(PROJECT).set_region(REGION).set_backend_service("bs").send();
    let bs = get().await.unwrap();
    assert_eq!(bs.health_checks, vec![fake.self_link(&format!("regions/{REGION}/healthChecks/hc"))]);
    assert_eq!(bs.session_affinity, Some(model::backend_service::SessionAffinity::None));
    assert_eq!(bs.timeout_sec, Some(30));
    assert_eq!(bs.kind.as_deref(), Some("compute#backendService"));
    let fp = bs.fingerprint.clone();
    assert!(fp.is_some());

    let update = |body: BackendService| {
        bss.update().set_project(PROJECT).set_region(REGION).set_backend_service("bs").set_body(body)
    };
    // PUT without fingerprint and with a stale one: 412.
    let err = update(bs.clone().set_or_clear_fingerprint(None::<bytes::Bytes>)).send().await.unwrap_err();
    assert_eq!((http_code(&err), reason(&err).as_str()), (Some(412), "conditionNotMet"));
    let err = update(bs.clone().set_fingerprint(bytes::Bytes::from_static(b"stale!!!"))).send().await.unwrap_err();
    assert_eq!(http_code(&err), Some(412));
    // With the current one: accepted, and the fingerprint moves.
    done_ok(
        update(bs.clone().set_session_affinity(model::backend_service::SessionAffinity::ClientIp))
            .poller()
            .until_done()
            .await
            .unwrap(),
    );
    let bs2 = get().await.unwrap();
    assert_eq!(bs2.session_affinity, Some(model::backend_service::SessionAffinity::ClientIp));
    assert_ne!(bs2.fingerprint, fp);
    assert_eq!(bs2.id, bs.id);
    assert_eq!(bs2.creation_timestamp, bs.creation_timestamp);

    // PATCH without a fingerprint is accepted; with the old one it is 412.
    let patch = |body: BackendService| {
        bss.patch().set_project(PROJECT).set_region(REGION).set_backend_service("bs").set_body(body)
    };
    done_ok(patch(BackendService::new().set_description("d")).poller().until_done().await.unwrap());
    assert_eq!(get().await.unwrap().description.as_deref(), Some("d"));
    let err = patch(BackendService::new().set_description("e").set_or_clear_fingerprint(fp)).send().await.unwrap_err();
    assert_eq!(http_code(&err), Some(412));
    fake.set_require_patch_fingerprint(true);
    let err = patch(BackendService::new().set_description("e")).send().await.unwrap_err();
    assert_eq!(http_code(&err), Some(412));

    // A reference to a missing health check: 404 naming it. Two health checks: 400.
    let err = bss
        .insert()
        .set_project(PROJECT)
        .set_region(REGION)
        .set_body(
            BackendService::new()
                .set_name("bs-x")
                .set_health_checks([format!("regions/{REGION}/healthChecks/missing")]),
        )
        .send()
        .await
        .unwrap_err();
    assert_eq!((http_code(&err), reason(&err).as_str()), (Some(404), "notFound"));
    assert_eq!(
        message(&err),
        format!("The resource 'projects/{PROJECT}/regions/{REGION}/healthChecks/missing' was not found")
    );
    let err = bss
        .insert()
        .set_project(PROJECT)
        .set_region(REGION)
        .set_body(BackendService::new().set_name("bs-y").set_health_checks(["not a url"]))
        .send()
        .await
        .unwrap_err();
    assert_eq!((http_code(&err), reason(&err).as_str()), (Some(400), "invalid"));
}

#[tokio::test]
async fn delete_in_use_is_400_sync_or_inside_the_operation() {
    let fake = start().await;
    fake.add_instance(InstanceSpec::new(ZONE_A, "node-1")).unwrap();
    hc_and_bs(&fake, "hc", "bs").await;
    let igs = client!(InstanceGroups, fake);
    done_ok(
        igs.insert()
            .set_project(PROJECT)
            .set_zone(ZONE_A)
            .set_body(InstanceGroup::new().set_name("ig"))
            .poller()
            .until_done()
            .await
            .unwrap(),
    );
    let bss = client!(RegionBackendServices, fake);
    let bs = bss.get().set_project(PROJECT).set_region(REGION).set_backend_service("bs").send().await.unwrap();
    let ig_link = fake.self_link(&format!("zones/{ZONE_A}/instanceGroups/ig"));
    done_ok(
        bss.update()
            .set_project(PROJECT)
            .set_region(REGION)
            .set_backend_service("bs")
            .set_body(bs.clone().set_backends([Backend::new().set_group(&ig_link)]))
            .poller()
            .until_done()
            .await
            .unwrap(),
    );

    let hcs = client!(RegionHealthChecks, fake);
    let err = hcs.delete().set_project(PROJECT).set_region(REGION).set_health_check("hc").send().await.unwrap_err();
    assert_eq!((http_code(&err), reason(&err).as_str()), (Some(400), "resourceInUseByAnotherResource"));
    assert_eq!(
        message(&err),
        format!(
            "The health_check resource 'projects/{PROJECT}/regions/{REGION}/healthChecks/hc' is already being used by 'projects/{PROJECT}/regions/{REGION}/backendServices/bs'"
        )
    );
    let err = igs.delete().set_project(PROJECT).set_zone(ZONE_A).set_instance_group("ig").send().await.unwrap_err();
    assert_eq!(reason(&err), "resourceInUseByAnotherResource");
    assert!(message(&err).contains("being used by"));

    fake.set_in_use_delivery(Delivery::InOperation);
    let op = hcs
        .delete()
        .set_project(PROJECT)
        .set_region(REGION)
        .set_health_check("hc")
        .poller()
        .until_done()
        .await
        .unwrap();
    let (code, err_code, msg) = op_failure(op);
    assert_eq!((code, err_code.as_str()), (400, "RESOURCE_IN_USE_BY_ANOTHER_RESOURCE"));
    assert!(msg.contains("is already being used by"), "{msg}");
    assert!(fake.resource(&format!("regions/{REGION}/healthChecks/hc")).is_some());

    // Delete in dependency order succeeds.
    done_ok(
        bss.delete()
            .set_project(PROJECT)
            .set_region(REGION)
            .set_backend_service("bs")
            .poller()
            .until_done()
            .await
            .unwrap(),
    );
    done_ok(
        hcs.delete()
            .set_project(PROJECT)
            .set_region(REGION)
            .set_health_check("hc")
            .poller()
            .until_done()
            .await
            .unwrap(),
    );
    done_ok(
        igs.delete()
            .set_project(PROJECT)
            .set_zone(ZONE_A)
            .set_instance_group("ig")
            .poller()
            .until_done()
            .await
            .unwrap(),
    );
    assert_eq!(fake.dump()["resources"].as_object().unwrap().len(), 1, "only the instance is left");
}

#[tokio::test]
async fn instance_groups_membership_named_ports_and_health() {
    let fake = start().await;
    for (z, n) in [(ZONE_A, "node-1"), (ZONE_A, "node-2"), (ZONE_A, "node-3"), (ZONE_B, "node-b")] {
        fake.add_instance(InstanceSpec::new(z, n)).unwrap();
    }
    let igs = client!(InstanceGroups, fake);
    done_ok(
        igs.insert()
            .set_project(PROJECT)
            .set_zone(ZONE_A)
            .set_body(InstanceGroup::new().set_name("ig"))
            .poller()
            .until_done()
            .await
            .unwrap(),
    );
    let inst =
        |z: &str, n: &str| InstanceReference::new().set_instance(fake.self_link(&format!("zones/{z}/instances/{n}")));
    let add = |refs: Vec<InstanceReference>| {
        igs.add_instances()
            .set_project(PROJECT)
            .set_zone(ZONE_A)
            .set_instance_group("ig")
            .set_body(InstanceGroupsAddInstancesRequest::new().set_instances(refs))
    };
    done_ok(
        add(vec![inst(ZONE_A, "node-1"), inst(ZONE_A, "node-2"), inst(ZONE_A, "node-3")])
            .poller()
            .until_done()
            .await
            .unwrap(),
    );
    let g = igs.get().set_project(PROJECT).set_zone(ZONE_A).set_instance_group("ig").send().await.unwrap();
    assert_eq!(g.size, Some(3));
    assert_eq!(g.zone.as_deref(), Some(fake.self_link(&format!("zones/{ZONE_A}")).as_str()));

    let err = add(vec![inst(ZONE_A, "node-1")]).send().await.unwrap_err();
    assert_eq!((http_code(&err), reason(&err).as_str()), (Some(400), "memberAlreadyExists"));
    let err = add(vec![inst(ZONE_B, "node-b")]).send().await.unwrap_err();
    assert_eq!(http_code(&err), Some(400), "another zone");
    let err = add(vec![inst(ZONE_A, "ghost")]).send().await.unwrap_err();
    assert_eq!(http_code(&err), Some(400), "missing instance");

    // listInstances is a POST, pages with maxResults.
    let list = |token: Option<String>| {
        igs.list_instances()
            .set_project(PROJECT)
            .set_zone(ZONE_A)
            .set_instance_group("ig")
            .set_max_results(2_u32)
            .set_or_clear_page_token(token)
            .set_body(
                InstanceGroupsListInstancesRequest::new()
                    .set_instance_state(model::instance_groups_list_instances_request::InstanceState::All),
            )
            .send()
    };
    let p1 = list(None).await.unwrap();
    assert_eq!(p1.items.len(), 2);
    assert!(p1.next_page_token.is_some());
    let p2 = list(p1.next_page_token.clone()).await.unwrap();
    assert_eq!(p2.items.len(), 1);
    assert!(p2.next_page_token.is_none());
    let mut all: Vec<String> = p1.items.iter().chain(&p2.items).filter_map(|i| i.instance.clone()).collect();
    all.sort();
    assert_eq!(all[0], fake.self_link(&format!("zones/{ZONE_A}/instances/node-1")));
    assert_eq!(p1.items[0].status, Some(model::instance_with_named_ports::Status::Running));

    // Removing a non-member is accepted; removing a member shrinks the group.
    done_ok(
        igs.remove_instances()
            .set_project(PROJECT)
            .set_zone(ZONE_A)
            .set_instance_group("ig")
            .set_body(InstanceGroupsRemoveInstancesRequest::new().set_instances([inst(ZONE_A, "node-3")]))
            .poller()
            .until_done()
            .await
            .unwrap(),
    );
    done_ok(
        igs.remove_instances()
            .set_project(PROJECT)
            .set_zone(ZONE_A)
            .set_instance_group("ig")
            .set_body(InstanceGroupsRemoveInstancesRequest::new().set_instances([inst(ZONE_A, "node-3")]))
            .poller()
            .until_done()
            .await
            .unwrap(),
    );
    assert_eq!(fake.members(ZONE_A, "ig").len(), 2);

    // setNamedPorts: optional fingerprint, stale one is 412.
    let before = g.fingerprint.clone();
    let set_ports = |fp: Option<bytes::Bytes>, port: i32| {
        igs.set_named_ports().set_project(PROJECT).set_zone(ZONE_A).set_instance_group("ig").set_body(
            InstanceGroupsSetNamedPortsRequest::new()
                .set_named_ports([NamedPort::new().set_name("port30080").set_port(port)])
                .set_or_clear_fingerprint(fp),
        )
    };
    done_ok(set_ports(before.clone(), 30080).poller().until_done().await.unwrap());
    let g2 = igs.get().set_project(PROJECT).set_zone(ZONE_A).set_instance_group("ig").send().await.unwrap();
    assert_eq!(g2.named_ports.len(), 1);
    assert_ne!(g2.fingerprint, before);
    let err = set_ports(before, 30081).send().await.unwrap_err();
    assert_eq!(http_code(&err), Some(412));
    done_ok(set_ports(None, 30081).poller().until_done().await.unwrap());

    // getHealth: HEALTHY unless marked.
    hc_and_bs(&fake, "hc", "bs").await;
    let bss = client!(RegionBackendServices, fake);
    let bs = bss.get().set_project(PROJECT).set_region(REGION).set_backend_service("bs").send().await.unwrap();
    let ig_link = fake.self_link(&format!("zones/{ZONE_A}/instanceGroups/ig"));
    done_ok(
        bss.update()
            .set_project(PROJECT)
            .set_region(REGION)
            .set_backend_service("bs")
            .set_body(bs.set_backends([Backend::new().set_group(&ig_link)]))
            .poller()
            .until_done()
            .await
            .unwrap(),
    );
    fake.set_healthy(ZONE_A, "node-2", false).unwrap();
    let health = bss
        .get_health()
        .set_project(PROJECT)
        .set_region(REGION)
        .set_backend_service("bs")
        .set_body(ResourceGroupReference::new().set_group(&ig_link))
        .send()
        .await
        .unwrap();
    let states: Vec<(String, model::health_status::HealthState)> = health
        .health_status
        .iter()
        .map(|h| (h.instance.clone().unwrap().rsplit('/').next().unwrap().to_string(), h.health_state.clone().unwrap()))
        .collect();
    assert_eq!(
        states,
        vec![
            ("node-1".to_string(), model::health_status::HealthState::Healthy),
            ("node-2".to_string(), model::health_status::HealthState::Unhealthy)
        ]
    );
    assert!(health.health_status.iter().all(|h| h.ip_address.as_deref().is_some_and(|ip| ip.starts_with("10.128."))));
    // Reads are not mutations.
    assert!(fake.calls().iter().any(|c| c.verb == "getHealth" && !c.mutating));
    assert!(fake.calls().iter().any(|c| c.verb == "listInstances" && !c.mutating));

    // Removing the VM removes it from the group.
    fake.remove_instance(ZONE_A, "node-1").unwrap();
    assert_eq!(fake.members(ZONE_A, "ig"), vec![fake.self_link(&format!("zones/{ZONE_A}/instances/node-2"))]);
}

#[tokio::test]
async fn lists_page_and_filter_like_gce() {
    let fake = start().await;
    fake.set_op_delay_polls(0);
    let fws = client!(Firewalls, fake);
    for n in ["k8s-fw-a", "k8s-fw-b", "k8s-fw-c", "other-1", "other-2"] {
        let fw = Firewall::new()
            .set_name(n)
            .set_source_ranges(["0.0.0.0/0"])
            .set_allowed([model::firewall::Allowed::new().set_ip_protocol("tcp").set_ports(["80", "30000-30100"])]);
        done_ok(fws.insert().set_project(PROJECT).set_body(fw).send().await.unwrap());
    }
    let mut names = Vec::new();
    let mut token: Option<String> = None;
    let mut pages = 0;
    loop {
        let page = fws
            .list()
            .set_project(PROJECT)
            .set_max_results(2_u32)
            .set_or_clear_page_token(token.clone())
            .send()
            .await
            .unwrap();
        pages += 1;
        names.extend(page.items.iter().filter_map(|f| f.name.clone()));
        token = page.next_page_token.filter(|t| !t.is_empty());
        if token.is_none() || pages > 10 {
            break;
        }
    }
    assert_eq!(pages, 3);
    assert_eq!(names, ["k8s-fw-a", "k8s-fw-b", "k8s-fw-c", "other-1", "other-2"]);

    let filtered = |f: &str| fws.list().set_project(PROJECT).set_filter(f).send();
    let names_of = |l: model::FirewallList| l.items.into_iter().filter_map(|f| f.name).collect::<Vec<_>>();
    assert_eq!(names_of(filtered("name eq k8s-fw-.*").await.unwrap()), ["k8s-fw-a", "k8s-fw-b", "k8s-fw-c"]);
    assert_eq!(names_of(filtered(r#"name = "other-2""#).await.unwrap()), ["other-2"]);
    assert_eq!(names_of(filtered("(name eq k8s-.*) (name ne .*-b)").await.unwrap()), ["k8s-fw-a", "k8s-fw-c"]);
    let err = filtered("name ~~ nope").await.unwrap_err();
    assert_eq!((http_code(&err), reason(&err).as_str()), (Some(400), "invalid"));

    // Defaults the provider will read back.
    let fw = fws.get().set_project(PROJECT).set_firewall("k8s-fw-a").send().await.unwrap();
    assert_eq!(fw.priority, Some(1000));
    assert_eq!(fw.direction, Some(model::firewall::Direction::Ingress));
    assert_eq!(fw.network.as_deref(), Some(fake.self_link("global/networks/default").as_str()));
    // Firewalls have no fingerprint: PATCH and PUT are last-writer-wins.
    done_ok(
        fws.patch()
            .set_project(PROJECT)
            .set_firewall("k8s-fw-a")
            .set_body(Firewall::new().set_source_ranges(["10.0.0.0/8"]))
            .send()
            .await
            .unwrap(),
    );
    let fw = fws.get().set_project(PROJECT).set_firewall("k8s-fw-a").send().await.unwrap();
    assert_eq!(fw.source_ranges, vec!["10.0.0.0/8"]);
    assert_eq!(fw.allowed.len(), 1, "merge patch keeps what it does not name");
    let err = fws
        .insert()
        .set_project(PROJECT)
        .set_body(
            Firewall::new()
                .set_name("bad")
                .set_allowed([model::firewall::Allowed::new().set_ip_protocol("tcp").set_ports(["0-x"])]),
        )
        .send()
        .await
        .unwrap_err();
    assert_eq!(http_code(&err), Some(400));

    // Addresses by IP, as CPG and ingress-gce look up a user's IP.
    let addrs = client!(Addresses, fake);
    for n in ["ip-a", "ip-b", "ip-c"] {
        done_ok(
            addrs
                .insert()
                .set_project(PROJECT)
                .set_region(REGION)
                .set_body(Address::new().set_name(n))
                .send()
                .await
                .unwrap(),
        );
    }
    for f in [r"address eq 203\.0\.113\.2", r#"address = "203.0.113.2""#, "(address eq 203.0.113.2)"] {
        let l = addrs.list().set_project(PROJECT).set_region(REGION).set_filter(f).send().await.unwrap();
        assert_eq!(l.items.iter().filter_map(|a| a.name.clone()).collect::<Vec<_>>(), ["ip-b"], "{f}");
    }

    // Instances list with CPG's node filter; zones list with CPG's region filter.
    fake.add_instance(InstanceSpec::new(ZONE_A, "gke-node-1")).unwrap();
    fake.add_instance(InstanceSpec::new(ZONE_A, "other-vm")).unwrap();
    let insts = client!(Instances, fake);
    let l = insts.list().set_project(PROJECT).set_zone(ZONE_A).set_filter("name eq gke-node-.*").send().await.unwrap();
    assert_eq!(l.items.iter().filter_map(|i| i.name.clone()).collect::<Vec<_>>(), ["gke-node-1"]);
    let (code, zones) =
        raw(&fake, "GET", &api(&format!("zones?filter=region%20eq%20.*%2Fregions%2F{REGION}")), None).await;
    assert_eq!(code, 200);
    assert_eq!(zones["items"].as_array().unwrap().len(), 3);
}

#[tokio::test]
async fn target_pools_and_legacy_http_health_checks() {
    let fake = start().await;
    fake.set_op_delay_polls(0);
    for n in ["node-1", "node-2"] {
        fake.add_instance(InstanceSpec::new(ZONE_A, n)).unwrap();
    }
    let (code, _) = raw(
        &fake,
        "POST",
        &api("global/httpHealthChecks"),
        Some(&serde_json::json!({"name": "k8s-node", "port": 10256, "requestPath": "/healthz"})),
    )
    .await;
    assert_eq!(code, 200);
    let (_, hc) = raw(&fake, "GET", &api("global/httpHealthChecks/k8s-node"), None).await;
    assert_eq!((hc["checkIntervalSec"].as_i64(), hc["kind"].as_str()), (Some(5), Some("compute#httpHealthCheck")));
    let inst = |n: &str| format!("zones/{ZONE_A}/instances/{n}");
    let tp = serde_json::json!({"name": "tp", "instances": [inst("node-1")], "healthChecks": ["global/httpHealthChecks/k8s-node"], "sessionAffinity": "CLIENT_IP"});
    let (code, op) = raw(&fake, "POST", &api(&format!("regions/{REGION}/targetPools")), Some(&tp)).await;
    assert_eq!((code, op["status"].as_str()), (200, Some("DONE")), "{op}");
    let fr = serde_json::json!({"name": "fr", "target": format!("regions/{REGION}/targetPools/tp"), "portRange": "80-8080", "IPProtocol": "TCP"});
    let (code, op) = raw(&fake, "POST", &api(&format!("regions/{REGION}/forwardingRules")), Some(&fr)).await;
    assert!(code == 200 && op.get("error").is_none(), "{op}");

    // In use: the HC by the pool, the pool by the rule.
    let (code, body) = raw(&fake, "DELETE", &api("global/httpHealthChecks/k8s-node"), None).await;
    assert_eq!(code, 400);
    assert!(body["error"]["message"].as_str().unwrap().starts_with("The http_health_check resource"), "{body}");
    assert_eq!(raw(&fake, "DELETE", &api(&format!("regions/{REGION}/targetPools/tp")), None).await.0, 400);

    let add = serde_json::json!({"instances": [{"instance": inst("node-2")}]});
    let (code, _) = raw(&fake, "POST", &api(&format!("regions/{REGION}/targetPools/tp/addInstance")), Some(&add)).await;
    assert_eq!(code, 200);
    let (_, got) = raw(&fake, "GET", &api(&format!("regions/{REGION}/targetPools/tp")), None).await;
    assert_eq!(got["instances"].as_array().unwrap().len(), 2);
    assert_eq!(got["instances"][1], fake.self_link(&inst("node-2")));
    fake.set_healthy(ZONE_A, "node-2", false).unwrap();
    let (code, h) = raw(
        &fake,
        "POST",
        &api(&format!("regions/{REGION}/targetPools/tp/getHealth")),
        Some(&serde_json::json!({"instance": fake.self_link(&inst("node-2"))})),
    )
    .await;
    assert_eq!((code, h["healthStatus"][0]["healthState"].as_str()), (200, Some("UNHEALTHY")));
    let (code, _) =
        raw(&fake, "POST", &api(&format!("regions/{REGION}/targetPools/tp/removeInstance")), Some(&add)).await;
    assert_eq!(code, 200);
    let (_, got) = raw(&fake, "GET", &api(&format!("regions/{REGION}/targetPools/tp")), None).await;
    assert_eq!(got["instances"].as_array().unwrap().len(), 1);
    // A pool naming a missing instance: 404.
    let bad = serde_json::json!({"name": "tp2", "instances": [inst("ghost")]});
    assert_eq!(raw(&fake, "POST", &api(&format!("regions/{REGION}/targetPools")), Some(&bad)).await.0, 404);
}
