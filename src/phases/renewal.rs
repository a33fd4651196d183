//! What `renew` changes in the CSR phases: when a certificate is due (the kubelet's rotation
//! deadline, see [`crate::pki::rotation`]), and which credentials ask for the new client
//! certificate (the node's current one, so the cluster's `selfnodeclient` auto-approval applies;
//! the bootstrap kubeconfig only when that has expired, as the kubelet falls back).

use super::Check;
use super::cluster_record::ClusterRecord;
use super::credentials::{PairState, installed_client, installed_serving, node_access};
use super::node_identity::CertKind;
use crate::engine::Ctx;
use crate::error::{Error, ErrorKind, Result};
use crate::kubeconfig::ClusterAccess;
use crate::pki::cert::fmt_unix;
use crate::pki::rotation::rotation_deadline;

/// Whether the kubelet rotates this certificate itself, and the setting that says so: after the
/// hand-off the installed KubeletConfiguration decides (`rotateCertificates` for the client
/// certificate, `serverTLSBootstrap` for the serving one). The Krustlet layout has none: there
/// bootlet's renew is the rotation.
pub fn kubelet_rotates(cx: &Ctx, kind: CertKind) -> Option<String> {
    let path = cx.layout.get("kubelet_config")?;
    let text = cx.world.read_string(path).ok()??;
    let doc: serde_json::Value = serde_saphyr::from_str(&text).ok()?;
    let field = match kind {
        CertKind::Client => "rotateCertificates",
        CertKind::Serving => "serverTLSBootstrap",
    };
    (doc[field] == serde_json::Value::Bool(true)).then(|| format!("{field}: true in {path}"))
}

/// The renew done-check of the client or serving CSR phase.
pub async fn check(cx: &mut Ctx, kind: CertKind) -> Result<Check> {
    let key = cx.layout.staged(&format!("{}.key", kind.stem()));
    if cx.world.exists(&key) {
        return Ok(Check::NotDone(format!(
            "a renewal of the {} certificate was interrupted: resuming it with the staged key",
            kind.stem()
        )));
    }
    let installed = match kind {
        CertKind::Client => installed_client(cx)?,
        CertKind::Serving => installed_serving(cx)?,
    };
    Ok(match installed {
        PairState::Valid(p) => {
            let due = rotation_deadline(&p.info);
            let valid = fmt_unix(p.info.not_after);
            if cx.settings.force {
                Check::NotDone(format!(
                    "--force: renewing now (valid until {valid}, due at {})",
                    fmt_unix(due)
                ))
            } else if let Some(why) = kubelet_rotates(cx, kind) {
                // One owner of rotation at a time: the kubelet's own deadline comes first, and a
                // certificate that no longer verifies is renewed below, as the kubelet would fall
                // back.
                Check::Done(format!(
                    "valid until {valid}; the kubelet rotates it ({why}): bootlet renew leaves it to the kubelet (--force renews now)"
                ))
            } else if crate::pki::cert::now_unix() >= due {
                Check::NotDone(format!(
                    "past its rotation deadline {} (valid until {valid})",
                    fmt_unix(due)
                ))
            } else {
                Check::Done(format!(
                    "valid until {valid}; rotation due at {} (70-90 % of its lifetime)",
                    fmt_unix(due)
                ))
            }
        }
        PairState::Invalid(why) => Check::NotDone(format!(
            "the installed {} certificate is not usable ({why})",
            kind.stem()
        )),
        PairState::Absent if kind == CertKind::Serving => Check::Skip(
            "no serving certificate to renew (joined without one; `bootlet join` adds it)".into(),
        ),
        PairState::Absent => {
            return Err(Error::new(
                ErrorKind::MissingInput,
                format!(
                    "this root has no client certificate to renew; join it first (`bootlet join --root {} …`)",
                    cx.settings.root.display()
                ),
            ));
        }
    })
}

/// The bootstrap credentials a renewal may fall back to: `--bootstrap-kubeconfig`, else the one a
/// join kept (`--keep-bootstrap-kubeconfig`).
fn bootstrap_access(cx: &Ctx) -> Result<Option<ClusterAccess>> {
    if let Some(p) = &cx.settings.bootstrap_kubeconfig {
        return cx.given_kubeconfig(p, "the bootstrap kubeconfig").map(Some);
    }
    cx.world.read_kubeconfig(
        cx.layout.path("bootstrap_kubeconfig"),
        "the bootstrap kubeconfig",
    )
}

/// The client that asks for the renewed client certificate, and as whom.
pub fn client_csr_sender(cx: &mut Ctx, rec: &ClusterRecord) -> Result<crate::cluster::Cluster> {
    let why = match installed_client(cx)? {
        PairState::Valid(p) => return cx.cluster(&node_access(rec, &p), "node"),
        PairState::Invalid(why) => why,
        PairState::Absent => "it is missing".to_string(),
    };
    match bootstrap_access(cx)? {
        Some(access) => {
            cx.warn(format!(
                "the node's client certificate is not usable ({why}): asking with the bootstrap credentials instead, as the kubelet falls back"
            ));
            let identity = match access.credentials {
                crate::kubeconfig::Credentials::Token(_) => "bootstrap token",
                _ => "bootstrap credentials",
            };
            cx.cluster(&access, identity)
        }
        None => Err(Error::untrusted(format!(
            "the node's client certificate is not usable ({why}) and there is no bootstrap kubeconfig to fall back to; give one with --bootstrap-kubeconfig FILE, or re-join (`bootlet reset --root {} --force`, then `bootlet join …`)",
            cx.settings.root.display()
        ))),
    }
}
