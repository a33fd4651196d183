//! Helpers shared by the integration tests: run the built binary in temp dirs, start a sandbox
//! in-process, drive kubectl, and collect every output so the secret scan can check them all.

#![allow(dead_code)]

pub mod cluster;
pub mod node;
pub mod real;

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::Mutex;

use bootlet::sandbox::{Sandbox, SandboxOptions};

/// The runtime test clients run on (two workers, as the machines have), with bootlet's TLS
/// provider installed.
pub fn client_runtime() -> tokio::runtime::Runtime {
    let _ = bootlet::cluster::crypto_provider().install_default();
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}

/// A client certificate for `cn` in `orgs`, valid an hour, issued by `ca`: the certificate PEM
/// and its key's PKCS#8 PEM.
pub fn client_cert_from(ca: &bootlet::pki::ca::Ca, cn: &str, orgs: &[&str]) -> (String, String) {
    let key = bootlet::pki::keys::PrivateKey::generate().unwrap();
    let orgs: Vec<String> = orgs.iter().map(|s| s.to_string()).collect();
    let subject = bootlet::pki::ca::Subject {
        cn,
        orgs: &orgs,
        dns: &[],
        ips: &[],
    };
    let cert = ca
        .issue(
            key.pair(),
            &subject,
            bootlet::pki::ca::Usages::CLIENT,
            time::Duration::hours(1),
        )
        .unwrap();
    (cert, key.pem().expose().clone())
}

/// A path as a command-line argument.
pub fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

/// The built binary.
pub fn bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_bootlet"))
}

/// Every stdout/stderr of every bootlet run in this test binary, for the leak scan.
pub static TRANSCRIPT: Mutex<String> = Mutex::new(String::new());

/// The result of a run.
#[derive(Debug)]
pub struct Run {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

impl Run {
    pub fn ok(&self) -> &Self {
        assert_eq!(
            self.code, 0,
            "expected success\nstdout:\n{}\nstderr:\n{}",
            self.stdout, self.stderr
        );
        self
    }
    pub fn fails_with(&self, code: i32, needle: &str) -> &Self {
        assert_eq!(
            self.code, code,
            "expected exit {code}\nstdout:\n{}\nstderr:\n{}",
            self.stdout, self.stderr
        );
        assert!(
            self.stderr.contains(needle) || self.stdout.contains(needle),
            "expected {needle:?} in output\nstdout:\n{}\nstderr:\n{}",
            self.stdout,
            self.stderr
        );
        self
    }
    /// The `error: ...` line.
    /// The stderr lines `keep` accepts.
    pub fn stderr_lines(&self, keep: impl Fn(&str) -> bool) -> Vec<&str> {
        self.stderr.lines().filter(|l| keep(l)).collect()
    }

