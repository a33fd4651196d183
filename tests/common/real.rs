//! The real control plane for the tests: etcd, kube-apiserver and kube-controller-manager of the
//! release pinned in `tests/kube/`, started by `tests/kube/up` on free loopback ports and stopped
//! by `tests/kube/down` (or, when the test binary dies first, by the watcher `up --owner-pid`
//! leaves behind).
//!
//! Without Go or the module proxy the first test that needs it fails with the one line
//! `tests/kube/build` printed; `BOOTLET_REAL_CLUSTER=off` leaves those tests out explicitly (they
//! are compiled as ignored, so cargo's summary line counts them).

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Arc, OnceLock};

/// Where `tests/kube/` is.
pub fn kube_dir() -> PathBuf {
    PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/kube"))
}

/// A running real control plane; stopped when dropped.
pub struct RealCluster {
    dir: tempfile::TempDir,
    server: String,
}

/// The signing duration of the short-lived control plane: long enough that a join finishes well
/// inside it, short enough that a test can outwait it. The real signer backdates NotBefore by 5
/// minutes, so a certificate lives 5 minutes more than this and its rotation deadline (70-90 % of
/// that) falls between 40 s and 2 min 50 s after signing.
pub const SHORT_SIGNING: &str = "3m";

impl RealCluster {
    /// Starts a new control plane with `up`'s extra flags (`--signing-duration 3m`).
    pub fn start(extra: &[&str]) -> Result<RealCluster, String> {
        let dir = tempfile::Builder::new()
            .prefix("bootlet-real-")
            .tempdir()
            .map_err(|e| e.to_string())?;
        let owner = std::process::id().to_string();
        let out = Command::new(kube_dir().join("up"))
            .arg(dir.path())
            .args(["--owner-pid", &owner])
            .args(extra)
            .output()
            .map_err(|e| format!("could not run tests/kube/up: {e}"))?;
        let stderr = String::from_utf8_lossy(&out.stderr);
        if !out.status.success() {
            let line = stderr
                .lines()
                .find(|l| l.starts_with("error:"))
                .unwrap_or(stderr.trim());
            return Err(format!("the real control plane did not start: {line}"));
        }
        let server = String::from_utf8_lossy(&out.stdout).trim().to_string();
        Ok(RealCluster { dir, server })
    }

    /// A new control plane as `kubeadm init` leaves one: the bootstrap-token phase has run (the
    /// bootstrapper RBAC, cluster-info readable anonymously, a default token), as the sandbox has
    /// them from its start.
    pub fn start_initialized(extra: &[&str]) -> Result<RealCluster, String> {
        let c = Self::start(extra)?;
        c.kubeadm(&["init", "phase", "bootstrap-token"])?;
        Ok(c)
    }

    /// Runs the release's kubeadm with this control plane's admin kubeconfig.
    pub fn kubeadm(&self, args: &[&str]) -> Result<String, String> {
        let out = Command::new(Self::binary("kubeadm"))
            .args(args)
            .arg("--kubeconfig")
            .arg(self.dir().join("admin.conf"))
            .output()
            .map_err(|e| format!("could not run kubeadm: {e}"))?;
        if !out.status.success() {
            return Err(format!(
                "kubeadm {} failed: {}",
                args.join(" "),
                String::from_utf8_lossy(&out.stderr)
            ));
        }
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    }

    /// The control plane this test binary shares (a year's signing, as kubeadm's default).
    pub fn shared() -> Arc<RealCluster> {
        static SHARED: OnceLock<Result<Arc<RealCluster>, String>> = OnceLock::new();
        Self::once(&SHARED, &[])
    }

    /// The shared control plane that signs for [`SHORT_SIGNING`].
    pub fn short_lived() -> Arc<RealCluster> {
        static SHORT: OnceLock<Result<Arc<RealCluster>, String>> = OnceLock::new();
        Self::once(&SHORT, &["--signing-duration", SHORT_SIGNING])
    }

    fn once(cell: &OnceLock<Result<Arc<RealCluster>, String>>, extra: &[&str]) -> Arc<RealCluster> {
        match cell.get_or_init(|| Self::start_initialized(extra).map(Arc::new)) {
            Ok(c) => c.clone(),
            Err(e) => panic!("{e}"),
        }
    }

    /// `https://127.0.0.1:PORT`.
    pub fn server(&self) -> &str {
        &self.server
    }

    /// The directory `up` wrote into (admin.conf, ca.crt, pki/, audit.log, logs/).
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// The release's binary `name` (kubeadm, kubelet, …), as `tests/kube/build` left it.
    pub fn binary(name: &str) -> PathBuf {
        static BIN: OnceLock<PathBuf> = OnceLock::new();
        BIN.get_or_init(|| {
            let out = Command::new(kube_dir().join("build"))
                .output()
                .expect("tests/kube/build runs");
            assert!(
                out.status.success(),
                "{}",
                String::from_utf8_lossy(&out.stderr)
            );
            PathBuf::from(String::from_utf8_lossy(&out.stdout).trim())
        })
        .join(name)
    }

    /// Distinct requests (audit IDs) per user, from the API server's audit log.
    pub fn audited_requests(&self) -> Vec<AuditedRequest> {
        let text = std::fs::read_to_string(self.dir().join("audit.log")).unwrap_or_default();
        let mut seen = std::collections::BTreeSet::new();
        let mut out = Vec::new();
        for line in text.lines() {
            let Ok(ev) = serde_json::from_str::<serde_json::Value>(line) else {
                continue;
            };
            let id = ev["auditID"].as_str().unwrap_or_default().to_string();
            if !seen.insert(id) {
                continue;
            }
            out.push(AuditedRequest {
                user: ev["user"]["username"].as_str().unwrap_or_default().into(),
                verb: ev["verb"].as_str().unwrap_or_default().into(),
                uri: ev["requestURI"].as_str().unwrap_or_default().into(),
                code: ev["responseStatus"]["code"].as_u64().unwrap_or(0),
                user_agent: ev["userAgent"].as_str().unwrap_or_default().into(),
            });
        }
        out
    }
}

/// One request as the audit log records it.
#[derive(Debug, Clone)]
pub struct AuditedRequest {
    pub user: String,
    pub verb: String,
    pub uri: String,
    pub code: u64,
    pub user_agent: String,
}

impl Drop for RealCluster {
    fn drop(&mut self) {
        let _ = Command::new(kube_dir().join("down"))
            .arg(self.dir.path())
            .output();
    }
}
