//! `tls`: the endpoint's certificate is trusted and valid for the host, not about to expire, and the server
//! refuses protocols older than the minimum.

use std::sync::Arc;
use std::time::Duration;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName};
use rustls::{ClientConfig, ProtocolVersion, RootCertStore};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;

use super::Check;
use crate::config::{GateSpec, TlsGate, TlsVersion};

const TIMEOUT: Duration = Duration::from_secs(5);
const DEFAULT_MIN_VALIDITY: Duration = Duration::from_secs(14 * 24 * 3600);

pub async fn check(gate: &TlsGate) -> Check {
    let min_validity = gate.min_validity.map_or(DEFAULT_MIN_VALIDITY, |d| d.0);
    let expected = format!(
        "{}: certificate trusted and valid for the host for {} more, older protocols refused",
        GateSpec::Tls(gate.clone()).target(),
        humantime::format_duration(min_validity)
    );
    match tokio::time::timeout(TIMEOUT * 3, judge(gate, min_validity)).await {
        Ok(Ok(seen)) => Check::new(true, expected, seen),
        Ok(Err(problem)) => Check::new(false, expected, problem),
        Err(_) => Check::new(false, expected, format!("no answer within {}s", (TIMEOUT * 3).as_secs())),
    }
}

async fn judge(gate: &TlsGate, min_validity: Duration) -> Result<String, String> {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let host = gate.address.rsplit_once(':').map_or(gate.address.as_str(), |(h, _)| h.trim_matches(['[', ']']));
    let name = gate.server_name.as_deref().unwrap_or(host);
    let roots = roots(gate.ca.as_deref())?;
    let (version, leaf) =
        handshake(&gate.address, name, roots.clone(), &[&rustls::version::TLS13, &rustls::version::TLS12])
            .await
            .map_err(|e| format!("the handshake failed: {e}"))?;
    let negotiated = if version == ProtocolVersion::TLSv1_3 { TlsVersion::V1_3 } else { TlsVersion::V1_2 };
    let remaining = remaining_validity(&leaf)?;
    if remaining < min_validity {
        return Err(format!(
            "the certificate expires in {}, within {}",
            humantime::format_duration(round_to_minutes(remaining)),
            humantime::format_duration(min_validity)
        ));
    }
    if negotiated < gate.min_version {
        return Err(format!("{negotiated} was negotiated, older than {}", gate.min_version));
    }
    if let Some(old) = accepted_legacy(&gate.address, name).await? {
        return Err(format!("the server accepted {old}"));
    }
    if gate.min_version == TlsVersion::V1_3
        && handshake(&gate.address, name, roots, &[&rustls::version::TLS12]).await.is_ok()
    {
        return Err("the server accepted TLS 1.2".into());
    }
    Ok(format!(
        "{negotiated}, certificate valid for {name} for {} more, TLS 1.0/1.1 refused",
        humantime::format_duration(round_to_minutes(remaining))
    ))
}

fn round_to_minutes(d: Duration) -> Duration {
    Duration::from_secs(d.as_secs() / 60 * 60)
}

/// The system's roots, or only the certificates in `ca`: a private CA should not be mixed with public trust.
fn roots(ca: Option<&str>) -> Result<Arc<RootCertStore>, String> {
    let mut roots = RootCertStore::empty();
    let Some(ca) = ca else {
        roots.add_parsable_certificates(rustls_native_certs::load_native_certs().certs);
        return Ok(Arc::new(roots));
    };
    let pem = std::fs::read(ca).map_err(|e| format!("cannot read ca `{ca}`: {e}"))?;
    for cert in CertificateDer::pem_slice_iter(&pem) {
        let cert = cert.map_err(|e| format!("ca `{ca}` is not a PEM certificate bundle: {e}"))?;
        roots.add(cert).map_err(|e| format!("ca `{ca}` holds an unusable certificate: {e}"))?;
    }
    if roots.is_empty() {
        return Err(format!("ca `{ca}` holds no certificate"));
    }
    Ok(Arc::new(roots))
}