    pub fn error_line(&self) -> String {
        self.stderr
            .lines()
            .find(|l| l.starts_with("error: "))
            .unwrap_or_default()
            .to_string()
    }
    pub fn all(&self) -> String {
        format!("{}\n{}", self.stdout, self.stderr)
    }
}

fn record(out: &Output, args: &[&str], extra_secrets: &[&str]) -> Run {
    let run = Run {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    };
    leak_scan(&run, args, extra_secrets);
    let mut t = TRANSCRIPT.lock().unwrap();
    t.push_str(&run.stdout);
    t.push_str(&run.stderr);
    run
}

/// Every secret the tests have used or bootlet has produced so far: token secret halves and the
/// base64 lines of private keys.
pub static SECRETS: Mutex<std::collections::BTreeSet<String>> =
    Mutex::new(std::collections::BTreeSet::new());

/// Remembers the secret half of a token-looking string and the body lines of PEM private keys.
pub fn remember_secrets(text: &str) {
    let mut s = SECRETS.lock().unwrap();
    for word in text.split(|c: char| !(c.is_ascii_alphanumeric() || c == '.')) {
        if let Ok(t) = bootlet::token::BootstrapToken::parse(word) {
            s.insert(t.secret().expose().clone());
        }
    }
    if let Some(k) = bootlet::pki::keys::private_key_block(text) {
        for line in k
            .lines()
            .filter(|l| !l.starts_with("-----") && l.len() >= 40)
        {
            s.insert(line.to_string());
        }
    }
}

/// Files a run may have written secrets into or reported into: everything under the roots and
/// dry-run directories its arguments name or its output mentions.
fn dirs_of(args: &[&str], run: &Run) -> Vec<PathBuf> {
    let mut dirs: Vec<PathBuf> = args
        .windows(2)
        .filter(|w| matches!(w[0], "--root" | "--dry-run-dir" | "--out" | "--dir"))
        .map(|w| PathBuf::from(w[1]))
        .collect();
    for word in run
        .all()
        .split(|c: char| c.is_whitespace() || c == '"' || c == ',')
    {
        if let Some(i) = word.find("/bootlet-dry-run-") {
            let end = word[i + 1..]
                .find('/')
                .map(|j| i + 1 + j)
                .unwrap_or(word.len());
            dirs.push(PathBuf::from(&word[..end]));
        }
    }
    dirs
}

pub fn leak_scan(run: &Run, args: &[&str], extra_secrets: &[&str]) {
    for a in args.iter().chain(extra_secrets) {
        remember_secrets(a);
    }
    let dirs = dirs_of(args, run);
    let mut reports = Vec::new();
    for d in &dirs {
        for f in files_under(d) {
            let p = d.join(&f);
            let Ok(text) = std::fs::read_to_string(&p) else {
                continue;
            };
            remember_secrets(&text);
            if f.ends_with("journal.toml") || f.ends_with("bootlet-report.json") {
                reports.push((p, text));
            }
        }
    }
    let secrets = SECRETS.lock().unwrap().clone();
    let mut outputs: Vec<(String, &str)> = vec![
        ("stdout".into(), &run.stdout),
        ("stderr".into(), &run.stderr),
    ];
    for (p, text) in &reports {
        outputs.push((p.display().to_string(), text));
    }
    for (what, text) in outputs {
        assert!(
            !text.contains("PRIVATE KEY-----"),
            "{what} of `bootlet {}` shows a private key",
            args.join(" ")
        );
        for s in &secrets {
            assert!(
                !text.contains(s.as_str()),
                "{what} of `bootlet {}` leaks a secret",
                args.join(" ")
            );
        }
    }
}

/// Runs bootlet with `args` (no inherited BOOTLET_TOKEN).
pub fn bootlet(args: &[&str]) -> Run {
    bootlet_env(args, &[])
}

/// `bootlet join --root ROOT --node-name NODE REST…`: how every test joins a node; `rest` says
/// where the credentials come from and what else is asked.
pub fn join_node(root: &str, node: &str, rest: &[&str]) -> Run {
    bootlet(&[&["join", "--root", root, "--node-name", node], rest].concat())
}

/// `bootlet phase PHASE --root ROOT --node-name NODE REST…`.
pub fn phase_node(phase: &str, root: &str, node: &str, rest: &[&str]) -> Run {
    bootlet(&[&["phase", phase, "--root", root, "--node-name", node], rest].concat())
}

/// Asserts that `haystack` contains `needle`, showing all of it when not.
#[track_caller]
pub fn assert_has(haystack: &str, needle: &str) {
    assert!(haystack.contains(needle), "{needle:?} not in:\n{haystack}");
}

/// Asserts that `haystack` does not contain `needle`, showing all of it when it does.
#[track_caller]
pub fn assert_lacks(haystack: &str, needle: &str) {
    assert!(
        !haystack.contains(needle),
        "{needle:?} found in:\n{haystack}"
    );
}

/// The join workflow's phases in the order they run.
pub const JOIN_PHASES: [&str; 9] = [
    "preflight",
    "token",
    "secret",
    "discovery",
    "kubeconfig",
    "client-csr",
    "serving-csr",
    "write-files",
    "kubelet-config",
];

/// `bootlet join` with a bootstrap kubeconfig (the node-side join).
pub fn bootstrap_join(root: &str, node: &str, bootstrap: &Path, rest: &[&str]) -> Run {
    join_node(
        root,
        node,
        &[&["--bootstrap-kubeconfig", s(bootstrap)], rest].concat(),
    )
}

/// A scratch directory and the node root inside it (not yet created).
pub fn work_root() -> (tempfile::TempDir, PathBuf) {
    let work = tempfile::tempdir().unwrap();
    let root = work.path().join("node");
    (work, root)
}

/// Writes `contents` to `dir/name` and returns the path.
pub fn write_file(dir: &Path, name: &str, contents: &str) -> PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, contents).unwrap();
    p
}

