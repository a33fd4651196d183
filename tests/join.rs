//! The join flow end to end against a sandbox started by each test, over HTTPS, with kubectl as
//! an independent client: one-shot, split roles, token discovery, both layouts, the failure
//! scenarios, resume after a kill while waiting for approval, and idempotence.

mod common;

use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::time::Duration;

use common::*;

/// Checks a kubelet-layout node: files, modes, certificates (key match, CA chain with openssl,
/// CN/O/SANs/usages), bootstrap credential gone, kubectl reaches the sandbox as the node.
fn assert_kubelet_node(sb: &TestSandbox, root: &Path, node: &str) {
    let pki = root.join("var/lib/kubelet/pki");
    let conf = root.join("etc/kubernetes/kubelet.conf");
    assert_eq!(mode(&conf), 0o600);
    assert_eq!(mode(&pki), 0o700);
    assert_eq!(mode(&root.join("etc/kubernetes")), 0o700);
    assert_eq!(
        std::fs::read(root.join("etc/kubernetes/pki/ca.crt")).unwrap(),
        sb.sb().ca_pem().as_bytes()
    );
    for (link, usage_client) in [
        ("kubelet-client-current.pem", true),
        ("kubelet-server-current.pem", false),
    ] {
        let link_path = pki.join(link);
        let target = std::fs::read_link(&link_path).expect("a symlink");
        assert!(
            target.to_str().unwrap().starts_with(&link[..14]),
            "{target:?}"
        );
        assert_eq!(mode(&link_path), 0o600, "{link} target mode");
        assert!(
            openssl_verify(&sb.ca_crt(), &link_path),
            "openssl verify {link}"
        );
        let text = std::fs::read_to_string(&link_path).unwrap();
        let key = bootlet::pki::keys::PrivateKey::from_pem(
            &bootlet::pki::keys::private_key_block(&text).unwrap(),
            link,
        )
        .unwrap();
        let info = cert_info(&link_path);
        assert_eq!(info.spki, key.spki_der(), "{link}: key matches certificate");
        assert_eq!(info.cn(), format!("system:node:{node}"));
        assert_eq!(info.organizations, ["system:nodes"]);
        assert_eq!(info.client_auth, usage_client);
        assert_eq!(info.server_auth, !usage_client);
        if !usage_client {
            assert_eq!(info.dns_names, [node]);
            assert!(!info.ip_addresses.is_empty());
        }
    }
    assert!(
        !root.join("etc/kubernetes/bootstrap-kubelet.conf").exists(),
        "bootstrap kubeconfig removed"
    );
    assert!(
        !root.join("var/lib/bootlet/bootstrap-token").exists(),
        "token file removed"
    );
    let who = whoami(&conf, root);
    assert_eq!(who.stdout, format!("system:node:{node}"), "{}", who.stderr);
}

#[test]
fn one_shot_join_with_the_admin_kubeconfig_and_kubectl_approving_the_serving_csr() {
    let sb = TestSandbox::start();
    let root = tempfile::tempdir().unwrap();
    sb.approve_serving_in_background();
    let run = join_node(
        s(root.path()),
        "worker-1",
        &[
            "--admin-kubeconfig",
            s(&sb.admin_conf()),
            "--approval-timeout",
            "30s",
            "--keep-token",
        ],
    );
    run.ok();
    assert!(
        run.stdout
            .contains("run `kubectl certificate approve node-csr-"),
        "prints the approve hint"
    );
    assert!(
        run.stdout
            .contains("This node has joined the cluster as system:node:worker-1")
    );
    assert_kubelet_node(&sb, root.path(), "worker-1");
    // The token Secret exists as kubeadm makes it (kept: --keep-token; tests/cluster_side.rs shows
    // that without it the one-shot join deletes its own token).
    let secrets = sb.kubectl(&[
        "get",
        "secret",
        "-n",
        "kube-system",
        "-o",
        "jsonpath={.items[*].type}",
    ]);
    assert!(secrets.stdout.contains("bootstrap.kubernetes.io/token"));
}

