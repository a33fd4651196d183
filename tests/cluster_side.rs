//! The cluster side (issue 11): `bootlet token create|list|delete` against kubectl's view, one-shot
//! joins that leave no token behind, and `bootlet approver`: a real join's serving CSR approved
//! within a second, forged CSRs denied with the check that failed, restarts and leader election
//! deciding each CSR once, and the printed RBAC being the least that works.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::*;
use serde_json::{Value, json};

fn token_secret_names(sb: &TestSandbox) -> Vec<String> {
    sb.sb()
        .list("secrets", "kube-system")
        .into_iter()
        .filter(|s| s["type"] == "bootstrap.kubernetes.io/token")
        .filter_map(|s| s["metadata"]["name"].as_str().map(str::to_string))
        .collect()
}

fn with_kubeconfig(sb: &TestSandbox, args: &[&str]) -> Run {
    let mut all = args.to_vec();
    let conf = sb.admin_conf();
    all.extend_from_slice(&["--kubeconfig", s(&conf)]);
    bootlet(&all)
}

#[test]
fn token_create_list_and_delete_match_kubectl_and_a_deleted_token_stops_authenticating() {
    let sb = TestSandbox::start();
    let made = with_kubeconfig(
        &sb,
        &[
            "token",
            "create",
            "--ttl",
            "2h",
            "--description",
            "edge batch 7",
        ],
    );
    made.ok();
    let token = made.stdout.trim().to_string();
    let parsed = bootlet::token::BootstrapToken::parse(&token).expect("the output is the token");
    remember_secrets(&token);
    // The Secret exactly as kubeadm encodes it.
    let secret = sb
        .sb()
        .get("secrets", "kube-system", &parsed.secret_name())
        .unwrap();
    let d = |k: &str| secret_text(&secret, k);
    assert_eq!(secret["type"], "bootstrap.kubernetes.io/token");
    assert_eq!(
        (
            d("token-id"),
            d("description"),
            d("usage-bootstrap-signing"),
            d("usage-bootstrap-authentication")
        ),
        (
            parsed.id().to_string(),
            "edge batch 7".into(),
            "true".into(),
            "true".into()
        )
    );
    assert_eq!(
        d("auth-extra-groups"),
        "system:bootstrappers:kubeadm:default-node-token"
    );
    let keys: Vec<&String> = secret["data"].as_object().unwrap().keys().collect();
    assert_eq!(keys.len(), 7, "{keys:?}");

    let join = with_kubeconfig(
        &sb,
        &[
            "token",
            "create",
            "--print-join-command",
            "--ttl",
            "0",
            "--usages",
            "authentication",
        ],
    );
    join.ok();
    let line = join.stdout.trim();
    // The secret rides in the environment, never in bootlet's argv (`ps` shows argv to all).
    assert!(line.starts_with("BOOTLET_TOKEN="), "{line}");
    assert!(
        line.contains(&format!(
            " bootlet join {} --discovery-token-ca-cert-hash",
            sb.endpoint()
        )),
        "{line}"
    );
    assert_lacks(line, "--token");
    assert!(
        line.ends_with(&format!("--discovery-token-ca-cert-hash {}", sb.pin())),
        "{line}"
    );
    remember_secrets(line);
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("join-token");
    let quiet = with_kubeconfig(&sb, &["token", "create", "--token-file", s(&file)]);
    quiet.ok();
    assert!(
        quiet.stdout.is_empty(),
        "nothing printed with --token-file: {}",
        quiet.stdout
    );
    assert_eq!(mode(&file), 0o600);
    remember_secrets(&std::fs::read_to_string(&file).unwrap());

    // list = what kubectl sees, expiry included, secrets redacted.
    let list = with_kubeconfig(&sb, &["token", "list", "-o", "json"]);
    list.ok();
    let rows: Value = serde_json::from_str(&list.stdout).unwrap();
    let mut ids: Vec<String> = rows["tokens"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["id"].as_str().unwrap().to_string())
        .collect();
    ids.sort();
    let kubectl = sb.kubectl(&[
        "-n",
        "kube-system",
        "get",
        "secrets",
        "--field-selector",
        "type=bootstrap.kubernetes.io/token",
        "-o",
        "jsonpath={range .items[*]}{.metadata.name}{\"\\n\"}{end}",
    ]);
    let mut seen: Vec<String> = kubectl
        .stdout
        .lines()
        .map(|n| n.trim_start_matches("bootstrap-token-").to_string())
        .collect();
    seen.sort();
    assert_eq!(ids, seen);
    let row = rows["tokens"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["id"] == parsed.id())
        .unwrap();
    assert_eq!(row["expires"].as_str().unwrap(), d("expiration"));
    assert_eq!(row["ttl"], "1h", "two hours less a moment: {row}");
    let forever = rows["tokens"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["expires"].is_null())
        .unwrap();
    assert_eq!(forever["ttl"], "<forever>");
    let table = with_kubeconfig(&sb, &["token", "list"]);
    assert!(table.stdout.starts_with("TOKEN"), "{}", table.stdout);
    assert!(
        table
            .stdout
            .contains(&format!("{}.<redacted>", parsed.id()))
    );
    assert!(table.stdout.contains("edge batch 7"));
    // An expired token is flagged.
    sb.add_token(
        "oldold.0123456789abcdef",
        Some("2020-01-01T00:00:00Z"),
        &["authentication"],
    );
    let flagged = with_kubeconfig(&sb, &["token", "list", "-o", "json"]);
    let rows: Value = serde_json::from_str(&flagged.stdout).unwrap();
    let old = rows["tokens"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["id"] == "oldold")
        .cloned()
        .unwrap_or_default();
    // (the token cleaner may already have removed it: it is flagged while it lasts)
    if !old.is_null() {
        assert_eq!(old["expired"], true);
        assert_eq!(old["ttl"], "<invalid>");
    }

    let (code, _) = sb.json(Who::Bearer(&token), "GET", "/api", None);
    assert_eq!(code, 200, "the token authenticates");
    with_kubeconfig(&sb, &["token", "delete", parsed.id(), "nosuch"])
        .fails_with(2, "no bootstrap token with id nosuch; nothing was deleted");
    assert!(
        sb.sb()
            .get("secrets", "kube-system", &parsed.secret_name())
            .is_some(),
        "nothing deleted"
    );
    let gone = with_kubeconfig(&sb, &["token", "delete", &token]);
    gone.ok();
    assert!(
        gone.stdout
            .contains(&format!("bootstrap token \"{}\" deleted", parsed.id()))
    );
    assert!(
        sb.sb()
            .get("secrets", "kube-system", &parsed.secret_name())
            .is_none()
    );
    // As kube-apiserver, a success is cached for 10 s (TokenSuccessCacheTTL): the deleted token
    // still works that long after its last use, and then no more.
    let deleted = std::time::Instant::now();
    let (code, _) = sb.json(Who::Bearer(&token), "GET", "/api", None);
    assert_eq!(code, 200, "still cached");
    eventually(15, || {
        (sb.json(Who::Bearer(&token), "GET", "/api", None).0 == 401).then_some(())
    });
    assert!(
        deleted.elapsed() < std::time::Duration::from_secs(12),
        "refused once the cache forgot it"
    );
    with_kubeconfig(&sb, &["token", "create", "--usages", "root"]).fails_with(2, "unknown usage");
}