/// Runs `command` (not bootlet), asserts that it succeeded and returns its stdout.
#[track_caller]
pub fn output_ok(command: &mut Command) -> String {
    let out = command.output().expect("run the command");
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "{command:?} failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
}

/// Starts bootlet with `args` in the background, its output discarded.
pub fn spawn_quiet(args: &[&str]) -> std::process::Child {
    Command::new(bin())
        .args(args)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap()
}

/// Asserts that `text` starts with `prefix`, showing all of it when not.
#[track_caller]
pub fn assert_starts(text: &str, prefix: &str) {
    assert!(
        text.starts_with(prefix),
        "does not start with {prefix:?}:\n{text}"
    );
}

/// `bootlet renew --root ROOT --node-name NODE REST…`.
pub fn renew_node(root: &str, node: &str, rest: &[&str]) -> Run {
    bootlet(&[&["renew", "--root", root, "--node-name", node], rest].concat())
}

/// Runs bootlet with `args` and extra environment, at -v so that logs are scanned too.
pub fn bootlet_env(args: &[&str], env: &[(&str, &str)]) -> Run {
    run_bootlet(&[&["-v"][..], args].concat(), args, env, &[])
}

/// Runs bootlet as an operator would, without `-v` (what the default verbosity prints), with
/// extra environment.
pub fn bootlet_plain(args: &[&str], env: &[(&str, &str)]) -> Run {
    run_bootlet(args, args, env, &["NO_COLOR"])
}

/// Runs the binary with `argv` (recorded as `args`), no inherited token or Krustlet directory (nor
/// the variables in `unset`), stdin closed, and `env` added.
fn run_bootlet(argv: &[&str], args: &[&str], env: &[(&str, &str)], unset: &[&str]) -> Run {
    let mut c = Command::new(bin());
    c.args(argv)
        .env_remove("BOOTLET_TOKEN")
        .env_remove("KRUSTLET_DATA_DIR")
        .stdin(Stdio::null());
    for k in unset {
        c.env_remove(k);
    }
    for (k, v) in env {
        c.env(k, v);
    }
    let secrets: Vec<&str> = env.iter().map(|(_, v)| *v).collect();
    record(&c.output().expect("run bootlet"), args, &secrets)
}

/// Runs bootlet with `stdin`.
pub fn bootlet_stdin(args: &[&str], stdin: &str) -> Run {
    use std::io::Write;
    let mut child = Command::new(bin())
        .arg("-v")
        .args(args)
        .env_remove("BOOTLET_TOKEN")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(stdin.as_bytes())
        .unwrap();
    record(&child.wait_with_output().unwrap(), args, &[stdin])
}

/// A sandbox running in this test process on its own runtime.
pub struct TestSandbox {
    pub rt: tokio::runtime::Runtime,
    pub sandbox: Option<Sandbox>,
    pub dir: tempfile::TempDir,
}

impl TestSandbox {
    pub fn start() -> TestSandbox {
        Self::with(SandboxOptions::default())
    }

    /// A sandbox that also approves serving CSRs (most node-side tests do not test approval).
    pub fn auto_serving() -> TestSandbox {
        Self::configured(|o| o.auto_approve_serving = true)
    }

    /// A sandbox with the default options changed by `change`.
    pub fn configured(change: impl FnOnce(&mut SandboxOptions)) -> TestSandbox {
        let mut options = SandboxOptions::default();
        change(&mut options);
        Self::with(options)
    }

    pub fn with(options: SandboxOptions) -> TestSandbox {
        let rt = client_runtime();
        let sandbox = rt
            .block_on(Sandbox::start(options))
            .expect("sandbox starts");
        let dir = tempfile::tempdir().unwrap();
        sandbox.write_files(dir.path()).unwrap();
        TestSandbox {
            rt,
            sandbox: Some(sandbox),
            dir,
        }
    }

