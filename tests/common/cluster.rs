//! One cluster handle, two backends: the sandbox (started per test, in-process) and the real
//! control plane (`tests/kube/`, shared by the tests of one binary). Scenarios written against
//! [`TestCluster`] run unchanged on both; `on_both!` makes one test of each.
//!
//! Everything here goes through the API as a user would (kubectl, bootlet), never through the
//! sandbox's store, so that what a scenario checks means the same on both.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use super::real::RealCluster;
use super::*;

/// Which control plane a scenario runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Plane {
    Sandbox,
    Real,
}

impl Plane {
    /// A cluster signing for a year (kubeadm's default), serving CSRs left to an approver.
    pub fn cluster(self) -> TestCluster {
        match self {
            Plane::Sandbox => TestCluster::sandbox(std::time::Duration::from_secs(365 * 86_400)),
            Plane::Real => TestCluster::real(RealCluster::shared()),
        }
    }

    /// A cluster of the test's own: what it counts or runs (requests, an approver deciding every
    /// serving CSR it sees) must not meet other tests' work. A sandbox is always a test's own.
    pub fn own(self) -> TestCluster {
        match self {
            Plane::Sandbox => self.cluster(),
            Plane::Real => TestCluster::private_real(),
        }
    }

    /// A cluster signing for [`real::SHORT_SIGNING`] (backdated 5 minutes, as the real signer does).
    pub fn short_lived(self) -> TestCluster {
        match self {
            Plane::Sandbox => TestCluster::sandbox(std::time::Duration::from_secs(180)),
            Plane::Real => TestCluster::real(RealCluster::short_lived()),
        }
    }
}

enum Backend {
    Sandbox(TestSandbox),
    Real(Arc<RealCluster>),
}

/// A control plane as the tests see it: its address, CA, admin kubeconfig, and what can be asked
/// of it through the API.
pub struct TestCluster {
    backend: Backend,
    /// kubectl's cache and the tests' scratch files.
    scratch: tempfile::TempDir,
}

impl TestCluster {
    fn sandbox(signing: std::time::Duration) -> TestCluster {
        let sb = TestSandbox::configured(|o| o.signing_duration = signing);
        TestCluster {
            backend: Backend::Sandbox(sb),
            scratch: tempfile::tempdir().unwrap(),
        }
    }

    /// A handle on a real control plane a test started or shares.
    pub fn from_real(c: Arc<RealCluster>) -> TestCluster {
        Self::real(c)
    }

    fn real(c: Arc<RealCluster>) -> TestCluster {
        TestCluster {
            backend: Backend::Real(c),
            scratch: tempfile::tempdir().unwrap(),
        }
    }

    /// A real control plane of its own, initialized as kubeadm does (for counts no other test may
    /// disturb).
    pub fn private_real() -> TestCluster {
        let c = RealCluster::start_initialized(&[]).unwrap_or_else(|e| panic!("{e}"));
        TestCluster::real(Arc::new(c))
    }

    pub fn is_real(&self) -> bool {
        matches!(self.backend, Backend::Real(_))
    }

    /// The sandbox behind this handle, for what only it can show (its counters).
    pub fn as_sandbox(&self) -> Option<&TestSandbox> {
        match &self.backend {
            Backend::Sandbox(sb) => Some(sb),
            Backend::Real(_) => None,
        }
    }

    pub fn as_real(&self) -> Option<&RealCluster> {
        match &self.backend {
            Backend::Real(c) => Some(c),
            Backend::Sandbox(_) => None,
        }
    }