/// bootlet builds its own HTTP stack under kube's client (docs/decisions.md): the kubeconfig's
/// `tls-server-name` must still be the name the server's certificate is checked against.
#[test]
fn an_admin_kubeconfigs_tls_server_name_is_the_name_the_certificate_is_checked_against() {
    let sb = TestSandbox::start();
    let dir = tempfile::tempdir().unwrap();
    let admin = std::fs::read_to_string(sb.admin_conf()).unwrap();
    let server_line = format!("    server: {}\n", sb.url());
    assert!(admin.contains(&server_line), "{admin}");
    let named = |name: &str| {
        let text = admin.replace(
            &server_line,
            &format!("{server_line}    tls-server-name: {name}\n"),
        );
        write_file(dir.path(), &format!("admin-{name}.conf"), &text)
    };
    let requests =
        |sb: &TestSandbox| -> u64 { sb.sb().counters().values().flat_map(|v| v.values()).sum() };
    // A name the sandbox's certificate carries (besides 127.0.0.1): listed.
    let right = bootlet(&["token", "list", "--kubeconfig", s(&named("kubernetes"))]);
    assert_eq!(right.code, 0, "{}", right.stderr);
    assert_starts(&right.stdout, "TOKEN");
    // A name it does not carry: refused at the handshake, before the admin's credentials go out.
    let before = requests(&sb);
    let wrong = bootlet(&["token", "list", "--kubeconfig", s(&named("wrong.example"))]);
    wrong.fails_with(5, "failed verification against the trusted CA");
    assert_has(&wrong.stderr, "no credential was sent");
    assert_eq!(requests(&sb), before, "a request reached the server");
}