    pub fn sb(&self) -> &Sandbox {
        self.sandbox.as_ref().unwrap()
    }

    pub fn url(&self) -> String {
        self.sb().url().to_string()
    }

    /// host:port.
    pub fn endpoint(&self) -> String {
        self.url().trim_start_matches("https://").to_string()
    }

    pub fn admin_conf(&self) -> PathBuf {
        self.dir.path().join("admin.conf")
    }

    pub fn ca_crt(&self) -> PathBuf {
        self.dir.path().join("ca.crt")
    }

    pub fn pin(&self) -> String {
        self.sb().ca_pin().unwrap().to_string()
    }

    /// Requests counted for users whose name contains `who`.
    pub fn requests_by(&self, who: &str) -> u64 {
        self.sb()
            .counters()
            .iter()
            .filter(|(u, _)| u.contains(who))
            .flat_map(|(_, v)| v.values())
            .sum()
    }

    /// CSRs whose requestor is `user`.
    pub fn csrs_of(&self, user: &str) -> Vec<serde_json::Value> {
        self.sb()
            .list("certificatesigningrequests", "")
            .into_iter()
            .filter(|c| c["spec"]["username"] == user)
            .collect()
    }

    /// Runs kubectl as the admin.
    pub fn kubectl(&self, args: &[&str]) -> Run {
        kubectl_with(&self.admin_conf(), self.dir.path(), args)
    }

    /// A node about to join with `token` (registered with both usages): its temp dir, a bootstrap
    /// kubeconfig in it, and a fresh root under it.
    pub fn token_node(&self, token: &str) -> (tempfile::TempDir, PathBuf, PathBuf) {
        self.add_token(token, None, &["authentication", "signing"]);
        let dir = tempfile::tempdir().unwrap();
        let bootstrap = self.bootstrap_kubeconfig(dir.path(), token);
        let root = dir.path().join("node");
        (dir, bootstrap, root)
    }

    /// Writes a bootstrap kubeconfig for `token` and this sandbox into `dir`.
    pub fn bootstrap_kubeconfig(&self, dir: &Path, token: &str) -> PathBuf {
        let t = bootlet::token::BootstrapToken::parse(token).unwrap();
        let text =
            bootlet::kubeconfig::render_bootstrap(&self.url(), self.sb().ca_pem().as_bytes(), &t)
                .unwrap();
        let p = dir.join("bootstrap.conf");
        std::fs::write(&p, text).unwrap();
        p
    }

    /// Puts a bootstrap-token Secret straight into the store.
    /// Registers `token` for authentication and signing, as `kubeadm token create` does.
    pub fn new_token(&self, token: &str) {
        self.add_token(token, None, &["authentication", "signing"]);
    }

    /// Joins a node by token discovery against this sandbox with the CA pin `pin`.
    pub fn token_join(&self, root: &str, node: &str, token: &str, pin: &str, rest: &[&str]) -> Run {
        let endpoint = self.endpoint();
        let how = [
            endpoint.as_str(),
            "--token",
            token,
            "--discovery-token-ca-cert-hash",
            pin,
        ];
        join_node(root, node, &[&how, rest].concat())
    }

    pub fn add_token(&self, token: &str, expiration: Option<&str>, usages: &[&str]) {
        let group = bootlet::token::DEFAULT_NODE_TOKEN_GROUP;
        self.add_token_for(token, expiration, usages, group);
    }

    /// Registers `token` with its Secret's `auth-extra-groups` set to `groups`.
    pub fn add_token_for(
        &self,
        token: &str,
        expiration: Option<&str>,
        usages: &[&str],
        groups: &str,
    ) {
        let t = bootlet::token::BootstrapToken::parse(token).unwrap();
        self.sb().put(
            "secrets",
            "kube-system",
            bootlet::sandbox::token_secret(&t, expiration, usages, groups),
        );
    }

