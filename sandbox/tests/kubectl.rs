//! The sandbox through the real `kubectl` binary (skipped, with a printed reason, when
//! kubectl is absent and not required, see [`kubectl`]): apply twice, get (Table printing: EXTERNAL-IP <pending> then
//! the IP), get nodes, describe (events), patch, annotate, delete; an IngressClass + TLS
//! Secret + Ingress manifest applied and printed by `get ingress/ingressclass/secret`.

mod common;

use common::{bounded, client, start};
use k8s_openapi::api::core::v1::{Node, Secret, Service};
use k8s_openapi::api::networking::v1::Ingress;
use kube::Resource;
use kube::api::{Api, Patch, PatchParams, PostParams};
use kube::runtime::events::{Event, EventType, Recorder, Reporter};
use serde_json::json;
use std::path::PathBuf;

/// kubectl: `$KUBECTL`, else the first `kubectl` on `$PATH`. When it is absent the tests skip
/// with a message, unless `CLOUDLB_REQUIRE_KUBECTL` is set (`.ci/run` sets it when the machine
/// has kubectl), so a CI run cannot pass them without running them.
fn kubectl() -> Option<PathBuf> {
    let found = std::env::var_os("KUBECTL")
        .map(PathBuf::from)
        .filter(|p| p.is_file())
        .or_else(|| std::env::split_paths(&std::env::var_os("PATH")?).map(|d| d.join("kubectl")).find(|p| p.is_file()));
    if found.is_none() {
        assert!(
            std::env::var_os("CLOUDLB_REQUIRE_KUBECTL").is_none(),
            "CLOUDLB_REQUIRE_KUBECTL is set but kubectl is not found"
        );
        println!("skipping: kubectl is not on PATH (set KUBECTL to its path)");
    }
    found
}

struct Kubectl {
    kubeconfig: PathBuf,
    _dir: TempDir,
}

struct TempDir(PathBuf);
impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

impl Kubectl {
    /// A kubeconfig for `sb` in a fresh directory (also kubectl's HOME, so its cache is per test).
    fn for_sandbox(sb: &cloudlb_sandbox::Sandbox, test: &str) -> Kubectl {
        let dir = std::env::temp_dir().join(format!("sandbox-{test}-{}-{}", std::process::id(), sb.addr().port()));
        std::fs::create_dir_all(&dir).unwrap();
        let kubeconfig = dir.join("kubeconfig");
        sb.write_kubeconfig(&kubeconfig).unwrap();
        Kubectl { kubeconfig, _dir: TempDir(dir) }
    }

    async fn run(&self, args: &[&str], stdin: Option<&str>) -> (bool, String, String) {
        let mut cmd = tokio::process::Command::new(kubectl().expect("kubectl"));
        cmd.arg("--kubeconfig").arg(&self.kubeconfig).args(args);
        cmd.env("HOME", self._dir.0.as_os_str()); // keep kubectl's discovery cache per test
        cmd.stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped());
        let mut child = cmd.spawn().expect("kubectl spawns");
        if let Some(input) = stdin {
            use tokio::io::AsyncWriteExt;
            let mut i = child.stdin.take().unwrap();
            i.write_all(input.as_bytes()).await.unwrap();
        }
        drop(child.stdin.take());
        let out = child.wait_with_output().await.unwrap();
        let (o, e) =
            (String::from_utf8_lossy(&out.stdout).to_string(), String::from_utf8_lossy(&out.stderr).to_string());
        println!("$ kubectl {}\n{o}{e}", args.join(" "));
        (out.status.success(), o, e)
    }

    async fn ok(&self, args: &[&str], stdin: Option<&str>) -> String {
        let (ok, o, e) = self.run(args, stdin).await;
        assert!(ok, "kubectl {args:?} failed: {o}{e}");
        o
    }
}

const SVC: &str = "apiVersion: v1
kind: Service
metadata:
  name: web
  labels:
    app: web
