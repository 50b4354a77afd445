//! The HTTP side of a run: the scenario compiled once into ready-to-send request bytes (rendered
//! per request only where a URL or body has placeholders), and one keep-alive connection
//! (`http1.rs`, plain TCP or rustls) per origin and load connection.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use anyhow::Context;
use http::header::{CONTENT_LENGTH, HOST, HeaderName, HeaderValue};
use http::{Method, Uri};
use rustls::pki_types::ServerName;
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;
use tokio_util::either::Either;

use super::http1::{Connection, Failure};
use super::spec::{LoadSpec, WeightedRequest};
use super::stats::ErrorKind;
use super::template::{Fill, Template, push_decimal};

/// Where connections go: resolved once, so connecting never waits for DNS.
pub struct Origin {
    addr: SocketAddr,
    tls: Option<(TlsConnector, ServerName<'static>)>,
}

struct PreparedRequest {
    origin: usize,
    /// `HEAD`: the answer has no body whatever its headers say.
    head_only: bool,
    /// The whole request, when neither the path nor the body has placeholders.
    fixed: Option<Vec<u8>>,
    /// `"METHOD "`, then the path, then `" HTTP/1.1\r\n"` and these header lines.
    method: Vec<u8>,
    path: Template,
    header_lines: Vec<u8>,
    body: Template,
    /// Methods that carry a body send `content-length` even when it is 0.
    always_length: bool,
}

/// The scenario with everything that does not change per request already rendered.
pub struct Scenario {
    pub origins: Vec<Origin>,
    requests: Vec<PreparedRequest>,
    cumulative_weights: Vec<u32>,
    counter: AtomicU64,
}

/// What one request ended with.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Outcome {
    Status(u16),
    Failed(ErrorKind),
}

impl Scenario {
    pub async fn prepare(spec: &LoadSpec) -> anyhow::Result<Scenario> {
        let tls = tls_config(spec.insecure_tls);
        let mut origins: Vec<(String, Origin)> = Vec::new();
        let mut requests = Vec::new();
        let mut cumulative_weights = Vec::new();
        let mut total = 0u32;
        for (i, wr) in spec.scenario.iter().enumerate() {
            let prepared = prepare_request(wr, &tls, &mut origins)
                .await
                .with_context(|| format!("scenario request {} ({} {})", i + 1, wr.method, wr.url))?;
            total = total.checked_add(wr.weight).context("scenario weights add up to more than 4294967295")?;
            cumulative_weights.push(total);
            requests.push(prepared);
        }
        Ok(Scenario {
            origins: origins.into_iter().map(|(_, o)| o).collect(),
            requests,
            cumulative_weights,
            counter: AtomicU64::new(0),
        })
    }

    /// Picks a request index by weight; a single request costs no random draw.
    pub fn pick(&self) -> usize {
        if self.requests.len() == 1 {
            return 0;
        }
        let total = *self.cumulative_weights.last().unwrap_or(&1);
        let x = fastrand::u32(0..total.max(1));
        self.cumulative_weights.partition_point(|&c| c <= x)
    }

    pub fn origin_of(&self, index: usize) -> usize {
        self.requests[index].origin
    }

    /// The bytes of request `index`: shared when fixed, else rendered into `scratch`.
    pub fn request<'a>(&'a self, index: usize, scratch: &'a mut Vec<u8>) -> &'a [u8] {
        let r = &self.requests[index];
        if let Some(fixed) = &r.fixed {
            return fixed;
        }
        let counter = if r.path.uses_counter() || r.body.uses_counter() {
            self.counter.fetch_add(1, Ordering::Relaxed)
        } else {
            0
        };
        render_request(r, Fill { counter, uuid: fastrand::u128(..) }, scratch);
        scratch
    }
}

