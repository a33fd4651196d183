//! What every part of the sandbox shares: the options it runs with, the store, the CA, the
//! request counters, and the key that signs service-account tokens.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::watch;

use super::store::Store;
use crate::pki::ca::Ca;

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
    /// Default certificate lifetime of the signer (`--cluster-signing-duration`).
    pub signing_duration: Duration,
    /// Interval of watch bookmarks.
    pub bookmark_interval: Duration,
    /// Rewrite `cluster-info` on its way to anonymous readers, as a man in the middle would
    /// (tests of discovery's JWS check; the bootstrap signer would re-sign a stored change).
    pub tamper_cluster_info: bool,
    /// Run the controllers (approver, signers, token cleaner, namespace deleter). Off only for
    /// tests that plant objects the controllers would repair.
    pub run_controllers: bool,
    /// Connections served at once; more are closed as soon as they are accepted.
    pub max_connections: usize,
    /// How long a client may take to finish its TLS handshake.
    pub handshake_timeout: Duration,
    /// How long a client may take to send a request's headers.
    pub header_read_timeout: Duration,
    /// How long a connection may sit with no request in flight (a watch counts until it ends)
    /// before it is closed: connections that finish the TLS handshake, or send HTTP/2's preface,
    /// and then say nothing must not hold the connection cap.
    pub idle_timeout: Duration,
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
            max_connections: 1024,
            handshake_timeout: Duration::from_secs(10),
            header_read_timeout: Duration::from_secs(30),
            idle_timeout: Duration::from_secs(30),
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
    /// HMAC key of the service-account tokens this sandbox issues.
    pub token_key: ring::hmac::Key,
    /// Tokens that authenticated lately (kube-apiserver's 10 s success cache).
    pub token_cache: Mutex<super::authn::TokenCache>,
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
