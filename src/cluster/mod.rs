//! Talking to the API server: one [`Cluster`] per identity (admin, bootstrap token, node,
//! anonymous), every request passing the [`Gate`] that holds the running phase to the requests its
//! manifest declares and records each one for the report.
//!
//! Retries: transient failures (connection errors, 5xx, 429) are retried with capped exponential
//! backoff and full jitter, honouring the server's Retry-After (`details.retryAfterSeconds`,
//! which the API server sets on 429s), until a per-call budget runs out. 401, 403, 422 and TLS
//! verification failures are final and fail fast. kube's own retry layer is switched off so
//! there is exactly one policy.
//!
//! Dry-run: mutations are recorded and not sent; reads try the real server once (short timeout)
//! and otherwise are answered `None`, labelled "synthesized" in the report.

pub mod csr;
mod gate;
mod http_stack;
pub mod retry;

pub use gate::Gate;
pub use http_stack::{crypto_provider, kube_client};

use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::core::v1::{ConfigMap, Secret};
use k8s_openapi::api::rbac::v1::{ClusterRoleBinding, Role, RoleBinding};
use kube::api::{Api, PostParams};
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::engine::report::RequestRecord;
use crate::error::{Error, Result};
use crate::kubeconfig::ClusterAccess;
use retry::{Policy, classify};

static POST_PARAMS: std::sync::LazyLock<PostParams> = std::sync::LazyLock::new(PostParams::default);

/// One API server, one identity.
#[derive(Clone)]
pub struct Cluster {
    client: kube::Client,
    server: String,
    identity: &'static str,
    gate: Arc<Gate>,
    dry_run: bool,
    policy: Policy,
    /// Where the one-line "not answering" / "answers again" notices go (none: silent).
    notices: Option<crate::output::Output>,
    /// Whether the last call failed transiently, shared by clones: a notice is printed when the
    /// server first fails and when it recovers, not per attempt.
    failing: Arc<std::sync::atomic::AtomicBool>,
    /// A deadline no call may outlive (the caller's own timeout: discovery, approval).
    until: Option<(tokio::time::Instant, &'static str)>,
}

impl std::fmt::Debug for Cluster {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Cluster({} as {})", self.server, self.identity)
    }
}

/// Where a request goes and what it is, for the gate and the report.
pub struct Req<'a> {
    /// Kubernetes verb.
    pub verb: &'static str,
    /// Plural resource.
    pub resource: &'static str,
    /// HTTP method.
    pub method: &'static str,
    /// URL path.
    pub path: String,
    /// Body to record (already redacted).
    pub body: Option<serde_json::Value>,
    /// Marker for lifetimes.
    pub _p: std::marker::PhantomData<&'a ()>,
}

impl Cluster {
    /// A client for `access` speaking as `identity` ("admin", "bootstrap token", "node",
    /// "anonymous"). Builds the TLS configuration; connects lazily.
    pub fn new(
        access: &ClusterAccess,
        identity: &'static str,
        gate: Arc<Gate>,
        dry_run: bool,
        budget: Duration,
    ) -> Result<Cluster> {
        let client = kube_client(access)?;
        Ok(Cluster {
            client,
            server: access.server.clone(),
            identity,
            gate,
            dry_run,
            policy: Policy::with_budget(budget),
            notices: None,
            failing: Arc::new(std::sync::atomic::AtomicBool::new(false)),
            until: None,
        })
    }

    /// The same client, printing a line when the server first fails and when it recovers.
    pub fn with_notices(mut self, out: crate::output::Output) -> Cluster {
        self.notices = Some(out);
        self
    }

    /// The same client, no call of which outlives `deadline` (the budget of `flag`).
    pub fn until(&self, deadline: tokio::time::Instant, flag: &'static str) -> Cluster {
        let mut c = self.clone();
        c.until = Some((deadline, flag));
        c
    }

    fn notice(&self, msg: String) {
        if let Some(out) = &self.notices {
            out.progress(&self.gate.phase_name(), msg);
        }
    }

