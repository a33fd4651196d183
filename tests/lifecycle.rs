//! A node's credential life after the join (issue 10): client-only joins, renew at the rotation
//! deadline or forced (as the node, both layouts), a denied renewal, the fallback to bootstrap
//! credentials when the client certificate has expired, SIGKILL during renew, `renew --watch` on
//! 2-minute certificates, `certs check-expiration` against openssl, and reset by the journal.

mod common;

use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use bootlet::sandbox::SandboxOptions;
use common::*;

fn sandbox(auto_serving: bool, signing: Duration) -> TestSandbox {
    TestSandbox::with(SandboxOptions {
        auto_approve_serving: auto_serving,
        signing_duration: signing,
        ..Default::default()
    })
}

const YEAR: Duration = Duration::from_secs(365 * 24 * 3600);

/// A joined node: its work dir, root, and the bootstrap kubeconfig it joined with.
struct Node {
    dir: tempfile::TempDir,
    root: PathBuf,
    bootstrap: PathBuf,
    name: String,
}

/// A node joined with `token` as `name` to a fresh sandbox signing for a year.
fn joined_year(token: &str, name: &str) -> (TestSandbox, Node) {
    let sb = sandbox(true, YEAR);
    let (node, run) = join(&sb, token, name, &[]);
    run.ok();
    (sb, node)
}

fn join(sb: &TestSandbox, token: &str, name: &str, extra: &[&str]) -> (Node, Run) {
    let (dir, bootstrap, root) = sb.token_node(token);
    let mut args = vec![
        "join",
        "--root",
        s(&root),
        "--node-name",
        name,
        "--bootstrap-kubeconfig",
        s(&bootstrap),
        "--approval-timeout",
        "30s",
    ];
    args.extend_from_slice(extra);
    let run = bootlet(&args);
    (
        Node {
            dir,
            root,
            bootstrap,
            name: name.into(),
        },
        run,
    )
}

impl Node {
    fn pki(&self) -> PathBuf {
        self.root.join("var/lib/kubelet/pki")
    }
    fn current(&self, which: &str) -> PathBuf {
        self.pki().join(format!("kubelet-{which}-current.pem"))
    }
    fn target(&self, which: &str) -> String {
        std::fs::read_link(self.current(which))
            .unwrap()
            .display()
            .to_string()
    }
    fn spki(&self, which: &str) -> Vec<u8> {
        cert_info(&self.current(which)).spki
    }
    fn renew(&self, extra: &[&str]) -> Run {
        let mut args = vec![
            "renew",
            "--root",
            s(&self.root),
            "--approval-timeout",
            "30s",
        ];
        args.extend_from_slice(extra);
        bootlet(&args)
    }
    fn whoami(&self) -> Run {
        whoami(
            &self.root.join("etc/kubernetes/kubelet.conf"),
            self.dir.path(),
        )
    }
    /// Both current pairs: key matches certificate, chains to the CA (openssl), right CN.
    fn assert_usable(&self, sb: &TestSandbox) {
        for which in ["client", "server"] {
            let p = self.current(which);
            let text = std::fs::read_to_string(&p).unwrap();
            let key = bootlet::pki::keys::PrivateKey::from_pem(
                &bootlet::pki::keys::private_key_block(&text).expect("a key in the pair"),
                which,
            )
            .unwrap();
            let info = cert_info(&p);
            assert_eq!(
                info.spki,
                key.spki_der(),
                "{which}: key matches certificate"
            );
            assert_eq!(info.cn(), format!("system:node:{}", self.name));
            assert!(openssl_verify(&sb.ca_crt(), &p), "{which} chains to the CA");
            assert_eq!(mode(&p), 0o600);
        }
        let who = self.whoami();
        assert_eq!(
            who.stdout,
            format!("system:node:{}", self.name),
            "{}",
            who.stderr
        );
    }
}