    /// Approves every pending serving CSR through the API, as kubectl would, in the background.
    pub fn approve_serving_in_background(&self) {
        let conf = self.admin_conf();
        let dir = self.dir.path().to_path_buf();
        std::thread::spawn(move || {
            for _ in 0..600 {
                let out = kubectl_with(
                    &conf,
                    &dir,
                    &[
                        "get",
                        "csr",
                        "-o",
                        "jsonpath={range .items[*]}{.metadata.name} {.spec.signerName} {.status.conditions[0].type}{\"\\n\"}{end}",
                    ],
                );
                for line in out.stdout.lines() {
                    let parts: Vec<&str> = line.split_whitespace().collect();
                    if parts.len() == 2 && parts[1] == "kubernetes.io/kubelet-serving" {
                        kubectl_with(&conf, &dir, &["certificate", "approve", parts[0]]);
                    }
                }
                std::thread::sleep(std::time::Duration::from_millis(100));
            }
        });
    }
}

impl Drop for TestSandbox {
    fn drop(&mut self) {
        if let Some(s) = self.sandbox.take() {
            self.rt.block_on(s.shutdown());
        }
    }
}

/// Runs kubectl with a kubeconfig and a private discovery cache.
pub fn kubectl_with(kubeconfig: &Path, cache_parent: &Path, args: &[&str]) -> Run {
    let out = Command::new("kubectl")
        .arg("--kubeconfig")
        .arg(kubeconfig)
        .arg("--cache-dir")
        .arg(cache_parent.join("kube-cache"))
        .args(args)
        .env_remove("KUBECONFIG")
        .output()
        .expect("kubectl is installed");
    Run {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

/// The permission bits of a path.
pub fn mode(p: &Path) -> u32 {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(p).unwrap().permissions().mode() & 0o7777
}

/// Every entry under `dir`, recursively (directories too, not followed through links), with its
/// metadata. An entry that vanishes between listing and stat (a run renaming into place) is left out.
pub fn walk(dir: &Path) -> Vec<(PathBuf, std::fs::Metadata)> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(rd) = std::fs::read_dir(&d) else {
            continue;
        };
        for e in rd.flatten() {
            let p = e.path();
            let Ok(meta) = std::fs::symlink_metadata(&p) else {
                continue;
            };
            if meta.is_dir() {
                stack.push(p.clone());
            }
            out.push((p, meta));
        }
    }
    out
}

/// The decoded text of `secret`'s data key `k`.
pub fn secret_text(secret: &serde_json::Value, k: &str) -> String {
    use base64::Engine;
    let b64 = secret["data"][k].as_str().unwrap();
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(b64)
        .unwrap();
    String::from_utf8(bytes).unwrap()
}

/// All files and links under `dir` (relative paths), recursively.
pub fn files_under(dir: &Path) -> Vec<String> {
    let mut out: Vec<String> = walk(dir)
        .into_iter()
        .filter(|(_, m)| !m.is_dir())
        .map(|(p, _)| p.strip_prefix(dir).unwrap().display().to_string())
        .collect();
    out.sort();
    out
}

/// The temporary files a writer left under `dir` (there should be none once a run ended).
pub fn temp_files_under(dir: &Path) -> Vec<String> {
    let mut files = files_under(dir);
    files.retain(|f| f.contains(bootlet::files::TEMP_PREFIX));
    files
}

/// A CSR made by openssl (an independent maker) for a new P-256 key, as `dir/name.csr`.
pub fn openssl_req(dir: &Path, name: &str, subject: &str, sans: Option<&str>) -> PathBuf {
    let key = dir.join(format!("{name}.key"));
    let req = dir.join(format!("{name}.csr"));
    let mut c = Command::new("openssl");
    c.args(["req", "-new", "-newkey", "ec", "-pkeyopt"])
        .args(["ec_paramgen_curve:P-256", "-nodes", "-keyout", s(&key)])
        .args(["-subj", subject, "-multivalue-rdn", "-out", s(&req)]);
    if let Some(san) = sans {
        c.args(["-addext", &format!("subjectAltName={san}")]);
    }
    output_ok(&mut c);
    req
}

/// Who `kubeconfig` authenticates as, by `kubectl auth whoami`.
pub fn whoami(kubeconfig: &Path, cache_parent: &Path) -> Run {
    let jsonpath = "jsonpath={.status.userInfo.username}";
    kubectl_with(
        kubeconfig,
        cache_parent,
        &["auth", "whoami", "-o", jsonpath],
    )
}