#[test]
fn a_second_join_changes_nothing_and_sends_no_mutating_request() {
    let sb = TestSandbox::auto_serving();
    let root = tempfile::tempdir().unwrap();
    let admin = sb.admin_conf();
    let args = [
        "join",
        "--admin-kubeconfig",
        s(&admin),
        "--root",
        s(root.path()),
        "--node-name",
        "idem",
    ];
    bootlet(&args).ok();
    let snapshot = |p: &Path| -> Vec<(String, u64, i64, i64)> {
        files_under(p)
            .into_iter()
            .filter(|f| !f.ends_with("/lock"))
            .map(|f| {
                let m = std::fs::symlink_metadata(p.join(&f)).unwrap();
                (f, m.ino(), m.mtime(), m.mtime_nsec())
            })
            .collect()
    };
    let before = snapshot(root.path());
    sb.sb().reset_counters();
    let again = bootlet(&args);
    again.ok();
    for phase in JOIN_PHASES {
        assert!(
            again.stdout.contains(&format!("[{phase}] already done")),
            "{phase} not reported done:\n{}",
            again.stdout
        );
    }
    assert_eq!(snapshot(root.path()), before, "no file was rewritten");
    let counters = sb.sb().counters();
    for (user, verbs) in &counters {
        for verb in ["create", "update", "patch", "delete"] {
            assert!(
                !verbs.contains_key(verb),
                "{user} sent {verb} on the second run: {counters:?}"
            );
        }
    }
}

#[test]
fn split_roles_the_admin_prepares_and_the_node_joins_with_only_the_bootstrap_kubeconfig() {
    let sb = TestSandbox::auto_serving();
    let admin = tempfile::tempdir().unwrap();
    for phase in ["token", "secret", "kubeconfig"] {
        bootlet(&[
            "phase",
            phase,
            "--root",
            s(admin.path()),
            "--admin-kubeconfig",
            s(&sb.admin_conf()),
        ])
        .ok();
    }
    let bootstrap = admin.path().join("etc/kubernetes/bootstrap-kubelet.conf");
    assert_eq!(mode(&bootstrap), 0o600);
    let node = tempfile::tempdir().unwrap();
    sb.sb().reset_counters();
    let run = bootstrap_join(s(node.path()), "edge-7", &bootstrap, &[]);
    run.ok();
    assert_has(&run.stdout, "[token] already done");
    assert!(run.stdout.contains("[secret] skipped"));
    // API economy: create + watch for each certificate, and the node's read of the cluster's
    // kubelet configuration (kubeadm's kubelet-config ConfigMap), nothing else.
    let c = sb.sb().counters();
    let node_side = sb.requests_by("system:bootstrap:")
        + sb.requests_by("system:node:edge-7")
        + sb.requests_by("anonymous");
    assert_eq!(node_side, 5, "node-side requests: {c:?}");
    let node_verbs = c
        .iter()
        .find(|(u, _)| u.starts_with("system:node:"))
        .unwrap()
        .1;
    assert_eq!(node_verbs.get("get"), Some(&1), "{node_verbs:?}");
    for who in ["system:bootstrap:", "system:node:edge-7"] {
        let verbs = c.iter().find(|(u, _)| u.starts_with(who)).unwrap().1;
        assert_eq!(
            (verbs.get("create"), verbs.get("watch")),
            (Some(&1), Some(&1)),
            "{who}: {verbs:?}"
        );
    }
    assert_kubelet_node(&sb, node.path(), "edge-7");
}

#[test]
fn token_discovery_with_the_pin_printed_by_bootlet() {
    let sb = TestSandbox::auto_serving();
    let token = "tdisco.0123456789abcdef";
    sb.add_token(
        token,
        Some("2099-01-01T00:00:00Z"),
        &["authentication", "signing"],
    );
    let pin_line = bootlet(&["ca-pin", s(&sb.ca_crt())]);
    pin_line.ok();
    let pin = pin_line
        .stdout
        .split_whitespace()
        .next()
        .unwrap()
        .to_string();
    assert_eq!(pin, sb.pin());
    let root = tempfile::tempdir().unwrap();
    sb.sb().reset_counters();
    let run = bootlet_env(
        &[
            "join",
            &sb.endpoint(),
            "--discovery-token-ca-cert-hash",
            &pin,
            "--root",
            s(root.path()),
            "--node-name",
            "td-1",
        ],
        &[("BOOTLET_TOKEN", token)],
    );
    run.ok();
    assert_has(&run.stdout, "JWS verified");
    assert_has(&run.stdout, "identical");
    assert_kubelet_node(&sb, root.path(), "td-1");
    // Discovery adds exactly its two anonymous cluster-info fetches.
    assert_eq!(
        sb.requests_by("system:anonymous"),
        2,
        "{:?}",
        sb.sb().counters()
    );
    assert!(!run.all().contains("0123456789abcdef"));
}

