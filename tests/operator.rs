//! The operator's experience, through the built binary: progress while waiting, quiet retries
//! that keep to their timeouts, colour only on terminals, dry-run wording, closed pipes, phases
//! asked for by name, `plan` with preflight, the hand-off to the kubelet, completions, man page,
//! version, help and Ctrl-C.

mod common;

use std::path::Path;
use std::time::{Duration, Instant};

use common::*;

const PIN_OF_NOTHING: &str =
    "sha256:0000000000000000000000000000000000000000000000000000000000000000";

/// A bootstrap kubeconfig for `token` whose server refuses connections.
fn unreachable_bootstrap(dir: &Path, token: &str) -> std::path::PathBuf {
    let sb = TestSandbox::start();
    let t = bootlet::token::BootstrapToken::parse(token).unwrap();
    let text = bootlet::kubeconfig::render_bootstrap(
        "https://127.0.0.1:1",
        sb.sb().ca_pem().as_bytes(),
        &t,
    )
    .unwrap();
    let p = dir.join("unreachable.conf");
    std::fs::write(&p, text).unwrap();
    p
}

fn join_args<'a>(root: &'a Path, bootstrap: &'a Path, node: &'a str) -> Vec<&'a str> {
    vec![
        "join",
        "--root",
        s(root),
        "--bootstrap-kubeconfig",
        s(bootstrap),
        "--node-name",
        node,
    ]
}

#[test]
fn waiting_for_the_serving_approval_prints_progress_on_stderr_every_ten_seconds() {
    let sb = TestSandbox::start();
    let (dir, bootstrap, root) = sb.token_node("wait01.0123456789abcdef");
    let conf = sb.admin_conf();
    let cache = dir.path().to_path_buf();
    let approver = std::thread::spawn({
        let sbdir = sb.dir.path().to_path_buf();
        move || {
            // Approve once the join has waited a little over ten seconds.
            std::thread::sleep(Duration::from_millis(12_500));
            let list = kubectl_with(
                &conf,
                &sbdir,
                &["get", "csr", "-o", "jsonpath={.items[*].metadata.name}"],
            );
            for name in list.stdout.split_whitespace() {
                kubectl_with(&conf, &cache, &["certificate", "approve", name]);
            }
        }
    });
    let mut args = join_args(&root, &bootstrap, "wait-1");
    args.extend(["--approval-timeout", "60s", "-o", "json"]);
    let run = bootlet_plain(&args, &[]);
    approver.join().unwrap();
    run.ok();
    let report: serde_json::Value =
        serde_json::from_str(&run.stdout).expect("stdout is exactly one JSON document");
    assert_eq!(report["result"], "succeeded");
    let progress = run.stderr_lines(|l| l.contains("Still waiting for CSR"));
    assert_eq!(progress.len(), 1, "one line after 10 s:\n{}", run.stderr);
    assert!(
        !run.stdout.contains("Still waiting"),
        "progress stays off stdout"
    );
    let line = progress[0];
    assert!(line.starts_with("[serving-csr] "), "{line}");
    assert!(line.contains("(10s of 1m)"), "elapsed and budget: {line}");
    assert!(
        line.contains("to unblock: kubectl certificate approve node-csr-"),
        "{line}"
    );
}

