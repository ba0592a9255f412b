//! Fault injection as the real client sees it: rate limits and server errors, synchronous or
//! inside the operation; random faults that a retrying caller converges through; `requestId`
//! idempotency.

mod common;

use cloudlb_gce_fake::{Fault, FaultKind};
use common::*;
use google_cloud_compute_v1::model::{Address, BackendService};
use google_cloud_lro::Poller;

#[tokio::test]
async fn synchronous_faults_carry_status_reason_and_domain() {
    let fake = start().await;
    let addrs = client!(Addresses, fake);
    let insert = |n: &str| addrs.insert().set_project(PROJECT).set_region(REGION).set_body(Address::new().set_name(n));

    fake.inject(Fault::once("POST", "regions/*/addresses", FaultKind::RateLimited));
    let err = insert("a").send().await.unwrap_err();
    assert_eq!((http_code(&err), reason(&err).as_str()), (Some(403), "rateLimitExceeded"));
    let domain = err.status().and_then(|s| {
        s.details.iter().find_map(|d| match d {
            google_cloud_gax::error::rpc::StatusDetails::ErrorInfo(i) => Some(i.domain.clone()),
            _ => None,
        })
    });
    assert_eq!(domain.as_deref(), Some("usageLimits"));
    // Fired once: the next call goes through.
    insert("a").send().await.unwrap();

    for (kind, code) in [(FaultKind::TooManyRequests, 429), (FaultKind::Internal, 500), (FaultKind::Unavailable, 503)] {
        fake.inject(Fault::once("GET", "regions/*/addresses/a", kind).times(2));
        for _ in 0..2 {
            let err = addrs.get().set_project(PROJECT).set_region(REGION).set_address("a").send().await.unwrap_err();
            assert_eq!(http_code(&err), Some(code));
        }
    }
    fake.inject(
        Fault::once(
            "POST",
            "global/firewalls",
            FaultKind::Custom {
                code: 403,
                reason: "forbidden".into(),
                message: "Required 'compute.firewalls.create' permission".into(),
            },
        )
        .forever(),
    );
    for _ in 0..2 {
        let (code, body) = raw(&fake, "POST", &api("global/firewalls"), Some(&serde_json::json!({"name": "fw"}))).await;
        assert_eq!((code, body["error"]["errors"][0]["reason"].as_str()), (403, Some("forbidden")));
    }
    fake.clear_faults();
    let (code, _) = raw(
        &fake,
        "POST",
        &api("global/firewalls"),
        Some(&serde_json::json!({"name": "fw", "allowed": [{"IPProtocol": "tcp"}]})),
    )
    .await;
    assert_eq!(code, 200);
    // Faulted calls are in the log with their status.
    assert!(fake.calls().iter().any(|c| c.status == 503 && c.verb == "get"));
}

#[tokio::test]
async fn faults_inside_the_operation_change_nothing() {
    let fake = start().await;
    let bss = client!(RegionBackendServices, fake);
    fake.inject(Fault::once("POST", "regions/*/backendServices", FaultKind::RateLimited).in_operation());
    let op = bss
        .insert()
        .set_project(PROJECT)
        .set_region(REGION)
        .set_body(BackendService::new().set_name("bs"))
        .poller()
        .until_done()
        .await
        .expect("until_done is Ok even when the operation failed");
    let (code, err_code, _) = op_failure(op);
    assert_eq!((code, err_code.as_str()), (403, "RATE_LIMIT_EXCEEDED"));
    assert!(fake.resource(&format!("regions/{REGION}/backendServices/bs")).is_none());
    // The name is free again.
    done_ok(
        bss.insert()
            .set_project(PROJECT)
            .set_region(REGION)
            .set_body(BackendService::new().set_name("bs"))
            .poller()
            .until_done()
            .await
            .unwrap(),
    );

    // In-operation delivery on a read is synchronous.
    fake.inject(Fault::once("GET", "regions/*/backendServices/bs", FaultKind::Internal).in_operation());
    let err = bss.get().set_project(PROJECT).set_region(REGION).set_backend_service("bs").send().await.unwrap_err();
    assert_eq!(http_code(&err), Some(500));
}

#[tokio::test]
async fn request_id_returns_the_first_operation() {
    let fake = start().await;
    let addrs = client!(Addresses, fake);
    let insert = || {
        addrs
            .insert()
            .set_project(PROJECT)
            .set_region(REGION)
            .set_request_id("6f1b0c1e-0000-4000-8000-000000000001")
            .set_body(Address::new().set_name("once"))
    };
    let first = insert().send().await.unwrap();
    let again = insert().send().await.unwrap();
    assert_eq!(first.name, again.name, "a retried insert with the same requestId is the same operation");
    fake.settle();
    assert_eq!(fake.names(&format!("regions/{REGION}/addresses")), vec!["once"]);
    assert_eq!(fake.mutations().len(), 2);
    assert!(fake.mutations().iter().all(|c| c.query.contains("requestId=6f1b0c1e")));
}

#[tokio::test]
async fn random_faults_a_retrying_caller_converges_without_duplicates() {
    let fake =
        start_with(cloudlb_gce_fake::FakeConfig::new(PROJECT).with_settle_after(None).with_random_faults(0.3, 0.5))
            .await;
    let addrs = client!(Addresses, fake);
    let mut failures = 0;
    for i in 0..15 {
        let name = format!("addr-{i}");
        let mut attempt = 0;
        loop {
            attempt += 1;
            assert!(attempt < 60, "{name} did not converge");
            // A fresh requestId per attempt: a failed operation stays failed under its id.
            let rid = format!("00000000-0000-4000-8000-{i:06}{attempt:06}");
            let res = addrs
                .insert()
                .set_project(PROJECT)
                .set_region(REGION)
                .set_request_id(rid)
                .set_body(Address::new().set_name(&name))
                .poller()
                .until_done()
                .await;
            match res {
                Ok(op) if op.clone().to_result().is_ok() => break,
                Ok(_) => failures += 1,
                Err(e) if http_code(&e) == Some(409) => break, // an earlier attempt did create it
                Err(_) => failures += 1,
            }
        }
    }
    fake.clear_faults();
    let names = fake.names(&format!("regions/{REGION}/addresses"));
    assert_eq!(names.len(), 15, "{names:?}");
    assert!(failures > 0, "30% faults produced at least one failure");
    let statuses: std::collections::BTreeSet<u16> =
        fake.calls().iter().map(|c| c.status).filter(|s| *s >= 400 && *s != 409).collect();
    assert!(!statuses.is_empty() && statuses.iter().all(|s| [403, 429, 500, 503].contains(s)), "{statuses:?}");
    // Operation polls are never faulted by the random rate.
    assert!(fake.calls().iter().filter(|c| c.collection == "operations").all(|c| c.status == 200));
}
