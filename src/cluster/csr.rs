//! Creating a CSR, re-attaching to our own after a restart, and waiting for the certificate by
//! watch (`client-go/util/certificate/csr/csr.go` `RequestCertificate` / `WaitForCertificate`).
//!
//! The name is derived from the key and identity, so a resumed run gets 409 on create, reads the
//! existing CSR, checks it is ours (same subject and signer, signed by our key) and watches it.
//! Waiting is one watch from the resourceVersion the create (or that read) returned, with
//! `fieldSelector=metadata.name=<name>`; a dropped watch resumes from the last resourceVersion
//! seen, and only a 410 Gone costs an extra GET.

use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::ByteString;
use k8s_openapi::api::certificates::v1::{
    CertificateSigningRequest, CertificateSigningRequestSpec,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::api::{Api, PostParams, WatchEvent, WatchParams};

use super::{Cluster, Req};
use crate::error::{Error, ErrorKind, Result};
use crate::pki;
use crate::pki::ca::{Ca, Subject, Usages};

/// Signer of kubelet client certificates.
pub const SIGNER_CLIENT: &str = "kubernetes.io/kube-apiserver-client-kubelet";
/// Signer of kubelet serving certificates.
pub const SIGNER_SERVING: &str = "kubernetes.io/kubelet-serving";

/// What to request.
#[derive(Debug, Clone)]
pub struct CsrSpec {
    /// Deterministic name.
    pub name: String,
    /// PEM PKCS#10.
    pub request_pem: String,
    /// Signer name.
    pub signer: &'static str,
    /// Usage strings.
    pub usages: Vec<String>,
    /// Our public key (DER SPKI).
    pub key_spki: Vec<u8>,
}

/// Progress reported while waiting.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Progress {
    /// Created a new CSR.
    Created,
    /// Found our own CSR from an earlier run.
    Reattached,
    /// Waiting for approval.
    Pending,
    /// Approved, waiting for the signer.
    Approved,
    /// Still waiting, this long so far (about every 10 s).
    Waiting(Duration),
}

/// How often a long wait says it is still waiting.
pub const PROGRESS_EVERY: Duration = Duration::from_secs(10);

/// An issued certificate.
#[derive(Debug, Clone)]
pub struct Issued {
    /// PEM chain as issued.
    pub cert_pem: String,
    /// Made up by the dry-run CA rather than issued by the cluster.
    pub synthesized: bool,
}

fn csr_object(spec: &CsrSpec) -> CertificateSigningRequest {
    CertificateSigningRequest {
        metadata: ObjectMeta {
            name: Some(spec.name.clone()),
            ..Default::default()
        },
        spec: CertificateSigningRequestSpec {
            request: ByteString(spec.request_pem.as_bytes().to_vec()),
            signer_name: spec.signer.to_string(),
            usages: Some(spec.usages.clone()),
            ..Default::default()
        },
        status: None,
    }
}

enum Created {
    New(Box<CertificateSigningRequest>),
    Exists,
}

/// Something to do once the CSR exists and is still pending (approve it: `join --approve-serving`).
pub type OnPending<'a> =
    Box<dyn FnOnce(String) -> futures::future::BoxFuture<'a, Result<()>> + Send + 'a>;

