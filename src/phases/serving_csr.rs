//! serving-csr: the kubelet's serving certificate, requested with the node's own client
//! certificate (not the bootstrap token) for `kubernetes.io/kubelet-serving`, with the node name
//! as DNS SAN and the node's IPs (`--node-ip`, or the address this machine uses to reach the API
//! server) as IP SANs. Serving CSRs are never auto-approved by kube-controller-manager, so while
//! waiting bootlet prints the exact `kubectl certificate approve` to run. `renew` runs the same
//! request when the certificate is due.

use std::net::IpAddr;

use super::Check;
use super::certificate_request::obtain_certificate;
use super::cluster_record::{ClusterRecord, trusted_cas};
use super::credentials::{PairState, installed_serving, node_access, node_client_pair, staged};
use super::node_identity::{CertKind, Identity, node_user};
use crate::engine::Ctx;
use crate::error::{Error, Result};

/// Done when a staged or installed serving certificate verifies (renew: and is not yet due).
pub async fn check(cx: &mut Ctx) -> Result<Check> {
    if cx.workflow() == "renew" {
        return super::renewal::check(cx, CertKind::Serving).await;
    }
    let rec = ClusterRecord::load(cx)?;
    let cas = trusted_cas(cx, rec.as_ref());
    let cn = node_user(&cx.settings.node_name);
    let dns = [cx.settings.node_name.clone()];
    let ips = cx.settings.node_ips.clone();
    let id = Identity {
        cn: &cn,
        usage: CertKind::Serving.usage(),
        dns: &dns,
        ips: &ips,
    };
    let staged_state = staged(cx, "serving", &cas, &id)?;
    if let PairState::Valid(p) = &staged_state {
        return Ok(Check::Done(format!(
            "staged serving certificate verified (serial {})",
            p.info.serial
        )));
    }
    let installed_state = installed_serving(cx)?;
    if let PairState::Valid(p) = &installed_state {
        return Ok(Check::Done(format!(
            "installed serving certificate verified (valid until {})",
            crate::pki::cert::fmt_unix(p.info.not_after)
        )));
    }
    // Say why the certificate on disk does not do, not merely that there is none: after a
    // `--node-ip` change the operator must see that the installed one lacks the new address.
    Ok(Check::NotDone(match (staged_state, installed_state) {
        (PairState::Invalid(why), _) => {
            format!("the staged serving certificate does not verify: {why}")
        }
        (_, PairState::Invalid(why)) => {
            format!(
                "the installed serving certificate is not usable ({why}); a new one is requested"
            )
        }
        _ => "no serving certificate yet".into(),
    }))
}

/// Requests the serving certificate.
pub async fn run(cx: &mut Ctx) -> Result<()> {
    let rec = ClusterRecord::require(cx)?;
    let pair = node_client_pair(cx)?.ok_or_else(|| {
        cx.missing(
            "node client credentials",
            "a verified client certificate, staged or installed",
        )
    })?;
    let ips = if cx.settings.node_ips.is_empty() {
        let ip = detect_node_ip(&rec.server).await?;
        cx.act(format!("Using node IP {ip} (the address this machine uses to reach the API server; set --node-ip to choose)"));
        vec![ip]
    } else {
        cx.settings.node_ips.clone()
    };
    let cluster = cx.cluster(&node_access(&rec, &pair), "node")?;
    let dns = vec![cx.settings.node_name.clone()];
    let on_pending = self_approval(cx)?;
    // A join whose CSR waits registers the Node for an address-checking approver (see
    // node_registration); a renewal's Node exists, and a self-approval needs none.
    if cx.workflow() != "join" || on_pending.is_some() || cx.dry_run() {
        return obtain_certificate(cx, CertKind::Serving, cluster, &rec, &dns, &ips, on_pending)
            .await;
    }
    let registration = super::node_registration::register_after_grace(
        cluster.clone(),
        cx.settings.node_name.clone(),
        ips.clone(),
        cx.out,
    );
    let obtain = obtain_certificate(cx, CertKind::Serving, cluster, &rec, &dns, &ips, None);
    tokio::pin!(registration, obtain);
    let mut registered = false;
    loop {
        tokio::select! {
            done = &mut obtain => return done,
            () = &mut registration, if !registered => registered = true,
        }
    }
}

