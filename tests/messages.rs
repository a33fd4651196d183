//! What bootlet says when something is off (issue 25, "Messages"): each line names what happened
//! and what to do, in one sentence that reads as one. Each test pins one message.

mod common;

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::*;

/// A web server that is not Kubernetes: Python's http.server on a free loopback port, plain or
/// behind TLS with a self-signed certificate. Stopped when dropped.
struct NotKubernetes {
    child: Child,
    port: u16,
    _dir: tempfile::TempDir,
}

impl NotKubernetes {
    fn start(tls: bool) -> NotKubernetes {
        let dir = tempfile::tempdir().unwrap();
        let (cert, key) = (dir.path().join("c.pem"), dir.path().join("k.pem"));
        if tls {
            output_ok(
                Command::new("openssl")
                    .args(["req", "-x509", "-newkey", "ec", "-pkeyopt"])
                    .args(["ec_paramgen_curve:P-256", "-nodes", "-days", "1"])
                    .args([
                        "-subj",
                        "/CN=localhost",
                        "-keyout",
                        s(&key),
                        "-out",
                        s(&cert),
                    ]),
            );
        }
        let script = format!(
            r#"
import http.server, socket, ssl, sys
srv = http.server.HTTPServer(("127.0.0.1", 0), http.server.SimpleHTTPRequestHandler)
if {tls}:
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain("{cert}", "{key}")
    srv.socket = ctx.wrap_socket(srv.socket, server_side=True)
print(srv.server_address[1], flush=True)
srv.serve_forever()
"#,
            tls = if tls { "True" } else { "False" },
            cert = cert.display(),
            key = key.display()
        );
        let mut child = Command::new("python3")
            .args(["-c", &script])
            .current_dir(dir.path())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("python3 runs");
        use std::io::BufRead;
        let mut line = String::new();
        std::io::BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        NotKubernetes {
            port: line.trim().parse().expect("a port"),
            child,
            _dir: dir,
        }
    }

    fn endpoint(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }
}

impl Drop for NotKubernetes {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A token-discovery join against `endpoint` (no pin needed to reach the first answer).
fn discover(endpoint: &str, root: &Path) -> Run {
    join_node(
        s(root),
        "msg-1",
        &[
            endpoint,
            "--token",
            "abcdef.0123456789abcdef",
            "--discovery-token-unsafe-skip-ca-verification",
            "--discovery-timeout",
            "60s",
        ],
    )
}

#[test]
fn a_web_server_that_is_not_kubernetes_is_named_as_such_at_once() {
    let (_w, root) = work_root();
    for tls in [true, false] {
        let server = NotKubernetes::start(tls);
        let started = Instant::now();
        let run = discover(&server.endpoint(), &root);
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "no wait for the whole timeout (tls {tls}):\n{}",
            run.all()
        );
        assert_ne!(run.code, 0);
        let line = run.error_line();
        if tls {
            assert_has(&line, "is not a Kubernetes API server");
            assert_has(&line, "check the endpoint");
            assert_lacks(&line, "Failed to parse error data");
            assert_lacks(&line, "Error deserializing");
        } else {
            assert_has(&line, "does not speak TLS");
            assert_has(&line, "usually 6443");
            assert_lacks(&line, "InvalidContentType");
        }
        assert!(!root.join("etc/kubernetes").exists(), "nothing written");
    }
}

#[test]
fn an_unknown_token_is_named_without_waiting_for_the_whole_timeout() {
    let sb = TestSandbox::start();
    // Another token's signature in cluster-info shows the cluster's bootstrap signer at work.
    sb.new_token("signed.0123456789abcdef");
    eventually(10, || {
        let ci = sb.sb().get("configmaps", "kube-public", "cluster-info")?;
        ci["data"]["jws-kubeconfig-signed"].as_str().map(|_| ())
    });
    let (_w, root) = work_root();
    let started = Instant::now();
    let run = join_node(
        s(&root),
        "msg-2",
        &[
            &sb.endpoint(),
            "--token",
            "nosuch.0123456789abcdef",
            "--discovery-token-ca-cert-hash",
            &sb.pin(),
        ],
    );
    let took = started.elapsed();
    run.fails_with(7, "is not known to this cluster");
    assert_has(&run.error_line(), "bootlet token create");
    assert!(
        took < Duration::from_secs(60),
        "well inside the 5-minute discovery timeout: {took:?}"
    );
    assert_has(
        &run.stdout,
        "Waiting for cluster-info to be signed for token id nosuch",
    );
}

