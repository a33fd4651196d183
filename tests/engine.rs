//! The engine and CLI, offline: graph, single phases, missing inputs, skips, config files,
//! dry-run, kill-and-resume, locking, bad input. Every test runs the built binary in temp dirs.

mod common;

use std::path::Path;
use std::time::Duration;

use common::*;

const TOKEN: &str = "q1w2e3.r4t5y6u7i8o9p0a1";
const TOKEN_SECRET: &str = "r4t5y6u7i8o9p0a1";

fn root() -> tempfile::TempDir {
    tempfile::tempdir().unwrap()
}

#[test]
fn graph_prints_the_run_order_as_text_dot_and_mermaid() {
    let text = bootlet(&["graph"]);
    text.ok();
    let order: Vec<&str> = text
        .stdout
        .lines()
        .filter(|l| l.contains(". "))
        .map(|l| l.split_whitespace().nth(1).unwrap())
        .collect();
    assert_eq!(order, JOIN_PHASES);
    let dot = bootlet(&["graph", "--format", "dot"]);
    dot.ok();
    assert!(dot.stdout.starts_with("digraph join {"));
    for edge in [
        "\"preflight\" -> \"token\"",
        "\"kubeconfig\" -> \"client-csr\"",
        "\"serving-csr\" -> \"write-files\"",
        "\"secret\" -> \"discovery\" [style=dashed",
    ] {
        assert!(
            dot.stdout.contains(edge),
            "missing {edge} in\n{}",
            dot.stdout
        );
    }
    let mermaid = bootlet(&["graph", "--format", "mermaid"]);
    assert!(mermaid.stdout.contains("client_csr --> serving_csr"));
    bootlet(&["graph", "--format", "svg"]).fails_with(2, "invalid value");

    // The other workflows share the CSR phases and write-files, in their own graphs.
    let renew = bootlet(&["graph", "--workflow", "renew", "--format", "dot"]);
    renew.ok();
    assert_starts(&renew.stdout, "digraph renew {");
    assert!(renew.stdout.contains("\"client-csr\" -> \"serving-csr\""));
    assert!(
        !renew.stdout.contains("kubeconfig"),
        "renew has no bootstrap phases"
    );
    let reset = bootlet(&["graph", "--workflow", "reset"]);
    reset.ok();
    assert!(reset.stdout.contains("cleanup-node"), "{}", reset.stdout);
    bootlet(&["graph", "--workflow", "upgrade"]).fails_with(2, "workflows are: join, renew, reset");
}

#[test]
fn every_command_has_help_with_an_example() {
    for cmd in [
        "join", "phase", "plan", "graph", "ca-pin", "sandbox", "demo",
    ] {
        let r = bootlet(&[cmd, "--help"]);
        r.ok();
        assert!(
            r.stdout.contains("Examples:"),
            "{cmd} --help has no example:\n{}",
            r.stdout
        );
    }
    let top = bootlet(&["--help"]);
    assert_has(&top.stdout, "Examples:");
    assert_has(&top.stdout, "bootlet demo");
    assert!(
        top.stdout.contains("Exit codes:")
            && top.stdout.contains("10 a phase run alone lacks an input")
    );
    let phase = bootlet(&["phase", "--help"]);
    assert!(
        phase.stdout.contains("client-csr"),
        "phase --help lists the phases"
    );
}

#[test]
fn phase_token_generates_a_valid_token_stored_0600_and_never_printed() {
    let r = root();
    let run = phase_node("token", s(r.path()), "n1", &[]);
    run.ok();
    let path = r.path().join("var/lib/bootlet/bootstrap-token");
    let token = std::fs::read_to_string(&path).unwrap();
    let parsed = bootlet::token::BootstrapToken::parse(&token).unwrap();
    assert_eq!(mode(&path), 0o600);
    assert_eq!(mode(path.parent().unwrap()), 0o700);
    assert!(run.stdout.contains(&format!("{}.<redacted>", parsed.id())));
    assert!(
        !run.all().contains(parsed.secret().expose()),
        "the secret half was printed"
    );
    // A second run keeps the same token and changes nothing.
    let before = std::fs::metadata(&path).unwrap();
    phase_node("token", s(r.path()), "n1", &[]).ok();
    let after = std::fs::metadata(&path).unwrap();
    assert_eq!(std::fs::read_to_string(&path).unwrap(), token);
    use std::os::unix::fs::MetadataExt;
    assert_eq!(
        (before.ino(), before.mtime_nsec()),
        (after.ino(), after.mtime_nsec())
    );
}

