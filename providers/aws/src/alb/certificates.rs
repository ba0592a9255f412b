//! ACM certificates made from the Ingress's TLS Secrets, and the HTTPS listeners' certificate
//! lists.
//!
//! A Secret's certificate is imported into ACM tagged as ours (cluster, owner uid, the Secret's
//! `namespace/name` and a fingerprint of its content). When the Secret is rotated the same ACM
//! certificate is **re-imported in place** (ImportCertificate with its ARN): the listeners keep
//! pointing at the same ARN, so there is no moment without a certificate and no listener call.
//! A certificate no longer used is removed from the listeners first and deleted after.
//!
//! Found again through the record (one ListTagsForCertificate per certificate, which also checks
//! ownership), and through the tagging API when a wanted one is not in the record (an import
//! whose record was never written).

use std::collections::{BTreeMap, BTreeSet};

use aws_sdk_acm::primitives::Blob;
use aws_sdk_acm::types::Tag as AcmTag;
use aws_sdk_elasticloadbalancingv2::types::Certificate as ElbCertificate;
use cloudlb_provider::l7::Certificate;
use cloudlb_provider::{LoadBalancerId, ProviderError};

use crate::clients::Api;
use crate::{errors, tagged, tags};

/// The Secret (`namespace/name`) a certificate was imported from.
pub const SECRET_TAG: &str = "cloudlb.io/secret";
/// Fingerprint of the imported chain and key (what changes on rotation).
pub const FINGERPRINT_TAG: &str = "cloudlb.io/fingerprint";

/// One of our ACM certificates.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Imported {
    pub arn: String,
    pub secret: String,
    pub fingerprint: String,
}

fn imported(arn: &str, t: &BTreeMap<String, String>) -> Option<Imported> {
    Some(Imported {
        arn: arn.to_string(),
        secret: t.get(SECRET_TAG)?.clone(),
        fingerprint: t.get(FINGERPRINT_TAG).cloned().unwrap_or_default(),
    })
}

async fn tags_of(api: &Api<'_>, arn: &str) -> Result<Option<BTreeMap<String, String>>, ProviderError> {
    const CALL: &str = "acm:ListTagsForCertificate";
    api.permit(CALL).await;
    match api.acm.list_tags_for_certificate().certificate_arn(arn).send().await {
        Ok(r) => Ok(Some(
            r.tags().iter().map(|t| (t.key().to_string(), t.value().unwrap_or_default().to_string())).collect(),
        )),
        Err(e) if errors::is(&e, &["ResourceNotFoundException", "InvalidArnException"]) => Ok(None),
        Err(e) => Err(errors::map(CALL, e)),
    }
}

/// Our certificates for `id`: the recorded ones that are ours, plus, when a `wanted` Secret is
/// not among them, every one the tagging API knows.
pub async fn current(
    api: &Api<'_>,
    id: &LoadBalancerId,
    recorded: &[String],
    wanted: &[&str],
) -> Result<Vec<Imported>, ProviderError> {
    let mut out: Vec<Imported> = Vec::new();
    for arn in recorded {
        if let Some(t) = tags_of(api, arn).await?
            && tags::is_owned(id, &t)
            && let Some(c) = imported(arn, &t)
        {
            out.push(c);
        }
    }
    if wanted.iter().any(|w| !out.iter().any(|c| c.secret == *w)) {
        out.extend(all(api, id).await?.into_iter().filter(|c| !recorded.contains(&c.arn)));
    }
    Ok(out)
}

/// Every certificate the tagging API says is ours.
pub async fn all(api: &Api<'_>, id: &LoadBalancerId) -> Result<Vec<Imported>, ProviderError> {
    Ok(tagged::owned(api, id, &[tagged::CERTIFICATES])
        .await?
        .iter()
        .filter(|(arn, _)| arn.contains(":acm:"))
        .filter_map(|(arn, t)| imported(arn, t))
        .collect())
}

/// The certificate chain split as ACM wants it: the leaf, and the rest (if any).
fn split_chain(pem: &str) -> (String, Option<String>) {
    const END: &str = "-----END CERTIFICATE-----";
    match pem.find(END) {
        Some(i) => {
            let leaf = pem[..i + END.len()].trim().to_string() + "\n";
            let rest = pem[i + END.len()..].trim();
            (leaf, (!rest.is_empty()).then(|| rest.to_string() + "\n"))
        }
        None => (pem.to_string(), None),
    }
}

