//! The install manifests: the Helm chart (`deploy/helm/cloudlb`, rendered with each provider's
//! values in `ci/`) and the kustomize base and overlays (`deploy/base`, `deploy/overlays/*`).
//!
//! Each rendering is checked the same way:
//! - the real tools accept it: `helm lint` and `helm template` for the chart, `kubectl kustomize`
//!   for the base and overlays;
//! - every flag of the cloudlb container is one `cloudlb run --help` lists, and the whole
//!   argument list parses (`cloudlb <args> --help` exits 0 only when every flag and value does);
//! - the cloudlb container runs with the restricted security context (seccomp RuntimeDefault,
//!   no privilege escalation, drop ALL, read-only root, non-root), except in hostNetwork mode,
//!   where NET_BIND_SERVICE is the only capability added and /metrics listens on loopback;
//! - the probes hit /healthz and /readyz on the port `--metrics-addr` binds (with hostNetwork on
//!   its loopback host, otherwise on the pod IP); no Service points at a /metrics on loopback, a
//!   ServiceMonitor scrapes a port of the Service it selects, and the chart refuses one for a
//!   /metrics on loopback;
//! - the Grafana dashboard ConfigMap (off by default) holds `deploy/grafana`'s dashboard;
//! - RBAC: the Lease is granted only in a namespaced Role, by its name (`get`, `update`; `create`
//!   apart), in the namespace the controller uses, for the name it uses; no ClusterRole grants
//!   leases; no verb beyond what the code calls; the bindings name the pod's ServiceAccount;
//! - the IngressClass names cloudlb's controller; per-provider ServiceAccount annotations
//!   (IRSA, Workload Identity) and flags are there;
//! - every rendered object of a kind the sandbox API serves is created there and read back
//!   (what was sent is a subset of what is stored), the Deployment's pod template as a Pod too;
//!   the kinds it does not serve are listed in the test output;
//! - for the memory values and the local overlay, the rendered arguments start the real
//!   controller against the sandbox: it becomes ready and takes the Lease the Role names, in
//!   the Role's namespace (and with the memory values, a Service in the watched namespace
//!   gets an address from the configured pool).
//!
//! Helm and kubectl: `$HELM` / `$KUBECTL`, else the first on `$PATH`. When one is absent its
//! tests print why and pass, unless `CLOUDLB_REQUIRE_HELM` / `CLOUDLB_REQUIRE_KUBECTL` is set
//! (`.ci/run` sets them when it installed Helm and found kubectl), so CI cannot skip them.

mod support;

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::Service;
use kube::api::{Api, DynamicObject, PostParams};
use kube::core::GroupVersionKind;
use kube::discovery::{Discovery, Scope};
use kube::runtime::wait::await_condition;
use serde_json::{Value, json};
use support::Cluster;
use tokio::io::{AsyncBufReadExt, BufReader};

/// Longest one helm or kubectl invocation may take (the machine may be busy compiling).
const TOOL_TIMEOUT: Duration = Duration::from_secs(180);
/// Longest the controller may take to start, become ready and take its Lease.
const START_TIMEOUT: Duration = Duration::from_secs(90);

const PROVIDERS: &[&str] = &["aws", "gcp", "local", "memory"];
const OVERLAYS: &[&str] = &["aws", "gcp", "local", "sidecar"];

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// `$VAR`, else `name` on `$PATH`; `None` (with a printed reason) when absent and not required.
fn tool(name: &str, var: &str, require: &str) -> Option<PathBuf> {
    let found = std::env::var_os(var)
        .map(PathBuf::from)
        .filter(|p| p.is_file())
        .or_else(|| std::env::split_paths(&std::env::var_os("PATH")?).map(|d| d.join(name)).find(|p| p.is_file()));
    if found.is_none() {
        assert!(std::env::var_os(require).is_none(), "{require} is set but {name} is not found (set {var} or PATH)");
        println!("skipping: {name} is not on PATH (set {var} to its path; {require}=1 makes this a failure)");
    }
    found
}

fn helm() -> Option<PathBuf> {
    tool("helm", "HELM", "CLOUDLB_REQUIRE_HELM")
}

fn kubectl() -> Option<PathBuf> {
    tool("kubectl", "KUBECTL", "CLOUDLB_REQUIRE_KUBECTL")
}

/// Runs a tool to completion within [`TOOL_TIMEOUT`]; its HOME and caches in `home`.
async fn run(program: &Path, args: &[&str], home: &Path) -> (bool, String, String) {
    let mut cmd = tokio::process::Command::new(program);
    cmd.args(args)
        .current_dir(repo())
        .env("HOME", home)
        .env("XDG_CACHE_HOME", home.join("cache"))
        .env("XDG_CONFIG_HOME", home.join("config"))
        .env("XDG_DATA_HOME", home.join("data"))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    let child = cmd.spawn().unwrap_or_else(|e| panic!("{} does not start: {e}", program.display()));
    let out = tokio::time::timeout(TOOL_TIMEOUT, child.wait_with_output())
        .await
        .unwrap_or_else(|_| panic!("{} {args:?} did not finish within {TOOL_TIMEOUT:?}", program.display()))
        .expect("tool output");
    let (o, e) = (String::from_utf8_lossy(&out.stdout).into_owned(), String::from_utf8_lossy(&out.stderr).into_owned());
    (out.status.success(), o, e)
}

