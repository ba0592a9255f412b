//! Helpers for the provider's tests against the Compute fake: a fake per test (so tests run in
//! parallel without sharing state), a provider pointed at it, specs with GCE nodes, and reads of
//! what exists through the fake's REST API (plain HTTP, as any client would see it).

#![allow(dead_code)]

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::Duration;

use cloudlb_gce_fake::{FakeConfig, GceFake, InstanceSpec};
use cloudlb_provider::{AddressKind, LoadBalancerId, LoadBalancerSpec, NodeAddress, Target, conformance};
use cloudlb_provider_gcp::{GcpConfig, GcpProvider, Polling, Rate, RateLimits};
use serde_json::Value;

pub const PROJECT: &str = "test-project";
pub const REGION: &str = "us-central1";
pub const ZONE_A: &str = "us-central1-a";
pub const ZONE_B: &str = "us-central1-b";
pub const NETWORK: &str = "default";
pub const SUBNET: &str = "nodes";

pub fn init_crypto() {
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
}

pub struct World {
    pub fake: GceFake,
    pub cluster: String,
}

impl World {
    /// A fake whose operations finish only when polled (or settled): deterministic timing.
    pub async fn new(cluster: &str) -> World {
        Self::with(cluster, FakeConfig::new(PROJECT).with_settle_after(None)).await
    }

    pub async fn with(cluster: &str, config: FakeConfig) -> World {
        init_crypto();
        let fake = GceFake::start(config).await.expect("start the Compute fake");
        World { fake, cluster: cluster.to_string() }
    }

    pub fn config(&self) -> GcpConfig {
        let mut c = GcpConfig::new(PROJECT, REGION, NETWORK);
        c.subnetwork = Some(SUBNET.into());
        c.endpoint_url = Some(self.fake.url());
        c.polling = Polling { initial_delay: Duration::from_millis(1), max_delay: Duration::from_millis(5) };
        c.call_timeout = Duration::from_secs(10);
        c.operation_timeout = Duration::from_secs(20);
        // The client-side buckets are unit-tested; here they would only slow the tests down.
        let fast = Rate::new(10_000.0, 10_000.0);
        c.rate_limits = RateLimits { read: fast, mutate: fast, membership: fast, delete: fast };
        c
    }

    pub async fn provider(&self) -> GcpProvider {
        GcpProvider::new(self.config()).await.expect("provider")
    }

    pub fn id(&self, name: &str) -> LoadBalancerId {
        LoadBalancerId::new(self.cluster.clone(), "default", name, format!("uid-{name}-{}", std::process::id()))
    }

    /// Seeds a VM in `zone`; returns the node target (providerID `gce://project/zone/name`).
    pub fn node(&self, zone: &str, name: &str) -> Target {
        let vm = self.fake.add_instance(InstanceSpec::new(zone, name)).expect("add instance");
        let ip = vm.pointer("/networkInterfaces/0/networkIP").and_then(Value::as_str).unwrap_or("10.0.0.1");
        Target {
            node: name.into(),
            provider_id: Some(format!("gce://{PROJECT}/{zone}/{name}")),
            addresses: vec![NodeAddress { kind: AddressKind::InternalIP, address: ip.into() }],
        }
    }

    /// A TCP spec on `ports` targeting `targets`.
    pub fn spec(&self, ports: &[u16], targets: &[Target]) -> LoadBalancerSpec {
        let mut s = conformance::spec(ports);
        let mut t = targets.to_vec();
        t.sort();
        s.targets = t.into();
        s
    }

    /// A resource through the REST API (`regions/us-central1/forwardingRules/x`); `None` on 404.
    pub async fn get(&self, rel: &str) -> Option<Value> {
        let (code, body) = raw(self.fake.addr(), "GET", &api(rel), None).await;
        match code {
            200 => Some(body),
            404 => None,
            other => panic!("GET {rel}: HTTP {other} {body}"),
        }
    }

    /// Names in a collection through the REST API (`regions/us-central1/forwardingRules`).
    pub async fn list(&self, collection: &str) -> Vec<String> {
        let (code, body) = raw(self.fake.addr(), "GET", &api(collection), None).await;
        assert_eq!(code, 200, "list {collection}: {body}");
        let mut names: Vec<String> = body["items"]
            .as_array()
            .map(|a| a.iter().filter_map(|i| i["name"].as_str().map(String::from)).collect())
            .unwrap_or_default();
        names.sort();
        names
    }

