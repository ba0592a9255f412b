//! Every command-line flag, in one place. Bad values exit non-zero with a message saying what
//! to fix (clap's parsers plus the validators below).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Parser, Subcommand, ValueEnum};
use cloudlb_provider::Protocol;
use cloudlb_provider_local::{
    DEFAULT_MAX_TCP_CONNECTIONS, DEFAULT_MAX_TCP_CONNECTIONS_PER_SOURCE, DEFAULT_MAX_UDP_FLOWS,
    DEFAULT_MAX_UDP_FLOWS_TOTAL,
};
use ipnet::IpNet;

use crate::keys::{DEFAULT_CLASS, DEFAULT_INGRESS_CONTROLLER};

#[derive(Parser, Debug)]
#[command(name = "cloudlb", version = crate::VERSION, about = "Load balancers for Kubernetes Services of type LoadBalancer")]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Run the controller against a Kubernetes API (in-cluster, --kubeconfig or ~/.kube/config).
    Run(RunArgs),
    /// Start an in-memory Kubernetes API on 127.0.0.1, run the controller against it and create
    /// a demo Service: try cloudlb with no cluster and no cloud account.
    Sandbox(SandboxArgs),
    /// List (and, without --dry-run, delete) the cloud load balancers tagged for this cluster
    /// whose Service or Ingress no longer exists or no longer claims them.
    Gc(GcArgs),
    /// Print what the next ensure of one object (namespace/name) or of every claimed one would
    /// change in the cloud (create, update, delete per call), changing nothing.
    Plan(PlanArgs),
}

#[derive(Copy, Clone, Debug, PartialEq, Eq, ValueEnum)]
pub enum ProviderKind {
    /// cloudlb forwards the traffic itself, on addresses from --local-address-pool (kind, k3s,
    /// bare metal, trying it out).
    Local,
    /// AWS Network Load Balancers (ELBv2) in --aws-vpc-id.
    Aws,
    /// Google Compute Engine network load balancers (regional backend services) in
    /// --gcp-project / --gcp-region / --gcp-network.
    Gcp,
    /// In-process load balancers with addresses from --memory-ip-pool (tests, benchmarks).
    Memory,
}

/// A front end: which objects get load balancers.
#[derive(Copy, Clone, Debug, PartialEq, Eq, ValueEnum)]
pub enum ControllerKind {
    /// Services of type LoadBalancer (L4).
    Service,
    /// Ingresses whose IngressClass is ours (L7).
    Ingress,
}

#[derive(Copy, Clone, Debug, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}

