//! A local control plane for trying and testing bootlet: HTTPS on 127.0.0.1 speaking the part of
//! the Kubernetes API the join flow touches, with the real authentication, RBAC, validation and
//! controller rules (see each submodule for the upstream source it follows). It starts in the
//! state of a control plane fresh from `kubeadm init` (or `--bare`). It is a test and demo fixture,
//! not a Kubernetes.

pub mod authn;
pub mod command;
pub mod controllers;
pub mod core;
pub mod csrs;
pub mod decode;
pub mod discovery;
pub mod http;
pub mod impersonation;
pub mod nodes;
pub mod patch;
pub mod protobuf;
pub mod rbac;
pub mod request;
pub mod resources;
pub mod rest;
pub mod reviews;
pub mod router;
pub mod selectors;
pub mod server;
pub mod state;
pub mod store;
pub mod tables;
pub mod validation;
pub mod watch;

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::{Arc, Mutex};

use serde_json::{Value, json};

use tokio::task::JoinHandle;

use state::State;
pub use state::{Counters, SandboxOptions};

use crate::error::{Error, Result};
use crate::files::{PUBLIC_FILE_MODE, SECRET_FILE_MODE, write_atomic};
use crate::kubeconfig::{UserSpec, render_user};
use crate::pki::ca::{Ca, Subject, Usages};
use crate::pki::keys::PrivateKey;
use crate::secret::SecretString;

/// A running sandbox.
pub struct Sandbox {
    state: Arc<State>,
    shutdown: tokio::sync::watch::Sender<bool>,
    tasks: Vec<JoinHandle<()>>,
    admin_kubeconfig: SecretString,
}

impl std::fmt::Debug for Sandbox {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Sandbox({})", self.state.url)
    }
}

impl Sandbox {
    /// Starts serving (on the current tokio runtime).
    pub async fn start(options: SandboxOptions) -> Result<Sandbox> {
        let ca = Arc::new(match &options.ca {
            Some((cert, key)) => Ca::from_pem(cert, key)?,
            None => Ca::generate("kubernetes")?,
        });
        let (listener, addr) = server::bind(options.port).await?;
        let url = format!("https://{addr}");
        let acceptor = server::tls_acceptor(&ca)?;
        let (tx, rx) = tokio::sync::watch::channel(false);
        let state = Arc::new(State {
            store: Mutex::new(store::Store::new()),
            ca: ca.clone(),
            options: options.clone(),
            counters: Mutex::new(BTreeMap::new()),
            url: url.clone(),
            shutdown: rx,
            token_key: ring::hmac::Key::generate(
                ring::hmac::HMAC_SHA256,
                &ring::rand::SystemRandom::new(),
            )
            .map_err(|_| Error::internal("the OS random number generator failed"))?,
            token_cache: Mutex::new(Default::default()),
        });
        seed(&state, options.bare)?;
        let admin_kubeconfig = SecretString::new(admin_kubeconfig(&ca, &url)?);
        let mut tasks = vec![tokio::spawn(server::serve(
            listener,
            acceptor,
            state.clone(),
        ))];
        if options.run_controllers {
            tasks.push(tokio::spawn(controllers::run(state.clone())));
        }
        tasks.push(tokio::spawn(release_freed_memory(state.shutdown.clone())));
        Ok(Sandbox {
            state,
            shutdown: tx,
            tasks,
            admin_kubeconfig,
        })
    }

    /// `https://127.0.0.1:PORT`.
    pub fn url(&self) -> &str {
        &self.state.url
    }

    /// The CA certificate, PEM.
    pub fn ca_pem(&self) -> &str {
        self.state.ca.cert_pem()
    }

    /// The CA.
    pub fn ca(&self) -> &Ca {
        &self.state.ca
    }

    /// The CA's pin, as `--discovery-token-ca-cert-hash` takes it.
    pub fn ca_pin(&self) -> Result<crate::pki::pin::Pin> {
        crate::pki::pin::Pin::of_cert(self.state.ca.cert_der())
    }

    /// A kubeconfig for `kubernetes-admin` (O `system:masters`) with its key embedded.
    pub fn admin_kubeconfig(&self) -> &SecretString {
        &self.admin_kubeconfig
    }

    /// Requests counted so far, per user and verb.
    pub fn counters(&self) -> Counters {
        self.state.counters.lock().expect("counters").clone()
    }

    /// Forgets the counts.
    pub fn reset_counters(&self) {
        self.state.counters.lock().expect("counters").clear();
    }

    /// Reads an object straight from the store.
    pub fn get(&self, resource: &str, namespace: &str, name: &str) -> Option<Value> {
        self.state
            .store
            .lock()
            .expect("store")
            .get(resource, namespace, name)
            .map(std::sync::Arc::unwrap_or_clone)
    }

    /// Lists objects straight from the store.
    pub fn list(&self, resource: &str, namespace: &str) -> Vec<Value> {
        self.state
            .store
            .lock()
            .expect("store")
            .list(resource, namespace)
    }

