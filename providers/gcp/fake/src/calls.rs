//! The call log: every API request in order, with what it was and how it was answered, so tests
//! can assert on behaviour ("an unchanged ensure makes 0 mutating calls", "the new backend was
//! attached before the old one was detached") rather than on state alone. The log keeps the newest
//! 200 000 calls.

use serde::Serialize;
use serde_json::Value;

/// One API request as the fake saw it. Admin (`/_fake/…`) requests are not logged.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Call {
    /// Increasing sequence number from 1 (not reset when the log is cleared).
    pub seq: u64,
    /// `GET`, `POST`, `PUT`, `PATCH`, `DELETE`.
    pub method: String,
    /// Full request path (`/compute/v1/projects/p/regions/r/backendServices/bs`).
    pub path: String,
    /// Raw query string (`$alt=json&$apiVersion=…`), empty when none.
    pub query: String,
    /// The JSON body, when there was one.
    pub body: Option<Value>,
    /// HTTP status of the answer.
    pub status: u16,
    /// The request asks for a change (insert, delete, update, patch, `setX`, `addInstances`, …),
    /// whatever its outcome; reads (`GET`, lists, `listInstances`, `getHealth`, operation polls
    /// and waits) are `false`.
    pub mutating: bool,
    /// `global`, `regions/{r}`, `zones/{z}`, or empty for the project-level proxy actions.
    pub scope: String,
    /// Collection segment: `backendServices`, `operations`, `zones`, …
    pub collection: String,
    /// Resource (or operation) name, when the path has one.
    pub name: Option<String>,
    /// `list`, `get`, `insert`, `delete`, `update`, `patch`, `wait`, or the custom method
    /// (`setLabels`, `setTarget`, `setUrlMap`, `addInstances`, `listInstances`, `getHealth`, …).
    pub verb: String,
    /// Name of the operation the call started, if it started one.
    pub operation: Option<String>,
}

impl Call {
    /// `regions/us-central1/backendServices/bs` (scope/collection/name, without the project).
    pub fn target(&self) -> String {
        let mut s = String::new();
        if !self.scope.is_empty() {
            s.push_str(&self.scope);
            s.push('/');
        }
        s.push_str(&self.collection);
        if let Some(n) = &self.name {
            s.push('/');
            s.push_str(n);
        }
        s
    }

    /// `"insert regions/us-central1/backendServices"`, `"addInstances zones/z/instanceGroups/ig"`:
    /// a compact line for asserting on sequences.
    pub fn summary(&self) -> String {
        format!("{} {}", self.verb, self.target())
    }

    /// The request succeeded (2xx).
    pub fn ok(&self) -> bool {
        (200..300).contains(&self.status)
    }
}
