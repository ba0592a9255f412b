//! Property tests of the desired-state builders: random annotation maps, Service specs, Ingress
//! specs (with the Services, Secrets and Nodes around them) go through the builders the
//! controller calls (`service::build_for` and `ingress::build_for` with the memory provider).
//!
//! ```text
//!  random Service + Nodes ──────────────▶ service::build_for ─┐  never panics
//!  random Ingress + Services + Secrets ─▶ ingress::build_for ─┼▶ same input, same hash/problems
//!                                                             └▶ every problem names its field
//!  valid base + ONE bad annotation  ────▶ a problem naming exactly that annotation
//!  valid base + ONE good annotation ────▶ still valid (the checks are not too eager)
//! ```
//!
//! "Names its field" is checked against the input: a problem must mention something the user
//! wrote — `annotation <key>` for a key that is set, `port <n>` for a port in `spec.ports`,
//! `spec.loadBalancerIP` only when it is set, `rule <i>`, `backend <ns>/<service>:`, `Secret
//! <ns>/<name>:` for what the Ingress names, and so on (see [`service_fields`] and
//! [`ingress_fields`]).
//!
//! Runs are deterministic: a fixed seed, [`CASES`] or [`FEW_CASES`] cases, no persistence
//! files, so a failure in CI is the same failure on a laptop, and a submission never fails on a
//! case that an earlier run did not try. `PROPTEST_RNG_SEED=<u64>` explores other inputs and
//! `PROPTEST_CASES=<n>` runs longer (a fuzz run); a failure prints the shrunk input and the seed
//! that found it, and a case worth keeping becomes a unit test in `service/tests.rs` or
//! `ingress/tests.rs`.

use std::collections::BTreeMap;
use std::fmt::Debug;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};

use cloudlb_provider::Provider;
use cloudlb_provider::l7::Certificate;
use cloudlb_provider::memory::{MemoryConfig, MemoryProvider};
use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::{
    ClientIPConfig, Node, NodeAddress, NodeSpec, NodeStatus, Secret, Service, ServicePort, ServiceSpec,
    SessionAffinityConfig, Taint, TypedLocalObjectReference,
};
use k8s_openapi::api::networking::v1::{
    HTTPIngressPath, HTTPIngressRuleValue, Ingress, IngressBackend, IngressRule, IngressServiceBackend, IngressSpec,
    IngressTLS, ServiceBackendPort,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, Time};
use proptest::prelude::*;
use proptest::sample::select;
use proptest::test_runner::{Config, RngSeed, TestError, TestRunner};

use super::ingress::{self, IngressConfig, Inputs};
use super::nodes::{NodeSnapshot, eligible};
use super::{Invalid, service};
use crate::args::ProviderKind;
use crate::keys::ingress as ing;
use crate::keys::*;
use crate::providers::desired_config;

// ---------------------------------------------------------------------------------------------
// Running

/// Cases of the whole-object properties (a Service, an Ingress and its cluster): about 5 s for
/// the module in a debug build on 2 cores.
const CASES: u32 = 1024;
/// Cases of the one-annotation properties (a much smaller input space).
const FEW_CASES: u32 = 256;
/// The default seed ("cloudlb"), so that CI and a laptop run the same cases.
const SEED: u64 = 0x0063_6c6f_7564_6c62;

/// Fixed seed and no persistence files, unless `PROPTEST_RNG_SEED` / `PROPTEST_CASES` say
/// otherwise (proptest reads them into its default config).
fn config(cases: u32) -> Config {
    let mut c = Config::default();
    if std::env::var_os("PROPTEST_CASES").is_none() {
        c.cases = cases;
    }
    if std::env::var_os("PROPTEST_RNG_SEED").is_none() {
        c.rng_seed = RngSeed::Fixed(SEED);
    }
    c.failure_persistence = None;
    c
}

/// Runs `test` over `strategy` (panics in it are failures too) and fails with the shrunk input.
/// Nothing is filtered or rejected: the builder runs for every generated case.
fn check<S>(name: &str, cases: u32, strategy: S, test: impl Fn(S::Value) -> Result<(), TestCaseError>)
where
    S: Strategy,
    S::Value: Debug,
{
    let config = config(cases);
    let (cases, seed) = (config.cases, config.rng_seed);
    let calls = AtomicUsize::new(0);
    let mut runner = TestRunner::new(config);
    let result = runner.run(&strategy, |value| {
        calls.fetch_add(1, Ordering::Relaxed);
        test(value)
    });
    match result {
        Ok(()) => {}
        Err(TestError::Fail(why, input)) => panic!(
            "property {name} failed: {why}\nshrunk input: {input:#?}\n(seed {seed}: rerun with PROPTEST_RNG_SEED={seed})"
        ),
        Err(TestError::Abort(why)) => panic!("property {name} aborted: {why} (seed {seed})"),
    }
    let calls = calls.into_inner();
    assert!(calls >= cases as usize, "property {name}: {calls} calls for {cases} cases");
}

// ---------------------------------------------------------------------------------------------
// Annotation keys and values

/// Every annotation key a builder reads (the Service and the Ingress builders).
const READ_KEYS: &[&str] = &[
    ANN_INTERNAL,
    ANN_SOURCE_RANGES,
    ANN_HC_INTERVAL,
    ANN_HC_TIMEOUT,
    ANN_HC_HEALTHY,
    ANN_HC_UNHEALTHY,
    ANN_TARGET_NODE_LABELS,
    ANN_TARGET_NODE_LABELS_AWS,
    ing::SOURCE_RANGES,
    ing::SSL_REDIRECT,
    ing::ALLOW_HTTP,
    ing::ALLOW_HTTP_GCE,
    ing::LOAD_BALANCER_IP,
    ing::HEALTHCHECK_PATH,
    ing::CONNECT_TIMEOUT,
    ing::REQUEST_TIMEOUT,
    ing::IDLE_TIMEOUT,
];

/// Annotation keys real objects carry that the builders do not read (the Ingress group keys are
/// read by the Ingress front end, `desired::ingress::group`, which has its own tests).
const OTHER_KEYS: &[&str] = &[
    ANN_RECORD,
    ANN_SPEC_HASH,
    ANN_CLAIMED_CLASS,
    LAST_APPLIED,
    ANN_INGRESS_CLASS,
    ANN_DEFAULT_INGRESS_CLASS,
    ing::GROUP_NAME,
    ing::GROUP_ORDER,
    ing::ALB_GROUP_NAME,
    ing::ALB_GROUP_ORDER,
];

/// Values in `keys.rs` with a `/` that are not annotation keys.
const NOT_ANNOTATIONS: &[&str] = &[
    FINALIZER,
    DEFAULT_CLASS,
    LABEL_EXCLUDE_LB,
    CONDITION_READY,
    CONDITION_TARGETS_HEALTHY,
    DEFAULT_INGRESS_CONTROLLER,
];

const KINDS: &[ProviderKind] = &[ProviderKind::Memory, ProviderKind::Local, ProviderKind::Aws, ProviderKind::Gcp];

/// The annotation prefixes of every provider's options.
fn option_prefixes() -> Vec<String> {
    let mut out: Vec<String> = KINDS.iter().flat_map(|k| desired_config(*k).option_prefixes).collect();
    out.sort();
    out.dedup();
    out
}