#[test]
fn a_phase_without_its_inputs_names_the_input_and_its_producer() {
    let r = root();
    let run = phase_node("client-csr", s(r.path()), "n1", &[]);
    run.fails_with(10, "phase client-csr needs the trusted cluster");
    assert_has(&run.error_line(), "phase discovery produces it");
    let run = phase_node("write-files", s(r.path()), "n1", &[]);
    run.fails_with(10, "phase discovery produces it");
    // With the cluster known but no token, kubeconfig names the token phase.
    let f = offline_discovery_file(r.path());
    phase_node("discovery", s(r.path()), "n1", &["--discovery-file", s(&f)]).ok();
    let run = phase_node("kubeconfig", s(r.path()), "n1", &[]);
    run.fails_with(10, "needs the bootstrap token");
    assert!(run.error_line().contains("phase token produces it"));
    // Nothing was written by the failed phases.
    assert!(
        !r.path()
            .join("etc/kubernetes/bootstrap-kubelet.conf")
            .exists()
    );
    bootlet(&["phase", "no-such-phase", "--root", s(r.path())])
        .fails_with(2, "unknown phase \"no-such-phase\"");
}

#[test]
fn skip_phases_leaves_those_phases_out() {
    let r = root();
    let f = offline_discovery_file(r.path());
    let tf = r.path().join("token");
    std::fs::write(&tf, TOKEN).unwrap();
    let node = r.path().join("node");
    let run = join_node(
        s(&node),
        "n1",
        &[
            "--discovery-file",
            s(&f),
            "--token-file",
            s(&tf),
            "--skip-phases",
            "client-csr,serving-csr",
            "--skip-phases",
            "write-files",
        ],
    );
    run.ok();
    for p in ["client-csr", "serving-csr", "write-files"] {
        assert_has(&run.stdout, &format!("[{p}] skipped: in --skip-phases"));
    }
    assert!(node.join("etc/kubernetes/bootstrap-kubelet.conf").exists());
    assert!(!node.join("etc/kubernetes/kubelet.conf").exists());
    assert!(!node.join("var/lib/bootlet/staging").exists());
    bootlet(&["join", "--root", s(&node), "--skip-phases", "nope"])
        .fails_with(2, "--skip-phases: unknown phase \"nope\"");
}

#[test]
fn config_file_holds_the_flags_and_flags_win() {
    let r = root();
    let f = offline_discovery_file(r.path());
    let cfg = write_file(
        r.path(),
        "bootlet.toml",
        &format!(
            "node-name = \"from-file\"\nlayout = \"krustlet\"\nkrustlet-data-dir = \"/data\"\ndiscovery-file = \"{}\"\ntoken = \"{TOKEN}\"\nskip-phases = [\"client-csr\", \"serving-csr\", \"write-files\"]\n",
            f.display()
        ),
    );
    let node = r.path().join("node");
    let run = join_node(s(&node), "from-flag", &["--config", s(&cfg), "-o", "json"]);
    run.ok();
    let report: serde_json::Value = serde_json::from_str(&run.stdout).unwrap();
    assert_eq!(report["node_name"], "from-flag", "the flag wins");
    assert_eq!(
        report["layout"], "krustlet",
        "the file fills what the flags leave unset"
    );
    assert!(
        node.join("data/config/bootstrap.conf").exists(),
        "krustlet layout paths were used"
    );
    // Run as root, bootlet keeps every layout's state in /var/lib/bootlet, where later commands
    // find it whatever $HOME says; a non-root Krustlet node keeps it in the data directory.
    let state = if rustix::process::geteuid().is_root() {
        "var/lib/bootlet"
    } else {
        "data/bootlet"
    };
    let journal = std::fs::read_to_string(node.join(state).join("journal.toml")).unwrap();
    assert!(
        journal.contains("krustlet_data_dir = \"/data\""),
        "{journal}"
    );
    assert!(journal.contains("node_name = \"from-flag\""));
}

