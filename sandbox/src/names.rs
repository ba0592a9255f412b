//! Name and identifier formats shared by every kind, with the messages of
//! `k8s.io/apimachinery/pkg/util/validation` (the `*_errors` functions return one message per
//! broken rule, as the Go `Is*` functions do, so callers build `FieldError`s exactly like the
//! apiserver's validators): DNS-1123 labels and subdomains (plain and wildcard), DNS-1035
//! labels, qualified names, IANA port names, config-map keys, path segments, IP literals.

pub const DNS1123_LABEL_MSG: &str = "a lowercase RFC 1123 label must consist of lower case alphanumeric characters or '-', and must start and end with an alphanumeric character (e.g. 'my-name',  or '123-abc', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?')";
pub const DNS1123_SUBDOMAIN_MSG: &str = "a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', and must start and end with an alphanumeric character (e.g. 'example.com', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*')";
pub const DNS1035_LABEL_MSG: &str = "a DNS-1035 label must consist of lower case alphanumeric characters or '-', start with an alphabetic character, and end with an alphanumeric character (e.g. 'my-name',  or 'abc-123', regex used for validation is '[a-z]([-a-z0-9]*[a-z0-9])?')";
pub const WILDCARD_DNS1123_SUBDOMAIN_MSG: &str = "a wildcard DNS-1123 subdomain must start with '*.', followed by a valid DNS subdomain, which must consist of lower case alphanumeric characters, '-' or '.' and end with an alphanumeric character (e.g. '*.example.com', regex used for validation is '\\*\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*')";
const CONFIG_MAP_KEY_MSG: &str = "a valid config key must consist of alphanumeric characters, '-', '_' or '.' (e.g. 'key.name',  or 'KEY_NAME',  or 'key-name', regex used for validation is '[-._a-zA-Z0-9]+')";

const LABEL_MAX: usize = 63;
const SUBDOMAIN_MAX: usize = 253;

fn max_len(n: usize) -> String {
    format!("must be no more than {n} characters")
}

/// `[a-z0-9]([-a-z0-9]*[a-z0-9])?` (no length limit: the regex has none).
fn label_shape(b: &[u8]) -> bool {
    !b.is_empty()
        && b.iter().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == b'-')
        && b[0] != b'-'
        && b[b.len() - 1] != b'-'
}

/// Labels of [`label_shape`] joined by dots.
fn subdomain_shape(s: &str) -> bool {
    !s.is_empty() && s.split('.').all(|l| label_shape(l.as_bytes()))
}

pub fn is_dns1035_label(s: &str) -> bool {
    let b = s.as_bytes();
    b.len() <= LABEL_MAX && label_shape(b) && b[0].is_ascii_lowercase()
}

pub fn is_dns1123_label(s: &str) -> bool {
    s.len() <= LABEL_MAX && label_shape(s.as_bytes())
}

/// `IsDNS1123Subdomain`: at most 253 characters; labels are not limited to 63 on their own.
pub fn is_dns1123_subdomain(s: &str) -> bool {
    s.len() <= SUBDOMAIN_MAX && subdomain_shape(s)
}

pub fn dns1123_subdomain_errors(s: &str) -> Vec<String> {
    let mut errs = Vec::new();
    if s.len() > SUBDOMAIN_MAX {
        errs.push(max_len(SUBDOMAIN_MAX));
    }
    if !subdomain_shape(s) {
        errs.push(DNS1123_SUBDOMAIN_MSG.to_string());
    }
    errs
}

/// `IsWildcardDNS1123Subdomain`: `*.` followed by a DNS-1123 subdomain.
pub fn wildcard_dns1123_subdomain_errors(s: &str) -> Vec<String> {
    let mut errs = Vec::new();
    if s.len() > SUBDOMAIN_MAX {
        errs.push(max_len(SUBDOMAIN_MAX));
    }
    if !s.strip_prefix("*.").is_some_and(subdomain_shape) {
        errs.push(WILDCARD_DNS1123_SUBDOMAIN_MSG.to_string());
    }
    errs
}

pub fn dns1035_label_errors(s: &str) -> Vec<String> {
    let mut errs = Vec::new();
    if s.len() > LABEL_MAX {
        errs.push(max_len(LABEL_MAX));
    }
    let b = s.as_bytes();
    if !(label_shape(b) && b[0].is_ascii_lowercase()) {
        errs.push(DNS1035_LABEL_MSG.to_string());
    }
    errs
}

/// `IsValidPortName`: an IANA_SVC_NAME (what a Service port name or an Ingress backend's
/// `port.name` must be).
pub fn port_name_errors(s: &str) -> Vec<String> {
    let mut errs = Vec::new();
    if s.len() > 15 {
        errs.push(max_len(15));
    }
    if s.is_empty() || !s.bytes().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == b'-') {
        errs.push("must contain only alpha-numeric characters (a-z, 0-9), and hyphens (-)".into());
    }
    if !s.bytes().any(|c| c.is_ascii_lowercase()) {
        errs.push("must contain at least one letter (a-z)".into());
    }
    if s.contains("--") {
        errs.push("must not contain consecutive hyphens".into());
    }
    if s.starts_with('-') || s.ends_with('-') {
        errs.push("must not begin or end with a hyphen".into());
    }
    errs
}