#[derive(Args, Debug, Clone)]
pub struct ControllerArgs {
    /// Which provider makes the load balancers.
    #[arg(long, value_enum, default_value = "local", env = "CLOUDLB_PROVIDER")]
    pub provider: ProviderKind,
    /// Name of this cluster: part of every cloud resource's name and ownership tags.
    #[arg(long, default_value = "kubernetes", value_parser = parse_cluster_name)]
    pub cluster_name: String,
    /// The spec.loadBalancerClass this controller claims.
    #[arg(long, default_value = DEFAULT_CLASS, value_parser = parse_class)]
    pub load_balancer_class: String,
    /// Also claim LoadBalancer Services without a class (sidecar of a cloud-controller-manager
    /// started with --controllers=*,-service).
    #[arg(long)]
    pub manage_unclassed: bool,
    /// Which controllers run (comma-separated).
    #[arg(long, value_enum, value_delimiter = ',', default_value = "service,ingress")]
    pub controllers: Vec<ControllerKind>,
    /// The spec.controller of the IngressClasses this controller claims.
    #[arg(long, default_value = DEFAULT_INGRESS_CONTROLLER, value_parser = parse_class)]
    pub ingress_controller_name: String,
    /// Port of the Ingress load balancers' HTTP listener [default: 80; 8080 for `sandbox` with the
    /// local provider, which then runs unprivileged].
    #[arg(long, value_parser = clap::value_parser!(u16).range(1..))]
    pub ingress_http_port: Option<u16>,
    /// Port of the Ingress load balancers' HTTPS listener [default: 443; 8443 for `sandbox` with
    /// the local provider].
    #[arg(long, value_parser = clap::value_parser!(u16).range(1..))]
    pub ingress_https_port: Option<u16>,
    /// Only watch Services and Ingresses in this namespace (default: all namespaces).
    #[arg(long)]
    pub namespace: Option<String>,
    /// Services reconciled at once; one slow cloud call never holds up the others.
    #[arg(long, default_value_t = 64, value_parser = clap::value_parser!(u16).range(1..=4096))]
    pub concurrency: u16,
    /// Client-side cap on Kubernetes API requests per second (0: none; the apiserver's API
    /// Priority and Fairness and its 429 Retry-After are honoured either way).
    #[arg(long, default_value_t = 0.0, value_parser = parse_qps)]
    pub kube_api_qps: f64,
    /// Requests allowed at once above --kube-api-qps [default: 2 x qps].
    #[arg(long)]
    pub kube_api_burst: Option<u32>,
    /// Sweep the cloud for load balancers of this cluster that nothing claims any more and delete
    /// them, this often (e.g. 1h); off unless set. `cloudlb gc --dry-run` shows what it would do.
    #[arg(long, value_parser = parse_duration_min_1s)]
    pub gc_interval: Option<Duration>,
    /// Load balancers younger than this are never swept (an ensure may be making one for an
    /// object created a moment ago).
    #[arg(long, default_value = "10m", value_parser = parse_duration)]
    pub gc_min_age: Duration,
    /// How often each load balancer is checked against the cloud for drift (e.g. 10m, 90s, 1h).
    #[arg(long, default_value = "10m", value_parser = parse_duration_min_1s)]
    pub resync_period: Duration,
    /// How soon a load balancer is looked at again while one of its targets fails the cloud's
    /// health checks or the cloud is still provisioning it (providers that report health: aws);
    /// a healthy one is looked at with its drift check (--resync-period).
    #[arg(long, default_value = "30s", value_parser = parse_duration_min_1s)]
    pub target_health_recheck: Duration,
    /// Longest one pass over one object may take (cloud calls included); a pass that takes longer
    /// is stopped and retried with backoff, and one that cannot be stopped fails /healthz.
    #[arg(long, default_value = "5m", value_parser = parse_duration_min_1s)]
    pub reconcile_timeout: Duration,
    /// Where /metrics, /healthz and /readyz are served [default: 0.0.0.0:8080 for `run`,
    /// 127.0.0.1:0 (a free port) for `sandbox`].
    #[arg(long)]
    pub metrics_addr: Option<SocketAddr>,
    /// Run only while holding a Lease, so several replicas can run with one active.
    #[arg(long, default_value_t = true, action = clap::ArgAction::Set)]
    pub leader_elect: bool,
    /// Namespace of the leader-election Lease [default: this pod's namespace, else default].
    #[arg(long)]
    pub leader_election_namespace: Option<String>,
    /// Name of the leader-election Lease; controllers with different classes need different ones.
    #[arg(long, default_value = "cloudlb")]
    pub leader_election_id: String,
    /// Log format (the level comes from RUST_LOG, default info).
    #[arg(long, value_enum, default_value = "text")]
    pub log_format: LogFormat,
    #[command(flatten)]
    pub local: LocalArgs,
    #[command(flatten)]
    pub aws: AwsArgs,
    #[command(flatten)]
    pub gcp: GcpArgs,
    #[command(flatten)]
    pub memory: MemoryArgs,
}