#[test]
fn bad_config_files_get_a_clear_error_naming_the_problem() {
    let r = root();
    let cases = [
        ("node-nme = \"x\"\n", "node-nme"),
        ("node-name = 5\n", "line 1"),
        ("layout = \"windows\"\n", "layout"),
        ("this is not toml\n", "invalid"),
        ("approval-timeout = \"soon\"\n", "not a duration"),
    ];
    for (text, needle) in cases {
        let cfg = r.path().join("c.toml");
        std::fs::write(&cfg, text).unwrap();
        let run = bootlet(&[
            "plan",
            "--config",
            s(&cfg),
            "--root",
            s(&r.path().join("n")),
        ]);
        run.fails_with(2, needle);
        assert_eq!(
            run.stderr
                .lines()
                .filter(|l| l.starts_with("error:"))
                .count(),
            1,
            "one error line: {}",
            run.stderr
        );
    }
    bootlet(&["plan", "--config", "/nonexistent/bootlet.toml"])
        .fails_with(11, "cannot read config file");
}

#[test]
fn bad_tokens_are_rejected_with_the_expected_format_and_never_echoed() {
    let r = root();
    let bad = "abcdef.sh0rt";
    let root_arg = r.path().join("n");
    let check = |run: &Run| {
        run.fails_with(4, "[a-z0-9]{6}.[a-z0-9]{16}");
        assert!(
            !run.all().contains("sh0rt"),
            "the bad token was echoed: {}",
            run.all()
        );
        assert!(
            !root_arg.join("var/lib/bootlet/bootstrap-token").exists(),
            "nothing stored"
        );
    };
    check(&bootlet(&[
        "phase",
        "token",
        "--root",
        s(&root_arg),
        "--token",
        bad,
    ]));
    check(&bootlet_env(
        &["phase", "token", "--root", s(&root_arg)],
        &[("BOOTLET_TOKEN", bad)],
    ));
    let tf = r.path().join("t");
    std::fs::write(&tf, bad).unwrap();
    check(&bootlet(&[
        "phase",
        "token",
        "--root",
        s(&root_arg),
        "--token-file",
        s(&tf),
    ]));
    check(&bootlet_stdin(
        &[
            "phase",
            "token",
            "--root",
            s(&root_arg),
            "--token-file",
            "-",
        ],
        bad,
    ));
    let good = bootlet_stdin(
        &[
            "phase",
            "token",
            "--root",
            s(&root_arg),
            "--token-file",
            "-",
        ],
        &format!("{TOKEN}\n"),
    );
    good.ok();
    assert_has(
        &good.stdout,
        "already done: token q1w2e3.<redacted> from standard input",
    );
    assert!(
        !root_arg.exists(),
        "a given token is validated, never stored: nothing written"
    );
    assert!(!good.all().contains(TOKEN_SECRET));
    bootlet(&[
        "phase",
        "token",
        "--root",
        s(&root_arg),
        "--token",
        TOKEN,
        "--token-file",
        s(&tf),
    ])
    .fails_with(2, "cannot be used with");
}

