//! What bootlet reports is what happened (issue 25, "False reports and crashes"): the Krustlet
//! layout is remembered by every later command; reset reports only what it removed and names the
//! journal's node; a link out of the root is refused by name; a re-run never makes a token nobody
//! asked for; a second sandbox in a running sandbox's directory is refused. Each test runs the
//! binary and asserts the exit code, the message and what did not happen.

mod common;

use std::path::Path;
use std::process::Command;

use common::*;

/// A Krustlet-layout node joined with `HOME` at `home` (the data directory then resolves to
/// `home/.krustlet`).
fn krustlet_node(
    sb: &TestSandbox,
    token: &str,
    home: &str,
) -> (tempfile::TempDir, std::path::PathBuf) {
    let (dir, bootstrap, root) = sb.token_node(token);
    bootlet_env(
        &[
            "join",
            "--root",
            s(&root),
            "--node-name",
            "krust-1",
            "--layout",
            "krustlet",
            "--bootstrap-kubeconfig",
            s(&bootstrap),
        ],
        &[("HOME", home)],
    )
    .ok();
    (dir, root)
}

#[test]
fn the_krustlet_layout_is_remembered_by_every_later_command_whatever_home_says() {
    let sb = TestSandbox::auto_serving();
    let (_dir, root) = krustlet_node(&sb, "krust1.0123456789abcdef", "/home/edge");
    let data = root.join("home/edge/.krustlet/config");
    assert!(data.join("kubeconfig").exists());
    // Later commands without --layout, under another HOME.
    let other_home = [("HOME", "/root")];
    let check = bootlet_env(
        &["certs", "check-expiration", "--root", s(&root)],
        &other_home,
    );
    check.ok();
    assert_has(&check.stdout, "/home/edge/.krustlet/config/krustlet.crt");
    let plan = bootlet_env(&["plan", "renew", "--root", s(&root)], &other_home);
    plan.ok();
    assert_has(&plan.stdout, "[client-csr] done");
    let renew = bootlet_env(&["renew", "--root", s(&root), "--force"], &other_home);
    renew.ok();
    assert_has(&renew.stdout, "Renewed the client and serving certificates");
    assert!(
        !root.join("root/.krustlet").exists(),
        "nothing under the other HOME"
    );
    // An explicit contradicting layout is refused by name.
    let wrong = bootlet(&["plan", "--root", s(&root), "--layout", "kubelet"]);
    wrong.fails_with(9, "this root was joined with --layout krustlet");
    // reset without the flag removes the Krustlet files.
    let reset = bootlet_env(&["reset", "--root", s(&root), "--force"], &other_home);
    reset.ok();
    assert_has(
        &reset.stdout,
        "Removed /home/edge/.krustlet/config/kubeconfig",
    );
    assert!(!data.join("kubeconfig").exists());
    assert!(!data.join("krustlet.key").exists());
    let left: Vec<String> = files_under(&root)
        .into_iter()
        .filter(|f| !f.ends_with("/lock"))
        .collect();
    assert!(left.is_empty(), "{left:?}");
}

/// Mounts `dir` read-only over itself until dropped.
struct ReadOnly<'a>(&'a Path);

impl<'a> ReadOnly<'a> {
    fn mount(dir: &'a Path) -> ReadOnly<'a> {
        output_ok(Command::new("mount").args(["--bind", s(dir), s(dir)]));
        output_ok(Command::new("mount").args(["-o", "remount,bind,ro", s(dir)]));
        ReadOnly(dir)
    }
}

impl Drop for ReadOnly<'_> {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(self.0).output();
    }
}

#[test]
fn reset_on_a_read_only_filesystem_reports_no_removal_and_names_the_journals_node() {
    let sb = TestSandbox::auto_serving();
    let (_dir, bootstrap, root) = sb.token_node("rdonly.0123456789abcdef");
    bootstrap_join(s(&root), "ro-node", &bootstrap, &[]).ok();
    let before = files_under(&root);
    let run = {
        let _ro = ReadOnly::mount(&root);
        bootlet(&["reset", "--root", s(&root), "--force", "-o", "json"])
    };
    assert_ne!(run.code, 0, "{}", run.all());
    assert_has(&run.error_line(), "Read-only file system");
    assert_lacks(&run.all(), "Removed ");
    let report: serde_json::Value = serde_json::from_str(&run.stdout).unwrap();
    assert_eq!(
        report["node_name"], "ro-node",
        "the journal's node, not the host's"
    );
    let removed: Vec<serde_json::Value> = report["phases"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|p| p["files"].as_array().cloned().unwrap_or_default())
        .filter(|f| f["kind"] == "removed")
        .collect();
    assert!(removed.is_empty(), "nothing listed as removed: {removed:?}");
    assert_eq!(files_under(&root), before, "every file still there");
    // Writable again, the same reset removes everything and says so.
    let again = bootlet(&["reset", "--root", s(&root), "--force"]);
    again.ok();
    assert_has(&again.stdout, "Removed /etc/kubernetes/kubelet.conf");
}

