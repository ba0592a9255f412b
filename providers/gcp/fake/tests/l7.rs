//! The global (L7) collections through the real client: a whole external Application Load
//! Balancer (health check, backend services, URL map, HTTP and HTTPS proxies, certificates, global
//! address and forwarding rules), the `setUrlMap`/`setSslCertificates` paths without `/global/`,
//! the in-use chain, certificate rotation and make-before-break seen in the call log.

mod common;

use cloudlb_gce_fake::InstanceSpec;
use common::*;
use google_cloud_compute_v1::model::{
    self, Address, Backend, BackendService, ForwardingRule, GlobalSetLabelsRequest, HealthCheck, HostRule,
    InstanceGroup, PathMatcher, PathRule, SslCertificate, TargetHttpProxy, TargetHttpsProxiesSetSslCertificatesRequest,
    TargetHttpsProxy, TargetReference, UrlMap, UrlMapReference,
};
use google_cloud_lro::Poller;

const CERT: &str = "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n";
const KEY: &str = "-----BEGIN PRIVATE KEY-----\nMIIE\n-----END PRIVATE KEY-----\n";

fn g(rel: &str) -> String {
    format!("global/{rel}")
}

struct Lb {
    fake: cloudlb_gce_fake::GceFake,
}

/// hc, ig (zone a, one node), bs-a and bs-b, url map `um` (default bs-a, host foo.example.com /api/* → bs-b),
/// cert `c1`, http proxy `hp`, https proxy `sp`, global address `ip`, forwarding rules `fr-http` and `fr-https`.
async fn build() -> Lb {
    let fake = start().await;
    fake.add_instance(InstanceSpec::new(ZONE_A, "node-1")).unwrap();
    let hcs = client!(HealthChecks, fake);
    let hc = HealthCheck::new()
        .set_name("hc")
        .set_type(model::health_check::Type::Http)
        .set_http_health_check(model::HTTPHealthCheck::new().set_port(30080).set_request_path("/"));
    done_ok(hcs.insert().set_project(PROJECT).set_body(hc).poller().until_done().await.unwrap());
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
    let bss = client!(BackendServices, fake);
    for name in ["bs-a", "bs-b"] {
        let bs = BackendService::new()
            .set_name(name)
            .set_load_balancing_scheme(model::backend_service::LoadBalancingScheme::ExternalManaged)
            .set_port_name("port30080")
            .set_health_checks([g("healthChecks/hc")])
            .set_backends([Backend::new().set_group(format!("zones/{ZONE_A}/instanceGroups/ig"))]);
        done_ok(bss.insert().set_project(PROJECT).set_body(bs).poller().until_done().await.unwrap());
    }
    let ums = client!(UrlMaps, fake);
    done_ok(ums.insert().set_project(PROJECT).set_body(url_map("bs-b")).poller().until_done().await.unwrap());
    let certs = client!(SslCertificates, fake);
    done_ok(
        certs
            .insert()
            .set_project(PROJECT)
            .set_body(SslCertificate::new().set_name("c1").set_certificate(CERT).set_private_key(KEY))
            .poller()
            .until_done()
            .await
            .unwrap(),
    );
    let hps = client!(TargetHttpProxies, fake);
    done_ok(
        hps.insert()
            .set_project(PROJECT)
            .set_body(TargetHttpProxy::new().set_name("hp").set_url_map(g("urlMaps/um")))
            .poller()
            .until_done()
            .await
            .unwrap(),
    );
    let sps = client!(TargetHttpsProxies, fake);
    done_ok(
        sps.insert()
            .set_project(PROJECT)
            .set_body(
                TargetHttpsProxy::new()
                    .set_name("sp")
                    .set_url_map(g("urlMaps/um"))
                    .set_ssl_certificates([g("sslCertificates/c1")]),
            )
            .poller()
            .until_done()
            .await
            .unwrap(),
    );
    let addrs = client!(GlobalAddresses, fake);
    done_ok(
        addrs
            .insert()
            .set_project(PROJECT)
            .set_body(Address::new().set_name("ip"))
            .poller()
            .until_done()
            .await
            .unwrap(),
    );
    let frs = client!(GlobalForwardingRules, fake);
    for (name, target, port) in
        [("fr-http", "targetHttpProxies/hp", "80"), ("fr-https", "targetHttpsProxies/sp", "443")]
    {
        let fr = ForwardingRule::new()
            .set_name(name)
            .set_load_balancing_scheme(model::forwarding_rule::LoadBalancingScheme::ExternalManaged)
            .set_ip_address(fake.self_link(&g("addresses/ip")))
            .set_target(g(target))
            .set_port_range(port);
        done_ok(frs.insert().set_project(PROJECT).set_body(fr).poller().until_done().await.unwrap());
    }
    Lb { fake }
}