#[test]
fn offline_dry_run_writes_everything_aside_reports_it_and_leaks_nothing() {
    let r = root();
    let f = offline_discovery_file(r.path());
    let tf = r.path().join("token");
    std::fs::write(&tf, TOKEN).unwrap();
    let node = r.path().join("node");
    std::fs::create_dir(&node).unwrap();
    let run = join_node(
        s(&node),
        "n1",
        &[
            "--dry-run",
            "--keep-dry-run-dir",
            "-o",
            "json",
            "--node-ip",
            "10.1.2.3",
            "--discovery-file",
            s(&f),
            "--token-file",
            s(&tf),
        ],
    );
    run.ok();
    assert!(
        files_under(&node).is_empty(),
        "dry-run wrote under the root: {:?}",
        files_under(&node)
    );
    let report: serde_json::Value =
        serde_json::from_str(&run.stdout).expect("stdout is one JSON document");
    let dir = Path::new(report["dry_run_dir"].as_str().unwrap()).to_path_buf();
    assert_eq!(mode(&dir), 0o700);
    let names: Vec<&str> = report["phases"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, JOIN_PHASES);
    let mut seen_files = 0;
    let mut requests = Vec::new();
    // The audit shows the hand-off reading the cluster's kubelet configuration (issue 26), here
    // with no cluster to answer: synthesized, and labelled so.
    let kubelet_config = report["phases"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["name"] == "kubelet-config")
        .unwrap();
    let read = &kubelet_config["requests"][0];
    assert_eq!(
        (read["method"].as_str(), read["path"].as_str()),
        (
            Some("GET"),
            Some("/api/v1/namespaces/kube-system/configmaps/kubelet-config")
        ),
        "{kubelet_config}"
    );
    assert_has(read["outcome"].as_str().unwrap(), "synthesized");
    for p in report["phases"].as_array().unwrap() {
        assert!(p["status"].is_string());
        for req in p["requests"].as_array().unwrap() {
            assert!(req["method"].is_string() && req["path"].as_str().unwrap().starts_with("/api"));
            assert_ne!(req["outcome"], "sent", "a dry-run sent a mutating request");
            requests.push(req.clone());
        }
        for file in p["files"].as_array().unwrap() {
            if file["kind"] == "removed" {
                continue;
            }
            let path = file["path"].as_str().unwrap();
            assert!(
                path.starts_with('/'),
                "paths are as seen from inside the root"
            );
            let on_disk = dir.join(path.trim_start_matches('/'));
            if file["kind"] == "file" {
                seen_files += 1;
                if on_disk.exists() {
                    let bytes = std::fs::read(&on_disk).unwrap();
                    assert_eq!(
                        file["sha256"].as_str().unwrap(),
                        bootlet::pki::sha256_hex(&bytes),
                        "{path}"
                    );
                    assert_eq!(
                        format!("{:04o}", mode(&on_disk)),
                        file["mode"].as_str().unwrap(),
                        "{path}"
                    );
                }
            }
        }
    }
    assert!(
        seen_files >= 8,
        "every would-be file is listed ({seen_files})"
    );
    assert_eq!(
        requests.len(),
        3,
        "two CSR creates, both withheld, and the kubelet-config read: {requests:?}"
    );
    let kubelet_conf = dir.join("etc/kubernetes/kubelet.conf");
    assert_eq!(mode(&kubelet_conf), 0o600);
    let pem = dir.join("var/lib/kubelet/pki/kubelet-server-current.pem");
    assert_eq!(mode(&pem), 0o600);
    let info = cert_info(&pem);
    assert_eq!(info.cn(), "system:node:n1");
    assert!(info.ip_addresses.contains(&"10.1.2.3".parse().unwrap()));
    // The would-be certificates are labelled as made by the dry-run CA.
    assert!(run.stderr.contains("synthesized"));
    // No secret anywhere: not the token's secret half, not any private key written to the dir.
    let saved = std::fs::read_to_string(dir.join("bootlet-report.json")).unwrap();
    let mut secrets = vec![TOKEN_SECRET.to_string()];
    for f in files_under(&dir) {
        let text = std::fs::read_to_string(dir.join(&f)).unwrap_or_default();
        if let Some(k) = bootlet::pki::keys::private_key_block(&text) {
            secrets.push(k.lines().nth(2).unwrap().to_string());
        }
    }
    assert!(secrets.len() >= 3, "found the keys to look for");
    for secret in &secrets {
        for (what, text) in [
            ("stdout", &run.stdout),
            ("stderr", &run.stderr),
            ("report", &saved),
        ] {
            assert!(!text.contains(secret.as_str()), "{what} leaks a secret");
        }
    }
    let text = join_node(
        s(&node),
        "n1",
        &[
            "--dry-run",
            "--discovery-file",
            s(&f),
            "--token-file",
            s(&tf),
        ],
    );
    text.ok();
    assert!(
        text.stdout
            .contains("write  /etc/kubernetes/kubelet.conf mode 0600")
    );
    assert!(files_under(&node).is_empty());
}