/// A verifying handshake: the negotiated version and the server's own certificate.
async fn handshake(
    address: &str,
    name: &str,
    roots: Arc<RootCertStore>,
    versions: &[&'static rustls::SupportedProtocolVersion],
) -> Result<(ProtocolVersion, CertificateDer<'static>), String> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(versions)
        .map_err(|e| format!("cannot set up TLS: {e}"))?
        .with_root_certificates(roots)
        .with_no_client_auth();
    let server_name = ServerName::try_from(name.to_string()).map_err(|_| format!("`{name}` is not a server name"))?;
    let tcp = TcpStream::connect(address).await.map_err(|e| format!("cannot connect to {address}: {e}"))?;
    let stream = TlsConnector::from(Arc::new(config)).connect(server_name, tcp).await.map_err(|e| e.to_string())?;
    let (_, connection) = stream.get_ref();
    let version = connection.protocol_version().ok_or("no protocol version was negotiated")?;
    let leaf = connection.peer_certificates().and_then(|c| c.first()).ok_or("the server sent no certificate")?;
    Ok((version, leaf.clone().into_owned()))
}

/// How long until the certificate's `notAfter`.
fn remaining_validity(der: &CertificateDer<'_>) -> Result<Duration, String> {
    let (_, cert) = x509_parser::parse_x509_certificate(der.as_ref())
        .map_err(|e| format!("the server's certificate does not parse: {e}"))?;
    let not_after = cert.validity().not_after.timestamp();
    let now = jiff::Timestamp::now().as_second();
    Ok(Duration::from_secs(u64::try_from(not_after - now).unwrap_or(0)))
}

/// Offers only TLS 1.0 and 1.1 (rustls cannot speak them, so the hello is written by hand) and reads whether the
/// server answers with a ServerHello for one of them. `Some(version)` when it does.
async fn accepted_legacy(address: &str, name: &str) -> Result<Option<&'static str>, String> {
    let mut tcp = TcpStream::connect(address).await.map_err(|e| format!("cannot connect to {address}: {e}"))?;
    tcp.write_all(&legacy_client_hello(name)).await.map_err(|e| format!("sending a TLS 1.1 hello: {e}"))?;
    let mut head = [0u8; 11];
    // A refusal is an alert, or the connection closing: either way no ServerHello arrives.
    let read = tokio::time::timeout(TIMEOUT, tcp.read_exact(&mut head)).await;
    if !matches!(read, Ok(Ok(_))) {
        return Ok(None);
    }
    let is_server_hello = head[0] == 0x16 && head[5] == 0x02;
    Ok(match (is_server_hello, [head[9], head[10]]) {
        (true, [3, 1]) => Some("TLS 1.0"),
        (true, [3, 2]) => Some("TLS 1.1"),
        _ => None,
    })
}

/// A TLS 1.1 ClientHello with the CBC suites those versions use, SNI for DNS names, and the usual curves.
fn legacy_client_hello(name: &str) -> Vec<u8> {
    const SUITES: &[u16] = &[0xc013, 0xc014, 0xc009, 0xc00a, 0x002f, 0x0035, 0x000a];
    let mut extensions = Vec::new();
    if name.parse::<std::net::IpAddr>().is_err() {
        let host = name.as_bytes();
        let list_len = host.len() + 3;
        extensions.extend(0u16.to_be_bytes());
        extensions.extend(((list_len + 2) as u16).to_be_bytes());
        extensions.extend((list_len as u16).to_be_bytes());
        extensions.push(0);
        extensions.extend((host.len() as u16).to_be_bytes());
        extensions.extend(host);
    }
    // supported_groups: secp256r1, x25519, secp384r1; ec_point_formats: uncompressed.
    extensions.extend([0x00, 0x0a, 0x00, 0x08, 0x00, 0x06, 0x00, 0x17, 0x00, 0x1d, 0x00, 0x18]);
    extensions.extend([0x00, 0x0b, 0x00, 0x02, 0x01, 0x00]);

    let mut hello = vec![0x03, 0x02];
    hello.extend((0..32).map(|_| fastrand::u8(..)));
    hello.push(0); // no session id
    hello.extend(((SUITES.len() * 2) as u16).to_be_bytes());
    SUITES.iter().for_each(|s| hello.extend(s.to_be_bytes()));
    hello.extend([1, 0]); // compression: none
    hello.extend((extensions.len() as u16).to_be_bytes());
    hello.extend(extensions);

    let mut handshake = vec![0x01];
    handshake.extend(&(hello.len() as u32).to_be_bytes()[1..]);
    handshake.extend(hello);
    let mut record = vec![0x16, 0x03, 0x01];
    record.extend((handshake.len() as u16).to_be_bytes());
    record.extend(handshake);
    record
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_legacy_hello_is_well_formed() {
        let record = legacy_client_hello("example.com");
        let record_len = u16::from_be_bytes([record[3], record[4]]) as usize;
        assert_eq!(record.len(), 5 + record_len);
        let hello_len = u32::from_be_bytes([0, record[6], record[7], record[8]]) as usize;
        assert_eq!(record_len, 4 + hello_len);
        assert_eq!(&record[9..11], &[3, 2]);
        assert!(record.windows(11).any(|w| w == b"example.com"));
        assert!(!legacy_client_hello("127.0.0.1").windows(9).any(|w| w == b"127.0.0.1"));
    }
}