fn key() -> BoxedStrategy<String> {
    prop_oneof![
        8 => select(READ_KEYS).prop_map(String::from),
        1 => select(OTHER_KEYS).prop_map(String::from),
        3 => (select(option_prefixes()), prop_oneof![Just(String::new()), "[a-z0-9.-]{1,12}"])
            .prop_map(|(p, k)| format!("{p}{k}")),
        1 => "[a-z0-9./-]{1,30}",
        1 => "\\PC{1,12}",
    ]
    .boxed()
}

const VALID_VALUES: &[&str] = &[
    "true",
    "false",
    "True",
    "FALSE",
    "5",
    "10",
    "300",
    "3600",
    "10.0.0.0/8",
    "10.0.0.0/8, 192.168.0.0/16,",
    "2001:db8::/32",
    "192.0.2.1",
    "198.51.100.7",
    "::1",
    "pool=edge",
    "pool=edge,zone=a",
    "/healthz",
    "/",
    "v2",
    "round-robin",
];

const BOUNDARY_VALUES: &[&str] = &[
    "0",
    "1",
    "2",
    "3",
    "4",
    "9",
    "11",
    "119",
    "120",
    "121",
    "299",
    "301",
    "3601",
    "-1",
    "-0",
    "+5",
    " 5 ",
    "5.0",
    "1e3",
    "0x10",
    "4294967295",
    "4294967296",
    "99999999999999999999999999",
    "-99999999999999999999999999",
];

const GARBAGE_VALUES: &[&str] = &[
    "",
    " ",
    "\t\n",
    "\u{200b}",
    "yes",
    "maybe",
    "ＴＲＵＥ",
    "١٢",
    "１２",
    "🦀",
    "héllo wörld",
    "\u{202e}eurt",
    "10.0.0.0/33",
    "10.0.0/8",
    "1.2.3.4/-1",
    "::/129",
    "256.1.1.1",
    "1.2.3.4/",
    "/8",
    ",,,",
    "10.0.0.0/8,,garbage",
    "fe80::1%eth0",
    "[::1]",
    "1.2.3.4:80",
    "0.0.0.0/0",
    "::/0",
    "a",
    "=b",
    "a=b=c",
    "a==",
    ",=,",
    "a=b,,c",
    " = ",
    "!a",
    "a in (b)",
    "a!=b",
    "healthz",
    "http://x/healthz",
    "*",
    "null",
    "{}",
    "[]",
    "\"true\"",
];

fn long_value() -> BoxedStrategy<String> {
    select(vec![
        "a".repeat(10_000),
        "9".repeat(500),
        "10.0.0.0/8,".repeat(1_000),
        "k=v,".repeat(1_000),
        "/".repeat(5_000),
        "é".repeat(3_000),
    ])
    .boxed()
}

/// An IPv4 or IPv6 address or CIDR, often valid, sometimes with a prefix past the end.
fn ip_like() -> BoxedStrategy<String> {
    let v4 = (any::<[u8; 4]>(), prop::option::of(0u8..=40))
        .prop_map(|(a, p)| format!("{}{}", Ipv4Addr::from(a), p.map(|p| format!("/{p}")).unwrap_or_default()));
    let v6 = (any::<[u16; 8]>(), prop::option::of(0u8..=140))
        .prop_map(|(a, p)| format!("{}{}", Ipv6Addr::from(a), p.map(|p| format!("/{p}")).unwrap_or_default()));
    prop_oneof![v4, v6].boxed()
}

fn value() -> BoxedStrategy<String> {
    let atom = prop_oneof![
        3 => select(VALID_VALUES).prop_map(String::from),
        3 => select(BOUNDARY_VALUES).prop_map(String::from),
        3 => select(GARBAGE_VALUES).prop_map(String::from),
        2 => ip_like(),
        1 => "[a-z0-9=,!() .-]{0,24}",
        1 => "\\PC{0,24}",
        1 => ".{0,12}",
    ];
    prop_oneof![
        12 => atom.clone(),
        2 => prop::collection::vec(atom, 2..5).prop_map(|v| v.join(",")),
        1 => long_value(),
    ]
    .boxed()
}

/// Annotations: plausible entries (a key a builder reads with a value of the right kind, or a
/// key no builder reads with any value), and `w` percent anything at all (see [`mix`]).
fn annotations(w: u32, plausible: BoxedStrategy<(String, String)>) -> BoxedStrategy<Option<BTreeMap<String, String>>> {
    let unread = prop_oneof![
        select(OTHER_KEYS).prop_map(String::from),
        (select(option_prefixes()), "[a-z0-9.-]{0,12}").prop_map(|(p, k)| format!("{p}{k}")),
    ];
    let tame = prop_oneof![2 => plausible, 1 => (unread, value())].boxed();
    let entry = mix(w, tame, (key(), value()).boxed());
    prop::option::weighted(0.9, prop::collection::vec(entry, 0..8).prop_map(|v| v.into_iter().collect())).boxed()
}

fn provider_kind() -> BoxedStrategy<ProviderKind> {
    prop_oneof![3 => Just(ProviderKind::Memory), 1 => select(KINDS)].boxed()
}

// ---------------------------------------------------------------------------------------------
// Nodes

fn node() -> BoxedStrategy<Node> {
    let name = prop_oneof![4 => (0..12u8).prop_map(|i| format!("n{i}")), 1 => "\\PC{0,10}"];
    let label_key =
        prop_oneof![select(vec!["pool", "zone", LABEL_EXCLUDE_LB]).prop_map(String::from), "[a-z./-]{1,10}"];
    let label_value =
        prop_oneof![select(vec!["edge", "a", "", "true", "false", "0", "garbage"]).prop_map(String::from), "\\PC{0,8}"];
    let address = (
        prop_oneof![
            select(vec!["InternalIP", "ExternalIP", "Hostname", "InternalDNS", "ExternalDNS"]).prop_map(String::from),
            "\\PC{0,10}"
        ],
        prop_oneof![ip_like(), "\\PC{0,16}"],
    )
        .prop_map(|(type_, address)| NodeAddress { type_, address });
    (
        name,
        prop::option::of(prop::collection::btree_map(label_key, label_value, 0..4)),
        prop::option::of(prop::collection::vec(address, 0..4)),
        prop::option::of(prop_oneof![Just(String::new()), "memory:///[a-z0-9]{1,6}"]),
        prop::bool::weighted(0.1),
        prop::bool::weighted(0.1),
    )
        .prop_map(|(name, labels, addresses, provider_id, to_be_deleted, deleting)| Node {
            metadata: ObjectMeta {
                name: Some(name),
                labels,
                deletion_timestamp: deleting.then_some(Time(k8s_openapi::jiff::Timestamp::UNIX_EPOCH)),
                ..Default::default()
            },
            spec: Some(NodeSpec {
                provider_id,
                taints: to_be_deleted.then(|| {
                    vec![Taint { key: TAINT_TO_BE_DELETED.into(), effect: "NoSchedule".into(), ..Default::default() }]
                }),
                ..Default::default()
            }),
            status: Some(NodeStatus { addresses, ..Default::default() }),
        })
        .boxed()
}

fn nodes() -> BoxedStrategy<Vec<Node>> {
    prop::collection::vec(node(), 0..20).boxed()
}

// ---------------------------------------------------------------------------------------------
// Services