/// A minimal image (distroless, scratch, many IoT builds) has no system trust store. Token
/// discovery trusts only the CA pin, so it must not need one: `SSL_CERT_FILE` and `SSL_CERT_DIR`
/// pointing nowhere is how rustls-native-certs sees such a machine.
#[test]
fn token_discovery_works_on_a_machine_without_a_system_trust_store() {
    let sb = TestSandbox::auto_serving();
    let token = "nostor.0123456789abcdef";
    sb.new_token(token);
    let root = tempfile::tempdir().unwrap();
    let nowhere = root.path().join("no-such-ca-bundle");
    let run = bootlet_env(
        &[
            "join",
            &sb.endpoint(),
            "--discovery-token-ca-cert-hash",
            &sb.pin(),
            "--root",
            s(&root.path().join("node")),
            "--node-name",
            "bare-1",
        ],
        &[
            ("BOOTLET_TOKEN", token),
            ("SSL_CERT_FILE", s(&nowhere)),
            ("SSL_CERT_DIR", s(&nowhere)),
        ],
    );
    run.ok();
    assert_lacks(&run.all(), "root certificate");
    assert_kubelet_node(&sb, &root.path().join("node"), "bare-1");
}

#[test]
fn krustlet_layout_embeds_credentials_and_reaches_the_sandbox_as_the_node() {
    let sb = TestSandbox::auto_serving();
    let root = tempfile::tempdir().unwrap();
    join_node(
        s(root.path()),
        "wasm-1",
        &[
            "--layout",
            "krustlet",
            "--krustlet-data-dir",
            "/home/k/.krustlet",
            "--admin-kubeconfig",
            s(&sb.admin_conf()),
            "--node-ip",
            "10.9.8.7",
        ],
    )
    .ok();
    let config = root.path().join("home/k/.krustlet/config");
    let kubeconfig = config.join("kubeconfig");
    assert_eq!(mode(&kubeconfig), 0o600);
    assert_eq!(mode(&config.join("krustlet.key")), 0o600);
    assert_eq!(mode(&config), 0o700);
    assert!(!config.join("bootstrap.conf").exists());
    assert!(openssl_verify(&sb.ca_crt(), &config.join("krustlet.crt")));
    let info = cert_info(&config.join("krustlet.crt"));
    assert_eq!(
        info.ip_addresses,
        ["10.9.8.7".parse::<std::net::IpAddr>().unwrap()]
    );
    let key = bootlet::pki::keys::PrivateKey::from_pem(
        &std::fs::read_to_string(config.join("krustlet.key")).unwrap(),
        "k",
    )
    .unwrap();
    assert_eq!(info.spki, key.spki_der());
    let access = bootlet::kubeconfig::load(&kubeconfig, "node").unwrap();
    assert!(
        matches!(
            access.credentials,
            bootlet::kubeconfig::Credentials::ClientCert { .. }
        ),
        "credentials embedded"
    );
    let who = whoami(&kubeconfig, root.path());
    assert_eq!(who.stdout, "system:node:wasm-1", "{}", who.stderr);
}

/// No credential at any layout path.
fn assert_no_credentials(root: &Path) {
    for p in [
        "etc/kubernetes/kubelet.conf",
        "var/lib/kubelet/pki",
        "etc/kubernetes/pki/ca.crt",
    ] {
        assert!(!root.join(p).exists(), "{p} was written");
    }
}

#[test]
fn a_wrong_pin_is_refused_before_any_credential_is_sent() {
    let sb = TestSandbox::start();
    let token = "wrongp.0123456789abcdef";
    sb.new_token(token);
    let root = tempfile::tempdir().unwrap();
    let other = format!("sha256:{}", "ab".repeat(32));
    let run = sb.token_join(s(root.path()), "n", token, &other, &[]);
    run.fails_with(5, "the cluster CA is not pinned");
    assert!(
        run.error_line().contains(&sb.pin()),
        "shows the observed pin: {}",
        run.error_line()
    );
    assert_eq!(
        run.stderr
            .lines()
            .filter(|l| l.starts_with("error:"))
            .count(),
        1
    );
    assert_no_credentials(root.path());
    assert_eq!(
        sb.requests_by("system:bootstrap:"),
        0,
        "the token was never used"
    );
}