spec:
  type: LoadBalancer
  selector:
    app: web
  ports:
  - name: http
    port: 80
    targetPort: 8080
  - name: https
    port: 443
";

#[tokio::test]
async fn kubectl_end_to_end() {
    if kubectl().is_none() {
        return;
    }
    bounded(async {
        let sb = start().await;
        let k = Kubectl::for_sandbox(&sb, "kubectl");

        let out = k.ok(&["apply", "-f", "-"], Some(SVC)).await;
        assert!(out.contains("service/web created"), "{out}");
        let out = k.ok(&["apply", "-f", "-"], Some(SVC)).await;
        assert!(out.contains("service/web unchanged") || out.contains("service/web configured"), "{out}");
        // a changed manifest is configured, node ports stay
        let c = client(&sb).await;
        let svcs: Api<Service> = Api::namespaced(c.clone(), "default");
        let before = svcs.get("web").await.unwrap();
        let out = k.ok(&["apply", "-f", "-"], Some(&SVC.replace("targetPort: 8080", "targetPort: 9090"))).await;
        assert!(out.contains("service/web configured"), "{out}");
        let after = svcs.get("web").await.unwrap();
        let np = |s: &Service| s.spec.as_ref().unwrap().ports.as_ref().unwrap().iter().map(|p| p.node_port).collect::<Vec<_>>();
        assert_eq!(np(&before), np(&after));

        let out = k.ok(&["get", "svc"], None).await;
        let header = out.lines().next().unwrap();
        for col in ["NAME", "TYPE", "CLUSTER-IP", "EXTERNAL-IP", "PORT(S)", "AGE"] {
            assert!(header.contains(col), "{out}");
        }
        let row = out.lines().find(|l| l.starts_with("web ")).unwrap();
        assert!(row.contains("LoadBalancer") && row.contains("<pending>"), "{out}");
        let ports = np(&after);
        assert!(row.contains(&format!("80:{}/TCP,443:{}/TCP", ports[0].unwrap(), ports[1].unwrap())), "{out}");

        svcs.patch_status("web", &PatchParams::default(), &Patch::Merge(json!({"status": {"loadBalancer": {"ingress": [{"ip": "203.0.113.10"}]}}})))
            .await
            .unwrap();
        let out = k.ok(&["get", "svc", "web", "-o", "wide"], None).await;
        assert!(out.contains("203.0.113.10") && out.contains("SELECTOR") && out.contains("app=web"), "{out}");

        // nodes
        let nodes: Api<Node> = Api::all(c.clone());
        let n: Node = serde_json::from_value(json!({
            "metadata": {"name": "node-a", "labels": {"node-role.kubernetes.io/control-plane": ""}},
            "status": {"conditions": [{"type": "Ready", "status": "True"}], "nodeInfo": {
                "kubeletVersion": "v1.33.0", "architecture": "amd64", "bootID": "", "containerRuntimeVersion": "containerd://2.0",
                "kernelVersion": "6.1", "kubeProxyVersion": "", "machineID": "", "operatingSystem": "linux", "osImage": "Debian", "systemUUID": ""}}
        }))
        .unwrap();
        nodes.create(&PostParams::default(), &n).await.unwrap();
        let out = k.ok(&["get", "nodes"], None).await;
        let row = out.lines().find(|l| l.starts_with("node-a")).unwrap();
        assert!(row.contains("Ready") && row.contains("control-plane") && row.contains("v1.33.0"), "{out}");

        // describe shows events recorded through events.k8s.io/v1
        let rec = Recorder::new(c.clone(), Reporter { controller: "cloudlb".into(), instance: Some("cloudlb-0".into()) });
        rec.publish(
            &Event {
                type_: EventType::Normal,
                reason: "EnsuredLoadBalancer".into(),
                note: Some("Ensured load balancer".into()),
                action: "Ensure".into(),
                secondary: None,
            },
            &after.object_ref(&()),
        )
        .await
        .unwrap();
        let out = k.ok(&["describe", "svc", "web"], None).await;
        assert!(out.contains("LoadBalancer Ingress:") && out.contains("203.0.113.10"), "{out}");
        assert!(out.contains("EnsuredLoadBalancer") && out.contains("Ensured load balancer"), "{out}");
        let out = k.ok(&["get", "events"], None).await;
        assert!(out.contains("service/web") && out.contains("EnsuredLoadBalancer"), "{out}");

        // patch (strategic by default), annotate, label
        k.ok(&["patch", "svc", "web", "-p", r#"{"spec":{"ports":[{"port":80,"targetPort":7070}]}}"#], None).await;
        let s = svcs.get("web").await.unwrap();
        assert_eq!(s.spec.as_ref().unwrap().ports.as_ref().unwrap().len(), 2);
        k.ok(&["patch", "svc", "web", "--type=merge", "-p", r#"{"metadata":{"labels":{"m":"1"}}}"#], None).await;
        k.ok(&["patch", "svc", "web", "--type=json", "-p", r#"[{"op":"add","path":"/metadata/labels/j","value":"2"}]"#], None).await;
        k.ok(&["annotate", "svc", "web", "cloudlb.io/test=yes"], None).await;
        let s = svcs.get("web").await.unwrap();
        assert_eq!(s.metadata.annotations.as_ref().unwrap().get("cloudlb.io/test").map(String::as_str), Some("yes"));
        assert_eq!(s.metadata.labels.as_ref().unwrap().get("j").map(String::as_str), Some("2"));
        let out = k.ok(&["get", "svc", "web", "-o", "jsonpath={.status.loadBalancer.ingress[0].ipMode}"], None).await;
        assert_eq!(out, "VIP");
        let (ok, _, err) = k.run(&["get", "svc", "missing"], None).await;
        assert!(!ok && err.contains("NotFound") && err.contains("\"missing\" not found"), "{err}");

        let out = k.ok(&["delete", "svc", "web"], None).await;
        assert!(out.contains("service \"web\" deleted"), "{out}");
        let out = k.ok(&["get", "svc"], None).await;
        assert!(!out.contains("web"), "{out}");
        sb.shutdown().await;
    })
    .await
}

const INGRESS_MANIFEST: &str = "apiVersion: networking.k8s.io/v1
kind: IngressClass
metadata:
  name: cloudlb
  annotations:
    ingressclass.kubernetes.io/is-default-class: \"true\"
spec:
  controller: cloudlb.io/ingress-controller
---
apiVersion: v1
kind: Secret
metadata:
  name: web-tls
type: kubernetes.io/tls
stringData:
  tls.crt: |
    -----BEGIN CERTIFICATE-----
    c2FuZGJveA==
    -----END CERTIFICATE-----
  tls.key: |
    -----BEGIN PRIVATE KEY-----
    c2FuZGJveA==
    -----END PRIVATE KEY-----
---
apiVersion: networking.k8s.io/v1
kind: Ingress
metadata:
  name: web
spec:
  tls:
  - hosts: [app.example.com]
    secretName: web-tls
  rules:
  - host: app.example.com
    http:
      paths:
      - path: /
        pathType: Prefix
        backend:
          service:
            name: web
            port:
              number: 80
  - host: api.example.com
    http:
      paths:
      - path: /v1
        pathType: Exact
        backend:
          service:
            name: api
            port:
              name: http
";

/// The header's column names and the row starting with `name`, split on runs of 2+ spaces
/// (kubectl's column padding; `80, 443` keeps its single space).
fn table(out: &str, name: &str) -> (Vec<String>, Vec<String>) {
    let split =
        |l: &str| l.split("  ").map(str::trim).filter(|c| !c.is_empty()).map(str::to_string).collect::<Vec<_>>();
    let header = split(out.lines().next().unwrap_or_default());
    let row = out.lines().find(|l| l.starts_with(&format!("{name} "))).map(split).unwrap_or_default();
    (header, row)
}

#[tokio::test]
async fn kubectl_ingress_class_and_tls_secret() {
    if kubectl().is_none() {
        return;
    }
    bounded(async {
        let sb = start().await;
        let k = Kubectl::for_sandbox(&sb, "kubectl-ingress");
        let out = k.ok(&["apply", "-f", "-"], Some(INGRESS_MANIFEST)).await;
        for created in ["ingressclass.networking.k8s.io/cloudlb created", "secret/web-tls created", "ingress.networking.k8s.io/web created"] {
            assert!(out.contains(created), "{out}");
        }
        let out = k.ok(&["apply", "-f", "-"], Some(INGRESS_MANIFEST)).await;
        assert!(out.contains("ingressclass.networking.k8s.io/cloudlb unchanged"), "{out}");
        assert!(out.contains("ingress.networking.k8s.io/web unchanged"), "{out}");

        // the Secret's stringData landed in data, and the default class was admitted
        let c = client(&sb).await;
        let secret = Api::<Secret>::namespaced(c.clone(), "default").get("web-tls").await.unwrap();
        let data = secret.data.unwrap();
        assert!(String::from_utf8_lossy(&data["tls.crt"].0).starts_with("-----BEGIN CERTIFICATE-----"));
        assert!(secret.string_data.is_none());
        let ings: Api<Ingress> = Api::namespaced(c.clone(), "default");
        assert_eq!(ings.get("web").await.unwrap().spec.unwrap().ingress_class_name.as_deref(), Some("cloudlb"));

        let out = k.ok(&["get", "ingress"], None).await;
        let (header, row) = table(&out, "web");
        assert_eq!(header, ["NAME", "CLASS", "HOSTS", "ADDRESS", "PORTS", "AGE"], "{out}");
        // ADDRESS is empty until the controller writes status
        assert_eq!(&row[..4], ["web", "cloudlb", "app.example.com,api.example.com", "80, 443"], "{out}");
        ings.patch_status(
            "web",
            &PatchParams::default(),
            &Patch::Merge(json!({"status": {"loadBalancer": {"ingress": [{"ip": "203.0.113.7"}, {"hostname": "lb.example.com"}]}}})),
        )
        .await
        .unwrap();
        let out = k.ok(&["get", "ing", "web"], None).await;
        let (_, row) = table(&out, "web");
        assert_eq!(&row[..5], ["web", "cloudlb", "app.example.com,api.example.com", "203.0.113.7,lb.example.com", "80, 443"], "{out}");

        let out = k.ok(&["get", "ingressclass"], None).await;
        let (header, row) = table(&out, "cloudlb");
        assert_eq!(header, ["NAME", "CONTROLLER", "PARAMETERS", "AGE"], "{out}");
        assert_eq!(&row[..3], ["cloudlb", "cloudlb.io/ingress-controller", "<none>"], "{out}");

        let out = k.ok(&["get", "secret"], None).await;
        let (header, row) = table(&out, "web-tls");
        assert_eq!(header, ["NAME", "TYPE", "DATA", "AGE"], "{out}");
        assert_eq!(&row[..3], ["web-tls", "kubernetes.io/tls", "2"], "{out}");

        // a rejected manifest: kubectl shows the apiserver's 422 (worded from its details)
        let bad = INGRESS_MANIFEST.split("---").last().unwrap().replace("name: web\n", "name: bad\n").replace("pathType: Exact", "pathType: Regex");
        let (ok, _, err) = k.run(&["apply", "-f", "-"], Some(&bad)).await;
        assert!(!ok, "{err}");
        assert!(err.contains("The Ingress \"bad\" is invalid") && err.contains("spec.rules[1].http.paths[0].pathType"), "{err}");

        let out = k.ok(&["delete", "-f", "-"], Some(INGRESS_MANIFEST)).await;
        assert!(out.contains("ingress.networking.k8s.io \"web\" deleted"), "{out}");
        let out = k.ok(&["get", "ingress,ingressclass,secret"], None).await;
        assert!(!out.contains("web"), "{out}");
        sb.shutdown().await;
    })
    .await
}
