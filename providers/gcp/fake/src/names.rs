//! Compute's resource-name rule: 1–63 characters, `[a-z]([-a-z0-9]*[a-z0-9])?`.

use crate::errors::ApiError;

pub fn is_valid_name(name: &str) -> bool {
    let b = name.as_bytes();
    if b.is_empty() || b.len() > 63 || !b[0].is_ascii_lowercase() {
        return false;
    }
    if !b.iter().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == b'-') {
        return false;
    }
    b[b.len() - 1] != b'-'
}

/// 400 `invalid` in real GCE's words for a bad `resource.name`.
pub fn check_name(name: &str) -> Result<(), ApiError> {
    if is_valid_name(name) {
        Ok(())
    } else {
        Err(ApiError::invalid_field(
            "resource.name",
            name,
            "Must be a match of regex '(?:[a-z](?:[-a-z0-9]{0,61}[a-z0-9])?|[1-9][0-9]{0,19})'",
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn name_rule() {
        for ok in ["a", "a1", "k8s-fw-a1b2", &"a".repeat(63)] {
            assert!(is_valid_name(ok), "{ok}");
        }
        for bad in ["", "1a", "A", "a-", "a_b", "a.b", &"a".repeat(64), "-a"] {
            assert!(!is_valid_name(bad), "{bad}");
        }
        assert_eq!(check_name("Bad").unwrap_err().code, 400);
    }
}