/// Import `cert` (new, or in place of `replace`), tagged as ours.
async fn import(
    api: &Api<'_>,
    id: &LoadBalancerId,
    cert: &Certificate,
    replace: Option<&str>,
    additional: &BTreeMap<String, String>,
) -> Result<String, ProviderError> {
    const CALL: &str = "acm:ImportCertificate";
    let (leaf, chain) = split_chain(&cert.chain_pem);
    let mut want = tags::desired(id, tags::ROLE_CERTIFICATE, additional);
    want.insert(SECRET_TAG.into(), cert.name.clone());
    want.insert(FINGERPRINT_TAG.into(), cert.fingerprint.clone());
    let mut b = api
        .acm
        .import_certificate()
        .certificate(Blob::new(leaf.into_bytes()))
        .private_key(Blob::new(cert.key_pem.0.clone().into_bytes()))
        .set_certificate_chain(chain.map(|c| Blob::new(c.into_bytes())));
    match replace {
        // Tags cannot be given on a re-import; they are updated below.
        Some(arn) => b = b.certificate_arn(arn),
        None => {
            b = b.set_tags(Some(
                want.iter()
                    .map(|(k, v)| AcmTag::builder().key(k).value(v).build())
                    .collect::<Result<Vec<_>, _>>()
                    .map_err(|e| ProviderError::Invalid { call: CALL, message: e.to_string() })?,
            ))
        }
    }
    if !api.mutate(CALL).await {
        return Ok(replace.map(String::from).unwrap_or_else(|| crate::planned::arn("certificate", &cert.name)));
    }
    let r = b.send().await.map_err(|e| invalid_certificate(CALL, &cert.name, e))?;
    let arn = r.certificate_arn().unwrap_or(replace.unwrap_or_default()).to_string();
    if replace.is_some() {
        const TAG: &str = "acm:AddTagsToCertificate";
        api.permit(TAG).await;
        let t = AcmTag::builder()
            .key(FINGERPRINT_TAG)
            .value(&cert.fingerprint)
            .build()
            .map_err(|e| ProviderError::Invalid { call: TAG, message: e.to_string() })?;
        api.acm
            .add_tags_to_certificate()
            .certificate_arn(&arn)
            .tags(t)
            .send()
            .await
            .map_err(|e| errors::map(TAG, e))?;
    }
    Ok(arn)
}

/// ACM refuses a malformed certificate or key with a validation error: say which Secret.
fn invalid_certificate<E>(
    call: &'static str,
    secret: &str,
    e: aws_sdk_acm::error::SdkError<E, aws_sdk_acm::config::http::HttpResponse>,
) -> ProviderError
where
    E: aws_sdk_acm::error::ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
{
    match errors::map(call, e) {
        ProviderError::Invalid { call, message } => ProviderError::Invalid {
            call,
            message: format!("ACM refused the certificate of Secret {secret}: {message}"),
        },
        other => other,
    }
}

/// Make every `wanted` certificate exist in ACM with its current content. Returns the ARN by
/// Secret, and our certificates no longer wanted (to delete once no listener uses them).
pub async fn ensure(
    api: &Api<'_>,
    id: &LoadBalancerId,
    wanted: &[&Certificate],
    current: Vec<Imported>,
    additional: &BTreeMap<String, String>,
) -> Result<(BTreeMap<String, String>, Vec<String>), ProviderError> {
    let mut arns = BTreeMap::new();
    let mut used: BTreeSet<String> = BTreeSet::new();
    for cert in wanted {
        let mine: Vec<&Imported> = current.iter().filter(|c| c.secret == cert.name).collect();
        let arn = match mine.iter().find(|c| c.fingerprint == cert.fingerprint).or(mine.first()) {
            Some(c) if c.fingerprint == cert.fingerprint => c.arn.clone(),
            Some(c) => import(api, id, cert, Some(&c.arn), additional).await?,
            None => import(api, id, cert, None, additional).await?,
        };
        used.insert(arn.clone());
        arns.insert(cert.name.clone(), arn);
    }
    let unused = current.into_iter().map(|c| c.arn).filter(|a| !used.contains(a)).collect();
    Ok((arns, unused))
}

/// Delete; gone already is success; still attached somewhere is retryable.
pub async fn delete(api: &Api<'_>, arn: &str) -> Result<(), ProviderError> {
    const CALL: &str = "acm:DeleteCertificate";
    if !api.mutate(CALL).await {
        return Ok(());
    }
    match api.acm.delete_certificate().certificate_arn(arn).send().await {
        Ok(_) => Ok(()),
        Err(e) if errors::is(&e, &["ResourceNotFoundException"]) => Ok(()),
        Err(e) if errors::is(&e, &["ResourceInUseException"]) => Err(ProviderError::Retryable {
            call: CALL,
            message: format!("certificate {arn} is still attached to a listener (ACM releases it shortly); will retry"),
        }),
        Err(e) => Err(errors::map(CALL, e)),
    }
}

