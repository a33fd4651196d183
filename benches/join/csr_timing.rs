//! When each CSR of a `real` benchmark appeared, was approved and was issued, as a watcher of
//! CSRs saw it: what splits a join's wall time into the control plane's part and the rest.

use std::collections::HashMap;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use super::{Method, Sample, scratch};

/// When each CSR appeared, was approved and was issued, as a watcher of CSRs saw it.
#[derive(Default, Clone)]
pub(super) struct CsrTimes {
    pub(super) user: String,
    pub(super) added: Option<Instant>,
    pub(super) approved: Option<Instant>,
    pub(super) issued: Option<Instant>,
}

pub(super) type CsrLog = Arc<Mutex<HashMap<String, CsrTimes>>>;

/// Watches CSRs in a thread of its own for the whole run.
pub(super) fn watch_csrs(admin: &Path) -> CsrLog {
    use futures::StreamExt;
    use k8s_openapi::api::certificates::v1::CertificateSigningRequest;
    use kube::api::{Api, WatchEvent, WatchParams};
    let log: CsrLog = Arc::default();
    let text = std::fs::read_to_string(admin).unwrap();
    let scratch = scratch();
    let access = bootlet::kubeconfig::parse(&text, scratch.path(), "admin").unwrap();
    let out = log.clone();
    std::thread::spawn(move || {
        let _keep = scratch;
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async move {
            let client = bootlet::cluster::kube_client(&access).unwrap();
            let api: Api<CertificateSigningRequest> = Api::all(client);
            loop {
                let Ok(stream) = api.watch(&WatchParams::default(), "0").await else {
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                };
                let mut stream = stream.boxed();
                while let Some(Ok(ev)) = stream.next().await {
                    let now = Instant::now();
                    let csr = match ev {
                        WatchEvent::Added(c) | WatchEvent::Modified(c) => c,
                        _ => continue,
                    };
                    let name = csr.metadata.name.clone().unwrap_or_default();
                    let status = csr.status.unwrap_or_default();
                    let approved = status
                        .conditions
                        .unwrap_or_default()
                        .iter()
                        .any(|c| c.type_ == "Approved");
                    let issued = status.certificate.is_some_and(|c| !c.0.is_empty());
                    let mut log = out.lock().unwrap();
                    let t = log.entry(name).or_default();
                    t.user = csr.spec.username.unwrap_or_default();
                    t.added.get_or_insert(now);
                    if approved {
                        t.approved.get_or_insert(now);
                    }
                    if issued {
                        t.issued.get_or_insert(now);
                    }
                }
            }
        });
    });
    log
}

/// A join's wall time split by its CSR's events: before the CSR was seen, waiting for approval,
/// waiting for signing, after the certificate was seen.
pub(super) struct Split {
    pub(super) before: Duration,
    pub(super) approval: Duration,
    pub(super) signing: Duration,
    pub(super) after: Duration,
}

pub(super) fn split(s: &Sample, csr: &CsrTimes) -> Option<Split> {
    let (added, approved, issued) = (csr.added?, csr.approved?, csr.issued?);
    Some(Split {
        before: added.checked_duration_since(s.start)?,
        approval: approved.checked_duration_since(added)?,
        signing: issued.checked_duration_since(approved)?,
        after: s.end.checked_duration_since(issued).unwrap_or_default(),
    })
}

/// The CSR `m`'s join `s` created: its user's, seen while the join ran.
pub(super) fn csr_of<'a>(
    log: &'a HashMap<String, CsrTimes>,
    m: Method,
    s: &Sample,
) -> Option<&'a CsrTimes> {
    let user = m.bootstrap_user();
    log.values()
        .find(|c| c.user == user && c.added.is_some_and(|a| a >= s.start && a <= s.end))
}