async fn run_ok(program: &Path, args: &[&str], home: &Path) -> String {
    let (ok, o, e) = run(program, args, home).await;
    assert!(ok, "{} {args:?} failed:\n{o}\n{e}", program.display());
    o
}

/// The objects of a multi-document YAML stream (empty documents dropped).
fn parse_docs(yaml: &str) -> Vec<Value> {
    serde_yaml::Deserializer::from_str(yaml)
        .map(|d| <Value as serde::Deserialize>::deserialize(d).expect("rendered YAML parses"))
        .filter(|v| !v.is_null())
        .collect()
}

/// What one rendering must contain beyond the common checks.
#[derive(Default)]
struct Expect {
    what: String,
    provider: &'static str,
    host_network: bool,
    /// The local provider in the node's network namespace: NET_BIND_SERVICE added (and held
    /// as uid 0, the only way Kubernetes grants it), nothing else.
    net_bind: bool,
    /// ServiceAccount annotation key that must be present.
    sa_annotation: Option<&'static str>,
    /// Flags (prefixes such as `--aws-vpc-id=`) the cloudlb container must have.
    flags: Vec<&'static str>,
    /// Kinds that must be rendered.
    kinds: Vec<&'static str>,
    /// The sidecar overlay: a container running the CCM without its service controller.
    ccm_sidecar: bool,
}

fn kind(o: &Value) -> &str {
    o["kind"].as_str().unwrap_or_default()
}

fn name(o: &Value) -> &str {
    o["metadata"]["name"].as_str().unwrap_or_default()
}

fn str_list(v: &Value) -> Vec<String> {
    v.as_array().map(|a| a.iter().filter_map(|s| s.as_str().map(String::from)).collect()).unwrap_or_default()
}

/// The value of `--flag=value` (or `--flag value`) in `args`.
fn flag<'a>(args: &'a [String], f: &str) -> Option<&'a str> {
    let eq = format!("{f}=");
    args.iter().enumerate().find_map(|(i, a)| {
        a.strip_prefix(&eq).or_else(|| (a == f).then(|| args.get(i + 1).map(String::as_str).unwrap_or("")))
    })
}

/// The option names `cloudlb run --help` defines.
async fn run_flags(home: &Path) -> BTreeSet<String> {
    let help = run_ok(Path::new(env!("CARGO_BIN_EXE_cloudlb")), &["run", "--help"], home).await;
    let flags: BTreeSet<String> = help
        .lines()
        .map(str::trim_start)
        .filter_map(|l| l.strip_prefix("-h, ").or(Some(l)))
        .filter(|l| l.starts_with("--"))
        .filter_map(|l| l.split([' ', '=', '\t']).next().map(String::from))
        .collect();
    assert!(
        flags.contains("--provider") && flags.contains("--metrics-addr"),
        "cloudlb run --help lists no flags: {help}"
    );
    flags
}