#[derive(Args, Debug, Clone)]
pub struct LocalArgs {
    /// Local provider: CIDRs addresses are allocated from (comma-separated). The default is on
    /// Linux's loopback: bindable without privileges, reachable from this host only.
    #[arg(long, default_value = "127.240.0.0/16", value_parser = parse_cidr, value_delimiter = ',')]
    pub local_address_pool: Vec<IpNet>,
    /// Local provider: how long connections to a removed node may finish.
    #[arg(long, default_value = "30s", value_parser = parse_duration)]
    pub local_drain_timeout: Duration,
    /// Local provider: UDP flows idle this long are forgotten.
    #[arg(long, default_value = "60s", value_parser = parse_duration_min_1s)]
    pub local_udp_idle_timeout: Duration,
    /// Local provider: timeout of a connection to a node.
    #[arg(long, default_value = "5s", value_parser = parse_duration)]
    pub local_connect_timeout: Duration,
    /// Local provider: TCP connections without a byte either way for this long are closed.
    #[arg(long, default_value = "1h", value_parser = parse_duration_min_1s)]
    pub local_tcp_idle_timeout: Duration,
    /// Local provider: most TCP connections open at once per load balancer; more are reset.
    #[arg(long, default_value_t = DEFAULT_MAX_TCP_CONNECTIONS, value_parser = parse_count)]
    pub local_max_tcp_connections: usize,
    /// Local provider: most TCP connections open at once per client address per load balancer.
    #[arg(long, default_value_t = DEFAULT_MAX_TCP_CONNECTIONS_PER_SOURCE, value_parser = parse_count)]
    pub local_max_tcp_connections_per_source: usize,
    /// Local provider: most UDP flows open at once per load balancer; datagrams for more are dropped.
    #[arg(long, default_value_t = DEFAULT_MAX_UDP_FLOWS, value_parser = parse_count)]
    pub local_max_udp_flows: usize,
    /// Local provider: most UDP flows open at once in total (all load balancers).
    #[arg(long, default_value_t = DEFAULT_MAX_UDP_FLOWS_TOTAL, value_parser = parse_count)]
    pub local_max_udp_flows_total: usize,
}

#[derive(Args, Debug, Clone)]
pub struct AwsArgs {
    /// AWS provider: the region (else $AWS_REGION).
    #[arg(long, env = "AWS_REGION")]
    pub aws_region: Option<String>,
    /// AWS provider: the VPC the load balancers live in (required with --provider aws).
    #[arg(long)]
    pub aws_vpc_id: Option<String>,
    /// AWS provider: subnets for every load balancer (comma-separated); default: discovered by
    /// the kubernetes.io/role/elb (or internal-elb) and kubernetes.io/cluster/<name> tags.
    #[arg(long, value_delimiter = ',')]
    pub aws_subnets: Option<Vec<String>>,
    /// AWS provider: another endpoint for ELBv2 and EC2 (an emulator such as moto).
    #[arg(long)]
    pub aws_endpoint_url: Option<String>,
    /// AWS provider: the account's quota of inbound rules per security group; a load balancer
    /// needing more (source ranges x ports) is refused before anything is made.
    #[arg(long, default_value_t = 60, value_parser = clap::value_parser!(u16).range(1..))]
    pub aws_security_group_rules_quota: u16,
    /// AWS provider: give every load balancer the cluster's backend security group and open the
    /// nodes' security groups to it on the node ports and health-check ports the load balancers
    /// use (as the AWS Load Balancer Controller does). `false` for clusters whose nodes' security
    /// groups are managed by hand: no backend group and no node rule is made.
    #[arg(long, default_value_t = true, action = clap::ArgAction::Set, value_name = "BOOL")]
    pub aws_manage_node_security_groups: bool,
    /// AWS provider: one node security group rule per protocol for this whole port range (the
    /// NodePort range, e.g. 30000-32767) instead of one per node port. Fewer rules (a security
    /// group has 60 by default), but every node port in the range is open to the load balancers.
    #[arg(long, value_name = "FROM-TO", value_parser = parse_port_range)]
    pub aws_node_port_range_rule: Option<(u16, u16)>,
}

/// `FROM-TO`, two ports with FROM <= TO.
fn parse_port_range(s: &str) -> Result<(u16, u16), String> {
    let bad = || format!("{s:?} is not a port range; use FROM-TO, e.g. 30000-32767");
    let (a, b) = s.split_once('-').ok_or_else(bad)?;
    let (a, b) = (a.trim().parse::<u16>().map_err(|_| bad())?, b.trim().parse::<u16>().map_err(|_| bad())?);
    if a == 0 || a > b {
        return Err(bad());
    }
    Ok((a, b))
}

