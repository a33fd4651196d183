//! The controllers of a kubeadm cluster that the join flow meets, driven by the store's events
//! (as informers drive them), not by polling: the CSR approver and signer
//! ([`certificates`]), the bootstrap signer and token cleaner ([`bootstrap`]), and the namespace
//! controllers ([`namespaces`]). A full resync runs at start, when events were missed (the
//! subscription lagged), and every ten minutes; so an idle sandbox does no work whatever it stores.

pub mod bootstrap;
pub mod certificates;
pub mod namespaces;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::broadcast::error::RecvError;

use super::state::State;
use super::store::Event;

pub use certificates::{
    APISERVER_CLIENT, CLIENT_KUBELET, KUBELET_SERVING, validate_kubelet_client,
    validate_kubelet_serving,
};

/// Between full resyncs (the safety net for missed events).
const RESYNC: Duration = Duration::from_secs(600);

/// CSRs to look at again, with their backoff: the work queue's per-item exponential rate
/// limiter (5 ms doubling, at most 1000 s).
#[derive(Default)]
struct Requeue {
    due: BTreeMap<String, (tokio::time::Instant, Duration)>,
}

impl Requeue {
    fn settle(&mut self, name: &str, outcome: certificates::Outcome) {
        if outcome == certificates::Outcome::Settled {
            self.due.remove(name);
            return;
        }
        let delay = self
            .due
            .get(name)
            .map(|(_, d)| (*d * 2).min(Duration::from_secs(1000)))
            .unwrap_or(Duration::from_millis(5));
        self.due.insert(
            name.to_string(),
            (tokio::time::Instant::now() + delay, delay),
        );
    }

    fn next(&self) -> tokio::time::Instant {
        self.due
            .values()
            .map(|(at, _)| *at)
            .min()
            .unwrap_or_else(|| tokio::time::Instant::now() + RESYNC)
    }

    fn take_due(&mut self) -> Vec<String> {
        let now = tokio::time::Instant::now();
        self.due
            .iter()
            .filter(|(_, (at, _))| *at <= now)
            .map(|(n, _)| n.clone())
            .collect()
    }
}

/// Runs the controllers until shutdown.
pub async fn run(state: Arc<State>) {
    let mut events = state.store.lock().expect("store").subscribe();
    let mut shutdown = state.shutdown.clone();
    let mut resync = tokio::time::interval(RESYNC);
    let mut expiry = next_expiry_at(&state);
    let mut requeue = Requeue::default();
    loop {
        tokio::select! {
            _ = shutdown.changed() => return,
            _ = resync.tick() => {
                resync_all(&state, &mut requeue);
                expiry = next_expiry_at(&state);
            }
            _ = tokio::time::sleep_until(expiry) => {
                bootstrap::clean_tokens(&state);
                expiry = next_expiry_at(&state);
            }
            _ = tokio::time::sleep_until(requeue.next()) => {
                for name in requeue.take_due() {
                    let csr = state.store.lock().expect("store").get("certificatesigningrequests", "", &name);
                    let outcome = match csr {
                        Some(c) => certificates::handle_csr(&state, &c),
                        None => certificates::Outcome::Settled,
                    };
                    requeue.settle(&name, outcome);
                }
            }
            ev = events.recv() => match ev.map(|weak| weak.upgrade()) {
                Ok(Some(ev)) => {
                    if react(&state, &ev, &mut requeue) {
                        expiry = next_expiry_at(&state);
                    }
                }
                // Missed events (or one the history has already let go): look at everything, as
                // an informer resync would.
                Ok(None) | Err(RecvError::Lagged(_)) => {
                    resync_all(&state, &mut requeue);
                    expiry = next_expiry_at(&state);
                }
                Err(RecvError::Closed) => return,
            }
        }
    }
}

/// One event to the controllers that watch its resource; returns whether token expiries may
/// have changed.
fn react(state: &State, ev: &Event, requeue: &mut Requeue) -> bool {
    match (ev.resource.as_str(), ev.kind) {
        ("certificatesigningrequests", "ADDED" | "MODIFIED") => {
            let outcome = certificates::handle_csr(state, &ev.object);
            let name = ev.object["metadata"]["name"].as_str().unwrap_or_default();
            // A stale event settles nothing: the newer version's event follows.
            if outcome == certificates::Outcome::Retry || !requeue.due.contains_key(name) {
                requeue.settle(name, outcome);
            }
            false
        }
        ("secrets", _) if ev.namespace == "kube-system" => {
            bootstrap::sign_cluster_info(state);
            true
        }
        ("configmaps", _) if ev.namespace == "kube-public" => {
            bootstrap::sign_cluster_info(state);
            false
        }
        ("namespaces", "ADDED" | "MODIFIED") => {
            namespaces::ensure_default_service_account(state, &ev.object);
            namespaces::finish_deletion(state, &ev.object);
            false
        }
        _ => false,
    }
}

fn resync_all(state: &State, requeue: &mut Requeue) {
    let (csrs, nss) = {
        let store = state.store.lock().expect("store");
        (
            store.list("certificatesigningrequests", ""),
            store.list("namespaces", ""),
        )
    };
    for csr in &csrs {
        let outcome = certificates::handle_csr(state, csr);
        requeue.settle(
            csr["metadata"]["name"].as_str().unwrap_or_default(),
            outcome,
        );
    }
    for ns in &nss {
        namespaces::ensure_default_service_account(state, ns);
        namespaces::finish_deletion(state, ns);
    }
    bootstrap::sign_cluster_info(state);
    bootstrap::clean_tokens(state);
}

/// When the token cleaner should next look (far away when no token expires).
fn next_expiry_at(state: &State) -> tokio::time::Instant {
    let now = crate::pki::cert::now_unix();
    let wait = match bootstrap::next_expiry(state) {
        Some(at) => Duration::from_secs((at - now).max(0) as u64 + 1),
        None => RESYNC,
    };
    tokio::time::Instant::now() + wait
}
