//! The three ways a `real` benchmark gets a node its client credentials, each timed from start
//! to verified credentials: `bootlet join` as a process, the release kubelet as a process, and
//! the Go peer calling the kubelet's `LoadClientCert` (`kubecp bootstrap`).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use super::{Method, Sample};

/// CPU this process's waited-for children have used so far.
pub(super) fn children_cpu() -> Duration {
    rusage_cpu(libc::RUSAGE_CHILDREN)
}

/// CPU this process itself has used so far.
pub(super) fn own_cpu() -> Duration {
    rusage_cpu(libc::RUSAGE_SELF)
}

/// User and system CPU of `who` (`getrusage`).
fn rusage_cpu(who: libc::c_int) -> Duration {
    // SAFETY: getrusage writes into the struct it is given.
    let mut u: libc::rusage = unsafe { std::mem::zeroed() };
    unsafe { libc::getrusage(who, &mut u) };
    let tv =
        |t: libc::timeval| Duration::from_micros(t.tv_sec as u64 * 1_000_000 + t.tv_usec as u64);
    tv(u.ru_utime) + tv(u.ru_stime)
}

/// The tools of one run: the binaries and the files each method joins with.
pub(super) struct Joiners {
    pub(super) bootlet: PathBuf,
    pub(super) kubelet: PathBuf,
    pub(super) kubecp: PathBuf,
    pub(super) kubelet_config: PathBuf,
    pub(super) bootstrap: BTreeMap<Method, PathBuf>,
    pub(super) roots: tempfile::TempDir,
}

impl Joiners {
    pub(super) fn join(&self, m: Method, i: usize) -> Result<Sample, String> {
        let node = format!("{}{i}", m.prefix());
        let root = self.roots.path().join(&node);
        match m {
            Method::Bootlet => self.bootlet(&root, &node),
            Method::Kubelet => self.kubelet(&root, &node),
            Method::Peer => self.peer(&root, &node).map(|(s, _)| s),
        }
    }

    pub(super) fn bootlet(&self, root: &Path, node: &str) -> Result<Sample, String> {
        let how = [
            "--bootstrap-kubeconfig".as_ref(),
            self.bootstrap[&Method::Bootlet].as_os_str(),
            "--skip-phases".as_ref(),
            "serving-csr".as_ref(),
        ];
        self.bootlet_join(root, node, &how)
    }

    /// A one-shot `bootlet join` that also gets its serving certificate (`--admin-kubeconfig
    /// --approve-serving`: the admin approves the node's serving CSR after the approver's checks).
    pub(super) fn bootlet_with_serving(
        &self,
        admin: &Path,
        root: &Path,
        node: &str,
    ) -> Result<Sample, String> {
        let how = [
            "--admin-kubeconfig".as_ref(),
            admin.as_os_str(),
            "--node-ip".as_ref(),
            "10.0.0.1".as_ref(),
            "--approve-serving".as_ref(),
        ];
        self.bootlet_join(root, node, &how)
    }

    /// `bootlet join --root ROOT --node-name NODE HOW…` as a process, until it exits 0 with a
    /// kubelet.conf naming a node client certificate.
    pub(super) fn bootlet_join(
        &self,
        root: &Path,
        node: &str,
        how: &[&std::ffi::OsStr],
    ) -> Result<Sample, String> {
        let cpu = children_cpu();
        let start = Instant::now();
        let out = Command::new(&self.bootlet)
            .arg("join")
            .args(how)
            .arg("--root")
            .arg(root)
            .args(["--node-name", node])
            .stdout(Stdio::null())
            .output()
            .map_err(|e| e.to_string())?;
        let end = Instant::now();
        if !out.status.success() {
            return Err(String::from_utf8_lossy(&out.stderr).into_owned());
        }
        client_credentials(&root.join("etc/kubernetes/kubelet.conf"), root)?;
        Ok(Sample {
            wall: end - start,
            cpu: children_cpu() - cpu,
            start,
            end,
        })
    }

