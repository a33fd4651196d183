//! write-files: commit the verified credentials to the layout, then remove the bootstrap
//! credential. Every file is written atomically, only when its content differs, so a resumed
//! commit finishes what a killed one started and a completed one is never rewritten.
//!
//! kubelet layout: `ca.crt` (only if absent), `kubelet-client-<ts>.pem` and
//! `kubelet-server-<ts>.pem` (certificate then key, as the kubelet's certificate store writes
//! them) behind `-current.pem` links swapped atomically, and `kubelet.conf` pointing at
//! `kubelet-client-current.pem`. krustlet layout: `kubeconfig` with the credentials embedded,
//! `krustlet.crt`, `krustlet.key`.
//!
//! A node joined without a serving certificate (`--skip-phases serving-csr`) gets the client
//! credentials alone; `renew` installs what it renewed and leaves the bootstrap kubeconfig (the
//! fallback a join kept on purpose) and the CA file alone.

use super::Check;
use super::cluster_record::{ClusterRecord, trusted_cas};
use super::credentials::{Pair, PairState, installed_client, installed_serving, staged};
use super::node_identity::{CertKind, Identity, node_user};
use crate::engine::Ctx;
use crate::error::{Error, Result};
use crate::files::{LayoutKind, PUBLIC_FILE_MODE, SECRET_FILE_MODE};
use crate::kubeconfig::{UserSpec, render_node};

const STAGED: [&str; 4] = ["client.key", "client.crt", "serving.key", "serving.crt"];

/// Done when everything is installed, verifies, and the bootstrap credential is gone.
pub async fn check(cx: &mut Ctx) -> Result<Check> {
    let mut missing = Vec::new();
    // A renewal installs only what it renewed (staged below): the installed pairs are the CSR
    // phases' to judge, and a pair the kubelet rotated in is the kubelet's, not bootlet's to redo.
    if is_join(cx) {
        installed_problems(cx, &mut missing)?;
    }
    finish_check(cx, missing).await
}

fn installed_problems(cx: &mut Ctx, missing: &mut Vec<String>) -> Result<()> {
    match installed_client(cx)? {
        PairState::Valid(_) => {}
        PairState::Absent => missing.push("client credentials not installed".to_string()),
        PairState::Invalid(why) => {
            missing.push(format!("installed client credentials do not verify: {why}"))
        }
    }
    match installed_serving(cx)? {
        PairState::Valid(_) => {}
        PairState::Absent if !wants_serving(cx) => {}
        PairState::Absent => missing.push("serving credentials not installed".to_string()),
        PairState::Invalid(why) => missing.push(format!(
            "installed serving credentials do not verify: {why}"
        )),
    }
    if let Some(rec) = ClusterRecord::load(cx)? {
        match crate::phases::credentials::installed_kubeconfig(cx) {
            Some(kc) if kc.server == rec.server => {}
            Some(_) => missing.push("the node kubeconfig names another server".into()),
            None => missing.push("no valid node kubeconfig".into()),
        }
        if let Some(ca) = cx.layout.get("ca_cert")
            && cx.world.read(ca)?.as_deref() != Some(rec.ca.as_bytes())
        {
            missing.push(format!("{ca} does not hold the cluster CA"));
        }
    }
    Ok(())
}

async fn finish_check(cx: &mut Ctx, mut missing: Vec<String>) -> Result<Check> {
    if is_join(cx) && !cx.settings.keep_bootstrap_kubeconfig {
        for p in ["bootstrap_kubeconfig", "token_file"] {
            let path = cx.layout.path(p);
            if cx.world.exists(path) {
                missing.push(format!("{path} still present"));
            }
        }
    }
    for f in STAGED {
        if cx.world.exists(&cx.layout.staged(f)) {
            missing.push(format!("staged {f} not yet installed"));
        }
    }
    if let Some(id) = created_token(cx)
        && let Some(admin) = cx.admin()?
        && admin
            .get_secret(
                crate::admin::tokens::NAMESPACE,
                &format!("bootstrap-token-{id}"),
            )
            .await?
            .is_some()
    {
        missing.push(format!(
            "the token Secret bootstrap-token-{id} this join created is still there"
        ));
    }
    for (path, problem) in private_file_problems(cx) {
        missing.push(match problem {
            Exposure::Mode(m) => {
                format!("{path} has mode {m:04o}, wider than 0600 (will be repaired)")
            }
            Exposure::Owner(uid) => {
                format!("{path} is owned by uid {uid}, not by the running user")
            }
        });
    }
    Ok(if missing.is_empty() {
        Check::Done(if is_join(cx) {
            "credentials installed and verified; bootstrap credential removed".into()
        } else {
            "credentials installed and verified; nothing renewed is waiting".into()
        })
    } else {
        Check::NotDone(missing.join("; "))
    })
}