/// (path, inode, mtime) of every file and link under `dir`.
fn inodes(dir: &Path) -> Vec<(String, u64, i64)> {
    files_under(dir)
        .into_iter()
        .map(|f| {
            let m = std::fs::symlink_metadata(dir.join(&f)).unwrap();
            (f, m.ino(), m.mtime_nsec() + m.mtime() * 1_000_000_000)
        })
        .collect()
}

#[test]
fn a_client_only_join_sends_no_serving_csr_and_a_later_join_adds_it() {
    let sb = sandbox(false, YEAR);
    let (node, run) = join(
        &sb,
        "cli001.0123456789abcdef",
        "client-only",
        &["--skip-phases", "serving-csr"],
    );
    run.ok();
    assert_has(&run.stdout, "[serving-csr] skipped: in --skip-phases");
    assert_has(&run.stdout, "This node has joined the cluster");
    assert!(node.current("client").exists());
    assert!(!node.current("server").exists(), "no serving pair");
    assert!(
        sb.csrs_of("system:node:client-only").is_empty(),
        "no serving CSR was sent"
    );
    assert_eq!(node.whoami().stdout, "system:node:client-only");
    // Idempotent as such.
    let again = bootlet(&[
        "join",
        "--root",
        s(&node.root),
        "--skip-phases",
        "serving-csr",
    ]);
    again.ok();
    assert_has(&again.stdout, "[write-files] already done");

    // The same from a config file key, for another node.
    let (dir, bootstrap, root) = sb.token_node("cli002.0123456789abcdef");
    let conf = write_file(
        dir.path(),
        "bootlet.toml",
        "skip-phases = [\"serving-csr\"]\nnode-name = \"client-only-2\"\n",
    );
    bootlet(&[
        "join",
        "--config",
        s(&conf),
        "--root",
        s(&root),
        "--bootstrap-kubeconfig",
        s(&bootstrap),
    ])
    .ok();
    assert!(sb.csrs_of("system:node:client-only-2").is_empty());
    assert!(
        !root
            .join("var/lib/kubelet/pki/kubelet-server-current.pem")
            .exists()
    );

    // join again without the skip: the serving certificate is added, as the node.
    sb.approve_serving_in_background();
    let add = bootlet(&["join", "--root", s(&node.root), "--approval-timeout", "30s"]);
    add.ok();
    assert_eq!(
        sb.csrs_of("system:node:client-only").len(),
        1,
        "{}",
        add.stdout
    );
    node.assert_usable(&sb);
}

#[test]
fn renew_before_the_deadline_changes_nothing_and_sends_nothing() {
    // A node whose rotation is bootlet's (no kubelet configuration handed off); with one, the
    // kubelet rotates and renew stands aside (tests/kubelet.rs).
    let sb = sandbox(true, YEAR);
    let (node, run) = join(
        &sb,
        "ren001.0123456789abcdef",
        "calm-1",
        &["--skip-phases", "kubelet-config"],
    );
    run.ok();
    let before = inodes(&node.root);
    let requests = sb.requests_by("");
    let plan = bootlet(&["plan", "renew", "--root", s(&node.root)]);
    plan.ok();
    assert_has(&plan.stdout, "[client-csr] done: valid until");
    assert!(plan.stdout.contains("rotation due at"), "{}", plan.stdout);
    let run = node.renew(&[]);
    run.ok();
    assert!(run.stdout.contains("Nothing was due"), "{}", run.stdout);
    assert_eq!(
        inodes(&node.root),
        before,
        "no file was touched (inode and mtime)"
    );
    assert_eq!(sb.requests_by(""), requests, "no request was sent");
}

