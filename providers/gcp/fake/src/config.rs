//! How to run the fake: project, region, zones, operation timing, error delivery, pools, faults.

use crate::faults::RandomFaults;
use crate::ips::Pools;
use std::net::SocketAddr;
use std::time::Duration;

/// Whether a failure is answered synchronously (an HTTP error on the mutating call) or reported
/// inside the operation, which then finishes `DONE` with `error` (real GCE does both).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum Delivery {
    #[default]
    Sync,
    InOperation,
}

/// Configuration of a [`crate::GceFake`]. `FakeConfig::new("p")` gives sensible defaults.
#[derive(Debug, Clone)]
pub struct FakeConfig {
    /// Listen address; default `127.0.0.1:0` (a free port).
    pub bind: SocketAddr,
    /// The one project served; requests for another answer 404.
    pub project: String,
    /// The region of regional collections (others answer 400 "Unknown region").
    pub region: String,
    /// Zones of zonal collections; default `{region}-a`, `-b`, `-c`.
    pub zones: Vec<String>,
    /// Polls an operation stays unfinished: 1 (default) = first `GET` says `RUNNING`, second `DONE`;
    /// 0 = `DONE` at once.
    pub op_delay_polls: u32,
    /// An operation nobody polls completes this long after it started (at the next request).
    /// Default 2 s; `None` = only polls, `wait` or [`crate::GceFake::settle`] complete operations.
    pub settle_after: Option<Duration>,
    /// How "in use by another resource" failures of deletes are delivered. Default `Sync`.
    pub in_use: Delivery,
    /// A `PATCH` without `fingerprint` is rejected with 412 (real GCE accepts it; default false).
    pub require_patch_fingerprint: bool,
    /// Where addresses and ephemeral IPs come from.
    pub pools: Pools,
    /// Random faults (rate 0 = none).
    pub random_faults: RandomFaults,
    /// Seed of the fault RNG (the same seed and request sequence give the same faults).
    pub seed: u64,
}

impl FakeConfig {
    pub fn new(project: &str) -> FakeConfig {
        let region = "us-central1".to_string();
        FakeConfig {
            bind: SocketAddr::from(([127, 0, 0, 1], 0)),
            project: project.to_string(),
            zones: default_zones(&region),
            region,
            op_delay_polls: 1,
            settle_after: Some(Duration::from_secs(2)),
            in_use: Delivery::Sync,
            require_patch_fingerprint: false,
            pools: Pools::default(),
            random_faults: RandomFaults::default(),
            seed: 0x00c1_0ad1_b000,
        }
    }

    /// Sets the region and, unless zones were set explicitly after, its `-a`, `-b`, `-c` zones.
    pub fn with_region(mut self, region: &str) -> FakeConfig {
        self.region = region.to_string();
        self.zones = default_zones(region);
        self
    }

    pub fn with_zones(mut self, zones: &[&str]) -> FakeConfig {
        self.zones = zones.iter().map(|z| z.to_string()).collect();
        self
    }

    pub fn with_op_delay_polls(mut self, k: u32) -> FakeConfig {
        self.op_delay_polls = k;
        self
    }

    pub fn with_settle_after(mut self, d: Option<Duration>) -> FakeConfig {
        self.settle_after = d;
        self
    }

    pub fn with_in_use(mut self, d: Delivery) -> FakeConfig {
        self.in_use = d;
        self
    }

    pub fn with_random_faults(mut self, rate: f64, in_operation_share: f64) -> FakeConfig {
        self.random_faults = RandomFaults { rate, in_operation_share };
        self
    }
}

impl Default for FakeConfig {
    fn default() -> Self {
        FakeConfig::new("test-project")
    }
}

pub fn default_zones(region: &str) -> Vec<String> {
    ["a", "b", "c"].iter().map(|s| format!("{region}-{s}")).collect()
}
