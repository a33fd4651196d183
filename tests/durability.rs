//! The sync budget of a node-side join, counted in-process (the tests of this binary run one at a
//! time, so nothing else moves the process-wide counter), and what the syncs must still guarantee;
//! the per-file mode (`BOOTLET_SYNC=per-file`) joins the same node.

mod common;

use std::sync::atomic::Ordering;

use bootlet::engine::{Command, execute};
use bootlet::output::Output;
use bootlet::settings::{Options, Settings};
use common::*;

/// The sync counter is process-wide: the tests here run one at a time, so that no other test's
/// sandbox (which writes its admin.conf durably) is counted in a join's budget.
static SERIAL: std::sync::Mutex<()> = std::sync::Mutex::new(());

/// At most 7 syncs (fsync or syncfs) per node-side join: the performance issue's budget is 14, and
/// 7 is what staging until the next durable point reaches (docs/decisions.md); more is a regression.
const SYNC_BUDGET: u64 = 7;

fn node_join(sb: &TestSandbox, token: &str, node: &str) -> (tempfile::TempDir, u64) {
    let (dir, bootstrap, root) = sb.token_node(token);
    let settings = Settings::resolve(
        Options {
            root: Some(root),
            node_name: Some(node.into()),
            bootstrap_kubeconfig: Some(bootstrap),
            ..Default::default()
        },
        None,
    )
    .unwrap();
    let before = bootlet::files::SYNCS.load(Ordering::Relaxed);
    let outcome = sb
        .rt
        .block_on(execute(Command::join(), settings, Output::quiet()));
    assert!(outcome.error.is_none(), "{:?}", outcome.error);
    let syncs = bootlet::files::SYNCS.load(Ordering::Relaxed) - before;
    let report = &outcome.report;
    let in_phases: f64 = report.phases.iter().map(|p| p.duration_ms).sum();
    assert!(
        (report.total_ms - in_phases - report.outside_phases_ms).abs() < 0.01,
        "the parts add up to the total: {} = {in_phases} + {}",
        report.total_ms,
        report.outside_phases_ms
    );
    (dir, syncs)
}

#[test]
fn a_node_side_join_stays_within_its_sync_budget_and_leaves_every_credential_in_place() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let sb = TestSandbox::auto_serving();
    for (i, token) in ["sync01.0123456789abcdef", "sync02.0123456789abcdef"]
        .iter()
        .enumerate()
    {
        let node = format!("sync-{i}");
        let (dir, syncs) = node_join(&sb, token, &node);
        assert!(
            syncs <= SYNC_BUDGET,
            "{syncs} syncs for one node-side join (budget {SYNC_BUDGET})"
        );
        assert!(
            syncs >= 4,
            "{syncs} syncs cannot make two keys durable before their CSRs"
        );
        let root = dir.path().join("node");
        let ca = root.join("etc/kubernetes/pki/ca.crt");
        for pem in ["kubelet-client-current.pem", "kubelet-server-current.pem"] {
            let p = root.join("var/lib/kubelet/pki").join(pem);
            assert!(openssl_verify(&ca, &p), "{pem} does not verify");
            assert_eq!(mode(&p), 0o600, "{pem}");
        }
        assert_eq!(mode(&root.join("etc/kubernetes/kubelet.conf")), 0o600);
        assert!(
            !root.join("etc/kubernetes/bootstrap-kubelet.conf").exists(),
            "the bootstrap kubeconfig is removed once the node has its own"
        );
        let left = temp_files_under(&root);
        assert!(left.is_empty(), "temporary files left behind: {left:?}");
    }
}

#[test]
fn the_per_file_sync_mode_joins_the_same_node() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let sb = TestSandbox::auto_serving();
    let (dir, bootstrap, root) = sb.token_node("pfsync.0123456789abcdef");
    let node = ["join", "--root", s(&root), "--node-name", "per-file-1"];
    let args = [&node[..], &["--bootstrap-kubeconfig", s(&bootstrap)]].concat();
    let run = bootlet_env(&args, &[("BOOTLET_SYNC", "per-file")]);
    run.ok();
    assert_has(&run.stdout, "This node has joined the cluster");
    let ca = root.join("etc/kubernetes/pki/ca.crt");
    for pem in ["kubelet-client-current.pem", "kubelet-server-current.pem"] {
        assert!(openssl_verify(
            &ca,
            &root.join("var/lib/kubelet/pki").join(pem)
        ));
    }
    let who = whoami(&root.join("etc/kubernetes/kubelet.conf"), dir.path());
    assert_eq!(who.stdout, "system:node:per-file-1", "{}", who.stderr);
}