fn strs(v: &[&'static str]) -> BoxedStrategy<String> {
    select(v.to_vec()).prop_map(String::from).boxed()
}

/// `wild` percent of the time a value from `wild`, else one from `tame`. Each case draws its
/// own percentage ([`WILDNESS`]), so some cases are valid but for one field, some are valid
/// throughout (they reach the provider's capability check), and some are garbage throughout.
fn mix<T: Debug + 'static>(wild: u32, tame: BoxedStrategy<T>, wild_values: BoxedStrategy<T>) -> BoxedStrategy<T> {
    match wild {
        0 => tame,
        100.. => wild_values,
        w => prop_oneof![100 - w => tame, w => wild_values].boxed(),
    }
}

const WILDNESS: &[u32] = &[0, 3, 10, 30, 100];

fn service_port(w: u32) -> BoxedStrategy<ServicePort> {
    let port = mix(
        w,
        prop_oneof![3 => select(vec![53, 80, 443, 8080]), 1 => 1..=65535i32].boxed(),
        prop_oneof![select(vec![0, 65536, -1, -80, i32::MIN, i32::MAX]), any::<i32>()].boxed(),
    );
    let protocol = mix(
        w,
        prop_oneof![4 => strs(&["TCP", "UDP"]).prop_map(Some), 1 => Just(None)].boxed(),
        prop_oneof![strs(&["SCTP", "tcp", "", " TCP", "HTTP", "QUIC"]).prop_map(Some), "\\PC{0,6}".prop_map(Some),]
            .boxed(),
    );
    let node_port = mix(
        w,
        (30000..=32767i32).prop_map(Some).boxed(),
        prop_oneof![Just(None), select(vec![0, -1, 65536, i32::MAX, i32::MIN]).prop_map(Some)].boxed(),
    );
    let name = prop::option::of(prop_oneof![strs(&["http", "https", "dns", ""]), "\\PC{0,8}"]);
    (port, protocol, node_port, name)
        .prop_map(|(port, protocol, node_port, name)| ServicePort {
            port,
            protocol,
            node_port,
            name,
            ..Default::default()
        })
        .boxed()
}

fn cidr_like() -> BoxedStrategy<String> {
    prop_oneof![
        3 => ip_like(),
        2 => select(GARBAGE_VALUES).prop_map(String::from),
        1 => "\\PC{0,12}",
    ]
    .boxed()
}

fn service_spec(w: u32) -> BoxedStrategy<ServiceSpec> {
    let ports = mix(
        w,
        prop::collection::vec(service_port(w), 1..5).prop_map(Some).boxed(),
        prop_oneof![Just(Some(Vec::new())), Just(None), prop::collection::vec(service_port(100), 1..8).prop_map(Some)]
            .boxed(),
    );
    let lb_ip = prop::option::of(mix(
        w,
        prop_oneof![4 => good_ip(), 1 => strs(&["", " "])].boxed(),
        prop_oneof![ip_like(), strs(&["not-an-ip", "1.2.3", "1.2.3.4/32"]), "\\PC{0,10}"].boxed(),
    ));
    let ranges = prop::option::of(prop::collection::vec(mix(w, good_cidr(), cidr_like()), 0..4));
    let families = prop::option::of(prop::collection::vec(
        mix(
            w,
            prop_oneof![3 => Just("IPv4".to_string()), 1 => Just("IPv6".to_string())].boxed(),
            strs(&["ipv4", "IPv5", ""]),
        ),
        0..3,
    ));
    let family_policy = prop::option::of(strs(&["SingleStack", "PreferDualStack", "RequireDualStack", "Sometimes"]));
    let traffic_policy = prop::option::of(strs(&["Cluster", "Local", "local", "Nowhere"]));
    let hc_node_port = mix(
        w,
        (30000..=32767i32).prop_map(Some).boxed(),
        prop_oneof![Just(None), select(vec![0, -1, 65536, i32::MAX]).prop_map(Some)].boxed(),
    );
    let affinity = prop::option::of(strs(&["None", "ClientIP", "clientip", "Sticky"]));
    let affinity_timeout =
        prop::option::of(prop::option::of(select(vec![0, -1, 1, 10_800, 86_400, i32::MAX, i32::MIN])));
    let type_ = prop::option::of(strs(&["LoadBalancer", "NodePort", "ClusterIP", "ExternalName", "loadbalancer"]));
    (ports, type_, lb_ip, ranges, families, family_policy, traffic_policy, hc_node_port, affinity, affinity_timeout)
        .prop_map(|(ports, type_, lb_ip, ranges, families, family_policy, traffic_policy, hc, affinity, timeout)| {
            ServiceSpec {
                ports,
                type_,
                load_balancer_ip: lb_ip,
                load_balancer_source_ranges: ranges,
                ip_families: families,
                ip_family_policy: family_policy,
                external_traffic_policy: traffic_policy,
                health_check_node_port: hc,
                session_affinity: affinity,
                session_affinity_config: timeout.map(|timeout_seconds| SessionAffinityConfig {
                    client_ip: Some(ClientIPConfig { timeout_seconds }),
                }),
                ..Default::default()
            }
        })
        .boxed()
}

fn service_object() -> BoxedStrategy<Service> {
    select(WILDNESS)
        .prop_flat_map(|w| {
            let spec = mix(w, service_spec(w).prop_map(Some).boxed(), Just(None).boxed());
            let spec = if w == 100 { prop::option::weighted(0.9, service_spec(w)).boxed() } else { spec };
            (annotations(w, service_plausible_annotation()), spec)
        })
        .prop_map(|(annotations, spec)| Service {
            metadata: ObjectMeta {
                name: Some("web".into()),
                namespace: Some("default".into()),
                annotations,
                ..Default::default()
            },
            spec,
            status: None,
        })
        .boxed()
}

// ---------------------------------------------------------------------------------------------
// Ingresses, and the Services and Secrets around them

/// A valid certificate and its key, and a second certificate the key does not belong to
/// (generated once: key generation is the slow part).
fn certs() -> &'static (String, String, String) {
    static CERTS: OnceLock<(String, String, String)> = OnceLock::new();
    CERTS.get_or_init(|| {
        let a = rcgen::generate_simple_self_signed(vec!["foo.example".to_string()]).expect("rcgen");
        let b = rcgen::generate_simple_self_signed(vec!["other.example".to_string()]).expect("rcgen");
        (a.cert.pem(), a.signing_key.serialize_pem(), b.cert.pem())
    })
}

const SERVICE_NAMES: &[&str] = &["app", "api", "internal", "legacy"];
const SECRET_NAMES: &[&str] = &["good", "good2", "garbage", "mismatch", "no-key", "no-crt", "empty", "no-data", "tail"];

#[derive(Clone, Copy, Debug)]
enum SecretKind {
    Valid,
    /// A valid PEM chain followed by bytes that are not UTF-8.
    BinaryTail,
    /// A certificate with a key that is not its own.
    Mismatch,
    Garbage,
    NoKey,
    NoCrt,
    Empty,
    NoData,
}

