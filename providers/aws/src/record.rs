//! The record of what was made, kept by the controller on the Service and handed back to every
//! later call: deletion works from it even after the user changed ports or annotations.
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

pub fn target_groups(r: &Record) -> Vec<String> {
    r.0.iter().filter(|(k, _)| k.starts_with(TARGET_GROUP)).map(|(_, v)| v.clone()).collect()
}

/// The target group recorded for listener `port`.
pub fn target_group(r: &Record, port: u16) -> Option<&str> {
    r.get(&format!("{TARGET_GROUP}{port}"))
}

pub fn listeners(r: &Record) -> Vec<String> {
    r.0.iter().filter(|(k, _)| k.starts_with(LISTENER)).map(|(_, v)| v.clone()).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip() {
        let l = BTreeMap::from([(80u16, ("l80".to_string(), Some("t80".to_string()))), (443, ("l443".into(), None))]);
        let r = build("lb", Some("sg-1"), &l);
        assert_eq!(r.get(LOAD_BALANCER), Some("lb"));
        assert_eq!(r.get(SECURITY_GROUP), Some("sg-1"));
        assert_eq!(target_groups(&r), vec!["t80".to_string()]);
        assert_eq!(listeners(&r).len(), 2);
    }
}
