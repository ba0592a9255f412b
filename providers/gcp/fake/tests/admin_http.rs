//! The admin API over HTTP (what a script or a person uses) and the `gce-fake` binary.

mod common;

use common::*;
use serde_json::json;
use std::time::Duration;

#[tokio::test]
async fn admin_endpoints_seed_inspect_and_control_the_fake() {
    let fake = start().await;
    assert_eq!(raw(&fake, "GET", "/_fake/healthz", None).await, (200, json!({"ok": true})));

    let (code, inst) = raw(
        &fake,
        "POST",
        "/_fake/instances",
        Some(&json!({"zone": ZONE_A, "name": "node-1", "networkIp": "10.0.0.5", "tags": ["gke-node"]})),
    )
    .await;
    assert_eq!(code, 200, "{inst}");
    assert_eq!(inst["networkInterfaces"][0]["networkIP"], "10.0.0.5");
    assert_eq!(inst["selfLink"], fake.self_link(&format!("zones/{ZONE_A}/instances/node-1")));
    let (code, _) = raw(&fake, "POST", "/_fake/instances", Some(&json!({"zone": ZONE_A, "name": "node-1"}))).await;
    assert_eq!(code, 409);
    let (code, _) = raw(&fake, "POST", "/_fake/instances", Some(&json!({"zone": "nowhere-1a", "name": "x"}))).await;
    assert_eq!(code, 400);
    let (code, list) = raw(&fake, "GET", "/_fake/instances", None).await;
    assert_eq!((code, list.as_array().map(Vec::len)), (200, Some(1)));
    // The API sees it.
    let (code, got) = raw(&fake, "GET", &api(&format!("zones/{ZONE_A}/instances/node-1")), None).await;
    assert_eq!((code, got["status"].as_str()), (200, Some("RUNNING")));
    assert_eq!(
        raw(&fake, "PUT", &format!("/_fake/health/{ZONE_A}/node-1"), Some(&json!({"healthy": false}))).await.0,
        200
    );
    assert_eq!(
        raw(&fake, "PUT", &format!("/_fake/health/{ZONE_A}/ghost"), Some(&json!({"healthy": false}))).await.0,
        404
    );

    // Settings: DONE at once.
    let (code, s) =
        raw(&fake, "PATCH", "/_fake/settings", Some(&json!({"opDelayPolls": 0, "inUse": "inOperation"}))).await;
    assert_eq!((code, s["opDelayPolls"].as_u64(), s["inUse"].as_str()), (200, Some(0), Some("inOperation")));
    let (code, op) = raw(
        &fake,
        "POST",
        &api("global/healthChecks"),
        Some(&json!({"name": "hc", "type": "TCP", "tcpHealthCheck": {"port": 80}})),
    )
    .await;
    assert_eq!((code, op["status"].as_str()), (200, Some("DONE")), "{op}");
    assert_eq!(op["kind"], "compute#operation");
    assert!(op["id"].as_str().is_some() && op["targetId"].as_str().is_some());
    assert!(op.get("region").is_none() && op.get("zone").is_none(), "a global operation");

    // Calls: all, mutating only, clear.
    let (_, calls) = raw(&fake, "GET", "/_fake/calls", None).await;
    assert_eq!(calls.as_array().unwrap().len(), 2, "admin calls are not logged: {calls}");
    let (_, muts) = raw(&fake, "GET", "/_fake/calls?mutating=true", None).await;
    assert_eq!(muts.as_array().unwrap().len(), 1);
    assert_eq!(muts[0]["verb"], "insert");
    assert_eq!(muts[0]["collection"], "healthChecks");
    assert_eq!(muts[0]["body"]["name"], "hc");
    assert_eq!(raw(&fake, "DELETE", "/_fake/calls", None).await.0, 200);
    assert!(fake.calls().is_empty());

    // Faults over HTTP.
    let fault = json!({"method": "GET", "path": "global/healthChecks/*", "kind": "unavailable", "times": 1});
    assert_eq!(raw(&fake, "POST", "/_fake/faults", Some(&fault)).await.0, 200);
    assert_eq!(raw(&fake, "GET", &api("global/healthChecks/hc"), None).await.0, 503);
    assert_eq!(raw(&fake, "GET", &api("global/healthChecks/hc"), None).await.0, 200);
    let fault = json!({"path": "**", "kind": {"custom": {"code": 403, "reason": "forbidden", "message": "no"}}, "delivery": "inOperation"});
    assert_eq!(raw(&fake, "POST", "/_fake/faults", Some(&fault)).await.0, 200);
    let (code, op) = raw(&fake, "DELETE", &api("global/healthChecks/hc"), None).await;
    assert_eq!((code, op["httpErrorStatusCode"].as_i64()), (200, Some(403)), "{op}");
    assert_eq!(op["error"]["errors"][0]["code"], "FORBIDDEN");
    assert_eq!(op["httpErrorMessage"], "FORBIDDEN");
    assert_eq!(raw(&fake, "DELETE", "/_fake/faults", None).await.0, 200);
    assert_eq!(
        raw(&fake, "PUT", "/_fake/faults/random", Some(&json!({"rate": 0.0, "inOperationShare": 0.0}))).await.0,
        200
    );

    // Settle, dump, reset.
    raw(&fake, "PATCH", "/_fake/settings", Some(&json!({"opDelayPolls": 5}))).await;
    let (code, _) = raw(
        &fake,
        "POST",
        &api("global/healthChecks"),
        Some(&json!({"name": "hc2", "type": "TCP", "tcpHealthCheck": {}})),
    )
    .await;
    assert_eq!(code, 200);
    assert_eq!(raw(&fake, "POST", "/_fake/settle", None).await.1, json!({"completed": 1}));
    let (_, dump) = raw(&fake, "GET", "/_fake/resources?prefix=global/", None).await;
    let keys: Vec<&String> = dump["resources"].as_object().unwrap().keys().collect();
    assert_eq!(keys, ["global/healthChecks/hc", "global/healthChecks/hc2"]);
    assert_eq!(dump["resources"]["global/healthChecks/hc2"]["tcpHealthCheck"]["port"], 80);
    assert_eq!(raw(&fake, "POST", "/_fake/reset", None).await.0, 200);
    let (_, dump) = raw(&fake, "GET", "/_fake/resources", None).await;
    assert_eq!(dump["resources"], json!({}));
    assert_eq!(raw(&fake, "GET", "/_fake/nope", None).await.0, 404);

    // Another project is not served; an unknown collection is a 404; bad JSON is a 400.
    assert_eq!(raw(&fake, "GET", "/compute/v1/projects/other/global/healthChecks", None).await.0, 404);
    assert_eq!(raw(&fake, "GET", &api("global/widgets"), None).await.0, 404);
    let (code, body) = raw(&fake, "GET", &api("global/healthChecks?maxResults=9999"), None).await;
    assert_eq!((code, body["error"]["errors"][0]["reason"].as_str()), (400, Some("invalid")));
}

