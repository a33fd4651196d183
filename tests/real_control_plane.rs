//! The reference control plane itself (`tests/kube/`): it names the real release, two run side by
//! side, `down` stops exactly the processes its `up` started, and a control plane whose owner dies
//! is stopped by its watcher. `BOOTLET_REAL_CLUSTER=off` leaves these out.

mod common;

use std::process::Command;
use std::time::{Duration, Instant};

use common::real::{RealCluster, kube_dir};
use common::*;

/// The pids `up` recorded in `dir/pids`.
fn pids(dir: &std::path::Path) -> Vec<(String, u32)> {
    std::fs::read_to_string(dir.join("pids"))
        .unwrap_or_default()
        .lines()
        .filter_map(|l| {
            let (name, pid) = l.split_once(' ')?;
            Some((name.to_string(), pid.parse().ok()?))
        })
        .collect()
}

fn running(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|s| {
        !s.rsplit(')')
            .next()
            .unwrap_or("")
            .trim_start()
            .starts_with('Z')
    })
}

#[test]
#[cfg_attr(real_cluster_off, ignore = "BOOTLET_REAL_CLUSTER=off")]
fn two_control_planes_run_side_by_side_and_down_stops_exactly_one() {
    let a = RealCluster::start(&[]).unwrap_or_else(|e| panic!("{e}"));
    let b = RealCluster::start(&["--signing-duration", "1h"]).unwrap_or_else(|e| panic!("{e}"));
    assert_ne!(a.server(), b.server());
    for c in [&a, &b] {
        let conf = c.dir().join("admin.conf");
        let v = kubectl_with(&conf, c.dir(), &["version", "-o", "json"]);
        assert_eq!(v.code, 0, "{}", v.stderr);
        let server: serde_json::Value = serde_json::from_str(&v.stdout).unwrap();
        assert_eq!(
            server["serverVersion"]["gitVersion"], "v1.37.2",
            "{}",
            v.stdout
        );
        let who = whoami(&conf, c.dir());
        assert_eq!(who.stdout, "kubernetes-super-admin");
    }
    let env = std::fs::read_to_string(b.dir().join("cluster.env")).unwrap();
    assert_has(&env, "SIGNING_DURATION=1h0m0s");
    let binary = RealCluster::binary("kube-apiserver");
    let version = output_ok(Command::new(binary).arg("--version"));
    assert_eq!(version.trim(), "Kubernetes v1.37.2");

    let of_a = pids(a.dir());
    let names: Vec<&str> = of_a.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(
        names,
        ["watch", "etcd", "kube-apiserver", "kube-controller-manager"]
    );
    let of_b = pids(b.dir());
    let out = Command::new(kube_dir().join("down"))
        .arg(a.dir())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    for (name, pid) in &of_a {
        assert!(!running(*pid), "{name} of A stopped");
    }
    for (name, pid) in &of_b {
        assert!(running(*pid), "{name} of B still runs");
    }
    let who = whoami(&b.dir().join("admin.conf"), b.dir());
    assert_eq!(who.code, 0, "B still answers: {}", who.stderr);
    // A second down, or a down of a directory that never ran one, is harmless.
    let again = Command::new(kube_dir().join("down"))
        .arg(a.dir())
        .output()
        .unwrap();
    assert!(again.status.success());
}

#[test]
#[cfg_attr(real_cluster_off, ignore = "BOOTLET_REAL_CLUSTER=off")]
fn a_control_plane_whose_owner_died_is_stopped_by_its_watcher() {
    let dir = tempfile::tempdir().unwrap();
    let mut owner = Command::new("sleep").arg("600").spawn().unwrap();
    let out = Command::new(kube_dir().join("up"))
        .arg(dir.path())
        .args(["--owner-pid", &owner.id().to_string()])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let started = pids(dir.path());
    assert_eq!(started.len(), 4);
    owner.kill().unwrap();
    owner.wait().unwrap();
    let killed = Instant::now();
    while started.iter().any(|(_, p)| running(*p)) {
        assert!(
            killed.elapsed() < Duration::from_secs(20),
            "stopped within 20 s"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(!dir.path().join("pids").exists());
}

#[test]
#[cfg_attr(real_cluster_off, ignore = "BOOTLET_REAL_CLUSTER=off")]
fn a_second_up_in_a_running_directory_is_refused() {
    let c = RealCluster::start(&[]).unwrap_or_else(|e| panic!("{e}"));
    let out = Command::new(kube_dir().join("up"))
        .arg(c.dir())
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert_has(&err, "a control plane already runs in");
    let who = whoami(&c.dir().join("admin.conf"), c.dir());
    assert_eq!(who.code, 0, "the first one still answers: {}", who.stderr);
}