#[test]
fn tampered_cluster_info_fails_the_jws_check() {
    let sb = TestSandbox::configured(|o| o.tamper_cluster_info = true);
    let token = "tamper.0123456789abcdef";
    sb.new_token(token);
    let root = tempfile::tempdir().unwrap();
    let run = sb.token_join(s(root.path()), "n", token, &sb.pin(), &[]);
    run.fails_with(5, "JWS signature of cluster-info does not verify");
    assert_no_credentials(root.path());
    assert_eq!(sb.requests_by("system:bootstrap:"), 0);
}

#[test]
fn a_token_without_the_signing_usage_times_out_in_discovery_with_one_line() {
    let sb = TestSandbox::start();
    let token = "nosign.0123456789abcdef";
    sb.add_token(token, None, &["authentication"]);
    let root = tempfile::tempdir().unwrap();
    let run = sb.token_join(
        s(root.path()),
        "n",
        token,
        &sb.pin(),
        &["--discovery-timeout", "2s"],
    );
    run.fails_with(
        7,
        "token id \"nosign\" is invalid for this cluster or it has expired",
    );
    assert_eq!(
        run.stderr
            .lines()
            .filter(|l| l.starts_with("error:"))
            .count(),
        1
    );
    assert_no_credentials(root.path());
}

#[test]
fn an_expired_token_is_rejected_with_a_clear_error() {
    let sb = TestSandbox::start();
    let token = "expird.0123456789abcdef";
    sb.add_token(
        token,
        Some("2020-01-01T00:00:00Z"),
        &["authentication", "signing"],
    );
    let dir = tempfile::tempdir().unwrap();
    let bootstrap = sb.bootstrap_kubeconfig(dir.path(), token);
    let root = dir.path().join("node");
    let run = bootstrap_join(s(&root), "n", &bootstrap, &[]);
    run.fails_with(6, "401 Unauthorized");
    assert!(run.error_line().contains("expired"), "{}", run.error_line());
    assert_no_credentials(&root);
    // Token discovery with it: no signature (the signer skips expired tokens, the cleaner deletes them).
    let run = sb.token_join(
        s(&dir.path().join("node2")),
        "n",
        token,
        &sb.pin(),
        &["--discovery-timeout", "2s"],
    );
    run.fails_with(7, "invalid for this cluster or it has expired");
}

