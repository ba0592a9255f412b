//! ALB listeners: HTTP or HTTPS on a port, with a default action (the Ingress's default
//! backend, a fixed 404, or a redirect to HTTPS) and, for HTTPS, a TLS policy and certificates.
//! Converged by port like the NLB's (`crate::listeners` lists and deletes them): created,
//! modified in place (protocol, default action, policy), deleted when no longer wanted.

use std::collections::BTreeMap;

use aws_sdk_elasticloadbalancingv2::types::{Certificate, ProtocolEnum};
use cloudlb_provider::ProviderError;

use super::plan::AlbAction;
use super::rules::{action_from_aws, action_to_aws};
use crate::clients::Api;
use crate::errors;
use crate::listeners::{Ls, list};

/// A listener as the plan wants it, target groups resolved to ARNs.
pub struct Wanted<'a> {
    pub port: u16,
    pub https: bool,
    pub default_action: AlbAction,
    pub ssl_policy: &'a str,
    /// The default certificate (HTTPS only).
    pub certificate: Option<&'a str>,
}

fn protocol(https: bool) -> ProtocolEnum {
    if https { ProtocolEnum::Https } else { ProtocolEnum::Http }
}

/// Whether `current` already is `want` (certificates other than the default are converged
/// separately).
pub fn matches(current: &Ls, want: &Wanted<'_>) -> bool {
    current.protocol == protocol(want.https).as_str()
        && action_from_aws(&current.actions) == want.default_action
        && (!want.https || (current.ssl_policy.as_deref() == Some(want.ssl_policy)))
}

pub async fn create(
    api: &Api<'_>,
    lb_arn: &str,
    want: &Wanted<'_>,
    tags: &BTreeMap<String, String>,
) -> Result<String, ProviderError> {
    const CALL: &str = "elbv2:CreateListener";
    let mut b = api
        .elb
        .create_listener()
        .load_balancer_arn(lb_arn)
        .protocol(protocol(want.https))
        .port(i32::from(want.port))
        .default_actions(action_to_aws(&want.default_action))
        .set_tags(Some(crate::tags::to_elb(tags)));
    if want.https {
        b = b.ssl_policy(want.ssl_policy);
        if let Some(cert) = want.certificate {
            b = b.certificates(Certificate::builder().certificate_arn(cert).build());
        }
    }
    if !api.mutate(CALL).await {
        return Ok(crate::planned::arn("listener", &want.port.to_string()));
    }
    match b.send().await {
        Ok(r) => r.listeners().iter().find_map(|l| l.listener_arn().map(String::from)).ok_or_else(|| {
            ProviderError::Retryable { call: CALL, message: "the response contained no listener".into() }
        }),
        // A lost response of an earlier create: the listener exists.
        Err(e) if errors::is(&e, &["DuplicateListener"]) => {
            list(api, lb_arn).await?.remove(&want.port).map(|l| l.arn).ok_or_else(|| ProviderError::Retryable {
                call: CALL,
                message: format!("listener on port {} reported as duplicate but not found", want.port),
            })
        }
        Err(e) => Err(errors::map(CALL, e)),
    }
}

/// Change what differs, in one call; the default certificate is set here only when the
/// protocol becomes HTTPS (otherwise `certificates::converge_listener` owns it).
pub async fn modify(api: &Api<'_>, current: &Ls, want: &Wanted<'_>) -> Result<(), ProviderError> {
    const CALL: &str = "elbv2:ModifyListener";
    let mut b = api.elb.modify_listener().listener_arn(&current.arn);
    if current.protocol != protocol(want.https).as_str() {
        b = b.protocol(protocol(want.https));
        if want.https
            && let Some(cert) = want.certificate
        {
            b = b.certificates(Certificate::builder().certificate_arn(cert).build());
        }
    }
    if action_from_aws(&current.actions) != want.default_action {
        b = b.default_actions(action_to_aws(&want.default_action));
    }
    if want.https && current.ssl_policy.as_deref() != Some(want.ssl_policy) {
        b = b.ssl_policy(want.ssl_policy);
    }
    if api.mutate(CALL).await {
        b.send().await.map_err(|e| errors::map(CALL, e))?;
    }
    Ok(())
}
