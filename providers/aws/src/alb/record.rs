//! The record of an ALB: what `delete_l7` and targets-only updates start from. Like the NLB's
//! (`crate::record`), a hint: values are shape-checked and every resource is ownership-checked
//! before use.
//!
//! ```text
//!   load-balancer              -> ALB ARN
//!   security-group             -> security group id
//!   listener/<port>            -> listener ARN
//!   target-group/<name>        -> target group ARN
//!   certificate/<ns>/<secret>  -> ACM certificate ARN imported from that Secret
//! ```

use std::collections::BTreeMap;

use cloudlb_provider::Record;

const LISTENER: &str = "listener/";
const TARGET_GROUP: &str = "target-group/";
const CERTIFICATE: &str = "certificate/";

pub struct Made<'a> {
    pub lb_arn: &'a str,
    pub sg_id: Option<&'a str>,
    pub listeners: &'a BTreeMap<u16, String>,
    pub target_groups: &'a BTreeMap<String, String>,
    pub certificates: &'a BTreeMap<String, String>,
}

pub fn build(m: &Made<'_>) -> Record {
    let mut r = Record::default();
    r.set(crate::record::LOAD_BALANCER, m.lb_arn);
    if let Some(sg) = m.sg_id {
        r.set(crate::record::SECURITY_GROUP, sg);
    }
    for (port, arn) in m.listeners {
        r.set(format!("{LISTENER}{port}"), arn.clone());
    }
    for (name, arn) in m.target_groups {
        r.set(format!("{TARGET_GROUP}{name}"), arn.clone());
    }
    for (secret, arn) in m.certificates {
        r.set(format!("{CERTIFICATE}{secret}"), arn.clone());
    }
    r
}

/// The target group recorded under `name`, if it looks like a target group ARN.
pub fn target_group<'a>(r: &'a Record, name: &str) -> Option<&'a str> {
    r.get(&format!("{TARGET_GROUP}{name}")).filter(|v| crate::record::is_target_group_arn(v))
}

fn is_acm_arn(v: &str) -> bool {
    v.starts_with("arn:")
        && v.split(':').nth(2) == Some("acm")
        && v.splitn(6, ':').nth(5).is_some_and(|rest| rest.starts_with("certificate/"))
        && v.chars().all(|c| c.is_ascii_graphic())
}

/// The recorded ACM certificate ARNs that look like ones.
pub fn certificates(r: &Record) -> Vec<String> {
    r.0.iter().filter(|(k, v)| k.starts_with(CERTIFICATE) && is_acm_arn(v)).map(|(_, v)| v.clone()).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_malformed_values_are_ignored() {
        let tg = "arn:aws:elasticloadbalancing:us-east-1:123456789012:targetgroup/k8s-web-h/0123abcd";
        let cert = "arn:aws:acm:us-east-1:123456789012:certificate/1234-abcd";
        let listeners = BTreeMap::from([(80u16, "l80".to_string())]);
        let tgs = BTreeMap::from([("k8s-web-h".to_string(), tg.to_string())]);
        let certs = BTreeMap::from([("default/tls".to_string(), cert.to_string())]);
        let mut r = build(&Made {
            lb_arn: "arn:aws:elasticloadbalancing:us-east-1:1:loadbalancer/app/k8s/1",
            sg_id: Some("sg-0123"),
            listeners: &listeners,
            target_groups: &tgs,
            certificates: &certs,
        });
        assert_eq!(target_group(&r, "k8s-web-h"), Some(tg));
        assert_eq!(certificates(&r), vec![cert.to_string()]);
        assert_eq!(crate::record::target_groups(&r), vec![tg.to_string()]);
        r.set("certificate/default/evil", "arn:aws:iam::1:role/admin");
        r.set("target-group/x", "not-an-arn");
        assert_eq!(certificates(&r), vec![cert.to_string()]);
        assert_eq!(target_group(&r, "x"), None);
    }
}
