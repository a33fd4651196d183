//! kubeadm beside bootlet (issue 24): kubeadm built from the same release as the real control
//! plane, against the same control plane. A token kubeadm made joins a node with bootlet; a cluster
//! prepared by kubeadm's own init phases is joined by bootlet from kubeadm's printed join line;
//! kubeadm lists bootlet's tokens as bootlet does; bootlet's printed join line joins a node as
//! printed. These need the real control plane: `BOOTLET_REAL_CLUSTER=off` leaves them out.

mod common;

use std::path::Path;
use std::process::Command;
use std::sync::Arc;

use common::cluster::TestCluster;
use common::node::*;
use common::real::RealCluster;
use common::*;
use serde_json::Value;

/// kubeadm's `token list -o json` output: one JSON object per token, concatenated.
fn kubeadm_tokens(c: &RealCluster) -> Vec<Value> {
    let out = c.kubeadm(&["token", "list", "-o", "json"]).unwrap();
    serde_json::Deserializer::from_str(&out)
        .into_iter::<Value>()
        .map(|v| v.unwrap())
        .collect()
}

/// `kubeadm join ENDPOINT --token T --discovery-token-ca-cert-hash H`: (endpoint, token, hash).
fn parse_join_line(line: &str) -> (String, String, String) {
    let words: Vec<&str> = line.split_whitespace().collect();
    let after = |flag: &str| {
        let i = words.iter().position(|w| *w == flag).expect(flag);
        words[i + 1].to_string()
    };
    (
        words[2].to_string(),
        after("--token"),
        after("--discovery-token-ca-cert-hash"),
    )
}

/// Joins `name` by token discovery with the values of a join line; approves its serving CSR.
fn join_as_printed(c: &TestCluster, dir: &Path, name: &str, line: &str) -> Node {
    let (endpoint, token, hash) = parse_join_line(line);
    remember_secrets(&token);
    let token_file = write_file(dir, "token", &token);
    let node = Node {
        dir: tempfile::tempdir().unwrap(),
        root: dir.join(name),
        bootstrap: std::path::PathBuf::new(),
        name: name.into(),
    };
    let _approving = c.approve_serving_of(name);
    join_node(
        s(&node.root),
        name,
        &[
            &endpoint,
            "--token-file",
            s(&token_file),
            "--discovery-token-ca-cert-hash",
            &hash,
            "--approval-timeout",
            "60s",
        ],
    )
    .ok();
    node.assert_usable(c, &["client", "server"]);
    node
}

#[test]
#[cfg_attr(real_cluster_off, ignore = "BOOTLET_REAL_CLUSTER=off")]
fn a_token_kubeadm_created_joins_a_node_with_bootlet() {
    let real = RealCluster::shared();
    let c = TestCluster::from_real(real.clone());
    let token = real.kubeadm(&["token", "create"]).unwrap();
    let token = token.trim();
    remember_secrets(token);
    let dir = tempfile::tempdir().unwrap();
    let line = format!(
        "kubeadm join {} --token {token} --discovery-token-ca-cert-hash {}",
        c.endpoint(),
        c.pin()
    );
    let node = join_as_printed(&c, dir.path(), "kubeadm-token-1", &line);
    let id = &token[..6];
    assert_eq!(c.csrs_of(&format!("system:bootstrap:{id}")).len(), 1);
    assert_eq!(node.whoami(), "system:node:kubeadm-token-1");
}

#[test]
#[cfg_attr(real_cluster_off, ignore = "BOOTLET_REAL_CLUSTER=off")]
fn a_cluster_kubeadm_prepared_is_joined_from_kubeadms_printed_join_line() {
    // A bare control plane, then kubeadm's own init phases: nothing of bootlet's on the cluster side.
    let real = Arc::new(RealCluster::start(&[]).unwrap_or_else(|e| panic!("{e}")));
    real.kubeadm(&["init", "phase", "bootstrap-token"]).unwrap();
    real.kubeadm(&["init", "phase", "upload-config", "kubelet"])
        .unwrap();
    let line = real
        .kubeadm(&["token", "create", "--print-join-command"])
        .unwrap();
    assert!(line.starts_with("kubeadm join 127.0.0.1:"), "{line}");
    let c = TestCluster::from_real(real);
    let dir = tempfile::tempdir().unwrap();
    let node = join_as_printed(&c, dir.path(), "kubeadm-init-1", line.trim());
    assert_eq!(node.whoami(), "system:node:kubeadm-init-1");
}