/// Creates (or re-attaches to) the CSR and waits up to `timeout` for its certificate.
/// `dry_ca` answers in a dry-run: it signs the request as the cluster would. `on_pending` runs
/// once the CSR exists and has no certificate yet, before the wait.
pub async fn request_certificate(
    cluster: &Cluster,
    spec: &CsrSpec,
    timeout: Duration,
    dry_ca: Option<&Ca>,
    progress: &mut (dyn FnMut(Progress, &str) + Send),
    on_pending: Option<OnPending<'_>>,
) -> Result<Issued> {
    let api: Api<CertificateSigningRequest> = Api::all(cluster.client().clone());
    let obj = csr_object(spec);
    let path = api.resource_url().to_string();
    let body = serde_json::to_value(&obj).unwrap_or_default();
    let created = cluster
        .write(
            Req {
                verb: "create",
                resource: "certificatesigningrequests",
                method: "POST",
                path,
                body: Some(body),
                _p: Default::default(),
            },
            || {
                let api = api.clone();
                let obj = obj.clone();
                async move {
                    match api.create(&PostParams::default(), &obj).await {
                        Ok(c) => Ok(Created::New(Box::new(c))),
                        Err(kube::Error::Api(s)) if s.code == 409 => Ok(Created::Exists),
                        Err(e) => Err(e),
                    }
                }
            },
        )
        .await?;
    let Some(created) = created else {
        // Dry-run: nothing was sent; the throw-away CA answers, labelled as such.
        progress(Progress::Created, &spec.name);
        let ca = dry_ca.ok_or_else(|| Error::internal("dry-run without a dry-run CA"))?;
        return Ok(Issued {
            cert_pem: sign_like_the_cluster(ca, spec)?,
            synthesized: true,
        });
    };
    let (rv, uid) = match created {
        Created::New(csr) => {
            progress(Progress::Created, &spec.name);
            (
                csr.metadata.resource_version.unwrap_or_default(),
                csr.metadata.uid.unwrap_or_default(),
            )
        }
        Created::Exists => {
            let existing = get_csr(cluster, &api, &spec.name).await?.ok_or_else(|| {
                Error::new(
                    ErrorKind::Unavailable,
                    format!(
                        "CSR {} was reported to exist but cannot be read; rerun",
                        spec.name
                    ),
                )
            })?;
            ensure_compatible(&existing, spec)?;
            progress(Progress::Reattached, &spec.name);
            if let Some(done) = outcome(&existing, &spec.name)? {
                return Ok(done);
            }
            (
                existing.metadata.resource_version.unwrap_or_default(),
                existing.metadata.uid.unwrap_or_default(),
            )
        }
    };
    if let Some(f) = on_pending {
        f(spec.name.clone()).await?;
    }
    wait_for_certificate(cluster, &api, &spec.name, rv, &uid, timeout, progress).await
}

async fn get_csr(
    cluster: &Cluster,
    api: &Api<CertificateSigningRequest>,
    name: &str,
) -> Result<Option<CertificateSigningRequest>> {
    let path = format!("{}/{name}", api.resource_url());
    cluster
        .read(
            Req {
                verb: "get",
                resource: "certificatesigningrequests",
                method: "GET",
                path,
                body: None,
                _p: Default::default(),
            },
            || api.get_opt(name),
        )
        .await
}

/// client-go `ensureCompatible`: the existing CSR must be a `CERTIFICATE REQUEST` for the same
/// subject and signer, signed by OUR key, and any certificate it carries must not be expired.
fn ensure_compatible(existing: &CertificateSigningRequest, spec: &CsrSpec) -> Result<()> {
    let theirs = pki::csr::parse_pem(&existing.spec.request.0).map_err(|e| {
        Error::conflict(format!("CSR {} exists but holds an unreadable request ({e}); delete it (kubectl delete csr {}) and rerun", spec.name, spec.name))
    })?;
    let ours = pki::csr::parse_pem(spec.request_pem.as_bytes())?;
    let same = theirs.spki == spec.key_spki
        && theirs.common_names == ours.common_names
        && theirs.organizations == ours.organizations
        && existing.spec.signer_name == spec.signer;
    if !same {
        return Err(Error::conflict(format!(
            "CSR {} exists but was not made with this node's key and identity; delete it (kubectl delete csr {}) and rerun",
            spec.name, spec.name
        )));
    }
    Ok(())
}