    /// Puts an object straight into the store (test setup), replacing one of the same name.
    pub fn put(&self, resource: &str, namespace: &str, obj: Value) {
        let mut s = self.state.store.lock().expect("store");
        let name = obj["metadata"]["name"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        if s.get(resource, namespace, &name).is_some() {
            let _ = s.update(resource, namespace, &name, obj);
        } else {
            let _ = s.create(resource, namespace, obj);
        }
    }

    /// Deletes an object straight from the store (test setup).
    pub fn delete(&self, resource: &str, namespace: &str, name: &str) {
        let _ = self
            .state
            .store
            .lock()
            .expect("store")
            .delete(resource, namespace, name, None);
    }

    /// Writes `admin.conf` (0600), `ca.crt` and `ca.key` (0600) into `dir`.
    pub fn write_files(&self, dir: &Path) -> Result<()> {
        crate::files::ensure_private_dir(dir)?;
        write_atomic(
            &dir.join("admin.conf"),
            self.admin_kubeconfig.expose().as_bytes(),
            SECRET_FILE_MODE,
        )?;
        write_atomic(
            &dir.join("ca.crt"),
            self.ca_pem().as_bytes(),
            PUBLIC_FILE_MODE,
        )?;
        write_atomic(
            &dir.join("ca.key"),
            self.state.ca.key().pem().expose().as_bytes(),
            SECRET_FILE_MODE,
        )?;
        Ok(())
    }

    /// Stops serving and ends all watches.
    pub async fn shutdown(self) {
        let _ = self.shutdown.send(true);
        for t in self.tasks {
            let _ = tokio::time::timeout(std::time::Duration::from_secs(2), t).await;
        }
    }
}

fn admin_kubeconfig(ca: &Ca, url: &str) -> Result<String> {
    let key = PrivateKey::generate()?;
    let cert = ca.issue(
        key.pair(),
        &Subject {
            cn: "kubernetes-admin",
            orgs: &["system:masters".to_string()],
            dns: &[],
            ips: &[],
        },
        Usages {
            digital_signature: true,
            key_encipherment: true,
            client_auth: true,
            server_auth: false,
        },
        time::Duration::days(365),
    )?;
    render_user(
        "kubernetes",
        url,
        ca.cert_pem().as_bytes(),
        "kubernetes-admin",
        "kubernetes-admin@kubernetes",
        UserSpec::EmbeddedCert {
            cert_pem: &cert,
            key_pem: key.pem(),
        },
    )
}

/// The state of a control plane fresh from `kubeadm init`.
fn seed(state: &State, bare: bool) -> Result<()> {
    let mut store = state.store.lock().expect("store");
    let mut put = |resource: &str, ns: &str, obj: Value| {
        store
            .create(resource, ns, obj)
            .map(|_| ())
            .map_err(|e| Error::internal(format!("seeding the sandbox: {e:?}")))
    };
    for ns in ["default", "kube-system", "kube-public", "kube-node-lease"] {
        put(
            "namespaces",
            "",
            json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns}, "status": {"phase": "Active"}}),
        )?;
    }
    for (resource, obj) in rbac::default_policy() {
        put(resource, "", obj)?;
    }
    if bare {
        return Ok(());
    }
    for (resource, obj) in rbac::kubeadm_bootstrap_bindings() {
        put(resource, "", obj)?;
    }
    let kubeconfig =
        crate::kubeconfig::render_cluster_info(&state.url, state.ca.cert_pem().as_bytes())?;
    put(
        "configmaps",
        "kube-public",
        json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "cluster-info", "namespace": "kube-public"}, "data": {"kubeconfig": kubeconfig}}),
    )?;
    let rbac_name = "kubeadm:bootstrap-signer-clusterinfo";
    put(
        "roles",
        "kube-public",
        json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "Role", "metadata": {"name": rbac_name, "namespace": "kube-public"},
        "rules": [{"apiGroups": [""], "resources": ["configmaps"], "resourceNames": ["cluster-info"], "verbs": ["get"]}]}),
    )?;
    put(
        "rolebindings",
        "kube-public",
        json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "RoleBinding", "metadata": {"name": rbac_name, "namespace": "kube-public"},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": rbac_name},
        "subjects": [{"apiGroup": "rbac.authorization.k8s.io", "kind": "User", "name": "system:anonymous"}]}),
    )?;
    Ok(())
}

/// A bootstrap-token Secret object as `kubeadm token create` makes it, for tests and demos.
pub fn token_secret(
    token: &crate::token::BootstrapToken,
    expiration: Option<&str>,
    usages: &[&str],
    groups: &str,
) -> Value {
    use base64::Engine;
    let b = |s: &str| base64::engine::general_purpose::STANDARD.encode(s);
    let mut data = serde_json::Map::new();
    data.insert("token-id".into(), json!(b(token.id())));
    data.insert("token-secret".into(), json!(b(token.secret().expose())));
    if let Some(e) = expiration {
        data.insert("expiration".into(), json!(b(e)));
    }
    for u in usages {
        data.insert(format!("usage-bootstrap-{u}"), json!(b("true")));
    }
    if !groups.is_empty() {
        data.insert("auth-extra-groups".into(), json!(b(groups)));
    }
    json!({"apiVersion": "v1", "kind": "Secret", "type": "bootstrap.kubernetes.io/token",
        "metadata": {"name": token.secret_name(), "namespace": "kube-system"}, "data": data})
}

/// Every few seconds, hands memory the allocator holds free back to the system: glibc keeps what
/// a burst of large objects freed in per-thread arenas, and without this the sandbox's resident
/// memory would stay at the burst's peak after its bounded structures had let the objects go.
async fn release_freed_memory(mut shutdown: tokio::sync::watch::Receiver<bool>) {
    let mut every = tokio::time::interval(std::time::Duration::from_secs(5));
    loop {
        tokio::select! {
            _ = every.tick() => trim(),
            _ = shutdown.changed() => return,
        }
    }
}

#[cfg(all(target_os = "linux", target_env = "gnu"))]
fn trim() {
    // SAFETY: malloc_trim only returns free pages of the allocator's arenas to the kernel; it
    // takes no pointers and touches no live allocation.
    unsafe {
        libc::malloc_trim(0);
    }
}

#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
fn trim() {}
