//! Listeners: one per Service port, forwarding to that port's target group (TLS when the port is
//! listed in `ssl-ports`). Converged by port: missing ones created, changed ones modified in
//! place (protocol, target group, certificate, policy), ones for ports no longer wanted deleted.

use std::collections::BTreeMap;

use aws_sdk_elasticloadbalancingv2::types::{Action, ActionTypeEnum, Certificate};
use cloudlb_provider::ProviderError;

use crate::clients::Api;
use crate::errors;
use crate::plan::DesiredListener;

#[derive(Clone, Debug)]
pub struct Ls {
    pub arn: String,
    pub port: u16,
    pub protocol: String,
    pub target_group: Option<String>,
    pub certificate: Option<String>,
    pub ssl_policy: Option<String>,
    /// The default actions as AWS describes them (ALBs read more than the target group).
    pub actions: Vec<Action>,
}

fn from_aws(l: &aws_sdk_elasticloadbalancingv2::types::Listener) -> Option<Ls> {
    let action = l.default_actions().first();
    let target_group = action.and_then(|a| {
        a.target_group_arn().map(String::from).or_else(|| {
            a.forward_config()
                .and_then(|f| f.target_groups().first())
                .and_then(|t| t.target_group_arn())
                .map(String::from)
        })
    });
    Some(Ls {
        arn: l.listener_arn()?.to_string(),
        port: u16::try_from(l.port()?).ok()?,
        protocol: l.protocol().map(|p| p.as_str().to_string()).unwrap_or_default(),
        target_group,
        certificate: l.certificates().first().and_then(|c| c.certificate_arn()).map(String::from),
        ssl_policy: l.ssl_policy().map(String::from),
        actions: l.default_actions().to_vec(),
    })
}

/// Listeners of a load balancer, by port.
pub async fn list(api: &Api<'_>, lb_arn: &str) -> Result<BTreeMap<u16, Ls>, ProviderError> {
    const CALL: &str = "elbv2:DescribeListeners";
    let mut out = BTreeMap::new();
    if crate::planned::is(lb_arn) {
        return Ok(out);
    }
    let mut next: Option<String> = None;
    loop {
        api.permit(CALL).await;
        let r = match api.elb.describe_listeners().load_balancer_arn(lb_arn).set_marker(next.clone()).send().await {
            Ok(r) => r,
            Err(e) if errors::is(&e, &["LoadBalancerNotFound", "ListenerNotFound"]) => return Ok(out),
            Err(e) => return Err(errors::map(CALL, e)),
        };
        for l in r.listeners().iter().filter_map(from_aws) {
            out.insert(l.port, l);
        }
        next = r.next_marker().filter(|m| !m.is_empty()).map(String::from);
        if next.is_none() {
            return Ok(out);
        }
    }
}

/// Whether `current` already implements `desired` forwarding to `tg_arn`.
pub fn matches(current: &Ls, desired: &DesiredListener, tg_arn: &str) -> bool {
    current.protocol == desired.protocol.to_aws().as_str()
        && current.target_group.as_deref() == Some(tg_arn)
        && current.certificate == desired.certificate
        && (desired.ssl_policy.is_none() || current.ssl_policy == desired.ssl_policy)
}

fn forward(tg_arn: &str) -> Action {
    Action::builder().r#type(ActionTypeEnum::Forward).target_group_arn(tg_arn).build()
}

pub async fn create(
    api: &Api<'_>,
    lb_arn: &str,
    desired: &DesiredListener,
    tg_arn: &str,
    tags: &BTreeMap<String, String>,
) -> Result<Ls, ProviderError> {
    const CALL: &str = "elbv2:CreateListener";
    let mut b = api
        .elb
        .create_listener()
        .load_balancer_arn(lb_arn)
        .protocol(desired.protocol.to_aws())
        .port(i32::from(desired.port))
        .default_actions(forward(tg_arn))
        .set_tags(Some(crate::tags::to_elb(tags)));
    if let Some(cert) = &desired.certificate {
        b = b.certificates(Certificate::builder().certificate_arn(cert).build());
    }
    if let Some(policy) = &desired.ssl_policy {
        b = b.ssl_policy(policy);
    }
    if !api.mutate(CALL).await {
        return Ok(Ls {
            arn: crate::planned::arn("listener", &desired.port.to_string()),
            port: desired.port,
            protocol: desired.protocol.to_aws().as_str().to_string(),
            target_group: Some(tg_arn.to_string()),
            certificate: desired.certificate.clone(),
            ssl_policy: desired.ssl_policy.clone(),
            actions: vec![forward(tg_arn)],
        });
    }
    let r = match b.send().await {
        Ok(r) => r,
        // A lost response of an earlier create: the listener exists; the caller re-lists.
        Err(e) if errors::is(&e, &["DuplicateListener"]) => {
            return list(api, lb_arn).await?.remove(&desired.port).ok_or_else(|| ProviderError::Retryable {
                call: CALL,
                message: format!("listener on port {} reported as duplicate but not found", desired.port),
            });
        }
        Err(e) => return Err(errors::map(CALL, e)),
    };
    r.listeners()
        .iter()
        .filter_map(from_aws)
        .next()
        .ok_or_else(|| ProviderError::Retryable { call: CALL, message: "the response contained no listener".into() })
}

pub async fn modify(api: &Api<'_>, current: &Ls, desired: &DesiredListener, tg_arn: &str) -> Result<Ls, ProviderError> {
    const CALL: &str = "elbv2:ModifyListener";
    // Send only what changes: unchanged fields are kept by AWS, and some backends (moto) refuse
    // ModifyListener with a UDP/TCP_UDP/TLS protocol even when it is the current one.
    let mut b = api.elb.modify_listener().listener_arn(&current.arn).default_actions(forward(tg_arn));
    if current.protocol != desired.protocol.to_aws().as_str() {
        b = b.protocol(desired.protocol.to_aws());
    }
    if let Some(cert) = desired.certificate.as_ref().filter(|c| current.certificate.as_ref() != Some(*c)) {
        b = b.certificates(Certificate::builder().certificate_arn(cert).build());
    }
    if let Some(policy) = desired.ssl_policy.as_ref().filter(|p| current.ssl_policy.as_ref() != Some(*p)) {
        b = b.ssl_policy(policy);
    }
    if api.mutate(CALL).await {
        b.send().await.map_err(|e| errors::map(CALL, e))?;
    }
    Ok(Ls {
        arn: current.arn.clone(),
        port: desired.port,
        protocol: desired.protocol.to_aws().as_str().to_string(),
        target_group: Some(tg_arn.to_string()),
        certificate: desired.certificate.clone(),
        ssl_policy: desired.ssl_policy.clone().or_else(|| current.ssl_policy.clone()),
        actions: vec![forward(tg_arn)],
    })
}

pub async fn delete(api: &Api<'_>, arn: &str) -> Result<(), ProviderError> {
    const CALL: &str = "elbv2:DeleteListener";
    if !api.mutate(CALL).await {
        return Ok(());
    }
    match api.elb.delete_listener().listener_arn(arn).send().await {
        Ok(_) => Ok(()),
        Err(e) if errors::is(&e, &["ListenerNotFound"]) => Ok(()),
        Err(e) => Err(errors::map(CALL, e)),
    }
}
