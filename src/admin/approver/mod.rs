//! `bootlet approver`: a controller for `kubernetes.io/kubelet-serving` CSRs that explains
//! itself. It lists the CSRs once, then watches from the list's resourceVersion (resuming from
//! the last one seen after a dropped watch, relisting on 410 Gone), decides each pending serving
//! CSR with [`policy`], and writes the decision back through `/approval` as a condition whose
//! reason is the check and whose message says what passed or failed. One line per decision (or a
//! JSON line with `-o json`) is its audit trail. With `--leader-elect`, only the holder of a Lease
//! decides ([`lease`]).

pub mod lease;
pub mod policy;
pub mod rbac;

use std::collections::BTreeMap;
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::certificates::v1::{
    CertificateSigningRequest, CertificateSigningRequestCondition,
};
use k8s_openapi::api::core::v1::Node;
use kube::api::{Api, ListParams, PostParams, WatchEvent, WatchParams};
use serde_json::json;

use crate::cluster::Cluster;
use crate::error::{Error, ErrorKind, Result};
use lease::Leadership;
use policy::{Decision, Policy};

/// How the approver runs.
#[derive(Debug, Clone)]
pub struct Options {
    /// The rules.
    pub policy: Policy,
    /// Decide what is pending, then exit.
    pub once: bool,
    /// Log decisions; write nothing.
    pub dry_run: bool,
    /// One JSON line per decision.
    pub json: bool,
    /// Lease to hold before acting: (namespace, name), with this replica's identity.
    pub leader_election: Option<(String, String, String)>,
    /// How often CSRs waiting for their Node are looked at again.
    pub recheck: Duration,
}

/// What the approver did with one CSR, as logged.
fn log(opts: &Options, csr: &CertificateSigningRequest, decision: &Decision) {
    let name = csr.metadata.name.clone().unwrap_or_default();
    let requestor = csr.spec.username.clone().unwrap_or_default();
    let (verb, check, message) = match decision {
        Decision::Approve(m) => ("approved", None, m.clone()),
        Decision::Deny { check, message } => ("denied", Some(*check), message.clone()),
        Decision::Wait(m) => ("waiting", None, m.clone()),
        Decision::Ignore => return,
    };
    log_line(opts, &name, &requestor, verb, check, &message);
}

/// One decision (or error) as a line: JSON, or text in which everything quoted from the CSR has
/// its control characters escaped, so no CSR can print a line of its own.
fn log_line(
    opts: &Options,
    name: &str,
    requestor: &str,
    verb: &str,
    check: Option<&str>,
    message: &str,
) {
    if opts.json {
        let line = json!({"time": crate::engine::journal::now_rfc3339(), "csr": name, "requestor": requestor,
            "decision": verb, "check": check, "message": message, "dry_run": opts.dry_run});
        crate::outln!("{line}");
    } else {
        let prefix = if opts.dry_run {
            "[dryrun] would have "
        } else {
            ""
        };
        let escape = crate::output::escape_controls;
        let (requestor, message) = (escape(requestor), escape(message));
        let what = match check {
            Some(c) => format!("{c}: {message}"),
            None => message,
        };
        let shown = match verb {
            "waiting" => format!("[approver] Waiting on CSR {name} from {requestor}: {what}"),
            "skipped" => format!("[approver] Skipped CSR {name} from {requestor} for now: {what}"),
            _ => format!(
                "[approver] {prefix}{} CSR {name} from {requestor}: {what}",
                capitalized(verb)
            ),
        };
        crate::outln!("{shown}");
    }
    use std::io::Write;
    let _ = std::io::stdout().flush();
}

fn capitalized(s: &str) -> String {
    let mut c = s.chars();
    c.next()
        .map(|f| f.to_uppercase().chain(c).collect())
        .unwrap_or_default()
}

/// The Node a serving CSR is for, or `None` when it does not exist. `name` is a valid node name
/// ([`policy::check_request`] checked it), and kube builds the path from it.
async fn get_node(cluster: &Cluster, name: &str) -> Result<Option<Node>> {
    cluster.get_cluster("nodes", name).await
}

/// Every Node, page by page: the other Nodes' addresses a SAN must not be among.
async fn list_nodes(cluster: &Cluster) -> Result<Vec<Node>> {
    let api: Api<Node> = Api::all(cluster.client().clone());
    let mut nodes = Vec::new();
    let mut token: Option<String> = None;
    loop {
        let mut lp = ListParams::default().limit(500);
        if let Some(t) = &token {
            lp = lp.continue_token(t);
        }
        let page = cluster
            .read(
                Cluster::req("list", "nodes", "GET", api.resource_url().to_string(), None),
                || {
                    let (api, lp) = (api.clone(), lp.clone());
                    async move { api.list(&lp).await.map(Some) }
                },
            )
            .await?
            .ok_or_else(|| Error::new(ErrorKind::Unavailable, "the Node list came back empty"))?;
        nodes.extend(page.items);
        token = page.metadata.continue_.filter(|t| !t.is_empty());
        if token.is_none() {
            return Ok(nodes);
        }
    }
}

