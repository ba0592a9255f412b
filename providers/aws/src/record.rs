//! The record of what was made, kept by the controller on the Service and handed back to every
//! later call: deletion works from it even after the user changed ports or annotations.
//!
//! The record is a hint, never an authority: anyone who can patch the Service can edit it. So
//! only values of the right shape are read (a malformed one is as if absent, and the resource is
//! found by name and tags instead: a Service never hangs in Terminating over it), and every
//! resource found through it is checked by its ownership tags before anything is done to it.
//! Listeners are never deleted from the record: they are deleted through our own load balancer.
//!
//! ```text
//!   load-balancer        -> load balancer ARN
//!   security-group       -> security group id
//!   listener/<port>      -> listener ARN
//!   target-group/<port>  -> target group ARN
//! ```

use std::collections::BTreeMap;

use cloudlb_provider::Record;

pub const LOAD_BALANCER: &str = "load-balancer";
pub const SECURITY_GROUP: &str = "security-group";
const LISTENER: &str = "listener/";
const TARGET_GROUP: &str = "target-group/";

pub fn build(lb_arn: &str, sg_id: Option<&str>, listeners: &BTreeMap<u16, (String, Option<String>)>) -> Record {
    let mut r = Record::default();
    r.set(LOAD_BALANCER, lb_arn);
    if let Some(sg) = sg_id {
        r.set(SECURITY_GROUP, sg);
    }
    for (port, (listener, tg)) in listeners {
        r.set(format!("{LISTENER}{port}"), listener.clone());
        if let Some(tg) = tg {
            r.set(format!("{TARGET_GROUP}{port}"), tg.clone());
        }
    }
    r
}

/// Whether `v` looks like an ELBv2 ARN of `kind` (`loadbalancer/net/`, `targetgroup/`).
fn is_elb_arn(v: &str, kind: &str) -> bool {
    v.starts_with("arn:")
        && v.split(':').nth(2) == Some("elasticloadbalancing")
        && v.splitn(6, ':').nth(5).is_some_and(|rest| rest.starts_with(kind))
        && v.chars().all(|c| c.is_ascii_graphic())
}

/// The recorded load balancer ARN, if it looks like one.
pub fn load_balancer(r: &Record) -> Option<&str> {
    r.get(LOAD_BALANCER).filter(|v| is_elb_arn(v, "loadbalancer/"))
}

/// The recorded security group id, if it looks like one (`sg-` and hex digits).
pub fn security_group(r: &Record) -> Option<&str> {
    r.get(SECURITY_GROUP).filter(|v| {
        v.strip_prefix("sg-")
            .is_some_and(|h| !h.is_empty() && h.len() <= 17 && h.chars().all(|c| c.is_ascii_hexdigit()))
    })
}

/// Whether a recorded value looks like a target group ARN.
pub fn is_target_group_arn(v: &str) -> bool {
    is_elb_arn(v, "targetgroup/")
}

/// The recorded target group ARNs that look like ones.
pub fn target_groups(r: &Record) -> Vec<String> {
    r.0.iter()
        .filter(|(k, v)| k.starts_with(TARGET_GROUP) && is_elb_arn(v, "targetgroup/"))
        .map(|(_, v)| v.clone())
        .collect()
}

/// The target group recorded for listener `port`, if it looks like one.
/// Every target group with what follows `target-group/` in its key (a port, or an ALB's
/// target group name).
pub fn target_groups_by_key(r: &Record) -> Vec<(&str, &str)> {
    r.0.iter()
        .filter(|(_, v)| is_elb_arn(v, "targetgroup/"))
        .filter_map(|(k, v)| Some((k.strip_prefix(TARGET_GROUP)?, v.as_str())))
        .collect()
}

pub fn target_group(r: &Record, port: u16) -> Option<&str> {
    r.get(&format!("{TARGET_GROUP}{port}")).filter(|v| is_elb_arn(v, "targetgroup/"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip() {
        let tg = "arn:aws:elasticloadbalancing:us-east-1:123456789012:targetgroup/k8s-web-80t/0123abcd";
        let lb = "arn:aws:elasticloadbalancing:us-east-1:123456789012:loadbalancer/net/k8s-web/0123abcd";
        let l = BTreeMap::from([(80u16, ("l80".to_string(), Some(tg.to_string()))), (443, ("l443".into(), None))]);
        let r = build(lb, Some("sg-0123abcd"), &l);
        assert_eq!(load_balancer(&r), Some(lb));
        assert_eq!(security_group(&r), Some("sg-0123abcd"));
        assert_eq!(target_groups(&r), vec![tg.to_string()]);
        assert_eq!(target_group(&r, 80), Some(tg));
    }

    #[test]
    fn values_of_the_wrong_shape_are_as_if_absent() {
        let mut r = Record::default();
        r.set(LOAD_BALANCER, "arn:aws:elasticloadbalancing:us-east-1:1:targetgroup/not-a-load-balancer/1");
        r.set(SECURITY_GROUP, "sg-../../etc");
        r.set("target-group/80", "\"}{ garbage");
        r.set("target-group/81", "arn:aws:ec2:us-east-1:1:security-group/sg-1");
        assert_eq!(load_balancer(&r), None);
        assert_eq!(security_group(&r), None);
        assert!(target_groups(&r).is_empty());
        assert_eq!(target_group(&r, 80), None);
    }
}
