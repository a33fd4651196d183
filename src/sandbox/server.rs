//! HTTPS serving: TLS with optional client certificates (verified against the sandbox CA, so that
//! certificate, token and anonymous clients share one port), HTTP/1.1 and HTTP/2, and the limits a
//! real server has against abuse: a cap on connections served at once (more are closed as they
//! arrive, never queued), a TLS handshake timeout, a header-read timeout, an idle timeout (a
//! connection with no request in flight is closed), and an accept loop that backs off when the
//! process runs out of file descriptors instead of spinning.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use rustls::server::WebPkiClientVerifier;
use rustls_pki_types::{CertificateDer, PrivateKeyDer, pem::PemObject};
use tokio::net::TcpListener;

use super::state::State;
use crate::error::{Error, Result};
use crate::pki::ca::{Ca, Subject, Usages};
use crate::pki::keys::PrivateKey;

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
    let provider = Arc::new(crate::cluster::crypto_provider());
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

/// Connections being served; a slot is held from accept to close.
struct Slot(Arc<AtomicUsize>);

impl Drop for Slot {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

/// Lets the process use as many file descriptors as its hard limit allows, so that the
/// connection cap (not the descriptor limit) decides when connections are refused.
fn raise_fd_limit() {
    use rustix::process::{Resource, getrlimit, setrlimit};
    let limit = getrlimit(Resource::Nofile);
    if let Some(max) = limit.maximum
        && limit.current.is_some_and(|c| c < max)
    {
        let _ = setrlimit(
            Resource::Nofile,
            rustix::process::Rlimit {
                current: Some(max),
                maximum: Some(max),
            },
        );
    }
}

/// Accepts connections until `shutdown` flips.
pub async fn serve(listener: TcpListener, acceptor: tokio_rustls::TlsAcceptor, state: Arc<State>) {
    raise_fd_limit();
    let mut shutdown = state.shutdown.clone();
    let active = Arc::new(AtomicUsize::new(0));
    loop {
        let accepted = tokio::select! {
            a = listener.accept() => a,
            _ = shutdown.changed() => return,
        };
        let tcp = match accepted {
            Ok((tcp, _peer)) => tcp,
            // Out of descriptors (or another transient error): wait instead of spinning.
            Err(_) => {
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        if active.fetch_add(1, Ordering::Relaxed) >= state.options.max_connections {
            active.fetch_sub(1, Ordering::Relaxed);
            drop(tcp);
            continue;
        }
        let slot = Slot(active.clone());
        let _ = tcp.set_nodelay(true);
        let acceptor = acceptor.clone();
        let state = state.clone();
        tokio::spawn(async move {
            let _slot = slot;
            let handshake = acceptor.accept(tcp);
            let Ok(Ok(tls)) =
                tokio::time::timeout(state.options.handshake_timeout, handshake).await
            else {
                return;
            };
            let peer = tls
                .get_ref()
                .1
                .peer_certificates()
                .and_then(|c| c.first())
                .and_then(|c| super::authn::PeerCert::parse(c));
            let peer = Arc::new(peer);
            let service_state = state.clone();
            let activity = Arc::new(Activity::new());
            let service_activity = activity.clone();
            let service = hyper::service::service_fn(move |req| {
                let state = service_state.clone();
                let peer = peer.clone();
                let guard = InFlight::begin(service_activity.clone());
                async move {
                    let res = super::router::handle(state, peer.as_ref().as_ref(), req).await;
                    Ok::<_, Infallible>(res.map(|body| {
                        Body::new(Tracked {
                            inner: body,
                            _guard: guard,
                        })
                    }))
                }
            });
            let mut builder = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
            builder
                .http1()
                .timer(TokioTimer::new())
                .header_read_timeout(state.options.header_read_timeout);
            tokio::select! {
                _ = builder.serve_connection(TokioIo::new(tls), service) => {}
                _ = activity.idle_for(state.options.idle_timeout) => {}
            }
        });
    }
}

type Body = super::http::Body;

/// What one connection is doing: requests in flight (a response counts until its body has been
/// sent or dropped, so a watch counts while it lasts) and when the last one ended.
struct Activity {
    in_flight: AtomicUsize,
    /// Milliseconds since `start` when the connection last went idle.
    idle_since_ms: AtomicU64,
    start: Instant,
}

impl Activity {
    fn new() -> Activity {
        Activity {
            in_flight: AtomicUsize::new(0),
            idle_since_ms: AtomicU64::new(0),
            start: Instant::now(),
        }
    }

    fn now_ms(&self) -> u64 {
        self.start.elapsed().as_millis() as u64
    }

    /// Returns once the connection has had no request in flight for `idle`.
    async fn idle_for(&self, idle: Duration) {
        let idle_ms = idle.as_millis() as u64;
        loop {
            let quiet = self.in_flight.load(Ordering::Acquire) == 0;
            let since = self.idle_since_ms.load(Ordering::Acquire);
            let now = self.now_ms();
            if quiet && now.saturating_sub(since) >= idle_ms {
                return;
            }
            let left = if quiet {
                idle_ms - (now - since)
            } else {
                idle_ms
            };
            tokio::time::sleep(Duration::from_millis(left.clamp(50, 1000))).await;
        }
    }
}

/// A request in flight on a connection, until dropped (with the response body it rides in).
struct InFlight(Arc<Activity>);

impl InFlight {
    fn begin(activity: Arc<Activity>) -> InFlight {
        activity.in_flight.fetch_add(1, Ordering::AcqRel);
        InFlight(activity)
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        let a = &self.0;
        a.idle_since_ms.store(a.now_ms(), Ordering::Release);
        a.in_flight.fetch_sub(1, Ordering::AcqRel);
    }
}

/// A response body that holds its request's [`InFlight`] until hyper is done with it.
struct Tracked {
    inner: Body,
    _guard: InFlight,
}

impl hyper::body::Body for Tracked {
    type Data = bytes::Bytes;
    type Error = std::io::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<std::result::Result<hyper::body::Frame<Self::Data>, Self::Error>>> {
        Pin::new(&mut self.inner).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> hyper::body::SizeHint {
        self.inner.size_hint()
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
