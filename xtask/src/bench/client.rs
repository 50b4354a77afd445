//! The HTTP side of a run: the scenario compiled once into ready-to-send parts, and one hyper
//! HTTP/1.1 keep-alive connection (plain TCP or rustls) per origin and load connection.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use anyhow::Context;
use bytes::Bytes;
use http::header::{HOST, HeaderName, HeaderValue};
use http::{HeaderMap, Method, Request, Uri};
use http_body_util::{BodyExt, Full};
use hyper::client::conn::http1::SendRequest;
use hyper_util::rt::TokioIo;
use rustls::pki_types::ServerName;
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;

use super::spec::{LoadSpec, WeightedRequest};
use super::stats::ErrorKind;
use super::template::{Fill, Template};

pub type Sender = SendRequest<Full<Bytes>>;

/// Where connections go: resolved once, so connecting never waits for DNS.
pub struct Origin {
    addr: SocketAddr,
    tls: Option<(TlsConnector, ServerName<'static>)>,
}

struct PreparedRequest {
    origin: usize,
    method: Method,
    path: Template,
    fixed_uri: Option<Uri>,
    headers: HeaderMap,
    body: Template,
}

/// The scenario with everything that does not change per request already parsed.
pub struct Scenario {
    pub origins: Vec<Origin>,
    requests: Vec<PreparedRequest>,
    cumulative_weights: Vec<u32>,
    counter: AtomicU64,
    needs_uuid: bool,
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
        let mut needs_uuid = false;
        for (i, wr) in spec.scenario.iter().enumerate() {
            let prepared = prepare_request(wr, &tls, &mut origins)
                .await
                .with_context(|| format!("scenario request {} ({} {})", i + 1, wr.method, wr.url))?;
            needs_uuid |= !prepared.path.is_fixed() || !prepared.body.is_fixed();
            total = total.checked_add(wr.weight).context("scenario weights add up to more than 4294967295")?;
            cumulative_weights.push(total);
            requests.push(prepared);
        }
        Ok(Scenario {
            origins: origins.into_iter().map(|(_, o)| o).collect(),
            requests,
            cumulative_weights,
            counter: AtomicU64::new(0),
            needs_uuid,
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

    pub fn build(&self, index: usize) -> anyhow::Result<Request<Full<Bytes>>> {
        let r = &self.requests[index];
        let fill = if self.needs_uuid {
            Fill {
                counter: if r.path.uses_counter() || r.body.uses_counter() {
                    self.counter.fetch_add(1, Ordering::Relaxed)
                } else {
                    0
                },
                uuid: fastrand::u128(..),
            }
        } else {
            Fill { counter: 0, uuid: 0 }
        };
        let uri = match &r.fixed_uri {
            Some(u) => u.clone(),
            None => Uri::from_maybe_shared(r.path.render(fill)).context("templated URL path")?,
        };
        let mut req = Request::new(Full::new(r.body.render(fill)));
        *req.method_mut() = r.method.clone();
        *req.uri_mut() = uri;
        *req.headers_mut() = r.headers.clone();
        Ok(req)
    }
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
    let fixed_uri = match &path {
        Template::Fixed(b) => Some(Uri::from_maybe_shared(b.clone()).context("invalid URL path")?),
        Template::Parts(_) => None,
    };
    let mut headers = HeaderMap::new();
    for (name, value) in &wr.headers {
        let name =
            HeaderName::from_bytes(name.as_bytes()).map_err(|_| anyhow::anyhow!("invalid header name {name:?}"))?;
        let value = HeaderValue::from_str(value).map_err(|_| anyhow::anyhow!("invalid value for header {name}"))?;
        headers.append(name, value);
    }
    if !headers.contains_key(HOST) {
        headers.insert(HOST, HeaderValue::from_str(authority).context("invalid host")?);
    }
    let body = Template::parse(wr.body.as_deref().unwrap_or(""))?;
    Ok(PreparedRequest { origin, method, path, fixed_uri, headers, body })
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

/// Opens one keep-alive connection; its driver task runs on the current `LocalSet`.
pub async fn connect(origin: &Origin) -> std::io::Result<Sender> {
    let tcp = TcpStream::connect(origin.addr).await?;
    tcp.set_nodelay(true)?;
    match &origin.tls {
        None => handshake(tcp).await,
        Some((connector, name)) => handshake(connector.connect(name.clone(), tcp).await?).await,
    }
}

async fn handshake<S>(stream: S) -> std::io::Result<Sender>
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let (sender, conn) =
        hyper::client::conn::http1::handshake(TokioIo::new(stream)).await.map_err(std::io::Error::other)?;
    tokio::task::spawn_local(async move {
        let _ = conn.await;
    });
    Ok(sender)
}

/// Sends request `index` on `slot` (connecting first if needed) and reads the whole answer.
pub async fn exchange(scenario: &Scenario, slot: &mut Option<Sender>, index: usize) -> Outcome {
    let origin = &scenario.origins[scenario.origin_of(index)];
    if let Some(sender) = slot {
        // A connection the server closed after its last answer is replaced, not counted as an error.
        if sender.ready().await.is_err() {
            *slot = None;
        }
    }
    if slot.is_none() {
        match connect(origin).await {
            Ok(sender) => *slot = Some(sender),
            Err(_) => return Outcome::Failed(ErrorKind::Connect),
        }
    }
    let Some(sender) = slot.as_mut() else {
        return Outcome::Failed(ErrorKind::Connect);
    };
    let Ok(request) = scenario.build(index) else {
        return Outcome::Failed(ErrorKind::Other);
    };
    let response = match sender.send_request(request).await {
        Ok(r) => r,
        Err(_) => {
            *slot = None;
            return Outcome::Failed(ErrorKind::Other);
        }
    };
    let status = response.status().as_u16();
    let mut body = response.into_body();
    while let Some(frame) = body.frame().await {
        if frame.is_err() {
            *slot = None;
            return Outcome::Failed(ErrorKind::Other);
        }
    }
    Outcome::Status(status)
}
