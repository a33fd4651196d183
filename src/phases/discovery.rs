//! discovery: obtain a CA and server bootlet can trust, and record them in `{state}/cluster.toml`.
//!
//! Sources, first match wins: `--discovery-file`, `--bootstrap-kubeconfig`, token discovery
//! (`API_SERVER_ENDPOINT` + token), `--admin-kubeconfig`. Token discovery follows kubeadm's
//! `discovery/token/token.go`: an anonymous fetch of `kube-public/cluster-info` over unverified TLS
//! (retried with backoff while the bootstrap signer has not yet added `jws-kubeconfig-<id>`), the
//! detached JWS checked with the token, the CA checked against every pin (any match passes), then a
//! second fetch over the pinned CA that must return byte-identical content. The bootstrap token is
//! never sent in any of this: both fetches are anonymous.

use std::time::Duration;

use super::Check;
use super::cluster_record::ClusterRecord;
use crate::engine::Ctx;
use crate::error::{Error, ErrorKind, Result};
use crate::kubeconfig::{ClusterAccess, Credentials};
use crate::pki::pin::{Pin, check_any};
use crate::token::BootstrapToken;

const TOKEN_DISCOVERY: &str = "token discovery";

enum Source {
    File(std::path::PathBuf, &'static str),
    Token(String),
    None,
}

fn source(cx: &Ctx) -> Source {
    let s = &cx.settings;
    if let Some(f) = &s.discovery_file {
        Source::File(f.clone(), "discovery file")
    } else if let Some(f) = &s.bootstrap_kubeconfig {
        Source::File(f.clone(), "bootstrap kubeconfig")
    } else if let Some(e) = &s.endpoint {
        Source::Token(e.clone())
    } else if let Some(f) = &s.admin_kubeconfig {
        Source::File(f.clone(), "admin kubeconfig")
    } else {
        Source::None
    }
}

/// A file source of trust: it must name a CA, not ask to skip verification.
fn load_trusted(cx: &Ctx, path: &std::path::Path, what: &str) -> Result<ClusterAccess> {
    let access = cx.given_kubeconfig(path, &format!("the {what}"))?;
    if access.insecure {
        return Err(Error::invalid(format!(
            "the {what} {} sets insecure-skip-tls-verify; bootlet trusts only a CA it is given: add certificate-authority-data",
            path.display()
        )));
    }
    Ok(access)
}

fn record_from(access: &ClusterAccess, source: String) -> Result<ClusterRecord> {
    let ca = access.ca_pem.clone().ok_or_else(|| {
        Error::invalid(format!(
            "the {source} has no CA for its cluster; bootlet needs a CA it can trust"
        ))
    })?;
    let certs = crate::pki::parse_certs_pem(&ca, "the cluster CA")?;
    Ok(ClusterRecord {
        server: access.server.clone(),
        source,
        ca_pin: Pin::of_cert(&certs[0])?.to_string(),
        ca: String::from_utf8_lossy(&ca).into_owned(),
    })
}

/// The cluster a local file source (discovery file, bootstrap or admin kubeconfig) names, without
/// recording it: lets a single phase that needs a trusted cluster run when the source is a file
/// this run already trusts.
pub fn file_source_record(cx: &Ctx) -> Result<Option<ClusterRecord>> {
    match source(cx) {
        Source::File(path, what) => {
            let access = load_trusted(cx, &path, what)?;
            Ok(Some(record_from(
                &access,
                format!("{what} {}", path.display()),
            )?))
        }
        _ => Ok(None),
    }
}

/// Done when the record agrees with this run's source.
pub async fn check(cx: &mut Ctx) -> Result<Check> {
    let Some(rec) = ClusterRecord::load(cx)? else {
        return Ok(Check::NotDone("no trusted cluster recorded yet".into()));
    };
    Ok(match source(cx) {
        Source::File(path, what) => {
            let access = load_trusted(cx, &path, what)?;
            let fresh = record_from(&access, format!("{what} {}", path.display()))?;
            if fresh.server == rec.server && fresh.ca == rec.ca {
                Check::Done(format!(
                    "{} with CA {} from the {what}",
                    rec.server, rec.ca_pin
                ))
            } else {
                Check::NotDone(format!(
                    "the {what} names another server or CA than the recorded one"
                ))
            }
        }
        Source::Token(_) => {
            let pinned = cx.settings.ca_pins.is_empty()
                || check_any(&cx.settings.ca_pins, &rec.ca_ders()).is_ok();
            if rec.source.starts_with(TOKEN_DISCOVERY) && pinned {
                Check::Done(format!(
                    "{} with CA {} from token discovery",
                    rec.server, rec.ca_pin
                ))
            } else {
                Check::NotDone(
                    "the recorded cluster does not match this run's discovery settings".into(),
                )
            }
        }
        Source::None => Check::Done(format!(
            "{} with CA {} recorded by an earlier run",
            rec.server, rec.ca_pin
        )),
    })
}

/// Discovers and records the cluster.
pub async fn run(cx: &mut Ctx) -> Result<()> {
    let rec = match source(cx) {
        Source::File(path, what) => {
            let access = load_trusted(cx, &path, what)?;
            let rec = record_from(&access, format!("{what} {}", path.display()))?;
            cx.act(format!(
                "Using the cluster {} with CA {} from the {what} {}",
                rec.server,
                rec.ca_pin,
                path.display()
            ));
            rec
        }
        Source::Token(endpoint) => token_discovery(cx, &endpoint).await?,
        Source::None => {
            return Err(Error::usage(
                "no way to find the cluster: give API_SERVER_ENDPOINT with a token and --discovery-token-ca-cert-hash, or --discovery-file, --bootstrap-kubeconfig or --admin-kubeconfig",
            ));
        }
    };
    cx.note("server", &rec.server);
    cx.note("ca_pin", &rec.ca_pin);
    let path = ClusterRecord::path(cx);
    cx.world.write_if_changed(
        &path,
        rec.render()?.as_bytes(),
        crate::files::PUBLIC_FILE_MODE,
    )?;
    Ok(())
}

async fn token_discovery(cx: &mut Ctx, endpoint: &str) -> Result<ClusterRecord> {
    let (token, _) = cx.token()?.ok_or_else(|| {
        cx.missing(
            "bootstrap token",
            "token discovery checks cluster-info's signature with it",
        )
    })?;
    let pins = cx.settings.ca_pins.clone();
    if pins.is_empty() && !cx.settings.unsafe_skip_ca_verification {
        return Err(Error::usage(
            "token discovery needs --discovery-token-ca-cert-hash sha256:<hex> (print it on the control plane with `bootlet ca-pin /etc/kubernetes/pki/ca.crt`), or --discovery-token-unsafe-skip-ca-verification",
        ));
    }
    cx.act(format!("Fetching kube-public/cluster-info from {endpoint} anonymously (not yet trusted; no credential is sent)"));
    let insecure = ClusterAccess {
        server: endpoint.to_string(),
        ca_pem: None,
        insecure: true,
        tls_server_name: None,
        credentials: Credentials::None,
    };
    let anonymous = cx.cluster(&insecure, "anonymous")?;
    let fetched = fetch_signed_cluster_info(cx, &anonymous, &token).await?;
    let (kubeconfig, synthesized) = match fetched {
        Some(k) => (k, false),
        None => {
            // Dry-run with no cluster answering: a cluster-info the dry-run CA would publish,
            // signed with this token, so the rest of the flow runs; labelled as such.
            let ca = cx.dry_ca()?;
            let text = crate::kubeconfig::render_cluster_info(endpoint, ca.cert_pem().as_bytes())?;
            cx.act("[dryrun] No cluster answered: synthesized a cluster-info signed by this token with a throw-away dry-run CA; the CA pin was NOT checked");
            (text, true)
        }
    };
    let info = crate::kubeconfig::parse(
        &kubeconfig,
        std::path::Path::new("/"),
        "the cluster-info kubeconfig",
    )?;
    let access = ClusterAccess {
        credentials: Credentials::None,
        insecure: false,
        ..info.clone()
    };
    let certs = crate::pki::parse_certs_pem(
        access.ca_pem.as_deref().unwrap_or_default(),
        "the cluster-info CA",
    )?;
    if synthesized {
        return record_from(&access, format!("{TOKEN_DISCOVERY} (dry-run, synthesized)"));
    }
    if pins.is_empty() {
        cx.warn(format!(
            "--discovery-token-unsafe-skip-ca-verification: trusting the CA in cluster-info ({}) only because its JWS verifies with the token; anyone who knows the token could impersonate the control plane",
            Pin::of_cert(&certs[0])?
        ));
        return record_from(
            &access,
            format!("{TOKEN_DISCOVERY} from {endpoint} (unpinned)"),
        );
    }
    let matched = check_any(&pins, &certs)?;
    cx.act(format!("Cluster CA {matched} matches a given pin"));
    // Fetch again over the now-pinned CA; the content must not change (token.go step 9).
    let secure = ClusterAccess {
        server: endpoint.to_string(),
        ..access.clone()
    };
    let pinned = cx.cluster(&secure, "anonymous")?;
    let again = pinned
        .get_configmap("kube-public", "cluster-info")
        .await?
        .and_then(|cm| cm.data)
        .and_then(|d| d.get("kubeconfig").cloned())
        .ok_or_else(|| {
            Error::untrusted("cluster-info vanished when fetched again over the pinned CA; rerun")
        })?;
    if again != kubeconfig {
        return Err(Error::untrusted(
            "the second cluster-info fetched over the pinned CA differs from the first; something between this node and the API server is rewriting it",
        ));
    }
    cx.act(format!(
        "Fetched cluster-info again over the pinned CA: identical; trusting {}",
        access.server
    ));
    record_from(&access, format!("{TOKEN_DISCOVERY} from {endpoint}"))
}

/// How long the cluster's bootstrap signer may take to sign cluster-info for a token created just
/// before the join (it reacts to the Secret within a second). Past it, a cluster-info that carries
/// other tokens' signatures and none for ours proves the signer runs and our token is not one it
/// signs: waiting cannot help.
const SIGNER_GRACE: Duration = Duration::from_secs(20);

fn unknown_token(token: &BootstrapToken, others: usize, grace: Duration) -> Error {
    Error::new(
        ErrorKind::Timeout,
        format!(
            "token id {:?} is not known to this cluster, or has expired, or lacks the signing usage: cluster-info carries signatures for {others} other token(s) and, {} after the first look, none for it; create a new token on the control plane (bootlet token create) and rerun",
            token.id(),
            crate::cluster::csr::humantime(grace)
        ),
    )
}

/// Polls cluster-info until it carries a signature for the token, then verifies it. `None` in a
/// dry-run when no cluster answers. No call outlives `--discovery-timeout`; a long wait says so
/// about every 10 s, and a wait that cannot help ([`SIGNER_GRACE`]) ends early.
async fn fetch_signed_cluster_info(
    cx: &mut Ctx,
    anonymous: &crate::cluster::Cluster,
    token: &BootstrapToken,
) -> Result<Option<String>> {
    let started = tokio::time::Instant::now();
    let timeout = cx.settings.discovery_timeout;
    let deadline = started + timeout;
    let anonymous = anonymous.until(deadline, "--discovery-timeout");
    let key = format!("jws-kubeconfig-{}", token.id());
    let mut delay = Duration::from_millis(200);
    let mut last: String;
    let mut unreachable: Option<Error>;
    let mut announced = false;
    let mut next_progress = started + crate::cluster::csr::PROGRESS_EVERY;
    loop {
        unreachable = None;
        match anonymous.get_configmap("kube-public", "cluster-info").await {
            Ok(Some(cm)) => {
                let data = cm.data.unwrap_or_default();
                match (data.get("kubeconfig"), data.get(&key)) {
                    (Some(kc), Some(sig)) => {
                        if !crate::pki::jws::verify_detached(sig, kc, token) {
                            return Err(Error::untrusted(format!(
                                "the JWS signature of cluster-info does not verify with token {token}: this server is not the cluster that issued the token, or cluster-info was tampered with; can't trust this API server"
                            )));
                        }
                        cx.act(format!("cluster-info is signed by token {token}: JWS verified"));
                        return Ok(Some(kc.clone()));
                    }
                    (None, _) => last = "this API server isn't set up for token bootstrapping: cluster-info has no kubeconfig".into(),
                    (Some(_), None) => {
                        last = format!(
                            "token id {:?} is invalid for this cluster or it has expired: cluster-info carries no signature for it (it lacks usage-bootstrap-signing, is unknown or expired); create a new token",
                            token.id()
                        );
                        let others = data.keys().filter(|k| k.starts_with("jws-kubeconfig-")).count();
                        if others > 0 && tokio::time::Instant::now() >= started + SIGNER_GRACE {
                            return Err(unknown_token(token, others, SIGNER_GRACE));
                        }
                    }
                }
            }
            Ok(None) if anonymous.is_dry_run() => return Ok(None),
            Ok(None) => last = "kube-public/cluster-info does not exist: this API server isn't set up for token bootstrapping".into(),
            Err(e) if e.kind() == ErrorKind::Unavailable => {
                last = e.message().to_string();
                unreachable = Some(e);
            }
            Err(e) => return Err(e),
        }
        let now = tokio::time::Instant::now();
        if now >= deadline {
            // An unreachable server is exit 8 in every phase; a server that answers without the
            // signature is a discovery timeout (7).
            if let Some(e) = unreachable {
                return Err(e);
            }
            return Err(Error::new(
                ErrorKind::Timeout,
                format!(
                    "token discovery gave up after {}: {last}",
                    crate::cluster::csr::humantime(now - started)
                ),
            ));
        }
        if !announced {
            cx.act(format!(
                "Waiting for cluster-info to be signed for token id {} ({last})",
                token.id()
            ));
            announced = true;
        } else if now >= next_progress {
            next_progress = now + crate::cluster::csr::PROGRESS_EVERY;
            cx.out.progress(
                "discovery",
                format!(
                    "Still waiting for a signed cluster-info ({} of {}): {last}; to unblock: on the control plane, `bootlet token list` must show token id {} with usage signing",
                    crate::cluster::csr::humantime(now - started),
                    crate::cluster::csr::humantime(timeout),
                    token.id()
                ),
            );
        }
        tokio::time::sleep(delay.min(deadline - now)).await;
        delay = (delay * 2).min(Duration::from_secs(5));
    }
}
