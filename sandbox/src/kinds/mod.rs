//! Per-kind semantics: one module per resource kind, each implementing [`Kind`].
//!
//! The generic verbs in `registry.rs` (metadata, resourceVersions, status subresource,
//! finalizers, no-op writes) are the same for every kind; what a real apiserver adds per kind —
//! defaulting, admission, validation, allocation — lives behind these hooks, so registry.rs reads
//! the same however many kinds are served and a kind's rules read in one place:
//!
//! ```text
//!  POST   ──> registry::create ──> Kind::create        (default, admit, validate)
//!  PUT    ──┐                  ┌─> Kind::update        (main resource)
//!  PATCH  ──┴> registry::finish_update ─┴─> Kind::update_status (status subresource)
//!  removed for good (DELETE, last finalizer) ──> Kind::removed (release allocations)
//! ```
//!
//! Every hook runs under the store's write lock: it may read other objects (admission reads
//! IngressClasses) and mutate allocator state, and it does no I/O.

pub mod events;
pub mod ingress_classes;
pub mod ingresses;
pub(crate) mod load_balancer_point;
pub mod namespaces;
pub mod secrets;
pub mod services;

use crate::status::ApiResult;
use crate::store::Inner;
use serde_json::Value;

/// How the generic create checks `metadata.name`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NameRule {
    /// DNS-1123 subdomain (most kinds).
    Subdomain,
    /// DNS-1123 label (namespaces).
    Label,
    /// The kind checks the name itself, with its other fields (Services: DNS-1035 label).
    OwnHook,
}

/// Hooks a kind adds to the generic verbs. The defaults do nothing: a kind without rules is
/// stored as given.
pub trait Kind: Sync {
    fn name_rule(&self) -> NameRule {
        NameRule::Subdomain
    }

    /// POST, after metadata is set and the name is known to be free: defaulting, admission and
    /// validation of the new object (in its stored shape).
    fn create(&self, _inner: &mut Inner, _obj: &mut Value) -> ApiResult<()> {
        Ok(())
    }

    /// PUT/PATCH of the main resource; `old` is the stored object, `new` already carries the
    /// old status when the kind has a status subresource.
    fn update(&self, _inner: &mut Inner, _old: &Value, _new: &mut Value) -> ApiResult<()> {
        Ok(())
    }

    /// PUT/PATCH of the status subresource; `new` is `old` with the new status.
    fn update_status(&self, _inner: &mut Inner, _old: &Value, _new: &mut Value) -> ApiResult<()> {
        Ok(())
    }

    /// The object is gone for good (deleted, or its last finalizer removed).
    fn removed(&self, _inner: &mut Inner, _last: &Value) {}
}

impl std::fmt::Debug for dyn Kind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Kind")
    }
}

/// Kinds with no rules of their own (nodes, pods, configmaps, leases, endpoints...).
pub struct Plain;

impl Kind for Plain {}