/// The checks every rendering gets. Returns the cloudlb container's arguments.
async fn check_rendering(objs: &[Value], e: &Expect, help_flags: &BTreeSet<String>, home: &Path) -> Vec<String> {
    let what = &e.what;
    let kinds: BTreeSet<&str> = objs.iter().map(kind).collect();
    for k in &e.kinds {
        assert!(kinds.contains(k), "{what}: no {k} rendered (kinds: {kinds:?})");
    }
    let workloads: Vec<&Value> = objs.iter().filter(|o| kind(o) == "Deployment").collect();
    assert_eq!(workloads.len(), 1, "{what}: one Deployment expected");
    let deploy = workloads[0];
    let ns = deploy["metadata"]["namespace"].as_str().expect("the Deployment has a namespace");
    let pod = &deploy["spec"]["template"];
    let spec = &pod["spec"];
    let containers = spec["containers"].as_array().expect("containers");
    let c =
        containers.iter().find(|c| c["name"] == "cloudlb").unwrap_or_else(|| panic!("{what}: no cloudlb container"));
    let args = str_list(&c["args"]);
    assert_eq!(args.first().map(String::as_str), Some("run"), "{what}: args start with `run`: {args:?}");

    // Flags: each one a real `cloudlb run` flag, and the whole list parses with its values.
    for a in args.iter().skip(1).filter(|a| a.starts_with("--")) {
        let f = a.split('=').next().unwrap_or(a);
        assert!(help_flags.contains(f), "{what}: {f} is not a `cloudlb run` flag (cloudlb run --help)");
    }
    let mut parse: Vec<&str> = args.iter().map(String::as_str).collect();
    parse.push("--help");
    let (ok, _, err) = run(Path::new(env!("CARGO_BIN_EXE_cloudlb")), &parse, home).await;
    assert!(ok, "{what}: cloudlb rejects the rendered arguments {args:?}: {err}");
    assert_eq!(flag(&args, "--provider"), Some(e.provider), "{what}: provider");
    for f in &e.flags {
        assert!(args.iter().any(|a| a.starts_with(f)), "{what}: no {f} in {args:?}");
    }

    // Security context: restricted, or hostNetwork with NET_BIND_SERVICE only.
    let sc = &c["securityContext"];
    let psc = &spec["securityContext"];
    let host_network = spec["hostNetwork"] == true;
    assert_eq!(host_network, e.host_network, "{what}: hostNetwork");
    assert_eq!(sc["allowPrivilegeEscalation"], false, "{what}: allowPrivilegeEscalation");
    assert_eq!(sc["readOnlyRootFilesystem"], true, "{what}: readOnlyRootFilesystem");
    assert_ne!(sc["privileged"], true, "{what}: privileged");
    assert_eq!(str_list(&sc["capabilities"]["drop"]), ["ALL"], "{what}: capabilities.drop");
    let seccomp = if sc["seccompProfile"].is_null() { &psc["seccompProfile"] } else { &sc["seccompProfile"] };
    assert_eq!(seccomp["type"], "RuntimeDefault", "{what}: seccomp");
    let added = str_list(&sc["capabilities"]["add"]);
    let run_as_user = sc["runAsUser"].as_i64().or_else(|| psc["runAsUser"].as_i64());
    if e.net_bind {
        assert!(host_network, "{what}: NET_BIND_SERVICE is for the node's ports (hostNetwork)");
        assert_eq!(added, ["NET_BIND_SERVICE"], "{what}: NET_BIND_SERVICE and nothing else is added");
    } else {
        assert!(added.is_empty(), "{what}: no capability may be added: {added:?}");
        let non_root = if sc["runAsNonRoot"].is_null() { &psc["runAsNonRoot"] } else { &sc["runAsNonRoot"] };
        assert_eq!(*non_root, true, "{what}: runAsNonRoot");
        assert_ne!(run_as_user, Some(0), "{what}: runs as root");
    }

    // Metrics and probes: the probes reach the address --metrics-addr binds.
    let metrics_addr = flag(&args, "--metrics-addr").unwrap_or("0.0.0.0:8080");
    let (host, port) = metrics_addr.rsplit_once(':').expect("--metrics-addr is host:port");
    let port: i64 = port.parse().expect("metrics port");
    let ports = c["ports"].as_array().cloned().unwrap_or_default();
    let container_port = |p: &Value| -> i64 {
        match p {
            Value::Number(n) => n.as_i64().unwrap_or(-1),
            Value::String(s) => {
                ports.iter().find(|q| q["name"] == *s).and_then(|q| q["containerPort"].as_i64()).unwrap_or(-1)
            }
            _ => -1,
        }
    };
    for (probe, path) in [("livenessProbe", "/healthz"), ("readinessProbe", "/readyz")] {
        let get = &c[probe]["httpGet"];
        assert_eq!(get["path"], path, "{what}: {probe} path");
        assert_eq!(container_port(&get["port"]), port, "{what}: {probe} port vs --metrics-addr {metrics_addr}");
        if host_network {
            // The kubelet probes from the node's network namespace, which the pod shares.
            assert_eq!(get["host"], host, "{what}: {probe} must go to where /metrics listens on the node");
        } else {
            // In the pod's own namespace, a host would be reached from the node's: the pod IP
            // (the default) is the only address of the pod the kubelet can reach.
            assert!(get["host"].is_null(), "{what}: {probe} goes to {} instead of the pod IP", get["host"]);
        }
    }
    let loopback = host == "127.0.0.1" || host == "[::1]";
    if host_network {
        assert!(
            loopback,
            "{what}: with hostNetwork /metrics must not listen on the node's interfaces (--metrics-addr={metrics_addr})"
        );
    }

    // ServiceAccount and its annotations.
    let sa_name = spec["serviceAccountName"].as_str().expect("serviceAccountName");
    let sa = objs
        .iter()
        .find(|o| kind(o) == "ServiceAccount" && name(o) == sa_name)
        .unwrap_or_else(|| panic!("{what}: ServiceAccount {sa_name} not rendered"));
    if let Some(key) = e.sa_annotation {
        assert!(sa["metadata"]["annotations"][key].is_string(), "{what}: ServiceAccount lacks {key}");
    }

    // RBAC: the Lease in a namespaced Role by name, in the namespace and under the name used.
    let ccm_role = |o: &Value| name(o).contains("cloud-controller-manager");
    let leader_elect = flag(&args, "--leader-elect") != Some("false");
    let lease_ns = flag(&args, "--leader-election-namespace").unwrap_or(ns);
    let lease_name = flag(&args, "--leader-election-id").unwrap_or("cloudlb");
    let allowed: BTreeMap<&str, &[&str]> = BTreeMap::from([
        ("services", &["list", "watch", "patch"][..]),
        ("services/status", &["patch"][..]),
        ("ingresses", &["list", "watch", "patch"][..]),
        ("ingresses/status", &["patch"][..]),
        ("ingressclasses", &["list", "watch"][..]),
        ("secrets", &["list", "watch"][..]),
        ("nodes", &["list", "watch"][..]),
        ("events", &["create", "patch"][..]),
        ("leases", &["get", "update", "create"][..]),
    ]);
    let mut lease_rules = Vec::new();
    for role in objs.iter().filter(|o| matches!(kind(o), "Role" | "ClusterRole") && !ccm_role(o)) {
        for rule in role["rules"].as_array().cloned().unwrap_or_default() {
            let verbs = str_list(&rule["verbs"]);
            for r in str_list(&rule["resources"]) {
                let ok = allowed.get(r.as_str()).unwrap_or_else(|| panic!("{what}: {} grants {r}", name(role)));
                for v in &verbs {
                    assert!(
                        ok.contains(&v.as_str()),
                        "{what}: {} grants {v} on {r}, which cloudlb never calls",
                        name(role)
                    );
                }
                if r == "leases" {
                    assert_eq!(kind(role), "Role", "{what}: leases granted by ClusterRole {}", name(role));
                    lease_rules
                        .push((role["metadata"]["namespace"].as_str().unwrap_or_default().to_string(), rule.clone()));
                }
            }
        }
    }
    if leader_elect {
        let named = lease_rules.iter().find(|(_, r)| !str_list(&r["resourceNames"]).is_empty());
        let (role_ns, rule) = named.unwrap_or_else(|| panic!("{what}: no Role grants the Lease by name"));
        assert_eq!(role_ns, lease_ns, "{what}: the Lease Role is in {role_ns}, the controller uses {lease_ns}");
        assert_eq!(str_list(&rule["resourceNames"]), [lease_name], "{what}: the Role names another Lease");
        let verbs: BTreeSet<String> = str_list(&rule["verbs"]).into_iter().collect();
        assert_eq!(
            verbs,
            BTreeSet::from(["get".to_string(), "update".to_string()]),
            "{what}: verbs on the named Lease"
        );
        assert!(
            lease_rules.iter().any(|(n, r)| n == lease_ns && str_list(&r["verbs"]) == ["create"]),
            "{what}: no rule lets the controller create its Lease"
        );
        for (_, r) in &lease_rules {
            if str_list(&r["resourceNames"]).is_empty() {
                assert_eq!(str_list(&r["verbs"]), ["create"], "{what}: leases without a name: only create");
            }
        }
    }
    for b in objs.iter().filter(|o| matches!(kind(o), "RoleBinding" | "ClusterRoleBinding")) {
        for s in b["subjects"].as_array().cloned().unwrap_or_default() {
            assert_eq!(
                (s["name"].as_str(), s["namespace"].as_str()),
                (Some(sa_name), Some(ns)),
                "{what}: {} binds",
                name(b)
            );
        }
        let role_ref = &b["roleRef"];
        if !role_ref["name"].as_str().unwrap_or_default().starts_with("system:")
            && role_ref["name"] != "extension-apiserver-authentication-reader"
        {
            assert!(
                objs.iter().any(|o| kind(o) == role_ref["kind"] && name(o) == role_ref["name"]),
                "{what}: {} refers to a role that is not rendered",
                name(b)
            );
        }
    }

    // IngressClass: cloudlb's controller name.
    let controller_name = flag(&args, "--ingress-controller-name").unwrap_or("cloudlb.io/ingress-controller");
    for ic in objs.iter().filter(|o| kind(o) == "IngressClass") {
        assert_eq!(ic["spec"]["controller"], controller_name, "{what}: IngressClass {}", name(ic));
    }

    // Metrics Service and PodDisruptionBudget select the pods.
    let pod_labels = pod["metadata"]["labels"].as_object().cloned().unwrap_or_default();
    let selects = |sel: &Value| {
        sel.as_object().is_some_and(|m| !m.is_empty() && m.iter().all(|(k, v)| pod_labels.get(k) == Some(v)))
    };
    for svc in objs.iter().filter(|o| kind(o) == "Service") {
        // On the node's loopback, the pod IPs a Service sends to have no /metrics.
        assert!(!(host_network && loopback), "{what}: Service {} points at a /metrics on loopback", name(svc));
        assert!(selects(&svc["spec"]["selector"]), "{what}: Service {} selects no cloudlb pod", name(svc));
        assert!(
            svc["spec"]["ports"].as_array().into_iter().flatten().any(|p| container_port(&p["targetPort"]) == port),
            "{what}: Service {} does not reach the metrics port {port}",
            name(svc)
        );
    }
    for sm in objs.iter().filter(|o| kind(o) == "ServiceMonitor") {
        let sel = &sm["spec"]["selector"]["matchLabels"];
        let svc = objs.iter().find(|o| {
            kind(o) == "Service"
                && sel.as_object().is_some_and(|m| m.iter().all(|(k, v)| o["metadata"]["labels"][k] == *v))
        });
        let svc = svc.unwrap_or_else(|| panic!("{what}: ServiceMonitor {} selects no rendered Service", name(sm)));
        let names = |list: &Value, key: &str| -> Vec<String> {
            list.as_array().into_iter().flatten().filter_map(|x| x[key].as_str().map(String::from)).collect()
        };
        let scraped = names(&sm["spec"]["endpoints"], "port");
        let ports = names(&svc["spec"]["ports"], "name");
        assert!(
            !scraped.is_empty() && scraped.iter().all(|p| ports.contains(p)),
            "{what}: ServiceMonitor scrapes {scraped:?} of {ports:?}"
        );
    }
    for pdb in objs.iter().filter(|o| kind(o) == "PodDisruptionBudget") {
        assert!(selects(&pdb["spec"]["selector"]["matchLabels"]), "{what}: PDB selects no cloudlb pod");
    }
    if deploy["spec"]["replicas"].as_i64().unwrap_or(1) > 1 {
        assert!(leader_elect, "{what}: several replicas without leader election");
    }

    if e.ccm_sidecar {
        let ccm = containers.iter().find(|c| c["name"] != "cloudlb").expect("a cloud-controller-manager container");
        assert!(
            str_list(&ccm["args"]).contains(&"--controllers=*,-service".to_string()),
            "{what}: CCM keeps its service controller"
        );
        assert!(
            args.contains(&"--manage-unclassed".to_string()),
            "{what}: cloudlb beside a CCM needs --manage-unclassed"
        );
    }
    args
}

