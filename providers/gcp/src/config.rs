//! How the provider is configured: where (project, region, network, subnetwork, endpoint) and how
//! fast it may call Compute (client-side token buckets, operation polling, deadlines).
//!
//! Everything has a default except the project, the region and the network, which only the
//! operator knows. The subnetwork is needed only by internal load balancers; without it an
//! internal Service is refused with a readable error before any call.

use std::time::Duration;

pub use cloudlb_provider::throttle::Rate;

/// Client-side rate limits per API class, shared by every call the provider makes.
///
/// Compute's quotas are per project and per minute ("Queries", "Read requests", "Operation
/// write requests"); a controller that bursts through them is throttled together with everything
/// else in the project. Reads are cheap and plenty; writes are split so that instance-group
/// membership (node churn) is never starved by a burst of new Services, and deletes have their
/// own bucket (and go first: see `throttle.rs`).
#[derive(Clone, Debug, PartialEq)]
pub struct RateLimits {
    /// `get`, `list`, `listInstances`.
    pub read: Rate,
    /// `insert`, `update`, `patch`, `setLabels`.
    pub mutate: Rate,
    /// `instanceGroups.addInstances`, `instanceGroups.removeInstances`.
    pub membership: Rate,
    /// `delete`.
    pub delete: Rate,
}

impl Default for RateLimits {
    fn default() -> Self {
        Self {
            read: Rate::new(20.0, 100.0),
            mutate: Rate::new(5.0, 20.0),
            membership: Rate::new(5.0, 20.0),
            delete: Rate::new(5.0, 20.0),
        }
    }
}

/// How the provider waits for a Compute operation.
#[derive(Clone, Debug, PartialEq)]
pub struct Polling {
    /// First delay between two reads of an unfinished operation.
    pub initial_delay: Duration,
    /// Longest delay between two reads.
    pub max_delay: Duration,
}

impl Default for Polling {
    fn default() -> Self {
        Self { initial_delay: Duration::from_millis(500), max_delay: Duration::from_secs(5) }
    }
}

#[derive(Clone, Debug)]
pub struct GcpConfig {
    pub project: String,
    pub region: String,
    /// The VPC network (a name such as `default`, or a `projects/p/global/networks/n` link).
    pub network: String,
    /// The subnetwork of internal load balancers (a name or a link); `None` = internal Services
    /// are refused unless they name a subnet with `networking.gke.io/internal-load-balancer-subnet`.
    pub subnetwork: Option<String>,
    /// A non-Google endpoint (the `gce-fake`); credentials are then anonymous.
    pub endpoint_url: Option<String>,
    /// Network tags of the nodes: the firewall rules apply only to instances carrying one of them.
    /// Empty = every instance of the network (the rules still name the load balancer's IP as
    /// destination, so they open nothing but load-balanced traffic).
    pub node_tags: Vec<String>,
    pub rate_limits: RateLimits,
    pub polling: Polling,
    /// Deadline of one API call (read or the request that starts an operation).
    pub call_timeout: Duration,
    /// Deadline of one operation, from the request to `DONE`.
    pub operation_timeout: Duration,
}

impl GcpConfig {
    pub fn new(project: impl Into<String>, region: impl Into<String>, network: impl Into<String>) -> Self {
        Self {
            project: project.into(),
            region: region.into(),
            network: network.into(),
            subnetwork: None,
            endpoint_url: None,
            node_tags: Vec::new(),
            rate_limits: RateLimits::default(),
            polling: Polling::default(),
            call_timeout: Duration::from_secs(30),
            operation_timeout: Duration::from_secs(180),
        }
    }
}