#[test]
fn a_current_link_leading_out_of_the_root_is_refused_by_name() {
    let sb = TestSandbox::auto_serving();
    let (dir, bootstrap, root) = sb.token_node("linkot.0123456789abcdef");
    bootstrap_join(s(&root), "link-out", &bootstrap, &[]).ok();
    let pki = root.join("var/lib/kubelet/pki");
    let link = pki.join("kubelet-client-current.pem");
    // A copy of the real pair outside the root, and the link pointed at it.
    let outside = dir.path().join("outside.pem");
    std::fs::copy(&link, &outside).unwrap();
    std::fs::remove_file(&link).unwrap();
    std::os::unix::fs::symlink(&outside, &link).unwrap();
    for args in [
        vec!["certs", "check-expiration", "--root", s(&root)],
        vec!["plan", "renew", "--root", s(&root)],
        vec!["renew", "--root", s(&root)],
    ] {
        let run = bootlet(&args);
        assert_ne!(run.code, 0, "{args:?}: {}", run.all());
        assert_has(&run.error_line(), "outside --root");
        assert_lacks(&run.all(), "installed and verified");
    }
    // A relative link climbing out is the same.
    std::fs::remove_file(&link).unwrap();
    std::os::unix::fs::symlink("../../../../../outside.pem", &link).unwrap();
    let run = bootlet(&["certs", "check-expiration", "--root", s(&root)]);
    assert_has(&run.error_line(), "outside --root");
}

#[test]
fn a_rerun_with_a_new_node_ip_makes_no_token_nobody_asked_for() {
    let sb = TestSandbox::auto_serving();
    let (_dir, bootstrap, root) = sb.token_node("newip1.0123456789abcdef");
    bootstrap_join(s(&root), "new-ip", &bootstrap, &["--node-ip", "10.9.0.1"]).ok();
    let plan = bootlet(&["plan", "--root", s(&root), "--node-ip", "10.9.0.2"]);
    plan.ok();
    assert_lacks(&plan.stdout, "one will be generated");
    assert_has(
        &plan.stdout,
        "the installed serving certificate is not usable (the certificate lacks the IP SAN 10.9.0.2)",
    );
    assert_has(
        &plan.stdout,
        "[token] done: not needed: the node has its own client credentials",
    );
    let run = bootlet(&["join", "--root", s(&root), "--node-ip", "10.9.0.2"]);
    run.ok();
    assert_lacks(&run.stdout, "Generated bootstrap token");
    assert!(
        !root.join("etc/kubernetes/bootstrap-kubelet.conf").exists(),
        "no bootstrap kubeconfig with a token the cluster never knew"
    );
    assert!(!root.join("var/lib/bootlet/bootstrap-token").exists());
    let info = cert_info(&root.join("var/lib/kubelet/pki/kubelet-server-current.pem"));
    assert!(info.ip_addresses.contains(&"10.9.0.2".parse().unwrap()));
}

#[test]
fn a_second_sandbox_in_a_running_sandboxs_directory_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let mut first = Command::new(bin())
        .args(["sandbox", "--dir", s(dir.path())])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let conf = dir.path().join("admin.conf");
    eventually(20, || conf.exists().then_some(()));
    let before = std::fs::read(&conf).unwrap();
    let second = bootlet(&["sandbox", "--dir", s(dir.path())]);
    second.fails_with(9, "a sandbox already serves from");
    assert_has(&second.error_line(), "choose another --dir");
    assert_eq!(
        std::fs::read(&conf).unwrap(),
        before,
        "its admin.conf untouched"
    );
    let who = whoami(&conf, dir.path());
    assert_eq!(who.code, 0, "the first still answers: {}", who.stderr);
    let _ = first.kill();
    let _ = first.wait();
}
