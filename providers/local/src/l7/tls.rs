//! TLS termination: certificates from the spec's PEM, chosen per handshake by SNI.
//!
//! ```text
//!  ClientHello (SNI) ─▶ Resolver ─▶ current Snapshot (ArcSwap) ─▶ L7Spec::certificate_for
//!                                                                  exact ▸ *.wildcard ▸ default
//!                                    ─▶ the parsed CertifiedKey at the same index
//! ```
//!
//! rustls's built-in SNI resolver matches exact names only, so the choice is ours: it *is* the
//! core's [`L7Spec::certificate_for`] (no second implementation to drift), evaluated on the
//! snapshot the data plane serves now. Rotation is a snapshot swap: handshakes after it get the
//! new certificate, connections already established keep theirs and are never dropped.
//!
//! Every certificate is parsed and checked (chain, key, key matches the leaf) **before** a
//! snapshot is built ([`parse_all`]): a broken one fails `ensure_l7` and is never installed,
//! and `validate_l7` reports the same messages without side effects.

use std::sync::Arc;

use arc_swap::ArcSwap;
use cloudlb_provider::L7Spec;
use cloudlb_provider::l7::Certificate;
use rustls::ServerConfig;
use rustls::crypto::aws_lc_rs;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;

use super::Snapshot;

/// Parse one certificate; the error says what is wrong, in words naming the certificate.
pub(crate) fn parse(c: &Certificate) -> Result<Arc<CertifiedKey>, String> {
    let what = |m: String| format!("certificate {}: {m}", c.name);
    let chain = CertificateDer::pem_slice_iter(c.chain_pem.as_bytes())
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| what(format!("tls.crt is not a valid PEM certificate chain ({e})")))?;
    if chain.is_empty() {
        return Err(what("tls.crt holds no PEM certificate".into()));
    }
    let key = PrivateKeyDer::from_pem_slice(c.key_pem.0.as_bytes())
        .map_err(|e| what(format!("tls.key is not a valid PEM private key ({e})")))?;
    let signing = aws_lc_rs::sign::any_supported_type(&key)
        .map_err(|e| what(format!("tls.key is not a usable private key ({e})")))?;
    let certified = CertifiedKey::new(chain, signing);
    certified.keys_match().map_err(|e| what(format!("tls.key does not belong to the certificate in tls.crt ({e})")))?;
    Ok(Arc::new(certified))
}

/// Every certificate of `spec`, parsed, in the spec's order; or every problem found.
pub(crate) fn parse_all(spec: &L7Spec) -> Result<Vec<Arc<CertifiedKey>>, Vec<String>> {
    let mut keys = Vec::with_capacity(spec.certificates.len());
    let mut problems = Vec::new();
    for c in &spec.certificates {
        match parse(c) {
            Ok(k) => keys.push(k),
            Err(p) => problems.push(p),
        }
    }
    if problems.is_empty() { Ok(keys) } else { Err(problems) }
}

/// Picks the certificate for each handshake from the snapshot being served.
#[derive(Debug)]
pub(crate) struct Resolver {
    snapshot: Arc<ArcSwap<Snapshot>>,
}

impl ResolvesServerCert for Resolver {
    fn resolve(&self, hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        let snap = self.snapshot.load();
        let chosen = snap.spec.certificate_for(hello.server_name())?;
        let index = snap.spec.certificates.iter().position(|c| std::ptr::eq(c, chosen))?;
        snap.certs.get(index).cloned()
    }
}

/// The TLS configuration of one load balancer's HTTPS listeners (ALPN h2, then http/1.1).
pub(crate) fn server_config(snapshot: Arc<ArcSwap<Snapshot>>) -> Result<Arc<ServerConfig>, rustls::Error> {
    let provider = Arc::new(aws_lc_rs::default_provider());
    let mut config = ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_no_client_auth()
        .with_cert_resolver(Arc::new(Resolver { snapshot }));
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}