// ---- a listener's certificate list ---------------------------------------------------------

/// The listener's certificates: (default, the others).
pub async fn of_listener(
    api: &Api<'_>,
    listener_arn: &str,
) -> Result<(Option<String>, BTreeSet<String>), ProviderError> {
    const CALL: &str = "elbv2:DescribeListenerCertificates";
    let mut default = None;
    let mut others = BTreeSet::new();
    if crate::planned::is(listener_arn) {
        return Ok((default, others));
    }
    let mut next: Option<String> = None;
    loop {
        api.permit(CALL).await;
        let r = api
            .elb
            .describe_listener_certificates()
            .listener_arn(listener_arn)
            .set_marker(next.clone())
            .send()
            .await
            .map_err(|e| errors::map(CALL, e))?;
        for c in r.certificates() {
            let Some(arn) = c.certificate_arn() else { continue };
            if c.is_default() == Some(true) {
                default = Some(arn.to_string());
            } else {
                others.insert(arn.to_string());
            }
        }
        next = r.next_marker().filter(|m| !m.is_empty()).map(String::from);
        if next.is_none() {
            break;
        }
    }
    if let Some(d) = &default {
        others.remove(d);
    }
    Ok((default, others))
}

fn elb_certs<'a>(arns: impl Iterator<Item = &'a String>) -> Vec<ElbCertificate> {
    arns.map(|a| ElbCertificate::builder().certificate_arn(a).build()).collect()
}

/// Converge an HTTPS listener's certificates: `want[0]` the default, the rest for SNI. New
/// ones are added before old ones are removed.
pub async fn converge_listener(api: &Api<'_>, listener_arn: &str, want: &[String]) -> Result<bool, ProviderError> {
    let Some(default) = want.first() else { return Ok(false) };
    // A listener a dry run plans to create gets the default certificate with it.
    let (current_default, current_others) = match crate::planned::is(listener_arn) {
        true => (Some(default.clone()), BTreeSet::new()),
        false => of_listener(api, listener_arn).await?,
    };
    let mut changed = false;
    if current_default.as_ref() != Some(default) {
        const CALL: &str = "elbv2:ModifyListener";
        if api.mutate(CALL).await {
            api.elb
                .modify_listener()
                .listener_arn(listener_arn)
                .certificates(ElbCertificate::builder().certificate_arn(default).build())
                .send()
                .await
                .map_err(|e| errors::map(CALL, e))?;
        }
        changed = true;
    }
    // Re-read after a default change: some backends reset the list on ModifyListener.
    let current_others = if changed { of_listener(api, listener_arn).await?.1 } else { current_others };
    let want_others: BTreeSet<String> = want[1..].iter().filter(|a| *a != default).cloned().collect();
    let add: Vec<&String> = want_others.difference(&current_others).collect();
    let remove: Vec<&String> = current_others.difference(&want_others).collect();
    if !add.is_empty() {
        const CALL: &str = "elbv2:AddListenerCertificates";
        if api.mutate(CALL).await {
            api.elb
                .add_listener_certificates()
                .listener_arn(listener_arn)
                .set_certificates(Some(elb_certs(add.into_iter())))
                .send()
                .await
                .map_err(|e| errors::map(CALL, e))?;
        }
        changed = true;
    }
    if !remove.is_empty() {
        const CALL: &str = "elbv2:RemoveListenerCertificates";
        if api.mutate(CALL).await {
            api.elb
                .remove_listener_certificates()
                .listener_arn(listener_arn)
                .set_certificates(Some(elb_certs(remove.into_iter())))
                .send()
                .await
                .map_err(|e| errors::map(CALL, e))?;
        }
        changed = true;
    }
    Ok(changed)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_chain_is_split_into_leaf_and_intermediates() {
        let leaf = "-----BEGIN CERTIFICATE-----\nAAA\n-----END CERTIFICATE-----";
        let inter = "-----BEGIN CERTIFICATE-----\nBBB\n-----END CERTIFICATE-----";
        let (l, c) = split_chain(&format!("{leaf}\n{inter}\n"));
        assert_eq!(l, format!("{leaf}\n"));
        assert_eq!(c, Some(format!("{inter}\n")));
        let (l, c) = split_chain(&format!("{leaf}\n"));
        assert_eq!((l, c), (format!("{leaf}\n"), None));
    }
}