/// Creates every object of a kind the sandbox serves and reads it back; the Deployment's pod
/// template also as a Pod. Returns the kinds it does not serve.
async fn apply_to_sandbox(cluster: &Cluster, objs: &[Value], what: &str) -> BTreeSet<String> {
    let discovery = Discovery::new(cluster.client.clone()).run().await.expect("sandbox discovery");
    // Namespaces first: those rendered, and those objects are in but none renders (Helm's
    // release namespace, a watched namespace). Then the objects; then each Deployment's pod
    // template as a Pod.
    let namespaces: BTreeSet<String> =
        objs.iter().filter_map(|o| o["metadata"]["namespace"].as_str().map(String::from)).collect();
    let implicit: BTreeSet<&str> = namespaces
        .iter()
        .map(String::as_str)
        .filter(|n| !objs.iter().any(|o| kind(o) == "Namespace" && name(o) == *n))
        .collect();
    let mut all: Vec<Value> = objs.iter().filter(|o| kind(o) == "Namespace").cloned().collect();
    all.extend(implicit.iter().map(|n| json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": n}})));
    all.extend(objs.iter().filter(|o| kind(o) != "Namespace").cloned());
    for d in objs.iter().filter(|o| kind(o) == "Deployment") {
        let mut meta = d["spec"]["template"]["metadata"].clone();
        meta["name"] = json!(format!("{}-template", name(d)));
        meta["namespace"] = d["metadata"]["namespace"].clone();
        all.push(json!({"apiVersion": "v1", "kind": "Pod", "metadata": meta, "spec": d["spec"]["template"]["spec"]}));
    }

    let mut unserved = BTreeSet::new();
    for o in all {
        let (group, version) = match o["apiVersion"].as_str().unwrap_or_default().split_once('/') {
            Some((g, v)) => (g.to_string(), v.to_string()),
            None => (String::new(), o["apiVersion"].as_str().unwrap_or_default().to_string()),
        };
        let gvk = GroupVersionKind::gvk(&group, &version, kind(&o));
        let Some((ar, caps)) = discovery.resolve_gvk(&gvk) else {
            unserved.insert(format!("{}.{}", kind(&o), if group.is_empty() { "core" } else { group.as_str() }));
            continue;
        };
        let api: Api<DynamicObject> = match (caps.scope, o["metadata"]["namespace"].as_str()) {
            (Scope::Namespaced, Some(ns)) => Api::namespaced_with(cluster.client.clone(), ns, &ar),
            (Scope::Namespaced, None) => panic!("{what}: namespaced {} {} has no namespace", kind(&o), name(&o)),
            (Scope::Cluster, _) => Api::all_with(cluster.client.clone(), &ar),
        };
        let obj: DynamicObject = serde_json::from_value(o.clone()).expect("object");
        match api.create(&PostParams::default(), &obj).await {
            Ok(_) => {}
            // A namespace objects are in but none renders may exist already (kube-system).
            Err(kube::Error::Api(s)) if s.code == 409 && kind(&o) == "Namespace" && implicit.contains(name(&o)) => {}
            Err(err) => panic!("{what}: the sandbox refuses {} {}: {err}", kind(&o), name(&o)),
        }
        let got = serde_json::to_value(api.get(name(&o)).await.expect("read back")).expect("json");
        for part in ["spec", "rules", "roleRef", "subjects", "data"] {
            if !o[part].is_null() {
                assert_subset(&o[part], &got[part], &format!("{what}: {} {} .{part}", kind(&o), name(&o)));
            }
        }
        for part in ["labels", "annotations"] {
            if !o["metadata"][part].is_null() {
                assert_subset(
                    &o["metadata"][part],
                    &got["metadata"][part],
                    &format!("{what}: {} {} metadata", kind(&o), name(&o)),
                );
            }
        }
    }
    println!("{what}: the sandbox does not serve {unserved:?}; those objects were checked as rendered only");
    unserved
}

/// `sent` is contained in `got` (maps: every key, recursively; lists: same length, element-wise).
fn assert_subset(sent: &Value, got: &Value, at: &str) {
    match (sent, got) {
        (Value::Object(a), Value::Object(b)) => {
            for (k, v) in a {
                assert_subset(v, b.get(k).unwrap_or(&Value::Null), &format!("{at}.{k}"));
            }
        }
        (Value::Array(a), Value::Array(b)) => {
            assert_eq!(a.len(), b.len(), "{at}: list length changed: {sent} -> {got}");
            for (i, (x, y)) in a.iter().zip(b).enumerate() {
                assert_subset(x, y, &format!("{at}[{i}]"));
            }
        }
        _ => assert_eq!(sent, got, "{at}: not stored as sent"),
    }
}

/// Runs cloudlb with the rendered arguments against the sandbox (metrics moved to a free
/// loopback port) until it is ready and holds the Lease its Role names. Returns the process.
async fn run_rendered(cluster: &Cluster, args: &[String], objs: &[Value], what: &str) -> tokio::process::Child {
    let mut argv: Vec<String> = args.iter().filter(|a| !a.starts_with("--metrics-addr")).cloned().collect();
    assert_eq!(flag(args, "--log-format"), Some("json"), "{what}: the test reads the JSON log");
    argv.push("--metrics-addr=127.0.0.1:0".into());
    // In a pod, the Lease's namespace defaults to the pod's (read from the service account
    // mount): the Deployment's namespace. Out of a pod it would be `default`, so say it.
    if flag(args, "--leader-election-namespace").is_none() {
        let deploy = objs.iter().find(|o| kind(o) == "Deployment").expect("deployment");
        argv.push(format!(
            "--leader-election-namespace={}",
            deploy["metadata"]["namespace"].as_str().unwrap_or_default()
        ));
    }
    argv.push(format!("--kubeconfig={}", cluster.kubeconfig.display()));
    let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_cloudlb"))
        .args(&argv)
        .env("POD_NAME", "cloudlb-deploy-test")
        .env("RUST_LOG", "info")
        .env_remove("CLOUDLB_PROVIDER")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("cloudlb starts");
    let mut lines = BufReader::new(child.stderr.take().expect("stderr")).lines();
    let deadline = tokio::time::Instant::now() + START_TIMEOUT;
    let mut log = Vec::new();
    let addr: std::net::SocketAddr = loop {
        let line = tokio::time::timeout_at(deadline, lines.next_line())
            .await
            .unwrap_or_else(|_| panic!("{what}: cloudlb {argv:?} did not start; log: {log:#?}"))
            .expect("read log")
            .unwrap_or_else(|| panic!("{what}: cloudlb {argv:?} exited; log: {log:#?}"));
        if let Ok(v) = serde_json::from_str::<Value>(&line)
            && v["message"] == "serving metrics and health"
            && let Some(a) = v["addr"].as_str()
        {
            break a.parse().expect("metrics addr");
        }
        log.push(line);
    };
    // Keep draining the log so the child never blocks on a full pipe.
    tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
    let http = support::plain_http::Client::new();
    loop {
        if let Ok((200, _)) = http.get(addr, "/readyz").await {
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "{what}: cloudlb not ready within {START_TIMEOUT:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // The Lease it holds is the one its Role names, where the Role is.
    let (role_ns, lease) = objs
        .iter()
        .filter(|o| kind(o) == "Role")
        .flat_map(|r| r["rules"].as_array().cloned().unwrap_or_default().into_iter().map(move |x| (r.clone(), x)))
        .find_map(|(r, rule)| {
            let names = str_list(&rule["resourceNames"]);
            (str_list(&rule["resources"]) == ["leases"]
                && !names.is_empty()
                && !name(&r).contains("cloud-controller-manager"))
            .then(|| (r["metadata"]["namespace"].as_str().unwrap_or_default().to_string(), names[0].clone()))
        })
        .unwrap_or_else(|| panic!("{what}: no Role names a Lease"));
    let leases: Api<Lease> = Api::namespaced(cluster.client.clone(), &role_ns);
    let held = await_condition(leases, &lease, |l: Option<&Lease>| {
        l.and_then(|l| l.spec.as_ref()?.holder_identity.as_deref())
            .is_some_and(|h| h.starts_with("cloudlb-deploy-test_"))
    });
    tokio::time::timeout_at(deadline, held)
        .await
        .unwrap_or_else(|_| {
            panic!("{what}: the controller does not hold Lease {role_ns}/{lease} (the one its Role names)")
        })
        .expect("watch lease");
    child
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chart_lints_renders_and_applies_for_each_provider() {
    let Some(helm) = helm() else { return };
    let home = tempfile::tempdir().expect("temp home");
    let chart = "deploy/helm/cloudlb";
    let help_flags = run_flags(home.path()).await;
    let version = run_ok(&helm, &["version", "--short"], home.path()).await;
    println!("helm {}", version.trim());

    // A ServiceMonitor for a /metrics on the node's loopback could never scrape: refused, saying
    // what to do instead.
    let local = format!("{chart}/ci/local-values.yaml");
    let refused = ["template", "cloudlb", chart, "-f", local.as_str(), "--set", "metrics.serviceMonitor.enabled=true"];
    let (ok, _, err) = run(&helm, &refused, home.path()).await;
    assert!(!ok && err.contains("metrics.bindAddress"), "a ServiceMonitor on loopback must be refused: {err}");

    // The defaults: restricted, two replicas, Lease Role, PDB, anti-affinity, local provider.
    let mut renders = vec![("defaults".to_string(), None)];
    renders.extend(PROVIDERS.iter().map(|p| (p.to_string(), Some(format!("{chart}/ci/{p}-values.yaml")))));
    for (label, values) in renders {
        let what = format!("chart with {label} values");
        let mut lint = vec!["lint", chart, "--strict"];
        let mut template = vec!["template", "cloudlb", chart, "--namespace", "cloudlb-system"];
        if let Some(v) = &values {
            lint.extend(["-f", v.as_str()]);
            template.extend(["-f", v.as_str()]);
        }
        let out = run_ok(&helm, &lint, home.path()).await;
        assert!(out.contains("0 chart(s) failed"), "{what}: helm lint: {out}");
        let objs = parse_docs(&run_ok(&helm, &template, home.path()).await);
        let provider =
            if label == "defaults" { "local" } else { *PROVIDERS.iter().find(|p| **p == label).expect("provider") };
        let mut e = Expect {
            what: what.clone(),
            provider,
            kinds: vec![
                "ServiceAccount",
                "ClusterRole",
                "ClusterRoleBinding",
                "Role",
                "RoleBinding",
                "Deployment",
                "Service",
            ],
            ..Default::default()
        };
        match label.as_str() {
            "defaults" => e.kinds.extend(["PodDisruptionBudget", "IngressClass"]),
            "aws" => {
                e.sa_annotation = Some("eks.amazonaws.com/role-arn");
                e.flags = vec!["--aws-region=", "--aws-vpc-id=", "--aws-subnets="];
                e.kinds.extend(["PodDisruptionBudget", "IngressClass"]);
            }
            "gcp" => {
                e.sa_annotation = Some("iam.gke.io/gcp-service-account");
                e.flags = vec!["--gcp-project=", "--gcp-region=", "--gcp-network="];
                e.kinds.extend(["PodDisruptionBudget", "IngressClass"]);
            }
            "local" => {
                e.host_network = true;
                e.net_bind = true;
                e.flags = vec!["--local-address-pool=", "--metrics-addr=127.0.0.1:"];
                // /metrics on the node's loopback: no Service could reach it.
                e.kinds.retain(|k| *k != "Service");
            }
            "memory" => {
                e.flags = vec!["--namespace=team-a", "--memory-ip-pool=", "--controllers=service"];
                e.kinds.extend(["ServiceMonitor", "ConfigMap"]);
            }
            _ => unreachable!(),
        }
        let args = check_rendering(&objs, &e, &help_flags, home.path()).await;
        if label == "defaults" {
            let deploy = objs.iter().find(|o| kind(o) == "Deployment").expect("deployment");
            let anti = &deploy["spec"]["template"]["spec"]["affinity"]["podAntiAffinity"];
            assert!(!anti.is_null(), "{what}: no pod anti-affinity");
            assert_eq!(deploy["spec"]["replicas"], 2, "{what}: replicas");
        }
        let dashboards: Vec<&Value> = objs
            .iter()
            .filter(|o| kind(o) == "ConfigMap" && o["metadata"]["labels"]["grafana_dashboard"] == "1")
            .collect();
        if label == "memory" {
            // metrics.grafanaDashboard.enabled: the dashboard of deploy/grafana, as it is.
            assert_eq!(dashboards.len(), 1, "{what}: one dashboard ConfigMap");
            let shipped: Value = serde_json::from_str(
                &std::fs::read_to_string(repo().join("deploy/grafana/cloudlb-dashboard.json")).expect("dashboard"),
            )
            .expect("dashboard JSON");
            let data = dashboards[0]["data"]["cloudlb-dashboard.json"].as_str().expect("dashboard data");
            let rendered: Value = serde_json::from_str(data).expect("the ConfigMap holds JSON");
            assert_eq!(rendered, shipped, "{what}: the ConfigMap's dashboard is deploy/grafana's");
        } else {
            assert!(dashboards.is_empty(), "{what}: the dashboard ConfigMap is off by default");
        }
        if label == "memory" {
            // --namespace: Services and Ingresses by a Role there, no cluster-wide Service rights.
            let role = objs.iter().find(|o| kind(o) == "Role" && o["metadata"]["namespace"] == "team-a");
            assert!(role.is_some(), "{what}: no Role in the watched namespace");
            let cluster_role = objs.iter().find(|o| kind(o) == "ClusterRole").expect("ClusterRole");
            let resources: Vec<String> = cluster_role["rules"]
                .as_array()
                .into_iter()
                .flatten()
                .flat_map(|r| str_list(&r["resources"]))
                .collect();
            assert_eq!(
                resources,
                ["nodes"],
                "{what}: without ingress and with --namespace only Nodes are cluster-wide"
            );
        }
        // A sandbox of its own per rendering: the same names come back in each.
        let cluster = Cluster::start().await;
        let unserved = apply_to_sandbox(&cluster, &objs, &what).await;
        assert!(!unserved.contains("Service.core") && !unserved.contains("Pod.core"), "{what}: {unserved:?}");

        if label == "memory" {
            // The rendered arguments run: ready, the Role's Lease held, a Service in the watched
            // namespace gets an address from the configured pool.
            let mut child = run_rendered(&cluster, &args, &objs, &what).await;
            let services: Api<Service> = Api::namespaced(cluster.client.clone(), "team-a");
            let svc: Service = serde_json::from_value(json!({
                "apiVersion": "v1", "kind": "Service",
                "metadata": {"name": "web"},
                "spec": {"type": "LoadBalancer", "loadBalancerClass": "cloudlb.io/lb",
                         "ports": [{"port": 80, "protocol": "TCP", "nodePort": 30080}]}
            }))
            .expect("service");
            cluster.add_node("deploy-node-1", "10.0.0.1", &[]).await;
            services.create(&PostParams::default(), &svc).await.expect("create service");
            let addressed =
                await_condition(services, "web", |s: Option<&Service>| s.and_then(support::external_ip).is_some());
            let svc = tokio::time::timeout(START_TIMEOUT, addressed)
                .await
                .unwrap_or_else(|_| panic!("{what}: the Service got no address within {START_TIMEOUT:?}"))
                .expect("watch")
                .expect("service");
            let ip = support::external_ip(&svc).expect("ip");
            assert!(ip.starts_with("198.18.0."), "{what}: address {ip} is not from --memory-ip-pool=198.18.0.0/24");
            let _ = child.kill().await;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kustomize_base_and_overlays_build_and_apply() {
    let Some(kubectl) = kubectl() else { return };
    let home = tempfile::tempdir().expect("temp home");
    let help_flags = run_flags(home.path()).await;
    let mut dirs = vec![("base".to_string(), "deploy/base".to_string())];
    dirs.extend(OVERLAYS.iter().map(|o| (o.to_string(), format!("deploy/overlays/{o}"))));
    for (label, dir) in dirs {
        let what = format!("kustomize {dir}");
        let objs = parse_docs(&run_ok(&kubectl, &["kustomize", &dir], home.path()).await);
        let mut e = Expect {
            what: what.clone(),
            kinds: vec![
                "Namespace",
                "ServiceAccount",
                "ClusterRole",
                "ClusterRoleBinding",
                "Role",
                "RoleBinding",
                "Deployment",
                "IngressClass",
            ],
            ..Default::default()
        };
        match label.as_str() {
            "base" => e.provider = "aws",
            "aws" => {
                e.provider = "aws";
                e.sa_annotation = Some("eks.amazonaws.com/role-arn");
                e.flags = vec!["--aws-region=", "--aws-vpc-id="];
            }
            "gcp" => {
                e.provider = "gcp";
                e.sa_annotation = Some("iam.gke.io/gcp-service-account");
                e.flags = vec!["--gcp-project=", "--gcp-region=", "--gcp-network="];
            }
            "local" => {
                e.provider = "local";
                e.host_network = true;
                e.net_bind = true;
                e.flags = vec!["--local-address-pool="];
            }
            "sidecar" => {
                e.provider = "aws";
                e.ccm_sidecar = true;
                e.host_network = true;
                e.flags = vec!["--manage-unclassed", "--aws-vpc-id="];
            }
            _ => unreachable!(),
        }
        let args = check_rendering(&objs, &e, &help_flags, home.path()).await;
        if label == "local" {
            let deploy = objs.iter().find(|o| kind(o) == "Deployment").expect("deployment");
            assert_eq!(deploy["spec"]["replicas"], 1, "{what}: one replica");
        }
        let cluster = Cluster::start().await;
        let unserved = apply_to_sandbox(&cluster, &objs, &what).await;
        assert!(
            !unserved.contains("IngressClass.networking.k8s.io") && !unserved.contains("Namespace.core"),
            "{what}: {unserved:?}"
        );
        if label == "local" {
            let mut child = run_rendered(&cluster, &args, &objs, &what).await;
            let _ = child.kill().await;
        }
    }
}