#[derive(Args, Debug, Clone)]
pub struct GcpArgs {
    /// GCP provider: the project the load balancers live in (else $GOOGLE_CLOUD_PROJECT).
    #[arg(long, env = "GOOGLE_CLOUD_PROJECT")]
    pub gcp_project: Option<String>,
    /// GCP provider: the region (else $CLOUDSDK_COMPUTE_REGION).
    #[arg(long, env = "CLOUDSDK_COMPUTE_REGION")]
    pub gcp_region: Option<String>,
    /// GCP provider: the VPC network of the nodes (a name such as `default`, or a link).
    #[arg(long)]
    pub gcp_network: Option<String>,
    /// GCP provider: the subnetwork of internal load balancers (a name or a link).
    #[arg(long)]
    pub gcp_subnetwork: Option<String>,
    /// GCP provider: network tags of the nodes; the firewall rules apply only to instances with
    /// one of them (comma-separated; default: every instance of the network).
    #[arg(long, value_delimiter = ',')]
    pub gcp_node_tags: Option<Vec<String>>,
    /// GCP provider: another Compute endpoint (the `gce-fake`); credentials are then anonymous.
    #[arg(long)]
    pub gcp_endpoint_url: Option<String>,
}

#[derive(Args, Debug, Clone)]
pub struct MemoryArgs {
    /// Memory provider: addresses are allocated from this CIDR.
    #[arg(long, default_value = "198.18.0.0/15", value_parser = parse_cidr)]
    pub memory_ip_pool: IpNet,
    /// Memory provider: latency added to every call (e.g. 50ms).
    #[arg(long, default_value = "0s", value_parser = parse_duration)]
    pub memory_latency: Duration,
    /// Memory provider: probability (0 to 1) that a call fails with a retryable error.
    #[arg(long, default_value_t = 0.0, value_parser = parse_rate)]
    pub memory_failure_rate: f64,
    /// Memory provider: the first N calls fail with a retryable error (deterministic faults).
    #[arg(long, default_value_t = 0)]
    pub memory_fail_first: u64,
    /// Memory provider: protocols it accepts (comma-separated), to test capability checks.
    #[arg(long, default_value = "TCP,UDP", value_parser = parse_protocol, value_delimiter = ',')]
    pub memory_protocols: Vec<Protocol>,
    /// Memory provider: keep state in this file, so it survives restarts like a cloud would.
    #[arg(long)]
    pub memory_state_file: Option<PathBuf>,
}

#[derive(Args, Debug)]
pub struct RunArgs {
    /// Kubeconfig file (default: in-cluster config, else $KUBECONFIG, else ~/.kube/config).
    #[arg(long, env = "KUBECONFIG")]
    pub kubeconfig: Option<PathBuf>,
    #[command(flatten)]
    pub controller: ControllerArgs,
}

#[derive(Args, Debug)]
pub struct GcArgs {
    /// Only list what would be deleted.
    #[arg(long)]
    pub dry_run: bool,
    #[command(flatten)]
    pub run: RunArgs,
}

#[derive(Args, Debug)]
pub struct PlanArgs {
    /// `namespace/name` of one Service or Ingress (default: all that are claimed).
    pub object: Option<String>,
    #[command(flatten)]
    pub run: RunArgs,
}

#[derive(Args, Debug)]
pub struct SandboxArgs {
    /// Port of the sandbox API on 127.0.0.1 (0 picks a free one).
    #[arg(long, default_value_t = 0)]
    pub port: u16,
    /// Where to write the kubeconfig for kubectl.
    #[arg(long, default_value = "cloudlb-sandbox.kubeconfig")]
    pub kubeconfig_out: PathBuf,
    /// Do not create the demo Node and Service.
    #[arg(long)]
    pub no_demo: bool,
    /// Exit after the demo Service has its address (for scripts and CI).
    #[arg(long)]
    pub exit_after_demo: bool,
    #[command(flatten)]
    pub controller: ControllerArgs,
}

/// `500ms`, `30s`, `10m`, `2h`, or a bare number of seconds.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let s = s.trim();
    let (num, unit) = match s.find(|c: char| !c.is_ascii_digit() && c != '.') {
        Some(i) => (&s[..i], &s[i..]),
        None => (s, "s"),
    };
    let n: f64 = num.parse().map_err(|_| format!("{s:?} is not a duration (use e.g. 500ms, 30s, 10m, 1h)"))?;
    let secs = match unit {
        "ms" => n / 1000.0,
        "s" => n,
        "m" => n * 60.0,
        "h" => n * 3600.0,
        _ => return Err(format!("{s:?}: unknown unit {unit:?} (use ms, s, m or h)")),
    };
    Duration::try_from_secs_f64(secs).map_err(|_| format!("{s:?} is out of range"))
}