/// An EKS- or GKE-style admin kubeconfig gets its credential from a plugin bootlet does not run.
/// It used to become an anonymous user and a 403 that named `system:anonymous`.
#[test]
fn an_admin_kubeconfig_with_an_exec_plugin_is_refused_by_name_before_any_request() {
    let sb = TestSandbox::start();
    let dir = tempfile::tempdir().unwrap();
    let admin = std::fs::read_to_string(sb.admin_conf()).unwrap();
    let users = admin.find("users:").expect("a users section");
    let exec = format!(
        "{}users:\n- name: kubernetes-admin\n  user:\n    exec:\n      apiVersion: client.authentication.k8s.io/v1\n      command: aws\n      args: [eks, get-token]\n",
        &admin[..users]
    );
    let conf = write_file(dir.path(), "exec.conf", &exec);
    let requests =
        |sb: &TestSandbox| -> u64 { sb.sb().counters().values().flat_map(|v| v.values()).sum() };
    let before = requests(&sb);
    let list = bootlet(&["token", "list", "--kubeconfig", s(&conf)]);
    list.fails_with(4, "authenticates with an exec credential plugin (aws)");
    let root = dir.path().join("node");
    let join = join_node(s(&root), "n", &["--admin-kubeconfig", s(&conf)]);
    join.fails_with(4, "exec credential plugin (aws)");
    assert_eq!(requests(&sb), before, "a request reached the server");
    assert!(
        !root.join("etc/kubernetes").exists(),
        "the join wrote files"
    );
}

#[test]
fn repeated_one_shot_joins_leave_no_token_secret_behind() {
    let sb = TestSandbox::start();
    let before = token_secret_names(&sb);
    for i in 0..5 {
        let root = tempfile::tempdir().unwrap();
        let run = join_node(
            s(root.path()),
            &format!("oneshot-{i}"),
            &[
                "--admin-kubeconfig",
                s(&sb.admin_conf()),
                "--approve-serving",
                "--approval-timeout",
                "20s",
            ],
        );
        run.ok();
        assert!(run.stdout.contains("this join created"), "{}", run.stdout);
        assert_has(&run.stdout, "Approved this node's serving CSR");
        assert_eq!(token_secret_names(&sb), before, "after join {i}");
        // A rerun is a no-op and still leaves nothing.
        let again = join_node(
            s(root.path()),
            &format!("oneshot-{i}"),
            &["--admin-kubeconfig", s(&sb.admin_conf())],
        );
        again.ok();
        assert_has(&again.stdout, "[write-files] already done");
    }
    let root = tempfile::tempdir().unwrap();
    join_node(
        s(root.path()),
        "kept",
        &[
            "--admin-kubeconfig",
            s(&sb.admin_conf()),
            "--approve-serving",
            "--keep-token",
        ],
    )
    .ok();
    assert_eq!(
        token_secret_names(&sb).len(),
        before.len() + 1,
        "--keep-token keeps it"
    );
}

/// A kubeconfig for a node identity (a client certificate from the sandbox CA).
fn node_kubeconfig(sb: &TestSandbox, dir: &Path, node: &str) -> PathBuf {
    let access = sb.access(Who::Cert(&format!("system:node:{node}"), &["system:nodes"]));
    let bootlet::kubeconfig::Credentials::ClientCert { cert_pem, key_pem } = &access.credentials
    else {
        unreachable!()
    };
    let text = bootlet::kubeconfig::render_user(
        "kubernetes",
        &sb.url(),
        sb.sb().ca_pem().as_bytes(),
        node,
        "ctx",
        bootlet::kubeconfig::UserSpec::EmbeddedCert { cert_pem, key_pem },
    )
    .unwrap();
    let p = dir.join(format!("{node}.conf"));
    std::fs::write(&p, text).unwrap();
    p
}

