//! The aws provider end to end: Nodes for moto's instances, and the controller's flags and
//! environment for that moto. Used by the test crates that include `aws_support`.

use serde_json::json;

use crate::aws_support::World;
use crate::support::Cluster;

/// Credentials moto accepts; no instance metadata lookups.
pub const ENVS: [(&str, &str); 3] =
    [("AWS_ACCESS_KEY_ID", "testing"), ("AWS_SECRET_ACCESS_KEY", "testing"), ("AWS_EC2_METADATA_DISABLED", "true")];

/// One Node per instance of `world` (providerID `aws:///us-east-1a/<instance>`).
pub async fn add_nodes(c: &Cluster, world: &World) {
    for (i, instance) in world.instances.iter().enumerate() {
        let node: k8s_openapi::api::core::v1::Node = serde_json::from_value(json!({
            "apiVersion": "v1", "kind": "Node",
            "metadata": {"name": format!("node-{i}")},
            "spec": {"providerID": format!("aws:///us-east-1a/{instance}")},
            "status": {"addresses": [{"type": "InternalIP", "address": format!("10.0.1.{}", 10 + i)}]}
        }))
        .expect("node");
        c.nodes().create(&Default::default(), &node).await.expect("node");
    }
}

/// `cloudlb run` flags for `world`'s moto.
pub fn args(world: &World) -> Vec<String> {
    [
        "--provider",
        "aws",
        "--aws-region",
        "us-east-1",
        "--aws-vpc-id",
        &world.vpc,
        "--aws-endpoint-url",
        &world.moto.url(),
    ]
    .map(String::from)
    .to_vec()
}
