//! The only place that knows which providers exist: builds the one chosen by `--provider`.

use std::sync::Arc;

use cloudlb_provider::memory::{MemoryConfig, MemoryProvider};
use cloudlb_provider::{Provider, ProviderError};
use cloudlb_provider_aws::{AwsConfig, AwsProvider};
use cloudlb_provider_gcp::{GcpConfig, GcpProvider};
use cloudlb_provider_local::{LocalConfig, LocalProvider};

use crate::args::{ControllerArgs, ProviderKind};
use crate::desired::DesiredConfig;
use crate::error::{Error, Result};

pub async fn build(args: &ControllerArgs) -> Result<Arc<dyn Provider>> {
    let provider = name(args.provider);
    let err = |source| Error::CreateProvider { provider, source };
    match args.provider {
        ProviderKind::Memory => {
            let m = &args.memory;
            let config = MemoryConfig {
                pool: m.memory_ip_pool,
                latency: m.memory_latency,
                failure_rate: m.memory_failure_rate,
                fail_first: m.memory_fail_first,
                protocols: m.memory_protocols.clone(),
                state_file: m.memory_state_file.clone(),
            };
            Ok(Arc::new(MemoryProvider::new(config).map_err(err)?))
        }
        ProviderKind::Local => {
            let l = &args.local;
            let config = LocalConfig {
                pools: l.local_address_pool.clone(),
                drain_timeout: l.local_drain_timeout,
                udp_idle_timeout: l.local_udp_idle_timeout,
                connect_timeout: l.local_connect_timeout,
                tcp_idle_timeout: l.local_tcp_idle_timeout,
                max_tcp_connections: l.local_max_tcp_connections,
                max_tcp_connections_per_source: l.local_max_tcp_connections_per_source,
                max_udp_flows: l.local_max_udp_flows,
                max_udp_flows_total: l.local_max_udp_flows_total,
            };
            Ok(Arc::new(LocalProvider::new(config).map_err(err)?))
        }
        ProviderKind::Aws => {
            let a = &args.aws;
            let missing = |flag: &str| {
                err(ProviderError::Invalid {
                    call: "aws.config",
                    message: format!("{flag} is required with --provider aws"),
                })
            };
            let region = a.aws_region.clone().ok_or_else(|| missing("--aws-region (or $AWS_REGION)"))?;
            let vpc = a.aws_vpc_id.clone().ok_or_else(|| missing("--aws-vpc-id"))?;
            let mut config = AwsConfig::new(region, vpc);
            config.subnets = a.aws_subnets.clone();
            config.endpoint_url = a.aws_endpoint_url.clone();
            config.security_group_rules_quota = usize::from(a.aws_security_group_rules_quota);
            config.manage_node_security_groups = a.aws_manage_node_security_groups;
            config.node_port_range_rule = a.aws_node_port_range_rule;
            Ok(Arc::new(AwsProvider::new(config).await.map_err(err)?))
        }
        ProviderKind::Gcp => {
            let g = &args.gcp;
            let missing = |flag: &str| {
                err(ProviderError::Invalid {
                    call: "gcp.config",
                    message: format!("{flag} is required with --provider gcp"),
                })
            };
            let project = g.gcp_project.clone().ok_or_else(|| missing("--gcp-project (or $GOOGLE_CLOUD_PROJECT)"))?;
            let region = g.gcp_region.clone().ok_or_else(|| missing("--gcp-region (or $CLOUDSDK_COMPUTE_REGION)"))?;
            let network = g.gcp_network.clone().ok_or_else(|| missing("--gcp-network"))?;
            let mut config = GcpConfig::new(project, region, network);
            config.subnetwork = g.gcp_subnetwork.clone();
            config.node_tags = g.gcp_node_tags.clone().unwrap_or_default();
            config.endpoint_url = g.gcp_endpoint_url.clone();
            Ok(Arc::new(GcpProvider::new(config).await.map_err(err)?))
        }
    }
}

pub fn name(kind: ProviderKind) -> &'static str {
    match kind {
        ProviderKind::Local => "local",
        ProviderKind::Aws => "aws",
        ProviderKind::Gcp => "gcp",
        ProviderKind::Memory => "memory",
    }
}

/// Annotation prefixes whose annotations become the provider's options.
pub fn desired_config(kind: ProviderKind) -> DesiredConfig {
    let prefixes: Vec<String> = match kind {
        ProviderKind::Local => vec![cloudlb_provider_local::OPTION_PREFIX.into()],
        ProviderKind::Aws => cloudlb_provider_aws::OPTION_PREFIXES.iter().map(|p| p.to_string()).collect(),
        // The gcp provider also sees `cloudlb.io/target-node-labels` and its AWS alias (as the
        // option with the empty key), which it must refuse: GCE instance groups are shared by every
        // Service of the cluster, so one Service cannot target a subset of the nodes.
        ProviderKind::Gcp => cloudlb_provider_gcp::OPTION_PREFIXES
            .iter()
            .chain([&cloudlb_provider_gcp::options::TARGET_NODE_LABELS, &crate::keys::ANN_TARGET_NODE_LABELS_AWS])
            .map(|p| p.to_string())
            .collect(),
        ProviderKind::Memory => vec!["memory.cloudlb.io/".into()],
    };
    DesiredConfig { option_prefixes: prefixes }
}
