//! The sandbox under abuse (issue 25): connections that finish the TLS handshake (or send HTTP/2's
//! preface) and then say nothing are closed after the idle timeout, so new clients are served
//! again; a node identity that grows its own Node, and watches that never read, leave the
//! sandbox's memory bounded (the history's byte budget, bounded watch queues, slow watchers
//! dropped). Bounded loops on loopback.

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bootlet::kubeconfig::{ClusterAccess, Credentials};
use bootlet::secret::SecretString;
use common::*;

/// A TLS connection to the sandbox at `port` that has finished its handshake, offering `alpn`.
fn handshaken(
    port: u16,
    ca_pem: &[u8],
    alpn: &[u8],
) -> rustls::StreamOwned<rustls::ClientConnection, TcpStream> {
    let mut roots = rustls::RootCertStore::empty();
    for c in bootlet::pki::parse_certs_pem(ca_pem, "ca").unwrap() {
        roots
            .add(rustls::pki_types::CertificateDer::from(c.to_vec()))
            .unwrap();
    }
    let provider = Arc::new(bootlet::cluster::crypto_provider());
    let mut config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.alpn_protocols = vec![alpn.to_vec()];
    let name = rustls::pki_types::ServerName::try_from("127.0.0.1").unwrap();
    let conn = rustls::ClientConnection::new(Arc::new(config), name).unwrap();
    let tcp = TcpStream::connect(("127.0.0.1", port)).unwrap();
    tcp.set_read_timeout(Some(Duration::from_secs(15))).unwrap();
    let mut tls = rustls::StreamOwned::new(conn, tcp);
    while tls.conn.is_handshaking() {
        tls.conn.complete_io(&mut tls.sock).unwrap();
    }
    tls
}

fn port_of(url: &str) -> u16 {
    url.rsplit(':').next().unwrap().parse().unwrap()
}