/// `join --approve-serving`: the admin approves this node's own serving CSR, after the same
/// checks `bootlet approver` makes (the Node need not exist yet: a one-shot join registers none).
fn self_approval(cx: &mut Ctx) -> Result<Option<crate::cluster::csr::OnPending<'static>>> {
    if !(cx.settings.approve_serving && cx.workflow() == "join") {
        return Ok(None);
    }
    let admin = cx.admin()?.ok_or_else(|| {
        cx.missing(
            "admin kubeconfig",
            "--approve-serving approves with --admin-kubeconfig",
        )
    })?;
    let out = cx.out;
    Ok(Some(Box::new(move |name: String| {
        Box::pin(async move { approve_own(&admin, &name, out).await })
    })))
}

async fn approve_own(
    admin: &crate::cluster::Cluster,
    name: &str,
    out: crate::output::Output,
) -> Result<()> {
    use crate::admin::approver::{self, policy};
    use k8s_openapi::api::certificates::v1::CertificateSigningRequest;
    let csr: Option<CertificateSigningRequest> = admin
        .get_cluster("certificatesigningrequests", name)
        .await?;
    // A dry-run with no cluster: nothing to approve.
    let Some(csr) = csr else { return Ok(()) };
    let p = own_policy(&csr);
    let decision = match approver::decide(admin, &p, &csr).await? {
        policy::Decision::Wait(_) => match policy::check_request(&p, &csr) {
            Ok(c) => policy::Decision::Approve(policy::approval_message(&c, false)),
            Err(d) => d,
        },
        d => d,
    };
    match decision {
        policy::Decision::Approve(m) => {
            approver::write_decision(admin, &csr, &policy::Decision::Approve(m.clone())).await?;
            out.say(
                "serving-csr",
                format!("Approved this node's serving CSR {name} with the admin kubeconfig ({m})"),
            );
            Ok(())
        }
        policy::Decision::Deny { check, message } => Err(Error::new(
            crate::error::ErrorKind::Rejected,
            format!(
                "the serving CSR {name} fails the approver's check {check}: {message}; it was left pending: approve it by hand (kubectl certificate approve {name}) if that is intended"
            ),
        )),
        policy::Decision::Wait(_) | policy::Decision::Ignore => Ok(()),
    }
}

/// The approver's default policy, with this node's own IP SANs named as prefixes: the one-shot
/// join chose them for the machine it runs on (a lab's loopback address among them), which the
/// approver controller would approve only when its operator names them.
fn own_policy(
    csr: &k8s_openapi::api::certificates::v1::CertificateSigningRequest,
) -> crate::admin::approver::policy::Policy {
    use crate::admin::approver::policy::{IpPrefix, Policy};
    let mut p = Policy::default();
    if let Ok(req) = crate::pki::csr::parse_pem(&csr.spec.request.0) {
        for ip in &req.ip_addresses {
            let len = if ip.is_ipv4() { 32 } else { 128 };
            if let Ok(prefix) = IpPrefix::parse(&format!("{ip}/{len}")) {
                p.ip_prefixes.push(prefix);
            }
        }
    }
    p
}

/// The local address of the route to the API server (a connected UDP socket sends nothing).
async fn detect_node_ip(server: &str) -> Result<IpAddr> {
    let uri: http::Uri = server
        .parse()
        .map_err(|_| Error::invalid(format!("server {server:?} is not a URL")))?;
    let host = uri
        .host()
        .unwrap_or_default()
        .trim_matches(['[', ']'])
        .to_string();
    let port = uri.port_u16().unwrap_or(443);
    let fail = || {
        Error::usage(format!(
            "cannot detect this node's IP towards {server}; pass --node-ip"
        ))
    };
    let addr = tokio::net::lookup_host((host.as_str(), port))
        .await
        .map_err(|_| fail())?
        .next()
        .ok_or_else(fail)?;
    let bind = if addr.is_ipv4() {
        "0.0.0.0:0"
    } else {
        "[::]:0"
    };
    let sock = std::net::UdpSocket::bind(bind).map_err(|_| fail())?;
    sock.connect(addr).map_err(|_| fail())?;
    Ok(sock.local_addr().map_err(|_| fail())?.ip())
}