#[test]
fn an_unreachable_server_is_one_notice_the_timeout_honoured_and_exit_8_in_every_phase() {
    let dir = tempfile::tempdir().unwrap();
    // Discovery.
    let started = Instant::now();
    let run = bootlet_plain(
        &[
            "join",
            "127.0.0.1:1",
            "--root",
            s(&dir.path().join("a")),
            "--node-name",
            "u1",
            "--discovery-token-ca-cert-hash",
            PIN_OF_NOTHING,
            "--discovery-timeout",
            "3s",
        ],
        &[("BOOTLET_TOKEN", "unrch1.0123456789abcdef")],
    );
    let took = started.elapsed();
    run.fails_with(8, "kept failing for 3s");
    assert!(
        run.error_line().contains("raise --discovery-timeout"),
        "the hint names the budget that ran out: {}",
        run.error_line()
    );
    assert!(
        took < Duration::from_secs(4),
        "a 3 s discovery timeout took {took:?}"
    );
    assert!(
        run.stderr.lines().count() <= 3,
        "one notice and the error, not a line per retry:\n{}",
        run.stderr
    );
    assert!(
        run.stderr
            .lines()
            .filter(|l| l.contains("not answering"))
            .count()
            == 1,
        "{}",
        run.stderr
    );
    assert!(!run.stderr.contains("WARN") && !run.stderr.contains("ERROR"));
    // The CSR step, for the same cause: the same exit code.
    let bootstrap = unreachable_bootstrap(dir.path(), "unrch2.0123456789abcdef");
    let root_b = dir.path().join("b");
    let mut args = join_args(&root_b, &bootstrap, "u2");
    args.extend(["--api-timeout", "3s"]);
    let started = Instant::now();
    let run = bootlet_plain(&args, &[]);
    let took = started.elapsed();
    run.fails_with(8, "kept failing for 3s");
    assert!(
        took < Duration::from_secs(4),
        "a 3 s API timeout took {took:?}"
    );
    assert_eq!(
        run.stderr.lines().count(),
        2,
        "one notice, one error line:\n{}",
        run.stderr
    );
    // -v shows the attempts.
    args.push("-v");
    let verbose = bootlet_plain(&args, &[]);
    assert!(
        verbose.stderr.lines().count() > 3,
        "-v has the detail:\n{}",
        verbose.stderr
    );
}