/// `Some` when the CSR has reached an end: issued (Ok) or denied/failed (Err).
fn outcome(csr: &CertificateSigningRequest, name: &str) -> Result<Option<Issued>> {
    let status = csr.status.clone().unwrap_or_default();
    for c in status.conditions.unwrap_or_default() {
        if c.status != "True" {
            continue;
        }
        let reason = c
            .reason
            .as_deref()
            .filter(|r| !r.is_empty())
            .map(|r| format!(" ({r})"))
            .unwrap_or_default();
        let message = c
            .message
            .as_deref()
            .filter(|m| !m.is_empty())
            .map(|m| format!(": {m}"))
            .unwrap_or_default();
        let (what, fix) = match c.type_.as_str() {
            "Denied" => (
                "was denied",
                format!(
                    "Find out why the approver refused it, then delete the CSR (kubectl delete csr {name}) and rerun"
                ),
            ),
            "Failed" => (
                "failed at the signer",
                "Rerun to request a new certificate".to_string(),
            ),
            _ => continue,
        };
        return Err(Error::new(
            ErrorKind::Rejected,
            format!("CSR {name} {what}{reason}{message}; no credential was written. {fix}"),
        ));
    }
    match status.certificate {
        Some(cert) if !cert.0.is_empty() => Ok(Some(Issued {
            cert_pem: String::from_utf8_lossy(&cert.0).into_owned(),
            synthesized: false,
        })),
        _ => Ok(None),
    }
}

fn is_approved(csr: &CertificateSigningRequest) -> bool {
    csr.status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .is_some_and(|cs| {
            cs.iter()
                .any(|c| c.type_ == "Approved" && c.status == "True")
        })
}