#[test]
fn token_list_prints_a_description_as_one_cell() {
    let sb = TestSandbox::start();
    let conf = sb.admin_conf();
    let description = "line one\nfake-row  24h  \x1b[31mred";
    bootlet(&[
        "token",
        "create",
        "--kubeconfig",
        s(&conf),
        "--description",
        description,
        "--token-file",
        s(&sb.dir.path().join("t")),
    ])
    .ok();
    remember_secrets(&std::fs::read_to_string(sb.dir.path().join("t")).unwrap());
    let list = bootlet(&["token", "list", "--kubeconfig", s(&conf)]);
    list.ok();
    assert_eq!(
        list.stdout.lines().count(),
        2,
        "a header and one row:\n{}",
        list.stdout
    );
    assert_lacks(&list.stdout, "\x1b");
    assert_has(&list.stdout, "line one\\nfake-row");
}

#[test]
fn ca_pin_prints_only_the_pin_on_stdout() {
    let sb = TestSandbox::start();
    let run = bootlet(&["ca-pin", s(&sb.ca_crt())]);
    run.ok();
    assert_eq!(
        run.stdout.trim(),
        sb.pin(),
        "passable as $(bootlet ca-pin ca.crt)"
    );
    assert_has(&run.stderr, "(CN=");
}

#[test]
fn graph_takes_the_workflow_as_plan_does_and_completion_offers_phase_names() {
    let g = bootlet(&["graph", "renew"]);
    g.ok();
    assert_has(&g.stdout, "client-csr");
    assert_lacks(&g.stdout, "discovery");
    bootlet(&["graph", "--workflow", "reset"]).ok();
    let bash = bootlet(&["completions", "bash"]);
    bash.ok();
    let phase_case = bash
        .stdout
        .split("bootlet__subcmd__phase)")
        .nth(1)
        .expect("a phase section");
    let opts = phase_case
        .lines()
        .find(|l| l.contains("opts="))
        .unwrap_or_default();
    for name in ["preflight", "client-csr", "serving-csr", "cleanup-node"] {
        assert_has(opts, name);
    }
}

#[test]
fn a_dry_run_leaves_no_throwaway_keys_behind_unless_asked() {
    let (w, root) = work_root();
    let discovery = offline_discovery_file(w.path());
    let tf = write_file(w.path(), "token", "abcdef.0123456789abcdef");
    let args = |extra: &[&'static str]| -> Vec<String> {
        let mut v: Vec<String> = [
            "join",
            "--root",
            s(&root),
            "--node-name",
            "dry-1",
            "--dry-run",
            "--discovery-file",
            s(&discovery),
            "--token-file",
            s(&tf),
            "--node-ip",
            "10.1.2.3",
        ]
        .iter()
        .map(|a| a.to_string())
        .collect();
        v.extend(extra.iter().map(|a| a.to_string()));
        v
    };
    let dir_of = |run: &Run| -> String {
        run.stdout
            .split_whitespace()
            .find(|w| w.contains("/bootlet-dry-run-"))
            .expect("the run names its dry-run directory")
            .trim_end_matches([',', ')'])
            .to_string()
    };
    let plain = args(&[]);
    let run = bootlet(&plain.iter().map(String::as_str).collect::<Vec<_>>());
    run.ok();
    let dir = dir_of(&run);
    assert!(!Path::new(&dir).exists(), "{dir} removed");
    assert_has(&run.stdout, "--keep-dry-run-dir");
    let kept = args(&["--keep-dry-run-dir"]);
    let run = bootlet(&kept.iter().map(String::as_str).collect::<Vec<_>>());
    run.ok();
    let dir = dir_of(&run);
    assert!(Path::new(&dir).join("bootlet-report.json").exists());
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn reset_dry_run_names_each_removal_once_as_it_goes_and_once_in_the_audit() {
    let sb = TestSandbox::auto_serving();
    let (_dir, bootstrap, root) = sb.token_node("msgrst.0123456789abcdef");
    bootstrap_join(s(&root), "msg-reset", &bootstrap, &[]).ok();
    let run = bootlet(&["reset", "--root", s(&root), "--dry-run"]);
    run.ok();
    let kubelet_conf = run
        .stdout
        .lines()
        .filter(|l| l.contains("/etc/kubernetes/kubelet.conf"))
        .count();
    assert_eq!(kubelet_conf, 2, "{}", run.stdout);
    assert!(root.join("etc/kubernetes/kubelet.conf").exists());
}