fn staged_or_installed(
    cx: &Ctx,
    kind: CertKind,
    rec: &ClusterRecord,
) -> Result<Option<(Pair, bool)>> {
    let cas = trusted_cas(cx, Some(rec));
    let cn = node_user(&cx.settings.node_name);
    let dns = [cx.settings.node_name.clone()];
    let ips = cx.settings.node_ips.clone();
    let id = match kind {
        CertKind::Client => Identity {
            cn: &cn,
            usage: kind.usage(),
            dns: &[],
            ips: &[],
        },
        CertKind::Serving => Identity {
            cn: &cn,
            usage: kind.usage(),
            dns: &dns,
            ips: &ips,
        },
    };
    if let PairState::Valid(p) = staged(cx, kind.stem(), &cas, &id)? {
        return Ok(Some((*p, true)));
    }
    let installed = match kind {
        CertKind::Client => installed_client(cx)?,
        CertKind::Serving => installed_serving(cx)?,
    };
    Ok(match installed {
        PairState::Valid(p) => Some((*p, false)),
        _ => None,
    })
}

fn is_join(cx: &Ctx) -> bool {
    cx.workflow() == "join"
}

/// The id of the token this one-shot join generated and registered, which write-files deletes
/// once the node has its own credentials (unless `--keep-token`). A token someone gave is never
/// deleted.
fn created_token(cx: &Ctx) -> Option<String> {
    if !is_join(cx) || cx.settings.admin_kubeconfig.is_none() || cx.settings.keep_token {
        return None;
    }
    cx.fact_of("token", "token_id")
}

/// Whether this run must end with a serving certificate: a join that does not skip serving-csr.
/// Decided from the flags alone, before any request.
fn wants_serving(cx: &Ctx) -> bool {
    is_join(cx) && !cx.settings.skip_phases.iter().any(|p| p == "serving-csr")
}

/// How an installed private file is exposed.
enum Exposure {
    /// Readable or writable by group or others.
    Mode(u32),
    /// Owned by another user.
    Owner(u32),
}

/// The installed files that hold a private key or credentials (for the kubelet's `-current.pem`
/// links, the files they point at).
fn private_files(cx: &Ctx) -> Vec<String> {
    let mut out = vec![cx.layout.path("kubeconfig").to_string()];
    for var in ["client_current", "server_current"] {
        if let Some(link) = cx.layout.get(var)
            && let Some(target) = cx.world.read_link(link)
        {
            out.push(crate::engine::world::sibling(link, &target));
        }
    }
    if let Some(key) = cx.layout.get("serving_key") {
        out.push(key.to_string());
    }
    out
}

/// Installed private files that are not private any more (chmod, chown by someone else).
fn private_file_problems(cx: &Ctx) -> Vec<(String, Exposure)> {
    let me = crate::files::confined::euid();
    private_files(cx)
        .into_iter()
        .filter_map(|p| {
            let (mode, owner) = cx.world.mode_and_owner(&p)?;
            if owner != me {
                Some((p, Exposure::Owner(owner)))
            } else if mode & 0o077 != 0 {
                Some((p, Exposure::Mode(mode)))
            } else {
                None
            }
        })
        .collect()
}

/// Narrows installed private files back to 0600 (saying so); refuses files another user owns.
fn repair_private_files(cx: &mut Ctx) -> Result<()> {
    for (path, problem) in private_file_problems(cx) {
        match problem {
            Exposure::Owner(uid) => {
                return Err(Error::conflict(format!(
                    "{path} is owned by uid {uid}, not by the running user (uid {}): bootlet does not adopt credentials another user owns; chown it back or move it away, then rerun",
                    crate::files::confined::euid()
                )));
            }
            Exposure::Mode(mode) => {
                cx.world.repair_mode(&path, SECRET_FILE_MODE)?;
                let verb = cx.sent("Repaired", "Would repair");
                cx.act(format!(
                    "{verb} the mode of {path}: {mode:04o} -> 0600 (it holds private credentials)"
                ));
            }
        }
    }
    Ok(())
}