#[tokio::test]
async fn the_binary_serves_on_the_port_it_prints() {
    use tokio::io::AsyncBufReadExt;
    let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_gce-fake"))
        .args(["--port", "0", "--project", "demo", "--region", "us-east1", "--zones", "us-east1-b,us-east1-c"])
        .args(["--op-delay-polls", "0", "--instances", "us-east1-b/node-1"])
        .stdout(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("spawn gce-fake");
    let stdout = child.stdout.take().expect("stdout");
    let mut lines = tokio::io::BufReader::new(stdout).lines();
    let line = tokio::time::timeout(Duration::from_secs(30), lines.next_line())
        .await
        .expect("gce-fake printed its address in time")
        .expect("read stdout")
        .expect("a line");
    assert!(line.starts_with("gce-fake listening on http://127.0.0.1:"), "{line}");
    let addr: std::net::SocketAddr =
        line.trim_start_matches("gce-fake listening on http://").split_whitespace().next().unwrap().parse().unwrap();

    let (code, zones) = raw_at(addr, "GET", "/compute/v1/projects/demo/zones", None).await;
    assert_eq!(code, 200);
    let names: Vec<&str> = zones["items"].as_array().unwrap().iter().filter_map(|z| z["name"].as_str()).collect();
    assert_eq!(names, ["us-east1-b", "us-east1-c"]);
    let (code, inst) = raw_at(addr, "GET", "/compute/v1/projects/demo/zones/us-east1-b/instances/node-1", None).await;
    assert_eq!((code, inst["name"].as_str()), (200, Some("node-1")));
    let (code, op) =
        raw_at(addr, "POST", "/compute/v1/projects/demo/regions/us-east1/addresses", Some(&json!({"name": "a"}))).await;
    assert_eq!((code, op["status"].as_str()), (200, Some("DONE")));
    let (code, a) = raw_at(addr, "GET", "/compute/v1/projects/demo/regions/us-east1/addresses/a", None).await;
    assert_eq!((code, a["address"].as_str()), (200, Some("203.0.113.1")));

    child.start_kill().expect("stop gce-fake");
    tokio::time::timeout(Duration::from_secs(10), child.wait()).await.expect("exits in time").expect("wait");
    let refused = tokio::time::timeout(Duration::from_secs(5), tokio::net::TcpStream::connect(addr))
        .await
        .expect("connect attempt in time");
    assert!(refused.is_err(), "nothing listens after the process ended");
}