/// Writes a discovery kubeconfig naming `server` with `ca_pem`.
pub fn discovery_file(dir: &Path, server: &str, ca_pem: &[u8]) -> PathBuf {
    use base64::Engine;
    let p = dir.join("discovery.conf");
    let text = format!(
        "apiVersion: v1\nkind: Config\nclusters:\n- name: kubernetes\n  cluster:\n    server: {server}\n    certificate-authority-data: {}\ncontexts:\n- name: c\n  context:\n    cluster: kubernetes\n    user: ''\ncurrent-context: c\n",
        base64::engine::general_purpose::STANDARD.encode(ca_pem)
    );
    std::fs::write(&p, text).unwrap();
    p
}

/// The kubeadm golden CA, as a discovery source for offline runs (server unreachable).
pub fn offline_discovery_file(dir: &Path) -> PathBuf {
    let ca = std::fs::read(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/fixtures/kubeadm-golden/ca.pem"
    ))
    .unwrap();
    discovery_file(dir, "https://127.0.0.1:1", &ca)
}

/// Verifies a PEM certificate file against a CA with openssl (an independent checker).
pub fn openssl_verify(ca: &Path, cert: &Path) -> bool {
    Command::new("openssl")
        .arg("verify")
        .arg("-CAfile")
        .arg(ca)
        .arg(cert)
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false)
}

/// Parses a certificate file's leaf.
pub fn cert_info(path: &Path) -> bootlet::pki::cert::CertInfo {
    let pem = std::fs::read(path).unwrap();
    let der = bootlet::pki::parse_certs_pem(&pem, "cert").unwrap();
    bootlet::pki::cert::CertInfo::parse(&der[0]).unwrap()
}