/// Commits the credentials.
pub async fn run(cx: &mut Ctx) -> Result<()> {
    repair_private_files(cx)?;
    let rec = ClusterRecord::require(cx)?;
    let (client, client_staged) =
        staged_or_installed(cx, CertKind::Client, &rec)?.ok_or_else(|| {
            cx.missing(
                "node client credentials",
                "a verified client certificate, staged or installed",
            )
        })?;
    let serving = staged_or_installed(cx, CertKind::Serving, &rec)?;
    // A renewal installs only the pairs it renewed; the others stay as they are.
    let (client, serving) = if is_join(cx) {
        (Some(client), serving.map(|(p, _)| p))
    } else {
        (
            client_staged.then_some(client),
            serving.filter(|(_, staged)| *staged).map(|(p, _)| p),
        )
    };
    if serving.is_none() && wants_serving(cx) {
        return Err(cx.missing(
            "serving credentials",
            "a verified serving certificate, staged or installed",
        ));
    }
    match cx.layout.kind() {
        LayoutKind::Kubelet => install_kubelet(cx, &rec, client.as_ref(), serving.as_ref())?,
        LayoutKind::Krustlet => install_krustlet(cx, &rec, client.as_ref(), serving.as_ref())?,
    }
    // The installed copies are durable before the staged ones (and the bootstrap credential) go.
    cx.world.flush()?;
    if !is_join(cx) {
        // renew leaves the bootstrap credential alone: if a join kept it, it is the fallback.
    } else if cx.settings.keep_bootstrap_kubeconfig {
        cx.act("Kept the bootstrap kubeconfig and token file (--keep-bootstrap-kubeconfig)");
    } else {
        for p in ["bootstrap_kubeconfig", "token_file"] {
            let path = cx.layout.path(p).to_string();
            if cx.world.remove(&path)? {
                let verb = cx.sent("Removed", "Would remove");
                cx.act(format!(
                    "{verb} {path}: the bootstrap credential is no longer needed"
                ));
            }
        }
    }
    for f in STAGED {
        cx.world.remove(&cx.layout.staged(f))?;
    }
    if let Some(id) = created_token(cx)
        && let Some(admin) = cx.admin()?
    {
        crate::admin::tokens::delete_one(&admin, &id).await?;
        cx.act(format!(
            "{} the token Secret kube-system/bootstrap-token-{id} this join created: the node has its own credentials now (--keep-token keeps it)",
            cx.sent("Deleted", "Would delete")
        ));
    }
    Ok(())
}

fn bundle(pair: &Pair) -> String {
    format!("{}{}", pair.cert_pem, pair.key.pem().expose())
}

/// Installs `<prefix>-<ts>.pem` and points `<prefix>-current.pem` at it, unless the current link
/// already holds exactly this certificate and key.
fn install_rotating(cx: &mut Ctx, current_var: &str, prefix: &str, pair: &Pair) -> Result<()> {
    let current = cx.layout.path(current_var).to_string();
    let content = bundle(pair);
    // The same certificate behind the link is this pair, whoever wrote the file (the kubelet's
    // own files hold its key in SEC1 form, bootlet's in PKCS#8): nothing to rewrite.
    let installed = cx.world.read_string(&current)?.unwrap_or_default();
    if crate::pki::keys::certificate_blocks(&installed) == pair.cert_pem {
        cx.act(format!("{current} already holds this certificate"));
        return Ok(());
    }
    let stamp = time::OffsetDateTime::now_utc()
        .format(time::macros::format_description!(
            "[year]-[month]-[day]-[hour]-[minute]-[second]"
        ))
        .map_err(|e| Error::internal(e.to_string()))?;
    let dir = cx.layout.path("pki_dir").to_string();
    // A renewal within the same second as the pair it replaces must not overwrite that pair: the
    // old one stays in place until the link points at the new one.
    let mut file = format!("{prefix}-{stamp}.pem");
    let mut n = 1;
    while cx.world.exists(&format!("{dir}/{file}")) {
        file = format!("{prefix}-{stamp}-{n}.pem");
        n += 1;
    }
    cx.world.write(
        &format!("{dir}/{file}"),
        content.as_bytes(),
        SECRET_FILE_MODE,
    )?;
    cx.world.link(&current, &file)?;
    let (wrote, pointed) = if cx.dry_run() {
        ("Would write", "point")
    } else {
        ("Wrote", "pointed")
    };
    cx.act(format!(
        "{wrote} {dir}/{file} (0600) and {pointed} {current} at it"
    ));
    Ok(())
}