fn render_request(r: &PreparedRequest, fill: Fill, out: &mut Vec<u8>) {
    out.clear();
    out.extend_from_slice(&r.method);
    r.path.render_into(fill, out);
    out.extend_from_slice(b" HTTP/1.1\r\n");
    out.extend_from_slice(&r.header_lines);
    let length = r.body.rendered_len(fill);
    if length > 0 || r.always_length {
        out.extend_from_slice(b"content-length: ");
        push_decimal(out, length as u64);
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(b"\r\n");
    r.body.render_into(fill, out);
}

async fn prepare_request(
    wr: &WeightedRequest,
    tls: &Arc<rustls::ClientConfig>,
    origins: &mut Vec<(String, Origin)>,
) -> anyhow::Result<PreparedRequest> {
    let method =
        Method::from_bytes(wr.method.as_bytes()).map_err(|_| anyhow::anyhow!("invalid HTTP method {:?}", wr.method))?;
    let (scheme, rest) = wr.url.split_once("://").context("URL must start with http:// or https://")?;
    let secure = match scheme.to_ascii_lowercase().as_str() {
        "http" => false,
        "https" => true,
        other => anyhow::bail!("unsupported URL scheme {other:?} (use http or https)"),
    };
    let (authority, path) = match rest.find(['/', '?']) {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, "/"),
    };
    anyhow::ensure!(!authority.is_empty() && !authority.contains('{'), "URL needs a fixed host");
    let path = if path.starts_with('?') { format!("/{path}") } else { path.to_string() };
    let authority_uri: http::uri::Authority = authority.parse().context("invalid host or port in URL")?;
    let host = authority_uri.host().trim_start_matches('[').trim_end_matches(']');
    let port = authority_uri.port_u16().unwrap_or(if secure { 443 } else { 80 });
    let key = format!("{scheme}://{host}:{port}");
    let origin = match origins.iter().position(|(k, _)| *k == key) {
        Some(i) => i,
        None => {
            let addr = tokio::net::lookup_host((host, port))
                .await
                .with_context(|| format!("cannot resolve {host}"))?
                .next()
                .with_context(|| format!("{host} resolves to no address"))?;
            let tls = if secure {
                let name = ServerName::try_from(host.to_string())
                    .with_context(|| format!("invalid TLS server name {host:?}"))?;
                Some((TlsConnector::from(tls.clone()), name))
            } else {
                None
            };
            origins.push((key, Origin { addr, tls }));
            origins.len() - 1
        }
    };
    let path = Template::parse(&path)?;
    // Placeholders only add digits and hex, so one sample rendering checks every request's path.
    let mut sample = Vec::new();
    path.render_into(Fill { counter: 0, uuid: 0 }, &mut sample);
    Uri::try_from(sample).context("invalid URL path")?;
    let mut header_lines = Vec::new();
    let mut has_host = false;
    for (name, value) in &wr.headers {
        let name =
            HeaderName::from_bytes(name.as_bytes()).map_err(|_| anyhow::anyhow!("invalid header name {name:?}"))?;
        let value = HeaderValue::from_str(value).map_err(|_| anyhow::anyhow!("invalid value for header {name}"))?;
        // The length is the rendered body's, which templating changes per request.
        if name == CONTENT_LENGTH {
            continue;
        }
        has_host |= name == HOST;
        push_header(&mut header_lines, name.as_str(), value.as_bytes());
    }
    if !has_host {
        let value = HeaderValue::from_str(authority).context("invalid host")?;
        push_header(&mut header_lines, HOST.as_str(), value.as_bytes());
    }
    let body = Template::parse(wr.body.as_deref().unwrap_or(""))?;
    let mut prepared = PreparedRequest {
        origin,
        head_only: method == Method::HEAD,
        fixed: None,
        method: format!("{method} ").into_bytes(),
        always_length: matches!(method, Method::POST | Method::PUT | Method::PATCH),
        path,
        header_lines,
        body,
    };
    if prepared.path.is_fixed() && prepared.body.is_fixed() {
        let mut bytes = Vec::new();
        render_request(&prepared, Fill { counter: 0, uuid: 0 }, &mut bytes);
        prepared.fixed = Some(bytes);
    }
    Ok(prepared)
}

fn push_header(out: &mut Vec<u8>, name: &str, value: &[u8]) {
    out.extend_from_slice(name.as_bytes());
    out.extend_from_slice(b": ");
    out.extend_from_slice(value);
    out.extend_from_slice(b"\r\n");
}

fn tls_config(insecure: bool) -> Arc<rustls::ClientConfig> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = rustls::ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .expect("ring supports the default TLS versions");
    let mut config = if insecure {
        builder.dangerous().with_custom_certificate_verifier(Arc::new(AcceptAnyCert(provider))).with_no_client_auth()
    } else {
        let roots = rustls::RootCertStore { roots: webpki_roots::TLS_SERVER_ROOTS.to_vec() };
        builder.with_root_certificates(roots).with_no_client_auth()
    };
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Arc::new(config)
}

/// `insecure_tls`: rehearsal stacks often use self-signed certificates.
#[derive(Debug)]
struct AcceptAnyCert(Arc<rustls::crypto::CryptoProvider>);

impl rustls::client::danger::ServerCertVerifier for AcceptAnyCert {
    fn verify_server_cert(
        &self,
        _: &rustls::pki_types::CertificateDer<'_>,
        _: &[rustls::pki_types::CertificateDer<'_>],
        _: &ServerName<'_>,
        _: &[u8],
        _: rustls::pki_types::UnixTime,
    ) -> Result<rustls::client::danger::ServerCertVerified, rustls::Error> {
        Ok(rustls::client::danger::ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        _: &[u8],
        _: &rustls::pki_types::CertificateDer<'_>,
        _: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        Ok(rustls::client::danger::HandshakeSignatureValid::assertion())
    }

    fn verify_tls13_signature(
        &self,
        _: &[u8],
        _: &rustls::pki_types::CertificateDer<'_>,
        _: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        Ok(rustls::client::danger::HandshakeSignatureValid::assertion())
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

/// Opens one keep-alive connection (TCP, then TLS for https).
pub async fn connect(origin: &Origin) -> std::io::Result<Connection> {
    let tcp = TcpStream::connect(origin.addr).await?;
    tcp.set_nodelay(true)?;
    let stream = match &origin.tls {
        None => Either::Left(tcp),
        Some((connector, name)) => Either::Right(Box::new(connector.connect(name.clone(), tcp).await?)),
    };
    Ok(Connection::new(stream))
}

/// Sends request `index` on `slot` (connecting first if needed) and reads the whole answer;
/// `scratch` holds the request when it is rendered per request.
pub async fn exchange(
    scenario: &Scenario,
    slot: &mut Option<Connection>,
    scratch: &mut Vec<u8>,
    index: usize,
) -> Outcome {
    let origin = &scenario.origins[scenario.origin_of(index)];
    let head_only = scenario.requests[index].head_only;
    let request = scenario.request(index, scratch);
    loop {
        let conn = match slot {
            Some(conn) => conn,
            None => match connect(origin).await {
                Ok(conn) => slot.insert(conn),
                Err(_) => return Outcome::Failed(ErrorKind::Connect),
            },
        };
        match conn.exchange(request, head_only).await {
            Ok(answer) => {
                if !answer.keep_alive {
                    *slot = None;
                }
                return Outcome::Status(answer.status);
            }
            // The server closed the idle keep-alive connection: not an error, send on a new one
            // (a fresh connection never reports this, so this retries at most once).
            Err(Failure::ClosedBeforeAnswer) => *slot = None,
            Err(Failure::Broken) => {
                *slot = None;
                return Outcome::Failed(ErrorKind::Other);
            }
        }
    }
}