/// The full decision for `csr`: its own checks, then its Node's addresses and the other Nodes'.
pub async fn decide(
    cluster: &Cluster,
    policy: &Policy,
    csr: &CertificateSigningRequest,
) -> Result<Decision> {
    let candidate = match policy::check_request(policy, csr) {
        Ok(c) => c,
        Err(d) => return Ok(d),
    };
    let Some(node) = get_node(cluster, &candidate.node).await? else {
        return Ok(policy::check_node(policy, &candidate, None, &[]));
    };
    let others = list_nodes(cluster).await?;
    Ok(policy::check_node(policy, &candidate, Some(&node), &others))
}

/// Writes `decision` onto the CSR through `/approval`; `false` when the CSR changed meanwhile
/// (a 409: look again) or is gone.
pub async fn write_decision(
    cluster: &Cluster,
    csr: &CertificateSigningRequest,
    decision: &Decision,
) -> Result<bool> {
    let (ty, reason, message) = match decision {
        Decision::Approve(m) => ("Approved", "BootletApproved", m.clone()),
        Decision::Deny { check, message } => ("Denied", *check, message.clone()),
        _ => return Ok(true),
    };
    let mut updated = csr.clone();
    let status = updated.status.get_or_insert_with(Default::default);
    let now =
        k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(k8s_openapi::jiff::Timestamp::now());
    status
        .conditions
        .get_or_insert_with(Vec::new)
        .push(CertificateSigningRequestCondition {
            type_: ty.into(),
            status: "True".into(),
            reason: Some(reason.into()),
            message: Some(message),
            last_update_time: Some(now.clone()),
            last_transition_time: Some(now),
        });
    let name = csr.metadata.name.clone().unwrap_or_default();
    let api: Api<CertificateSigningRequest> = Api::all(cluster.client().clone());
    let written = cluster
        .write(
            Cluster::req(
                "update",
                "certificatesigningrequests",
                "PUT",
                format!("{}/{name}/approval", api.resource_url()),
                None,
            ),
            || {
                let (api, name, body) = (api.clone(), name.clone(), updated.clone());
                async move {
                    match api
                        .replace_subresource("approval", &name, &PostParams::default(), &body)
                        .await
                    {
                        Ok(_) => Ok(true),
                        Err(kube::Error::Api(s)) if s.code == 409 || s.code == 404 => Ok(false),
                        Err(e) => Err(e),
                    }
                }
            },
        )
        .await?;
    Ok(written.unwrap_or(true))
}

/// Decides one CSR (if this replica leads) and writes and logs the decision.
/// Decides one CSR; an error (the API refusing a write, a Node lookup failing) never stops the
/// controller: the CSR is said to be skipped, once, and looked at again with those waiting.
async fn handle(
    cluster: &Cluster,
    opts: &Options,
    leadership: &Leadership,
    csr: &CertificateSigningRequest,
    waiting: &mut BTreeMap<String, CertificateSigningRequest>,
) {
    let Err(e) = decide_and_write(cluster, opts, leadership, csr, waiting).await else {
        return;
    };
    let name = csr.metadata.name.clone().unwrap_or_default();
    if waiting.insert(name.clone(), csr.clone()).is_none() {
        let requestor = csr.spec.username.clone().unwrap_or_default();
        let why = format!(
            "{}; it is looked at again every {}s",
            e.message(),
            opts.recheck.as_secs()
        );
        log_line(opts, &name, &requestor, "skipped", None, &why);
    }
}

async fn decide_and_write(
    cluster: &Cluster,
    opts: &Options,
    leadership: &Leadership,
    csr: &CertificateSigningRequest,
    waiting: &mut BTreeMap<String, CertificateSigningRequest>,
) -> Result<()> {
    let name = csr.metadata.name.clone().unwrap_or_default();
    if !leadership.is_leader() {
        return Ok(());
    }
    let decision = decide(cluster, &opts.policy, csr).await?;
    match &decision {
        Decision::Ignore => {
            waiting.remove(&name);
            return Ok(());
        }
        Decision::Wait(_) => {
            if waiting.insert(name, csr.clone()).is_none() {
                log(opts, csr, &decision);
            }
            return Ok(());
        }
        _ => {
            waiting.remove(&name);
        }
    }
    // Leadership may have been lost while the Node was fetched.
    if !leadership.is_leader() {
        return Ok(());
    }
    if !opts.dry_run && !write_decision(cluster, csr, &decision).await? {
        return Ok(());
    }
    log(opts, csr, &decision);
    Ok(())
}