fn install_kubelet(
    cx: &mut Ctx,
    rec: &ClusterRecord,
    client: Option<&Pair>,
    serving: Option<&Pair>,
) -> Result<()> {
    let ca_path = cx.layout.path("ca_cert").to_string();
    match cx.world.read(&ca_path)? {
        None if !is_join(cx) => {}
        None => {
            cx.world
                .write(&ca_path, rec.ca.as_bytes(), PUBLIC_FILE_MODE)?;
            let verb = cx.sent("Wrote", "Would write");
            cx.act(format!("{verb} the cluster CA to {ca_path}"));
        }
        Some(existing) if existing == rec.ca.as_bytes() => {}
        Some(_) => {
            return Err(Error::conflict(format!(
                "{ca_path} holds a different CA than the cluster's ({}); if this node belonged to another cluster move it away, then rerun",
                rec.ca_pin
            )));
        }
    }
    if let Some(client) = client {
        install_rotating(cx, "client_current", "kubelet-client", client)?;
    }
    if let Some(serving) = serving {
        install_rotating(cx, "server_current", "kubelet-server", serving)?;
    }
    let kubeconfig = cx.layout.path("kubeconfig").to_string();
    let pem_ref = cx
        .layout
        .reference(&kubeconfig, cx.layout.path("client_current"));
    let text = render_node(&rec.server, rec.ca.as_bytes(), UserSpec::CertFile(&pem_ref))?;
    if cx
        .world
        .write_if_changed(&kubeconfig, text.as_bytes(), SECRET_FILE_MODE)?
    {
        let verb = cx.sent("Wrote", "Would write");
        cx.act(format!("{verb} {kubeconfig} (0600), using {pem_ref}"));
    }
    Ok(())
}

fn install_krustlet(
    cx: &mut Ctx,
    rec: &ClusterRecord,
    client: Option<&Pair>,
    serving: Option<&Pair>,
) -> Result<()> {
    if let Some(client) = client {
        install_krustlet_kubeconfig(cx, rec, client)?;
    }
    let Some(serving) = serving else {
        return Ok(());
    };
    install_krustlet_serving(cx, serving)
}

fn install_krustlet_kubeconfig(cx: &mut Ctx, rec: &ClusterRecord, client: &Pair) -> Result<()> {
    let kubeconfig = cx.layout.path("kubeconfig").to_string();
    let text = render_node(
        &rec.server,
        rec.ca.as_bytes(),
        UserSpec::EmbeddedCert {
            cert_pem: &client.cert_pem,
            key_pem: client.key.pem(),
        },
    )?;
    if cx
        .world
        .write_if_changed(&kubeconfig, text.as_bytes(), SECRET_FILE_MODE)?
    {
        let verb = cx.sent("Wrote", "Would write");
        cx.act(format!(
            "{verb} {kubeconfig} (0600) with the client credentials embedded"
        ));
    }
    Ok(())
}

fn install_krustlet_serving(cx: &mut Ctx, serving: &Pair) -> Result<()> {
    let cert = cx.layout.path("serving_cert").to_string();
    let key = cx.layout.path("serving_key").to_string();
    // Key before certificate: a reader that finds the new certificate finds its key too.
    if cx.world.write_if_changed(
        &key,
        serving.key.pem().expose().as_bytes(),
        SECRET_FILE_MODE,
    )? {
        let verb = cx.sent("Wrote", "Would write");
        cx.act(format!("{verb} {key} (0600)"));
    }
    if cx
        .world
        .write_if_changed(&cert, serving.cert_pem.as_bytes(), PUBLIC_FILE_MODE)?
    {
        let verb = cx.sent("Wrote", "Would write");
        cx.act(format!("{verb} {cert}"));
    }
    Ok(())
}