fn secret(name: &str, kind: SecretKind) -> Arc<Secret> {
    let (crt, key, other) = certs();
    let data = |pairs: &[(&str, Vec<u8>)]| {
        Some(pairs.iter().map(|(k, v)| (k.to_string(), ByteString(v.clone()))).collect::<BTreeMap<_, _>>())
    };
    let (crt, key, other) = (crt.as_bytes().to_vec(), key.as_bytes().to_vec(), other.as_bytes().to_vec());
    let data = match kind {
        SecretKind::Valid => data(&[("tls.crt", crt), ("tls.key", key)]),
        SecretKind::BinaryTail => data(&[("tls.crt", [crt, vec![0xff, 0xfe, b'\n']].concat()), ("tls.key", key)]),
        SecretKind::Mismatch => data(&[("tls.crt", other), ("tls.key", key)]),
        SecretKind::Garbage => {
            data(&[("tls.crt", b"-----BEGIN CERTIFICATE-----\nnope\n".to_vec()), ("tls.key", b"\xff".to_vec())])
        }
        SecretKind::NoKey => data(&[("tls.crt", crt)]),
        SecretKind::NoCrt => data(&[("tls.key", key)]),
        SecretKind::Empty => data(&[("tls.crt", Vec::new()), ("tls.key", Vec::new())]),
        SecretKind::NoData => None,
    };
    Arc::new(Secret {
        metadata: ObjectMeta { name: Some(name.into()), namespace: Some("shop".into()), ..Default::default() },
        type_: Some("kubernetes.io/tls".into()),
        data,
        ..Default::default()
    })
}

fn secret_kind() -> BoxedStrategy<SecretKind> {
    use SecretKind::*;
    select(vec![Valid, Valid, BinaryTail, Mismatch, Garbage, NoKey, NoCrt, Empty, NoData]).boxed()
}

/// A Service an Ingress may route to: NodePort or not, ports with or without node ports, maybe
/// a health-check path of its own.
fn backend_service(name: &'static str) -> BoxedStrategy<Arc<Service>> {
    let port = (
        select(vec![80, 443, 9090, 0, -1, 70_000]),
        prop::option::of(prop_oneof![strs(&["http", "metrics", ""]), "\\PC{0,6}"]),
        prop::option::of(select(vec![30080, 30443, 0, -1, 70_000])),
        prop::option::of(strs(&["TCP", "UDP", "SCTP", "garbage"])),
    )
        .prop_map(|(port, name, node_port, protocol)| ServicePort {
            port,
            name,
            node_port,
            protocol,
            ..Default::default()
        });
    let spec = (
        strs(&["NodePort", "LoadBalancer", "ClusterIP", "Nonsense"]),
        prop::option::of(prop::collection::vec(port, 0..4)),
    )
        .prop_map(|(type_, ports)| ServiceSpec { type_: Some(type_), ports, ..Default::default() });
    let annotations = prop::option::of(prop::collection::btree_map(
        prop_oneof![Just(ing::HEALTHCHECK_PATH.to_string()), key()],
        value(),
        0..3,
    ));
    (annotations, prop::option::weighted(0.95, spec))
        .prop_map(move |(annotations, spec)| {
            Arc::new(Service {
                metadata: ObjectMeta {
                    name: Some(name.into()),
                    namespace: Some("shop".into()),
                    annotations,
                    ..Default::default()
                },
                spec,
                status: None,
            })
        })
        .boxed()
}

fn host() -> BoxedStrategy<Option<String>> {
    prop_oneof![
        2 => Just(None),
        6 => strs(&[
            "",
            "foo.example",
            "bar.example",
            "*.example",
            "FOO.Example.",
            "*",
            "*.",
            "a*b.example",
            "*.*.example",
            "1.2.3.4",
            "::1",
            "-bad.example",
            "bad-.example",
            "a..b",
            ".",
            "ünïcode.example",
            " spaced.example ",
            "foo.example:8080",
            "xn--bcher-kva.example",
        ])
        .prop_map(Some),
        1 => Just(Some(format!("{}.example", "x".repeat(64)))),
        1 => Just(Some(format!("{}x", "a.".repeat(127)))),
        2 => "\\PC{0,20}".prop_map(Some),
        1 => "[a-z*.-]{1,20}".prop_map(Some),
    ]
    .boxed()
}

fn ingress_backend() -> BoxedStrategy<IngressBackend> {
    let service_name = prop_oneof![
        6 => select(SERVICE_NAMES).prop_map(String::from),
        1 => Just("missing".to_string()),
        1 => "\\PC{0,10}",
    ];
    let port = prop_oneof![
        4 => select(vec![80, 443, 9090, 0, -1, 70_000, i32::MAX]).prop_map(|n| Some(ServiceBackendPort { number: Some(n), name: None })),
        2 => prop_oneof![strs(&["http", "metrics", ""]), "\\PC{0,8}"].prop_map(|n| Some(ServiceBackendPort { number: None, name: Some(n) })),
        1 => Just(Some(ServiceBackendPort { number: Some(80), name: Some("http".into()) })),
        1 => Just(Some(ServiceBackendPort { number: None, name: None })),
        1 => Just(None),
    ];
    let resource = TypedLocalObjectReference {
        api_group: Some("k8s.example.com".into()),
        kind: "StorageBucket".into(),
        name: "b".into(),
    };
    prop_oneof![
        8 => (service_name, port).prop_map(|(name, port)| IngressBackend { service: Some(IngressServiceBackend { name, port }), resource: None }),
        1 => Just(IngressBackend { service: None, resource: Some(resource) }),
        1 => Just(IngressBackend { service: None, resource: None }),
    ]
    .boxed()
}

fn ingress_path() -> BoxedStrategy<HTTPIngressPath> {
    let path_type = prop_oneof![
        8 => strs(&["Exact", "Prefix", "ImplementationSpecific"]),
        1 => strs(&["", "exact", "Regex", "Fuzzy"]),
        1 => "\\PC{0,8}",
    ];
    let path = prop_oneof![
        1 => Just(None),
        6 => strs(&[
            "", "/", "/api", "/api/", "api", "//", "/a//b", "/v[0-9]+", "/img/*.png", "/ü", "/a b", "/%20", "/.*",
            "^/x$", "/a|b", "/(x)", "/x?y", "/{id}", "/back\\slash", "/../etc", "/./x",
        ])
        .prop_map(Some),
        2 => "/[a-z0-9/._-]{0,12}".prop_map(Some),
        2 => "\\PC{0,16}".prop_map(Some),
    ];
    (path_type, path, ingress_backend())
        .prop_map(|(path_type, path, backend)| HTTPIngressPath { path, path_type, backend })
        .boxed()
}

fn ingress_rule() -> BoxedStrategy<IngressRule> {
    (host(), prop::option::weighted(0.9, prop::collection::vec(ingress_path(), 0..4)))
        .prop_map(|(host, paths)| IngressRule { host, http: paths.map(|paths| HTTPIngressRuleValue { paths }) })
        .boxed()
}

fn ingress_tls() -> BoxedStrategy<IngressTLS> {
    let secret_name = prop_oneof![
        1 => Just(None),
        6 => select(SECRET_NAMES).prop_map(|s| Some(s.to_string())),
        1 => strs(&["missing", "", " ", " good "]).prop_map(Some),
        1 => "\\PC{0,10}".prop_map(Some),
    ];
    (prop::option::of(prop::collection::vec(host().prop_map(Option::unwrap_or_default), 0..3)), secret_name)
        .prop_map(|(hosts, secret_name)| IngressTLS { hosts, secret_name })
        .boxed()
}