#[test]
fn a_forced_renew_rotates_both_certificates_as_the_node_in_both_layouts() {
    let (sb, node) = joined_year("ren002.0123456789abcdef", "rot-1");
    let (old_client, old_server) = (node.target("client"), node.target("server"));
    let (old_ck, old_sk) = (node.spki("client"), node.spki("server"));
    let bootstrap_csrs = sb.csrs_of("system:bootstrap:ren002").len();
    let run = node.renew(&["--force"]);
    run.ok();
    assert_has(&run.stdout, "Renewed the client and serving certificates");
    assert_ne!(
        node.target("client"),
        old_client,
        "the link points at a new file"
    );
    assert_ne!(node.target("server"), old_server);
    assert!(node.pki().join(&old_client).exists(), "the old pair stays");
    assert_ne!(node.spki("client"), old_ck, "a new key per rotation");
    assert_ne!(node.spki("server"), old_sk);
    node.assert_usable(&sb);
    let by_node = sb.csrs_of("system:node:rot-1");
    let client_renewal: Vec<_> = by_node
        .iter()
        .filter(|c| c["spec"]["signerName"] == "kubernetes.io/kube-apiserver-client-kubelet")
        .collect();
    assert_eq!(
        client_renewal.len(),
        1,
        "the client CSR was sent by the node itself"
    );
    assert_eq!(
        client_renewal[0]["status"]["conditions"][0]["reason"], "AutoApproved",
        "approved through selfnodeclient"
    );
    assert_eq!(
        sb.csrs_of("system:bootstrap:ren002").len(),
        bootstrap_csrs,
        "no bootstrap token was used"
    );
    assert!(
        !node
            .root
            .join("var/lib/bootlet/staging/client.key")
            .exists()
    );

    // Krustlet: the kubeconfig's embedded certificate and krustlet.crt/.key change.
    let (dir, bootstrap, root) = sb.token_node("ren003.0123456789abcdef");
    let data = "/home/k/.krustlet";
    join_node(
        s(&root),
        "rot-k",
        &[
            "--layout",
            "krustlet",
            "--krustlet-data-dir",
            data,
            "--bootstrap-kubeconfig",
            s(&bootstrap),
        ],
    )
    .ok();
    let config = root.join("home/k/.krustlet/config");
    let kc_before = std::fs::read(config.join("kubeconfig")).unwrap();
    let crt_before = std::fs::read(config.join("krustlet.crt")).unwrap();
    let key_before = std::fs::read(config.join("krustlet.key")).unwrap();
    bootlet(&[
        "renew",
        "--layout",
        "krustlet",
        "--krustlet-data-dir",
        data,
        "--root",
        s(&root),
        "--force",
    ])
    .ok();
    assert_ne!(std::fs::read(config.join("kubeconfig")).unwrap(), kc_before);
    assert_ne!(
        std::fs::read(config.join("krustlet.crt")).unwrap(),
        crt_before
    );
    assert_ne!(
        std::fs::read(config.join("krustlet.key")).unwrap(),
        key_before
    );
    assert_eq!(mode(&config.join("krustlet.key")), 0o600);
    assert!(openssl_verify(&sb.ca_crt(), &config.join("krustlet.crt")));
    let who = whoami(&config.join("kubeconfig"), dir.path());
    assert_eq!(who.stdout, "system:node:rot-k", "{}", who.stderr);
    assert_eq!(
        sb.csrs_of("system:node:rot-k").len(),
        3,
        "serving at join, client and serving at renew"
    );
}