#[test]
fn a_second_concurrent_run_fails_fast_naming_the_lock_holder() {
    let r = root();
    let f = offline_discovery_file(r.path());
    let tf = r.path().join("token");
    std::fs::write(&tf, TOKEN).unwrap();
    let node = r.path().join("node");
    // The first run blocks retrying an unreachable API server.
    let mut first = std::process::Command::new(bin())
        .args([
            "join",
            "--root",
            s(&node),
            "--node-name",
            "n1",
            "--discovery-file",
            s(&f),
            "--token-file",
            s(&tf),
            "--api-timeout",
            "60s",
        ])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    // It holds the lock once it has written the bootstrap kubeconfig.
    for _ in 0..200 {
        if node.join("etc/kubernetes/bootstrap-kubelet.conf").exists() {
            break;
        }
        std::thread::sleep(Duration::from_millis(25));
    }
    let started = std::time::Instant::now();
    let second = join_node(
        s(&node),
        "n1",
        &["--discovery-file", s(&f), "--token-file", s(&tf)],
    );
    second.fails_with(9, &format!("pid {}", first.id()));
    assert!(started.elapsed() < Duration::from_secs(5), "fails fast");
    first.kill().unwrap();
    first.wait().unwrap();
    // The kernel released the lock with the process.
    bootlet(&["plan", "--root", s(&node), "--node-name", "n1"]).ok();
}

/// Files a partial run may have left must be whole: absent, or complete and parseable.
fn assert_whole(node: &Path) {
    let token = node.join("var/lib/bootlet/bootstrap-token");
    if token.exists() {
        bootlet::token::BootstrapToken::parse(&std::fs::read_to_string(&token).unwrap())
            .expect("token file is whole");
    }
    let boot = node.join("etc/kubernetes/bootstrap-kubelet.conf");
    if boot.exists() {
        bootlet::kubeconfig::load(&boot, "bootstrap").expect("bootstrap kubeconfig is whole");
    }
    let cluster = node.join("var/lib/bootlet/cluster.toml");
    if cluster.exists() {
        let t: toml::Table = toml::from_str(&std::fs::read_to_string(&cluster).unwrap())
            .expect("cluster.toml is whole");
        assert!(t.contains_key("ca"));
    }
    let journal = node.join("var/lib/bootlet/journal.toml");
    if journal.exists() {
        bootlet::engine::journal::Journal::parse(&std::fs::read_to_string(&journal).unwrap(), "j")
            .expect("journal is whole");
    }
}

#[test]
fn killed_anywhere_in_the_offline_phases_a_rerun_resumes_and_finishes() {
    let r = root();
    let f = offline_discovery_file(r.path());
    let tf = r.path().join("token");
    std::fs::write(&tf, TOKEN).unwrap();
    let node = r.path().join("node");
    let args = [
        "join",
        "--root",
        s(&node),
        "--node-name",
        "n1",
        "--discovery-file",
        s(&f),
        "--token-file",
        s(&tf),
        "--skip-phases",
        "client-csr,serving-csr,write-files",
    ];
    let mut seed = 0x9e3779b97f4a7c15u64;
    for _ in 0..25 {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        let delay = Duration::from_micros(seed % 40_000);
        let mut child = spawn_quiet(&args);
        std::thread::sleep(delay);
        let _ = child.kill();
        let _ = child.wait();
        assert_whole(&node);
    }
    // Damage an output: its phase must notice (content, not presence) and redo it.
    let _ = std::fs::write(
        node.join("etc/kubernetes/bootstrap-kubelet.conf"),
        "garbage",
    );
    let done = bootlet(&args);
    done.ok();
    assert_has(&done.stdout, "[kubeconfig] Wrote");
    assert!(
        !done.stdout.contains("has joined"),
        "write-files was skipped: the node has not joined"
    );
    assert_whole(&node);
    let access = bootlet::kubeconfig::load(
        &node.join("etc/kubernetes/bootstrap-kubelet.conf"),
        "bootstrap",
    )
    .unwrap();
    assert_eq!(
        access.bootstrap_token().unwrap().unwrap().expose_full(),
        TOKEN
    );
    let again = bootlet(&args);
    again.ok();
    for p in ["token", "discovery", "kubeconfig"] {
        assert_has(&again.stdout, &format!("[{p}] already done"));
    }
    let stray = temp_files_under(&node);
    assert!(stray.is_empty(), "temporary files left behind: {stray:?}");
}