    /// The kubelet from exec until its bootstrap's kubeconfig names a client certificate on
    /// disk; then it is stopped (without a container runtime it would exit by itself).
    pub(super) fn kubelet(&self, root: &Path, node: &str) -> Result<Sample, String> {
        std::fs::create_dir_all(root.join("pki")).map_err(|e| e.to_string())?;
        let kubeconfig = root.join("kubelet.conf");
        let cpu = children_cpu();
        let start = Instant::now();
        let mut child = Command::new(&self.kubelet)
            .arg(format!("--config={}", self.kubelet_config.display()))
            .arg(format!(
                "--bootstrap-kubeconfig={}",
                self.bootstrap[&Method::Kubelet].display()
            ))
            .arg(format!("--kubeconfig={}", kubeconfig.display()))
            .arg(format!("--cert-dir={}", root.join("pki").display()))
            .arg(format!("--root-dir={}", root.join("var").display()))
            .arg(format!("--hostname-override={node}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|e| e.to_string())?;
        let deadline = start + Duration::from_secs(120);
        let end = loop {
            if client_credentials(&kubeconfig, Path::new("/")).is_ok() {
                break Instant::now();
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                let _ = child.wait();
                return Err(format!(
                    "{node}: the kubelet wrote no kubeconfig within 120 s"
                ));
            }
            std::thread::sleep(Duration::from_micros(500));
        };
        let _ = child.kill();
        let _ = child.wait();
        Ok(Sample {
            wall: end - start,
            cpu: children_cpu() - cpu,
            start,
            end,
        })
    }

    /// The Go peer, one node: the sample is the process; the second value the bootstrap's own
    /// time inside it.
    pub(super) fn peer(&self, root: &Path, node: &str) -> Result<(Sample, Duration), String> {
        let cpu = children_cpu();
        let start = Instant::now();
        let out = Command::new(&self.kubecp)
            .arg("bootstrap")
            .arg(&self.bootstrap[&Method::Peer])
            .arg(root)
            .args(["1", "1", node])
            .output()
            .map_err(|e| e.to_string())?;
        let end = Instant::now();
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        if !out.status.success() {
            return Err(format!("{text}{}", String::from_utf8_lossy(&out.stderr)));
        }
        let inside = peer_times(&text)
            .0
            .first()
            .copied()
            .ok_or_else(|| format!("the peer printed no time: {text}"))?;
        // The peer names its node PREFIX<i>: here `node` and index 0.
        client_credentials(&root.join("0/kubelet.conf"), Path::new("/"))?;
        Ok((
            Sample {
                wall: end - start,
                cpu: children_cpu() - cpu,
                start,
                end,
            },
            inside,
        ))
    }
}

/// The peer's per-node times (successes) and failure count.
pub(super) fn peer_times(text: &str) -> (Vec<Duration>, usize) {
    let mut times = Vec::new();
    let mut failed = 0;
    for line in text.lines() {
        let f: Vec<&str> = line.split_whitespace().collect();
        match f.as_slice() {
            [_, t, "ok"] => {
                if let Ok(t) = t.parse::<f64>() {
                    times.push(Duration::from_secs_f64(t / 1e3));
                }
            }
            [i, _, "error:", ..] if *i != "total" => failed += 1,
            _ => {}
        }
    }
    (times, failed)
}

/// Checks that `kubeconfig` names a client certificate and key that exist (paths in it are read
/// under `root`) and that the certificate names a node: what "written and verified" means here.
pub(super) fn client_credentials(kubeconfig: &Path, root: &Path) -> Result<(), String> {
    let text = std::fs::read_to_string(kubeconfig).map_err(|e| e.to_string())?;
    let field = |k: &str| {
        text.lines()
            .find_map(|l| l.trim().strip_prefix(k))
            .map(|v| v.trim().trim_matches('"').to_string())
    };
    let cert = field("client-certificate:").ok_or("no client-certificate yet")?;
    field("client-key:").ok_or("no client-key yet")?;
    // An absolute path is read under `root`; a relative one from the kubeconfig's directory.
    let cert = match cert.strip_prefix('/') {
        Some(abs) => root.join(abs),
        None => kubeconfig.parent().unwrap_or(root).join(cert),
    };
    let pem = std::fs::read(&cert).map_err(|e| format!("{}: {e}", cert.display()))?;
    let certs =
        bootlet::pki::parse_certs_pem(&pem, "client certificate").map_err(|e| e.to_string())?;
    let info = bootlet::pki::cert::CertInfo::parse(&certs[0]).map_err(|e| e.to_string())?;
    if info.cn().starts_with("system:node:") && info.client_auth {
        Ok(())
    } else {
        Err(format!("{}: not a node client certificate", cert.display()))
    }
}
