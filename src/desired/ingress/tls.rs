//! TLS Secrets into certificates.
//!
//! Each `spec.tls` entry names a Secret in the Ingress's namespace and the SNI hosts it serves
//! (none: the default certificate). A Secret is usable when it has `tls.crt` (a PEM chain, leaf
//! first) and `tls.key` (a PEM private key) that belong together — checked here with the same
//! crypto provider the data plane uses, so nothing that would fail a handshake gets through.
//!
//! **A working certificate is never replaced by a broken one**: when a Secret is missing or
//! broken, the last certificate that was valid for it (kept by the controller) goes on serving,
//! and a warning says so. Only a Secret that was never valid leaves its hosts without one.

use std::collections::BTreeMap;

use cloudlb_provider::l7::Certificate;
use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::api::networking::v1::IngressSpec;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};

use super::Inputs;

/// Certificates to serve, and the ones that are valid now (for the last-good cache).
pub(super) struct Tls {
    pub serving: Vec<Certificate>,
    pub valid: Vec<Certificate>,
}

pub(super) fn certificates(
    namespace: &str,
    spec: &IngressSpec,
    inputs: &Inputs<'_>,
    warnings: &mut Vec<String>,
) -> Tls {
    // Hosts per Secret: two entries naming one Secret are one certificate.
    let mut wanted: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for (i, entry) in spec.tls.iter().flatten().enumerate() {
        match entry.secret_name.as_deref().map(str::trim).filter(|s| !s.is_empty()) {
            Some(secret) => wanted.entry(secret.to_string()).or_default().extend(entry.hosts.iter().flatten().cloned()),
            None => warnings.push(format!(
                "tls entry {i} names no secretName: cloudlb has no default certificate, so it is ignored"
            )),
        }
    }
    let mut serving = Vec::new();
    let mut valid = Vec::new();
    for (secret, hosts) in wanted {
        let name = format!("{namespace}/{secret}");
        match load((inputs.secrets)(namespace, &secret).as_deref(), &name, hosts.clone()) {
            Ok(cert) => {
                valid.push(cert.clone());
                serving.push(cert);
            }
            Err(why) => match (inputs.last_good)(&name) {
                Some(previous) => {
                    warnings.push(format!("Secret {name}: {why}; the previous certificate goes on serving"));
                    // The hosts come from the Ingress as it is now.
                    serving.push(Certificate::new(name, hosts, previous.chain_pem, previous.key_pem.0));
                }
                None => warnings.push(format!("Secret {name}: {why}; its hosts have no certificate")),
            },
        }
    }
    serving.sort_by(|a, b| a.name.cmp(&b.name));
    Tls { serving, valid }
}

/// A certificate from a Secret, or why it cannot be one.
fn load(secret: Option<&Secret>, name: &str, hosts: Vec<String>) -> Result<Certificate, String> {
    let secret = secret.ok_or("it does not exist (or is not of type kubernetes.io/tls)")?;
    let data = secret.data.as_ref();
    let field = |k: &str| data.and_then(|d| d.get(k)).map(|b| b.0.clone()).filter(|b| !b.is_empty());
    let chain = field("tls.crt").ok_or("it has no tls.crt")?;
    let key = field("tls.key").ok_or("it has no tls.key")?;
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(&chain)
        .collect::<Result<_, _>>()
        .map_err(|e| format!("tls.crt is not PEM certificates: {e}"))?;
    if certs.is_empty() {
        return Err("tls.crt holds no certificate".into());
    }
    let der = PrivateKeyDer::from_pem_slice(&key).map_err(|e| format!("tls.key is not a PEM private key: {e}"))?;
    let provider = rustls::crypto::aws_lc_rs::default_provider();
    rustls::sign::CertifiedKey::from_der(certs, der, &provider)
        .map_err(|e| format!("tls.crt and tls.key do not form a usable certificate: {e}"))?;
    let text = |b: Vec<u8>| String::from_utf8(b).map_err(|_| "the PEM data is not text".to_string());
    Ok(Certificate::new(name.to_string(), hosts, text(chain)?, text(key)?))
}