fn csr_api(cluster: &Cluster) -> Api<CertificateSigningRequest> {
    Api::all(cluster.client().clone())
}

/// Lists the CSRs: the pending serving ones and the list's resourceVersion.
async fn list(cluster: &Cluster) -> Result<(Vec<CertificateSigningRequest>, String)> {
    let api = csr_api(cluster);
    let lp = ListParams::default().fields(&format!("spec.signerName={}", policy::SIGNER));
    let list = cluster
        .read(
            Cluster::req(
                "list",
                "certificatesigningrequests",
                "GET",
                api.resource_url().to_string(),
                None,
            ),
            || {
                let (api, lp) = (api.clone(), lp.clone());
                async move { api.list(&lp).await.map(Some) }
            },
        )
        .await?
        .ok_or_else(|| Error::new(ErrorKind::Unavailable, "the CSR list came back empty"))?;
    Ok((
        list.items,
        list.metadata.resource_version.unwrap_or_default(),
    ))
}

/// Runs the approver until SIGTERM/SIGINT (or, with `once`, until the pending CSRs are decided).
pub async fn run(cluster: Cluster, opts: Options) -> Result<()> {
    let leadership = match &opts.leader_election {
        Some((ns, name, identity)) => {
            let l = Leadership::default();
            let json = opts.json;
            tokio::spawn(lease::hold(
                cluster.clone(),
                ns.clone(),
                name.clone(),
                identity.clone(),
                l.clone(),
                move |m| {
                    if json {
                        crate::outln!(
                            "{}",
                            json!({"time": crate::engine::journal::now_rfc3339(), "leader_election": m})
                        );
                    } else {
                        crate::outln!("[approver] {m}");
                    }
                },
            ));
            if opts.once {
                // A one-shot replica waits (briefly) for the Lease rather than skipping everything.
                let deadline = tokio::time::Instant::now() + lease::LEASE_DURATION * 2;
                while !l.is_leader() && tokio::time::Instant::now() < deadline {
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
            }
            l
        }
        None => Leadership::always(),
    };
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = signal(SignalKind::terminate()).map_err(|e| Error::internal(e.to_string()))?;
    let mut int = signal(SignalKind::interrupt()).map_err(|e| Error::internal(e.to_string()))?;
    let mut waiting: BTreeMap<String, CertificateSigningRequest> = BTreeMap::new();
    'relist: loop {
        let (items, mut rv) = list(&cluster).await?;
        for csr in &items {
            handle(&cluster, &opts, &leadership, csr, &mut waiting).await;
        }
        if opts.once {
            return Ok(());
        }
        let mut recheck = tokio::time::interval(opts.recheck);
        recheck.tick().await;
        let mut was_leader = leadership.is_leader();
        loop {
            let api = csr_api(&cluster);
            let wp = WatchParams::default()
                .fields(&format!("spec.signerName={}", policy::SIGNER))
                .timeout(290);
            let mut stream = match api.watch(&wp, &rv).await {
                Ok(s) => s.boxed(),
                Err(kube::Error::Api(s)) if s.code == 410 => continue 'relist,
                Err(e) => {
                    tracing::warn!("watch failed: {e}; retrying");
                    tokio::time::sleep(Duration::from_secs(1)).await;
                    continue;
                }
            };
            loop {
                let next = tokio::select! {
                    ev = stream.next() => ev,
                    _ = recheck.tick() => {
                        // A replica that just became the leader looks at everything it ignored.
                        let leader = leadership.is_leader();
                        if leader && !was_leader {
                            continue 'relist;
                        }
                        was_leader = leader;
                        let pending: Vec<CertificateSigningRequest> = waiting.values().cloned().collect();
                        for csr in &pending {
                            handle(&cluster, &opts, &leadership, csr, &mut waiting).await;
                        }
                        continue;
                    }
                    _ = term.recv() => return Ok(()),
                    _ = int.recv() => return Ok(()),
                };
                match next {
                    Some(Ok(WatchEvent::Added(csr))) | Some(Ok(WatchEvent::Modified(csr))) => {
                        if let Some(v) = &csr.metadata.resource_version {
                            rv = v.clone();
                        }
                        handle(&cluster, &opts, &leadership, &csr, &mut waiting).await;
                    }
                    Some(Ok(WatchEvent::Deleted(csr))) => {
                        if let Some(v) = &csr.metadata.resource_version {
                            rv = v.clone();
                        }
                        waiting.remove(&csr.metadata.name.unwrap_or_default());
                    }
                    Some(Ok(WatchEvent::Bookmark(b))) => rv = b.metadata.resource_version,
                    Some(Ok(WatchEvent::Error(e))) if e.code == 410 => continue 'relist,
                    // A dropped or ended watch resumes from the last resourceVersion seen.
                    Some(Ok(WatchEvent::Error(_))) | Some(Err(_)) | None => break,
                }
            }
        }
    }
}
