//! `bootlet demo`: the whole join on a built-in control plane, in one process. The admin creates a
//! token, its Secret and RBAC, and a bootstrap kubeconfig; the node joins with only that file;
//! an admin task approves the serving CSR the way `kubectl certificate approve` does; then the
//! node's new kubeconfig is used to ask the API server who it is.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use futures::StreamExt;
use k8s_openapi::api::certificates::v1::{
    CertificateSigningRequest, CertificateSigningRequestCondition,
};
use kube::api::{Api, PostParams, WatchEvent, WatchParams};

use crate::engine::{Command, execute};
use crate::error::{Error, Result};
use crate::files::LayoutKind;
use crate::output::Output;
use crate::sandbox::{Sandbox, SandboxOptions};
use crate::settings::{Options, Settings};

const NODE: &str = "demo-node";

fn say(msg: impl std::fmt::Display) {
    crate::outln!("[demo] {msg}");
}

/// Runs the demo; files stay under `out` (a new temporary directory when `None`).
pub async fn run(out: Option<PathBuf>, layout: LayoutKind) -> Result<()> {
    let out = match out {
        Some(o) => o,
        None => tempfile::Builder::new()
            .prefix("bootlet-demo-")
            .tempdir()
            .map_err(|e| Error::io("create a directory in", &std::env::temp_dir(), e))?
            .keep(),
    };
    crate::files::ensure_private_dir(&out)?;
    let started = Instant::now();
    let sandbox = Sandbox::start(SandboxOptions::default()).await?;
    let sandbox_dir = out.join("sandbox");
    sandbox.write_files(&sandbox_dir)?;
    say(format!(
        "Started a local control plane at {} (admin.conf and ca.crt in {})",
        sandbox.url(),
        sandbox_dir.display()
    ));
    let result = join_against(&sandbox, &out, layout).await;
    sandbox.shutdown().await;
    result?;
    say(format!(
        "Done in {:.2?}. Everything is under {}",
        started.elapsed(),
        out.display()
    ));
    Ok(())
}

fn settings(options: Options) -> Result<Settings> {
    Settings::resolve(options, None)
}

async fn join_against(sandbox: &Sandbox, out: &Path, layout: LayoutKind) -> Result<()> {
    let admin_conf = out.join("sandbox/admin.conf");
    let admin_root = out.join("admin");
    let node_root = out.join("node");
    let krustlet_dir = "/krustlet".to_string();

    say("Admin side: a token, its Secret and RBAC, and a bootstrap kubeconfig to hand to the node");
    for phase in ["token", "secret", "kubeconfig"] {
        let s = settings(Options {
            root: Some(admin_root.clone()),
            admin_kubeconfig: Some(admin_conf.clone()),
            node_name: Some(NODE.into()),
            ..Default::default()
        })?;
        let outcome = execute(Command::join_phase(phase), s, Output::new(false)).await;
        if let Some(e) = outcome.error {
            return Err(e);
        }
        print_timings(&outcome.report);
    }
    let bootstrap = admin_root.join("etc/kubernetes/bootstrap-kubelet.conf");

    say(format!(
        "Node side: `bootlet join --bootstrap-kubeconfig {}` into {}",
        bootstrap.display(),
        node_root.display()
    ));
    let approver = tokio::spawn(approve_serving_csrs(crate::kubeconfig::parse(
        sandbox.admin_kubeconfig().expose(),
        out,
        "the sandbox admin kubeconfig",
    )?));
    let s = settings(Options {
        root: Some(node_root.clone()),
        layout: Some(layout),
        krustlet_data_dir: Some(krustlet_dir.clone()),
        bootstrap_kubeconfig: Some(bootstrap),
        node_name: Some(NODE.into()),
        approval_timeout: Some("60s".into()),
        ..Default::default()
    })?;
    let outcome = execute(Command::join(), s, Output::new(false)).await;
    approver.abort();
    if let Some(e) = outcome.error {
        return Err(e);
    }
    say("Phase timings:");
    print_timings(&outcome.report);
    say("Files on the node:");
    list_files(&node_root);
    confirm_identity(&node_root, layout, &krustlet_dir).await?;
    let (client, server) = match layout {
        LayoutKind::Kubelet => (
            "var/lib/kubelet/pki/kubelet-client-current.pem",
            "var/lib/kubelet/pki/kubelet-server-current.pem",
        ),
        LayoutKind::Krustlet => ("", "krustlet/config/krustlet.crt"),
    };
    if !client.is_empty() {
        say(format!(
            "Check them yourself: openssl verify -CAfile {} {}",
            out.join("sandbox/ca.crt").display(),
            node_root.join(client).display()
        ));
    }
    say(format!(
        "                     openssl verify -CAfile {} {}",
        out.join("sandbox/ca.crt").display(),
        node_root.join(server).display()
    ));
    Ok(())
}

