//! The end-to-end scenarios, from the same code on both control planes (issue 24): the sandbox
//! and the real one built from the Kubernetes release in `tests/kube/` (kube-apiserver with
//! bootstrap-token auth, Node,RBAC and NodeRestriction; kube-controller-manager's csrapproving,
//! csrsigning, bootstrapsigner and tokencleaner). Each scenario asserts what a user would check:
//! files, modes, certificates with openssl, `kubectl auth whoami` as the node, CSR conditions as
//! kubectl shows them, and requests as the server counted them.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::cluster::{Plane, TestCluster};
use common::node::*;
use common::*;
use serde_json::{Value, json};

on_both!(
    the_admin_prepares_and_the_node_joins_with_only_the_bootstrap_kubeconfig,
    token_discovery_checks_the_pin_and_the_cluster_signed_cluster_info,
    a_wrong_pin_is_refused_before_any_credential_is_sent,
    the_one_shot_admin_join_approves_its_own_serving_csr,
    a_client_only_join_sends_no_serving_csr,
    a_forced_renew_is_approved_as_the_node_itself,
    an_expired_client_certificate_is_renewed_with_the_bootstrap_kubeconfig,
    renew_watch_rotates_before_expiry,
    check_expiration_reports_what_openssl_reads,
    reset_then_a_join_to_another_control_plane,
    tokens_created_listed_deleted_and_expired,
    the_approver_approves_a_good_serving_csr_and_denies_forged_ones,
    a_node_cannot_talk_the_approver_into_what_it_must_not_sign,
    the_approver_route_finishes_a_join_with_no_hand_work,
    two_leader_elected_approvers_decide_each_csr_once,
    killed_while_waiting_for_approval_the_rerun_reattaches_to_the_same_csr,
    a_node_side_join_costs_five_requests_and_a_forced_renewal_four,
);

fn the_admin_prepares_and_the_node_joins_with_only_the_bootstrap_kubeconfig(plane: Plane) {
    let c = plane.cluster();
    let admin = tempfile::tempdir().unwrap();
    let token_file = admin.path().join("token");
    let conf = c.admin_conf();
    bootlet(&[
        "token",
        "create",
        "--kubeconfig",
        s(&conf),
        "--token-file",
        s(&token_file),
        "--description",
        "scenario: admin side",
    ])
    .ok();
    remember_secrets(&std::fs::read_to_string(&token_file).unwrap());
    let admin_root = admin.path().join("root");
    for phase in ["secret", "kubeconfig"] {
        bootlet(&[
            "phase",
            phase,
            "--root",
            s(&admin_root),
            "--admin-kubeconfig",
            s(&conf),
            "--token-file",
            s(&token_file),
        ])
        .ok();
    }
    let bootstrap = admin_root.join("etc/kubernetes/bootstrap-kubelet.conf");
    assert_eq!(mode(&bootstrap), 0o600);
    let node = Node::at(tempfile::tempdir().unwrap(), bootstrap, "admin-side-1");
    let _approving = c.approve_serving_of(&node.name);
    let run = node.join(&[]);
    run.ok();
    assert_has(&run.stdout, "[secret] skipped");
    assert_has(
        &run.stdout,
        "This node has joined the cluster as system:node:admin-side-1",
    );
    node.assert_usable(&c, &["client", "server"]);
    assert!(
        !node
            .root
            .join("etc/kubernetes/bootstrap-kubelet.conf")
            .exists(),
        "the bootstrap credential is gone"
    );
    // The client CSR was sent with the token and approved by the cluster's nodeclient rule; the
    // serving one was sent as the node and approved by kubectl.
    let token = std::fs::read_to_string(&token_file).unwrap();
    let id = token.trim().split('.').next().unwrap().to_string();
    let client = c.csrs_of(&format!("system:bootstrap:{id}"));
    assert_eq!(client.len(), 1);
    assert_eq!(signer_of(&client[0]), CLIENT_SIGNER);
    let name = client[0]["metadata"]["name"].as_str().unwrap();
    assert_eq!(
        decision(&c, name),
        ("Approved".into(), "AutoApproved".into(), 1)
    );
    let serving = c.csrs_of("system:node:admin-side-1");
    assert_eq!(serving.len(), 1);
    assert_eq!(signer_of(&serving[0]), SERVING_SIGNER);
}

fn token_discovery_checks_the_pin_and_the_cluster_signed_cluster_info(plane: Plane) {
    let c = plane.cluster();
    let dir = tempfile::tempdir().unwrap();
    let token = "tdisc1.0123456789abcdef";
    let token_file = discoverable_token(&c, dir.path(), token);
    let root = dir.path().join("node");
    let _approving = c.approve_serving_of("disco-1");
    let run = join_node(
        s(&root),
        "disco-1",
        &[
            &c.endpoint(),
            "--token-file",
            s(&token_file),
            "--discovery-token-ca-cert-hash",
            &c.pin(),
            "--approval-timeout",
            "60s",
        ],
    );
    run.ok();
    assert_has(
        &run.stdout,
        "This node has joined the cluster as system:node:disco-1",
    );
    let node = Node::at(dir, PathBuf::new(), "disco-1");
    node.assert_usable(&c, &["client", "server"]);
}

/// `token` registered by an admin's `secret` phase (its Secret, the bootstrapper RBAC and
/// cluster-info readable anonymously), then signed into cluster-info by the cluster's bootstrap
/// signer (bootlet never signs it); returns a file holding the token.
fn discoverable_token(c: &TestCluster, dir: &Path, token: &str) -> PathBuf {
    let admin_root = dir.join("admin");
    let conf = c.admin_conf();
    let file = write_file(dir, "token", token);
    bootlet(&[
        "phase",
        "secret",
        "--root",
        s(&admin_root),
        "--admin-kubeconfig",
        s(&conf),
        "--token-file",
        s(&file),
    ])
    .ok();
    let key = format!("jws-kubeconfig-{}", token.split('.').next().unwrap());
    let jws = eventually(30, || {
        let ci = c.get_json(&["configmap", "-n", "kube-public", "cluster-info"])?;
        ci["data"][&key].as_str().map(String::from)
    });
    assert_eq!(jws.split('.').count(), 3, "a detached JWS: {jws}");
    file
}

