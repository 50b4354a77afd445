//! rustls client settings from a gate's `tls:` keys, for the `websocket` gate (reqwest builds its own for `http`).

use std::sync::Arc;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{CryptoProvider, verify_tls12_signature, verify_tls13_signature};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme};

use crate::config::TlsOptions;

/// A client configuration when `tls:` asks for something; `None` keeps the library's default (system roots).
pub fn client_config(tls: &TlsOptions) -> Result<Option<Arc<ClientConfig>>, String> {
    if !tls.insecure && tls.ca.is_none() {
        return Ok(None);
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| format!("cannot set up TLS: {e}"))?;
    let config = if tls.insecure {
        builder.dangerous().with_custom_certificate_verifier(Arc::new(AnyCertificate(provider))).with_no_client_auth()
    } else {
        builder.with_root_certificates(roots(tls.ca.as_deref().unwrap_or_default())?).with_no_client_auth()
    };
    Ok(Some(Arc::new(config)))
}

/// The system's roots plus every certificate in the PEM file `ca`.
fn roots(ca: &str) -> Result<RootCertStore, String> {
    let pem = std::fs::read(ca).map_err(|e| format!("cannot read tls.ca `{ca}`: {e}"))?;
    let mut roots = RootCertStore::empty();
    roots.add_parsable_certificates(rustls_native_certs::load_native_certs().certs);
    let mut added = 0;
    for cert in CertificateDer::pem_slice_iter(&pem) {
        let cert = cert.map_err(|e| format!("tls.ca `{ca}` is not a PEM certificate bundle: {e}"))?;
        roots.add(cert).map_err(|e| format!("tls.ca `{ca}` holds an unusable certificate: {e}"))?;
        added += 1;
    }
    if added == 0 {
        return Err(format!("tls.ca `{ca}` holds no certificate"));
    }
    Ok(roots)
}

/// `tls.insecure`: any certificate is accepted, but handshake signatures are still checked.
#[derive(Debug)]
struct AnyCertificate(Arc<CryptoProvider>);

impl ServerCertVerifier for AnyCertificate {
    fn verify_server_cert(
        &self,
        _: &CertificateDer<'_>,
        _: &[CertificateDer<'_>],
        _: &ServerName<'_>,
        _: &[u8],
        _: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls12_signature(message, cert, dss, &self.0.signature_verification_algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls13_signature(message, cert, dss, &self.0.signature_verification_algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}
