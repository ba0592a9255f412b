//! Operations still running on a load balancer's resources.
//!
//! Compute makes an inserted resource visible only when its operation is done (a GET before
//! that is 404). A controller killed during an insert leaves the operation running; if the
//! Service is deleted meanwhile, the next process's delete would find nothing, remove the
//! finalizer, and the resource would appear afterwards, owned by no Service. So a delete first
//! asks whether an operation on one of its names is still running, and if one is, it waits
//! (the pass is requeued as provisioning) instead of declaring the load balancer gone.
//!
//! Two list calls (regional and global operations), filtered by the server to the unfinished
//! ones: a delete costs two reads more, nothing else does.

use google_cloud_compute_v1::model::OperationList;

use crate::clients::Api;
use crate::errors::CallError;
use crate::links;

pub const LIST_REGIONAL: &str = "compute.regionOperations.list";
pub const LIST_GLOBAL: &str = "compute.globalOperations.list";

const UNFINISHED: &str = "status != \"DONE\"";

/// The first unfinished operation (name, target) whose target is named one of `names`.
pub async fn running_on(api: &Api<'_>, names: &[&str]) -> Result<Option<(String, String)>, CallError> {
    let regional = |token: Option<String>| {
        let c = &api.clients.region_operations;
        c.list()
            .set_project(api.project())
            .set_region(api.region())
            .set_filter(UNFINISHED)
            .set_or_clear_page_token(token)
            .send()
    };
    if let Some(found) = first_in_pages(api, LIST_REGIONAL, regional, names).await? {
        return Ok(Some(found));
    }
    let global = |token: Option<String>| {
        let c = &api.clients.global_operations;
        c.list().set_project(api.project()).set_filter(UNFINISHED).set_or_clear_page_token(token).send()
    };
    first_in_pages(api, LIST_GLOBAL, global, names).await
}

/// Reads the pages `list` gives (one per page token) until an operation on `names` turns up.
async fn first_in_pages<F, Fut>(
    api: &Api<'_>,
    call: &'static str,
    list: F,
    names: &[&str],
) -> Result<Option<(String, String)>, CallError>
where
    F: Fn(Option<String>) -> Fut,
    Fut: std::future::Future<Output = google_cloud_gax::Result<OperationList>>,
{
    let mut token: Option<String> = None;
    loop {
        let page = api.read(call, list(token.clone())).await?;
        if let Some(found) = page.as_ref().and_then(|p| first_on(p, names)) {
            return Ok(Some(found));
        }
        match page.and_then(|p| p.next_page_token).filter(|t| !t.is_empty()) {
            Some(t) => token = Some(t),
            None => return Ok(None),
        }
    }
}

fn first_on(page: &OperationList, names: &[&str]) -> Option<(String, String)> {
    page.items.iter().find_map(|op| {
        let target = op.target_link.as_deref()?;
        let done = op.status.as_ref().is_some_and(|s| s.name() == Some("DONE"));
        (!done && names.contains(&links::name(target)))
            .then(|| (op.name.clone().unwrap_or_default(), target.to_string()))
    })
}