    /// Every load-balancing resource in the project, by collection (empty collections left out).
    pub async fn everything(&self) -> BTreeMap<String, Vec<String>> {
        let mut out = BTreeMap::new();
        let mut collections: Vec<String> = ["forwardingRules", "backendServices", "healthChecks", "addresses"]
            .iter()
            .map(|c| format!("regions/{REGION}/{c}"))
            .collect();
        collections.push("global/firewalls".into());
        for c in [
            "addresses",
            "forwardingRules",
            "backendServices",
            "healthChecks",
            "urlMaps",
            "targetHttpProxies",
            "targetHttpsProxies",
            "sslCertificates",
        ] {
            collections.push(format!("global/{c}"));
        }
        for z in self.fake.zones() {
            collections.push(format!("zones/{z}/instanceGroups"));
        }
        for c in collections {
            let names = self.list(&c).await;
            if !names.is_empty() {
                out.insert(c, names);
            }
        }
        out
    }

    /// Member instance names of an instance group, through `listInstances`.
    pub async fn members(&self, zone: &str, group: &str) -> Vec<String> {
        let path = api(&format!("zones/{zone}/instanceGroups/{group}/listInstances"));
        let (code, body) =
            raw(self.fake.addr(), "POST", &path, Some(&serde_json::json!({"instanceState": "ALL"}))).await;
        assert_eq!(code, 200, "{body}");
        let mut names: Vec<String> = body["items"]
            .as_array()
            .map(|a| {
                a.iter()
                    .filter_map(|i| i["instance"].as_str().map(|l| l.rsplit('/').next().unwrap_or(l).to_string()))
                    .collect()
            })
            .unwrap_or_default();
        names.sort();
        names
    }

    /// Mutating calls since the log was last cleared, as `verb target` lines.
    pub fn mutations(&self) -> Vec<String> {
        self.fake.mutations().iter().map(|c| c.summary()).collect()
    }
}

/// `/compute/v1/projects/{PROJECT}/{rel}`.
pub fn api(rel: &str) -> String {
    format!("/compute/v1/projects/{PROJECT}/{rel}")
}

/// One HTTP/1.1 request (one connection); status and JSON body.
pub async fn raw(addr: SocketAddr, method: &str, path: &str, body: Option<&Value>) -> (u16, Value) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = tokio::time::timeout(Duration::from_secs(5), tokio::net::TcpStream::connect(addr))
        .await
        .expect("connect in time")
        .expect("connect");
    let payload = body.map(|b| b.to_string()).unwrap_or_default();
    let req = format!(
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{payload}",
        payload.len()
    );
    s.write_all(req.as_bytes()).await.expect("write");
    let mut buf = Vec::new();
    tokio::time::timeout(Duration::from_secs(5), s.read_to_end(&mut buf)).await.expect("read in time").expect("read");
    let text = String::from_utf8_lossy(&buf);
    let (head, rest) = text.split_once("\r\n\r\n").expect("an HTTP response");
    let status: u16 = head.split_whitespace().nth(1).and_then(|c| c.parse().ok()).expect("status code");
    let body =
        if head.to_ascii_lowercase().contains("transfer-encoding: chunked") { dechunk(rest) } else { rest.to_string() };
    (status, serde_json::from_str(&body).unwrap_or(Value::Null))
}

fn dechunk(mut s: &str) -> String {
    let mut out = String::new();
    while let Some((size, rest)) = s.split_once("\r\n") {
        let n = usize::from_str_radix(size.trim(), 16).unwrap_or(0);
        if n == 0 || rest.len() < n {
            break;
        }
        out.push_str(&rest[..n]);
        s = rest[n..].trim_start_matches("\r\n");
    }
    out
}

/// POST a resource through the REST API and settle its operation (a user making something by hand).
pub async fn create(w: &World, collection: &str, body: Value) {
    let (code, answer) = raw(w.fake.addr(), "POST", &api(collection), Some(&body)).await;
    assert_eq!(code, 200, "POST {collection}: {answer}");
    w.fake.settle();
}

/// Runs `fut` until the fake has seen `calls` requests since the log was cleared, then drops it
/// mid-flight (a killed process); its output when it finished first.
pub async fn run_until_calls<T>(w: &World, calls: usize, fut: impl std::future::Future<Output = T>) -> Option<T> {
    tokio::pin!(fut);
    loop {
        tokio::select! {
            r = &mut fut => return Some(r),
            _ = tokio::time::sleep(Duration::from_micros(200)) => {
                if w.fake.calls().len() >= calls { return None; }
            }
        }
    }
}

/// Time passes after a crash: what was sent finishes (a request the fake is still handling
/// registers its operation after a first settle, so settle until nothing is pending; bounded).
pub async fn settle_everything(w: &World, after: &str) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    loop {
        w.fake.settle();
        tokio::task::yield_now().await;
        if w.fake.pending_operations() == 0 && w.fake.settle() == 0 {
            return;
        }
        assert!(tokio::time::Instant::now() < deadline, "operations still pending after {after}");
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
}
