//! Sends the corpus to a control plane: the identities set up through its API (tokens as
//! Secrets, node certificates from its CA), each step's placeholders filled, each answer read
//! the way a client reads it (a watch as its events).

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use base64::Engine;
use bootlet::kubeconfig::{ClusterAccess, Credentials};
use bootlet::secret::SecretString;
use http_body_util::BodyExt;
use serde_json::{Value, json};

use super::answer::{self, Answer, Names};
use super::corpus::{Case, CsrSpec, Identity, Step};
use crate::common::cluster::TestCluster;

/// The node the `node` identity is.
pub const NODE: &str = "conf-node-1";
/// The node the `other-node` identity is.
pub const OTHER: &str = "conf-node-2";

/// The tokens behind the token identities: valid, expired, no authentication usage, extra groups,
/// and one no Secret holds.
const TOKEN: &str = "cfvali.0123456789abcdef";
const TOKEN_EXPIRED: &str = "cfexpd.0123456789abcdef";
const TOKEN_NO_AUTH: &str = "cfnoau.0123456789abcdef";
const TOKEN_EXTRA: &str = "cfxtra.0123456789abcdef";
const TOKEN_UNKNOWN: &str = "cfnone.0123456789abcdef";
const EXTRA_GROUPS: &str =
    "system:bootstrappers:kubeadm:default-node-token,system:bootstrappers:conformance";

/// A control plane ready for the corpus: a client per credential.
pub struct Replay<'a> {
    cluster: &'a TestCluster,
    rt: tokio::runtime::Runtime,
    clients: BTreeMap<&'static str, kube::Client>,
    nonce: String,
    admin: String,
}