    /// A client for a cluster-side command (no phase, no dry-run), retrying transient failures
    /// within `budget` per call.
    pub fn unrestricted(
        access: &ClusterAccess,
        identity: &'static str,
        budget: Duration,
    ) -> Result<Cluster> {
        Cluster::new(access, identity, Arc::new(Gate::open()), false, budget)
    }

    /// The server URL.
    pub fn server(&self) -> &str {
        &self.server
    }

    /// Whether mutations are withheld.
    pub fn is_dry_run(&self) -> bool {
        self.dry_run
    }

    /// The identity label.
    pub fn identity(&self) -> &'static str {
        self.identity
    }

    /// The underlying kube client.
    pub fn client(&self) -> &kube::Client {
        &self.client
    }

    pub(crate) fn gate(&self) -> &Gate {
        &self.gate
    }

    pub(crate) fn policy(&self) -> &Policy {
        &self.policy
    }

    fn record(&self, req: &Req<'_>, outcome: &str) {
        self.gate.record(RequestRecord {
            method: req.method.into(),
            path: req.path.clone(),
            verb: req.verb.into(),
            resource: req.resource.into(),
            identity: self.identity.into(),
            outcome: outcome.into(),
            body: req.body.clone(),
        });
    }

    /// Runs a read. Real: with retries; `Ok(None)` on 404. Dry-run: one quick attempt, else
    /// `None` labelled synthesized.
    pub async fn read<T, F, Fut>(&self, req: Req<'_>, call: F) -> Result<Option<T>>
    where
        F: Fn() -> Fut,
        Fut: Future<Output = kube::Result<Option<T>>>,
    {
        self.gate.admit(req.verb, req.resource)?;
        if self.dry_run {
            let quick = tokio::time::timeout(Duration::from_secs(2), call()).await;
            return match quick {
                Ok(Ok(v)) => {
                    self.record(&req, "sent (read-only)");
                    Ok(v)
                }
                _ => {
                    self.record(
                        &req,
                        "synthesized (no answer from the cluster; treated as not found)",
                    );
                    Ok(None)
                }
            };
        }
        self.record(&req, "sent");
        self.with_retries(&req, call).await
    }

    /// Runs a mutation. Real: with retries. Dry-run: recorded, not sent; `Ok(None)`.
    pub async fn write<T, F, Fut>(&self, req: Req<'_>, call: F) -> Result<Option<T>>
    where
        F: Fn() -> Fut,
        Fut: Future<Output = kube::Result<T>>,
    {
        self.gate.admit(req.verb, req.resource)?;
        if self.dry_run {
            self.record(&req, "not sent (dry-run)");
            return Ok(None);
        }
        self.record(&req, "sent");
        self.with_retries(&req, || {
            let fut = call();
            async move { fut.await.map(Some) }
        })
        .await
    }

    async fn with_retries<T, F, Fut>(&self, req: &Req<'_>, call: F) -> Result<Option<T>>
    where
        F: Fn() -> Fut,
        Fut: Future<Output = kube::Result<Option<T>>>,
    {
        use std::sync::atomic::Ordering;
        let mut attempt = 0u32;
        let started = tokio::time::Instant::now();
        let mut deadline = started + self.policy.budget;
        // The flag whose budget ends the retries, for the hint.
        let mut budget_flag = "--api-timeout";
        if let Some((until, flag)) = self.until
            && until < deadline
        {
            deadline = until;
            budget_flag = flag;
        }
        loop {
            attempt += 1;
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            let outcome = tokio::time::timeout(
                self.policy
                    .attempt_timeout
                    .min(left.max(Duration::from_millis(50))),
                call(),
            )
            .await;
            let err = match outcome {
                Ok(Ok(v)) => {
                    if self.failing.swap(false, Ordering::Relaxed) {
                        self.notice(format!("The API server {} answers again", self.server));
                    }
                    return Ok(v);
                }
                Ok(Err(e)) => e,
                Err(_) => retry::timeout_error(self.policy.attempt_timeout.min(left)),
            };
            let failure = classify(&err, self, req);
            match failure {
                retry::Failure::Final(e) => return Err(e),
                retry::Failure::Conflict(e) => return Err(e),
                retry::Failure::Transient { cause, retry_after } => {
                    let now = tokio::time::Instant::now();
                    if now >= deadline {
                        return Err(Error::new(
                            crate::error::ErrorKind::Unavailable,
                            format!(
                                "{} {} as {} kept failing for {} ({attempt} attempts; last: {cause}); check that {} is up and reachable, or raise {budget_flag}",
                                req.verb,
                                req.resource,
                                self.identity,
                                csr::humantime(now - started),
                                self.server
                            ),
                        ));
                    }
                    if !self.failing.swap(true, Ordering::Relaxed) {
                        self.notice(format!(
                            "The API server {} is not answering ({cause}); retrying for up to {} (-v shows each attempt)",
                            self.server,
                            csr::humantime(deadline - now)
                        ));
                    }
                    // Sleep no later than the deadline: the last attempt happens at it.
                    let wait = self.policy.delay(attempt, retry_after).min(deadline - now);
                    tracing::debug!(
                        "retrying {} {} as {} in {:?} (attempt {attempt}): {cause}",
                        req.verb,
                        req.resource,
                        self.identity,
                        wait
                    );
                    tokio::time::sleep(wait).await;
                }
            }
        }
    }

    // ----- typed helpers ----------------------------------------------------------------------

    /// A request description for the gate and the report.
    pub fn req(
        verb: &'static str,
        resource: &'static str,
        method: &'static str,
        path: String,
        body: Option<serde_json::Value>,
    ) -> Req<'static> {
        Req {
            verb,
            resource,
            method,
            path,
            body,
            _p: std::marker::PhantomData,
        }
    }

    /// GET a namespaced object.
    pub async fn get_namespaced<K>(
        &self,
        resource: &'static str,
        ns: &str,
        name: &str,
    ) -> Result<Option<K>>
    where
        K: kube::Resource<Scope = k8s_openapi::NamespaceResourceScope, DynamicType = ()>
            + Clone
            + DeserializeOwned
            + std::fmt::Debug,
    {
        let api: Api<K> = Api::namespaced(self.client.clone(), ns);
        let path = format!("{}/{name}", api.resource_url());
        self.read(Self::req("get", resource, "GET", path, None), || {
            api.get_opt(name)
        })
        .await
    }

    /// GET a cluster-scoped object.
    pub async fn get_cluster<K>(&self, resource: &'static str, name: &str) -> Result<Option<K>>
    where
        K: kube::Resource<Scope = k8s_openapi::ClusterResourceScope, DynamicType = ()>
            + Clone
            + DeserializeOwned
            + std::fmt::Debug,
    {
        let api: Api<K> = Api::all(self.client.clone());
        let path = format!("{}/{name}", api.resource_url());
        self.read(Self::req("get", resource, "GET", path, None), || {
            api.get_opt(name)
        })
        .await
    }

    /// POST a namespaced object; `recorded` is the redacted body for the report.
    pub async fn create_namespaced<K>(
        &self,
        resource: &'static str,
        ns: &str,
        obj: &K,
        recorded: serde_json::Value,
    ) -> Result<Option<K>>
    where
        K: kube::Resource<Scope = k8s_openapi::NamespaceResourceScope, DynamicType = ()>
            + Clone
            + DeserializeOwned
            + Serialize
            + std::fmt::Debug,
    {
        let api: Api<K> = Api::namespaced(self.client.clone(), ns);
        let path = api.resource_url().to_string();
        self.write(
            Self::req("create", resource, "POST", path, Some(recorded)),
            || api.create(&POST_PARAMS, obj),
        )
        .await
    }

    /// PUT a namespaced object.
    pub async fn replace_namespaced<K>(
        &self,
        resource: &'static str,
        ns: &str,
        name: &str,
        obj: &K,
        recorded: serde_json::Value,
    ) -> Result<Option<K>>
    where
        K: kube::Resource<Scope = k8s_openapi::NamespaceResourceScope, DynamicType = ()>
            + Clone
            + DeserializeOwned
            + Serialize
            + std::fmt::Debug,
    {
        let api: Api<K> = Api::namespaced(self.client.clone(), ns);
        let path = format!("{}/{name}", api.resource_url());
        self.write(
            Self::req("update", resource, "PUT", path, Some(recorded)),
            || api.replace(name, &POST_PARAMS, obj),
        )
        .await
    }

    /// POST a cluster-scoped object.
    pub async fn create_cluster<K>(
        &self,
        resource: &'static str,
        obj: &K,
        recorded: serde_json::Value,
    ) -> Result<Option<K>>
    where
        K: kube::Resource<Scope = k8s_openapi::ClusterResourceScope, DynamicType = ()>
            + Clone
            + DeserializeOwned
            + Serialize
            + std::fmt::Debug,
    {
        let api: Api<K> = Api::all(self.client.clone());
        let path = api.resource_url().to_string();
        self.write(
            Self::req("create", resource, "POST", path, Some(recorded)),
            || api.create(&POST_PARAMS, obj),
        )
        .await
    }

    /// PUT a cluster-scoped object.
    pub async fn replace_cluster<K>(
        &self,
        resource: &'static str,
        name: &str,
        obj: &K,
        recorded: serde_json::Value,
    ) -> Result<Option<K>>
    where
        K: kube::Resource<Scope = k8s_openapi::ClusterResourceScope, DynamicType = ()>
            + Clone
            + DeserializeOwned
            + Serialize
            + std::fmt::Debug,
    {
        let api: Api<K> = Api::all(self.client.clone());
        let path = format!("{}/{name}", api.resource_url());
        self.write(
            Self::req("update", resource, "PUT", path, Some(recorded)),
            || api.replace(name, &POST_PARAMS, obj),
        )
        .await
    }

    /// GET a ConfigMap.
    pub async fn get_configmap(&self, ns: &str, name: &str) -> Result<Option<ConfigMap>> {
        self.get_namespaced("configmaps", ns, name).await
    }

    /// GET a Secret.
    pub async fn get_secret(&self, ns: &str, name: &str) -> Result<Option<Secret>> {
        self.get_namespaced("secrets", ns, name).await
    }

    /// GET a ClusterRoleBinding.
    pub async fn get_cluster_role_binding(&self, name: &str) -> Result<Option<ClusterRoleBinding>> {
        self.get_cluster("clusterrolebindings", name).await
    }

    /// GET a Role.
    pub async fn get_role(&self, ns: &str, name: &str) -> Result<Option<Role>> {
        self.get_namespaced("roles", ns, name).await
    }

    /// GET a RoleBinding.
    pub async fn get_role_binding(&self, ns: &str, name: &str) -> Result<Option<RoleBinding>> {
        self.get_namespaced("rolebindings", ns, name).await
    }
}

/// Secret data keys that are public and stay readable in reports.
const PUBLIC_SECRET_KEYS: &[&str] = &["token-id", "expiration", "description", "auth-extra-groups"];

/// An object as JSON for the report. For Secrets every `data`/`stringData` value is redacted
/// except the public bootstrap-token fields (id, expiration, description, groups, usages).
pub fn redacted_json<T: Serialize>(obj: &T) -> serde_json::Value {
    let mut v = serde_json::to_value(obj).unwrap_or(serde_json::Value::Null);
    if v.get("kind").and_then(|k| k.as_str()) == Some("Secret") {
        for field in ["data", "stringData"] {
            if let Some(map) = v.get_mut(field).and_then(|d| d.as_object_mut()) {
                for (k, val) in map.iter_mut() {
                    let public = PUBLIC_SECRET_KEYS.contains(&k.as_str())
                        || k.starts_with("usage-bootstrap-");
                    if !public {
                        *val = serde_json::Value::String(crate::secret::REDACTED.into());
                    }
                }
            }
        }
    }
    v
}
