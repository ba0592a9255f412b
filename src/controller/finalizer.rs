//! Our finalizer on the objects we make load balancers for (Services, Ingresses).
//!
//! # Guarantees
//! - Added (JSON patch) before the first provider call for a Service, so a Service deleted
//!   while its load balancer is being made still waits for cleanup.
//! - Removed only after the provider's `delete` succeeded.
//! - Both patches are guarded with `test` ops: a concurrent change of the finalizer list makes
//!   the patch fail (and the reconcile retry) instead of clobbering another controller's entry.

use std::fmt::Debug;

use kube::api::{Patch, PatchParams};
use kube::{Api, Resource};
use serde::de::DeserializeOwned;
use serde_json::json;

use crate::keys::FINALIZER;

pub async fn add<K>(api: &Api<K>, obj: &K) -> Result<K, kube::Error>
where
    K: Resource + Clone + Debug + DeserializeOwned,
{
    let name = obj.meta().name.as_deref().unwrap_or_default();
    let ops = match &obj.meta().finalizers {
        None => json!([
            {"op": "test", "path": "/metadata/finalizers", "value": null},
            {"op": "add", "path": "/metadata/finalizers", "value": [FINALIZER]},
        ]),
        Some(list) => json!([
            {"op": "test", "path": "/metadata/finalizers", "value": list},
            {"op": "add", "path": "/metadata/finalizers/-", "value": FINALIZER},
        ]),
    };
    api.patch(name, &PatchParams::default(), &Patch::<()>::Json(json_patch(ops)?)).await
}

pub async fn remove<K>(api: &Api<K>, obj: &K) -> Result<(), kube::Error>
where
    K: Resource + Clone + Debug + DeserializeOwned,
{
    let name = obj.meta().name.as_deref().unwrap_or_default();
    let Some(index) = obj.meta().finalizers.iter().flatten().position(|f| f == FINALIZER) else {
        return Ok(());
    };
    let ops = json!([
        {"op": "test", "path": format!("/metadata/finalizers/{index}"), "value": FINALIZER},
        {"op": "remove", "path": format!("/metadata/finalizers/{index}")},
    ]);
    match api.patch(name, &PatchParams::default(), &Patch::<()>::Json(json_patch(ops)?)).await {
        Ok(_) => Ok(()),
        // Already gone: the object was deleted once the last finalizer went.
        Err(kube::Error::Api(s)) if s.code == 404 => Ok(()),
        Err(e) => Err(e),
    }
}

fn json_patch(ops: serde_json::Value) -> Result<json_patch::Patch, kube::Error> {
    serde_json::from_value(ops).map_err(kube::Error::SerdeError)
}
