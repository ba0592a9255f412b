//! Parsers for the user-written parts of a Service (annotations, ranges, IPs), each returning a
//! message that names the field, the bad value and what would be accepted.

use std::collections::BTreeMap;
use std::net::IpAddr;

use ipnet::IpNet;

pub fn parse_bool(key: &str, value: &str) -> Result<bool, String> {
    match value.trim() {
        "true" | "True" | "TRUE" => Ok(true),
        "false" | "False" | "FALSE" | "" => Ok(false),
        other => Err(format!("annotation {key}: {other:?} is not a boolean (use \"true\" or \"false\")")),
    }
}

pub fn parse_u32_in(key: &str, value: &str, min: u32, max: u32) -> Result<u32, String> {
    match value.trim().parse::<u32>() {
        Ok(v) if (min..=max).contains(&v) => Ok(v),
        _ => Err(format!("annotation {key}: {value:?} is not a whole number from {min} to {max}")),
    }
}

/// One CIDR, canonicalised (`10.1.2.3/8` -> `10.0.0.0/8`). A bare IP means a single host.
pub fn parse_cidr(field: &str, value: &str) -> Result<IpNet, String> {
    let v = value.trim();
    if let Ok(net) = v.parse::<IpNet>() {
        return Ok(net.trunc());
    }
    if let Ok(ip) = v.parse::<IpAddr>() {
        return Ok(IpNet::from(ip));
    }
    Err(format!("{field}: {v:?} is not a CIDR (expected e.g. 203.0.113.0/24 or 2001:db8::/32)"))
}

/// A comma-separated CIDR list (the annotation form).
pub fn parse_cidr_list(field: &str, value: &str) -> Result<Vec<IpNet>, String> {
    value.split(',').map(str::trim).filter(|s| !s.is_empty()).map(|s| parse_cidr(field, s)).collect()
}

pub fn parse_ip(field: &str, value: &str) -> Result<IpAddr, String> {
    value.trim().parse().map_err(|_| format!("{field}: {value:?} is not an IP address"))
}

/// `k=v,k2=v2` into a map; empty keys or missing `=` are errors.
pub fn parse_labels(key: &str, value: &str) -> Result<BTreeMap<String, String>, String> {
    let mut out = BTreeMap::new();
    for part in value.split(',').map(str::trim).filter(|s| !s.is_empty()) {
        match part.split_once('=') {
            Some((k, v)) if !k.trim().is_empty() => {
                out.insert(k.trim().to_string(), v.trim().to_string());
            }
            _ => return Err(format!("annotation {key}: {part:?} is not key=value")),
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cidrs() {
        assert_eq!(parse_cidr("f", "10.1.2.3/8").unwrap().to_string(), "10.0.0.0/8");
        assert_eq!(parse_cidr("f", " 192.0.2.1 ").unwrap().to_string(), "192.0.2.1/32");
        assert_eq!(parse_cidr("f", "2001:db8::1/32").unwrap().to_string(), "2001:db8::/32");
        for bad in ["10.0.0.0/33", "banana", "10.0.0/8", "", "1.2.3.4/-1"] {
            let e = parse_cidr("spec.loadBalancerSourceRanges", bad).unwrap_err();
            assert!(e.contains("spec.loadBalancerSourceRanges") && e.contains("not a CIDR"), "{e}");
        }
        assert_eq!(parse_cidr_list("f", "10.0.0.0/8, 192.168.0.0/16,").unwrap().len(), 2);
        assert!(parse_cidr_list("f", "10.0.0.0/8,nope").is_err());
    }

    #[test]
    fn scalars() {
        assert_eq!(parse_bool("k", "true"), Ok(true));
        assert_eq!(parse_bool("k", "false"), Ok(false));
        assert!(parse_bool("k", "yes").unwrap_err().contains("not a boolean"));
        assert_eq!(parse_u32_in("k", "5", 1, 10), Ok(5));
        assert!(parse_u32_in("k", "0", 1, 10).is_err());
        assert!(parse_u32_in("k", "x", 1, 10).is_err());
        assert!(parse_ip("spec.loadBalancerIP", "1.2.3").unwrap_err().contains("not an IP"));
        assert_eq!(parse_labels("k", "a=b, c=").unwrap().len(), 2);
        assert!(parse_labels("k", "a").is_err());
    }
}