#[test]
fn a_denied_renewal_keeps_the_old_certificate() {
    let sb = sandbox(false, YEAR);
    let (dir, bootstrap, root) = sb.token_node("deny01.0123456789abcdef");
    let node = Node {
        dir,
        root,
        bootstrap,
        name: "deny-1".into(),
    };
    let args = [
        "join",
        "--root",
        s(&node.root),
        "--node-name",
        "deny-1",
        "--bootstrap-kubeconfig",
        s(&node.bootstrap),
        "--approval-timeout",
        "30s",
    ];
    let child = spawn_bootlet(&args);
    let first = eventually(20, || sb.csrs_of("system:node:deny-1").first().cloned());
    sb.kubectl(&[
        "certificate",
        "approve",
        first["metadata"]["name"].as_str().unwrap(),
    ])
    .ok();
    wait_ok(child);
    let pki_before = inodes(&node.pki());
    let conf_before = std::fs::read(node.root.join("etc/kubernetes/kubelet.conf")).unwrap();
    let child = spawn_bootlet(&[
        "renew",
        "--root",
        s(&node.root),
        "--force",
        "--skip-phases",
        "client-csr",
        "--approval-timeout",
        "30s",
    ]);
    let renewal = eventually(20, || {
        sb.csrs_of("system:node:deny-1")
            .into_iter()
            .find(|c| c["metadata"]["name"] != first["metadata"]["name"])
    });
    sb.kubectl(&[
        "certificate",
        "deny",
        renewal["metadata"]["name"].as_str().unwrap(),
    ])
    .ok();
    let run = wait(child);
    assert_eq!(run.code, 6, "{}", run.all());
    assert_has(&run.error_line(), "was denied");
    assert_eq!(
        inodes(&node.pki()),
        pki_before,
        "the installed pairs and links are untouched"
    );
    assert_eq!(
        std::fs::read(node.root.join("etc/kubernetes/kubelet.conf")).unwrap(),
        conf_before
    );
    node.assert_usable(&sb);
}

#[test]
fn an_expired_client_certificate_falls_back_to_the_bootstrap_kubeconfig_or_says_how_to_rejoin() {
    let sb = sandbox(true, Duration::from_secs(8));
    let (node, run) = join(&sb, "expd01.0123456789abcdef", "late-1", &[]);
    run.ok();
    let not_after = cert_info(&node.current("client")).not_after;
    std::thread::sleep(Duration::from_secs(
        (not_after - bootlet::pki::cert::now_unix() + 1).max(0) as u64,
    ));
    let check = bootlet(&["certs", "check-expiration", "--root", s(&node.root)]);
    check.fails_with(5, "the client certificate");
    assert!(check.stdout.contains("<invalid>"), "{}", check.stdout);
    assert_has(&check.all(), "expired at");
    assert_lacks(&check.all(), "clock");

    let without = node.renew(&[]);
    without.fails_with(5, "no bootstrap kubeconfig to fall back to");
    assert_has(
        &without.error_line(),
        "the node's client certificate is not usable (the certificate expired at",
    );
    assert_has(&without.error_line(), "--bootstrap-kubeconfig");
    assert_has(&without.error_line(), "bootlet reset");

    let with = node.renew(&["--bootstrap-kubeconfig", s(&node.bootstrap)]);
    with.ok();
    assert_has(
        &with.stderr,
        "asking with the bootstrap credentials instead",
    );
    let by_token: Vec<_> = sb
        .csrs_of("system:bootstrap:expd01")
        .into_iter()
        .filter(|c| c["spec"]["signerName"] == "kubernetes.io/kube-apiserver-client-kubelet")
        .collect();
    assert_eq!(by_token.len(), 2, "the join's and the fallback renewal's");
    assert_eq!(node.whoami().stdout, "system:node:late-1");
}

#[test]
fn sigkill_during_renew_always_leaves_a_usable_node() {
    let (sb, node) = joined_year("kill01.0123456789abcdef", "kill-1");
    let kills = if std::env::var_os("BOOTLET_LONG").is_some() {
        60
    } else {
        12
    };
    let mut seed = std::process::id() as u64 ^ bootlet::pki::cert::now_unix() as u64;
    let mut killed_while_running = 0;
    for _ in 0..kills {
        seed = seed
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        let delay = Duration::from_micros((seed >> 33) % 60_000);
        let mut child = std::process::Command::new(bin())
            .args(["renew", "--root", s(&node.root), "--force"])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        std::thread::sleep(delay);
        if child.try_wait().unwrap().is_none() {
            killed_while_running += 1;
        }
        let _ = child.kill();
        let _ = child.wait();
        node.assert_usable(&sb);
    }
    assert!(
        killed_while_running > kills / 3,
        "most kills hit a running renew ({killed_while_running})"
    );
    let finish = node.renew(&[]);
    finish.ok();
    node.assert_usable(&sb);
    assert!(
        files_under(&node.root.join("var/lib/bootlet/staging")).is_empty(),
        "nothing left staged"
    );
}

