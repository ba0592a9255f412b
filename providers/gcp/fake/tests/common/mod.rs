//! Helpers shared by the integration tests: start a fake, build real `google-cloud-compute-v1`
//! clients pointed at it (anonymous credentials, fast polling, no retries), read errors the way
//! the provider will, and a minimal raw HTTP/1.1 client for the admin API and wire shapes.

#![allow(dead_code)]

use cloudlb_gce_fake::{FakeConfig, GceFake};
use google_cloud_compute_v1::model::Operation;
use serde_json::Value;
use std::time::Duration;

pub const PROJECT: &str = "test-project";
pub const REGION: &str = "us-central1";
pub const ZONE_A: &str = "us-central1-a";
pub const ZONE_B: &str = "us-central1-b";

/// The project uses rustls with aws-lc-rs; the client's default provider feature is off.
pub fn init_crypto() {
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
}

/// A fake with deterministic operation timing (no time-based settling).
pub async fn start() -> GceFake {
    start_with(FakeConfig::new(PROJECT).with_settle_after(None)).await
}

pub async fn start_with(config: FakeConfig) -> GceFake {
    init_crypto();
    GceFake::start(config).await.expect("start the fake")
}

pub fn fast_polling() -> google_cloud_gax::exponential_backoff::ExponentialBackoff {
    google_cloud_gax::exponential_backoff::ExponentialBackoffBuilder::new()
        .with_initial_delay(Duration::from_millis(1))
        .with_maximum_delay(Duration::from_millis(5))
        .build()
        .expect("backoff policy")
}

/// `client!(Addresses, fake)`: a real client of that type pointed at the fake.
#[macro_export]
macro_rules! client {
    ($ty:ident, $fake:expr) => {
        google_cloud_compute_v1::client::$ty::builder()
            .with_endpoint($fake.url())
            .with_credentials(google_cloud_auth::credentials::anonymous::Builder::new().build())
            .with_retry_policy(google_cloud_gax::retry_policy::NeverRetry)
            .with_polling_backoff_policy($crate::common::fast_polling())
            .build()
            .await
            .expect(concat!("build ", stringify!($ty)))
    };
}

/// HTTP status of a synchronous error.
pub fn http_code(e: &google_cloud_gax::error::Error) -> Option<u16> {
    e.http_status_code()
}

/// `errors[0].reason` of a synchronous error (gax turns it into `ErrorInfo.reason`).
pub fn reason(e: &google_cloud_gax::error::Error) -> String {
    use google_cloud_gax::error::rpc::StatusDetails;
    e.status()
        .and_then(|s| {
            s.details.iter().find_map(|d| match d {
                StatusDetails::ErrorInfo(i) => Some(i.reason.clone()),
                _ => None,
            })
        })
        .unwrap_or_default()
}

pub fn message(e: &google_cloud_gax::error::Error) -> String {
    e.status().map(|s| s.message.clone()).unwrap_or_default()
}

/// `(httpErrorStatusCode, errors[0].code, errors[0].message)` of a failed operation, via
/// `to_result()` as the provider must do it. Panics if the operation succeeded.
pub fn op_failure(op: Operation) -> (i32, String, String) {
    match op.to_result() {
        Ok(op) => panic!("operation succeeded: {op:?}"),
        Err(google_cloud_compute_v1::errors::OperationError::Generic(g)) => {
            let first = g.details.as_ref().and_then(|d| d.errors.first());
            (
                g.status_code.unwrap_or_default(),
                first.and_then(|e| e.code.clone()).unwrap_or_default(),
                first.and_then(|e| e.message.clone()).unwrap_or_default(),
            )
        }
        Err(other) => panic!("unexpected operation error {other:?}"),
    }
}

/// Asserts the operation finished without error.
pub fn done_ok(op: Operation) -> Operation {
    assert_eq!(op.status, Some(google_cloud_compute_v1::model::operation::Status::Done), "{op:?}");
    op.to_result().unwrap_or_else(|e| panic!("operation failed: {e:?}"))
}

/// A raw HTTP/1.1 request to the fake (one connection per request); returns status and JSON body.
pub async fn raw(fake: &GceFake, method: &str, path: &str, body: Option<&Value>) -> (u16, Value) {
    raw_at(fake.addr(), method, path, body).await
}

/// [`raw`] against any address (a `gce-fake` process).
pub async fn raw_at(addr: std::net::SocketAddr, method: &str, path: &str, body: Option<&Value>) -> (u16, Value) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = tokio::time::timeout(Duration::from_secs(5), tokio::net::TcpStream::connect(addr))
        .await
        .expect("connect in time")
        .expect("connect");
    let payload = body.map(|b| b.to_string()).unwrap_or_default();
    let req = format!(
        "{method} {path} HTTP/1.1\r\nHost: {}\r\nConnection: close\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{payload}",
        addr,
        payload.len()
    );
    s.write_all(req.as_bytes()).await.expect("write");
    let mut buf = Vec::new();
    tokio::time::timeout(Duration::from_secs(5), s.read_to_end(&mut buf)).await.expect("read in time").expect("read");
    let text = String::from_utf8_lossy(&buf);
    let (head, body) = text.split_once("\r\n\r\n").expect("http response");
    let status: u16 = head.split_whitespace().nth(1).and_then(|c| c.parse().ok()).expect("status code");
    let body =
        if head.to_ascii_lowercase().contains("transfer-encoding: chunked") { dechunk(body) } else { body.to_string() };
    (status, serde_json::from_str(&body).unwrap_or(Value::Null))
}

fn dechunk(mut s: &str) -> String {
    let mut out = String::new();
    while let Some((size, rest)) = s.split_once("\r\n") {
        let n = usize::from_str_radix(size.trim(), 16).unwrap_or(0);
        if n == 0 {
            break;
        }
        out.push_str(&rest[..n]);
        s = &rest[n + 2..];
    }
    out
}

/// `/compute/v1/projects/{PROJECT}/{rel}`.
pub fn api(rel: &str) -> String {
    format!("/compute/v1/projects/{PROJECT}/{rel}")
}