fn a_wrong_pin_is_refused_before_any_credential_is_sent(plane: Plane) {
    let c = plane.cluster();
    let token = "wrongp.0123456789abcdef";
    let dir = tempfile::tempdir().unwrap();
    let token_file = discoverable_token(&c, dir.path(), token);
    let root = dir.path().join("node");
    let wrong = format!("sha256:{}", "ab".repeat(32));
    let run = join_node(
        s(&root),
        "wrong-pin",
        &[
            &c.endpoint(),
            "--token-file",
            s(&token_file),
            "--discovery-token-ca-cert-hash",
            &wrong,
            "--discovery-timeout",
            "20s",
        ],
    );
    assert_ne!(run.code, 0);
    assert_has(&run.error_line(), "pin");
    assert!(
        !root.join("etc/kubernetes/bootstrap-kubelet.conf").exists()
            && !root.join("etc/kubernetes/kubelet.conf").exists(),
        "no credential written"
    );
    // The token never reached the server: no request authenticated as it.
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(c.requests_by("system:bootstrap:wrongp"), 0);
    assert!(c.csrs_of("system:bootstrap:wrongp").is_empty());
}

fn the_one_shot_admin_join_approves_its_own_serving_csr(plane: Plane) {
    let c = plane.cluster();
    let root = tempfile::tempdir().unwrap();
    let run = join_node(
        s(root.path()),
        "one-shot-1",
        &[
            "--admin-kubeconfig",
            s(&c.admin_conf()),
            "--approve-serving",
            "--approval-timeout",
            "60s",
        ],
    );
    run.ok();
    // It approved its own CSR: no line tells the operator to approve it by hand.
    assert_lacks(&run.stdout, "run `kubectl certificate approve");
    assert_has(
        &run.stdout,
        "with the admin kubeconfig after the approver's checks",
    );
    let node = Node {
        root: root.path().to_path_buf(),
        dir: root,
        bootstrap: PathBuf::new(),
        name: "one-shot-1".into(),
    };
    node.assert_usable(&c, &["client", "server"]);
    let serving = c.csrs_of("system:node:one-shot-1");
    assert_eq!(serving.len(), 1);
    let name = serving[0]["metadata"]["name"].as_str().unwrap();
    assert_eq!(decision(&c, name).0, "Approved");
    // The one-shot join deleted the token it made (no --keep-token): the Secret is gone.
    let id = run
        .stdout
        .split("bootstrap-token-")
        .nth(1)
        .and_then(|rest| rest.get(..6))
        .expect("the join names its token Secret")
        .to_string();
    assert!(
        c.get_json(&[
            "secret",
            "-n",
            "kube-system",
            &format!("bootstrap-token-{id}")
        ])
        .is_none()
    );
}

fn a_client_only_join_sends_no_serving_csr(plane: Plane) {
    let c = plane.cluster();
    let node = Node::new(&c, "conly1.0123456789abcdef", "client-only-1");
    let run = node.join(&["--skip-phases", "serving-csr"]);
    run.ok();
    assert_has(&run.stdout, "[serving-csr] skipped: in --skip-phases");
    node.assert_usable(&c, &["client"]);
    assert!(!node.current("server").exists(), "no serving pair");
    assert!(
        c.csrs_of("system:node:client-only-1").is_empty(),
        "no serving CSR sent"
    );
    let client = c.csrs_of("system:bootstrap:conly1");
    assert_eq!(client.len(), 1);
    let name = client[0]["metadata"]["name"].as_str().unwrap();
    assert_eq!(
        decision(&c, name),
        ("Approved".into(), "AutoApproved".into(), 1),
        "csrapproving's nodeclient rule"
    );
}

fn a_forced_renew_is_approved_as_the_node_itself(plane: Plane) {
    let c = plane.cluster();
    let node = Node::new(&c, "renew1.0123456789abcdef", "renew-1");
    let _approving = c.approve_serving_of(&node.name);
    node.join(&[]).ok();
    let (old_client, old_server) = (node.target("client"), node.target("server"));
    let old_key = cert_info(&node.current("client")).spki;
    let run = node.renew(&["--force"]);
    run.ok();
    assert_has(&run.stdout, "Renewed the client and serving certificates");
    assert_ne!(node.target("client"), old_client, "the link moved");
    assert_ne!(node.target("server"), old_server);
    assert!(node.pki().join(&old_client).exists(), "the old pair stays");
    assert_ne!(
        cert_info(&node.current("client")).spki,
        old_key,
        "a new key"
    );
    node.assert_usable(&c, &["client", "server"]);
    let by_node: Vec<Value> = c
        .csrs_of("system:node:renew-1")
        .into_iter()
        .filter(|x| signer_of(x) == CLIENT_SIGNER)
        .collect();
    assert_eq!(
        by_node.len(),
        1,
        "the renewal's client CSR, sent by the node"
    );
    let name = by_node[0]["metadata"]["name"].as_str().unwrap();
    assert_eq!(
        decision(&c, name),
        ("Approved".into(), "AutoApproved".into(), 1),
        "csrapproving's selfnodeclient rule"
    );
    assert_eq!(
        c.csrs_of("system:bootstrap:renew1").len(),
        1,
        "the token was not used again"
    );
}