/// A serving-CSR manifest made with openssl: `subj` like `/O=system:nodes/CN=system:node:x`.
fn forged_csr(dir: &Path, name: &str, subj: &str, sans: &str, usages: &[&str]) -> PathBuf {
    let req = openssl_req(dir, name, subj, Some(sans));
    use base64::Engine;
    let request = base64::engine::general_purpose::STANDARD.encode(std::fs::read(&req).unwrap());
    let manifest = dir.join(format!("{name}.yaml"));
    std::fs::write(&manifest, format!(
        "apiVersion: certificates.k8s.io/v1\nkind: CertificateSigningRequest\nmetadata:\n  name: {name}\nspec:\n  request: {request}\n  signerName: kubernetes.io/kubelet-serving\n  usages: {}\n",
        serde_json::to_string(usages).unwrap()
    )).unwrap();
    manifest
}

fn put_node(sb: &TestSandbox, name: &str, addresses: &[(&str, &str)]) {
    let addrs: Vec<Value> = addresses
        .iter()
        .map(|(t, a)| json!({"type": t, "address": a}))
        .collect();
    sb.sb().put("nodes", "", json!({"apiVersion": "v1", "kind": "Node", "metadata": {"name": name}, "status": {"addresses": addrs}}));
}

fn condition(sb: &TestSandbox, csr: &str) -> (String, String, usize) {
    let obj = sb.sb().get("certificatesigningrequests", "", csr).unwrap();
    let conds = obj["status"]["conditions"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    let decided: Vec<&Value> = conds
        .iter()
        .filter(|c| c["type"] == "Approved" || c["type"] == "Denied")
        .collect();
    match decided.first() {
        Some(c) => (
            c["type"].as_str().unwrap().into(),
            c["reason"].as_str().unwrap_or_default().into(),
            decided.len(),
        ),
        None => ("Pending".into(), String::new(), 0),
    }
}

fn approver_once(sb: &TestSandbox, extra: &[&str]) -> Vec<Value> {
    let conf = sb.admin_conf();
    let mut args = vec!["approver", "--once", "-o", "json", "--kubeconfig", s(&conf)];
    args.extend_from_slice(extra);
    let run = bootlet(&args);
    run.ok();
    run.stdout
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter(|v| v["csr"].is_string())
        .collect()
}

#[test]
fn forged_serving_csrs_are_denied_with_the_check_that_failed_and_restarts_decide_nothing_twice() {
    let sb = TestSandbox::start();
    let dir = tempfile::tempdir().unwrap();
    put_node(&sb, "f1", &[("InternalIP", "10.0.0.5"), ("Hostname", "f1")]);
    let conf = node_kubeconfig(&sb, dir.path(), "f1");
    // Another node's name never gets this far: NodeRestriction refuses it at create, as the real
    // API server does (admitCSR).
    let other = forged_csr(
        dir.path(),
        "other-cn",
        "/O=system:nodes/CN=system:node:f2",
        "DNS:f2",
        &["digital signature", "server auth"],
    );
    kubectl_with(&conf, dir.path(), &["create", "-f", s(&other)]).fails_with(
        1,
        "is forbidden: can only create a node CSR with CN=system:node:f1",
    );
    let cases: [(&str, &str, &str, &[&str], &str); 7] = [
        (
            "good",
            "/O=system:nodes/CN=system:node:f1",
            "DNS:f1,IP:10.0.0.5",
            &["digital signature", "server auth"],
            "BootletApproved",
        ),
        (
            "bad-dns",
            "/O=system:nodes/CN=system:node:f1",
            "DNS:f1.evil.org",
            &["digital signature", "server auth"],
            "DNSRegex",
        ),
        (
            "bad-ip",
            "/O=system:nodes/CN=system:node:f1",
            "IP:192.168.7.7",
            &["digital signature", "server auth"],
            "IPPrefix",
        ),
        (
            "extra-o",
            "/O=system:nodes/O=system:masters/CN=system:node:f1",
            "DNS:f1",
            &["digital signature", "server auth"],
            "Organization",
        ),
        (
            "client-auth",
            "/O=system:nodes/CN=system:node:f1",
            "DNS:f1",
            &["digital signature", "server auth", "client auth"],
            "Usages",
        ),
        (
            "foreign-ip",
            "/O=system:nodes/CN=system:node:f1",
            "IP:10.0.0.6",
            &["digital signature", "server auth"],
            "NodeAddresses",
        ),
        (
            "two-dns",
            "/O=system:nodes/CN=system:node:f1",
            "DNS:f1,DNS:f1.cluster.local",
            &["digital signature", "server auth"],
            "DNSCount",
        ),
    ];
    for (name, subj, sans, usages, _) in &cases {
        let m = forged_csr(dir.path(), name, subj, sans, usages);
        let r = kubectl_with(&conf, dir.path(), &["create", "-f", s(&m)]);
        assert_eq!(r.code, 0, "the node posts {name}: {}", r.stderr);
    }
    let policy = [
        "--dns-regex",
        r"^[a-z0-9-]+(\.cluster\.local)?$",
        "--ip-prefixes",
        "10.0.0.0/8",
    ];
    let decisions = approver_once(&sb, &policy);
    for (name, _, _, _, reason) in &cases {
        let (ty, got, count) = condition(&sb, name);
        assert_eq!(got, *reason, "{name}: {ty}");
        assert_eq!(count, 1, "{name}: one decision");
        assert_eq!(
            ty,
            if *reason == "BootletApproved" {
                "Approved"
            } else {
                "Denied"
            },
            "{name}"
        );
        let line = decisions
            .iter()
            .find(|d| d["csr"] == *name)
            .unwrap_or_else(|| panic!("{name} logged"));
        if *reason != "BootletApproved" {
            assert_eq!(line["check"], *reason);
            assert!(!line["message"].as_str().unwrap().is_empty());
        }
    }
    let msg = sb
        .kubectl(&[
            "get",
            "csr",
            "bad-dns",
            "-o",
            "jsonpath={.status.conditions[0].message}",
        ])
        .stdout;
    assert!(
        msg.contains("\"f1.evil.org\" does not match --dns-regex"),
        "the condition explains itself: {msg}"
    );
    // A restart decides nothing again.
    assert!(approver_once(&sb, &policy).is_empty(), "already decided");
    for (name, ..) in &cases {
        assert_eq!(condition(&sb, name).2, 1, "{name}");
    }
    // No Node yet: pending (waiting), or denied with --require-node; --dry-run writes nothing.
    let m = forged_csr(
        dir.path(),
        "nonode",
        "/O=system:nodes/CN=system:node:f9",
        "DNS:f9",
        &["digital signature", "server auth"],
    );
    kubectl_with(
        &node_kubeconfig(&sb, dir.path(), "f9"),
        dir.path(),
        &["create", "-f", s(&m)],
    )
    .ok();
    let waiting = approver_once(&sb, &[]);
    assert_eq!(waiting[0]["decision"], "waiting", "{waiting:?}");
    assert_eq!(condition(&sb, "nonode").0, "Pending");
    let dry = approver_once(&sb, &["--require-node", "--dry-run"]);
    assert_eq!(
        (dry[0]["decision"].as_str(), dry[0]["dry_run"].as_bool()),
        (Some("denied"), Some(true))
    );
    assert_eq!(
        condition(&sb, "nonode").0,
        "Pending",
        "dry-run changed nothing"
    );
    approver_once(&sb, &["--require-node"]);
    assert_eq!(condition(&sb, "nonode").1, "NodeMissing");
}

fn spawn_approver(sb: &TestSandbox, extra: &[&str]) -> Child {
    Command::new(bin())
        .args([
            "approver",
            "-o",
            "json",
            "--kubeconfig",
            s(&sb.admin_conf()),
        ])
        .args(extra)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap()
}

fn stop(mut child: Child) -> Vec<Value> {
    let _ = rustix::process::kill_process(
        rustix::process::Pid::from_child(&child),
        rustix::process::Signal::TERM,
    );
    let deadline = Instant::now() + Duration::from_secs(5);
    while child.try_wait().unwrap().is_none() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
    let _ = child.kill();
    let out = child.wait_with_output().unwrap();
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect()
}

#[test]
fn a_real_joins_serving_csr_is_approved_within_a_second() {
    let sb = TestSandbox::start();
    put_node(
        &sb,
        "edge-a",
        &[("InternalIP", "10.7.0.1"), ("Hostname", "edge-a")],
    );
    let approver = spawn_approver(&sb, &[]);
    std::thread::sleep(Duration::from_millis(500));
    let (_dir, bootstrap, root) = sb.token_node("apprv1.0123456789abcdef");
    let args = [
        "join",
        "--root",
        s(&root),
        "--node-name",
        "edge-a",
        "--bootstrap-kubeconfig",
        s(&bootstrap),
        "--node-ip",
        "10.7.0.1",
        "--approval-timeout",
        "20s",
    ];
    let join = std::thread::spawn({
        let args: Vec<String> = args.iter().map(|a| a.to_string()).collect();
        move || {
            let args: Vec<&str> = args.iter().map(String::as_str).collect();
            bootlet(&args)
        }
    });
    let seen = Instant::now() + Duration::from_secs(20);
    let (name, created) = loop {
        let csrs = sb.csrs_of("system:node:edge-a");
        if let Some(c) = csrs.first() {
            break (
                c["metadata"]["name"].as_str().unwrap().to_string(),
                Instant::now(),
            );
        }
        assert!(Instant::now() < seen, "no serving CSR");
        std::thread::sleep(Duration::from_millis(10));
    };
    while condition(&sb, &name).0 == "Pending" {
        assert!(
            created.elapsed() < Duration::from_secs(1),
            "approved within a second of creation"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
    join.join().unwrap().ok();
    let lines = stop(approver);
    assert!(
        lines
            .iter()
            .any(|l| l["csr"] == name.as_str() && l["decision"] == "approved"),
        "{lines:?}"
    );
}

#[test]
fn two_leader_elected_replicas_decide_each_csr_once_and_the_standby_takes_over() {
    let sb = TestSandbox::start();
    let dir = tempfile::tempdir().unwrap();
    put_node(&sb, "l1", &[("InternalIP", "10.1.0.1"), ("Hostname", "l1")]);
    let conf = node_kubeconfig(&sb, dir.path(), "l1");
    let a = spawn_approver(&sb, &["--leader-elect", "--identity", "replica-a"]);
    std::thread::sleep(Duration::from_millis(700));
    let b = spawn_approver(&sb, &["--leader-elect", "--identity", "replica-b"]);
    let lease = eventually(10, || {
        sb.sb().get("leases", "kube-system", "bootlet-approver")
    });
    assert_eq!(lease["spec"]["holderIdentity"], "replica-a", "{lease}");
    for i in 0..4 {
        let m = forged_csr(
            dir.path(),
            &format!("le-{i}"),
            "/O=system:nodes/CN=system:node:l1",
            "DNS:l1",
            &["digital signature", "server auth"],
        );
        kubectl_with(&conf, dir.path(), &["create", "-f", s(&m)]).ok();
    }
    for i in 0..4 {
        eventually(10, || {
            (condition(&sb, &format!("le-{i}")).0 == "Approved").then_some(())
        });
    }
    // The leader prints its decision just after the approval lands; give that line time to
    // reach the pipe before the kill, or the count below races the print.
    std::thread::sleep(Duration::from_millis(500));
    // The leader dies without a word; the standby takes the Lease once it has expired.
    let mut a = a;
    a.kill().unwrap();
    let out_a = a.wait_with_output().unwrap();
    let lines_a: Vec<Value> = String::from_utf8_lossy(&out_a.stdout)
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect();
    let m = forged_csr(
        dir.path(),
        "le-late",
        "/O=system:nodes/CN=system:node:l1",
        "DNS:l1",
        &["digital signature", "server auth"],
    );
    kubectl_with(&conf, dir.path(), &["create", "-f", s(&m)]).ok();
    eventually(40, || {
        (condition(&sb, "le-late").0 == "Approved").then_some(())
    });
    let lines_b = stop(b);
    let decided = |lines: &[Value]| -> Vec<String> {
        lines
            .iter()
            .filter(|l| l["decision"] == "approved")
            .map(|l| l["csr"].as_str().unwrap().to_string())
            .collect()
    };
    let (da, db) = (decided(&lines_a), decided(&lines_b));
    assert_eq!(da.len(), 4, "the leader decided the first four: {da:?}");
    assert_eq!(
        db,
        ["le-late"],
        "the standby decided nothing until it led: {db:?}"
    );
    for i in 0..4 {
        assert_eq!(condition(&sb, &format!("le-{i}")).2, 1);
    }
    assert!(
        lines_b.iter().any(|l| l["leader_election"]
            .as_str()
            .is_some_and(|m| m.contains("Became the leader"))),
        "{lines_b:?}"
    );
    assert_eq!(
        sb.sb()
            .get("leases", "kube-system", "bootlet-approver")
            .unwrap()["spec"]["holderIdentity"],
        "replica-b"
    );
}

#[test]
fn the_printed_rbac_applies_with_kubectl_and_is_enough_and_needed() {
    let sb = TestSandbox::start();
    let dir = tempfile::tempdir().unwrap();
    let rbac = bootlet(&["approver", "--print-rbac"]);
    rbac.ok();
    let f = dir.path().join("rbac.yaml");
    std::fs::write(&f, &rbac.stdout).unwrap();
    let applied = sb.kubectl(&["apply", "-f", s(&f)]);
    assert_eq!(applied.code, 0, "{}", applied.stderr);
    assert!(
        applied
            .stdout
            .contains("clusterrole.rbac.authorization.k8s.io/bootlet-approver created"),
        "{}",
        applied.stdout
    );
    let token = sb
        .kubectl(&["-n", "kube-system", "create", "token", "bootlet-approver"])
        .stdout
        .trim()
        .to_string();
    remember_secrets(&token);
    let conf = dir.path().join("approver.conf");
    use base64::Engine;
    std::fs::write(&conf, format!(
        "apiVersion: v1\nkind: Config\nclusters:\n- name: c\n  cluster:\n    server: {}\n    certificate-authority-data: {}\nusers:\n- name: u\n  user:\n    token: {token}\ncontexts:\n- name: x\n  context:\n    cluster: c\n    user: u\ncurrent-context: x\n",
        sb.url(),
        base64::engine::general_purpose::STANDARD.encode(sb.sb().ca_pem())
    )).unwrap();
    put_node(&sb, "r1", &[("Hostname", "r1")]);
    let m = forged_csr(
        dir.path(),
        "rbac-csr",
        "/O=system:nodes/CN=system:node:r1",
        "DNS:r1",
        &["digital signature", "server auth"],
    );
    kubectl_with(
        &node_kubeconfig(&sb, dir.path(), "r1"),
        dir.path(),
        &["create", "-f", s(&m)],
    )
    .ok();
    bootlet(&[
        "approver",
        "--once",
        "--leader-elect",
        "--kubeconfig",
        s(&conf),
    ])
    .ok();
    assert_eq!(
        condition(&sb, "rbac-csr").0,
        "Approved",
        "the printed RBAC is enough, leader election included"
    );
    // And needed: without the cluster binding, the approver is refused.
    sb.kubectl(&["delete", "clusterrolebinding", "bootlet-approver"])
        .ok();
    let m = forged_csr(
        dir.path(),
        "rbac-csr-2",
        "/O=system:nodes/CN=system:node:r1",
        "DNS:r1",
        &["digital signature", "server auth"],
    );
    kubectl_with(
        &node_kubeconfig(&sb, dir.path(), "r1"),
        dir.path(),
        &["create", "-f", s(&m)],
    )
    .ok();
    bootlet(&["approver", "--once", "--kubeconfig", s(&conf)]).fails_with(6, "forbade");
    assert_eq!(condition(&sb, "rbac-csr-2").0, "Pending");
}
