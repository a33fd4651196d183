//! client-csr: the node's API client certificate through the bootstrap credentials.
//! Key first (persisted), a CSR named from the key and identity (the kubelet's scheme) for
//! `kubernetes.io/kube-apiserver-client-kubelet`, CN `system:node:<name>`, O `system:nodes`,
//! usages digital signature + client auth; wait by watch; verify before staging. In `renew` the
//! same work runs as the node itself when the certificate is due (see [`super::renewal`]).

use super::Check;
use super::certificate_request::obtain_certificate;
use super::cluster_record::{ClusterRecord, trusted_cas};
use super::credentials::{PairState, installed_client, staged};
use super::node_identity::{CertKind, Identity, node_user};
use crate::engine::Ctx;
use crate::error::Result;
use crate::kubeconfig::Credentials;

/// Done when a staged or installed client certificate verifies (renew: and is not yet due).
pub async fn check(cx: &mut Ctx) -> Result<Check> {
    if cx.workflow() == "renew" {
        return super::renewal::check(cx, CertKind::Client).await;
    }
    let rec = ClusterRecord::load(cx)?;
    let cas = trusted_cas(cx, rec.as_ref());
    let cn = node_user(&cx.settings.node_name);
    let id = Identity {
        cn: &cn,
        usage: CertKind::Client.usage(),
        dns: &[],
        ips: &[],
    };
    let staged_state = staged(cx, "client", &cas, &id)?;
    if let PairState::Valid(p) = &staged_state {
        return Ok(Check::Done(format!(
            "staged client certificate for {cn} verified (serial {})",
            p.info.serial
        )));
    }
    if let PairState::Valid(p) = installed_client(cx)? {
        return Ok(Check::Done(format!(
            "installed client certificate for {cn} verified (valid until {})",
            crate::pki::cert::fmt_unix(p.info.not_after)
        )));
    }
    Ok(Check::NotDone(match staged_state {
        PairState::Invalid(why) => format!("the staged client certificate does not verify: {why}"),
        _ => "no client certificate yet".into(),
    }))
}

/// Requests the client certificate: with the bootstrap credentials (join), or as the node
/// itself (renew).
pub async fn run(cx: &mut Ctx) -> Result<()> {
    let rec = ClusterRecord::require(cx)?;
    if cx.workflow() == "renew" {
        let cluster = super::renewal::client_csr_sender(cx, &rec)?;
        return obtain_certificate(cx, CertKind::Client, cluster, &rec, &[], &[], None).await;
    }
    let path = cx.layout.path("bootstrap_kubeconfig").to_string();
    let Some(access) = cx
        .world
        .read_kubeconfig(&path, "the bootstrap kubeconfig")?
    else {
        return Err(cx.missing("bootstrap kubeconfig", &path));
    };
    let identity = match access.credentials {
        Credentials::Token(_) => "bootstrap token",
        _ => "bootstrap credentials",
    };
    let cluster = cx.cluster(&access, identity)?;
    obtain_certificate(cx, CertKind::Client, cluster, &rec, &[], &[], None).await
}
