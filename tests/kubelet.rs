//! The hand-off to a real kubelet (issue 26): the kubelet of the pinned release, started on the
//! files bootlet wrote (`tests/kube/kubelet start`: the command line the join printed, chrooted in
//! the root, with the fake container runtime and the test-only settings of kubecp/kubelet.go),
//! registers its Node and serves a certificate the cluster signed; `bootlet approver` approves the
//! kubelet's own serving CSR by the Node it registered; the kubelet rotates its certificates and
//! bootlet leaves rotation to it; the configuration comes from the cluster's kubelet-config.
//! Each test has a control plane of its own: every test kubelet of this machine has the machine's
//! address, which the approver refuses to sign for two Nodes.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::cluster::TestCluster;
use common::node::*;
use common::real::{RealCluster, kube_dir};
use common::*;
use serde_json::Value;

/// The endpoint of the fake runtime `tests/kube/kubelet` starts inside the root.
const TEST_CRI: &str = "unix:///run/test-kubelet/runtime.sock";

/// This machine's address on its default route: a kubelet refuses a loopback node IP.
fn host_ip() -> String {
    let s = std::net::UdpSocket::bind("0.0.0.0:0").unwrap();
    s.connect("192.0.2.1:9")
        .expect("a default route (the test kubelet needs a non-loopback address)");
    let ip = s.local_addr().unwrap().ip();
    assert!(!ip.is_loopback(), "the default route's address is loopback");
    ip.to_string()
}

/// A real kubelet on a joined root; stopped when dropped.
struct Kubelet {
    root: PathBuf,
    port: u16,
}

