//! Self-managed SSL certificates made from an Ingress's TLS Secrets. Compute certificates are
//! immutable, so the name carries a digest of the Secret's content: a rotated Secret is a new
//! certificate, inserted and swapped into the proxy before the old one is deleted. The user's own
//! (`ingress.gcp.kubernetes.io/pre-shared-cert`) are only read.

use cloudlb_provider::LoadBalancerId;
use google_cloud_compute_v1::model::SslCertificate;
use google_cloud_lro::Poller;

use super::{all_pages, name_prefix_filter};
use crate::clients::{Api, gone};
use crate::errors::CallError;
use crate::links;
use crate::ownership::{self, Owner};

pub const LIST: &str = "compute.sslCertificates.list";
pub const GET: &str = "compute.sslCertificates.get";
pub const INSERT: &str = "compute.sslCertificates.insert";
pub const DELETE: &str = "compute.sslCertificates.delete";

pub fn link(api: &Api<'_>, name: &str) -> String {
    links::global(api.config, "sslCertificates", name)
}

pub async fn get(api: &Api<'_>, name: &str) -> Result<Option<SslCertificate>, CallError> {
    let c = &api.clients.global.certificates;
    api.read(GET, c.get().set_project(api.project()).set_ssl_certificate(name).send()).await
}

/// Every certificate whose name starts with `prefix` (all pages).
pub async fn list(api: &Api<'_>, prefix: &str) -> Result<Vec<SslCertificate>, CallError> {
    let c = &api.clients.global.certificates;
    let request = |token: Option<String>| {
        c.list().set_project(api.project()).set_filter(name_prefix_filter(prefix)).set_or_clear_page_token(token).send()
    };
    all_pages(api, LIST, request, |p| (p.items, p.next_page_token)).await
}

pub async fn insert(api: &Api<'_>, id: &LoadBalancerId, name: &str, chain: &str, key: &str) -> Result<(), CallError> {
    let body = SslCertificate::new()
        .set_name(name)
        .set_description(ownership::description(Owner::Service(id), ownership::SSL_CERTIFICATE))
        .set_certificate(chain)
        .set_private_key(key);
    let c = &api.clients.global.certificates;
    api.operate(INSERT, c.insert().set_project(api.project()).set_body(body).poller().until_done()).await.map(|_| ())
}

/// Delete; `Ok` when already gone. In use (a proxy still names it) is an error.
pub async fn delete(api: &Api<'_>, name: &str) -> Result<(), CallError> {
    let c = &api.clients.global.certificates;
    gone(
        api.operate(DELETE, c.delete().set_project(api.project()).set_ssl_certificate(name).poller().until_done())
            .await,
    )
}