/// Identities for raw requests.
pub enum Who<'a> {
    Admin,
    Anonymous,
    Bearer(&'a str),
    /// A client certificate from the sandbox CA with this CN and organizations.
    Cert(&'a str, &'a [&'a str]),
}

impl TestSandbox {
    /// A ClusterAccess for `who`.
    pub fn access(&self, who: Who<'_>) -> bootlet::kubeconfig::ClusterAccess {
        use bootlet::kubeconfig::{ClusterAccess, Credentials};
        use bootlet::secret::SecretString;
        let credentials = match who {
            Who::Admin => {
                return bootlet::kubeconfig::parse(
                    self.sb().admin_kubeconfig().expose(),
                    self.dir.path(),
                    "admin",
                )
                .unwrap();
            }
            Who::Anonymous => Credentials::None,
            Who::Bearer(t) => Credentials::Token(SecretString::new(t.to_string())),
            Who::Cert(cn, orgs) => {
                let key = bootlet::pki::keys::PrivateKey::generate().unwrap();
                let orgs: Vec<String> = orgs.iter().map(|s| s.to_string()).collect();
                let cert = self
                    .sb()
                    .ca()
                    .issue(
                        key.pair(),
                        &bootlet::pki::ca::Subject {
                            cn,
                            orgs: &orgs,
                            dns: &[],
                            ips: &[],
                        },
                        bootlet::pki::ca::Usages::CLIENT,
                        time::Duration::hours(1),
                    )
                    .unwrap();
                Credentials::ClientCert {
                    cert_pem: cert,
                    key_pem: SecretString::new(key.pem().expose().clone()),
                }
            }
        };
        ClusterAccess {
            server: self.url(),
            ca_pem: Some(self.sb().ca_pem().as_bytes().to_vec()),
            insecure: false,
            tls_server_name: None,
            credentials,
        }
    }

    /// One request; returns status, headers and the body as JSON (Null if not JSON).
    pub fn raw(
        &self,
        who: Who<'_>,
        method: &str,
        path: &str,
        body: Option<(&str, Vec<u8>)>,
    ) -> (u16, http::HeaderMap, serde_json::Value) {
        self.raw_with(who, &[], method, path, body)
    }

    /// A JSON request with extra headers (impersonation).
    pub fn json_as(
        &self,
        who: Who<'_>,
        headers: &[(&str, &str)],
        method: &str,
        path: &str,
        body: Option<serde_json::Value>,
    ) -> (u16, serde_json::Value) {
        let (s, _, v) = self.raw_with(
            who,
            headers,
            method,
            path,
            body.map(|b| ("application/json", serde_json::to_vec(&b).unwrap())),
        );
        (s, v)
    }

    /// One request with extra headers.
    pub fn raw_with(
        &self,
        who: Who<'_>,
        headers: &[(&str, &str)],
        method: &str,
        path: &str,
        body: Option<(&str, Vec<u8>)>,
    ) -> (u16, http::HeaderMap, serde_json::Value) {
        let headers: Vec<(String, String)> = headers
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        let access = self.access(who);
        self.rt.block_on(async move {
            use http_body_util::BodyExt;
            let client = bootlet::cluster::kube_client(&access).unwrap();
            let mut req = http::Request::builder().method(method).uri(path);
            for (k, v) in &headers {
                req = req.header(k.as_str(), v.as_str());
            }
            let bytes = match body {
                Some((ct, b)) => {
                    req = req.header("content-type", ct);
                    b
                }
                None => Vec::new(),
            };
            let res = client
                .send(req.body(kube::client::Body::from(bytes)).unwrap())
                .await
                .expect("request");
            let status = res.status().as_u16();
            let headers = res.headers().clone();
            let bytes = res.into_body().collect().await.unwrap().to_bytes();
            (
                status,
                headers,
                serde_json::from_slice(&bytes).unwrap_or(serde_json::Value::Null),
            )
        })
    }

    /// A JSON request.
    pub fn json(
        &self,
        who: Who<'_>,
        method: &str,
        path: &str,
        body: Option<serde_json::Value>,
    ) -> (u16, serde_json::Value) {
        self.json_as(who, &[], method, path, body)
    }

    /// Reads watch events from `path` until `n` arrived or `timeout`, whichever first.
    pub fn watch_events(
        &self,
        who: Who<'_>,
        path: &str,
        n: usize,
        timeout: Duration,
    ) -> Vec<serde_json::Value> {
        let access = self.access(who);
        self.rt.block_on(async move {
            use http_body_util::BodyExt;
            let client = bootlet::cluster::kube_client(&access).unwrap();
            let req = http::Request::get(path)
                .body(kube::client::Body::empty())
                .unwrap();
            let res = client.send(req).await.expect("watch");
            let mut body = res.into_body();
            let mut buf = Vec::new();
            let mut events = Vec::new();
            let deadline = tokio::time::Instant::now() + timeout;
            while events.len() < n {
                let Ok(Some(Ok(frame))) = tokio::time::timeout_at(deadline, body.frame()).await
                else {
                    break;
                };
                if let Some(d) = frame.data_ref() {
                    buf.extend_from_slice(d);
                }
                while let Some(i) = buf.iter().position(|b| *b == b'\n') {
                    let line: Vec<u8> = buf.drain(..=i).collect();
                    events.push(serde_json::from_slice(&line).unwrap());
                }
            }
            events
        })
    }
}

use std::time::Duration;

/// A CSR object for `key` as `cn`/`orgs` with `signer` and `usages`.
pub fn csr_json(
    name: &str,
    cn: &str,
    orgs: &[&str],
    dns: &[String],
    signer: &str,
    usages: &[&str],
    expiration: Option<i64>,
) -> serde_json::Value {
    use base64::Engine;
    let key = bootlet::pki::keys::PrivateKey::generate().unwrap();
    let pem = bootlet::pki::csr::build(&key, cn, orgs, dns, &[]).unwrap();
    let mut v = serde_json::json!({"apiVersion": "certificates.k8s.io/v1", "kind": "CertificateSigningRequest", "metadata": {"name": name},
        "spec": {"request": base64::engine::general_purpose::STANDARD.encode(pem), "signerName": signer, "usages": usages}});
    if let Some(e) = expiration {
        v["spec"]["expirationSeconds"] = serde_json::json!(e);
    }
    v
}

/// Polls `f` until it returns Some, up to `secs`.
pub fn eventually<T>(secs: u64, mut f: impl FnMut() -> Option<T>) -> T {
    let end = std::time::Instant::now() + Duration::from_secs(secs);
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(
            std::time::Instant::now() < end,
            "condition not met within {secs}s"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}