/// In the background, waits for the first kubelet-serving CSR and runs `kubectl <action> <name>` on
/// it as the admin, as an operator at another terminal would.
fn kubectl_on_first_serving_csr(sb: &TestSandbox, action: &[&str]) -> std::thread::JoinHandle<Run> {
    let conf = sb.admin_conf();
    let cache = sb.dir.path().to_path_buf();
    let action: Vec<String> = action.iter().map(|a| a.to_string()).collect();
    std::thread::spawn(move || {
        let list = [
            "get",
            "csr",
            "-o",
            "jsonpath={range .items[*]}{.metadata.name} {.spec.signerName}{\"\\n\"}{end}",
        ];
        for _ in 0..200 {
            let out = kubectl_with(&conf, &cache, &list);
            if let Some(line) = out.stdout.lines().find(|l| l.ends_with("kubelet-serving")) {
                let mut args: Vec<&str> = action.iter().map(String::as_str).collect();
                args.push(line.split_whitespace().next().unwrap());
                return kubectl_with(&conf, &cache, &args);
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!("no serving CSR appeared");
    })
}

#[test]
fn a_csr_denied_with_kubectl_ends_the_join_with_the_reason() {
    let sb = TestSandbox::start();
    let (_dir, bootstrap, root) = sb.token_node("denied.0123456789abcdef");
    let denier = kubectl_on_first_serving_csr(&sb, &["certificate", "deny"]);
    let run = bootstrap_join(s(&root), "n", &bootstrap, &["--approval-timeout", "30s"]);
    let denied = denier.join().unwrap();
    assert_eq!(denied.code, 0, "{}", denied.stderr);
    run.fails_with(6, "was denied (KubectlDeny)");
    assert_no_credentials(&root);
}

#[test]
fn an_approval_timeout_names_the_csr_and_the_command_to_approve_it() {
    let sb = TestSandbox::start();
    let (_dir, bootstrap, root) = sb.token_node("tmeout.0123456789abcdef");
    let run = bootstrap_join(s(&root), "n", &bootstrap, &["--approval-timeout", "2s"]);
    run.fails_with(7, "got no certificate within 2s");
    assert_has(&run.error_line(), "kubectl certificate approve node-csr-");
    assert_no_credentials(&root);
}

#[test]
fn a_server_with_another_ca_is_refused_before_any_credential_is_sent() {
    let trusted = TestSandbox::start();
    let impostor = TestSandbox::start();
    let token = "impost.0123456789abcdef";
    impostor.add_token(token, None, &["authentication", "signing"]);
    let dir = tempfile::tempdir().unwrap();
    // A bootstrap kubeconfig with the trusted CA but the impostor's address.
    let t = bootlet::token::BootstrapToken::parse(token).unwrap();
    let text = bootlet::kubeconfig::render_bootstrap(
        &impostor.url(),
        trusted.sb().ca_pem().as_bytes(),
        &t,
    )
    .unwrap();
    let bootstrap = dir.path().join("bootstrap.conf");
    std::fs::write(&bootstrap, text).unwrap();
    let run = bootstrap_join(s(&dir.path().join("node")), "n", &bootstrap, &[]);
    run.fails_with(5, "is not the cluster bootlet trusts");
    assert_eq!(
        impostor.requests_by("system:bootstrap:"),
        0,
        "the token reached the impostor"
    );
    assert_eq!(impostor.requests_by("unauthenticated"), 0);
    assert_no_credentials(&dir.path().join("node"));
}

/// Waits until `pred` holds for the sandbox, up to 20 s.
fn wait_for(what: &str, mut pred: impl FnMut() -> bool) {
    for _ in 0..400 {
        if pred() {
            return;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    panic!("timed out waiting for {what}");
}

#[test]
fn killed_while_waiting_for_approval_the_next_join_reattaches_to_the_same_csr() {
    let sb = TestSandbox::start();
    // No auto-approval of client CSRs: take away the nodeclient binding for now.
    let binding = sb
        .sb()
        .get(
            "clusterrolebindings",
            "",
            "kubeadm:node-autoapprove-bootstrap",
        )
        .unwrap();
    sb.sb().delete(
        "clusterrolebindings",
        "",
        "kubeadm:node-autoapprove-bootstrap",
    );
    let (_dir, bootstrap, root) = sb.token_node("resume.0123456789abcdef");
    let args = [
        "join",
        "--bootstrap-kubeconfig",
        s(&bootstrap),
        "--root",
        s(&root),
        "--node-name",
        "rn",
        "--approval-timeout",
        "60s",
    ];
    let mut child = spawn_quiet(&args);
    wait_for("the client CSR", || {
        !sb.csrs_of("system:bootstrap:resume").is_empty()
    });
    std::thread::sleep(Duration::from_millis(200));
    child.kill().unwrap();
    child.wait().unwrap();
    let first = sb.csrs_of("system:bootstrap:resume");
    assert_eq!(first.len(), 1);
    let key_before = std::fs::read(root.join("var/lib/bootlet/staging/client.key")).unwrap();
    // The admin restores auto-approval; the rerun meets its own CSR (409) and re-attaches.
    sb.sb().put("clusterrolebindings", "", binding);
    sb.approve_serving_in_background();
    let run = bootlet(&args);
    run.ok();
    assert_has(
        &run.stdout,
        "from an earlier attempt, made with the same key: re-attached",
    );
    let after = sb.csrs_of("system:bootstrap:resume");
    assert_eq!(after.len(), 1, "exactly one client CSR for the node");
    assert_eq!(
        after[0]["metadata"]["uid"], first[0]["metadata"]["uid"],
        "the same CSR object"
    );
    assert_eq!(
        sb.csrs_of("system:node:rn").len(),
        1,
        "exactly one serving CSR for the node"
    );
    let pem = std::fs::read_to_string(root.join("var/lib/kubelet/pki/kubelet-client-current.pem"))
        .unwrap();
    let key_after = bootlet::pki::keys::private_key_block(&pem).unwrap();
    assert_eq!(
        key_after.trim(),
        String::from_utf8(key_before).unwrap().trim(),
        "the same key"
    );
    assert_kubelet_node(&sb, &root, "rn");
}

#[test]
fn killed_while_waiting_for_serving_approval_resumes_with_the_same_serving_csr() {
    let sb = TestSandbox::start();
    let root = tempfile::tempdir().unwrap();
    let admin = sb.admin_conf();
    let args = [
        "join",
        "--admin-kubeconfig",
        s(&admin),
        "--root",
        s(root.path()),
        "--node-name",
        "sv",
        "--approval-timeout",
        "60s",
    ];
    let mut child = spawn_quiet(&args);
    wait_for("the serving CSR", || {
        !sb.csrs_of("system:node:sv").is_empty()
    });
    child.kill().unwrap();
    child.wait().unwrap();
    sb.approve_serving_in_background();
    let run = bootlet(&args);
    run.ok();
    assert_has(&run.stdout, "[client-csr] already done");
    assert!(run.stdout.contains("re-attached"), "{}", run.stdout);
    assert_eq!(sb.csrs_of("system:node:sv").len(), 1);
    assert_kubelet_node(&sb, root.path(), "sv");
}

#[test]
fn the_secret_phase_is_idempotent_and_refuses_a_conflicting_token() {
    let sb = TestSandbox::start();
    let admin = tempfile::tempdir().unwrap();
    let a = admin.path().to_str().unwrap();
    let conf = sb.admin_conf();
    let token = "idemtk.0123456789abcdef";
    let first = bootlet(&[
        "phase",
        "secret",
        "--root",
        a,
        "--admin-kubeconfig",
        s(&conf),
        "--token",
        token,
    ]);
    first.ok();
    assert!(
        first
            .stdout
            .contains("Created Secret kube-system/bootstrap-token-idemtk")
    );
    assert!(
        first.stdout.contains(&format!(
            "Join a node with: bootlet join {} --discovery-token-ca-cert-hash {} --token-file FILE",
            sb.endpoint(),
            sb.pin()
        )),
        "{}",
        first.stdout
    );
    let secret = sb
        .sb()
        .get("secrets", "kube-system", "bootstrap-token-idemtk")
        .unwrap();
    assert_eq!(secret["type"], "bootstrap.kubernetes.io/token");
    let data = |k: &str| secret_text(&secret, k);
    assert_eq!(data("usage-bootstrap-authentication"), "true");
    assert_eq!(data("usage-bootstrap-signing"), "true");
    assert_eq!(
        data("auth-extra-groups"),
        "system:bootstrappers:kubeadm:default-node-token"
    );
    let exp = time::OffsetDateTime::parse(
        &data("expiration"),
        &time::format_description::well_known::Rfc3339,
    )
    .unwrap();
    let ttl = exp - time::OffsetDateTime::now_utc();
    assert!(
        ttl > time::Duration::hours(23) && ttl <= time::Duration::hours(24),
        "default TTL 24h: {ttl}"
    );
    let bindings_before = sb.sb().list("clusterrolebindings", "").len();
    let rv = secret["metadata"]["resourceVersion"].clone();
    let again = bootlet(&[
        "phase",
        "secret",
        "--root",
        a,
        "--admin-kubeconfig",
        s(&conf),
        "--token",
        token,
    ]);
    again.ok();
    assert_has(&again.stdout, "[secret] already done");
    assert_eq!(
        sb.sb()
            .get("secrets", "kube-system", "bootstrap-token-idemtk")
            .unwrap()["metadata"]["resourceVersion"],
        rv,
        "identical Secret left alone"
    );
    assert_eq!(
        sb.sb().list("clusterrolebindings", "").len(),
        bindings_before,
        "no duplicate bindings"
    );
    // Another group: the bindings gain it, without duplicates.
    bootlet(&[
        "phase",
        "secret",
        "--root",
        a,
        "--admin-kubeconfig",
        s(&conf),
        "--token",
        "grptok.0123456789abcdef",
        "--token-groups",
        "system:bootstrappers:edge",
    ])
    .ok();
    let b = sb
        .sb()
        .get("clusterrolebindings", "", "kubeadm:kubelet-bootstrap")
        .unwrap();
    assert_eq!(b["subjects"].as_array().unwrap().len(), 2, "{b}");
    assert_eq!(
        sb.sb().list("clusterrolebindings", "").len(),
        bindings_before
    );
    // Same id, other secret: an error that says so, and nothing changed.
    let clash = bootlet(&[
        "phase",
        "secret",
        "--root",
        a,
        "--admin-kubeconfig",
        s(&conf),
        "--token",
        "idemtk.ffffffffffffffff",
    ]);
    clash.fails_with(6, "already exists with a different secret");
    assert!(!clash.all().contains("ffffffffffffffff") && !clash.all().contains("0123456789abcdef"));
    assert_eq!(
        sb.sb()
            .get("secrets", "kube-system", "bootstrap-token-idemtk")
            .unwrap()["metadata"]["resourceVersion"],
        rv
    );
}

#[test]
fn several_pins_any_match_and_no_pin_needs_the_explicit_unsafe_flag() {
    let sb = TestSandbox::auto_serving();
    let token = "pinsok.0123456789abcdef";
    sb.new_token(token);
    let root = tempfile::tempdir().unwrap();
    let wrong = format!("sha256:{}", "cd".repeat(32));
    let run = sb.token_join(
        s(root.path()),
        "p1",
        token,
        &wrong,
        &["--discovery-token-ca-cert-hash", &sb.pin()],
    );
    run.ok();
    let root2 = tempfile::tempdir().unwrap();
    let refused = join_node(s(root2.path()), "p2", &[&sb.endpoint(), "--token", token]);
    refused.fails_with(3, "--discovery-token-ca-cert-hash");
    assert_no_credentials(root2.path());
    let unsafe_run = join_node(
        s(root2.path()),
        "p2",
        &[
            &sb.endpoint(),
            "--token",
            token,
            "--discovery-token-unsafe-skip-ca-verification",
        ],
    );
    unsafe_run.ok();
    assert!(
        unsafe_run
            .stderr
            .contains("WARNING: --discovery-token-unsafe-skip-ca-verification"),
        "{}",
        unsafe_run.stderr
    );
}

#[test]
fn keep_bootstrap_kubeconfig_keeps_it_and_preflight_guards_foreign_files() {
    let sb = TestSandbox::auto_serving();
    let root = tempfile::tempdir().unwrap();
    // A kubelet.conf that bootlet did not write and that does not verify: preflight stops.
    let conf = root.path().join("etc/kubernetes/kubelet.conf");
    std::fs::create_dir_all(conf.parent().unwrap()).unwrap();
    std::fs::write(&conf, "apiVersion: v1\nkind: Config\n").unwrap();
    let admin = sb.admin_conf();
    let args = [
        "join",
        "--admin-kubeconfig",
        s(&admin),
        "--root",
        s(root.path()),
        "--node-name",
        "kp",
        "--keep-bootstrap-kubeconfig",
    ];
    let run = bootlet(&args);
    run.fails_with(3, "FileAvailable--etc-kubernetes-kubelet.conf");
    assert_has(
        &run.stdout,
        "[ERROR FileAvailable--etc-kubernetes-kubelet.conf]",
    );
    assert_eq!(
        std::fs::read_to_string(&conf).unwrap(),
        "apiVersion: v1\nkind: Config\n",
        "nothing touched"
    );
    assert!(sb.csrs_of("system:node:kp").is_empty());
    bootlet(&[&args[..], &["--ignore-preflight-errors", "NoSuchCheck"]].concat())
        .fails_with(2, "unknown check");
    let ignored = bootlet(
        &[
            &args[..],
            &[
                "--ignore-preflight-errors",
                "fileavailable--etc-kubernetes-kubelet.conf",
            ],
        ]
        .concat(),
    );
    ignored.ok();
    assert!(
        ignored
            .stderr
            .contains("ignored by --ignore-preflight-errors")
    );
    assert!(
        root.path()
            .join("etc/kubernetes/bootstrap-kubelet.conf")
            .exists(),
        "kept"
    );
    assert!(
        root.path().join("var/lib/bootlet/bootstrap-token").exists(),
        "kept"
    );
    assert_eq!(
        mode(&root.path().join("etc/kubernetes/bootstrap-kubelet.conf")),
        0o600
    );
    let again = bootlet(&args);
    again.ok();
    assert_has(&again.stdout, "[write-files] already done");
}

#[test]
fn a_csr_deleted_while_waiting_ends_the_join_with_the_reason() {
    let sb = TestSandbox::start();
    let (_dir, bootstrap, root) = sb.token_node("delcsr.0123456789abcdef");
    let deleter = kubectl_on_first_serving_csr(&sb, &["delete", "csr"]);
    let run = bootstrap_join(s(&root), "d", &bootstrap, &["--approval-timeout", "30s"]);
    assert_eq!(deleter.join().unwrap().code, 0);
    run.fails_with(6, "was deleted while bootlet waited for it");
    assert_no_credentials(&root);
}
