//! A fault-injecting HTTP proxy between the SDK and moto.
//!
//! One request per connection (the proxy answers with `Connection: close`). Faults:
//! - the first time an action is seen: a mutating action (Create*, Delete*, Register*,
//!   Deregister*, Authorize*, Revoke*, Modify*, Set*, Add*) is forwarded to moto, its answer
//!   dropped and `503` returned (the change happened but the caller does not know: the case that
//!   makes non-idempotent creates duplicate; unless `lose_responses` is off, then it is throttled
//!   too); any other action is answered `400 Throttling` (EC2: `RequestLimitExceeded`) without
//!   forwarding;
//! - afterwards, about one request in `every` (a fixed pseudo-random pattern) is throttled.

#![allow(dead_code)]

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// A load balancer state code and AWS's reason, forced on DescribeLoadBalancers answers.
pub type LbState = Arc<Mutex<Option<(String, Option<String>)>>>;

pub struct FaultProxy {
    pub addr: SocketAddr,
    pub requests: Arc<AtomicUsize>,
    pub injected: Arc<AtomicUsize>,
    pub enabled: Arc<AtomicBool>,
    /// Actions whose response was dropped after moto applied them.
    pub lost: Arc<Mutex<Vec<String>>>,
    /// Every action (ELBv2, EC2 by their query `Action`, JSON-protocol ones by `X-Amz-Target`) in
    /// the order it arrived.
    pub log: Arc<Mutex<Vec<String>>>,
    /// Each throttled request as `elbv2:Action`, `ec2:Action`, `tagging:Action` or `acm:Action`
    /// (`?` for one it cannot name).
    pub throttled: Arc<Mutex<Vec<String>>>,
    /// Whether first-seen mutations lose their response (else they are throttled).
    pub lose_responses: Arc<AtomicBool>,
    /// When set, every load balancer in a DescribeLoadBalancers answer is in this state (e.g.
    /// `provisioning`, or `failed` with AWS's reason): moto makes each active at once.
    pub lb_state: LbState,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for FaultProxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl FaultProxy {
    pub async fn start(upstream: SocketAddr, every: usize) -> FaultProxy {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind proxy");
        let addr = listener.local_addr().expect("proxy addr");
        let requests = Arc::new(AtomicUsize::new(0));
        let injected = Arc::new(AtomicUsize::new(0));
        let enabled = Arc::new(AtomicBool::new(true));
        let lost = Arc::new(Mutex::new(Vec::new()));
        let log = Arc::new(Mutex::new(Vec::new()));
        let throttled = Arc::new(Mutex::new(Vec::new()));
        let lose_responses = Arc::new(AtomicBool::new(true));
        let lb_state: LbState = Arc::new(Mutex::new(None));
        let seen = Arc::new(Mutex::new(BTreeSet::new()));
        let (r, i, e, l, g) = (requests.clone(), injected.clone(), enabled.clone(), lost.clone(), log.clone());
        let (t, lr, ls) = (throttled.clone(), lose_responses.clone(), lb_state.clone());
        let task = tokio::spawn(async move {
            loop {
                let Ok((conn, _)) = listener.accept().await else { return };
                let st = State {
                    every,
                    requests: r.clone(),
                    injected: i.clone(),
                    enabled: e.clone(),
                    lost: l.clone(),
                    log: g.clone(),
                    throttled: t.clone(),
                    lose_responses: lr.clone(),
                    lb_state: ls.clone(),
                    seen: seen.clone(),
                };
                tokio::spawn(async move {
                    let _ = handle(conn, upstream, st).await;
                });
            }
        });
        FaultProxy { addr, requests, injected, enabled, lost, log, throttled, lose_responses, lb_state, task }
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }
}

fn find(h: &[u8], needle: &[u8]) -> Option<usize> {
    h.windows(needle.len()).position(|w| w == needle)
}

struct State {
    every: usize,
    requests: Arc<AtomicUsize>,
    injected: Arc<AtomicUsize>,
    enabled: Arc<AtomicBool>,
    lost: Arc<Mutex<Vec<String>>>,
    log: Arc<Mutex<Vec<String>>>,
    throttled: Arc<Mutex<Vec<String>>>,
    lose_responses: Arc<AtomicBool>,
    lb_state: LbState,
    seen: Arc<Mutex<BTreeSet<String>>>,
}

enum Fault {
    None,
    Throttle,
    LoseResponse,
}

fn is_mutation(action: &str) -> bool {
    ["Create", "Delete", "Register", "Deregister", "Authorize", "Revoke", "Modify", "Set", "Add"]
        .iter()
        .any(|p| action.starts_with(p))
}

async fn handle(mut conn: TcpStream, upstream: SocketAddr, st: State) -> std::io::Result<()> {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 8192];
    let head_end = loop {
        if let Some(p) = find(&buf, b"\r\n\r\n") {
            break p + 4;
        }
        let n = conn.read(&mut chunk).await?;
        if n == 0 {
            return Ok(());
        }
        buf.extend_from_slice(&chunk[..n]);
    };
    let head = String::from_utf8_lossy(&buf[..head_end]).to_string();
    let len: usize = head
        .lines()
        .find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.eq_ignore_ascii_case("content-length").then(|| v.trim().parse().ok())?
        })
        .unwrap_or(0);
    while buf.len() < head_end + len {
        let n = conn.read(&mut chunk).await?;
        if n == 0 {
            break;
        }
        buf.extend_from_slice(&chunk[..n]);
    }
    let is_ec2 = head.contains("/ec2/aws4_request");
    let body = String::from_utf8_lossy(&buf[head_end..]).to_string();
    // JSON-protocol services (tagging, ACM) name the action in a header: `Service_Version.Action`.
    let json_target = head.lines().find_map(|l| {
        let (k, v) = l.split_once(':')?;
        k.eq_ignore_ascii_case("x-amz-target").then(|| v.trim().to_string())
    });
    let action = match &json_target {
        Some(t) => t.rsplit('.').next().unwrap_or("").to_string(),
        None => body.split('&').find_map(|kv| kv.strip_prefix("Action=")).unwrap_or("").to_string(),
    };
    let n = st.requests.fetch_add(1, Ordering::SeqCst) as u64;
    if !action.is_empty() {
        st.log.lock().unwrap().push(action.clone());
    }
    let fault = if !st.enabled.load(Ordering::SeqCst) {
        Fault::None
    } else if st.seen.lock().unwrap().insert(action.clone()) {
        if is_mutation(&action) && st.lose_responses.load(Ordering::SeqCst) {
            Fault::LoseResponse
        } else {
            Fault::Throttle
        }
    } else if (n.wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 40).is_multiple_of(st.every as u64) {
        Fault::Throttle
    } else {
        Fault::None
    };
    if let Fault::Throttle = fault {
        st.injected.fetch_add(1, Ordering::SeqCst);
        let call = match (&json_target, action.is_empty(), is_ec2) {
            (Some(t), false, _) if t.starts_with("ResourceGroupsTaggingAPI") => format!("tagging:{action}"),
            (Some(t), false, _) if t.starts_with("CertificateManager") => format!("acm:{action}"),
            (Some(_), _, _) | (None, true, _) => "?".to_string(),
            (None, false, true) => format!("ec2:{action}"),
            (None, false, false) => format!("elbv2:{action}"),
        };
        st.throttled.lock().unwrap().push(call);
        if json_target.is_some() {
            let body = r#"{"__type":"ThrottlingException","message":"Rate exceeded"}"#;
            let resp = format!(
                "HTTP/1.1 400 Bad Request\r\nContent-Type: application/x-amz-json-1.1\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                body.len()
            );
            conn.write_all(resp.as_bytes()).await?;
            return conn.shutdown().await;
        }
        let body = if is_ec2 {
            "<?xml version=\"1.0\" encoding=\"UTF-8\"?><Response><Errors><Error><Code>RequestLimitExceeded</Code><Message>Request limit exceeded.</Message></Error></Errors><RequestID>fault</RequestID></Response>"
        } else {
            "<ErrorResponse xmlns=\"http://elasticloadbalancing.amazonaws.com/doc/2015-12-01/\"><Error><Type>Sender</Type><Code>Throttling</Code><Message>Rate exceeded</Message></Error><RequestId>fault</RequestId></ErrorResponse>"
        };
        let resp = format!(
            "HTTP/1.1 400 Bad Request\r\nContent-Type: text/xml\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        );
        conn.write_all(resp.as_bytes()).await?;
        return conn.shutdown().await;
    }
    // Forward with Connection: close, read the whole answer.
    let mut up = TcpStream::connect(upstream).await?;
    let mut head_lines: Vec<&str> =
        head[..head.len() - 4].split("\r\n").filter(|l| !l.to_ascii_lowercase().starts_with("connection:")).collect();
    head_lines.push("Connection: close");
    let mut out = head_lines.join("\r\n").into_bytes();
    out.extend_from_slice(b"\r\n\r\n");
    out.extend_from_slice(&buf[head_end..]);
    up.write_all(&out).await?;
    let mut resp = Vec::new();
    up.read_to_end(&mut resp).await?;
    if let Fault::LoseResponse = fault {
        st.injected.fetch_add(1, Ordering::SeqCst);
        st.lost.lock().unwrap().push(action);
        let resp = "HTTP/1.1 503 Service Unavailable\r\nContent-Length: 0\r\nConnection: close\r\n\r\n";
        conn.write_all(resp.as_bytes()).await?;
        return conn.shutdown().await;
    }
    let state = st.lb_state.lock().unwrap().clone();
    if let (Some((code, reason)), "DescribeLoadBalancers") = (state, action.as_str()) {
        resp = with_state(&resp, &code, reason.as_deref());
    }
    conn.write_all(&resp).await?;
    conn.shutdown().await
}

