//! A node under test, as the scenarios on both control planes see it: its scratch directory,
//! root and bootstrap kubeconfig, how it joins and renews, and what makes its credentials usable
//! (checked with openssl and `kubectl auth whoami` as the node); and CSRs as kubectl shows them.

use std::path::PathBuf;

use serde_json::Value;

use super::cluster::TestCluster;
use super::*;

/// A node's scratch directory, root and bootstrap kubeconfig.
pub struct Node {
    pub dir: tempfile::TempDir,
    pub root: PathBuf,
    pub bootstrap: PathBuf,
    pub name: String,
}

impl Node {
    /// A node about to join `c` with `token` (registered now) as `name`.
    pub fn new(c: &TestCluster, token: &str, name: &str) -> Node {
        let (dir, bootstrap, root) = c.token_node(token);
        Node {
            dir,
            root,
            bootstrap,
            name: name.into(),
        }
    }

    /// A node in `dir` (its root `dir/node`) joining with `bootstrap`.
    pub fn at(dir: tempfile::TempDir, bootstrap: PathBuf, name: &str) -> Node {
        let root = dir.path().join("node");
        Node {
            dir,
            root,
            bootstrap,
            name: name.into(),
        }
    }

    /// `bootlet join` with only the bootstrap kubeconfig.
    pub fn join(&self, extra: &[&str]) -> Run {
        let how = ["--bootstrap-kubeconfig", s(&self.bootstrap)];
        let wait = ["--approval-timeout", "60s"];
        join_node(
            s(&self.root),
            &self.name,
            &[&how[..], &wait, extra].concat(),
        )
    }

    pub fn renew(&self, extra: &[&str]) -> Run {
        let wait = ["--approval-timeout", "60s"];
        bootlet(&[&["renew", "--root", s(&self.root)][..], &wait, extra].concat())
    }

    /// `bootlet certs check-expiration -o json`: the credential named `name` (client, serving, ca).
    pub fn expiration(&self, name: &str) -> Value {
        let run = bootlet(&[
            "certs",
            "check-expiration",
            "--root",
            s(&self.root),
            "-o",
            "json",
        ]);
        run.ok();
        let report: Value = serde_json::from_str(&run.stdout).unwrap();
        report["credentials"]
            .as_array()
            .expect("credentials")
            .iter()
            .find(|c| c["name"] == name)
            .unwrap_or_else(|| panic!("{name} in {report}"))
            .clone()
    }

    pub fn pki(&self) -> PathBuf {
        self.root.join("var/lib/kubelet/pki")
    }

    pub fn current(&self, which: &str) -> PathBuf {
        self.pki().join(format!("kubelet-{which}-current.pem"))
    }

    pub fn target(&self, which: &str) -> String {
        std::fs::read_link(self.current(which))
            .unwrap()
            .display()
            .to_string()
    }

    pub fn kubelet_conf(&self) -> PathBuf {
        self.root.join("etc/kubernetes/kubelet.conf")
    }

    /// kubectl with the node's own kubeconfig.
    pub fn kubectl(&self, args: &[&str]) -> Run {
        kubectl_with(&self.kubelet_conf(), self.dir.path(), args)
    }

    pub fn whoami(&self) -> String {
        let who = whoami(&self.kubelet_conf(), self.dir.path());
        assert_eq!(who.code, 0, "{}", who.stderr);
        who.stdout
    }

    /// Each pair in `which` is usable: 0600, key matches, chains to the cluster CA (openssl), names
    /// the node with the right usage; and the node's kubeconfig authenticates as the node.
    pub fn assert_usable(&self, c: &TestCluster, which: &[&str]) {
        for w in which {
            let p = self.current(w);
            assert_eq!(mode(&p), 0o600, "{w}");
            let text = std::fs::read_to_string(&p).unwrap();
            let key = bootlet::pki::keys::PrivateKey::from_pem(
                &bootlet::pki::keys::private_key_block(&text).expect("a key in the pair"),
                w,
            )
            .unwrap();
            let info = cert_info(&p);
            assert_eq!(info.spki, key.spki_der(), "{w}: key matches certificate");
            assert_eq!(info.cn(), format!("system:node:{}", self.name));
            assert_eq!(info.organizations, ["system:nodes"]);
            assert_eq!(info.client_auth, *w == "client", "{w} usage");
            assert_eq!(info.server_auth, *w == "server", "{w} usage");
            assert!(openssl_verify(&c.ca_crt(), &p), "{w} chains to the CA");
        }
        assert_eq!(mode(&self.kubelet_conf()), 0o600);
        assert_eq!(
            std::fs::read(self.root.join("etc/kubernetes/pki/ca.crt")).unwrap(),
            c.ca_pem()
        );
        assert_eq!(self.whoami(), format!("system:node:{}", self.name));
    }
}

/// The decision on a CSR as kubectl shows it: (type, reason) of the Approved/Denied/Failed
/// condition, and how many such conditions there are.
pub fn decision(c: &TestCluster, csr: &str) -> (String, String, usize) {
    let Some(obj) = c.get_json(&["csr", csr]) else {
        return ("Missing".into(), String::new(), 0);
    };
    let conds = obj["status"]["conditions"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    let decided: Vec<&Value> = conds
        .iter()
        .filter(|c| ["Approved", "Denied"].contains(&c["type"].as_str().unwrap_or_default()))
        .collect();
    match decided.first() {
        Some(d) => (
            d["type"].as_str().unwrap().into(),
            d["reason"].as_str().unwrap_or_default().into(),
            decided.len(),
        ),
        None => ("Pending".into(), String::new(), 0),
    }
}

pub fn signer_of(csr: &Value) -> &str {
    csr["spec"]["signerName"].as_str().unwrap_or_default()
}

pub const CLIENT_SIGNER: &str = "kubernetes.io/kube-apiserver-client-kubelet";
pub const SERVING_SIGNER: &str = "kubernetes.io/kubelet-serving";