fn ingress_object() -> BoxedStrategy<Ingress> {
    let spec = (
        prop::option::weighted(0.9, prop::collection::vec(ingress_rule(), 0..5)),
        prop::option::weighted(0.3, ingress_backend()),
        prop::option::weighted(0.5, prop::collection::vec(ingress_tls(), 0..3)),
        prop::option::of(strs(&["cloudlb", "other", ""])),
    )
        .prop_map(|(rules, default_backend, tls, ingress_class_name)| IngressSpec {
            rules,
            default_backend,
            tls,
            ingress_class_name,
        });
    (annotations(30, ingress_plausible_annotation()), prop::option::weighted(0.95, spec))
        .prop_map(|(annotations, spec)| Ingress {
            metadata: ObjectMeta {
                name: Some("web".into()),
                namespace: Some("shop".into()),
                annotations,
                ..Default::default()
            },
            spec,
            status: None,
        })
        .boxed()
}

/// An Ingress and the cluster around it, as the builder sees it.
#[derive(Clone, Debug)]
struct IngressCase {
    ingress: Ingress,
    services: Vec<Arc<Service>>,
    secrets: Vec<Arc<Secret>>,
    /// Secrets that had a valid certificate before (the controller's last-good cache).
    last_good: Vec<String>,
    nodes: Vec<Node>,
    kind: ProviderKind,
    ports: (u16, u16),
}

impl IngressCase {
    fn build(&self, memory: &MemoryProvider) -> Result<ingress::Built, Invalid> {
        let services = |ns: &str, name: &str| {
            self.services
                .iter()
                .find(|s| s.metadata.namespace.as_deref() == Some(ns) && s.metadata.name.as_deref() == Some(name))
                .cloned()
        };
        let secrets = |ns: &str, name: &str| {
            self.secrets
                .iter()
                .find(|s| s.metadata.namespace.as_deref() == Some(ns) && s.metadata.name.as_deref() == Some(name))
                .cloned()
        };
        let (crt, key, _) = certs();
        let last_good = |name: &str| {
            self.last_good
                .iter()
                .any(|s| format!("shop/{s}") == name)
                .then(|| Certificate::new(name.to_string(), Vec::new(), crt.clone(), key.clone()))
        };
        let nodes = NodeSnapshot::new(eligible(&self.nodes));
        let config =
            IngressConfig { http_port: self.ports.0, https_port: self.ports.1, desired: desired_config(self.kind) };
        let inputs =
            Inputs { services: &services, secrets: &secrets, last_good: &last_good, nodes: &nodes, config: &config };
        ingress::build_for(&self.ingress, &inputs, &memory.capabilities(), memory)
    }
}

fn ingress_case() -> BoxedStrategy<IngressCase> {
    let services = SERVICE_NAMES
        .iter()
        .map(|n| prop::option::weighted(0.85, backend_service(n)))
        .collect::<Vec<_>>()
        .prop_map(|s| s.into_iter().flatten().collect::<Vec<_>>());
    let secrets = SECRET_NAMES
        .iter()
        .map(|n| prop::option::weighted(0.8, secret_kind()).prop_map(move |k| k.map(|k| secret(n, k))))
        .collect::<Vec<_>>()
        .prop_map(|s| s.into_iter().flatten().collect::<Vec<_>>());
    let last_good = prop::sample::subsequence(SECRET_NAMES.iter().map(|s| s.to_string()).collect::<Vec<_>>(), 0..3);
    let ports = select(vec![(80u16, 443u16), (8080, 8443)]);
    (ingress_object(), services, secrets, last_good, nodes(), provider_kind(), ports)
        .prop_map(|(ingress, services, secrets, last_good, nodes, kind, ports)| IngressCase {
            ingress,
            services,
            secrets,
            last_good,
            nodes,
            kind,
            ports,
        })
        .boxed()
}

// ---------------------------------------------------------------------------------------------
// "Names its field"

/// Whether `text` mentions `token` as a whole: not glued to a letter, digit, `-`, `_` or `.`
/// (so `port 80` is not found in `port 8080`, nor `rule 1` in `rule 12`).
fn mentions(text: &str, token: &str) -> bool {
    let word = |c: char| c.is_alphanumeric() || "-_.".contains(c);
    let (starts_word, ends_word) = (token.starts_with(word), token.ends_with(word));
    text.match_indices(token).any(|(i, _)| {
        let before = text[..i].chars().next_back().is_some_and(word);
        let after = text[i + token.len()..].chars().next().is_some_and(word);
        let glued = (starts_word && before) || (ends_word && after);
        !glued
    })
}

/// `annotation <key>` for each key set (keys that are blank name nothing).
fn annotation_tokens(annotations: &Option<BTreeMap<String, String>>) -> Vec<Vec<String>> {
    annotations
        .iter()
        .flatten()
        .filter(|(k, _)| !k.trim().is_empty())
        .map(|(k, _)| vec![format!("annotation {k}")])
        .collect()
}

/// What a problem about this Service may name: each entry is a set of tokens that must all be
/// mentioned.
fn service_fields(svc: &Service) -> Vec<Vec<String>> {
    let mut out = annotation_tokens(&svc.metadata.annotations);
    let one = |s: &str| vec![s.to_string()];
    let Some(spec) = &svc.spec else {
        out.push(one("the Service has no spec"));
        return out;
    };
    let ports = spec.ports.as_deref().unwrap_or_default();
    if ports.is_empty() {
        out.push(one("the Service has no ports"));
    }
    for p in ports {
        out.push(vec![format!("port {}", p.port)]);
        if let Some(proto) = p.protocol.as_deref().filter(|p| !p.is_empty()) {
            out.push(vec![format!("protocol {proto}")]);
        }
    }
    if spec.load_balancer_source_ranges.as_ref().is_some_and(|r| !r.is_empty()) {
        out.push(one("spec.loadBalancerSourceRanges"));
    }
    if spec.load_balancer_ip.as_deref().is_some_and(|ip| !ip.trim().is_empty()) {
        out.push(one("spec.loadBalancerIP"));
    }
    if spec.external_traffic_policy.as_deref() == Some("Local") {
        out.push(one("spec.healthCheckNodePort"));
    }
    if spec.ip_families.as_ref().is_some_and(|f| !f.is_empty()) {
        out.push(one("spec.ipFamilies"));
    }
    if spec.session_affinity.is_some() {
        out.push(one("sessionAffinity"));
    }
    out
}

/// What a problem or warning about this Ingress may name (see [`service_fields`]).
fn ingress_fields(case: &IngressCase) -> Vec<Vec<String>> {
    let ing = &case.ingress;
    let mut out = annotation_tokens(&ing.metadata.annotations);
    let Some(spec) = &ing.spec else {
        out.push(vec!["the Ingress has no spec".into()]);
        return out;
    };
    let rules = spec.rules.as_deref().unwrap_or_default();
    out.extend((0..rules.len()).map(|i| vec![format!("rule {i}")]));
    if spec.default_backend.is_some() {
        out.push(vec!["defaultBackend".into()]);
    }
    let backends = spec
        .default_backend
        .iter()
        .chain(rules.iter().flat_map(|r| r.http.iter().flat_map(|h| h.paths.iter())).map(|p| &p.backend));
    for b in backends.filter_map(|b| b.service.as_ref()) {
        out.push(vec![format!("backend shop/{}:", b.name)]);
        // An annotation of a Service the Ingress routes to, named with the Service.
        if let Some(s) = case.services.iter().find(|s| s.metadata.name.as_deref() == Some(b.name.as_str())) {
            for k in annotation_tokens(&s.metadata.annotations).into_iter().flatten() {
                out.push(vec![k, format!("Service shop/{}", b.name)]);
            }
        }
    }
    for (i, t) in spec.tls.iter().flatten().enumerate() {
        out.push(vec![format!("tls entry {i}")]);
        if let Some(name) = t.secret_name.as_deref().map(str::trim).filter(|n| !n.is_empty()) {
            out.push(vec![format!("Secret shop/{name}:")]);
        }
    }
    out
}

