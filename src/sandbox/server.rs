//! HTTPS serving: TLS with optional client certificates (verified against the sandbox CA, so that
//! certificate, token and anonymous clients share one port), HTTP/1.1 and HTTP/2, per-request
//! latency and fault injection, and request counters.

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::combinators::BoxBody;
use hyper_util::rt::{TokioExecutor, TokioIo};
use rustls::server::WebPkiClientVerifier;
use rustls_pki_types::{CertificateDer, PrivateKeyDer, pem::PemObject};
use tokio::net::TcpListener;
use tokio::sync::watch;

use super::store::Store;
use crate::error::{Error, Result};
use crate::pki::ca::{Ca, Subject, Usages};
use crate::pki::cert::CertInfo;
use crate::pki::keys::PrivateKey;

/// Response bodies (whole or streamed).
pub type Body = BoxBody<Bytes, std::io::Error>;

/// Behaviour knobs.
#[derive(Debug, Clone)]
pub struct SandboxOptions {
    /// Listen port on 127.0.0.1 (0 = any free port).
    pub port: u16,
    /// CA certificate and PKCS#8 key to use instead of a fresh CA.
    pub ca: Option<(String, String)>,
    /// Start without the kubeadm bootstrap bindings and cluster-info.
    pub bare: bool,
    /// Also approve serving CSRs (demos).
    pub auto_approve_serving: bool,
    /// Share of requests answered 500 or 429.
    pub fault_rate: f64,
    /// Added latency per request, uniformly in [min, max] milliseconds.
    pub latency_ms: (u64, u64),
    /// Close every watch abruptly after this long.
    pub drop_watch_after: Option<Duration>,
    /// Default certificate lifetime of the signer.
    pub signing_duration: Duration,
    /// Interval of watch bookmarks.
    pub bookmark_interval: Duration,
    /// Rewrite `cluster-info` on its way to anonymous readers, as a man in the middle would
    /// (tests of discovery's JWS check; the bootstrap signer would re-sign a stored change).
    pub tamper_cluster_info: bool,
    /// Run the controllers (approver, signers, token cleaner). Off only for tests that plant
    /// objects the controllers would repair.
    pub run_controllers: bool,
}

impl Default for SandboxOptions {
    fn default() -> Self {
        SandboxOptions {
            port: 0,
            ca: None,
            bare: false,
            auto_approve_serving: false,
            fault_rate: 0.0,
            latency_ms: (0, 0),
            drop_watch_after: None,
            signing_duration: Duration::from_secs(365 * 24 * 3600),
            bookmark_interval: Duration::from_secs(5),
            tamper_cluster_info: false,
            run_controllers: true,
        }
    }
}

/// Requests counted per user and verb.
pub type Counters = BTreeMap<String, BTreeMap<String, u64>>;

/// Shared server state.
pub struct State {
    /// Objects.
    pub store: Mutex<Store>,
    /// The cluster CA.
    pub ca: Arc<Ca>,
    /// Knobs.
    pub options: SandboxOptions,
    /// Counters.
    pub counters: Mutex<Counters>,
    /// `https://127.0.0.1:PORT`.
    pub url: String,
    /// Flips to true on shutdown; watches end.
    pub shutdown: watch::Receiver<bool>,
}

impl State {
    /// Counts one request.
    pub fn count(&self, user: &str, verb: &str) {
        let mut c = self.counters.lock().expect("counters");
        *c.entry(user.to_string())
            .or_default()
            .entry(verb.to_string())
            .or_default() += 1;
    }
}

/// A uniform random number in [0, 1).
pub fn random_unit() -> f64 {
    let mut b = [0u8; 8];
    let _ = ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut b);
    (u64::from_le_bytes(b) >> 11) as f64 / (1u64 << 53) as f64
}

/// Builds the TLS acceptor: a serving certificate from the CA for 127.0.0.1, ::1 and localhost,
/// client certificates optional but verified when offered.
pub fn tls_acceptor(ca: &Ca) -> Result<tokio_rustls::TlsAcceptor> {
    let key = PrivateKey::generate()?;
    let ips = ["127.0.0.1".parse().expect("ip"), "::1".parse().expect("ip")];
    let dns = [
        "localhost".to_string(),
        "kubernetes".to_string(),
        "kubernetes.default.svc".to_string(),
    ];
    let cert_pem = ca.issue(
        key.pair(),
        &Subject {
            cn: "kube-apiserver",
            orgs: &[],
            dns: &dns,
            ips: &ips,
        },
        Usages::SERVER,
        time::Duration::days(365),
    )?;
    let certs: Vec<CertificateDer<'static>> = vec![
        CertificateDer::from_pem_slice(cert_pem.as_bytes())
            .map_err(|e| Error::internal(format!("server cert: {e}")))?,
        CertificateDer::from(ca.cert_der().to_vec()),
    ];
    let key_der = PrivateKeyDer::from_pem_slice(key.pem().expose().as_bytes())
        .map_err(|e| Error::internal(format!("server key: {e}")))?;
    let mut roots = rustls::RootCertStore::empty();
    roots
        .add(CertificateDer::from(ca.cert_der().to_vec()))
        .map_err(|e| Error::internal(format!("CA: {e}")))?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider.clone())
        .allow_unauthenticated()
        .build()
        .map_err(|e| Error::internal(format!("client verifier: {e}")))?;
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| Error::internal(format!("TLS: {e}")))?
        .with_client_cert_verifier(verifier)
        .with_single_cert(certs, key_der)
        .map_err(|e| Error::internal(format!("TLS: {e}")))?;
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(tokio_rustls::TlsAcceptor::from(Arc::new(config)))
}

/// Accepts connections until `shutdown` flips.
pub async fn serve(listener: TcpListener, acceptor: tokio_rustls::TlsAcceptor, state: Arc<State>) {
    let mut shutdown = state.shutdown.clone();
    loop {
        let accepted = tokio::select! {
            a = listener.accept() => a,
            _ = shutdown.changed() => return,
        };
        let Ok((tcp, _peer)) = accepted else { continue };
        let _ = tcp.set_nodelay(true);
        let acceptor = acceptor.clone();
        let state = state.clone();
        tokio::spawn(async move {
            let Ok(tls) = acceptor.accept(tcp).await else {
                return;
            };
            let peer = tls
                .get_ref()
                .1
                .peer_certificates()
                .and_then(|c| c.first())
                .and_then(|c| CertInfo::parse(c).ok());
            let peer = Arc::new(peer);
            let service = hyper::service::service_fn(move |req| {
                let state = state.clone();
                let peer = peer.clone();
                async move {
                    Ok::<_, Infallible>(
                        super::api::handle(state, peer.as_ref().as_ref(), req).await,
                    )
                }
            });
            let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                .serve_connection(TokioIo::new(tls), service)
                .await;
        });
    }
}

/// Binds 127.0.0.1:`port`.
pub async fn bind(port: u16) -> Result<(TcpListener, SocketAddr)> {
    let listener = TcpListener::bind(("127.0.0.1", port)).await.map_err(|e| {
        Error::new(
            crate::error::ErrorKind::Io,
            format!("cannot listen on 127.0.0.1:{port}: {e}; choose another --port"),
        )
    })?;
    let addr = listener
        .local_addr()
        .map_err(|e| Error::internal(e.to_string()))?;
    Ok((listener, addr))
}
