//! The record of what was made, kept by the controller on the Service and handed back to every
//! later call: deletion finds the zones of the instance groups from it even when the backend
//! service is already gone.
//!
//! ```text
//!   ip                         -> the forwarding rule's IP
//!   forwarding-rule            -> self-link
//!   backend-service            -> self-link
//!   health-check               -> self-link (per-Service or the cluster's node check)
//!   firewall                   -> self-link of the traffic rule
//!   health-check-firewall      -> self-link
//!   address                    -> self-link of the address cloudlb reserved (loadBalancerIP)
//!   user-address               -> self-link of the user's address (never released)
//!   instance-group/<zone>      -> self-link
//! ```

use cloudlb_provider::Record;

pub const IP: &str = "ip";
pub const FORWARDING_RULE: &str = "forwarding-rule";
pub const BACKEND_SERVICE: &str = "backend-service";
pub const HEALTH_CHECK: &str = "health-check";
pub const FIREWALL: &str = "firewall";
pub const HEALTH_CHECK_FIREWALL: &str = "health-check-firewall";
pub const ADDRESS: &str = "address";
pub const USER_ADDRESS: &str = "user-address";
const INSTANCE_GROUP: &str = "instance-group/";

pub fn set_instance_group(r: &mut Record, zone: &str, link: &str) {
    r.set(format!("{INSTANCE_GROUP}{zone}"), link);
}

/// Zones of the recorded instance groups.
/// The zones recorded, only those shaped like a zone name (`us-central1-a`): the record can be
/// edited by anyone who can patch the object, and a zone ends up in request paths.
pub fn zones(r: &Record) -> Vec<String> {
    r.0.keys().filter_map(|k| k.strip_prefix(INSTANCE_GROUP)).filter(|z| is_zone_name(z)).map(String::from).collect()
}

fn is_zone_name(z: &str) -> bool {
    (1..=63).contains(&z.len())
        && z.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
        && z.starts_with(|c: char| c.is_ascii_lowercase())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn zones_of_the_wrong_shape_are_ignored() {
        let mut r = Record::default();
        set_instance_group(&mut r, "us-central1-a", "l-a");
        set_instance_group(&mut r, "../../global/firewalls/x", "l-x");
        set_instance_group(&mut r, "US-CENTRAL1-B", "l-b");
        assert_eq!(zones(&r), vec!["us-central1-a".to_string()]);
    }

    #[test]
    fn zones_round_trip() {
        let mut r = Record::default();
        set_instance_group(&mut r, "us-central1-b", "l-b");
        set_instance_group(&mut r, "us-central1-a", "l-a");
        r.set(IP, "203.0.113.1");
        assert_eq!(zones(&r), vec!["us-central1-a".to_string(), "us-central1-b".to_string()]);
    }
}