#[test]
fn connections_that_say_nothing_are_closed_and_new_clients_are_served_again() {
    let sb = TestSandbox::configured(|o| {
        o.max_connections = 40;
        o.idle_timeout = Duration::from_secs(20);
        o.header_read_timeout = Duration::from_secs(20);
    });
    let port = port_of(&sb.url());
    let ca = sb.sb().ca_pem().as_bytes().to_vec();
    let mut silent = Vec::new();
    let opening = Instant::now();
    for i in 0..40 {
        let mut c = handshaken(port, &ca, if i % 2 == 0 { b"h2" } else { b"http/1.1" });
        if i % 2 == 0 {
            c.write_all(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n").unwrap();
            c.flush().unwrap();
        }
        silent.push(c);
    }
    eprintln!("40 silent connections opened in {:?}", opening.elapsed());
    // The cap is full: a new client is turned away at once.
    let refused = Command::new("kubectl")
        .args([
            "--kubeconfig",
            s(&sb.admin_conf()),
            "--request-timeout",
            "2s",
            "get",
            "ns",
        ])
        .output()
        .unwrap();
    assert!(
        !refused.status.success(),
        "refused while the cap is full: {}",
        String::from_utf8_lossy(&refused.stdout)
    );
    // The silent connections are closed by the server at the idle timeout.
    for c in &mut silent {
        let mut buf = [0u8; 256];
        loop {
            match c.read(&mut buf) {
                Ok(0) | Err(_) => break,
                Ok(_) => continue, // HTTP/2 settings before the close
            }
        }
    }
    assert!(
        opening.elapsed() < Duration::from_secs(30),
        "closed by the idle timeout: {:?}",
        opening.elapsed()
    );
    let served = sb.kubectl(&["get", "ns", "-o", "name"]);
    assert_eq!(served.code, 0, "a new client is served: {}", served.stderr);
    assert_has(&served.stdout, "namespace/default");
}

/// The resident memory of `pid`, in MiB.
fn rss_mib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let kb: u64 = status
        .lines()
        .find(|l| l.starts_with("VmRSS:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
        .unwrap();
    kb / 1024
}

/// `bootlet sandbox` as a process of its own (its memory apart from the test's).
struct SandboxProcess {
    child: Child,
    dir: tempfile::TempDir,
    url: String,
}

impl SandboxProcess {
    fn start() -> SandboxProcess {
        let dir = tempfile::tempdir().unwrap();
        let child = Command::new(bin())
            .args(["sandbox", "--dir", s(dir.path())])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let conf = dir.path().join("admin.conf");
        eventually(20, || conf.exists().then_some(()));
        let text = std::fs::read_to_string(&conf).unwrap();
        let url = text
            .lines()
            .find_map(|l| l.trim().strip_prefix("server: "))
            .unwrap()
            .to_string();
        SandboxProcess { child, dir, url }
    }

    /// A client certificate identity from the sandbox's CA.
    fn access(&self, cn: &str, orgs: &[&str]) -> ClusterAccess {
        let read = |f: &str| std::fs::read_to_string(self.dir.path().join(f)).unwrap();
        let ca = bootlet::pki::ca::Ca::from_pem(&read("ca.crt"), &read("ca.key")).unwrap();
        let (cert, key) = client_cert_from(&ca, cn, orgs);
        ClusterAccess {
            server: self.url.clone(),
            ca_pem: Some(read("ca.crt").into_bytes()),
            insecure: false,
            tls_server_name: None,
            credentials: Credentials::ClientCert {
                cert_pem: cert,
                key_pem: SecretString::new(key),
            },
        }
    }
}

impl Drop for SandboxProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Sends one request as `access`; the status code (0 when the connection failed).
async fn send(client: &kube::Client, method: &str, path: &str, ct: &str, body: Vec<u8>) -> u16 {
    let req = http::Request::builder()
        .method(method)
        .uri(path)
        .header("content-type", ct)
        .body(kube::client::Body::from(body))
        .unwrap();
    match client.send(req).await {
        Ok(res) => res.status().as_u16(),
        Err(_) => 0,
    }
}

/// A Node status of `n` addresses (about 40 bytes each).
fn status_patch(n: usize, tag: usize) -> Vec<u8> {
    let addrs: Vec<serde_json::Value> = (0..n)
        .map(|i| serde_json::json!({"type": "InternalDNS", "address": format!("a{tag}-{i:06}.abuse.example")}))
        .collect();
    serde_json::to_vec(&serde_json::json!({"status": {"addresses": addrs}})).unwrap()
}

#[test]
fn a_node_growing_its_own_node_and_watches_that_never_read_leave_memory_bounded() {
    let _ = bootlet::cluster::crypto_provider().install_default();
    let sb = SandboxProcess::start();
    let pid = sb.child.id();
    let node = sb.access("system:node:abuser", &["system:nodes"]);
    let rt = tokio::runtime::Runtime::new().unwrap();
    let baseline = rss_mib(pid);
    rt.block_on(async {
        let client = bootlet::cluster::kube_client(&node).unwrap();
        let created = send(
            &client,
            "POST",
            "/api/v1/nodes",
            "application/json",
            br#"{"apiVersion":"v1","kind":"Node","metadata":{"name":"abuser"}}"#.to_vec(),
        )
        .await;
        assert_eq!(created, 201);
        // Ten watches of its own Node that never read a byte.
        let mut silent = Vec::new();
        for _ in 0..10 {
            let c = bootlet::cluster::kube_client(&node).unwrap();
            let req =
                http::Request::get("/api/v1/nodes?watch=true&fieldSelector=metadata.name%3Dabuser")
                    .body(kube::client::Body::empty())
                    .unwrap();
            silent.push(c.send(req).await.expect("a watch"));
        }
        // 120 patches of its own status, each about 1 MiB of addresses: fifteen times the history's
        // byte budget, and far more than the watches' queues hold.
        for i in 0..120 {
            let code = send(
                &client,
                "PATCH",
                "/api/v1/nodes/abuser/status",
                "application/merge-patch+json",
                status_patch(25_000, i),
            )
            .await;
            assert_eq!(code, 200, "patch {i}");
        }
        // Then it shrinks back.
        let code = send(
            &client,
            "PATCH",
            "/api/v1/nodes/abuser/status",
            "application/merge-patch+json",
            status_patch(1, 9999),
        )
        .await;
        assert_eq!(code, 200);
        let peak = rss_mib(pid);
        eprintln!("sandbox RSS: {baseline} MiB at start, {peak} MiB after the attack");
        drop(silent);
    });
    // Settled: the history's byte budget (8 MiB of JSON), bounded queues, dropped slow watchers
    // and freed memory handed back keep it under a bound whatever the attack's size.
    std::thread::sleep(SLOW_SETTLE);
    let after = rss_mib(pid);
    eprintln!("sandbox RSS settled at {after} MiB");
    assert!(
        after < 200,
        "RSS {after} MiB after the attack (bound 200 MiB)"
    );
    // And a new client is served.
    let admin = sb.dir.path().join("admin.conf");
    let who = whoami(&admin, sb.dir.path());
    assert_eq!(who.code, 0, "{}", who.stderr);
}

/// Long enough for the slow-watcher timeout (10 s) to drop the silent watches.
const SLOW_SETTLE: Duration = Duration::from_secs(12);