async fn wait_for_certificate(
    cluster: &Cluster,
    api: &Api<CertificateSigningRequest>,
    name: &str,
    mut rv: String,
    uid: &str,
    timeout: Duration,
    progress: &mut (dyn FnMut(Progress, &str) + Send),
) -> Result<Issued> {
    let started = tokio::time::Instant::now();
    let deadline = started + timeout;
    progress(Progress::Pending, name);
    let mut announced_approval = false;
    let mut transient_failures = 0u32;
    let mut last_failure: Option<String> = None;
    let mut tick = tokio::time::interval_at(started + PROGRESS_EVERY, PROGRESS_EVERY);
    loop {
        let remaining = deadline.saturating_duration_since(tokio::time::Instant::now());
        if remaining.is_zero() {
            // The same cause gives the same exit code everywhere: an unreachable server is 8.
            if let Some(cause) = &last_failure {
                return Err(Error::new(
                    ErrorKind::Unavailable,
                    format!(
                        "watch certificatesigningrequests as {} kept failing for {} while waiting for CSR {name} (last: {cause}); check that {} is up and reachable, then rerun (bootlet re-attaches to the same CSR)",
                        cluster.identity(),
                        humantime(timeout),
                        cluster.server()
                    ),
                ));
            }
            return Err(Error::new(
                ErrorKind::Timeout,
                format!(
                    "CSR {name} got no certificate within {}: {}; approve it with `kubectl certificate approve {name}`, or rerun with a longer --approval-timeout (bootlet re-attaches to the same CSR)",
                    humantime(timeout),
                    if announced_approval {
                        "it is approved but the signer has not issued it"
                    } else {
                        "it is still pending approval"
                    }
                ),
            ));
        }
        let secs = remaining.as_secs().clamp(1, 290) as u32;
        let wp = WatchParams::default()
            .fields(&format!("metadata.name={name}"))
            .timeout(secs);
        cluster
            .gate()
            .admit("watch", "certificatesigningrequests")?;
        cluster.gate().record(crate::engine::report::RequestRecord {
            method: "GET".into(),
            path: format!(
                "{}?watch=true&fieldSelector=metadata.name%3D{name}&resourceVersion={rv}",
                api.resource_url()
            ),
            verb: "watch".into(),
            resource: "certificatesigningrequests".into(),
            identity: cluster.identity().into(),
            outcome: "sent".into(),
            body: None,
        });
        let opened = tokio::time::timeout(remaining, api.watch(&wp, &rv)).await;
        let stream = match opened {
            Err(_) => continue,
            Ok(Ok(s)) => s,
            Ok(Err(e)) => {
                let req = Req {
                    verb: "watch",
                    resource: "certificatesigningrequests",
                    method: "GET",
                    path: String::new(),
                    body: None,
                    _p: Default::default(),
                };
                match super::retry::classify(&e, cluster, &req) {
                    super::retry::Failure::Transient { cause, retry_after } => {
                        transient_failures += 1;
                        let wait = cluster.policy().delay(transient_failures, retry_after);
                        tracing::debug!("re-opening the watch on CSR {name} in {wait:?}: {cause}");
                        last_failure = Some(cause);
                        tokio::time::sleep(wait.min(remaining)).await;
                        continue;
                    }
                    super::retry::Failure::Final(e) | super::retry::Failure::Conflict(e) => {
                        return Err(e);
                    }
                }
            }
        };
        last_failure = None;
        let mut stream = std::pin::pin!(stream);
        loop {
            let next = tokio::select! {
                n = tokio::time::timeout_at(deadline, stream.next()) => n,
                _ = tick.tick() => {
                    progress(Progress::Waiting(started.elapsed()), name);
                    continue;
                }
            };
            let event = match next {
                Err(_) | Ok(None) => break,
                Ok(Some(Err(e))) => {
                    tracing::debug!("watch on CSR {name} ended: {}", super::retry::one_line(&e));
                    break;
                }
                Ok(Some(Ok(ev))) => ev,
            };
            match event {
                WatchEvent::Added(csr) | WatchEvent::Modified(csr) => {
                    transient_failures = 0;
                    if let Some(v) = csr.metadata.resource_version.clone() {
                        rv = v;
                    }
                    if !uid.is_empty() && csr.metadata.uid.as_deref().is_some_and(|u| u != uid) {
                        return Err(Error::conflict(format!(
                            "CSR {name} was replaced by another object while waiting (its uid changed); rerun"
                        )));
                    }
                    if let Some(done) = outcome(&csr, name)? {
                        return Ok(done);
                    }
                    if is_approved(&csr) && !announced_approval {
                        announced_approval = true;
                        progress(Progress::Approved, name);
                    }
                }
                WatchEvent::Deleted(_) => {
                    return Err(Error::new(
                        ErrorKind::Rejected,
                        format!(
                            "CSR {name} was deleted while bootlet waited for it (by an admin or the CSR cleaner); rerun to request a new certificate"
                        ),
                    ));
                }
                WatchEvent::Bookmark(b) => rv = b.metadata.resource_version,
                WatchEvent::Error(status) if status.code == 410 => {
                    // Our resourceVersion is too old to resume from: read the object once.
                    let csr = get_csr(cluster, api, name).await?.ok_or_else(|| {
                        Error::new(
                            ErrorKind::Rejected,
                            format!(
                                "CSR {name} no longer exists; rerun to request a new certificate"
                            ),
                        )
                    })?;
                    if let Some(done) = outcome(&csr, name)? {
                        return Ok(done);
                    }
                    rv = csr.metadata.resource_version.unwrap_or_default();
                    break;
                }
                WatchEvent::Error(status) => {
                    tracing::debug!(
                        "watch error on CSR {name}: {} {}",
                        status.code,
                        status.message
                    );
                    break;
                }
            }
        }
    }
}

/// `5m`, `1m30s`, `12s`, `250ms`: a duration as an operator writes it.
pub fn humantime(d: Duration) -> String {
    let s = (d.as_millis() + 500) / 1000;
    if d < Duration::from_secs(1) {
        format!("{}ms", d.as_millis())
    } else if s >= 60 && s.is_multiple_of(60) {
        format!("{}m", s / 60)
    } else if s >= 60 {
        format!("{}m{}s", s / 60, s % 60)
    } else {
        format!("{s}s")
    }
}

/// The dry-run answer: what the cluster's signer would issue, signed by the throw-away CA.
fn sign_like_the_cluster(ca: &Ca, spec: &CsrSpec) -> Result<String> {
    let info = pki::csr::parse_pem(spec.request_pem.as_bytes())?;
    let usages =
        Usages::from_kube(&spec.usages).ok_or_else(|| Error::internal("unsupported usage"))?;
    ca.sign_request(
        &info.der,
        &Subject {
            cn: info.cn(),
            orgs: &info.organizations,
            dns: &info.dns_names,
            ips: &info.ip_addresses,
        },
        usages,
        time::Duration::days(365),
    )
}