fn print_timings(report: &crate::engine::report::Report) {
    for p in &report.phases {
        crate::outln!(
            "    {:<14} {:<8} {:>8.2} ms  {}",
            p.name,
            p.status,
            p.duration_ms,
            p.reason
        );
    }
    crate::outln!(
        "    {:<14} {:<8} {:>8.2} ms  of it {:.2} ms outside the phases (settings, lock, the checks that plan the run, the last sync)",
        "(total)",
        "",
        report.total_ms,
        report.outside_phases_ms
    );
}

fn list_files(root: &Path) {
    let mut stack = vec![root.to_path_buf()];
    let mut rows = Vec::new();
    while let Some(dir) = stack.pop() {
        let Ok(rd) = std::fs::read_dir(&dir) else {
            continue;
        };
        for e in rd.flatten() {
            let p = e.path();
            let Ok(meta) = std::fs::symlink_metadata(&p) else {
                continue;
            };
            let rel = p.strip_prefix(root).unwrap_or(&p).display().to_string();
            if meta.is_dir() {
                stack.push(p);
            } else if meta.file_type().is_symlink() {
                let target = std::fs::read_link(&p)
                    .map(|t| t.display().to_string())
                    .unwrap_or_default();
                rows.push(format!("    /{rel} -> {target}"));
            } else {
                use std::os::unix::fs::PermissionsExt;
                rows.push(format!(
                    "    /{rel}  {:04o}  {} bytes",
                    meta.permissions().mode() & 0o7777,
                    meta.len()
                ));
            }
        }
    }
    rows.sort();
    for r in rows {
        crate::outln!("{r}");
    }
}

/// The admin's part: approve each kubelet serving CSR as `kubectl certificate approve` would.
async fn approve_serving_csrs(admin: crate::kubeconfig::ClusterAccess) -> Result<()> {
    let client = crate::cluster::kube_client(&admin)?;
    let api: Api<CertificateSigningRequest> = Api::all(client);
    let wp = WatchParams::default().timeout(120);
    let stream = api
        .watch(&wp, "0")
        .await
        .map_err(|e| Error::internal(format!("demo approver: {e}")))?;
    let mut stream = std::pin::pin!(stream);
    while let Some(Ok(ev)) = stream.next().await {
        let (WatchEvent::Added(csr) | WatchEvent::Modified(csr)) = ev else {
            continue;
        };
        let pending = csr
            .status
            .as_ref()
            .and_then(|s| s.conditions.as_ref())
            .is_none_or(|c| c.is_empty());
        if csr.spec.signer_name != crate::cluster::csr::SIGNER_SERVING || !pending {
            continue;
        }
        let name = csr.metadata.name.clone().unwrap_or_default();
        crate::outln!(
            "[admin] kubectl certificate approve {name}   # serving CSR from {}",
            csr.spec.username.clone().unwrap_or_default()
        );
        let mut approved = csr.clone();
        approved
            .status
            .get_or_insert_with(Default::default)
            .conditions = Some(vec![CertificateSigningRequestCondition {
            type_: "Approved".into(),
            status: "True".into(),
            reason: Some("KubectlApprove".into()),
            message: Some(
                "This CSR was approved by bootlet demo (as kubectl certificate approve).".into(),
            ),
            ..Default::default()
        }]);
        api.replace_subresource("approval", &name, &PostParams::default(), &approved)
            .await
            .map_err(|e| Error::internal(format!("demo approver: {e}")))?;
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    Ok(())
}

/// Uses the node's new kubeconfig to ask the API server who it is (a SelfSubjectReview, as
/// `kubectl auth whoami`).
async fn confirm_identity(root: &Path, layout: LayoutKind, krustlet_dir: &str) -> Result<()> {
    let kubeconfig = match layout {
        LayoutKind::Kubelet => root.join("etc/kubernetes/kubelet.conf"),
        LayoutKind::Krustlet => root
            .join(krustlet_dir.trim_start_matches('/'))
            .join("config/kubeconfig"),
    };
    let access = crate::kubeconfig::load(&kubeconfig, "the node kubeconfig")?;
    let client = crate::cluster::kube_client(&access)?;
    let review: serde_json::Value = client
        .request(
            http::Request::post("/apis/authentication.k8s.io/v1/selfsubjectreviews")
                .header("content-type", "application/json")
                .body(
                    br#"{"apiVersion":"authentication.k8s.io/v1","kind":"SelfSubjectReview"}"#
                        .to_vec(),
                )
                .map_err(|e| Error::internal(e.to_string()))?,
        )
        .await
        .map_err(|e| Error::internal(format!("whoami with the node kubeconfig: {e}")))?;
    say(format!(
        "The node's kubeconfig {} authenticates as {} (groups {})",
        kubeconfig.display(),
        review["status"]["userInfo"]["username"]
            .as_str()
            .unwrap_or("?"),
        review["status"]["userInfo"]["groups"]
    ));
    Ok(())
}
