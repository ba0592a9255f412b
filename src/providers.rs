//! The only place that knows which providers exist: builds the one chosen by `--provider`.

use std::sync::Arc;

use cloudlb_provider::Provider;
use cloudlb_provider::memory::{MemoryConfig, MemoryProvider};

use crate::args::{ControllerArgs, ProviderKind};
use crate::desired::DesiredConfig;
use crate::error::{Error, Result};

pub fn build(args: &ControllerArgs) -> Result<Arc<dyn Provider>> {
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
            let p = MemoryProvider::new(config).map_err(|source| Error::CreateProvider { provider: "memory", source })?;
            Ok(Arc::new(p))
        }
    }
}

/// Annotation prefixes whose annotations become the provider's options.
pub fn desired_config(kind: ProviderKind) -> DesiredConfig {
    let prefixes = match kind {
        ProviderKind::Memory => vec!["memory.cloudlb.io/".to_string()],
    };
    DesiredConfig { option_prefixes: prefixes }
}
