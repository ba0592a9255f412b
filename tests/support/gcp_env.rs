//! The gcp provider end to end: Nodes for VMs seeded in the Compute fake, and the controller's
//! flags for that fake. Used by the test crates that include `gcp_support`.

use serde_json::json;

use crate::gcp_support::{PROJECT, REGION, World};
use crate::support::Cluster;

/// Seeds a VM `name` in `zone` and adds its Node (providerID `gce://project/zone/name`).
pub async fn add_node(c: &Cluster, w: &World, zone: &str, name: &str) {
    let target = w.node(zone, name);
    let node: k8s_openapi::api::core::v1::Node = serde_json::from_value(json!({
        "apiVersion": "v1", "kind": "Node",
        "metadata": {"name": name},
        "spec": {"providerID": target.provider_id},
        "status": {"addresses": [{"type": "InternalIP", "address": target.addresses[0].address}]}
    }))
    .expect("node");
    c.nodes().create(&Default::default(), &node).await.expect("create node");
}

/// `cloudlb run` flags for `w`'s fake.
pub fn args(w: &World) -> Vec<String> {
    ["--provider", "gcp", "--gcp-endpoint-url", &w.fake.url(), "--gcp-project", PROJECT, "--gcp-region", REGION]
        .into_iter()
        .chain(["--gcp-network", "default"])
        .map(String::from)
        .collect()
}