#[test]
fn journals_that_cannot_be_trusted_are_refused_with_a_way_out() {
    let r = root();
    let f = offline_discovery_file(r.path());
    let node = r.path().join("node");
    let args = [
        "join",
        "--root",
        s(&node),
        "--node-name",
        "n1",
        "--discovery-file",
        s(&f),
        "--token",
        TOKEN,
        "--skip-phases",
        "client-csr,serving-csr,write-files",
    ];
    bootlet(&args).ok();
    let journal = node.join("var/lib/bootlet/journal.toml");
    let good = std::fs::read_to_string(&journal).unwrap();
    std::fs::write(&journal, &good[..good.len() / 2]).unwrap();
    bootlet(&args).fails_with(9, "move the state directory away");
    std::fs::write(
        &journal,
        good.replace("node_name = \"n1\"", "node_name = \"n2\""),
    )
    .unwrap();
    bootlet(&args).fails_with(9, "damaged");
    std::fs::write(&journal, &good).unwrap();
    join_node(
        s(&node),
        "other",
        &["--discovery-file", s(&f), "--token", TOKEN],
    )
    .fails_with(9, "belongs to node \"n1\"");
    bootlet(&args).ok();
}

#[test]
fn plan_shows_statuses_and_changes_nothing() {
    let r = root();
    let f = offline_discovery_file(r.path());
    let node = r.path().join("node");
    let run = bootlet(&[
        "plan",
        "--root",
        s(&node),
        "--node-name",
        "n1",
        "--discovery-file",
        s(&f),
        "-o",
        "json",
    ]);
    run.ok();
    let plan: serde_json::Value = serde_json::from_str(&run.stdout).unwrap();
    let rows = plan["phases"].as_array().unwrap();
    assert_eq!(rows.len(), 9);
    assert_eq!(rows[2]["name"], "secret");
    assert_eq!(rows[2]["status"], "skipped");
    assert_eq!(rows[1]["status"], "will-run");
    assert_eq!(rows[8]["name"], "kubelet-config");
    assert!(!node.exists(), "plan created {node:?}");
}

#[test]
fn the_leak_scan_catches_tokens_and_keys() {
    remember_secrets("canary.zq9x8w7v6u5t4s3r");
    let leak = Run {
        code: 0,
        stdout: "joined with zq9x8w7v6u5t4s3r".into(),
        stderr: String::new(),
    };
    assert!(
        std::panic::catch_unwind(|| leak_scan(&leak, &[], &[])).is_err(),
        "a token secret in stdout must fail the scan"
    );
    let key = Run {
        code: 0,
        stdout: String::new(),
        stderr: "-----BEGIN PRIVATE KEY-----\nMIGH\n".into(),
    };
    assert!(
        std::panic::catch_unwind(|| leak_scan(&key, &[], &[])).is_err(),
        "a PEM key in stderr must fail the scan"
    );
    let clean = Run {
        code: 0,
        stdout: "token canary.<redacted>".into(),
        stderr: String::new(),
    };
    leak_scan(&clean, &[], &[]);
}