impl Kubelet {
    fn start(cluster: &RealCluster, root: &Path, name: &str) -> Kubelet {
        let out = Command::new(kube_dir().join("kubelet"))
            .args(["start", s(cluster.dir()), s(root), name])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "the kubelet did not start: {}\n{}",
            String::from_utf8_lossy(&out.stderr),
            std::fs::read_to_string(root.join("run/test-kubelet/kubelet.log")).unwrap_or_default()
        );
        let port = String::from_utf8_lossy(&out.stdout).trim().parse().unwrap();
        Kubelet {
            root: root.to_path_buf(),
            port,
        }
    }

    fn stop(&self) {
        let out = Command::new(kube_dir().join("kubelet"))
            .args(["stop", s(&self.root)])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

impl Drop for Kubelet {
    fn drop(&mut self) {
        let _ = Command::new(kube_dir().join("kubelet"))
            .args(["stop", s(&self.root)])
            .output();
        let mounts = std::fs::read_to_string("/proc/self/mounts").unwrap_or_default();
        assert!(
            !mounts.contains(s(&self.root)),
            "nothing stays mounted under the root"
        );
    }
}

/// `bootlet approver` as a controller, stopped (SIGTERM) when dropped.
struct Approver(Child);

impl Approver {
    fn start(c: &TestCluster) -> Approver {
        Approver(
            Command::new(bin())
                .args(["approver", "-o", "json", "--kubeconfig", s(&c.admin_conf())])
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .unwrap(),
        )
    }
}

impl Drop for Approver {
    fn drop(&mut self) {
        let _ = rustix::process::kill_process(
            rustix::process::Pid::from_child(&self.0),
            rustix::process::Signal::TERM,
        );
        let _ = self.0.wait();
    }
}

/// A control plane of this test's own, initialized as kubeadm init leaves one, with `extra` `up`
/// flags; with kubeadm's kubelet-config ConfigMap when `upload_config`.
fn own_control_plane(extra: &[&str], upload_config: bool) -> (Arc<RealCluster>, TestCluster) {
    let real = Arc::new(RealCluster::start_initialized(extra).unwrap_or_else(|e| panic!("{e}")));
    if upload_config {
        real.kubeadm(&["init", "phase", "upload-config", "kubelet"])
            .unwrap();
    }
    let c = TestCluster::from_real(real.clone());
    (real, c)
}

fn addresses(node: &Value) -> Vec<(String, String)> {
    node["status"]["addresses"]
        .as_array()
        .cloned()
        .unwrap_or_default()
        .iter()
        .map(|a| {
            (
                a["type"].as_str().unwrap().to_string(),
                a["address"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

fn ready(node: &Value) -> bool {
    node["status"]["conditions"].as_array().is_some_and(|cs| {
        cs.iter()
            .any(|c| c["type"] == "Ready" && c["status"] == "True")
    })
}

/// The certificate the kubelet serves at `ip:port`, as openssl's s_client sees it: (verify
/// result line, subject, the SAN extension text).
fn served_certificate(ca: &Path, ip: &str, port: u16, dir: &Path) -> (String, String, String) {
    let out = Command::new("openssl")
        .args([
            "s_client",
            "-connect",
            &format!("{ip}:{port}"),
            "-CAfile",
            s(ca),
            "-showcerts",
        ])
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let verify = text
        .lines()
        .find(|l| l.trim_start().starts_with("Verify return code"))
        .unwrap_or_default()
        .trim()
        .to_string();
    let pem = bootlet::pki::keys::certificate_blocks(&text);
    let leaf = write_file(dir, "served.pem", &pem);
    let subject =
        output_ok(Command::new("openssl").args(["x509", "-noout", "-subject", "-in", s(&leaf)]));
    let sans = output_ok(Command::new("openssl").args([
        "x509",
        "-noout",
        "-ext",
        "subjectAltName",
        "-in",
        s(&leaf),
    ]));
    (verify, subject.trim().to_string(), sans)
}

#[test]
#[cfg_attr(real_cluster_off, ignore = "BOOTLET_REAL_CLUSTER=off")]
fn the_kubelet_starts_on_bootlets_files_registers_its_node_and_serves_what_the_approver_approved() {
    let (real, c) = own_control_plane(&[], true);
    let ip = host_ip();
    let _approver = Approver::start(&c);
    let node = Node::new(&c, "kubel1.0123456789abcdef", "kubelet-1");
    // The approver route, with no hand work: the join's serving CSR waits, the join registers the
    // Node after its grace, the approver checks the CSR against it and approves.
    let run = node.join(&["--node-ip", &ip, "--cri-socket", TEST_CRI]);
    run.ok();
    assert_has(&run.stdout, "Registered Node kubelet-1");
    let serving = c.csrs_of("system:node:kubelet-1");
    let name = serving[0]["metadata"]["name"].as_str().unwrap();
    assert_eq!(decision(&c, name).1, "BootletApproved");
    // The configuration is the cluster's (kubeadm's upload-config) with the node's fields on top.
    let config = std::fs::read_to_string(node.root.join("var/lib/kubelet/config.yaml")).unwrap();
    assert_has(&config, "clusterDomain: cluster.local");
    assert_has(&config, "10.96.0.10");
    assert_has(&config, "serverTLSBootstrap: true");
    assert_has(&config, "clientCAFile: /etc/kubernetes/pki/ca.crt");
    assert_has(
        &run.stdout,
        "built from the cluster's kube-system/kubelet-config",
    );
    let flags =
        std::fs::read_to_string(node.root.join("var/lib/kubelet/bootlet-flags.env")).unwrap();
    assert_has(&flags, &format!("--container-runtime-endpoint={TEST_CRI}"));

    let kubelet = Kubelet::start(&real, &node.root, "kubelet-1");
    let shown = eventually(60, || {
        let n = c.get_json(&["node", "kubelet-1"])?;
        ready(&n).then_some(n)
    });
    let addrs = addresses(&shown);
    assert!(
        addrs.contains(&("InternalIP".into(), ip.clone())),
        "{addrs:?}"
    );
    assert!(
        addrs.contains(&("Hostname".into(), "kubelet-1".into())),
        "{addrs:?}"
    );
    let table = c.kubectl(&["get", "node", "kubelet-1"]);
    assert_has(&table.stdout, "Ready");
    // Its Lease renews.
    let renewed = |c: &TestCluster| {
        c.get_json(&["lease", "-n", "kube-node-lease", "kubelet-1"])
            .and_then(|l| l["spec"]["renewTime"].as_str().map(String::from))
    };
    let first = eventually(30, || renewed(&c));
    eventually(40, || renewed(&c).filter(|t| *t != first));
    // Seed 003's check: what it serves chains to the cluster CA, names the node, and its SANs
    // are the Node's addresses; the API server reaches it with kubeadm's kubelet client.
    let (verify, subject, sans) =
        served_certificate(&c.ca_crt(), &ip, kubelet.port, node.dir.path());
    assert_eq!(verify, "Verify return code: 0 (ok)");
    assert_has(&subject, "CN = system:node:kubelet-1");
    assert_has(&sans, &format!("IP Address:{ip}"));
    assert_has(&sans, "DNS:kubelet-1");
    let healthz = c.kubectl(&["get", "--raw", "/api/v1/nodes/kubelet-1/proxy/healthz"]);
    assert_eq!(healthz.stdout.trim(), "ok", "{}", healthz.stderr);
    // It serves the certificate bootlet obtained.
    let served = cert_info(&node.dir.path().join("served.pem"));
    assert_eq!(served.serial, cert_info(&node.current("server")).serial);
    kubelet.stop();
}

#[test]
#[cfg_attr(real_cluster_off, ignore = "BOOTLET_REAL_CLUSTER=off")]
fn after_a_client_only_join_the_approver_approves_the_kubelets_own_serving_csr() {
    let (real, c) = own_control_plane(&[], false);
    let ip = host_ip();
    let _approver = Approver::start(&c);
    let node = Node::new(&c, "kubel2.0123456789abcdef", "kubelet-2");
    let run = node.join(&[
        "--skip-phases",
        "serving-csr",
        "--node-ip",
        &ip,
        "--cri-socket",
        TEST_CRI,
    ]);
    run.ok();
    // No kubelet-config ConfigMap: bootlet says what it left to the operator.
    assert_has(&run.stdout, "are left to you");
    let kubelet = Kubelet::start(&real, &node.root, "kubelet-2");
    // The kubelet asks for its serving certificate itself once registered (serverTLSBootstrap);
    // the approver decides it against the Node the kubelet registered.
    let csr = eventually(60, || {
        c.csrs_of("system:node:kubelet-2")
            .into_iter()
            .find(|x| signer_of(x) == SERVING_SIGNER)
    });
    let name = csr["metadata"]["name"].as_str().unwrap().to_string();
    assert!(
        !name.starts_with("node-csr-"),
        "the kubelet's own CSR: {name}"
    );
    eventually(60, || {
        (decision(&c, &name).1 == "BootletApproved").then_some(())
    });
    let (verify, subject, sans) = eventually(60, || {
        let seen = served_certificate(&c.ca_crt(), &ip, kubelet.port, node.dir.path());
        (seen.0 == "Verify return code: 0 (ok)").then_some(seen)
    });
    assert_eq!(verify, "Verify return code: 0 (ok)");
    assert_has(&subject, "CN = system:node:kubelet-2");
    assert_has(&sans, &format!("IP Address:{ip}"));
    // The kubelet's own pair is read by bootlet as the node's serving certificate.
    let serving = node.expiration("serving");
    assert_eq!(serving["verifies"], true, "{serving}");
    assert_eq!(serving["rotated_by"], "kubelet");
    kubelet.stop();
}

#[test]
#[cfg_attr(real_cluster_off, ignore = "BOOTLET_REAL_CLUSTER=off")]
fn the_kubelet_rotates_its_client_certificate_and_bootlet_leaves_rotation_to_it() {
    let (real, c) = own_control_plane(&["--signing-duration", "3m"], false);
    let ip = host_ip();
    let node = Node::new(&c, "kubel3.0123456789abcdef", "kubelet-3");
    node.join(&[
        "--skip-phases",
        "serving-csr",
        "--node-ip",
        &ip,
        "--cri-socket",
        TEST_CRI,
    ])
    .ok();
    let bootlets = node.target("client");
    let kubelet = Kubelet::start(&real, &node.root, "kubelet-3");
    // With 3-minute certificates (backdated 5 minutes by the signer) the kubelet's deadline falls
    // within about two and a half minutes of the join.
    let started = Instant::now();
    let rotated = eventually(240, || {
        let t = std::fs::read_link(node.current("client")).ok()?;
        (t.display().to_string() != bootlets).then_some(t)
    });
    eprintln!(
        "the kubelet rotated after {:?}: -> {}",
        started.elapsed(),
        rotated.display()
    );
    let target = node
        .root
        .join(rotated.strip_prefix("/").unwrap_or(&rotated));
    assert!(target.exists(), "the kubelet's own file, inside the root");
    let by_node = c.csrs_of("system:node:kubelet-3");
    assert!(
        by_node.iter().any(|x| signer_of(x) == CLIENT_SIGNER),
        "the kubelet renewed as the node"
    );
    let journal = node.root.join("var/lib/bootlet/journal.toml");
    let journal_before = std::fs::read(&journal).unwrap();
    // check-expiration reports the certificate the kubelet uses now, truthfully.
    let client = node.expiration("client");
    assert_eq!(client["name"], "client");
    assert_eq!(client["verifies"], true, "{client}");
    assert_eq!(client["rotated_by"], "kubelet");
    let openssl =
        output_ok(Command::new("openssl").args(["x509", "-noout", "-enddate", "-in", s(&target)]));
    let reported = client["not_after"].as_str().unwrap();
    let parsed =
        time::OffsetDateTime::parse(reported, &time::format_description::well_known::Rfc3339)
            .unwrap();
    let month = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ][parsed.month() as usize - 1];
    assert_has(
        &openssl,
        &format!(
            "{month} {:>2} {:02}:{:02}:{:02} {}",
            parsed.day(),
            parsed.hour(),
            parsed.minute(),
            parsed.second(),
            parsed.year()
        ),
    );
    // renew and renew --watch stand aside: no race, no alarm about the kubelet's files.
    let renew = bootlet(&["renew", "--root", s(&node.root)]);
    renew.ok();
    assert_has(&renew.stdout, "the kubelet rotates it");
    let mut watch = Command::new(bin())
        .args(["renew", "--watch", "--root", s(&node.root)])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_secs(4));
    let _ = rustix::process::kill_process(
        rustix::process::Pid::from_child(&watch),
        rustix::process::Signal::TERM,
    );
    let status = watch.wait().unwrap();
    let mut watched = String::new();
    use std::io::Read;
    watch
        .stdout
        .take()
        .unwrap()
        .read_to_string(&mut watched)
        .unwrap();
    watch
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut watched)
        .unwrap();
    assert!(status.success(), "{watched}");
    assert_lacks(&watched, "Renewed");
    // Bootlet sent nothing and wrote nothing: its CSRs carry its deterministic names
    // (node-csr-…), the kubelet's are csr-…; its journal is as the join left it.
    let bootlets_renewals: Vec<Value> = c
        .csrs_of("system:node:kubelet-3")
        .into_iter()
        .filter(|x| {
            x["metadata"]["name"]
                .as_str()
                .unwrap_or_default()
                .starts_with("node-csr-")
        })
        .collect();
    assert!(bootlets_renewals.is_empty(), "{bootlets_renewals:?}");
    assert_eq!(std::fs::read(&journal).unwrap(), journal_before);
    kubelet.stop();
    // reset removes what bootlet wrote, keeps the kubelet's files and its link, and says why.
    let reset = bootlet(&["reset", "--root", s(&node.root), "--force"]);
    reset.ok();
    assert_has(
        &reset.all(),
        "left /var/lib/kubelet/pki/kubelet-client-current.pem alone",
    );
    let link = node.current("client");
    let left = std::fs::read_link(&link).expect("the kubelet's link stays");
    let left = node.root.join(left.strip_prefix("/").unwrap_or(&left));
    assert!(left.exists(), "no dangling -current.pem link");
    assert!(
        !node.pki().join(&bootlets).exists(),
        "bootlet's own pair is gone"
    );
}
