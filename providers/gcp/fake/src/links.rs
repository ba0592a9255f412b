//! Resource keys, self-links and the parsing of references.
//!
//! Compute accepts a reference as an absolute URL (`https://www.googleapis.com/compute/v1/projects/p/…`,
//! or the newer `https://compute.googleapis.com/compute/v1/…`), as `projects/p/…`, or relative to the
//! project (`global/healthChecks/x`, `regions/r/…`, `zones/z/…`), and always answers with the
//! absolute `www.googleapis.com` form. The fake does the same: every reference is stored absolute.

use crate::collections::{Coll, Scope};

pub const API_PREFIX: &str = "https://www.googleapis.com/compute/v1/";

/// Where one resource lives: collection, location (`""` for global, else the region or zone), name.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Key {
    pub coll: Coll,
    pub loc: String,
    pub name: String,
}

impl Key {
    pub fn new(coll: Coll, loc: &str, name: &str) -> Key {
        Key { coll, loc: loc.to_string(), name: name.to_string() }
    }

    /// `projects/p/regions/r/backendServices/name`: the form used in error messages.
    pub fn path(&self, project: &str) -> String {
        format!("{}/{}", scope_path(project, self.coll.def().scope, &self.loc), self.name).replacen(
            "{segment}",
            self.coll.def().segment,
            1,
        )
    }

    /// Absolute self-link.
    pub fn self_link(&self, project: &str) -> String {
        format!("{API_PREFIX}{}", self.path(project))
    }
}

/// `projects/p/global/{segment}`, `projects/p/regions/r/{segment}`, `projects/p/zones/z/{segment}`.
fn scope_path(project: &str, scope: Scope, loc: &str) -> String {
    match scope {
        Scope::Global => format!("projects/{project}/global/{{segment}}"),
        Scope::Regional => format!("projects/{project}/regions/{loc}/{{segment}}"),
        Scope::Zonal => format!("projects/{project}/zones/{loc}/{{segment}}"),
    }
}

/// Absolute link of a collection (`…/regions/r/addresses`), for list `selfLink`s.
pub fn collection_link(project: &str, coll: Coll, loc: &str) -> String {
    format!("{API_PREFIX}{}", scope_path(project, coll.def().scope, loc).replacen("{segment}", coll.def().segment, 1))
}

pub fn region_link(project: &str, region: &str) -> String {
    format!("{API_PREFIX}projects/{project}/regions/{region}")
}

pub fn zone_link(project: &str, zone: &str) -> String {
    format!("{API_PREFIX}projects/{project}/zones/{zone}")
}

pub fn network_link(project: &str, name: &str) -> String {
    format!("{API_PREFIX}projects/{project}/global/networks/{name}")
}

/// The region a zone belongs to (`us-central1-a` → `us-central1`).
pub fn region_of_zone(zone: &str) -> &str {
    zone.rsplit_once('-').map(|(r, _)| r).unwrap_or(zone)
}

/// Strips any `http(s)://host/compute/v1/` (or `/compute/v1/`) prefix.
fn strip_api_prefix(s: &str) -> &str {
    let s = s.trim();
    if let Some(rest) = s.strip_prefix("https://").or_else(|| s.strip_prefix("http://")) {
        return match rest.find("/compute/v1/") {
            Some(i) => &rest[i + "/compute/v1/".len()..],
            None => rest,
        };
    }
    s.strip_prefix("/compute/v1/").unwrap_or(s)
}

/// A parsed reference: the project it names and the key of the resource.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ref {
    pub project: String,
    pub key: Key,
}

/// Parses a reference to a Compute resource in any accepted form. `project` is assumed for
/// project-relative forms. Returns `None` when the text is not a resource URL this fake knows.
pub fn parse_ref(text: &str, project: &str) -> Option<Ref> {
    let rest = strip_api_prefix(text);
    let parts: Vec<&str> = rest.split('/').collect();
    let (proj, parts) = match parts.as_slice() {
        ["projects", p, tail @ ..] => ((*p).to_string(), tail.to_vec()),
        _ => (project.to_string(), parts),
    };
    let (scope, loc, segment, name) = match parts.as_slice() {
        ["global", seg, name] => (Scope::Global, "", *seg, *name),
        ["regions", r, seg, name] => (Scope::Regional, *r, *seg, *name),
        ["zones", z, seg, name] => (Scope::Zonal, *z, *seg, *name),
        _ => return None,
    };
    if name.is_empty() || loc.contains(char::is_whitespace) {
        return None;
    }
    let def = crate::collections::lookup(scope, segment)?;
    Some(Ref { project: proj, key: Key::new(def.coll, loc, name) })
}

/// Normalizes a network or subnetwork reference (not collections of this fake) to an absolute
/// link; a bare name becomes `global/networks/{name}` for networks.
pub fn normalize_network(text: &str, project: &str, subnetwork: bool) -> String {
    let rest = strip_api_prefix(text);
    if rest.starts_with("projects/") {
        format!("{API_PREFIX}{rest}")
    } else if rest.starts_with("global/") || rest.starts_with("regions/") {
        format!("{API_PREFIX}projects/{project}/{rest}")
    } else if subnetwork {
        text.to_string()
    } else {
        network_link(project, rest)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn self_links_per_scope() {
        assert_eq!(
            Key::new(Coll::Address, "r1", "a").self_link("p"),
            "https://www.googleapis.com/compute/v1/projects/p/regions/r1/addresses/a"
        );
        assert_eq!(Key::new(Coll::UrlMap, "", "m").path("p"), "projects/p/global/urlMaps/m");
        assert_eq!(Key::new(Coll::InstanceGroup, "z-a", "g").path("p"), "projects/p/zones/z-a/instanceGroups/g");
    }

    #[test]
    fn parses_every_accepted_reference_form() {
        let want = Key::new(Coll::RegionHealthCheck, "us-central1", "hc");
        for s in [
            "https://www.googleapis.com/compute/v1/projects/p/regions/us-central1/healthChecks/hc",
            "https://compute.googleapis.com/compute/v1/projects/p/regions/us-central1/healthChecks/hc",
            "projects/p/regions/us-central1/healthChecks/hc",
            "regions/us-central1/healthChecks/hc",
        ] {
            let r = parse_ref(s, "p").unwrap();
            assert_eq!(r.key, want, "{s}");
            assert_eq!(r.project, "p");
        }
        assert_eq!(parse_ref("hc", "p"), None);
        assert_eq!(parse_ref("global/networks/default", "p"), None);
        assert_eq!(parse_ref("projects/o/global/healthChecks/x", "p").unwrap().project, "o");
    }

    #[test]
    fn zone_to_region() {
        assert_eq!(region_of_zone("us-central1-a"), "us-central1");
        assert_eq!(region_of_zone("europe-west4-b"), "europe-west4");
    }
}
