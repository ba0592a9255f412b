//! Deterministic, bounded names for cloud resources.
//!
//! A name is a readable prefix + the sanitized namespace and name + a hash of (cluster, uid).
//! The hash makes names unique per cluster and per object incarnation; the readable part lets
//! a human find the Service from the cloud console. Ownership is never decided from the name
//! alone (see the tags in each provider): the name only makes look-ups cheap.

use sha2::{Digest, Sha256};

use crate::spec::LoadBalancerId;

/// Hex digest of (cluster, uid), `len` chars (at most 64).
pub fn id_hash(id: &LoadBalancerId, len: usize) -> String {
    let mut h = Sha256::new();
    h.update(id.cluster.as_bytes());
    h.update([0]);
    h.update(id.uid.as_bytes());
    hex(&h.finalize(), len)
}

/// The first `len` hex chars of `digest`.
fn hex(digest: &[u8], len: usize) -> String {
    let hex: String = digest.iter().map(|b| format!("{b:02x}")).collect();
    hex[..len.min(hex.len())].to_string()
}

/// Hex digest of `s`, `len` chars (at most 64): a short, stable tag for a longer identity.
pub fn short_digest(s: &str, len: usize) -> String {
    hex(&Sha256::digest(s.as_bytes()), len)
}

/// Keep `[a-z0-9]`, map everything else to `-`, collapse and trim dashes, cut to `max`.
pub fn sanitize(s: &str, max: usize) -> String {
    let mut out = String::new();
    for c in s.chars() {
        let c = c.to_ascii_lowercase();
        let c = if c.is_ascii_alphanumeric() { c } else { '-' };
        if c == '-' && (out.is_empty() || out.ends_with('-')) {
            continue;
        }
        out.push(c);
    }
    let mut cut: String = out.chars().take(max).collect();
    while cut.ends_with('-') {
        cut.pop();
    }
    cut
}

fn join_parts(prefix: &str, parts: &[String], hash: &str) -> String {
    let mut name = String::from(prefix);
    for p in parts.iter().filter(|p| !p.is_empty()) {
        name.push('-');
        name.push_str(p);
    }
    name.push('-');
    name.push_str(hash);
    name
}

/// AWS style: `<= 32` chars of `[a-zA-Z0-9-]`, no leading/trailing dash.
/// `prefix-<ns:6>-<name:8>-<hash:10>`, e.g. `k8s-defaul-web-3f2a9c01bd`.
pub fn aws_name(prefix: &str, id: &LoadBalancerId) -> String {
    let prefix = sanitize(prefix, 5);
    let name = join_parts(&prefix, &[sanitize(&id.namespace, 6), sanitize(&id.name, 8)], &id_hash(id, 10));
    debug_assert!(name.len() <= 32);
    name
}

/// GCE style: `<= 63` chars matching `[a-z]([-a-z0-9]*[a-z0-9])?`.
/// `prefix-<ns:16>-<name:24>-<hash:12>`; the prefix must start with a letter.
pub fn gce_name(prefix: &str, id: &LoadBalancerId) -> String {
    let mut prefix = sanitize(prefix, 8);
    if !prefix.starts_with(|c: char| c.is_ascii_lowercase()) {
        prefix.insert(0, 'a');
    }
    join_parts(&prefix, &[sanitize(&id.namespace, 16), sanitize(&id.name, 24)], &id_hash(id, 12))
}

/// Whether `name` is a valid AWS ELB name.
pub fn is_valid_aws_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 32
        && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
        && !name.starts_with('-')
        && !name.ends_with('-')
}

/// Whether `name` is a valid GCE resource name.
pub fn is_valid_gce_name(name: &str) -> bool {
    let b = name.as_bytes();
    !b.is_empty()
        && b.len() <= 63
        && b[0].is_ascii_lowercase()
        && b.iter().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == b'-')
        && !name.ends_with('-')
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(ns: &str, name: &str, uid: &str) -> LoadBalancerId {
        LoadBalancerId::new("prod", ns, name, uid)
    }

    #[test]
    fn names_are_valid_for_awkward_inputs() {
        let inputs = [
            ("default", "web"),
            ("a-very-long-namespace-name-that-goes-on", "and-an-even-longer-service-name-too-long-for-anyone"),
            ("x", "1-2-3"),
            ("---", "..."),
            ("UPPER", "Case.Name"),
            ("", ""),
            ("ns", "ünïcødé-svc"),
        ];
        for (i, (ns, n)) in inputs.iter().enumerate() {
            let id = id(ns, n, &format!("uid-{i}"));
            let a = aws_name("k8s", &id);
            assert!(is_valid_aws_name(&a), "{a:?} from {ns:?}/{n:?}");
            let g = gce_name("k8s", &id);
            assert!(is_valid_gce_name(&g), "{g:?} from {ns:?}/{n:?}");
            let g = gce_name("1fw", &id);
            assert!(is_valid_gce_name(&g), "{g:?}");
        }
    }

    #[test]
    fn names_are_deterministic_and_uid_sensitive() {
        assert_eq!(aws_name("k8s", &id("default", "web", "u1")), aws_name("k8s", &id("default", "web", "u1")));
        assert_ne!(aws_name("k8s", &id("default", "web", "u1")), aws_name("k8s", &id("default", "web", "u2")));
        let other_cluster = LoadBalancerId::new("staging", "default", "web", "u1");
        assert_ne!(gce_name("k8s", &id("default", "web", "u1")), gce_name("k8s", &other_cluster));
        assert_eq!(aws_name("k8s", &id("default", "web", "u1")).len(), "k8s-defaul-web-".len() + 10);
    }

    #[test]
    fn validators_reject_bad_names() {
        assert!(!is_valid_aws_name(&"a".repeat(33)));
        assert!(!is_valid_aws_name("-a"));
        assert!(!is_valid_aws_name("a_b"));
        assert!(!is_valid_gce_name("1abc"));
        assert!(!is_valid_gce_name("Abc"));
        assert!(!is_valid_gce_name(&"a".repeat(64)));
    }
}