fn parse_duration_min_1s(s: &str) -> Result<Duration, String> {
    let d = parse_duration(s)?;
    if d < Duration::from_secs(1) {
        return Err(format!("{s:?} is too short; use at least 1s"));
    }
    Ok(d)
}

fn parse_count(s: &str) -> Result<usize, String> {
    match s.parse::<usize>() {
        Ok(n) if n >= 1 => Ok(n),
        _ => Err(format!("{s:?} is not a whole number of at least 1")),
    }
}

fn parse_qps(s: &str) -> Result<f64, String> {
    match s.parse::<f64>() {
        Ok(q) if q.is_finite() && q >= 0.0 => Ok(q),
        _ => Err(format!("{s:?} is not a number of requests per second (0 for no limit)")),
    }
}

impl ControllerArgs {
    /// `(qps, burst)` of the client-side API limit, `None` when there is none.
    pub fn api_limit(&self) -> Option<(f64, u32)> {
        (self.kube_api_qps > 0.0).then(|| {
            let burst =
                self.kube_api_burst.unwrap_or_else(|| (self.kube_api_qps * 2.0).ceil().min(f64::from(u32::MAX)) as u32);
            (self.kube_api_qps, burst.max(1))
        })
    }
}

fn parse_rate(s: &str) -> Result<f64, String> {
    match s.parse::<f64>() {
        Ok(r) if (0.0..=1.0).contains(&r) => Ok(r),
        _ => Err(format!("{s:?} is not a probability from 0 to 1")),
    }
}

fn parse_cidr(s: &str) -> Result<IpNet, String> {
    s.parse::<IpNet>().map(|n| n.trunc()).map_err(|_| format!("{s:?} is not a CIDR (e.g. 198.18.0.0/15)"))
}

fn parse_protocol(s: &str) -> Result<Protocol, String> {
    match s.trim().to_ascii_uppercase().as_str() {
        "TCP" => Ok(Protocol::Tcp),
        "UDP" => Ok(Protocol::Udp),
        "SCTP" => Ok(Protocol::Sctp),
        _ => Err(format!("{s:?} is not a protocol (TCP, UDP or SCTP)")),
    }
}

/// Lowercase letters, digits and dashes, 1-40 chars: it ends up in cloud names and tags.
fn parse_cluster_name(s: &str) -> Result<String, String> {
    let ok = !s.is_empty()
        && s.len() <= 40
        && s.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
        && !s.starts_with('-')
        && !s.ends_with('-');
    if ok { Ok(s.to_string()) } else { Err(format!("{s:?}: use 1-40 lowercase letters, digits and dashes")) }
}