#[test]
fn renew_watch_renews_two_minute_certificates_and_stops_on_sigterm() {
    let sb = sandbox(true, Duration::from_secs(120));
    // Without a kubelet configuration handed off, bootlet owns rotation (with one, the kubelet
    // does, and the watch only repairs what expired: tests/kubelet.rs).
    let (node, run) = join(
        &sb,
        "watch1.0123456789abcdef",
        "watch-1",
        &["--skip-phases", "kubelet-config"],
    );
    run.ok();
    let mut child = std::process::Command::new(bin())
        .args(["renew", "--watch", "--root", s(&node.root)])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut targets = vec![node.target("client")];
    let started = Instant::now();
    while targets.len() < 3 && started.elapsed() < Duration::from_secs(240) {
        std::thread::sleep(Duration::from_millis(200));
        if let Ok(t) = std::fs::read_link(node.current("client")) {
            let t = t.display().to_string();
            if targets.last() != Some(&t) {
                targets.push(t);
                node.assert_usable(&sb);
            }
        }
    }
    assert!(
        targets.len() >= 3,
        "renewed at least twice in {:?}: {targets:?}",
        started.elapsed()
    );
    rustix::process::kill_process(
        rustix::process::Pid::from_child(&child),
        rustix::process::Signal::TERM,
    )
    .unwrap();
    let stopped = Instant::now();
    let status = loop {
        if let Some(st) = child.try_wait().unwrap() {
            break st;
        }
        assert!(
            stopped.elapsed() < Duration::from_secs(5),
            "stops promptly on SIGTERM"
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    let out = child.wait_with_output().unwrap();
    let run = Run {
        code: status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    };
    leak_scan(&run, &["--root", s(&node.root)], &[]);
    assert_eq!(run.code, 0, "{}", run.all());
    assert_has(&run.stdout, "[renew] Stopped (SIGTERM)");
    assert_has(&run.stdout, "Next rotation due at");
    assert!(
        !run.stdout.contains("already done"),
        "one line per action, no status noise"
    );
    node.assert_usable(&sb);
}

/// `notAfter=Dec  1 09:29:03 2026 GMT` as unix seconds.
fn openssl_not_after(pem: &Path) -> i64 {
    let out = std::process::Command::new("openssl")
        .args(["x509", "-enddate", "-noout", "-in"])
        .arg(pem)
        .output()
        .unwrap();
    let text = String::from_utf8(out.stdout).unwrap();
    let date = text.trim().strip_prefix("notAfter=").unwrap();
    let fmt = time::format_description::parse_borrowed::<2>(
        "[month repr:short] [day padding:space] [hour]:[minute]:[second] [year] GMT",
    )
    .unwrap();
    time::PrimitiveDateTime::parse(date, &fmt)
        .unwrap()
        .assume_utc()
        .unix_timestamp()
}

#[test]
fn check_expiration_reports_what_openssl_reads() {
    let (_sb, node) = joined_year("chex01.0123456789abcdef", "chex-1");
    let table = bootlet(&["certs", "check-expiration", "--root", s(&node.root)]);
    table.ok();
    assert!(table.stdout.starts_with("CERT "), "{}", table.stdout);
    assert!(
        table.stdout.contains("364d") || table.stdout.contains("365d"),
        "{}",
        table.stdout
    );
    let json = bootlet(&[
        "certs",
        "check-expiration",
        "--root",
        s(&node.root),
        "-o",
        "json",
    ]);
    json.ok();
    let v: serde_json::Value = serde_json::from_str(&json.stdout).unwrap();
    let rows = v["credentials"].as_array().unwrap();
    assert_eq!(rows.len(), 3, "client, serving, ca");
    for (name, which) in [("client", "client"), ("serving", "server")] {
        let row = rows.iter().find(|r| r["name"] == name).unwrap();
        let at = time::OffsetDateTime::parse(
            row["not_after"].as_str().unwrap(),
            &time::format_description::well_known::Rfc3339,
        )
        .unwrap()
        .unix_timestamp();
        assert_eq!(at, openssl_not_after(&node.current(which)), "{name}");
        assert_eq!(row["verifies"], true);
        assert!(row["residual_seconds"].as_i64().unwrap() > 360 * 86_400);
        let due = time::OffsetDateTime::parse(
            row["rotation_deadline"].as_str().unwrap(),
            &time::format_description::well_known::Rfc3339,
        )
        .unwrap()
        .unix_timestamp();
        let info = cert_info(&node.current(which));
        let lifetime = info.not_after - info.not_before;
        assert!(
            due >= info.not_before + lifetime * 7 / 10
                && due <= info.not_before + lifetime * 9 / 10
        );
    }
    assert_eq!(
        rows.iter().find(|r| r["name"] == "ca").unwrap()["subject"],
        "CN=kubernetes"
    );
}

#[test]
fn reset_removes_exactly_the_journals_files_and_then_another_cluster_can_join() {
    let a = sandbox(true, YEAR);
    let (node, run) = join(&a, "rset01.0123456789abcdef", "reset-1", &[]);
    run.ok();
    node.renew(&["--force"]).ok();
    // Files bootlet did not write, in its directories.
    let foreign = [
        node.root.join("etc/kubernetes/manifests/kube-proxy.yaml"),
        node.root.join("var/lib/kubelet/kubeadm-flags.env"),
        node.pki().join("kubelet.crt"),
    ];
    for f in &foreign {
        std::fs::create_dir_all(f.parent().unwrap()).unwrap();
        std::fs::write(f, "not bootlet's").unwrap();
    }
    let journal: toml::Table = toml::from_str(
        &std::fs::read_to_string(node.root.join("var/lib/bootlet/journal.toml")).unwrap(),
    )
    .unwrap();
    let recorded: Vec<String> = journal["files"]
        .as_table()
        .unwrap()
        .keys()
        .cloned()
        .collect();
    assert!(recorded.len() >= 8, "{recorded:?}");
    let all_before = files_under(&node.root);

    let dry = bootlet(&["reset", "--root", s(&node.root), "--dry-run"]);
    dry.ok();
    for p in &recorded {
        assert!(
            dry.stdout.contains(&format!("Would remove {p}")),
            "{p}\n{}",
            dry.stdout
        );
    }
    assert_eq!(
        files_under(&node.root),
        all_before,
        "the dry-run removed nothing"
    );
    let refused = std::process::Command::new(bin())
        .args(["reset", "--root", s(&node.root)])
        .stdin(std::process::Stdio::null())
        .output()
        .unwrap();
    assert_eq!(refused.status.code(), Some(2));
    assert_eq!(
        files_under(&node.root),
        all_before,
        "not confirmed: nothing removed"
    );

    let run = bootlet(&["reset", "--root", s(&node.root), "--force"]);
    run.ok();
    for p in &recorded {
        let host = node.root.join(p.trim_start_matches('/'));
        assert!(host.symlink_metadata().is_err(), "{p} removed");
    }
    for f in &foreign {
        assert_eq!(
            std::fs::read_to_string(f).unwrap(),
            "not bootlet's",
            "{f:?} kept"
        );
    }
    assert!(
        !node.root.join("var/lib/bootlet").exists(),
        "the state directory is gone"
    );
    let left: Vec<String> = files_under(&node.root);
    assert_eq!(
        left.len(),
        foreign.len(),
        "exactly the foreign files are left: {left:?}"
    );
    bootlet(&["reset", "--root", s(&node.root), "--force"]).ok();

    // Another cluster now joins this root.
    let b = sandbox(true, YEAR);
    let bootstrap_b = b.bootstrap_kubeconfig(node.dir.path(), "rset02.0123456789abcdef");
    b.add_token(
        "rset02.0123456789abcdef",
        None,
        &["authentication", "signing"],
    );
    bootstrap_join(s(&node.root), "reset-1", &bootstrap_b, &[]).ok();
    node.assert_usable(&b);
}

#[test]
fn reset_leaves_a_file_that_changed_since_bootlet_wrote_it() {
    let (_sb, node) = joined_year("rset03.0123456789abcdef", "reset-2");
    let conf = node.root.join("etc/kubernetes/kubelet.conf");
    let mut edited = std::fs::read_to_string(&conf).unwrap();
    edited.push_str("# edited by an operator\n");
    std::fs::write(&conf, &edited).unwrap();
    let run = bootlet(&["reset", "--root", s(&node.root), "--force"]);
    run.ok();
    assert_has(
        &run.stderr,
        "left /etc/kubernetes/kubelet.conf alone: it changed since bootlet wrote it",
    );
    assert_eq!(std::fs::read_to_string(&conf).unwrap(), edited);
    assert!(!node.current("client").exists());
}

fn spawn_bootlet(args: &[&str]) -> (std::process::Child, Vec<String>) {
    let child = std::process::Command::new(bin())
        .arg("-v")
        .args(args)
        .env_remove("BOOTLET_TOKEN")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    (child, args.iter().map(|a| a.to_string()).collect())
}

fn wait((child, args): (std::process::Child, Vec<String>)) -> Run {
    let out = child.wait_with_output().unwrap();
    let run = Run {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    };
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    leak_scan(&run, &args, &[]);
    run
}

fn wait_ok(child: (std::process::Child, Vec<String>)) {
    wait(child).ok();
}

#[test]
fn the_systemd_units_verify() {
    let Ok(probe) = std::process::Command::new("systemd-analyze")
        .arg("--version")
        .output()
    else {
        eprintln!("skipped: systemd-analyze is not installed");
        return;
    };
    assert!(probe.status.success());
    let src = Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/contrib/systemd"));
    let dir = tempfile::tempdir().unwrap();
    let mut units = Vec::new();
    let mut drop_ins = 0;
    for f in files_under(src) {
        let text = std::fs::read_to_string(src.join(&f)).unwrap();
        if f.ends_with(".conf") {
            // A kubelet.service drop-in: verified merged into a stand-in kubelet unit, and
            // checked to read the flags file kubelet-config writes, by its variable.
            assert!(
                text.contains("EnvironmentFile=-/var/lib/kubelet/bootlet-flags.env")
                    && text.contains("$KUBELET_BOOTLET_ARGS"),
                "{text}"
            );
            let unit = format!(
                "[Unit]\nDescription=stand-in kubelet\n{}",
                text.replace("/usr/bin/kubelet", "/bin/true")
            );
            std::fs::write(dir.path().join("kubelet.service"), unit).unwrap();
            units.push(dir.path().join("kubelet.service"));
            drop_ins += 1;
            continue;
        }
        let text = text.replace("/usr/local/bin/bootlet", s(&bin()));
        assert!(
            text.contains(s(&bin())) || f.ends_with(".timer"),
            "{f} runs bootlet"
        );
        std::fs::write(dir.path().join(&f), text).unwrap();
        units.push(dir.path().join(&f));
    }
    assert_eq!(
        (units.len(), drop_ins),
        (4, 1),
        "the watch service, the one-shot service with its timer, the kubelet drop-in"
    );
    let out = std::process::Command::new("systemd-analyze")
        .args(["verify", "--man=no"])
        .args(&units)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success() && stderr.trim().is_empty(),
        "systemd-analyze verify:\n{stderr}"
    );
}