    /// `https://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        match &self.backend {
            Backend::Sandbox(sb) => sb.url(),
            Backend::Real(c) => c.server().to_string(),
        }
    }

    /// `127.0.0.1:PORT`.
    pub fn endpoint(&self) -> String {
        self.url().trim_start_matches("https://").to_string()
    }

    pub fn admin_conf(&self) -> PathBuf {
        match &self.backend {
            Backend::Sandbox(sb) => sb.admin_conf(),
            Backend::Real(c) => c.dir().join("admin.conf"),
        }
    }

    pub fn ca_crt(&self) -> PathBuf {
        match &self.backend {
            Backend::Sandbox(sb) => sb.ca_crt(),
            Backend::Real(c) => c.dir().join("ca.crt"),
        }
    }

    pub fn ca_pem(&self) -> Vec<u8> {
        std::fs::read(self.ca_crt()).unwrap()
    }

    /// The CA's pin, `sha256:<hex>`.
    pub fn pin(&self) -> String {
        let der = bootlet::pki::parse_certs_pem(&self.ca_pem(), "ca").unwrap();
        bootlet::pki::pin::Pin::of_cert(&der[0])
            .unwrap()
            .to_string()
    }

    /// A scratch directory that lives as long as the handle.
    pub fn scratch(&self) -> &Path {
        self.scratch.path()
    }

    /// kubectl as the admin.
    pub fn kubectl(&self, args: &[&str]) -> Run {
        kubectl_with(&self.admin_conf(), self.scratch(), args)
    }

    /// kubectl as the admin, `input` on its stdin (`create -f -`).
    pub fn kubectl_stdin(&self, args: &[&str], input: &str) -> Run {
        use std::io::Write;
        let mut child = Command::new("kubectl")
            .arg("--kubeconfig")
            .arg(self.admin_conf())
            .arg("--cache-dir")
            .arg(self.scratch().join("kube-cache"))
            .args(args)
            .env_remove("KUBECONFIG")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("kubectl is installed");
        child
            .stdin
            .take()
            .unwrap()
            .write_all(input.as_bytes())
            .unwrap();
        let out = child.wait_with_output().unwrap();
        Run {
            code: out.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        }
    }

    /// One object as JSON (`kubectl get … -o json`), or None when it does not exist.
    pub fn get_json(&self, args: &[&str]) -> Option<serde_json::Value> {
        let run = self.kubectl(&[&["get", "-o", "json"], args].concat());
        (run.code == 0).then(|| serde_json::from_str(&run.stdout).unwrap())
    }

    /// A client certificate and its key (PEM) for `cn`/`orgs`, signed by the cluster's CA for an
    /// hour: the sandbox's CA in-process, the real one's `pki/ca.key` by openssl.
    pub fn client_cert(&self, cn: &str, orgs: &[&str]) -> (String, String) {
        match &self.backend {
            Backend::Sandbox(sb) => super::client_cert_from(sb.sb().ca(), cn, orgs),
            Backend::Real(c) => {
                let dir = self.scratch();
                let name = format!("client-{}", cn.replace(':', "-"));
                let subject: String = orgs
                    .iter()
                    .map(|o| format!("/O={o}"))
                    .chain([format!("/CN={cn}")])
                    .collect();
                let req = openssl_req(dir, &name, &subject, None);
                let crt = dir.join(format!("{name}.crt"));
                let ext = write_file(dir, "client.ext", "extendedKeyUsage=clientAuth\n");
                output_ok(
                    Command::new("openssl")
                        .args(["x509", "-req", "-days", "1", "-in", s(&req)])
                        .arg("-CA")
                        .arg(c.dir().join("pki/ca.crt"))
                        .arg("-CAkey")
                        .arg(c.dir().join("pki/ca.key"))
                        .arg("-CAserial")
                        .arg(dir.join("ca.srl"))
                        .args(["-CAcreateserial", "-extfile", s(&ext), "-out", s(&crt)]),
                );
                let key = std::fs::read_to_string(dir.join(format!("{name}.key"))).unwrap();
                (std::fs::read_to_string(crt).unwrap(), key)
            }
        }
    }

    /// Registers `token` as `kubeadm token create` does (a bootstrap-token Secret through the API).
    pub fn add_token(&self, token: &str, expiration: Option<&str>, usages: &[&str]) {
        remember_secrets(token);
        let t = bootlet::token::BootstrapToken::parse(token).unwrap();
        let secret = bootlet::sandbox::token_secret(
            &t,
            expiration,
            usages,
            bootlet::token::DEFAULT_NODE_TOKEN_GROUP,
        );
        self.kubectl_stdin(&["create", "-f", "-"], &secret.to_string())
            .ok();
    }

    /// Registers `token` for authentication and signing.
    pub fn new_token(&self, token: &str) {
        self.add_token(token, None, &["authentication", "signing"]);
    }

    /// Writes a bootstrap kubeconfig for `token` and this cluster into `dir`.
    pub fn bootstrap_kubeconfig(&self, dir: &Path, token: &str) -> PathBuf {
        let t = bootlet::token::BootstrapToken::parse(token).unwrap();
        let text = bootlet::kubeconfig::render_bootstrap(&self.url(), &self.ca_pem(), &t).unwrap();
        let p = dir.join("bootstrap.conf");
        std::fs::write(&p, text).unwrap();
        p
    }

    /// A node about to join with `token` (registered with both usages): its temp dir, a bootstrap
    /// kubeconfig in it, and a root under it (not yet created).
    pub fn token_node(&self, token: &str) -> (tempfile::TempDir, PathBuf, PathBuf) {
        self.new_token(token);
        let dir = tempfile::tempdir().unwrap();
        let bootstrap = self.bootstrap_kubeconfig(dir.path(), token);
        let root = dir.path().join("node");
        (dir, bootstrap, root)
    }

    /// Every CSR as kubectl shows it.
    pub fn csrs(&self) -> Vec<serde_json::Value> {
        let list = self.get_json(&["csr"]).expect("kubectl get csr");
        list["items"].as_array().cloned().unwrap_or_default()
    }

    /// The CSRs whose requestor is `user`.
    pub fn csrs_of(&self, user: &str) -> Vec<serde_json::Value> {
        self.csrs()
            .into_iter()
            .filter(|c| c["spec"]["username"] == user)
            .collect()
    }

    /// Requests sent by users whose name contains `who`: the sandbox's counters, or the real API
    /// server's audit log (distinct audit IDs). `anonymous` means the unauthenticated user.
    pub fn requests_by(&self, who: &str) -> u64 {
        match &self.backend {
            Backend::Sandbox(sb) => sb.requests_by(who),
            Backend::Real(c) => {
                let who = if who == "anonymous" {
                    "system:anonymous"
                } else {
                    who
                };
                c.audited_requests()
                    .iter()
                    .filter(|r| r.user.contains(who))
                    .count() as u64
            }
        }
    }

    /// The User-Agent of each request by users whose name contains `who`, as the real API server's
    /// audit log has them; `None` on the sandbox, which keeps no such log.
    pub fn user_agents_of(&self, who: &str) -> Option<Vec<String>> {
        match &self.backend {
            Backend::Sandbox(_) => None,
            Backend::Real(c) => Some(
                c.audited_requests()
                    .into_iter()
                    .filter(|r| r.user.contains(who))
                    .map(|r| r.user_agent)
                    .collect(),
            ),
        }
    }

    /// Approves, as an admin with kubectl, the serving CSRs of node `node` while the guard lives.
    pub fn approve_serving_of(&self, node: &str) -> Approving {
        let stop = Arc::new(AtomicBool::new(false));
        let (conf, dir) = (self.admin_conf(), self.scratch().to_path_buf());
        let user = format!("system:node:{node}");
        let flag = stop.clone();
        let handle = std::thread::spawn(move || {
            let jsonpath = "jsonpath={range .items[*]}{.metadata.name} {.spec.signerName} {.spec.username} {.status.conditions[0].type}{\"\\n\"}{end}";
            while !flag.load(Ordering::Relaxed) {
                let out = kubectl_with(&conf, &dir, &["get", "csr", "-o", jsonpath]);
                for line in out.stdout.lines() {
                    let parts: Vec<&str> = line.split_whitespace().collect();
                    if parts.len() == 3
                        && parts[1] == "kubernetes.io/kubelet-serving"
                        && parts[2] == user
                    {
                        kubectl_with(&conf, &dir, &["certificate", "approve", parts[0]]);
                    }
                }
                std::thread::sleep(std::time::Duration::from_millis(150));
            }
        });
        Approving {
            stop,
            handle: Some(handle),
        }
    }
}

/// Stops the background approval when dropped.
pub struct Approving {
    stop: Arc<AtomicBool>,
    handle: Option<std::thread::JoinHandle<()>>,
}

impl Drop for Approving {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(h) = self.handle.take() {
            let _ = h.join();
        }
    }
}

/// One `#[test]` per scenario and control plane: `on_sandbox::NAME` and `on_real::NAME`, each
/// calling `NAME(Plane::…)`. The real ones are compiled as ignored under
/// `BOOTLET_REAL_CLUSTER=off` (build.rs), so cargo's summary counts what was left out.
#[macro_export]
macro_rules! on_both {
    ($($name:ident),* $(,)?) => {
        mod on_sandbox {
            $(
                #[test]
                fn $name() {
                    super::$name($crate::common::cluster::Plane::Sandbox)
                }
            )*
        }
        mod on_real {
            $(
                #[test]
                #[cfg_attr(real_cluster_off, ignore = "BOOTLET_REAL_CLUSTER=off")]
                fn $name() {
                    super::$name($crate::common::cluster::Plane::Real)
                }
            )*
        }
    };
}
