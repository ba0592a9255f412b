//! Self-links: how Compute names one resource from another (`backendService`, `healthChecks[]`,
//! `backends[].group`, instance references).
//!
//! Compute answers with absolute links (`https://www.googleapis.com/compute/v1/projects/p/…`) but
//! accepts relative ones; a fake or a proxy may answer with another host. Links are therefore
//! compared from their `projects/` segment on ([`same`]).

use crate::config::GcpConfig;

pub const API: &str = "https://www.googleapis.com/compute/v1/";

pub fn project(config: &GcpConfig) -> String {
    format!("{API}projects/{}", config.project)
}

pub fn regional(config: &GcpConfig, collection: &str, name: &str) -> String {
    format!("{}/regions/{}/{collection}/{name}", project(config), config.region)
}

pub fn global(config: &GcpConfig, collection: &str, name: &str) -> String {
    format!("{}/global/{collection}/{name}", project(config))
}

pub fn zonal(config: &GcpConfig, zone: &str, collection: &str, name: &str) -> String {
    format!("{}/zones/{zone}/{collection}/{name}", project(config))
}

/// An instance of another project, as node providerIDs may name it.
pub fn instance(project: &str, zone: &str, name: &str) -> String {
    format!("{API}projects/{project}/zones/{zone}/instances/{name}")
}

/// A name or link of the VPC network, as an absolute link.
pub fn network(config: &GcpConfig) -> String {
    absolute(&config.network, |n| global(config, "networks", n))
}

/// A name or link of a subnetwork of the region, as an absolute link.
pub fn subnetwork(config: &GcpConfig, subnet: &str) -> String {
    absolute(subnet, |n| regional(config, "subnetworks", n))
}

fn absolute(value: &str, from_name: impl Fn(&str) -> String) -> String {
    if value.starts_with("https://") || value.starts_with("http://") {
        value.to_string()
    } else if let Some(rel) = value.strip_prefix('/') {
        format!("{API}{rel}")
    } else if value.starts_with("projects/") {
        format!("{API}{value}")
    } else {
        from_name(value)
    }
}

/// The part from `projects/` on (the whole link when there is none).
pub fn tail(link: &str) -> &str {
    link.find("projects/").map(|i| &link[i..]).unwrap_or(link)
}

pub fn same(a: &str, b: &str) -> bool {
    tail(a) == tail(b)
}

/// The last segment (the resource name).
pub fn name(link: &str) -> &str {
    link.rsplit('/').next().unwrap_or(link)
}

/// The zone of a zonal link (`…/zones/<zone>/…`).
pub fn zone(link: &str) -> Option<&str> {
    let mut it = link.split('/');
    while let Some(s) = it.next() {
        if s == "zones" {
            return it.next();
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn links_compare_from_projects_on() {
        let c = GcpConfig::new("p", "r", "default");
        assert_eq!(network(&c), "https://www.googleapis.com/compute/v1/projects/p/global/networks/default");
        assert_eq!(
            network(&GcpConfig::new("p", "r", "projects/x/global/networks/n")),
            format!("{API}projects/x/global/networks/n")
        );
        assert_eq!(subnetwork(&c, "s"), format!("{API}projects/p/regions/r/subnetworks/s"));
        assert!(same(
            "http://127.0.0.1:1/compute/v1/projects/p/zones/z/instanceGroups/g",
            &zonal(&c, "z", "instanceGroups", "g")
        ));
        assert_eq!(zone(&zonal(&c, "us-a", "instanceGroups", "g")), Some("us-a"));
        assert_eq!(name(&regional(&c, "backendServices", "bs")), "bs");
    }
}