#[test]
fn single_dry_run_phases_chain_through_one_dry_run_dir() {
    let r = root();
    let f = offline_discovery_file(r.path());
    let node = r.path().join("node");
    let dry = r.path().join("dry");
    bootlet(&[
        "phase",
        "token",
        "--root",
        s(&node),
        "--dry-run-dir",
        s(&dry),
    ])
    .ok();
    bootlet(&[
        "phase",
        "discovery",
        "--root",
        s(&node),
        "--dry-run-dir",
        s(&dry),
        "--discovery-file",
        s(&f),
    ])
    .ok();
    let kc = bootlet(&[
        "phase",
        "kubeconfig",
        "--root",
        s(&node),
        "--dry-run-dir",
        s(&dry),
    ]);
    kc.ok();
    // The third phase found what the first two wrote into the dry-run dir, and nothing else.
    let token = std::fs::read_to_string(dry.join("var/lib/bootlet/bootstrap-token")).unwrap();
    let access = bootlet::kubeconfig::load(
        &dry.join("etc/kubernetes/bootstrap-kubelet.conf"),
        "bootstrap",
    )
    .unwrap();
    assert_eq!(
        access.bootstrap_token().unwrap().unwrap().expose_full(),
        token.trim()
    );
    assert_eq!(access.server, "https://127.0.0.1:1");
    assert!(!node.exists(), "the real root was never touched");
}

/// Issue 26: kubeadm's machine checks for the kubelet the join hands off to, named and ignorable
/// as kubeadm's are. They look at the running machine, so they apply to `--root /` only, which
/// `plan` can show without side effects.
#[test]
fn the_machine_checks_for_the_kubelet_are_named_and_ignorable() {
    let r = root();
    let discovery = offline_discovery_file(r.path());
    let sock = r.path().join("cri.sock");
    let cri = format!("unix://{}", sock.display());
    // Run directly, not through the harness: its leak scan reads every file under --root.
    let plan_in = |root: &str, extra: &[&str]| {
        use std::io::Write;
        let mut child = std::process::Command::new(bin())
            .args([
                "plan",
                "--root",
                root,
                "--node-name",
                "checks-1",
                "--token-file",
                "-",
            ])
            .args(["--discovery-file", s(&discovery)])
            .args(extra)
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        child
            .stdin
            .take()
            .unwrap()
            .write_all(TOKEN.as_bytes())
            .unwrap();
        let out = child.wait_with_output().unwrap();
        let run = Run {
            code: out.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        };
        leak_scan(&run, &[], &[TOKEN]);
        assert_eq!(
            run.code,
            0,
            "plan changes nothing and says what would stop the run: {}",
            run.all()
        );
        run
    };
    let plan = |extra: &[&str]| plan_in("/", extra);
    let forwarding = std::fs::read_to_string("/proc/sys/net/ipv4/ip_forward").unwrap();
    let healthz = std::net::TcpListener::bind(("127.0.0.1", 10248));
    let missing = plan(&["--cri-socket", &cri]);
    assert_has(
        &missing.stdout,
        "[ERROR CRI]: the container runtime at unix://",
    );
    assert_has(&missing.stdout, "--cri-socket");
    assert_has(&missing.stdout, "[ERROR Port-10248]");
    if forwarding.trim() != "1" {
        assert_has(
            &missing.stdout,
            "[ERROR FileContent--proc-sys-net-ipv4-ip_forward]",
        );
    }
    let _runtime = std::os::unix::net::UnixListener::bind(&sock).unwrap();
    let answering = plan(&["--cri-socket", &cri]);
    assert_lacks(&answering.stdout, "[ERROR CRI]");
    let ignored = plan(&[
        "--cri-socket",
        &cri,
        "--ignore-preflight-errors",
        "Port-10248,FileContent--proc-sys-net-ipv4-ip_forward",
    ]);
    assert_lacks(&ignored.stdout, "[ERROR");
    // Not a kubelet hand-off, or not this machine: the kubelet's checks do not apply.
    for extra in [
        &["--skip-phases", "kubelet-config"][..],
        &[
            "--layout",
            "krustlet",
            "--krustlet-data-dir",
            "/tmp/bootlet-checks-k",
        ][..],
    ] {
        let other = plan(&[&["--cri-socket", "unix:///nonexistent.sock"][..], extra].concat());
        assert_lacks(&other.stdout, "[ERROR CRI]");
        assert_lacks(&other.stdout, "[ERROR Port-10248]");
    }
    let image = plan_in(
        s(&r.path().join("image")),
        &["--cri-socket", "unix:///nonexistent.sock"],
    );
    assert_lacks(&image.stdout, "[ERROR CRI]");
    drop(healthz);
}