impl<'a> Replay<'a> {
    /// Sets the identities up on `cluster` and waits until each token authenticates.
    pub fn prepare(cluster: &'a TestCluster) -> Replay<'a> {
        let rt = crate::common::client_runtime();
        let nonce: String = (0..4).map(|_| (b'a' + rand_byte() % 26) as char).collect();
        let mut replay = Replay {
            cluster,
            rt,
            clients: BTreeMap::new(),
            nonce,
            admin: String::new(),
        };
        replay.make_clients();
        replay.admin = replay.admin_user();
        replay.register_tokens();
        replay
    }

    fn make_clients(&mut self) {
        let admin = bootlet::kubeconfig::parse(
            &std::fs::read_to_string(self.cluster.admin_conf()).unwrap(),
            self.cluster.scratch(),
            "admin",
        )
        .unwrap();
        let access = |credentials| ClusterAccess {
            server: self.cluster.url(),
            ca_pem: Some(self.cluster.ca_pem()),
            insecure: false,
            tls_server_name: None,
            credentials,
        };
        let token = |t: &str| Credentials::Token(SecretString::new(t.to_string()));
        let cert = |node: &str| {
            let (cert_pem, key) = self
                .cluster
                .client_cert(&format!("system:node:{node}"), &["system:nodes"]);
            Credentials::ClientCert {
                cert_pem,
                key_pem: SecretString::new(key),
            }
        };
        let accesses = [
            ("admin", admin),
            ("anonymous", access(Credentials::None)),
            ("token", access(token(TOKEN))),
            ("token-expired", access(token(TOKEN_EXPIRED))),
            ("token-unknown", access(token(TOKEN_UNKNOWN))),
            ("token-no-auth", access(token(TOKEN_NO_AUTH))),
            ("token-extra-groups", access(token(TOKEN_EXTRA))),
            ("node", access(cert(NODE))),
            ("other-node", access(cert(OTHER))),
        ];
        let _guard = self.rt.enter();
        for (name, a) in accesses {
            self.clients
                .insert(name, bootlet::cluster::kube_client(&a).unwrap());
        }
    }

    /// Who the admin identity is, as the server says.
    fn admin_user(&self) -> String {
        let review = json!({"apiVersion": "authentication.k8s.io/v1", "kind": "SelfSubjectReview"});
        let (code, _, body) = self.send(
            Identity::Admin,
            "POST",
            "/apis/authentication.k8s.io/v1/selfsubjectreviews",
            &[],
            Some(("application/json", review.to_string().into_bytes())),
        );
        assert_eq!(
            code,
            201,
            "the admin's SelfSubjectReview: {}",
            String::from_utf8_lossy(&body)
        );
        let v: Value = serde_json::from_slice(&body).unwrap();
        v["status"]["userInfo"]["username"]
            .as_str()
            .unwrap()
            .to_string()
    }

    /// Creates the tokens' Secrets as `kubeadm token create` would, then waits until the valid
    /// ones authenticate and the signing one's JWS is in cluster-info (the API server reads
    /// Secrets from an informer, the bootstrap signer runs on its own time).
    fn register_tokens(&self) {
        let tokens = [
            (TOKEN, None, &["authentication", "signing"][..], ""),
            (
                TOKEN_EXPIRED,
                Some("2020-01-01T00:00:00Z"),
                &["authentication", "signing"][..],
                "",
            ),
            (TOKEN_NO_AUTH, None, &["signing"][..], ""),
            (TOKEN_EXTRA, None, &["authentication"][..], EXTRA_GROUPS),
        ];
        for (t, expiration, usages, groups) in tokens {
            let t = bootlet::token::BootstrapToken::parse(t).unwrap();
            let groups = if groups.is_empty() {
                bootlet::token::DEFAULT_NODE_TOKEN_GROUP
            } else {
                groups
            };
            let secret = bootlet::sandbox::token_secret(&t, expiration, usages, groups);
            let (code, _, body) = self.send(
                Identity::Admin,
                "POST",
                "/api/v1/namespaces/kube-system/secrets",
                &[],
                Some(("application/json", secret.to_string().into_bytes())),
            );
            assert_eq!(
                code,
                201,
                "creating the token Secret: {}",
                String::from_utf8_lossy(&body)
            );
        }
        let review = json!({"apiVersion": "authentication.k8s.io/v1", "kind": "SelfSubjectReview"})
            .to_string();
        for who in [Identity::Token, Identity::TokenExtra] {
            wait_for(|| {
                let (code, _, _) = self.send(
                    who,
                    "POST",
                    "/apis/authentication.k8s.io/v1/selfsubjectreviews",
                    &[],
                    Some(("application/json", review.clone().into_bytes())),
                );
                code == 201
            });
        }
        wait_for(|| {
            let (_, _, body) = self.send(
                Identity::Admin,
                "GET",
                "/api/v1/namespaces/kube-public/configmaps/cluster-info",
                &[],
                None,
            );
            let v: Value = serde_json::from_slice(&body).unwrap_or_default();
            v["data"]["jws-kubeconfig-cfvali"].is_string()
        });
    }

    /// Runs `case` (its `index` in the corpus makes its names) and reads each step's answer.
    pub fn run(&self, index: usize, case: &Case) -> Vec<Answer> {
        let names = Names {
            id: format!("conf-{index:03}-{}", self.nonce),
            tokenid: format!("k{index:03}{}", &self.nonce[..2]),
            admin: self.admin.clone(),
        };
        let mut answers: Vec<Answer> = Vec::new();
        let mut bodies: Vec<Value> = Vec::new();
        for step in &case.steps {
            let vars = Vars {
                names: &names,
                bodies: &bodies,
            };
            let (answer, body) = self.run_step(case.who, step, &vars);
            bodies.push(body);
            answers.push(answer);
        }
        answers
    }

    fn run_step(&self, who: Identity, step: &Step, vars: &Vars<'_>) -> (Answer, Value) {
        let who = step.sender(who);
        let (method, path) = step.method_and_path();
        let path = vars.fill(path, step.csr.as_ref());
        let headers: Vec<(String, String)> = step
            .headers
            .iter()
            .map(|(k, v)| (k.clone(), vars.fill(v, None)))
            .collect();
        let body = step.body.as_ref().map(|b| {
            let ct = step.content_type.as_deref().unwrap_or("application/json");
            (ct, vars.fill(b, step.csr.as_ref()).into_bytes())
        });
        if let Some(n) = step.watch {
            let events = self.watch(who, &path, n, step.settle);
            return (
                answer::of_watch(events, &step.read, vars.names),
                Value::Null,
            );
        }
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let (code, content_type, bytes) = self.send(who, method, &path, &headers, body.clone());
            let parsed: Value = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
            let waiting = step.until.as_deref().is_some_and(|p| {
                answer::read_path(&parsed, p, vars.names).is_none() && Instant::now() < deadline
            });
            if !waiting {
                let a = answer::of_response(code, &content_type, &bytes, &step.read, vars.names);
                return (a, parsed);
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// One request; the status, content type and body.
    pub fn send(
        &self,
        who: Identity,
        method: &str,
        path: &str,
        headers: &[(String, String)],
        body: Option<(&str, Vec<u8>)>,
    ) -> (u16, String, Vec<u8>) {
        let (client, impersonation) = self.client_of(who);
        let mut req = http::Request::builder().method(method).uri(path);
        for (k, v) in impersonation.iter().chain(headers) {
            req = req.header(k.as_str(), v.as_str());
        }
        let bytes = match body {
            Some((ct, b)) => {
                req = req.header("content-type", ct);
                b
            }
            None => Vec::new(),
        };
        let req = req.body(kube::client::Body::from(bytes)).unwrap();
        self.rt.block_on(async move {
            let res = client
                .send(req)
                .await
                .expect("the request reaches the server");
            let code = res.status().as_u16();
            let ct = res
                .headers()
                .get("content-type")
                .and_then(|v| v.to_str().ok())
                .unwrap_or_default()
                .to_string();
            let bytes = res.into_body().collect().await.unwrap().to_bytes();
            (code, ct, bytes.to_vec())
        })
    }

    /// The events of a watch: `n` of them, then (if `settle`) any more that come within half a
    /// second; stops after 20 s.
    fn watch(
        &self,
        who: Identity,
        path: &str,
        n: usize,
        settle: bool,
    ) -> Result<Vec<Value>, (u16, Vec<u8>)> {
        let (client, impersonation) = self.client_of(who);
        let mut req = http::Request::get(path);
        for (k, v) in &impersonation {
            req = req.header(k.as_str(), v.as_str());
        }
        let req = req.body(kube::client::Body::empty()).unwrap();
        self.rt.block_on(async move {
            let res = client
                .send(req)
                .await
                .expect("the watch reaches the server");
            let code = res.status().as_u16();
            let mut body = res.into_body();
            if code != 200 {
                let bytes = body.collect().await.unwrap().to_bytes();
                return Err((code, bytes.to_vec()));
            }
            let mut buf = Vec::new();
            let mut events = Vec::new();
            let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
            loop {
                if events.len() >= n && !settle {
                    break;
                }
                let until = if events.len() >= n {
                    deadline.min(tokio::time::Instant::now() + Duration::from_millis(500))
                } else {
                    deadline
                };
                let Ok(Some(Ok(frame))) = tokio::time::timeout_at(until, body.frame()).await else {
                    break;
                };
                if let Some(d) = frame.data_ref() {
                    buf.extend_from_slice(d);
                }
                while let Some(i) = buf.iter().position(|b| *b == b'\n') {
                    let line: Vec<u8> = buf.drain(..=i).collect();
                    events.push(serde_json::from_slice(&line).unwrap_or(Value::Null));
                }
            }
            Ok(events)
        })
    }

    /// The client `who` sends with, and the impersonation headers it adds.
    fn client_of(&self, who: Identity) -> (kube::Client, Vec<(String, String)>) {
        let h = |pairs: &[(&str, &str)]| -> Vec<(String, String)> {
            pairs
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect()
        };
        let (base, headers) = match who {
            Identity::AdminAsNode => (
                "admin",
                h(&[
                    ("Impersonate-User", &format!("system:node:{NODE}")),
                    ("Impersonate-Group", "system:nodes"),
                ]),
            ),
            Identity::AdminAsToken => (
                "admin",
                h(&[
                    ("Impersonate-User", "system:bootstrap:cfvali"),
                    ("Impersonate-Group", "system:bootstrappers"),
                    (
                        "Impersonate-Group",
                        bootlet::token::DEFAULT_NODE_TOKEN_GROUP,
                    ),
                ]),
            ),
            Identity::AdminAsNobody => ("admin", h(&[("Impersonate-User", "conformance-nobody")])),
            Identity::NodeAsAdmin => (
                "node",
                h(&[
                    ("Impersonate-User", "kubernetes-admin"),
                    ("Impersonate-Group", "system:masters"),
                ]),
            ),
            other => (other.key(), Vec::new()),
        };
        (self.clients[base].clone(), headers)
    }
}

/// What a step's placeholders stand for.
struct Vars<'a> {
    names: &'a Names,
    /// The answers of the steps before this one (`{rv}`, `{rv:N}`, `{name:N}`).
    bodies: &'a [Value],
}

impl Vars<'_> {
    /// `text` with its placeholders filled.
    fn fill(&self, text: &str, csr: Option<&CsrSpec>) -> String {
        static PLACEHOLDER: std::sync::OnceLock<regex::Regex> = std::sync::OnceLock::new();
        let re =
            PLACEHOLDER.get_or_init(|| regex::Regex::new(r"\{([a-z0-9]+)(?::([^}]*))?\}").unwrap());
        re.replace_all(text, |c: &regex::Captures| {
            let arg = c.get(2).map(|m| m.as_str()).unwrap_or_default();
            match &c[1] {
                "id" => self.names.id.clone(),
                "tokenid" => self.names.tokenid.clone(),
                "node" => NODE.to_string(),
                "other" => OTHER.to_string(),
                "rv" => self.metadata(arg, "resourceVersion"),
                "name" => self.metadata(arg, "name"),
                "csr" => {
                    let spec = csr.expect("{csr} needs a `csr` table");
                    b64(&csr_pem(&self.fill_spec(spec)))
                }
                "big" => "x".repeat(arg.parse().expect("{big:N}")),
                "b64" => b64(arg),
                other => panic!("unknown placeholder {{{other}}}"),
            }
        })
        .into_owned()
    }

    /// A metadata field of step `step`'s answer (1-based), or of the previous step's.
    fn metadata(&self, step: &str, field: &str) -> String {
        let body = match step.parse::<usize>() {
            Ok(n) => &self.bodies[n - 1],
            Err(_) => self.bodies.last().unwrap_or(&Value::Null),
        };
        body["metadata"][field].as_str().unwrap_or("0").to_string()
    }

    fn fill_spec(&self, spec: &CsrSpec) -> CsrSpec {
        let f = |v: &Vec<String>| v.iter().map(|s| self.fill(s, None)).collect();
        CsrSpec {
            cn: self.fill(&spec.cn, None),
            o: f(&spec.o),
            dns: f(&spec.dns),
            ips: spec.ips.clone(),
            emails: spec.emails.clone(),
            key: spec.key.clone(),
        }
    }
}

fn b64(text: &str) -> String {
    base64::engine::general_purpose::STANDARD.encode(text)
}

/// A CSR PEM as `spec` says: bootlet's builder for a P-256 key with DNS/IP names, openssl (an
/// independent maker) for other keys and for e-mail names.
fn csr_pem(spec: &CsrSpec) -> String {
    let key = spec.key.as_deref().unwrap_or("ec");
    if key == "ec" && spec.emails.is_empty() {
        let k = bootlet::pki::keys::PrivateKey::generate().unwrap();
        let orgs: Vec<&str> = spec.o.iter().map(String::as_str).collect();
        let ips: Vec<std::net::IpAddr> = spec.ips.iter().map(|i| i.parse().unwrap()).collect();
        return bootlet::pki::csr::build(&k, &spec.cn, &orgs, &spec.dns, &ips).unwrap();
    }
    let dir = tempfile::tempdir().unwrap();
    let subject: String = spec
        .o
        .iter()
        .map(|o| format!("/O={o}"))
        .chain((!spec.cn.is_empty()).then(|| format!("/CN={}", spec.cn)))
        .collect();
    let sans: Vec<String> = (spec.dns.iter().map(|d| format!("DNS:{d}")))
        .chain(spec.ips.iter().map(|i| format!("IP:{i}")))
        .chain(spec.emails.iter().map(|e| format!("email:{e}")))
        .collect();
    let newkey: &[&str] = match key {
        "rsa" => &["-newkey", "rsa:2048"],
        "ed25519" => &["-newkey", "ed25519"],
        "ec" => &["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256"],
        other => panic!("unknown key type {other}"),
    };
    let out = dir.path().join("r.csr");
    let mut c = std::process::Command::new("openssl");
    c.args(["req", "-new", "-nodes", "-keyout"])
        .arg(dir.path().join("r.key"))
        .args(newkey)
        .args(["-subj", if subject.is_empty() { "/" } else { &subject }])
        .arg("-out")
        .arg(&out);
    if !sans.is_empty() {
        c.args(["-addext", &format!("subjectAltName={}", sans.join(","))]);
    }
    crate::common::output_ok(&mut c);
    std::fs::read_to_string(out).unwrap()
}

fn wait_for(mut ready: impl FnMut() -> bool) {
    let end = Instant::now() + Duration::from_secs(30);
    while !ready() {
        assert!(
            Instant::now() < end,
            "the identities were not ready in 30 s"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn rand_byte() -> u8 {
    let mut b = [0u8; 1];
    ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut b).unwrap();
    b[0]
}