/// `IsConfigMapKey` (Secret and ConfigMap data keys).
pub fn config_map_key_errors(s: &str) -> Vec<String> {
    let mut errs = Vec::new();
    if s.len() > SUBDOMAIN_MAX {
        errs.push(max_len(SUBDOMAIN_MAX));
    }
    if s.is_empty() || !s.bytes().all(|c| c.is_ascii_alphanumeric() || matches!(c, b'-' | b'.' | b'_')) {
        errs.push(CONFIG_MAP_KEY_MSG.to_string());
    }
    match s {
        "." => errs.push("must not be '.'".into()),
        ".." => errs.push("must not be '..'".into()),
        _ if s.starts_with("..") => errs.push("must not start with '..'".into()),
        _ => {}
    }
    errs
}

/// `IsValidPathSegmentName`: a name that can be one segment of a URL path.
pub fn path_segment_name_errors(s: &str) -> Vec<String> {
    if s == "." || s == ".." {
        return vec![format!("may not be '{s}'")];
    }
    ["/", "%"].iter().filter(|c| s.contains(*c)).map(|c| format!("may not contain '{c}'")).collect()
}

/// Go's `netutils.ParseIPSloppy` succeeds: an IP literal, IPv4 parts may have leading zeros.
pub fn is_ip_sloppy(s: &str) -> bool {
    if s.parse::<std::net::IpAddr>().is_ok() {
        return true;
    }
    let parts: Vec<&str> = s.split('.').collect();
    parts.len() == 4
        && parts.iter().all(|p| {
            !p.is_empty()
                && p.len() <= 3
                && p.bytes().all(|c| c.is_ascii_digit())
                && p.parse::<u16>().is_ok_and(|v| v <= 255)
        })
}

pub fn is_qualified_name(s: &str) -> bool {
    let (prefix, name) = match s.rsplit_once('/') {
        Some((p, n)) => (Some(p), n),
        None => (None, s),
    };
    let b = name.as_bytes();
    prefix.is_none_or(is_dns1123_subdomain)
        && !b.is_empty()
        && b.len() <= 63
        && b[0].is_ascii_alphanumeric()
        && b[b.len() - 1].is_ascii_alphanumeric()
        && b.iter().all(|c| c.is_ascii_alphanumeric() || matches!(c, b'-' | b'_' | b'.'))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dns_names() {
        assert!(is_dns1123_subdomain("a.example.com"));
        assert!(is_dns1123_subdomain(&format!("{}.com", "a".repeat(70))), "labels of a subdomain are not capped at 63");
        assert!(!is_dns1123_subdomain(&"a".repeat(254)));
        for bad in ["", "A.com", "-a.com", "a..com", "a.com.", "a_b"] {
            assert!(!is_dns1123_subdomain(bad), "{bad}");
        }
        assert!(is_dns1123_label("a-1") && !is_dns1123_label("a.b") && !is_dns1123_label(&"a".repeat(64)));
        assert!(is_dns1035_label("web") && !is_dns1035_label("1web"));
        assert_eq!(dns1035_label_errors("1web"), [DNS1035_LABEL_MSG]);
        assert!(wildcard_dns1123_subdomain_errors("*.example.com").is_empty());
        for bad in ["*", "*.", "a.*.com", "**.a.com", "*.-a.com"] {
            assert_eq!(wildcard_dns1123_subdomain_errors(bad), [WILDCARD_DNS1123_SUBDOMAIN_MSG], "{bad}");
        }
    }

    #[test]
    fn ports_keys_segments_ips() {
        assert!(port_name_errors("http").is_empty() && port_name_errors("h2c-1").is_empty());
        assert_eq!(port_name_errors("80").len(), 1);
        assert_eq!(port_name_errors("-a--b-").len(), 2);
        assert_eq!(port_name_errors("Http").len(), 1);
        assert!(config_map_key_errors("tls.crt").is_empty() && config_map_key_errors("KEY_name-1").is_empty());
        assert_eq!(config_map_key_errors("a/b"), [CONFIG_MAP_KEY_MSG]);
        assert_eq!(config_map_key_errors(".."), ["must not be '..'"]);
        assert_eq!(config_map_key_errors("..a"), ["must not start with '..'"]);
        assert_eq!(path_segment_name_errors("a/b%"), ["may not contain '/'", "may not contain '%'"]);
        assert_eq!(path_segment_name_errors(".."), ["may not be '..'"]);
        assert!(is_ip_sloppy("10.0.0.1") && is_ip_sloppy("010.000.0.1") && is_ip_sloppy("::1"));
        assert!(!is_ip_sloppy("a.example.com") && !is_ip_sloppy("1.2.3") && !is_ip_sloppy("256.1.1.1"));
    }
}