/// Runs `bootlet <args>` under a pseudo-terminal (`script`), returning everything it printed.
fn on_a_terminal(args: &[&str], no_color: bool) -> String {
    let command = std::iter::once(s(&bin()).to_string())
        .chain(args.iter().map(|a| format!("'{a}'")))
        .collect::<Vec<_>>()
        .join(" ");
    let mut c = std::process::Command::new("script");
    c.args(["-qec", &command, "/dev/null"])
        .env_remove("NO_COLOR")
        .env("TERM", "xterm");
    if no_color {
        c.env("NO_COLOR", "1");
    }
    let out = c.output().expect("script runs");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn colour_only_on_a_terminal_and_never_with_no_color_or_in_files() {
    let dir = tempfile::tempdir().unwrap();
    let f = offline_discovery_file(dir.path());
    let root = dir.path().join("node");
    let args = [
        "-vv",
        "join",
        "--dry-run",
        "--root",
        s(&root),
        "--node-name",
        "c1",
        "--discovery-file",
        s(&f),
        "--new-token",
        "--skip-phases",
        "client-csr,serving-csr,write-files,kubelet-config",
    ];
    let tty = on_a_terminal(&args, false);
    assert!(tty.contains("[kubeconfig]"), "{tty}");
    assert!(tty.contains("\u{1b}["), "a terminal gets colour:\n{tty}");
    let tty_no_color = on_a_terminal(&args, true);
    assert!(tty_no_color.contains("[kubeconfig]"));
    assert!(!tty_no_color.contains('\u{1b}'), "NO_COLOR: {tty_no_color}");
    let piped = bootlet_plain(&args, &[]);
    piped.ok();
    assert!(piped.stderr.contains("DEBUG") || piped.stderr.contains("TRACE"));
    assert!(
        !piped.all().contains('\u{1b}'),
        "redirected output has no escape codes:\n{}",
        piped.stderr
    );
}

#[test]
fn dry_run_text_says_what_would_happen_where_the_report_says_not_sent() {
    let sb = TestSandbox::start();
    let (_dir, root) = work_root();
    let run = join_node(
        s(&root),
        "dry-1",
        &["--dry-run", "--admin-kubeconfig", s(&sb.admin_conf())],
    );
    run.ok();
    for would in [
        "Would create Secret kube-system/bootstrap-token-",
        "Would create CSR",
    ] {
        assert!(run.stdout.contains(would), "{would}:\n{}", run.stdout);
    }
    for did in ["] Created ", "] Updated ", "] Deleted ", "] Wrote "] {
        assert!(!run.stdout.contains(did), "{did}:\n{}", run.stdout);
    }
    assert!(!root.exists(), "dry-run wrote under the root");
}

/// Runs `bootlet <args>` with stdout a pipe whose reading end is already closed.
fn into_a_closed_pipe(args: &[&str]) -> (i32, String) {
    let (reader, writer) = std::io::pipe().unwrap();
    drop(reader);
    let out = std::process::Command::new(bin())
        .args(args)
        .stdout(writer)
        .stderr(std::process::Stdio::piped())
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn a_closed_pipe_ends_quietly_with_status_141_and_no_panic() {
    let dir = tempfile::tempdir().unwrap();
    let f = offline_discovery_file(dir.path());
    let plan_root = dir.path().join("node");
    let commands: Vec<Vec<&str>> = vec![
        vec!["graph", "--format", "mermaid"],
        vec!["graph"],
        vec!["completions", "bash"],
        vec!["man"],
        vec!["version", "-o", "json"],
        vec!["help", "phase", "token"],
        vec!["token", "generate"],
        vec![
            "plan",
            "--root",
            s(&plan_root),
            "--node-name",
            "p1",
            "--discovery-file",
            s(&f),
        ],
        vec!["--help"],
    ];
    for args in commands {
        let (code, stderr) = into_a_closed_pipe(&args);
        assert_eq!(code, 141, "{args:?}: {stderr}");
        assert!(
            !stderr.contains("panic") && !stderr.contains("Broken pipe"),
            "{args:?}: {stderr}"
        );
    }
}

#[test]
fn a_phase_asked_for_by_name_that_cannot_do_its_job_fails_saying_what_it_needs() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("admin");
    let run = phase_node("secret", s(&root), "n1", &[]);
    run.fails_with(10, "phase secret cannot run: no --admin-kubeconfig");
    assert_eq!(
        run.stderr
            .lines()
            .filter(|l| l.starts_with("error: "))
            .count(),
        1
    );
    assert!(!run.stdout.contains("skipped"), "{}", run.stdout);
    // Inside a workflow the same phase is a skip, and the run succeeds.
    let f = offline_discovery_file(dir.path());
    let join = join_node(
        s(&root),
        "n1",
        &[
            "--discovery-file",
            s(&f),
            "--new-token",
            "--skip-phases",
            "client-csr,serving-csr,write-files",
        ],
    );
    join.ok();
    assert!(
        join.stdout
            .contains("[secret] skipped: no --admin-kubeconfig")
    );
    // And --skip-phases naming it is the operator's choice: a skip, exit 0.
    phase_node("secret", s(&root), "n1", &["--skip-phases", "secret"]).ok();
}

#[test]
fn plan_reports_what_preflight_will_stop_and_has_the_run_reports_shape() {
    let dir = tempfile::tempdir().unwrap();
    let f = offline_discovery_file(dir.path());
    let root = dir.path().join("node");
    let kubelet_conf = root.join("etc/kubernetes/kubelet.conf");
    std::fs::create_dir_all(kubelet_conf.parent().unwrap()).unwrap();
    std::fs::write(&kubelet_conf, "someone else's kubelet.conf").unwrap();
    let before = files_under(&root);
    let args = [
        "plan",
        "--root",
        s(&root),
        "--node-name",
        "p1",
        "--discovery-file",
        s(&f),
        "--token",
        "plan01.0123456789abcdef",
    ];
    let plan = bootlet(&args);
    plan.ok();
    assert_has(
        &plan.stdout,
        "[preflight] will fail: 1 check(s) will stop the run",
    );
    assert_has(
        &plan.stdout,
        "[ERROR FileAvailable--etc-kubernetes-kubelet.conf]",
    );
    assert_has(
        &plan.stdout,
        "[client-csr] not reached: preflight will stop the run first",
    );
    assert_eq!(files_under(&root), before, "plan changed the root");
    let mut json_args = args.to_vec();
    json_args.extend(["-o", "json"]);
    let plan = bootlet(&json_args);
    let plan: serde_json::Value = serde_json::from_str(&plan.stdout).unwrap();
    assert_eq!(plan["command"], "plan");
    assert_eq!(plan["phases"][0]["status"], "will-fail");
    assert!(
        plan["phases"][0]["actions"][0]
            .as_str()
            .unwrap()
            .contains("FileAvailable--etc-kubernetes-kubelet.conf")
    );
    // The same top-level fields as the report of a run.
    std::fs::remove_file(&kubelet_conf).unwrap();
    let run = join_node(
        s(&root),
        "p1",
        &[
            "--discovery-file",
            s(&f),
            "--token",
            "plan01.0123456789abcdef",
            "--skip-phases",
            "client-csr,serving-csr,write-files",
            "-o",
            "json",
        ],
    );
    run.ok();
    let report: serde_json::Value = serde_json::from_str(&run.stdout).unwrap();
    let keys =
        |v: &serde_json::Value| -> Vec<String> { v.as_object().unwrap().keys().cloned().collect() };
    assert_eq!(keys(&plan), keys(&report));
    assert_eq!(
        keys(&plan["phases"][3]),
        keys(&report["phases"][3]),
        "phase entries too"
    );
}

#[test]
fn plan_compares_the_installed_serving_certificate_with_the_requested_addresses() {
    let sb = TestSandbox::auto_serving();
    let (_dir, bootstrap, root) = sb.token_node("sans01.0123456789abcdef");
    let mut args = join_args(&root, &bootstrap, "sans-1");
    args.extend(["--node-ip", "10.1.2.3", "--keep-bootstrap-kubeconfig"]);
    bootlet(&args).ok();
    let plan = bootlet(&["plan", "--root", s(&root), "--node-ip", "10.9.9.9"]);
    plan.ok();
    let line = plan
        .stdout
        .lines()
        .find(|l| l.starts_with("[serving-csr]"))
        .unwrap();
    assert!(line.contains("will run"), "{line}");
    assert!(
        line.contains("installed serving certificate") && line.contains("10.9.9.9"),
        "the reason names the missing address: {line}"
    );
    assert!(!line.contains("no serving certificate yet"), "{line}");
}

#[test]
fn ignoring_an_unignorable_check_still_stops_at_preflight_and_stores_nothing() {
    let (dir, root) = work_root();
    let plain = bootlet_plain(
        &[
            "join",
            "127.0.0.1:1",
            "--root",
            s(&root),
            "--node-name",
            "i1",
        ],
        &[("BOOTLET_TOKEN", "ignr01.0123456789abcdef")],
    );
    plain.fails_with(3, "DiscoverySource");
    assert!(
        !plain.error_line().contains("--ignore-preflight-errors"),
        "the hint must not suggest ignoring what cannot be ignored: {}",
        plain.error_line()
    );
    let ignored = join_node(
        s(&root),
        "i1",
        &[
            "127.0.0.1:1",
            "--ignore-preflight-errors=DiscoverySource",
            "--new-token",
        ],
    );
    ignored.fails_with(3, "DiscoverySource");
    assert_has(&ignored.all(), "cannot be ignored");
    assert!(
        files_under(&root).is_empty(),
        "nothing stored: {:?}",
        files_under(&root)
    );
    // An ignorable check does get the hint.
    let conf = root.join("etc/kubernetes/kubelet.conf");
    std::fs::create_dir_all(conf.parent().unwrap()).unwrap();
    std::fs::write(&conf, "foreign").unwrap();
    let f = offline_discovery_file(dir.path());
    join_node(
        s(&root),
        "i1",
        &[
            "--discovery-file",
            s(&f),
            "--token",
            "ignr01.0123456789abcdef",
        ],
    )
    .fails_with(
        3,
        "--ignore-preflight-errors=FileAvailable--etc-kubernetes-kubelet.conf",
    );
}

fn yaml(path: &Path) -> serde_json::Value {
    serde_saphyr::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

#[test]
fn kubelet_config_hands_the_node_to_the_kubelet_and_the_last_line_says_how_to_start_it() {
    let sb = TestSandbox::auto_serving();
    let (_dir, bootstrap, root) = sb.token_node("kcfg01.0123456789abcdef");
    let mut args = join_args(&root, &bootstrap, "kcfg-1");
    args.extend(["--node-ip", "10.4.4.4", "--keep-bootstrap-kubeconfig"]);
    let run = bootlet(&args);
    run.ok();
    let config_path = root.join("var/lib/kubelet/config.yaml");
    assert_eq!(mode(&config_path), 0o644);
    let config = yaml(&config_path);
    assert_eq!(config["apiVersion"], "kubelet.config.k8s.io/v1beta1");
    assert_eq!(config["kind"], "KubeletConfiguration");
    assert_eq!(config["rotateCertificates"], true);
    assert_eq!(
        config["serverTLSBootstrap"], true,
        "a serving cert was obtained"
    );
    assert_eq!(config["authentication"]["anonymous"]["enabled"], false);
    assert_eq!(config["authentication"]["webhook"]["enabled"], true);
    assert_eq!(config["authorization"]["mode"], "Webhook");
    let ca = config["authentication"]["x509"]["clientCAFile"]
        .as_str()
        .unwrap();
    assert_eq!(ca, "/etc/kubernetes/pki/ca.crt");
    assert_eq!(
        std::fs::read_to_string(root.join(ca.trim_start_matches('/'))).unwrap(),
        sb.sb().ca_pem(),
        "the client CA file is the cluster CA"
    );
    let flags = std::fs::read_to_string(root.join("var/lib/kubelet/bootlet-flags.env")).unwrap();
    let line = flags
        .lines()
        .find(|l| l.starts_with("KUBELET_BOOTLET_ARGS="))
        .unwrap();
    let value = line
        .trim_start_matches("KUBELET_BOOTLET_ARGS=\"")
        .trim_end_matches('"');
    for flag in [
        "--config=/var/lib/kubelet/config.yaml",
        "--kubeconfig=/etc/kubernetes/kubelet.conf",
        "--bootstrap-kubeconfig=/etc/kubernetes/bootstrap-kubelet.conf",
        "--hostname-override=kcfg-1",
        "--node-ip=10.4.4.4",
    ] {
        assert!(value.split(' ').any(|f| f == flag), "{flag} in {value}");
    }
    for flag in value.split(' ') {
        if let Some(path) = flag
            .split_once('=')
            .map(|(_, v)| v)
            .filter(|v| v.starts_with('/'))
        {
            assert!(
                root.join(path.trim_start_matches('/')).exists(),
                "{flag} names a file that exists"
            );
        }
    }
    let last = run.stdout.lines().last().unwrap();
    assert_eq!(
        last,
        format!(
            "[join] Start the node agent with: kubelet {value} (paths inside --root {})",
            root.display()
        )
    );
    // A second join changes nothing and says the same.
    let again = bootlet(&args);
    again.ok();
    assert!(again.stdout.contains("[kubelet-config] already done"));
    assert_eq!(again.stdout.lines().last().unwrap(), last);
    // reset removes them.
    bootlet(&["reset", "--force", "--root", s(&root)]).ok();
    assert!(!config_path.exists());
    assert!(!root.join("var/lib/kubelet/bootlet-flags.env").exists());
}

#[test]
fn kubelet_config_follows_the_join_skips_and_refuses_a_foreign_configuration() {
    let sb = TestSandbox::start();
    // Client credentials only: the kubelet asks for its serving certificate itself once
    // registered (kubeadm's way), so serverTLSBootstrap is on here too.
    let (_d1, bootstrap, root) = sb.token_node("kcfg02.0123456789abcdef");
    let mut args = join_args(&root, &bootstrap, "kcfg-2");
    args.extend(["--skip-phases", "serving-csr"]);
    bootlet(&args).ok();
    let config = yaml(&root.join("var/lib/kubelet/config.yaml"));
    assert_eq!(config["serverTLSBootstrap"], true);
    assert_eq!(config["rotateCertificates"], true);
    let flags = std::fs::read_to_string(root.join("var/lib/kubelet/bootlet-flags.env")).unwrap();
    assert!(
        !flags.contains("--bootstrap-kubeconfig"),
        "not kept: {flags}"
    );

    // Skippable like any phase: nothing written, no start line.
    let (_d2, bootstrap, root) = sb.token_node("kcfg03.0123456789abcdef");
    let mut args = join_args(&root, &bootstrap, "kcfg-3");
    args.extend(["--skip-phases", "serving-csr,kubelet-config"]);
    let run = bootlet(&args);
    run.ok();
    assert!(!root.join("var/lib/kubelet/config.yaml").exists());
    assert!(!run.stdout.contains("Start the node agent"));

    // An operator's own config.yaml is not replaced.
    let (_d3, bootstrap, root) = sb.token_node("kcfg04.0123456789abcdef");
    let mine = root.join("var/lib/kubelet/config.yaml");
    std::fs::create_dir_all(mine.parent().unwrap()).unwrap();
    std::fs::write(&mine, "kind: KubeletConfiguration # mine\n").unwrap();
    let mut args = join_args(&root, &bootstrap, "kcfg-4");
    args.extend(["--skip-phases", "serving-csr"]);
    bootlet(&args).fails_with(9, "bootlet did not write it");
    assert_eq!(
        std::fs::read_to_string(&mine).unwrap(),
        "kind: KubeletConfiguration # mine\n"
    );
}

#[test]
fn krustlet_gets_its_command_line_and_no_kubelet_files() {
    let sb = TestSandbox::auto_serving();
    let (_dir, bootstrap, root) = sb.token_node("krst01.0123456789abcdef");
    let mut args = join_args(&root, &bootstrap, "krust-1");
    args.extend([
        "--layout",
        "krustlet",
        "--krustlet-data-dir",
        "/opt/krustlet",
        "--node-ip",
        "10.5.5.5",
    ]);
    let run = bootlet(&args);
    run.ok();
    assert!(!root.join("var/lib/kubelet").exists());
    let last = run.stdout.lines().last().unwrap();
    assert!(
        last.starts_with(
            "[join] Start the node agent with: KUBECONFIG=/opt/krustlet/config/kubeconfig krustlet-wasi --node-name=krust-1 --cert-file=/opt/krustlet/config/krustlet.crt --private-key-file=/opt/krustlet/config/krustlet.key --node-ip=10.5.5.5"
        ),
        "{last}"
    );
    for f in ["kubeconfig", "krustlet.crt", "krustlet.key"] {
        assert!(root.join("opt/krustlet/config").join(f).exists(), "{f}");
    }
}

#[test]
fn completions_man_page_version_and_help_come_from_the_command_line_definitions() {
    for shell in ["bash", "zsh", "fish", "powershell"] {
        let run = bootlet(&["completions", shell]);
        run.ok();
        for word in ["join", "renew", "--discovery-token-ca-cert-hash"] {
            assert!(run.stdout.contains(word), "{shell} lacks {word}");
        }
    }
    let dir = tempfile::tempdir().unwrap();
    let bash = dir.path().join("bootlet.bash");
    std::fs::write(&bash, bootlet(&["completions", "bash"]).stdout).unwrap();
    let syntax = std::process::Command::new("bash")
        .arg("-n")
        .arg(&bash)
        .status()
        .unwrap();
    assert!(syntax.success(), "the bash completion parses");

    let man = bootlet(&["man"]);
    man.ok();
    assert!(man.stdout.contains(".TH bootlet 1"), "{}", man.stdout);
    assert!(
        man.stdout.contains("bootlet\\-join(1)"),
        "lists the commands"
    );
    let pages = dir.path().join("man1");
    bootlet(&["man", "--out-dir", s(&pages)]).ok();
    for page in ["bootlet.1", "bootlet-join.1", "bootlet-token-create.1"] {
        assert!(
            pages.join(page).exists(),
            "{page}: {:?}",
            files_under(&pages)
        );
    }
    // Rendered by man(1) where it is installed, as an operator would read it.
    if std::process::Command::new("man")
        .arg("--version")
        .output()
        .is_ok()
    {
        let text = output_ok(
            std::process::Command::new("man")
                .arg("-l")
                .arg(pages.join("bootlet-join.1"))
                .env("MANPAGER", "cat")
                .env("MANWIDTH", "400"),
        );
        assert!(text.contains("--discovery-token-ca-cert-hash"), "{text}");
    }

    let v = bootlet(&["version", "-o", "json"]);
    v.ok();
    let v: serde_json::Value = serde_json::from_str(&v.stdout).unwrap();
    assert_eq!(
        v["clientVersion"]["gitVersion"],
        format!("v{}", env!("CARGO_PKG_VERSION"))
    );
    assert_eq!(v["bootlet"]["reportVersion"], 1);
    assert_eq!(v["bootlet"]["journalVersion"], 2);
    assert!(
        v["clientVersion"]["platform"]
            .as_str()
            .unwrap()
            .starts_with("linux/")
    );
    let text = bootlet(&["version"]);
    assert_starts(&text.stdout, "bootlet version v");

    let help = bootlet(&["help", "phase", "token"]);
    help.ok();
    assert_starts(&help.stdout, "bootlet phase token\n");
    assert!(help.stdout.contains("done when:"));
    let shared = bootlet(&["help", "phase", "client-csr"]);
    assert!(
        shared
            .stdout
            .contains("bootlet phase client-csr --workflow renew")
    );
    bootlet(&["help", "phase", "nope"]).fails_with(2, "unknown phase \"nope\"");
    let nested = bootlet(&["help", "token", "create"]);
    nested.ok();
    assert!(nested.stdout.contains("--print-join-command"));
    bootlet(&["help", "certs", "check-expiration"]).ok();
}

#[test]
fn kubeadm_token_spellings_are_accepted_and_must_agree() {
    let dir = tempfile::tempdir().unwrap();
    let f = offline_discovery_file(dir.path());
    let root = dir.path().join("node");
    for flag in ["--discovery-token", "--tls-bootstrap-token", "--token"] {
        let run = bootlet(&[
            "plan",
            "--root",
            s(&root),
            "--node-name",
            "k1",
            "--discovery-file",
            s(&f),
            flag,
            "kbdm01.0123456789abcdef",
        ]);
        run.ok();
        assert!(
            run.stdout.contains("kbdm01.<redacted>"),
            "{flag}:\n{}",
            run.stdout
        );
    }
    let both = bootlet(&[
        "plan",
        "--discovery-file",
        s(&f),
        "--root",
        s(&root),
        "--discovery-token",
        "kbdm01.0123456789abcdef",
        "--tls-bootstrap-token",
        "kbdm02.0123456789abcdef",
    ]);
    both.fails_with(2, "were given different tokens");
    assert!(!both.all().contains("0123456789abcdef"));
    bootlet(&[
        "plan",
        "--discovery-file",
        s(&f),
        "--root",
        s(&root),
        "--node-name",
        "k1",
        "--discovery-token",
        "kbdm01.0123456789abcdef",
        "--tls-bootstrap-token",
        "kbdm01.0123456789abcdef",
    ])
    .ok();
    let upper = bootlet(&[
        "plan",
        "--root",
        s(&root),
        "--token",
        "ABCDEF.0123456789abcdef",
    ]);
    upper.fails_with(4, "lower-case");
    assert_lacks(&upper.error_line(), "got 6 characters");
}

#[test]
fn ctrl_c_says_how_to_resume_exits_130_and_the_rerun_reattaches() {
    let sb = TestSandbox::start();
    let (_dir, bootstrap, root) = sb.token_node("ctlc01.0123456789abcdef");
    let args = join_args(&root, &bootstrap, "ctlc-1");
    let child = std::process::Command::new(bin())
        .args(&args)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // Interrupt while it waits for the serving approval.
    eventually(20, || {
        (!sb.csrs_of("system:node:ctlc-1").is_empty()).then_some(())
    });
    std::thread::sleep(Duration::from_millis(200));
    rustix::process::kill_process(
        rustix::process::Pid::from_child(&child),
        rustix::process::Signal::INT,
    )
    .unwrap();
    let out = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(130), "{stderr}");
    assert!(
        stderr.contains("Interrupted") && stderr.contains("rerun the same command to resume"),
        "{stderr}"
    );
    let serving_before = sb.csrs_of("system:node:ctlc-1");
    assert_eq!(serving_before.len(), 1);
    sb.approve_serving_in_background();
    let mut again = args.clone();
    again.extend(["--approval-timeout", "30s"]);
    bootlet(&again).ok();
    assert_eq!(
        sb.csrs_of("system:node:ctlc-1").len(),
        1,
        "the rerun re-attached to the same serving CSR"
    );
}