/// A qualified name like `example.com/lb` (what the apiserver accepts for loadBalancerClass and
/// an IngressClass's controller).
fn parse_class(s: &str) -> Result<String, String> {
    let valid_part =
        |p: &str| !p.is_empty() && p.len() <= 63 && p.chars().all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c));
    match s.split_once('/') {
        Some((prefix, name)) if !prefix.is_empty() && prefix.len() <= 253 && valid_part(name) => Ok(s.to_string()),
        _ => Err(format!("{s:?} is not a load balancer class; use a domain-prefixed name like example.com/lb")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_security_group_rules_quota_defaults_to_awss() {
        let cli = Cli::try_parse_from(["cloudlb", "run", "--provider", "aws"]).expect("parses");
        let Command::Run(run) = cli.command else { panic!("run") };
        assert_eq!(
            usize::from(run.controller.aws.aws_security_group_rules_quota),
            cloudlb_provider_aws::config::DEFAULT_SECURITY_GROUP_RULES_QUOTA
        );
    }

    #[test]
    fn node_security_group_flags() {
        let cli = Cli::try_parse_from(["cloudlb", "run", "--provider", "aws"]).expect("parses");
        let Command::Run(run) = cli.command else { panic!("run") };
        assert!(run.controller.aws.aws_manage_node_security_groups, "on by default");
        assert_eq!(run.controller.aws.aws_node_port_range_rule, None);
        let cli = Cli::try_parse_from([
            "cloudlb",
            "run",
            "--aws-manage-node-security-groups=false",
            "--aws-node-port-range-rule",
            "30000-32767",
        ])
        .expect("parses");
        let Command::Run(run) = cli.command else { panic!("run") };
        assert!(!run.controller.aws.aws_manage_node_security_groups);
        assert_eq!(run.controller.aws.aws_node_port_range_rule, Some((30000, 32767)));
        assert!(parse_port_range("32767-30000").is_err());
        assert!(parse_port_range("30000").is_err());
    }

    #[test]
    fn durations() {
        assert_eq!(parse_duration("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_duration("10m"), Ok(Duration::from_secs(600)));
        assert_eq!(parse_duration("2"), Ok(Duration::from_secs(2)));
        assert!(parse_duration("10 minutes").is_err());
        assert!(parse_duration("x").is_err());
        assert!(parse_duration_min_1s("10ms").is_err());
    }

    #[test]
    fn flags_validate() {
        assert!(parse_cluster_name("prod-eu-1").is_ok());
        assert!(parse_cluster_name("Prod").is_err());
        assert!(parse_cluster_name("").is_err());
        assert!(parse_class("cloudlb.io/lb").is_ok());
        assert!(parse_class("lb").is_err());
        assert!(parse_rate("1.5").is_err());
        assert!(parse_cidr("10.0.0.0/33").is_err());
        assert_eq!(parse_protocol("udp"), Ok(Protocol::Udp));
        assert_eq!(parse_count("10000"), Ok(10_000));
        assert!(parse_count("0").is_err());
        assert!(parse_count("-1").is_err());
    }

    #[test]
    fn local_flag_defaults_are_the_local_providers() {
        let Ok(Cli { command: Command::Run(run) }) = Cli::try_parse_from(["cloudlb", "run"]) else {
            panic!("`cloudlb run` parses");
        };
        let (l, d) = (&run.controller.local, cloudlb_provider_local::LocalConfig::default());
        assert_eq!(l.local_udp_idle_timeout, d.udp_idle_timeout);
        assert_eq!(l.local_tcp_idle_timeout, d.tcp_idle_timeout);
        assert_eq!(l.local_max_tcp_connections, d.max_tcp_connections);
        assert_eq!(l.local_max_tcp_connections_per_source, d.max_tcp_connections_per_source);
        assert_eq!(l.local_max_udp_flows, d.max_udp_flows);
        assert_eq!(l.local_max_udp_flows_total, d.max_udp_flows_total);
    }

    #[test]
    fn cli_parses_and_rejects() {
        let ok = Cli::try_parse_from(["cloudlb", "run", "--provider", "memory", "--concurrency", "8"]);
        assert!(ok.is_ok(), "{ok:?}");
        let ok = Cli::try_parse_from([
            "cloudlb",
            "run",
            "--provider",
            "aws",
            "--aws-vpc-id",
            "vpc-1",
            "--aws-subnets",
            "a,b",
        ]);
        assert!(ok.is_ok(), "{ok:?}");
        let ok = Cli::try_parse_from([
            "cloudlb",
            "run",
            "--provider",
            "gcp",
            "--gcp-project",
            "p",
            "--gcp-region",
            "us-central1",
            "--gcp-network",
            "default",
            "--gcp-node-tags",
            "a,b",
        ]);
        assert!(ok.is_ok(), "{ok:?}");
        for bad in [
            vec!["cloudlb", "run", "--provider", "nope"],
            vec!["cloudlb", "run", "--concurrency", "0"],
            vec!["cloudlb", "run", "--resync-period", "soon"],
            vec!["cloudlb", "run", "--memory-failure-rate", "2"],
            vec!["cloudlb", "run", "--controllers", "service,gateway"],
            vec!["cloudlb", "run", "--ingress-http-port", "0"],
            vec!["cloudlb", "run", "--ingress-controller-name", "nginx"],
            vec!["cloudlb", "run", "--kube-api-qps", "fast"],
            vec!["cloudlb", "run", "--kube-api-qps", "-1"],
            vec!["cloudlb", "run", "--local-max-tcp-connections", "0"],
            vec!["cloudlb", "run", "--local-tcp-idle-timeout", "10ms"],
        ] {
            assert!(Cli::try_parse_from(&bad).is_err(), "{bad:?} should be rejected");
        }
    }
}