fn names_a_field(message: &str, fields: &[Vec<String>]) -> Result<(), TestCaseError> {
    prop_assert!(
        fields.iter().any(|all| all.iter().all(|t| mentions(message, t))),
        "this message names none of the fields of the input: {message:?}\n(the input's fields: {fields:?})"
    );
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// Properties

fn memory() -> MemoryProvider {
    MemoryProvider::new(MemoryConfig::default()).expect("memory provider")
}

/// Any Service, any nodes: no panic, the same result twice, every problem names its field.
#[test]
fn service_builder_is_total_deterministic_and_names_fields() {
    let memory = memory();
    let caps = memory.capabilities();
    let outcomes = Outcomes::default();
    check("service", CASES, (service_object(), nodes(), provider_kind()), |(svc, nodes, kind)| {
        let cfg = desired_config(kind);
        let build = || service::build_for(&svc, &NodeSnapshot::new(eligible(&nodes)), &cfg, &caps, &memory);
        let (first, second) = (build(), build());
        outcomes.count(first.is_ok());
        match (&first, &second) {
            (Ok(a), Ok(b)) => prop_assert_eq!(a.hash(), b.hash()),
            (Err(a), Err(b)) => prop_assert_eq!(a, b),
            _ => prop_assert!(false, "two builds disagree: {first:?} vs {second:?}"),
        }
        if let Err(invalid) = &first {
            prop_assert!(!invalid.problems.is_empty(), "invalid without a problem");
            let fields = service_fields(&svc);
            for p in &invalid.problems {
                names_a_field(p, &fields)?;
            }
        }
        Ok(())
    });
    outcomes.assert_both("service");
}

/// Any Ingress, any Services, Secrets and nodes around it: no panic, the same result twice
/// (hash, warnings, problems), every problem and every warning names its field.
#[test]
fn ingress_builder_is_total_deterministic_and_names_fields() {
    let memory = memory();
    let outcomes = Outcomes::default();
    check("ingress", CASES, ingress_case(), |case| {
        let (first, second) = (case.build(&memory), case.build(&memory));
        outcomes.count(first.is_ok());
        let fields = ingress_fields(&case);
        match (&first, &second) {
            (Ok(a), Ok(b)) => {
                prop_assert_eq!(a.spec.hash(), b.spec.hash());
                prop_assert_eq!(&a.warnings, &b.warnings);
                prop_assert_eq!(&a.valid_certificates, &b.valid_certificates);
                for w in &a.warnings {
                    names_a_field(w, &fields)?;
                }
            }
            (Err(a), Err(b)) => {
                prop_assert_eq!(a, b);
                prop_assert!(!a.problems.is_empty(), "invalid without a problem");
                for p in &a.problems {
                    names_a_field(p, &fields)?;
                }
            }
            _ => prop_assert!(false, "two builds disagree: {first:?} vs {second:?}"),
        }
        Ok(())
    });
    outcomes.assert_both("ingress");
}

/// How many cases built and how many did not: a generator that (after some change) makes
/// nearly every case invalid would no longer reach the checks behind the first problem.
#[derive(Default)]
struct Outcomes {
    valid: AtomicUsize,
    invalid: AtomicUsize,
}

impl Outcomes {
    fn count(&self, valid: bool) {
        let n = if valid { &self.valid } else { &self.invalid };
        n.fetch_add(1, Ordering::Relaxed);
    }

    fn assert_both(&self, name: &str) {
        let (valid, invalid) = (self.valid.load(Ordering::Relaxed), self.invalid.load(Ordering::Relaxed));
        let least = (valid + invalid) / 10;
        eprintln!("property {name}: {valid} valid and {invalid} invalid cases");
        assert!(valid >= least && invalid >= least, "property {name}: {valid} valid, {invalid} invalid cases");
    }
}

// One annotation at a time, on a valid base.

/// A value that is never a boolean (`parse_bool` takes true/false in three spellings, and "").
fn bad_bool() -> BoxedStrategy<String> {
    prop_oneof![
        strs(&[
            "yes",
            "no",
            "1",
            "0",
            "maybe",
            "on",
            "t",
            "tRue",
            "ＴＲＵＥ",
            "true,false",
            "\u{200b}true",
            "\"true\""
        ]),
        "\\PC{0,10}".prop_map(|s| format!("no{s}")),
    ]
    .boxed()
}

fn good_bool() -> BoxedStrategy<String> {
    strs(&["true", "True", "TRUE", "false", "False", "FALSE", "", " true ", "false\n"])
}

/// A value that is not a whole number in `min..=max` (all the builders' ranges start at 1).
fn bad_number(max: u32) -> BoxedStrategy<String> {
    prop_oneof![
        strs(&["", " ", "0", "-1", "1.5", "5s", "1e3", "0x10", "١", "１", "4294967296", "99999999999999999999"]),
        (max + 1..=u32::MAX).prop_map(|n| n.to_string()),
        "\\PC{0,6}".prop_map(|s| format!("x{s}")),
    ]
    .boxed()
}

fn good_number(min: u32, max: u32) -> BoxedStrategy<String> {
    prop_oneof![(min..=max).prop_map(|n| n.to_string()), (min..=max).prop_map(|n| format!(" {n}\t"))].boxed()
}

fn good_cidr() -> BoxedStrategy<String> {
    prop_oneof![
        (any::<[u8; 4]>(), 0u8..=32).prop_map(|(a, p)| format!("{}/{p}", Ipv4Addr::from(a))),
        (any::<[u16; 8]>(), 0u8..=128).prop_map(|(a, p)| format!("{}/{p}", Ipv6Addr::from(a))),
        good_ip(),
    ]
    .boxed()
}

fn good_ip() -> BoxedStrategy<String> {
    prop_oneof![
        any::<[u8; 4]>().prop_map(|a| IpAddr::from(a).to_string()),
        any::<[u16; 8]>().prop_map(|a| IpAddr::from(a).to_string()),
    ]
    .boxed()
}

fn good_cidr_list() -> BoxedStrategy<String> {
    (prop::collection::vec(good_cidr(), 0..4), any::<bool>())
        .prop_map(|(v, trailing)| format!("{}{}", v.join(", "), if trailing { "," } else { "" }))
        .boxed()
}

/// A list with at least one item that is neither a CIDR nor an IP.
fn bad_cidr_list() -> BoxedStrategy<String> {
    let bad = prop_oneof![
        strs(&[
            "10.0.0.0/33",
            "banana",
            "10.0.0/8",
            "1.2.3.4/-1",
            "::/129",
            "256.0.0.1",
            "1.2.3.4/",
            "[::1]",
            "fe80::1%eth0"
        ]),
        "\\PC{0,10}".prop_map(|s| format!("x{s}")),
    ];
    (prop::collection::vec(good_cidr(), 0..3), bad, any::<prop::sample::Index>())
        .prop_map(|(mut v, bad, at)| {
            v.insert(at.index(v.len() + 1), bad);
            v.join(",")
        })
        .boxed()
}

fn good_labels() -> BoxedStrategy<String> {
    prop::collection::vec(("[a-z./]{1,6}", "[a-z0-9]{0,5}"), 0..3)
        .prop_map(|v| v.iter().map(|(k, v)| format!("{k}={v}")).collect::<Vec<_>>().join(","))
        .boxed()
}

fn bad_labels() -> BoxedStrategy<String> {
    prop_oneof![strs(&["novalue", "=b", " =x", "a=b,c", "a=b,,=c", "!a"]), "[a-z ]{0,8}[a-z]"].boxed()
}

fn bad_ip() -> BoxedStrategy<String> {
    prop_oneof![
        strs(&["1.2.3", "256.0.0.1", "1.2.3.4/32", "::g", "1.2.3.4:80", "[::1]", "localhost", "0x7f000001"]),
        "\\PC{0,10}".prop_map(|s| format!("x{s}")),
    ]
    .boxed()
}

fn bad_path() -> BoxedStrategy<String> {
    prop_oneof![
        strs(&["healthz", "http://x/healthz", "*", "~", "\\healthz"]),
        "\\PC{0,10}".prop_map(|s| format!("x{s}"))
    ]
    .boxed()
}

fn good_path() -> BoxedStrategy<String> {
    prop_oneof![strs(&["", " ", "/", "/healthz"]), "/[a-z0-9/._-]{0,12}"].boxed()
}

fn pair(key: &'static str, values: BoxedStrategy<String>) -> BoxedStrategy<(String, String)> {
    values.prop_map(move |v| (key.to_string(), v)).boxed()
}

/// A provider option: the memory provider takes any value.
fn option_pair() -> BoxedStrategy<(String, String)> {
    ("memory\\.cloudlb\\.io/[a-z-]{1,10}", value()).boxed()
}

/// Ranges whose bounds are what the builders accept, each alone on a valid base (the defaults of
/// the others stay: interval 10 s, timeout 5 s, so an interval under 5 s is a conflict).
fn service_bad_annotation() -> BoxedStrategy<(String, String)> {
    prop_oneof![
        pair(ANN_INTERNAL, bad_bool()),
        pair(ANN_SOURCE_RANGES, bad_cidr_list()),
        pair(ANN_HC_INTERVAL, bad_number(300)),
        pair(ANN_HC_TIMEOUT, bad_number(120)),
        pair(ANN_HC_HEALTHY, bad_number(10)),
        pair(ANN_HC_UNHEALTHY, bad_number(10)),
        pair(ANN_TARGET_NODE_LABELS, bad_labels()),
        pair(ANN_TARGET_NODE_LABELS_AWS, bad_labels()),
    ]
    .boxed()
}

/// A valid value for one key the Service builder reads. `timeout_max` 10 keeps a lone
/// health-check timeout within the default interval (a valid spec); 120 lets combinations
/// conflict (timeout above interval), which the builder must then report.
fn service_valid_annotation(interval_min: u32, timeout_max: u32) -> BoxedStrategy<(String, String)> {
    prop_oneof![
        pair(ANN_INTERNAL, good_bool()),
        pair(ANN_SOURCE_RANGES, good_cidr_list()),
        pair(ANN_HC_INTERVAL, good_number(interval_min, 300)),
        pair(ANN_HC_TIMEOUT, good_number(1, timeout_max)),
        pair(ANN_HC_HEALTHY, good_number(1, 10)),
        pair(ANN_HC_UNHEALTHY, good_number(1, 10)),
        pair(ANN_TARGET_NODE_LABELS, good_labels()),
        pair(ANN_TARGET_NODE_LABELS_AWS, good_labels()),
        option_pair(),
    ]
    .boxed()
}

/// Alone on a valid base: keeps it valid.
fn service_good_annotation() -> BoxedStrategy<(String, String)> {
    service_valid_annotation(5, 10)
}

/// Valid values for the keys the Service builder reads, alone or together (so the health-check
/// interval may be shorter than the timeout: a conflict).
fn service_plausible_annotation() -> BoxedStrategy<(String, String)> {
    service_valid_annotation(1, 120)
}

/// A valid value for one key the Ingress builder reads; the bounds as in
/// [`service_valid_annotation`].
fn ingress_valid_annotation(
    interval_min: u32,
    timeout_max: u32,
    ip: BoxedStrategy<String>,
) -> BoxedStrategy<(String, String)> {
    prop_oneof![
        pair(ANN_INTERNAL, good_bool()),
        pair(ing::SSL_REDIRECT, good_bool()),
        pair(ing::ALLOW_HTTP, good_bool()),
        pair(ing::ALLOW_HTTP_GCE, good_bool()),
        pair(ing::SOURCE_RANGES, good_cidr_list()),
        pair(ing::LOAD_BALANCER_IP, ip),
        pair(ing::HEALTHCHECK_PATH, good_path()),
        pair(ing::CONNECT_TIMEOUT, good_number(1, 3600)),
        pair(ing::REQUEST_TIMEOUT, good_number(1, 3600)),
        pair(ing::IDLE_TIMEOUT, good_number(1, 3600)),
        pair(ANN_HC_INTERVAL, good_number(interval_min, 300)),
        pair(ANN_HC_TIMEOUT, good_number(1, timeout_max)),
        pair(ANN_HC_HEALTHY, good_number(1, 10)),
        pair(ANN_HC_UNHEALTHY, good_number(1, 10)),
        pair(ANN_TARGET_NODE_LABELS, good_labels()),
        option_pair(),
    ]
    .boxed()
}

/// [`service_plausible_annotation`] for the Ingress builder.
fn ingress_plausible_annotation() -> BoxedStrategy<(String, String)> {
    ingress_valid_annotation(1, 120, good_ip())
}

fn ingress_bad_annotation() -> BoxedStrategy<(String, String)> {
    prop_oneof![
        pair(ANN_INTERNAL, bad_bool()),
        pair(ing::SSL_REDIRECT, bad_bool()),
        pair(ing::ALLOW_HTTP, bad_bool()),
        pair(ing::ALLOW_HTTP_GCE, bad_bool()),
        pair(ing::SOURCE_RANGES, bad_cidr_list()),
        pair(ing::LOAD_BALANCER_IP, bad_ip()),
        pair(ing::HEALTHCHECK_PATH, bad_path()),
        pair(ing::CONNECT_TIMEOUT, bad_number(3600)),
        pair(ing::REQUEST_TIMEOUT, bad_number(3600)),
        pair(ing::IDLE_TIMEOUT, bad_number(3600)),
        pair(ANN_HC_INTERVAL, bad_number(300)),
        pair(ANN_HC_TIMEOUT, bad_number(120)),
        pair(ANN_HC_HEALTHY, bad_number(10)),
        pair(ANN_HC_UNHEALTHY, bad_number(10)),
        pair(ANN_TARGET_NODE_LABELS, bad_labels()),
    ]
    .boxed()
}

fn ingress_good_annotation() -> BoxedStrategy<(String, String)> {
    ingress_valid_annotation(5, 10, prop_oneof![good_ip(), strs(&["", " "])].boxed())
}

/// One TCP port with a node port: a valid Service.
fn base_service(annotation: Option<(String, String)>) -> Service {
    Service {
        metadata: ObjectMeta {
            name: Some("web".into()),
            namespace: Some("default".into()),
            annotations: annotation.map(|(k, v)| BTreeMap::from([(k, v)])),
            ..Default::default()
        },
        spec: Some(ServiceSpec {
            type_: Some("LoadBalancer".into()),
            ports: Some(vec![ServicePort {
                port: 80,
                protocol: Some("TCP".into()),
                node_port: Some(30080),
                ..Default::default()
            }]),
            ..Default::default()
        }),
        status: None,
    }
}

/// A rule to a NodePort Service, with a valid certificate (so that every value of allow-http
/// and ssl-redirect is valid on its own).
fn base_ingress(annotation: Option<(String, String)>) -> IngressCase {
    let backend = IngressBackend {
        service: Some(IngressServiceBackend {
            name: "app".into(),
            port: Some(ServiceBackendPort { number: Some(80), name: None }),
        }),
        resource: None,
    };
    let app = Arc::new(Service {
        metadata: ObjectMeta { name: Some("app".into()), namespace: Some("shop".into()), ..Default::default() },
        spec: Some(ServiceSpec {
            type_: Some("NodePort".into()),
            ports: Some(vec![ServicePort {
                port: 80,
                protocol: Some("TCP".into()),
                node_port: Some(30080),
                ..Default::default()
            }]),
            ..Default::default()
        }),
        status: None,
    });
    let node = |name: &str, ip: &str, pool: &str| Node {
        metadata: ObjectMeta {
            name: Some(name.into()),
            labels: Some(BTreeMap::from([("pool".into(), pool.into())])),
            ..Default::default()
        },
        spec: None,
        status: Some(NodeStatus {
            addresses: Some(vec![NodeAddress { type_: "InternalIP".into(), address: ip.into() }]),
            ..Default::default()
        }),
    };
    IngressCase {
        ingress: Ingress {
            metadata: ObjectMeta {
                name: Some("web".into()),
                namespace: Some("shop".into()),
                annotations: annotation.map(|(k, v)| BTreeMap::from([(k, v)])),
                ..Default::default()
            },
            spec: Some(IngressSpec {
                rules: Some(vec![IngressRule {
                    host: Some("foo.example".into()),
                    http: Some(HTTPIngressRuleValue {
                        paths: vec![HTTPIngressPath { path: Some("/".into()), path_type: "Prefix".into(), backend }],
                    }),
                }]),
                tls: Some(vec![IngressTLS {
                    hosts: Some(vec!["foo.example".into()]),
                    secret_name: Some("good".into()),
                }]),
                ..Default::default()
            }),
            status: None,
        },
        services: vec![app],
        secrets: vec![secret("good", SecretKind::Valid)],
        last_good: Vec::new(),
        nodes: vec![node("n1", "10.0.0.1", "edge"), node("n2", "10.0.0.2", "core")],
        kind: ProviderKind::Memory,
        ports: (80, 443),
    }
}

/// The problems name `key` and no other annotation a builder reads.
fn all_name_exactly(problems: &[String], key: &str) -> Result<(), TestCaseError> {
    prop_assert!(!problems.is_empty());
    for p in problems {
        prop_assert!(mentions(p, &format!("annotation {key}")), "{p:?} does not name annotation {key}");
        for other in READ_KEYS.iter().filter(|k| **k != key) {
            prop_assert!(!mentions(p, &format!("annotation {other}")), "{p:?} names {other}, not only {key}");
        }
    }
    Ok(())
}

fn nodes_of_base() -> NodeSnapshot {
    NodeSnapshot::new(eligible(&base_ingress(None).nodes))
}

#[test]
fn the_bases_are_valid() {
    let memory = memory();
    let cfg = desired_config(ProviderKind::Memory);
    let spec = service::build_for(&base_service(None), &nodes_of_base(), &cfg, &memory.capabilities(), &memory);
    assert!(spec.is_ok(), "{spec:?}");
    let built = base_ingress(None).build(&memory).expect("valid");
    assert!(built.warnings.is_empty(), "{:?}", built.warnings);
    assert_eq!(built.spec.certificates.len(), 1);
}

/// A valid Service with one bad annotation value: invalid, and every problem names exactly it.
#[test]
fn one_bad_service_annotation_is_named() {
    let memory = memory();
    let caps = memory.capabilities();
    let cfg = desired_config(ProviderKind::Memory);
    check("one bad Service annotation", FEW_CASES, service_bad_annotation(), |(key, value)| {
        let svc = base_service(Some((key.clone(), value)));
        match service::build_for(&svc, &nodes_of_base(), &cfg, &caps, &memory) {
            Ok(spec) => prop_assert!(false, "accepted: {spec:?}"),
            Err(e) => all_name_exactly(&e.problems, &key)?,
        }
        Ok(())
    });
}

/// A valid Ingress with one bad annotation value: invalid, and every problem names exactly it.
#[test]
fn one_bad_ingress_annotation_is_named() {
    let memory = memory();
    check("one bad Ingress annotation", FEW_CASES, ingress_bad_annotation(), |(key, value)| {
        match base_ingress(Some((key.clone(), value))).build(&memory) {
            Ok(built) => prop_assert!(false, "accepted: {:?}", built.spec),
            Err(e) => all_name_exactly(&e.problems, &key)?,
        }
        Ok(())
    });
}

/// A valid Service with one good annotation value stays valid.
#[test]
fn one_good_service_annotation_is_accepted() {
    let memory = memory();
    let caps = memory.capabilities();
    let cfg = desired_config(ProviderKind::Memory);
    check("one good Service annotation", FEW_CASES, service_good_annotation(), |pair| {
        let svc = base_service(Some(pair));
        let built = service::build_for(&svc, &nodes_of_base(), &cfg, &caps, &memory);
        prop_assert!(built.is_ok(), "{built:?}");
        Ok(())
    });
}

/// A valid Ingress with one good annotation value stays valid, without warnings.
#[test]
fn one_good_ingress_annotation_is_accepted() {
    let memory = memory();
    check("one good Ingress annotation", FEW_CASES, ingress_good_annotation(), |pair| {
        match base_ingress(Some(pair)).build(&memory) {
            Ok(built) => prop_assert!(built.warnings.is_empty(), "{:?}", built.warnings),
            Err(e) => prop_assert!(false, "{e}"),
        }
        Ok(())
    });
}

/// Every annotation key in `keys.rs` is generated above: a new key cannot be missed.
#[test]
fn every_annotation_key_is_generated() {
    let known: Vec<&str> = READ_KEYS.iter().chain(OTHER_KEYS).chain(NOT_ANNOTATIONS).copied().collect();
    let values = include_str!("../keys.rs")
        .lines()
        .filter(|l| l.trim_start().starts_with("pub const ") && l.contains(": &str = \""))
        .filter_map(|l| l.split('"').nth(1));
    let mut seen = 0;
    for v in values.filter(|v| v.contains('/')) {
        seen += 1;
        assert!(known.contains(&v), "{v:?} (keys.rs) is in none of READ_KEYS, OTHER_KEYS, NOT_ANNOTATIONS");
    }
    assert!(seen >= known.len(), "keys.rs parsed badly: {seen} keys");
}

#[test]
fn mentions_needs_whole_tokens() {
    assert!(mentions("port 80/TCP is listed twice", "port 80"));
    assert!(!mentions("port 8080/TCP is listed twice", "port 80"));
    assert!(!mentions("rule 12 (any host) path 0", "rule 1"));
    assert!(mentions("annotation cloudlb.io/internal: \"x\"", "annotation cloudlb.io/internal"));
    assert!(!mentions("annotation cloudlb.io/internal-x: \"x\"", "annotation cloudlb.io/internal"));
    assert!(mentions("backend shop/app:80: no", "backend shop/app:"));
}