fn url_map(api_backend: &str) -> UrlMap {
    UrlMap::new()
        .set_name("um")
        .set_default_service(g("backendServices/bs-a"))
        .set_host_rules([HostRule::new().set_hosts(["foo.example.com"]).set_path_matcher("foo")])
        .set_path_matchers([PathMatcher::new()
            .set_name("foo")
            .set_default_service(g("backendServices/bs-a"))
            .set_path_rules([PathRule::new()
                .set_paths(["/api", "/api/*"])
                .set_service(g(&format!("backendServices/{api_backend}")))])])
}

#[tokio::test]
async fn a_whole_application_load_balancer_has_the_shape_gce_gives_it() {
    let Lb { fake } = build().await;
    let addrs = client!(GlobalAddresses, fake);
    let ip = addrs.get().set_project(PROJECT).set_address("ip").send().await.unwrap();
    assert_eq!(ip.address.as_deref(), Some("198.51.100.1"), "global pool");
    assert_eq!(ip.status, Some(model::address::Status::InUse));
    assert_eq!(ip.users.len(), 2);
    assert!(ip.region.is_none());

    let frs = client!(GlobalForwardingRules, fake);
    let fr = frs.get().set_project(PROJECT).set_forwarding_rule("fr-https").send().await.unwrap();
    assert_eq!(fr.ip_address.as_deref(), Some("198.51.100.1"), "address URL resolved to its IP");
    assert_eq!(fr.port_range.as_deref(), Some("443-443"));
    assert_eq!(fr.target.as_deref(), Some(fake.self_link(&g("targetHttpsProxies/sp")).as_str()));

    let ums = client!(UrlMaps, fake);
    let um = ums.get().set_project(PROJECT).set_url_map("um").send().await.unwrap();
    assert_eq!(um.default_service.as_deref(), Some(fake.self_link(&g("backendServices/bs-a")).as_str()));
    assert_eq!(
        um.path_matchers[0].path_rules[0].service.as_deref(),
        Some(fake.self_link(&g("backendServices/bs-b")).as_str())
    );
    assert!(um.fingerprint.is_some());

    let sps = client!(TargetHttpsProxies, fake);
    let sp = sps.get().set_project(PROJECT).set_target_https_proxy("sp").send().await.unwrap();
    assert_eq!(sp.ssl_certificates, vec![fake.self_link(&g("sslCertificates/c1"))]);
    assert_eq!(sp.quic_override, Some(model::target_https_proxy::QuicOverride::None));

    let bss = client!(BackendServices, fake);
    let bs = bss.get().set_project(PROJECT).set_backend_service("bs-a").send().await.unwrap();
    assert_eq!(bs.protocol, Some(model::backend_service::Protocol::Http));
    assert_eq!(bs.backends[0].balancing_mode, Some(model::backend::BalancingMode::Utilization));

    let certs = client!(SslCertificates, fake);
    let c = certs.get().set_project(PROJECT).set_ssl_certificate("c1").send().await.unwrap();
    assert_eq!(c.certificate.as_deref(), Some(CERT));
    assert!(c.private_key.is_none(), "the private key is never returned");
    assert_eq!(c.r#type, Some(model::ssl_certificate::Type::SelfManaged));

    // A second rule on the same address and port: conflict.
    let err = frs
        .insert()
        .set_project(PROJECT)
        .set_body(
            ForwardingRule::new()
                .set_name("fr-dup")
                .set_ip_address("198.51.100.1")
                .set_target(g("targetHttpProxies/hp"))
                .set_port_range("80"),
        )
        .send()
        .await
        .unwrap_err();
    assert_eq!(http_code(&err), Some(400));
}

#[tokio::test]
async fn set_url_map_and_set_ssl_certificates_live_without_global() {
    let Lb { fake } = build().await;
    fake.clear_calls();
    let hps = client!(TargetHttpProxies, fake);
    done_ok(
        hps.set_url_map()
            .set_project(PROJECT)
            .set_target_http_proxy("hp")
            .set_body(UrlMapReference::new().set_url_map(fake.self_link(&g("urlMaps/um"))))
            .poller()
            .until_done()
            .await
            .unwrap(),
    );
    let calls = fake.mutations();
    assert_eq!(calls[0].path, format!("/compute/v1/projects/{PROJECT}/targetHttpProxies/hp/setUrlMap"));
    assert_eq!((calls[0].verb.as_str(), calls[0].scope.as_str()), ("setUrlMap", ""));
    assert!(calls[0].query.contains("%24alt=json") || calls[0].query.contains("$alt=json"), "{}", calls[0].query);
    // The operation of a global resource is a global operation.
    assert!(fake.calls().iter().any(|c| c.path.contains("/global/operations/")));

    // The same method with /global/ does not exist on the real API, nor here.
    let (code, _) = raw(
        &fake,
        "POST",
        &api("global/targetHttpProxies/hp/setUrlMap"),
        Some(&serde_json::json!({"urlMap": "global/urlMaps/um"})),
    )
    .await;
    assert_eq!(code, 404);

    // Certificate rotation: new cert, swap it in, delete the old one (no moment without one).
    let certs = client!(SslCertificates, fake);
    done_ok(
        certs
            .insert()
            .set_project(PROJECT)
            .set_body(SslCertificate::new().set_name("c2").set_certificate(CERT).set_private_key(KEY))
            .poller()
            .until_done()
            .await
            .unwrap(),
    );
    let err = certs.delete().set_project(PROJECT).set_ssl_certificate("c1").send().await.unwrap_err();
    assert_eq!(reason(&err), "resourceInUseByAnotherResource");
    assert!(
        message(&err)
            .starts_with(&format!("The ssl_certificate resource 'projects/{PROJECT}/global/sslCertificates/c1'"))
    );
    let sps = client!(TargetHttpsProxies, fake);
    let before = sps.get().set_project(PROJECT).set_target_https_proxy("sp").send().await.unwrap().fingerprint;
    done_ok(
        sps.set_ssl_certificates()
            .set_project(PROJECT)
            .set_target_https_proxy("sp")
            .set_body(
                TargetHttpsProxiesSetSslCertificatesRequest::new().set_ssl_certificates([g("sslCertificates/c2")]),
            )
            .poller()
            .until_done()
            .await
            .unwrap(),
    );
    let sp = sps.get().set_project(PROJECT).set_target_https_proxy("sp").send().await.unwrap();
    assert_eq!(sp.ssl_certificates, vec![fake.self_link(&g("sslCertificates/c2"))]);
    assert_ne!(sp.fingerprint, before);
    assert!(
        fake.calls()
            .iter()
            .any(|c| c.path == format!("/compute/v1/projects/{PROJECT}/targetHttpsProxies/sp/setSslCertificates"))
    );
    done_ok(certs.delete().set_project(PROJECT).set_ssl_certificate("c1").poller().until_done().await.unwrap());
    // An empty certificate list is refused.
    let err = sps
        .set_ssl_certificates()
        .set_project(PROJECT)
        .set_target_https_proxy("sp")
        .set_body(TargetHttpsProxiesSetSslCertificatesRequest::new())
        .send()
        .await
        .unwrap_err();
    assert_eq!(http_code(&err), Some(400));
}

#[tokio::test]
async fn the_in_use_chain_forces_dependency_order() {
    let Lb { fake } = build().await;
    let del = |c: &str, n: &str| format!("{c}/{n}");
    let checks = [
        ("healthChecks", "hc", "health_check", "backendServices/bs-a"),
        ("backendServices", "bs-a", "backend_service", "urlMaps/um"),
        ("urlMaps", "um", "url_map", "targetHttpProxies/hp"),
        ("targetHttpProxies", "hp", "target_http_proxy", "forwardingRules/fr-http"),
        ("sslCertificates", "c1", "ssl_certificate", "targetHttpsProxies/sp"),
    ];
    for (coll, name, noun, user) in checks {
        let (code, body) = raw(&fake, "DELETE", &api(&g(&del(coll, name))), None).await;
        assert_eq!(code, 400, "{coll}/{name}: {body}");
        assert_eq!(body["error"]["errors"][0]["reason"], "resourceInUseByAnotherResource");
        assert_eq!(
            body["error"]["message"],
            format!(
                "The {noun} resource 'projects/{PROJECT}/global/{coll}/{name}' is already being used by 'projects/{PROJECT}/global/{user}'"
            )
        );
    }
    let (code, body) = raw(&fake, "DELETE", &api(&format!("zones/{ZONE_A}/instanceGroups/ig")), None).await;
    assert_eq!((code, body["error"]["errors"][0]["reason"].as_str()), (400, Some("resourceInUseByAnotherResource")));

    // Teardown in dependency order leaves nothing but the instance.
    fake.set_op_delay_polls(0);
    for path in [
        "global/forwardingRules/fr-http",
        "global/forwardingRules/fr-https",
        "global/addresses/ip",
        "global/targetHttpProxies/hp",
        "global/targetHttpsProxies/sp",
        "global/sslCertificates/c1",
        "global/urlMaps/um",
        "global/backendServices/bs-a",
        "global/backendServices/bs-b",
        "global/healthChecks/hc",
        "zones/us-central1-a/instanceGroups/ig",
    ] {
        let (code, op) = raw(&fake, "DELETE", &api(path), None).await;
        assert_eq!((code, op["status"].as_str()), (200, Some("DONE")), "{path}: {op}");
        assert!(op.get("error").is_none(), "{path}: {op}");
    }
    let left: Vec<String> = fake.dump()["resources"].as_object().unwrap().keys().cloned().collect();
    assert_eq!(left, vec![format!("zones/{ZONE_A}/instances/node-1")]);
}

#[tokio::test]
async fn url_map_update_validation_and_make_before_break_in_the_call_log() {
    let Lb { fake } = build().await;
    let bss = client!(BackendServices, fake);
    let ums = client!(UrlMaps, fake);
    let bs_c = BackendService::new()
        .set_name("bs-c")
        .set_health_checks([g("healthChecks/hc")])
        .set_backends([Backend::new().set_group(format!("zones/{ZONE_A}/instanceGroups/ig"))]);
    fake.clear_calls();
    // Repoint /api from bs-b to bs-c: create bs-c, update the map, then delete bs-b.
    done_ok(bss.insert().set_project(PROJECT).set_body(bs_c).poller().until_done().await.unwrap());
    let cur = ums.get().set_project(PROJECT).set_url_map("um").send().await.unwrap();
    let err = ums.update().set_project(PROJECT).set_url_map("um").set_body(url_map("bs-c")).send().await.unwrap_err();
    assert_eq!(http_code(&err), Some(412), "PUT without fingerprint");
    done_ok(
        ums.update()
            .set_project(PROJECT)
            .set_url_map("um")
            .set_body(url_map("bs-c").set_or_clear_fingerprint(cur.fingerprint.clone()))
            .poller()
            .until_done()
            .await
            .unwrap(),
    );
    done_ok(bss.delete().set_project(PROJECT).set_backend_service("bs-b").poller().until_done().await.unwrap());
    let seq: Vec<String> = fake.mutations().iter().filter(|c| c.ok()).map(|c| c.summary()).collect();
    assert_eq!(
        seq,
        vec![
            "insert global/backendServices".to_string(),
            "update global/urlMaps/um".to_string(),
            "delete global/backendServices/bs-b".to_string()
        ]
    );
    let attach = fake.mutations().iter().position(|c| c.verb == "update" && c.ok()).unwrap();
    let detach = fake.mutations().iter().position(|c| c.verb == "delete").unwrap();
    assert!(attach < detach);
    // An unchanged read makes no mutating call.
    fake.clear_calls();
    ums.get().set_project(PROJECT).set_url_map("um").send().await.unwrap();
    assert!(fake.mutations().is_empty());

    // Stale fingerprint, bad paths, undefined matcher, missing backend.
    let err = ums
        .update()
        .set_project(PROJECT)
        .set_url_map("um")
        .set_body(url_map("bs-c").set_or_clear_fingerprint(cur.fingerprint))
        .send()
        .await
        .unwrap_err();
    assert_eq!(http_code(&err), Some(412));
    let fp = ums.get().set_project(PROJECT).set_url_map("um").send().await.unwrap().fingerprint;
    let mut bad = url_map("bs-c").set_or_clear_fingerprint(fp.clone());
    bad.path_matchers[0].path_rules[0].paths = vec!["api/*".into()];
    let err = ums.update().set_project(PROJECT).set_url_map("um").set_body(bad).send().await.unwrap_err();
    assert_eq!((http_code(&err), reason(&err).as_str()), (Some(400), "invalid"));
    let mut bad = url_map("bs-c").set_or_clear_fingerprint(fp.clone());
    bad.host_rules[0].path_matcher = Some("nope".into());
    let err = ums.update().set_project(PROJECT).set_url_map("um").set_body(bad).send().await.unwrap_err();
    assert_eq!(http_code(&err), Some(400));
    let err = ums
        .update()
        .set_project(PROJECT)
        .set_url_map("um")
        .set_body(url_map("bs-gone").set_or_clear_fingerprint(fp))
        .send()
        .await
        .unwrap_err();
    assert_eq!((http_code(&err), reason(&err).as_str()), (Some(404), "notFound"));
    assert_eq!(
        message(&err),
        format!("The resource 'projects/{PROJECT}/global/backendServices/bs-gone' was not found")
    );

    // A proxy naming a missing URL map: 404.
    let hps = client!(TargetHttpProxies, fake);
    let err = hps
        .insert()
        .set_project(PROJECT)
        .set_body(TargetHttpProxy::new().set_name("hp2").set_url_map(g("urlMaps/none")))
        .send()
        .await
        .unwrap_err();
    assert_eq!(http_code(&err), Some(404));
}

#[tokio::test]
async fn global_forwarding_rules_set_target_and_labels() {
    let Lb { fake } = build().await;
    let frs = client!(GlobalForwardingRules, fake);
    let before = frs.get().set_project(PROJECT).set_forwarding_rule("fr-http").send().await.unwrap();
    // HTTP → HTTPS redirect setups repoint the port-80 rule at another proxy.
    let hps = client!(TargetHttpProxies, fake);
    done_ok(
        hps.insert()
            .set_project(PROJECT)
            .set_body(TargetHttpProxy::new().set_name("redirect").set_url_map(g("urlMaps/um")))
            .poller()
            .until_done()
            .await
            .unwrap(),
    );
    done_ok(
        frs.set_target()
            .set_project(PROJECT)
            .set_forwarding_rule("fr-http")
            .set_body(TargetReference::new().set_target(g("targetHttpProxies/redirect")))
            .poller()
            .until_done()
            .await
            .unwrap(),
    );
    let after = frs.get().set_project(PROJECT).set_forwarding_rule("fr-http").send().await.unwrap();
    assert_eq!(after.target.as_deref(), Some(fake.self_link(&g("targetHttpProxies/redirect")).as_str()));
    assert_ne!(after.fingerprint, before.fingerprint);
    // The old proxy is free now; the new one is in use.
    assert_eq!(raw(&fake, "DELETE", &api(&g("targetHttpProxies/hp")), None).await.0, 200);
    assert_eq!(raw(&fake, "DELETE", &api(&g("targetHttpProxies/redirect")), None).await.0, 400);

    let op = frs
        .set_labels()
        .set_project(PROJECT)
        .set_resource("fr-http")
        .set_body(
            GlobalSetLabelsRequest::new()
                .set_labels([("owner", "cloudlb")])
                .set_or_clear_label_fingerprint(after.label_fingerprint.clone()),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(op.status, Some(model::operation::Status::Done));
    let labelled = frs.get().set_project(PROJECT).set_forwarding_rule("fr-http").send().await.unwrap();
    assert_eq!(labelled.labels.get("owner").map(String::as_str), Some("cloudlb"));
    assert_eq!(labelled.fingerprint, after.fingerprint, "labels have their own fingerprint");
    let err = frs
        .set_labels()
        .set_project(PROJECT)
        .set_resource("fr-http")
        .set_body(
            GlobalSetLabelsRequest::new()
                .set_labels([("owner", "x")])
                .set_or_clear_label_fingerprint(after.label_fingerprint),
        )
        .send()
        .await
        .unwrap_err();
    assert_eq!(http_code(&err), Some(412));

    // A global rule may not point at a regional resource.
    let err = frs
        .set_target()
        .set_project(PROJECT)
        .set_forwarding_rule("fr-http")
        .set_body(TargetReference::new().set_target(format!("regions/{REGION}/targetPools/tp")))
        .send()
        .await
        .unwrap_err();
    assert_eq!(http_code(&err), Some(400));
}