/// `resp` (a whole HTTP answer) with every load balancer's `<State>` replaced, its
/// Content-Length fixed.
fn with_state(resp: &[u8], code: &str, reason: Option<&str>) -> Vec<u8> {
    let Some(split) = find(resp, b"\r\n\r\n") else { return resp.to_vec() };
    let head = String::from_utf8_lossy(&resp[..split]).to_string();
    let body = String::from_utf8_lossy(&resp[split + 4..]).to_string();
    let reason = reason.map(|r| format!("<Reason>{r}</Reason>")).unwrap_or_default();
    let mut out = String::new();
    let mut rest = body.as_str();
    while let Some(start) = rest.find("<State>") {
        let Some(end) = rest[start..].find("</State>") else { break };
        out.push_str(&rest[..start]);
        out.push_str(&format!("<State><Code>{code}</Code>{reason}</State>"));
        rest = &rest[start + end + "</State>".len()..];
    }
    out.push_str(rest);
    let head: Vec<String> = head
        .split("\r\n")
        .map(|l| {
            if l.to_ascii_lowercase().starts_with("content-length:") {
                format!("Content-Length: {}", out.len())
            } else {
                l.to_string()
            }
        })
        .collect();
    format!("{}\r\n\r\n{out}", head.join("\r\n")).into_bytes()
}
