//! Target HTTP and HTTPS proxies: which URL map a listener uses and, for HTTPS, its certificates.
//! Both change in place (`setUrlMap`, `setSslCertificates`, at paths without `/global/`), so a
//! rotated certificate or a redirect switched on never takes the listener down.

use cloudlb_provider::LoadBalancerId;
use google_cloud_compute_v1::model::{
    TargetHttpProxy, TargetHttpsProxiesSetSslCertificatesRequest, TargetHttpsProxy, UrlMapReference,
};
use google_cloud_lro::Poller;

use crate::clients::{Api, gone};
use crate::errors::CallError;
use crate::links;
use crate::ownership::{self, Owner};

pub const HTTP_GET: &str = "compute.targetHttpProxies.get";
pub const HTTP_INSERT: &str = "compute.targetHttpProxies.insert";
pub const HTTP_SET_URL_MAP: &str = "compute.targetHttpProxies.setUrlMap";
pub const HTTP_DELETE: &str = "compute.targetHttpProxies.delete";
pub const HTTPS_GET: &str = "compute.targetHttpsProxies.get";
pub const HTTPS_INSERT: &str = "compute.targetHttpsProxies.insert";
pub const HTTPS_SET_URL_MAP: &str = "compute.targetHttpsProxies.setUrlMap";
pub const HTTPS_SET_CERTIFICATES: &str = "compute.targetHttpsProxies.setSslCertificates";
pub const HTTPS_DELETE: &str = "compute.targetHttpsProxies.delete";

pub fn http_link(api: &Api<'_>, name: &str) -> String {
    links::global(api.config, "targetHttpProxies", name)
}

pub fn https_link(api: &Api<'_>, name: &str) -> String {
    links::global(api.config, "targetHttpsProxies", name)
}

pub async fn get_http(api: &Api<'_>, name: &str) -> Result<Option<TargetHttpProxy>, CallError> {
    let c = &api.clients.global.http_proxies;
    api.read(HTTP_GET, c.get().set_project(api.project()).set_target_http_proxy(name).send()).await
}

pub async fn get_https(api: &Api<'_>, name: &str) -> Result<Option<TargetHttpsProxy>, CallError> {
    let c = &api.clients.global.https_proxies;
    api.read(HTTPS_GET, c.get().set_project(api.project()).set_target_https_proxy(name).send()).await
}

/// Make the HTTP proxy `name` use `url_map` (`cur`: what was read).
pub async fn converge_http(
    api: &Api<'_>,
    id: &LoadBalancerId,
    name: &str,
    cur: Option<&TargetHttpProxy>,
    url_map: &str,
) -> Result<(), CallError> {
    let c = &api.clients.global.http_proxies;
    match cur {
        None => {
            let body = TargetHttpProxy::new()
                .set_name(name)
                .set_description(ownership::description(Owner::Service(id), ownership::TARGET_PROXY))
                .set_url_map(url_map);
            api.operate(HTTP_INSERT, c.insert().set_project(api.project()).set_body(body).poller().until_done())
                .await?;
        }
        Some(p) if !p.url_map.as_deref().is_some_and(|m| links::same(m, url_map)) => {
            let req = c
                .set_url_map()
                .set_project(api.project())
                .set_target_http_proxy(name)
                .set_body(UrlMapReference::new().set_url_map(url_map))
                .poller()
                .until_done();
            api.operate(HTTP_SET_URL_MAP, req).await?;
        }
        Some(_) => {}
    }
    Ok(())
}

/// Make the HTTPS proxy `name` use `url_map` and exactly `certificates` (in order: the first is
/// the one served to clients without SNI or with an unknown name).
pub async fn converge_https(
    api: &Api<'_>,
    id: &LoadBalancerId,
    name: &str,
    cur: Option<&TargetHttpsProxy>,
    url_map: &str,
    certificates: &[String],
) -> Result<(), CallError> {
    let c = &api.clients.global.https_proxies;
    let Some(p) = cur else {
        let body = TargetHttpsProxy::new()
            .set_name(name)
            .set_description(ownership::description(Owner::Service(id), ownership::TARGET_PROXY))
            .set_url_map(url_map)
            .set_ssl_certificates(certificates.to_vec());
        return api
            .operate(HTTPS_INSERT, c.insert().set_project(api.project()).set_body(body).poller().until_done())
            .await
            .map(|_| ());
    };
    let same_certs = p.ssl_certificates.len() == certificates.len()
        && p.ssl_certificates.iter().zip(certificates).all(|(a, b)| links::same(a, b));
    if !same_certs {
        let req = c
            .set_ssl_certificates()
            .set_project(api.project())
            .set_target_https_proxy(name)
            .set_body(TargetHttpsProxiesSetSslCertificatesRequest::new().set_ssl_certificates(certificates.to_vec()))
            .poller()
            .until_done();
        api.operate(HTTPS_SET_CERTIFICATES, req).await?;
    }
    if !p.url_map.as_deref().is_some_and(|m| links::same(m, url_map)) {
        let req = c
            .set_url_map()
            .set_project(api.project())
            .set_target_https_proxy(name)
            .set_body(UrlMapReference::new().set_url_map(url_map))
            .poller()
            .until_done();
        api.operate(HTTPS_SET_URL_MAP, req).await?;
    }
    Ok(())
}

pub async fn delete_http(api: &Api<'_>, name: &str) -> Result<(), CallError> {
    let c = &api.clients.global.http_proxies;
    gone(
        api.operate(
            HTTP_DELETE,
            c.delete().set_project(api.project()).set_target_http_proxy(name).poller().until_done(),
        )
        .await,
    )
}

pub async fn delete_https(api: &Api<'_>, name: &str) -> Result<(), CallError> {
    let c = &api.clients.global.https_proxies;
    gone(
        api.operate(
            HTTPS_DELETE,
            c.delete().set_project(api.project()).set_target_https_proxy(name).poller().until_done(),
        )
        .await,
    )
}
