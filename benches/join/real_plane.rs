//! The reference control plane a `real` benchmark runs against (`tests/kube/up`, initialized as
//! `kubeadm init` leaves one), and what it costs: its processes' CPU and memory from /proc, and
//! the requests its audit log counts.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

use super::Method;

/// A running reference control plane, stopped when this is dropped (with `--owner-pid`, also
/// when the bench dies).
pub(super) struct Plane {
    pub(super) dir: tempfile::TempDir,
    pub(super) server: String,
    pub(super) bin: PathBuf,
    pub(super) pids: Vec<(String, u32)>,
}

impl Plane {
    pub(super) fn start() -> Result<Plane, String> {
        let repo = Path::new(env!("CARGO_MANIFEST_DIR"));
        let out = Command::new(repo.join("tests/kube/build"))
            .stderr(Stdio::inherit())
            .output()
            .map_err(|e| format!("tests/kube/build: {e}"))?;
        if !out.status.success() {
            return Err("tests/kube/build failed (its error is above)".into());
        }
        let bin = PathBuf::from(String::from_utf8_lossy(&out.stdout).trim());
        let dir = tempfile::Builder::new()
            .prefix("bootlet-real-bench")
            .tempdir()
            .map_err(|e| e.to_string())?;
        let out = Command::new(repo.join("tests/kube/up"))
            .arg(dir.path())
            .args(["--owner-pid", &std::process::id().to_string()])
            .output()
            .map_err(|e| format!("tests/kube/up: {e}"))?;
        if !out.status.success() {
            return Err(format!(
                "tests/kube/up failed: {}",
                String::from_utf8_lossy(&out.stderr)
            ));
        }
        let server = String::from_utf8_lossy(&out.stdout).trim().to_string();
        let pids = std::fs::read_to_string(dir.path().join("pids"))
            .map_err(|e| e.to_string())?
            .lines()
            .filter_map(|l| {
                let (name, pid) = l.split_once(' ')?;
                Some((name.to_string(), pid.trim().parse().ok()?))
            })
            // The control plane's processes, not `up`'s owner watcher.
            .filter(|(name, _): &(String, u32)| {
                ["etcd", "kube-apiserver", "kube-controller-manager"].contains(&name.as_str())
            })
            .collect();
        let plane = Plane {
            dir,
            server,
            bin,
            pids,
        };
        plane.kubeadm(&["init", "phase", "bootstrap-token"])?;
        for m in Method::ALL {
            plane.kubeadm(&["token", "create", m.token(), "--ttl", "4h"])?;
        }
        Ok(plane)
    }

    pub(super) fn kubeadm(&self, args: &[&str]) -> Result<(), String> {
        let out = Command::new(self.bin.join("kubeadm"))
            .args(args)
            .arg("--kubeconfig")
            .arg(self.admin())
            .output()
            .map_err(|e| e.to_string())?;
        if out.status.success() {
            Ok(())
        } else {
            Err(format!(
                "kubeadm {}: {}",
                args.join(" "),
                String::from_utf8_lossy(&out.stderr)
            ))
        }
    }

    pub(super) fn admin(&self) -> PathBuf {
        self.dir.path().join("admin.conf")
    }

    /// A bootstrap kubeconfig with `m`'s token, as `kubeadm join` writes one.
    pub(super) fn bootstrap(&self, m: Method) -> PathBuf {
        use base64::Engine;
        let ca = std::fs::read(self.dir.path().join("ca.crt")).unwrap();
        let ca = base64::engine::general_purpose::STANDARD.encode(ca);
        let path = self.dir.path().join(format!("bootstrap-{m:?}.conf"));
        let text = format!(
            "apiVersion: v1\nkind: Config\nclusters:\n- name: real\n  cluster:\n    server: {}\n    certificate-authority-data: {ca}\ncontexts:\n- name: real\n  context: {{cluster: real, user: tls-bootstrap-token-user}}\ncurrent-context: real\nusers:\n- name: tls-bootstrap-token-user\n  user:\n    token: {}\n",
            self.server,
            m.token()
        );
        std::fs::write(&path, text).unwrap();
        path
    }

    /// The test-only kubelet settings of this machine (a VM with cgroup v1, swap allowed), with
    /// rotation off so that the kubelet bootstraps synchronously at start.
    pub(super) fn kubelet_config(&self) -> PathBuf {
        let path = self.dir.path().join("kubelet-config.yaml");
        std::fs::write(
            &path,
            "apiVersion: kubelet.config.k8s.io/v1beta1\nkind: KubeletConfiguration\nfailCgroupV1: false\nfailSwapOn: false\ncgroupDriver: cgroupfs\nrotateCertificates: false\n",
        )
        .unwrap();
        path
    }

    /// CPU seconds kube-apiserver, etcd and kube-controller-manager have used so far.
    pub(super) fn cpu_seconds(&self) -> BTreeMap<String, f64> {
        self.pids
            .iter()
            .map(|(name, pid)| (name.clone(), proc_cpu_seconds(*pid)))
            .collect()
    }

    /// Their resident memory now, KiB.
    pub(super) fn rss_kib(&self) -> BTreeMap<String, u64> {
        self.pids
            .iter()
            .map(|(name, pid)| (name.clone(), proc_rss_kib(*pid)))
            .collect()
    }

    pub(super) fn audit_log(&self) -> PathBuf {
        self.dir.path().join("audit.log")
    }
}

/// CPU seconds process `pid` has used so far.
pub(super) fn proc_cpu_seconds(pid: u32) -> f64 {
    crate::stat_cpu_seconds(Path::new(&format!("/proc/{pid}/stat")))
}

pub(super) fn proc_rss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap_or(0)
}

/// Audit events (one per request, at ResponseComplete) since `offset`, by user.
pub(super) fn audit_counts(path: &Path, offset: u64) -> BTreeMap<String, usize> {
    use std::io::{BufRead, Seek};
    let mut f = std::fs::File::open(path).unwrap();
    f.seek(std::io::SeekFrom::Start(offset)).unwrap();
    let mut counts = BTreeMap::new();
    for line in std::io::BufReader::new(f).lines().map_while(Result::ok) {
        let Ok(v) = serde_json::from_str::<serde_json::Value>(&line) else {
            continue;
        };
        if v["stage"] != "ResponseComplete" {
            continue;
        }
        let user = v["user"]["username"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        *counts.entry(user).or_insert(0) += 1;
    }
    counts
}

pub(super) fn audit_offset(path: &Path) -> u64 {
    std::fs::metadata(path).map(|m| m.len()).unwrap_or(0)
}

/// Waits until the audit log has stopped growing (it is written asynchronously).
pub(super) fn audit_settled(path: &Path) {
    let mut last = audit_offset(path);
    loop {
        std::thread::sleep(Duration::from_millis(1500));
        let now = audit_offset(path);
        if now == last {
            return;
        }
        last = now;
    }
}

/// Samples the control plane's memory every 100 ms until told to stop: the peak of each.
pub(super) fn peak_memory(
    plane: &Plane,
) -> (
    Arc<std::sync::atomic::AtomicBool>,
    std::thread::JoinHandle<BTreeMap<String, u64>>,
) {
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let pids = plane.pids.clone();
    let flag = stop.clone();
    let handle = std::thread::spawn(move || {
        let mut peak: BTreeMap<String, u64> = BTreeMap::new();
        while !flag.load(std::sync::atomic::Ordering::Relaxed) {
            for (name, pid) in &pids {
                let e = peak.entry(name.clone()).or_insert(0);
                *e = (*e).max(proc_rss_kib(*pid));
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        peak
    });
    (stop, handle)
}