#[test]
#[cfg_attr(real_cluster_off, ignore = "BOOTLET_REAL_CLUSTER=off")]
fn kubeadm_lists_bootlets_tokens_as_bootlet_does() {
    let real = RealCluster::shared();
    let c = TestCluster::from_real(real.clone());
    let conf = c.admin_conf();
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("token");
    bootlet(&[
        "token",
        "create",
        "--kubeconfig",
        s(&conf),
        "--token-file",
        s(&file),
        "--ttl",
        "3h",
        "--description",
        "edge batch 7",
        "--usages",
        "authentication",
        "--groups",
        "system:bootstrappers:kubeadm:default-node-token,system:bootstrappers:edge",
    ])
    .ok();
    let token = std::fs::read_to_string(&file).unwrap().trim().to_string();
    remember_secrets(&token);
    let id = &token[..6];
    let theirs = kubeadm_tokens(&real);
    let kubeadm = theirs
        .iter()
        .find(|t| t["token"].as_str().is_some_and(|x| x.starts_with(id)))
        .unwrap_or_else(|| panic!("kubeadm lists {id}"));
    let listed = bootlet(&["token", "list", "--kubeconfig", s(&conf), "-o", "json"]);
    listed.ok();
    let ours: Value = serde_json::from_str(&listed.stdout).unwrap();
    let mine = ours["tokens"]
        .as_array()
        .expect("a list of tokens")
        .iter()
        .find(|t| t["id"] == id)
        .unwrap_or_else(|| panic!("bootlet lists {id}: {ours}"))
        .clone();
    assert_eq!(kubeadm["description"], "edge batch 7");
    assert_eq!(mine["description"], kubeadm["description"]);
    assert_eq!(mine["usages"], kubeadm["usages"]);
    assert_eq!(mine["extra_groups"], kubeadm["groups"]);
    assert_eq!(mine["expires"], kubeadm["expires"], "the same expiry");
    // kubeadm's table shows the same TTL column as bootlet's.
    let table = real.kubeadm(&["token", "list"]).unwrap();
    let row = table.lines().find(|l| l.starts_with(id)).unwrap();
    let ours_table = bootlet(&["token", "list", "--kubeconfig", s(&conf)]);
    let our_row = ours_table
        .stdout
        .lines()
        .find(|l| l.starts_with(id))
        .unwrap();
    let ttl = |r: &str| r.split_whitespace().nth(1).unwrap().to_string();
    assert_eq!(ttl(our_row), ttl(row), "TTL: {our_row} / {row}");
    assert!(["2h", "3h"].contains(&ttl(row).as_str()), "{row}");
}

#[test]
#[cfg_attr(real_cluster_off, ignore = "BOOTLET_REAL_CLUSTER=off")]
fn bootlets_printed_join_line_joins_a_node_as_printed() {
    let real = RealCluster::shared();
    let c = TestCluster::from_real(real);
    let printed = bootlet(&[
        "token",
        "create",
        "--print-join-command",
        "--kubeconfig",
        s(&c.admin_conf()),
    ]);
    printed.ok();
    let line = printed.stdout.lines().last().unwrap().trim().to_string();
    remember_secrets(&line);
    assert!(line.starts_with("BOOTLET_TOKEN="), "{line}");
    assert_lacks(&line, "--token");
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("node");
    let _approving = c.approve_serving_of("printed-1");
    // Run the printed line as a shell runs it, with only where the node lives and its name added
    // (the binary under test stands in for `bootlet` on PATH).
    let bin_dir = bin().parent().unwrap().to_path_buf();
    let path = format!(
        "{}:{}",
        bin_dir.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let out = Command::new("sh")
        .arg("-c")
        .arg(format!(
            "{line} --root {} --node-name printed-1 --approval-timeout 60s",
            s(&root)
        ))
        .env("PATH", path)
        .env_remove("BOOTLET_TOKEN")
        .output()
        .unwrap();
    let run = Run {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    };
    leak_scan(&run, &[], &[]);
    run.ok();
    let node = Node {
        dir,
        root,
        bootstrap: std::path::PathBuf::new(),
        name: "printed-1".into(),
    };
    node.assert_usable(&c, &["client", "server"]);
}