fn an_expired_client_certificate_is_renewed_with_the_bootstrap_kubeconfig(plane: Plane) {
    let c = plane.short_lived();
    let node = Node::new(&c, "expir1.0123456789abcdef", "expired-1");
    node.join(&["--skip-phases", "serving-csr"]).ok();
    let not_after = cert_info(&node.current("client")).not_after;
    let wait = not_after - bootlet::pki::cert::now_unix() + 1;
    assert!(
        (0..=200).contains(&wait),
        "a short-lived certificate ({wait} s left)"
    );
    std::thread::sleep(Duration::from_secs(wait as u64));
    let check = bootlet(&["certs", "check-expiration", "--root", s(&node.root)]);
    check.fails_with(5, "the client certificate");
    let without = node.renew(&["--skip-phases", "serving-csr"]);
    without.fails_with(5, "no bootstrap kubeconfig to fall back to");
    let with = node.renew(&[
        "--skip-phases",
        "serving-csr",
        "--bootstrap-kubeconfig",
        s(&node.bootstrap),
    ]);
    with.ok();
    assert_has(
        &with.stderr,
        "asking with the bootstrap credentials instead",
    );
    assert_eq!(
        c.csrs_of("system:bootstrap:expir1").len(),
        2,
        "the join's and the renewal's"
    );
    node.assert_usable(&c, &["client"]);
}

