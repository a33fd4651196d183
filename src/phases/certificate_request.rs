//! The CSR flow both certificate phases (and renew) share: a staged key made before any CSR is
//! sent (so a resumed run re-attaches), then request, wait with progress, verify, stage.

use std::net::IpAddr;

use crate::engine::Ctx;
use crate::error::{Error, Result};
use crate::pki::keys::{PrivateKey, certificate_blocks};

use super::cluster_record::ClusterRecord;
use super::credentials::{PairState, verify_pem_pair};
use super::node_identity::{CertKind, Identity, NODES_GROUP, node_user};

/// Loads the staged key `{staging}/<name>.key`, or generates and writes one (before any CSR is
/// sent, so that a resumed run reuses it and re-attaches to the same CSR). A damaged key file is
/// replaced, with a warning: its CSR, if any, is orphaned and the cleaner will remove it.
pub fn ensure_staged_key(cx: &mut Ctx, name: &str) -> Result<PrivateKey> {
    let path = cx.layout.staged(&format!("{name}.key"));
    if let Some(text) = cx.world.read_string(&path)? {
        match PrivateKey::from_pem(&text, &path) {
            Ok(k) => {
                if let Some(recorded) = cx.fact_of(cx.phase(), "key_fingerprint")
                    && recorded != k.fingerprint()
                {
                    return Err(Error::conflict(format!(
                        "the key {path} is not the one the journal recorded for this phase (fingerprint {}…, journal says {}…); it was replaced outside bootlet. Remove {path} to request a new certificate with a new key",
                        &k.fingerprint()[..12],
                        &recorded[..recorded.len().min(12)]
                    )));
                }
                return Ok(k);
            }
            Err(_) => cx.warn(format!("{path} is damaged; generating a new key (any CSR made with the old key is abandoned)")),
        }
    }
    let key = PrivateKey::generate()?;
    cx.note("key_fingerprint", &key.fingerprint());
    // Durable before the CSR is sent: a crash after sending must find this key again. The journal
    // that records the key (fingerprint and file hash) is written first, then the key renamed in.
    cx.world.write_durable(
        &path,
        key.pem().expose().as_bytes(),
        crate::files::SECRET_FILE_MODE,
    )?;
    cx.act(if cx.dry_run() {
        format!("Generated a new ECDSA P-256 key; would store it at {path}")
    } else {
        format!("Generated a new ECDSA P-256 key at {path}")
    });
    Ok(key)
}

/// Requests a certificate for the staged key, waits for it, verifies it and stages it. Nothing is
/// written unless the certificate verifies. `on_pending` runs once the CSR exists, still
/// pending (the one-shot join's own approval).
pub async fn obtain_certificate(
    cx: &mut Ctx,
    kind: CertKind,
    cluster: crate::cluster::Cluster,
    rec: &ClusterRecord,
    dns: &[String],
    ips: &[IpAddr],
    on_pending: Option<crate::cluster::csr::OnPending<'_>>,
) -> Result<()> {
    let key = ensure_staged_key(cx, kind.stem())?;
    let cn = node_user(&cx.settings.node_name);
    let request_pem = crate::pki::csr::build(&key, &cn, &[NODES_GROUP], dns, ips)?;
    let usages = kind.usages();
    let name = crate::pki::csr::digested_name(&key.spki_der(), &cn, &[NODES_GROUP], &usages);
    cx.note("csr_name", &name);
    let spec = crate::cluster::csr::CsrSpec {
        name: name.clone(),
        request_pem,
        signer: kind.signer(),
        usages: usages.iter().map(|u| u.to_string()).collect(),
        key_spki: key.spki_der(),
    };
    let dry_ca = if cx.dry_run() {
        Some(cx.dry_ca()?)
    } else {
        None
    };
    let timeout = cx.settings.approval_timeout;
    let approving_itself = on_pending.is_some();
    let out = cx.out;
    let created = cx.sent("Created", "Would create");
    let issued = {
        let mut progress = |p: crate::cluster::csr::Progress, name: &str| {
            use crate::cluster::csr::Progress;
            let msg = match (p, kind) {
                (Progress::Created, _) => format!(
                    "{created} CSR {name} (signer {}, key {}…)",
                    kind.signer(),
                    &key.fingerprint()[..12]
                ),
                (Progress::Reattached, _) => format!(
                    "Found CSR {name} from an earlier attempt, made with the same key: re-attached"
                ),
                (Progress::Pending, CertKind::Client) => format!(
                    "Waiting up to {} for CSR {name} to be approved and signed (kubelet client CSRs are auto-approved when the bootstrapper bindings exist)",
                    crate::cluster::csr::humantime(timeout)
                ),
                (Progress::Pending, CertKind::Serving) if approving_itself => format!(
                    "Approving serving CSR {name} with the admin kubeconfig after the approver's checks (--approve-serving); waiting up to {} for it to be signed",
                    crate::cluster::csr::humantime(timeout)
                ),
                (Progress::Pending, CertKind::Serving) => format!(
                    "Waiting up to {} for an admin to approve serving CSR {name}: run `kubectl certificate approve {name}`",
                    crate::cluster::csr::humantime(timeout)
                ),
                (Progress::Waiting(elapsed), _) => {
                    let unblock = match kind {
                        CertKind::Client => {
                            "kubectl certificate approve ".to_string()
                                + name
                                + " (client CSRs need the bootstrapper bindings to be auto-approved)"
                        }
                        CertKind::Serving => format!("kubectl certificate approve {name}"),
                    };
                    out.progress(
                        kind.phase(),
                        format!(
                            "Still waiting for CSR {name} to be approved and signed ({} of {}); to unblock: {unblock}",
                            crate::cluster::csr::humantime(elapsed),
                            crate::cluster::csr::humantime(timeout)
                        ),
                    );
                    return;
                }
                (Progress::Approved, _) => {
                    format!("CSR {name} is approved; waiting for the signer")
                }
            };
            cx.act(msg);
        };
        crate::cluster::csr::request_certificate(
            &cluster,
            &spec,
            timeout,
            dry_ca.as_deref(),
            &mut progress,
            on_pending,
        )
        .await?
    };
    let mut cas = rec.ca_ders();
    if issued.synthesized
        && let Some(ca) = &dry_ca
    {
        cas.push(ca.cert_der().to_vec());
    }
    let id = Identity {
        cn: &cn,
        usage: kind.usage(),
        dns,
        ips,
    };
    let info = match verify_pem_pair(&issued.cert_pem, key, &cas, &id) {
        PairState::Valid(p) => p.info,
        PairState::Invalid(why) => {
            return Err(Error::untrusted(format!(
                "refusing the certificate issued for CSR {name}: {why}; nothing was written"
            )));
        }
        PairState::Absent => unreachable!("verified in memory"),
    };
    cx.note("cert_serial", &info.serial);
    cx.note(
        "cert_not_after",
        &crate::pki::cert::fmt_unix(info.not_after),
    );
    let path = cx.layout.staged(&format!("{}.crt", kind.stem()));
    cx.world.write(
        &path,
        certificate_blocks(&issued.cert_pem).as_bytes(),
        crate::files::PUBLIC_FILE_MODE,
    )?;
    cx.act(format!(
        "Verified the {} certificate (CN {}, O {}, chains to {}, valid until {}){} and staged it at {path}",
        kind.stem(),
        info.cn(),
        info.organizations.join(","),
        if issued.synthesized { "the dry-run CA" } else { "the cluster CA" },
        crate::pki::cert::fmt_unix(info.not_after),
        if issued.synthesized { " [dryrun: synthesized, not issued by the cluster]" } else { "" }
    ));
    Ok(())
}