fn renew_watch_rotates_before_expiry(plane: Plane) {
    let c = plane.short_lived();
    let node = Node::new(&c, "watch1.0123456789abcdef", "watch-1");
    // No kubelet configuration is handed off, so no kubelet owns rotation: bootlet's watch does.
    node.join(&["--skip-phases", "serving-csr,kubelet-config"])
        .ok();
    let mut child = Command::new(bin())
        .args([
            "renew",
            "--watch",
            "--root",
            s(&node.root),
            "--skip-phases",
            "serving-csr",
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let first = node.target("client");
    let started = Instant::now();
    let mut rotated = None;
    while started.elapsed() < Duration::from_secs(240) {
        std::thread::sleep(Duration::from_millis(250));
        if let Ok(t) = std::fs::read_link(node.current("client"))
            && t.display().to_string() != first
        {
            rotated = Some(t);
            break;
        }
    }
    let out = terminate(&mut child);
    assert!(rotated.is_some(), "rotated within 4 minutes:\n{out}");
    assert_has(&out, "[renew] Stopped (SIGTERM)");
    node.assert_usable(&c, &["client"]);
    let renewal = c.csrs_of("system:node:watch-1");
    assert!(!renewal.is_empty(), "renewed as the node");
}

/// SIGTERM, then the child's output.
fn terminate(child: &mut Child) -> String {
    let _ = rustix::process::kill_process(
        rustix::process::Pid::from_child(child),
        rustix::process::Signal::TERM,
    );
    let deadline = Instant::now() + Duration::from_secs(10);
    while child.try_wait().unwrap().is_none() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
    let _ = child.kill();
    let _ = child.wait();
    let mut out = String::new();
    use std::io::Read;
    if let Some(mut o) = child.stdout.take() {
        o.read_to_string(&mut out).unwrap();
    }
    if let Some(mut e) = child.stderr.take() {
        e.read_to_string(&mut out).unwrap();
    }
    let run = Run {
        code: 0,
        stdout: out.clone(),
        stderr: String::new(),
    };
    leak_scan(&run, &[], &[]);
    out
}

/// `notAfter=` of a PEM certificate as openssl reads it, as unix seconds.
fn openssl_not_after(pem: &Path) -> i64 {
    let out =
        output_ok(Command::new("openssl").args(["x509", "-noout", "-enddate", "-in", s(pem)]));
    let text = out.trim().trim_start_matches("notAfter=");
    let format = time::macros::format_description!(
        "[month repr:short] [day padding:space] [hour]:[minute]:[second] [year] GMT"
    );
    let normalized = text.split_whitespace().collect::<Vec<_>>();
    let day = format!("{:>2}", normalized[1]);
    let joined = format!(
        "{} {} {} {} GMT",
        normalized[0], day, normalized[2], normalized[3]
    );
    time::PrimitiveDateTime::parse(&joined, format)
        .unwrap()
        .assume_utc()
        .unix_timestamp()
}

fn check_expiration_reports_what_openssl_reads(plane: Plane) {
    let c = plane.cluster();
    let node = Node::new(&c, "chkexp.0123456789abcdef", "check-1");
    let _approving = c.approve_serving_of(&node.name);
    node.join(&[]).ok();
    for (which, file) in [
        ("client", node.current("client")),
        ("serving", node.current("server")),
        ("ca", node.root.join("etc/kubernetes/pki/ca.crt")),
    ] {
        let entry = node.expiration(which);
        let reported = time::OffsetDateTime::parse(
            entry["not_after"].as_str().unwrap(),
            &time::format_description::well_known::Rfc3339,
        )
        .unwrap()
        .unix_timestamp();
        assert_eq!(reported, openssl_not_after(&file), "{which}");
    }
}

fn reset_then_a_join_to_another_control_plane(plane: Plane) {
    let first = plane.cluster();
    let node = Node::new(&first, "reset1.0123456789abcdef", "reset-1");
    node.join(&["--skip-phases", "serving-csr"]).ok();
    let before = files_under(&node.root);
    assert!(!before.is_empty());
    let reset = bootlet(&["reset", "--root", s(&node.root), "--force"]);
    reset.ok();
    let left: Vec<String> = files_under(&node.root)
        .into_iter()
        .filter(|f| !f.ends_with("/lock"))
        .collect();
    assert!(left.is_empty(), "reset left {left:?}");
    // The same root joins a second control plane (another CA) from scratch.
    let second = plane.short_lived();
    assert_ne!(first.ca_pem(), second.ca_pem(), "another cluster");
    second.new_token("reset2.0123456789abcdef");
    let bootstrap = second.bootstrap_kubeconfig(node.dir.path(), "reset2.0123456789abcdef");
    let again = Node { bootstrap, ..node };
    again.join(&["--skip-phases", "serving-csr"]).ok();
    again.assert_usable(&second, &["client"]);
    assert!(!openssl_verify(&first.ca_crt(), &again.current("client")));
}

fn tokens_created_listed_deleted_and_expired(plane: Plane) {
    let c = plane.cluster();
    let conf = c.admin_conf();
    let dir = tempfile::tempdir().unwrap();
    let token = "tlife1.0123456789abcdef";
    remember_secrets(token);
    bootlet(&[
        "token",
        "create",
        "--kubeconfig",
        s(&conf),
        "--token-file",
        s(&dir.path().join("out")),
        "--description",
        "lifecycle",
        "--ttl",
        "2h",
    ])
    .ok();
    let listed = bootlet(&["token", "list", "--kubeconfig", s(&conf), "-o", "json"]);
    listed.ok();
    assert_has(&listed.stdout, "lifecycle");
    // A token with a known secret, used, then deleted: the real authenticator refuses it at once.
    c.new_token(token);
    let bootstrap = c.bootstrap_kubeconfig(dir.path(), token);
    let who = whoami(&bootstrap, dir.path());
    assert_eq!(who.stdout, "system:bootstrap:tlife1", "{}", who.stderr);
    bootlet(&["token", "delete", "--kubeconfig", s(&conf), "tlife1"]).ok();
    // kube-apiserver caches a token's success for 10 s (TokenSuccessCacheTTL); after that the
    // deleted token is refused.
    let deleted = Instant::now();
    let after = eventually(15, || {
        let r = whoami(&bootstrap, dir.path());
        (r.code != 0).then_some(r)
    });
    assert_has(&after.stderr, "Unauthorized");
    assert!(
        deleted.elapsed() < Duration::from_secs(12),
        "refused within the cache's 10 s"
    );
    // An expiring token is removed by the token cleaner once it has expired.
    let soon = (time::OffsetDateTime::now_utc() + time::Duration::seconds(3))
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap();
    c.add_token("tlife2.0123456789abcdef", Some(&soon), &["authentication"]);
    eventually(60, || {
        c.get_json(&["secret", "-n", "kube-system", "bootstrap-token-tlife2"])
            .is_none()
            .then_some(())
    });
}

/// The node's kubeconfig after a client-only join: the node identity the forged CSRs come from.
fn joined_client_only(c: &TestCluster, token: &str, name: &str) -> Node {
    let node = Node::new(c, token, name);
    node.join(&["--skip-phases", "serving-csr"]).ok();
    node
}

/// Registers the node's Node object as its kubelet would (as the node: NodeRestriction lets a
/// node create its own Node), with `addresses`.
fn register_node(node: &Node, addresses: &[(&str, &str)]) {
    let addrs: Vec<Value> = addresses
        .iter()
        .map(|(t, a)| json!({"type": t, "address": a}))
        .collect();
    let obj = json!({"apiVersion": "v1", "kind": "Node", "metadata": {"name": node.name},
        "status": {"addresses": addrs}});
    let manifest = write_file(node.dir.path(), "node.json", &obj.to_string());
    node.kubectl(&["create", "-f", s(&manifest)]).ok();
}

/// A serving CSR made with openssl and posted as `node`: `subj` like
/// `/O=system:nodes/CN=system:node:x`.
fn post_csr(node: &Node, name: &str, subj: &str, sans: &str, usages: &[&str]) -> Run {
    post_csr_with(&node.kubelet_conf(), node, name, subj, sans, usages)
}

/// The same, posted with `kubeconfig`; the files go into `node`'s directory.
fn post_csr_with(
    kubeconfig: &Path,
    node: &Node,
    name: &str,
    subj: &str,
    sans: &str,
    usages: &[&str],
) -> Run {
    use base64::Engine;
    let req = openssl_req(node.dir.path(), name, subj, Some(sans));
    let request = base64::engine::general_purpose::STANDARD.encode(std::fs::read(&req).unwrap());
    let obj = json!({"apiVersion": "certificates.k8s.io/v1", "kind": "CertificateSigningRequest",
        "metadata": {"name": name}, "spec": {"request": request, "signerName": SERVING_SIGNER, "usages": usages}});
    let manifest = write_file(node.dir.path(), &format!("{name}.json"), &obj.to_string());
    kubectl_with(kubeconfig, node.dir.path(), &["create", "-f", s(&manifest)])
}

fn spawn_approver(c: &TestCluster, extra: &[&str]) -> Child {
    Command::new(bin())
        .args(["approver", "-o", "json", "--kubeconfig", s(&c.admin_conf())])
        .args(extra)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap()
}

fn json_lines(text: &str) -> Vec<Value> {
    text.lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect()
}

fn the_approver_approves_a_good_serving_csr_and_denies_forged_ones(plane: Plane) {
    let c = plane.own();
    let a = joined_client_only(&c, "appr01.0123456789abcdef", "appr-a");
    let b = joined_client_only(&c, "appr02.0123456789abcdef", "appr-b");
    register_node(&a, &[("InternalIP", "10.20.0.1"), ("Hostname", "appr-a")]);
    register_node(&b, &[("InternalIP", "10.20.0.2"), ("Hostname", "appr-b")]);
    let serving = ["digital signature", "server auth"];
    let subj_a = "/O=system:nodes/CN=system:node:appr-a";
    post_csr(&a, "appr-good", subj_a, "DNS:appr-a,IP:10.20.0.1", &serving).ok();
    // Another node's name: refused at create by NodeRestriction when a node asks; denied by the
    // approver when a bootstrap token asks (not a node).
    let subj_b = "/O=system:nodes/CN=system:node:appr-b";
    post_csr(&a, "appr-other-name", subj_b, "DNS:appr-b", &serving).fails_with(
        1,
        "is forbidden: can only create a node CSR with CN=system:node:appr-a",
    );
    let as_token = Node {
        dir: tempfile::tempdir().unwrap(),
        root: PathBuf::new(),
        bootstrap: PathBuf::new(),
        name: "appr-token".into(),
    };
    post_csr_with(
        &a.bootstrap,
        &as_token,
        "appr-other-name",
        subj_b,
        "DNS:appr-b",
        &serving,
    )
    .ok();
    post_csr(
        &a,
        "appr-foreign-ip",
        subj_a,
        "DNS:appr-a,IP:10.20.0.2",
        &serving,
    )
    .ok();
    post_csr(
        &a,
        "appr-foreign-dns",
        subj_a,
        "DNS:appr-a.evil.example",
        &serving,
    )
    .ok();
    post_csr(
        &a,
        "appr-client-usage",
        subj_a,
        "DNS:appr-a",
        &["digital signature", "client auth"],
    )
    .ok();
    let approver = spawn_approver(&c, &[]);
    let expected = [
        ("appr-good", "Approved"),
        ("appr-other-name", "Denied"),
        ("appr-foreign-ip", "Denied"),
        ("appr-foreign-dns", "Denied"),
        ("appr-client-usage", "Denied"),
    ];
    for (csr, want) in expected {
        eventually(30, || (decision(&c, csr).0 == want).then_some(()));
    }
    let mut approver = approver;
    let out = terminate(&mut approver);
    assert_eq!(decision(&c, "appr-other-name").1, "Requestor");
    assert_eq!(decision(&c, "appr-foreign-ip").1, "NodeAddresses");
    assert_eq!(decision(&c, "appr-client-usage").1, "Usages");
    // The approved one is signed by the cluster's signer and chains to its CA.
    let cert = eventually(30, || {
        let obj = c.get_json(&["csr", "appr-good"])?;
        obj["status"]["certificate"].as_str().map(String::from)
    });
    use base64::Engine;
    let pem = base64::engine::general_purpose::STANDARD
        .decode(cert)
        .unwrap();
    let file = write_file(
        a.dir.path(),
        "appr-good.crt",
        &String::from_utf8(pem).unwrap(),
    );
    assert!(openssl_verify(&c.ca_crt(), &file));
    let lines = json_lines(&out);
    let decided: Vec<&Value> = lines
        .iter()
        .filter(|l| l["csr"].as_str().is_some_and(|n| n.starts_with("appr-")))
        .collect();
    assert_eq!(
        decided.len(),
        expected.len(),
        "one line per decision: {out}"
    );
}

fn two_leader_elected_approvers_decide_each_csr_once(plane: Plane) {
    let c = plane.own();
    let n = joined_client_only(&c, "lead01.0123456789abcdef", "lead-1");
    register_node(&n, &[("InternalIP", "10.30.0.1"), ("Hostname", "lead-1")]);
    let lease = ["--leader-elect", "--lease-name", "scenario-approver"];
    let mut a = spawn_approver(&c, &[&lease[..], &["--identity", "replica-a"]].concat());
    let holder = || {
        c.get_json(&["lease", "-n", "kube-system", "scenario-approver"])
            .and_then(|l| l["spec"]["holderIdentity"].as_str().map(String::from))
    };
    eventually(20, || {
        (holder().as_deref() == Some("replica-a")).then_some(())
    });
    let b = spawn_approver(&c, &[&lease[..], &["--identity", "replica-b"]].concat());
    let serving = ["digital signature", "server auth"];
    for i in 0..3 {
        post_csr(
            &n,
            &format!("lead-{i}"),
            "/O=system:nodes/CN=system:node:lead-1",
            "DNS:lead-1",
            &serving,
        )
        .ok();
    }
    for i in 0..3 {
        eventually(30, || {
            (decision(&c, &format!("lead-{i}")).0 == "Approved").then_some(())
        });
    }
    std::thread::sleep(Duration::from_millis(500));
    a.kill().unwrap();
    let killed = Instant::now();
    let out_a = a.wait_with_output().unwrap();
    post_csr(
        &n,
        "lead-late",
        "/O=system:nodes/CN=system:node:lead-1",
        "DNS:lead-1",
        &serving,
    )
    .ok();
    eventually(60, || {
        (decision(&c, "lead-late").0 == "Approved").then_some(())
    });
    let took_over = killed.elapsed();
    let mut b = b;
    let out_b = terminate(&mut b);
    let approved = |text: &str| -> Vec<String> {
        json_lines(text)
            .iter()
            .filter(|l| l["decision"] == "approved")
            .filter_map(|l| l["csr"].as_str().map(String::from))
            .filter(|n| n.starts_with("lead-"))
            .collect()
    };
    let (da, db) = (
        approved(&String::from_utf8_lossy(&out_a.stdout)),
        approved(&out_b),
    );
    assert_eq!(da.len(), 3, "the leader decided the first three: {da:?}");
    assert_eq!(db, ["lead-late"], "the standby decided only after it led");
    for i in 0..3 {
        assert_eq!(decision(&c, &format!("lead-{i}")).2, 1, "decided once");
    }
    assert_eq!(holder().as_deref(), Some("replica-b"));
    assert!(
        took_over < Duration::from_secs(45),
        "took over in {took_over:?}"
    );
}

fn killed_while_waiting_for_approval_the_rerun_reattaches_to_the_same_csr(plane: Plane) {
    let c = plane.cluster();
    let node = Node::new(&c, "kill01.0123456789abcdef", "kill-wait-1");
    let mut child = Command::new(bin())
        .args([
            "join",
            "--root",
            s(&node.root),
            "--node-name",
            &node.name,
            "--bootstrap-kubeconfig",
            s(&node.bootstrap),
            "--approval-timeout",
            "60s",
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    // Wait until the serving CSR is pending (the client one was auto-approved), then kill.
    let first = eventually(60, || {
        let v = c.csrs_of("system:node:kill-wait-1");
        v.first()
            .and_then(|x| x["metadata"]["name"].as_str().map(String::from))
    });
    let key_file = node.root.join("var/lib/bootlet/staging/serving.key");
    let key_before = std::fs::read(&key_file).expect("the staged key");
    child.kill().unwrap();
    child.wait().unwrap();
    let _approving = c.approve_serving_of(&node.name);
    let run = node.join(&[]);
    run.ok();
    let after = c.csrs_of("system:node:kill-wait-1");
    assert_eq!(after.len(), 1, "no second serving CSR");
    assert_eq!(after[0]["metadata"]["name"], first.as_str());
    node.assert_usable(&c, &["client", "server"]);
    let text = std::fs::read_to_string(node.current("server")).unwrap();
    let key_now = bootlet::pki::keys::private_key_block(&text).unwrap();
    let before =
        bootlet::pki::keys::PrivateKey::from_pem(&String::from_utf8(key_before).unwrap(), "k")
            .unwrap();
    let now = bootlet::pki::keys::PrivateKey::from_pem(&key_now, "k").unwrap();
    assert_eq!(before.spki_der(), now.spki_der(), "the same key");
}

fn a_node_side_join_costs_five_requests_and_a_forced_renewal_four(plane: Plane) {
    // Its own control plane: anonymous requests are counted, and no other test may send any.
    let c = plane.own();
    let node = Node::new(&c, "econ01.0123456789abcdef", "econ-1");
    let _approving = c.approve_serving_of(&node.name);
    let base_anon = c.requests_by("anonymous");
    node.join(&[]).ok();
    let joined = eventually(10, || {
        let n = c.requests_by("system:bootstrap:econ01") + c.requests_by("system:node:econ-1");
        (n >= 5).then_some(n)
    });
    std::thread::sleep(Duration::from_millis(500));
    let joined_now = c.requests_by("system:bootstrap:econ01") + c.requests_by("system:node:econ-1");
    assert_eq!(
        (joined, joined_now),
        (5, 5),
        "node-side join: create + watch per certificate, and the kubelet-config ConfigMap read"
    );
    assert_eq!(
        c.requests_by("anonymous"),
        base_anon,
        "no anonymous request"
    );
    // On the real control plane, the audit log names bootlet as the sender of each request.
    if let Some(agents) = c.user_agents_of("econ") {
        assert!(
            !agents.is_empty() && agents.iter().all(|a| a.starts_with("bootlet/")),
            "{agents:?}"
        );
    }
    let as_node = c.requests_by("system:node:econ-1");
    node.renew(&["--force"]).ok();
    std::thread::sleep(Duration::from_millis(500));
    let renewed = c.requests_by("system:node:econ-1") - as_node;
    assert_eq!(renewed, 4, "forced renewal: create + watch per certificate");
    assert_eq!(
        c.requests_by("system:bootstrap:econ01"),
        2,
        "the token was not used again"
    );

    // Token discovery adds cluster-info's two anonymous reads.
    let dir = tempfile::tempdir().unwrap();
    let tf = discoverable_token(&c, dir.path(), "econ02.0123456789abcdef");
    let anon_before = c.requests_by("anonymous");
    let _approving2 = c.approve_serving_of("econ-2");
    join_node(
        s(&dir.path().join("node")),
        "econ-2",
        &[
            &c.endpoint(),
            "--token-file",
            s(&tf),
            "--discovery-token-ca-cert-hash",
            &c.pin(),
            "--approval-timeout",
            "60s",
        ],
    )
    .ok();
    std::thread::sleep(Duration::from_millis(500));
    let anon = c.requests_by("anonymous") - anon_before;
    let node_side = c.requests_by("system:bootstrap:econ02") + c.requests_by("system:node:econ-2");
    assert_eq!(
        (node_side, anon),
        (5, 2),
        "token discovery: the join's 5 + 2 anonymous reads"
    );
}

/// PATCHes `node`'s own Node status as its kubelet does (the Node authorizer allows a node to
/// patch, not read, `nodes/status`, so `kubectl patch` cannot: it reads first), with curl.
fn patch_own_status(c: &TestCluster, node: &Node, patch: &Value) {
    let pair = node.current("client");
    let url = format!("{}/api/v1/nodes/{}/status", c.url(), node.name);
    let out = output_ok(
        Command::new("curl")
            .args([
                "-sS",
                "--fail-with-body",
                "-X",
                "PATCH",
                "--cacert",
                s(&c.ca_crt()),
            ])
            .args(["--cert", s(&pair), "--key", s(&pair)])
            .args(["-H", "Content-Type: application/merge-patch+json"])
            .args(["--data", &patch.to_string(), &url]),
    );
    assert_has(&out, "10.50.0.2");
}

/// A client identity with common name `cn` (as the bootstrap flow issues one: a kubelet client CSR
/// sent with `node`'s bootstrap token, approved by the cluster's nodeclient rule and signed), as a
/// kubeconfig in `node`'s directory.
fn client_identity(c: &TestCluster, node: &Node, file: &str, cn: &str) -> PathBuf {
    use base64::Engine;
    let b64 = base64::engine::general_purpose::STANDARD;
    let key = bootlet::pki::keys::PrivateKey::generate().unwrap();
    let pem = bootlet::pki::csr::build(&key, cn, &["system:nodes"], &[], &[]).unwrap();
    let obj = json!({"apiVersion": "certificates.k8s.io/v1", "kind": "CertificateSigningRequest",
        "metadata": {"name": file}, "spec": {"request": b64.encode(pem), "signerName": CLIENT_SIGNER,
        "usages": ["digital signature", "client auth"]}});
    let manifest = write_file(node.dir.path(), &format!("{file}.json"), &obj.to_string());
    kubectl_with(
        &node.bootstrap,
        node.dir.path(),
        &["create", "-f", s(&manifest)],
    )
    .ok();
    let cert = eventually(30, || {
        let obj = c.get_json(&["csr", file])?;
        obj["status"]["certificate"].as_str().map(String::from)
    });
    let cert_pem = String::from_utf8(b64.decode(cert).unwrap()).unwrap();
    let text = bootlet::kubeconfig::render_user(
        "kubernetes",
        &c.url(),
        &c.ca_pem(),
        file,
        "ctx",
        bootlet::kubeconfig::UserSpec::EmbeddedCert {
            cert_pem: &cert_pem,
            key_pem: key.pem(),
        },
    )
    .unwrap();
    write_file(node.dir.path(), &format!("{file}.conf"), &text)
}

/// A serving CSR for `key_args` (openssl's `-newkey` words) with `subj` and `sans`, posted with
/// `kubeconfig`.
fn post_openssl_csr(
    node: &Node,
    kubeconfig: &Path,
    name: &str,
    newkey: &[&str],
    subj: &str,
    sans: &str,
    usages: &[&str],
) -> Run {
    use base64::Engine;
    let dir = node.dir.path();
    let (key, req) = (
        dir.join(format!("{name}.key")),
        dir.join(format!("{name}.csr")),
    );
    output_ok(
        Command::new("openssl")
            .args(["req", "-new", "-newkey"])
            .args(newkey)
            .args([
                "-nodes",
                "-keyout",
                s(&key),
                "-subj",
                subj,
                "-multivalue-rdn",
            ])
            .args([
                "-addext",
                &format!("subjectAltName={sans}"),
                "-out",
                s(&req),
            ]),
    );
    let request = base64::engine::general_purpose::STANDARD.encode(std::fs::read(&req).unwrap());
    let obj = json!({"apiVersion": "certificates.k8s.io/v1", "kind": "CertificateSigningRequest",
        "metadata": {"name": name}, "spec": {"request": request, "signerName": SERVING_SIGNER, "usages": usages}});
    let manifest = write_file(dir, &format!("{name}.json"), &obj.to_string());
    kubectl_with(kubeconfig, dir, &["create", "-f", s(&manifest)])
}

/// Issue 25's attacks on the approver, on both control planes: a node that rewrote its own Node's
/// addresses (NodeRestriction lets it), requestors whose node name is a path or a forged log line,
/// a flood of SANs, two CNs, extra subject attributes, keys and usages; every one is decided with
/// the check that failed, none stops the approver, and its log stays one line per decision.
fn a_node_cannot_talk_the_approver_into_what_it_must_not_sign(plane: Plane) {
    let c = plane.own();
    let a = joined_client_only(&c, "trust1.0123456789abcdef", "trust-a");
    let b = joined_client_only(&c, "trust2.0123456789abcdef", "trust-b");
    register_node(&a, &[("InternalIP", "10.50.0.1"), ("Hostname", "trust-a")]);
    register_node(&b, &[("InternalIP", "10.50.0.2"), ("Hostname", "trust-b")]);
    // The node claims b's address, loopback and a foreign name in its own status.
    let claimed = json!({"status": {"addresses": [
        {"type": "InternalIP", "address": "10.50.0.1"}, {"type": "InternalIP", "address": "10.50.0.2"},
        {"type": "InternalIP", "address": "127.0.0.1"}, {"type": "Hostname", "address": "trust-a"},
        {"type": "InternalDNS", "address": "trust-a.victim.example"}]}});
    patch_own_status(&c, &a, &claimed);
    // What the Node authorizer lets a node read: its own Node, not another's, nor a status.
    a.kubectl(&["get", "node", "trust-a"]).ok();
    a.kubectl(&["get", "node", "trust-b"])
        .fails_with(1, "cannot get resource \"nodes\"");
    a.kubectl(&["get", "nodes"])
        .fails_with(1, "cannot list resource \"nodes\"");
    let conf = a.kubelet_conf();
    let ec = ["ec", "-pkeyopt", "ec_paramgen_curve:P-256"];
    let serving = ["digital signature", "server auth"];
    let subj = "/O=system:nodes/CN=system:node:trust-a";
    let post = |name: &str, newkey: &[&str], subj: &str, sans: &str, usages: &[&str]| {
        post_openssl_csr(&a, &conf, name, newkey, subj, sans, usages).ok();
    };
    post("trust-other-ip", &ec, subj, "IP:10.50.0.2", &serving);
    post("trust-loopback", &ec, subj, "IP:127.0.0.1", &serving);
    post(
        "trust-foreign-dns",
        &ec,
        subj,
        "DNS:trust-a.victim.example",
        &serving,
    );
    post(
        "trust-two-cn",
        &ec,
        "/O=system:nodes/CN=system:node:trust-b/CN=system:node:trust-a",
        "DNS:trust-a",
        &serving,
    );
    post(
        "trust-ou",
        &ec,
        "/O=system:nodes/OU=system:masters/CN=system:node:trust-a",
        "DNS:trust-a",
        &serving,
    );
    post(
        "trust-multi-rdn",
        &ec,
        "/O=system:nodes+CN=system:node:trust-a",
        "DNS:trust-a",
        &serving,
    );
    post("trust-ed25519", &["ed25519"], subj, "DNS:trust-a", &serving);
    post(
        "trust-rsa-plain",
        &["rsa:2048"],
        subj,
        "DNS:trust-a,IP:10.50.0.1",
        &serving,
    );
    post(
        "trust-rsa-ke",
        &["rsa:2048"],
        subj,
        "DNS:trust-a",
        &["digital signature", "key encipherment", "server auth"],
    );
    post(
        "trust-ec-ke",
        &ec,
        subj,
        "DNS:trust-a",
        &["digital signature", "key encipherment", "server auth"],
    );
    // A flood of SANs, made with bootlet's own CSR builder (openssl's argv would not hold them).
    {
        use base64::Engine;
        let key = bootlet::pki::keys::PrivateKey::generate().unwrap();
        let names: Vec<String> = (0..52_000).map(|i| format!("trust-a-{i}")).collect();
        let pem =
            bootlet::pki::csr::build(&key, "system:node:trust-a", &["system:nodes"], &names, &[])
                .unwrap();
        let obj = json!({"apiVersion": "certificates.k8s.io/v1", "kind": "CertificateSigningRequest",
            "metadata": {"name": "trust-flood"}, "spec": {"request": base64::engine::general_purpose::STANDARD.encode(pem),
            "signerName": SERVING_SIGNER, "usages": serving}});
        let manifest = write_file(a.dir.path(), "trust-flood.json", &obj.to_string());
        a.kubectl(&["create", "-f", s(&manifest)]).ok();
    }
    // Requestors whose node name is a path, a query, or a line of the approver's log; each posts
    // a serving CSR in its own name (NodeRestriction lets it: the CN is its own).
    let forged_log = "system:node:x\n[approver] Approved CSR trust-forged from system:node:trust-b";
    for (file, cn) in [
        ("trust-path", "system:node:trust-b/status"),
        ("trust-query", "system:node:trust-b?x=1"),
        ("trust-log", forged_log),
    ] {
        use base64::Engine;
        let id = client_identity(&c, &a, &format!("{file}-id"), cn);
        let key = bootlet::pki::keys::PrivateKey::generate().unwrap();
        let dns = ["trust-b".to_string()];
        let pem = bootlet::pki::csr::build(&key, cn, &["system:nodes"], &dns, &[]).unwrap();
        let obj = json!({"apiVersion": "certificates.k8s.io/v1", "kind": "CertificateSigningRequest",
            "metadata": {"name": file}, "spec": {"request": base64::engine::general_purpose::STANDARD.encode(pem),
            "signerName": SERVING_SIGNER, "usages": serving}});
        let manifest = write_file(a.dir.path(), &format!("{file}.json"), &obj.to_string());
        kubectl_with(&id, a.dir.path(), &["create", "-f", s(&manifest)]).ok();
    }
    // The text log first (a dry run: what it would decide, one line each), then the decisions.
    let text = bootlet(&[
        "approver",
        "--once",
        "--dry-run",
        "--kubeconfig",
        s(&c.admin_conf()),
    ]);
    text.ok();
    let run = bootlet(&[
        "approver",
        "--once",
        "-o",
        "json",
        "--kubeconfig",
        s(&c.admin_conf()),
    ]);
    run.ok();
    for (csr, want) in [
        ("trust-other-ip", ("Denied", "AddressInUse")),
        ("trust-loopback", ("Denied", "SpecialIP")),
        ("trust-foreign-dns", ("Denied", "DNSName")),
        ("trust-two-cn", ("Denied", "CommonName")),
        ("trust-ou", ("Denied", "Subject")),
        ("trust-multi-rdn", ("Denied", "Subject")),
        ("trust-ed25519", ("Denied", "KeyType")),
        ("trust-ec-ke", ("Denied", "Usages")),
        ("trust-flood", ("Denied", "DNSCount")),
        ("trust-rsa-plain", ("Approved", "BootletApproved")),
        ("trust-rsa-ke", ("Approved", "BootletApproved")),
    ] {
        let (ty, reason, n) = decision(&c, csr);
        assert_eq!(
            (ty.as_str(), reason.as_str(), n),
            (want.0, want.1, 1),
            "{csr}\n{}",
            run.stdout
        );
    }
    let flood = c.get_json(&["csr", "trust-flood"]).unwrap();
    let message = flood["status"]["conditions"][0]["message"]
        .as_str()
        .unwrap();
    assert!(
        message.len() <= 1024,
        "a bounded message: {} bytes",
        message.len()
    );
    // The identities with bad node names: denied without a lookup of what their name says.
    for file in ["trust-path", "trust-query", "trust-log"] {
        let (ty, reason, _) = decision(&c, file);
        assert_eq!(
            (ty.as_str(), reason.as_str()),
            ("Denied", "Requestor"),
            "{file}"
        );
    }
    // What the approver approved, the cluster's signer signs as asked (an RSA key without key
    // encipherment included).
    for csr in ["trust-rsa-plain", "trust-rsa-ke"] {
        eventually(30, || {
            let obj = c.get_json(&["csr", csr])?;
            obj["status"]["certificate"].as_str().map(|_| ())
        });
        let conds = c.get_json(&["csr", csr]).unwrap()["status"]["conditions"].to_string();
        assert!(!conds.contains("Failed"), "{csr}: {conds}");
    }
    // One line per CSR in the text log; the forged line is not a line of its own.
    let lines: Vec<&str> = text.stdout.lines().collect();
    assert!(
        !lines
            .iter()
            .any(|l| l.contains("Approved CSR trust-forged") && !l.contains("CSR trust-log")),
        "a CSR printed a line of its own:\n{}",
        text.stdout
    );
    let about_log = lines.iter().filter(|l| l.contains("trust-forged")).count();
    assert_eq!(about_log, 1, "{}", text.stdout);
    assert_has(&text.stdout, "\\n[approver]");
}

/// Issue 26: with `bootlet approver` running as a controller, a node-side join finishes with no
/// hand work. The approver checks a serving CSR against its Node, which only an agent registers,
/// and the agent starts after the join: the join registers the Node itself once its CSR has
/// waited a moment, and the approver decides by it.
fn the_approver_route_finishes_a_join_with_no_hand_work(plane: Plane) {
    let c = plane.own();
    let mut approver = spawn_approver(&c, &["--ip-prefixes", "10.70.0.0/16"]);
    let node = Node::new(&c, "route1.0123456789abcdef", "route-1");
    let run = node.join(&["--node-ip", "10.70.0.1"]);
    let log = terminate(&mut approver);
    run.ok();
    assert_has(
        &run.stdout,
        "Registered Node route-1 (addresses 10.70.0.1, route-1)",
    );
    node.assert_usable(&c, &["client", "server"]);
    let serving = c.csrs_of("system:node:route-1");
    let name = serving[0]["metadata"]["name"].as_str().unwrap();
    assert_eq!(decision(&c, name).1, "BootletApproved", "{log}");
    let registered = c.get_json(&["node", "route-1"]).expect("the Node");
    let addresses = registered["status"]["addresses"].to_string();
    assert_has(&addresses, "10.70.0.1");
    assert_has(&addresses, "Hostname");
    // No kubelet-config ConfigMap here: the join says what it left to the operator.
    assert_has(&run.stdout, "are left to you");
}
