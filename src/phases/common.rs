//! What several phases share: the trusted-cluster record, the node's identity, and checking a
//! certificate/key pair on disk before trusting it.

use std::net::IpAddr;

use serde::{Deserialize, Serialize};

use crate::engine::Ctx;
use crate::error::{Error, ErrorKind, Result};
use crate::files::LayoutKind;
use crate::kubeconfig::{ClusterAccess, Credentials};
use crate::pki::cert::{CertInfo, Expectation, Usage, now_unix, verify_issued};
use crate::pki::keys::{PrivateKey, certificate_blocks, private_key_block};
use crate::secret::SecretString;

/// The group of node identities.
pub const NODES_GROUP: &str = "system:nodes";
/// CSR usages for the client certificate (ECDSA: no key encipherment).
pub const CLIENT_USAGES: [&str; 2] = ["digital signature", "client auth"];
/// CSR usages for the serving certificate.
pub const SERVING_USAGES: [&str; 2] = ["digital signature", "server auth"];

/// `system:node:<name>`.
pub fn node_user(node: &str) -> String {
    format!("system:node:{node}")
}

/// The trusted cluster, as discovery recorded it in `{state}/cluster.toml`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClusterRecord {
    /// API server URL.
    pub server: String,
    /// How the CA was obtained.
    pub source: String,
    /// Pin of the CA bundle's first certificate.
    pub ca_pin: String,
    /// CA bundle, PEM.
    pub ca: String,
}

impl ClusterRecord {
    /// The record's path.
    pub fn path(cx: &Ctx) -> String {
        format!("{}/cluster.toml", cx.layout.path("state"))
    }

    /// Reads the record, `None` if absent; a damaged one is an error naming the way out.
    pub fn load(cx: &Ctx) -> Result<Option<ClusterRecord>> {
        let path = Self::path(cx);
        let Some(text) = cx.world.read_string(&path)? else {
            return Ok(None);
        };
        let rec: ClusterRecord = toml::from_str(&text).map_err(|_| {
            Error::conflict(format!(
                "{path} is damaged; remove it and rerun (discovery will recreate it)"
            ))
        })?;
        crate::pki::parse_certs_pem(rec.ca.as_bytes(), &format!("the CA in {path}")).map_err(
            |e| {
                Error::conflict(format!(
                    "{path} is damaged ({}); remove it and rerun",
                    e.message()
                ))
            },
        )?;
        Ok(Some(rec))
    }

    /// The record, or the missing-input error.
    pub fn require(cx: &Ctx) -> Result<ClusterRecord> {
        Self::load(cx)?.ok_or_else(|| cx.missing("trusted cluster", Self::path(cx)))
    }

    /// TOML text.
    pub fn render(&self) -> Result<String> {
        toml::to_string(self)
            .map_err(|e| Error::internal(format!("cannot render the cluster record: {e}")))
    }

    /// CA certificates, DER.
    pub fn ca_ders(&self) -> Vec<Vec<u8>> {
        crate::pki::parse_certs_pem(self.ca.as_bytes(), "the cluster CA")
            .map(|v| v.into_iter().map(|d| d.to_vec()).collect())
            .unwrap_or_default()
    }
}

/// The CAs a node credential must chain to: the trusted cluster CA, plus in a dry-run the
/// throw-away CA that answered for the cluster.
pub fn trusted_cas(cx: &Ctx, rec: Option<&ClusterRecord>) -> Vec<Vec<u8>> {
    let mut cas = rec.map(|r| r.ca_ders()).unwrap_or_default();
    if let Some(dry) = cx.dry_ca_if_any() {
        cas.push(dry.cert_der().to_vec());
    }
    cas
}

/// A certificate and key that belong together and verified.
#[derive(Debug)]
pub struct Pair {
    /// Certificate chain, PEM (no key).
    pub cert_pem: String,
    /// The key.
    pub key: PrivateKey,
    /// What the leaf says.
    pub info: CertInfo,
}

/// The state of a credential on disk.
#[derive(Debug)]
pub enum PairState {
    /// Present and verified.
    Valid(Box<Pair>),
    /// Not there.
    Absent,
    /// There but unusable, and why.
    Invalid(String),
}

/// What the node's credentials must say.
pub struct Identity<'a> {
    /// `system:node:<name>`.
    pub cn: &'a str,
    /// Client or serving.
    pub usage: Usage,
    /// Required DNS SANs.
    pub dns: &'a [String],
    /// Required IP SANs.
    pub ips: &'a [IpAddr],
}

/// Checks PEM certificate text against a key and the CAs.
pub fn verify_pem_pair(
    cert_pem: &str,
    key: PrivateKey,
    cas: &[Vec<u8>],
    id: &Identity<'_>,
) -> PairState {
    let certs = match crate::pki::parse_certs_pem(cert_pem.as_bytes(), "certificate") {
        Ok(c) => c,
        Err(e) => return PairState::Invalid(e.message().to_string()),
    };
    if cas.is_empty() {
        return PairState::Invalid("no trusted CA to check it against".into());
    }
    let expect = Expectation {
        cn: id.cn,
        organizations: &[NODES_GROUP],
        usage: id.usage,
        dns_names: id.dns,
        ip_addresses: id.ips,
    };
    match verify_issued(&certs[0], &key.spki_der(), cas, &expect, now_unix()) {
        Ok(info) => PairState::Valid(Box::new(Pair {
            cert_pem: certificate_blocks(cert_pem),
            key,
            info,
        })),
        Err(e) => PairState::Invalid(e.message().to_string()),
    }
}

/// Reads `path` for a credential check: absent is `None`, unreadable content is a reason why the
/// credential is invalid, and a state file the journal does not vouch for is an error (exit 9).
fn read_credential(cx: &Ctx, path: &str) -> Result<Option<std::result::Result<String, String>>> {
    match cx.world.read_string(path) {
        Ok(Some(text)) => Ok(Some(Ok(text))),
        Ok(None) => Ok(None),
        Err(e) if e.kind() == ErrorKind::Conflict => Err(e),
        Err(e) => Ok(Some(Err(e.message().to_string()))),
    }
}

/// Reads a certificate file and a key file (both inside-root paths) and verifies them.
pub fn read_pair(
    cx: &Ctx,
    cert_path: &str,
    key_path: &str,
    cas: &[Vec<u8>],
    id: &Identity<'_>,
) -> Result<PairState> {
    let (Some(cert), Some(key)) = (
        read_credential(cx, cert_path)?,
        read_credential(cx, key_path)?,
    ) else {
        return Ok(PairState::Absent);
    };
    let (cert, key) = match (cert, key) {
        (Ok(c), Ok(k)) => (c, k),
        (Err(why), _) | (_, Err(why)) => return Ok(PairState::Invalid(why)),
    };
    let key = match PrivateKey::from_pem(&key, key_path) {
        Ok(k) => k,
        Err(e) => return Ok(PairState::Invalid(e.message().to_string())),
    };
    Ok(verify_pem_pair(&cert, key, cas, id))
}

/// Reads a combined cert+key PEM (the kubelet's `-current.pem`) and verifies it.
pub fn read_bundle(cx: &Ctx, path: &str, cas: &[Vec<u8>], id: &Identity<'_>) -> Result<PairState> {
    let text = match read_credential(cx, path)? {
        None => return Ok(PairState::Absent),
        Some(Err(why)) => return Ok(PairState::Invalid(why)),
        Some(Ok(t)) => t,
    };
    let Some(key_pem) = private_key_block(&text) else {
        return Ok(PairState::Invalid(format!(
            "{path} holds no PKCS#8 private key"
        )));
    };
    let key = match PrivateKey::from_pem(&key_pem, path) {
        Ok(k) => k,
        Err(e) => return Ok(PairState::Invalid(e.message().to_string())),
    };
    Ok(verify_pem_pair(&certificate_blocks(&text), key, cas, id))
}

/// The installed node kubeconfig, parsed, if present and readable.
pub fn installed_kubeconfig(cx: &Ctx) -> Option<ClusterAccess> {
    let path = cx.layout.path("kubeconfig");
    let host = cx.world.read_host_path(path)?;
    crate::kubeconfig::load(&host, "the node kubeconfig").ok()
}

/// The CAs installed credentials are checked against: the recorded cluster CA, else the CA of the
/// installed kubeconfig (a node joined by another tool), plus the dry-run CA.
pub fn installed_cas(cx: &Ctx) -> Result<Vec<Vec<u8>>> {
    let rec = ClusterRecord::load(cx)?;
    let mut cas = trusted_cas(cx, rec.as_ref());
    if rec.is_none()
        && let Some(kc) = installed_kubeconfig(cx)
        && let Some(ca) = kc.ca_pem
        && let Ok(ders) = crate::pki::parse_certs_pem(&ca, "the node kubeconfig CA")
    {
        cas.extend(ders.into_iter().map(|d| d.to_vec()));
    }
    Ok(cas)
}

/// The installed client credentials of the node.
pub fn installed_client(cx: &Ctx) -> Result<PairState> {
    let cas = installed_cas(cx)?;
    let cn = node_user(&cx.settings.node_name);
    let id = Identity {
        cn: &cn,
        usage: Usage::Client,
        dns: &[],
        ips: &[],
    };
    match cx.layout.kind() {
        LayoutKind::Kubelet => read_bundle(cx, cx.layout.path("client_current"), &cas, &id),
        LayoutKind::Krustlet => {
            let Some(kc) = installed_kubeconfig(cx) else {
                return Ok(if cx.world.exists(cx.layout.path("kubeconfig")) {
                    PairState::Invalid("the node kubeconfig does not parse".into())
                } else {
                    PairState::Absent
                });
            };
            match kc.credentials {
                Credentials::ClientCert { cert_pem, key_pem } => {
                    match PrivateKey::from_pem(key_pem.expose(), "the node kubeconfig key") {
                        Ok(key) => Ok(verify_pem_pair(&cert_pem, key, &cas, &id)),
                        Err(e) => Ok(PairState::Invalid(e.message().to_string())),
                    }
                }
                _ => Ok(PairState::Invalid(
                    "the node kubeconfig has no client certificate".into(),
                )),
            }
        }
    }
}

/// Where the installed certificate of `kind` is and its PEM (certificates only), whether or not
/// it verifies: for `certs check-expiration`, which reports expired ones too.
pub fn installed_certificate(cx: &Ctx, kind: CertKind) -> Result<Option<(String, String)>> {
    let path = match (cx.layout.kind(), kind) {
        (LayoutKind::Kubelet, CertKind::Client) => cx.layout.path("client_current"),
        (LayoutKind::Kubelet, CertKind::Serving) => cx.layout.path("server_current"),
        (LayoutKind::Krustlet, CertKind::Serving) => cx.layout.path("serving_cert"),
        (LayoutKind::Krustlet, CertKind::Client) => {
            let path = cx.layout.path("kubeconfig").to_string();
            return Ok(
                installed_kubeconfig(cx).and_then(|kc| match kc.credentials {
                    Credentials::ClientCert { cert_pem, .. } => Some((path, cert_pem)),
                    _ => None,
                }),
            );
        }
    };
    Ok(cx
        .world
        .read_string(path)?
        .map(|text| (path.to_string(), certificate_blocks(&text))))
}

/// The installed serving credentials of the node.
pub fn installed_serving(cx: &Ctx) -> Result<PairState> {
    let cas = installed_cas(cx)?;
    let cn = node_user(&cx.settings.node_name);
    let dns = [cx.settings.node_name.clone()];
    let ips = cx.settings.node_ips.clone();
    let id = Identity {
        cn: &cn,
        usage: Usage::Server,
        dns: &dns,
        ips: &ips,
    };
    match cx.layout.kind() {
        LayoutKind::Kubelet => read_bundle(cx, cx.layout.path("server_current"), &cas, &id),
        LayoutKind::Krustlet => read_pair(
            cx,
            cx.layout.path("serving_cert"),
            cx.layout.path("serving_key"),
            &cas,
            &id,
        ),
    }
}

/// A staged pair (`{staging}/<name>.crt` and `.key`).
pub fn staged(cx: &Ctx, name: &str, cas: &[Vec<u8>], id: &Identity<'_>) -> Result<PairState> {
    read_pair(
        cx,
        &cx.layout.staged(&format!("{name}.crt")),
        &cx.layout.staged(&format!("{name}.key")),
        cas,
        id,
    )
}

/// The node's client credentials for talking to the API server: staged (fresh from client-csr)
/// or installed.
pub fn node_client_pair(cx: &Ctx) -> Result<Option<Pair>> {
    let rec = ClusterRecord::load(cx)?;
    let cas = trusted_cas(cx, rec.as_ref());
    let cn = node_user(&cx.settings.node_name);
    let id = Identity {
        cn: &cn,
        usage: Usage::Client,
        dns: &[],
        ips: &[],
    };
    if let PairState::Valid(p) = staged(cx, "client", &cas, &id)? {
        return Ok(Some(*p));
    }
    if let PairState::Valid(p) = installed_client(cx)? {
        return Ok(Some(*p));
    }
    Ok(None)
}

/// Access to the cluster as the node, with its own client certificate.
pub fn node_access(rec: &ClusterRecord, pair: &Pair) -> ClusterAccess {
    ClusterAccess {
        server: rec.server.clone(),
        ca_pem: Some(rec.ca.as_bytes().to_vec()),
        insecure: false,
        tls_server_name: None,
        credentials: Credentials::ClientCert {
            cert_pem: pair.cert_pem.clone(),
            key_pem: SecretString::new(pair.key.pem().expose().clone()),
        },
    }
}

/// Loads the staged key `{staging}/<name>.key`, or generates and writes one (before any CSR is
/// sent, so that a resumed run reuses it and re-attaches to the same CSR). A damaged key file is
/// replaced, with a warning: its CSR, if any, is orphaned and the cleaner will remove it.
pub fn ensure_staged_key(cx: &mut Ctx, name: &str) -> Result<PrivateKey> {
    let path = cx.layout.staged(&format!("{name}.key"));
    if let Some(text) = cx.world.read_string(&path)? {
        match PrivateKey::from_pem(&text, &path) {
            Ok(k) => {
                if let Some(recorded) = cx.fact_of(cx.phase(), "key_fingerprint")
                    && recorded != k.fingerprint()
                {
                    return Err(Error::conflict(format!(
                        "the key {path} is not the one the journal recorded for this phase (fingerprint {}…, journal says {}…); it was replaced outside bootlet. Remove {path} to request a new certificate with a new key",
                        &k.fingerprint()[..12],
                        &recorded[..recorded.len().min(12)]
                    )));
                }
                return Ok(k);
            }
            Err(_) => cx.warn(format!("{path} is damaged; generating a new key (any CSR made with the old key is abandoned)")),
        }
    }
    let key = PrivateKey::generate()?;
    cx.note("key_fingerprint", &key.fingerprint());
    // Durable before the CSR is sent: a crash after sending must find this key again. The journal
    // that records the key (fingerprint and file hash) is written first, then the key renamed in.
    cx.world.write_durable(
        &path,
        key.pem().expose().as_bytes(),
        crate::files::SECRET_FILE_MODE,
    )?;
    cx.act(if cx.dry_run() {
        format!("Generated a new ECDSA P-256 key; would store it at {path}")
    } else {
        format!("Generated a new ECDSA P-256 key at {path}")
    });
    Ok(key)
}

/// Which of the node's two certificates.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CertKind {
    /// API client certificate.
    Client,
    /// Kubelet serving certificate.
    Serving,
}

impl CertKind {
    /// The phase that requests it.
    pub fn phase(self) -> &'static str {
        match self {
            CertKind::Client => "client-csr",
            CertKind::Serving => "serving-csr",
        }
    }

    /// Staging file stem.
    pub fn stem(self) -> &'static str {
        match self {
            CertKind::Client => "client",
            CertKind::Serving => "serving",
        }
    }
    fn signer(self) -> &'static str {
        match self {
            CertKind::Client => crate::cluster::csr::SIGNER_CLIENT,
            CertKind::Serving => crate::cluster::csr::SIGNER_SERVING,
        }
    }
    fn usages(self) -> [&'static str; 2] {
        match self {
            CertKind::Client => CLIENT_USAGES,
            CertKind::Serving => SERVING_USAGES,
        }
    }
    /// The extended key usage the certificate must carry.
    pub fn usage(self) -> Usage {
        match self {
            CertKind::Client => Usage::Client,
            CertKind::Serving => Usage::Server,
        }
    }
}

/// Requests a certificate for the staged key, waits for it, verifies it and stages it. Nothing is
/// written unless the certificate verifies. `on_pending` runs once the CSR exists, still
/// pending (the one-shot join's own approval).
pub async fn obtain_certificate(
    cx: &mut Ctx,
    kind: CertKind,
    cluster: crate::cluster::Cluster,
    rec: &ClusterRecord,
    dns: &[String],
    ips: &[IpAddr],
    on_pending: Option<crate::cluster::csr::OnPending<'_>>,
) -> Result<()> {
    let key = ensure_staged_key(cx, kind.stem())?;
    let cn = node_user(&cx.settings.node_name);
    let request_pem = crate::pki::csr::build(&key, &cn, &[NODES_GROUP], dns, ips)?;
    let usages = kind.usages();
    let name = crate::pki::csr::digested_name(&key.spki_der(), &cn, &[NODES_GROUP], &usages);
    cx.note("csr_name", &name);
    let spec = crate::cluster::csr::CsrSpec {
        name: name.clone(),
        request_pem,
        signer: kind.signer(),
        usages: usages.iter().map(|u| u.to_string()).collect(),
        key_spki: key.spki_der(),
    };
    let dry_ca = if cx.dry_run() {
        Some(cx.dry_ca()?)
    } else {
        None
    };
    let timeout = cx.settings.approval_timeout;
    let out = cx.out;
    let created = cx.sent("Created", "Would create");
    let issued = {
        let mut progress = |p: crate::cluster::csr::Progress, name: &str| {
            use crate::cluster::csr::Progress;
            let msg = match (p, kind) {
                (Progress::Created, _) => format!(
                    "{created} CSR {name} (signer {}, key {}…)",
                    kind.signer(),
                    &key.fingerprint()[..12]
                ),
                (Progress::Reattached, _) => format!(
                    "Found CSR {name} from an earlier attempt, made with the same key: re-attached"
                ),
                (Progress::Pending, CertKind::Client) => format!(
                    "Waiting up to {} for CSR {name} to be approved and signed (kubelet client CSRs are auto-approved when the bootstrapper bindings exist)",
                    crate::cluster::csr::humantime(timeout)
                ),
                (Progress::Pending, CertKind::Serving) => format!(
                    "Waiting up to {} for an admin to approve serving CSR {name}: run `kubectl certificate approve {name}`",
                    crate::cluster::csr::humantime(timeout)
                ),
                (Progress::Waiting(elapsed), _) => {
                    let unblock = match kind {
                        CertKind::Client => {
                            "kubectl certificate approve ".to_string()
                                + name
                                + " (client CSRs need the bootstrapper bindings to be auto-approved)"
                        }
                        CertKind::Serving => format!("kubectl certificate approve {name}"),
                    };
                    out.progress(
                        kind.phase(),
                        format!(
                            "Still waiting for CSR {name} to be approved and signed ({} of {}); to unblock: {unblock}",
                            crate::cluster::csr::humantime(elapsed),
                            crate::cluster::csr::humantime(timeout)
                        ),
                    );
                    return;
                }
                (Progress::Approved, _) => {
                    format!("CSR {name} is approved; waiting for the signer")
                }
            };
            cx.act(msg);
        };
        crate::cluster::csr::request_certificate(
            &cluster,
            &spec,
            timeout,
            dry_ca.as_deref(),
            &mut progress,
            on_pending,
        )
        .await?
    };
    let mut cas = rec.ca_ders();
    if issued.synthesized
        && let Some(ca) = &dry_ca
    {
        cas.push(ca.cert_der().to_vec());
    }
    let id = Identity {
        cn: &cn,
        usage: kind.usage(),
        dns,
        ips,
    };
    let info = match verify_pem_pair(&issued.cert_pem, key, &cas, &id) {
        PairState::Valid(p) => p.info,
        PairState::Invalid(why) => {
            return Err(Error::untrusted(format!(
                "refusing the certificate issued for CSR {name}: {why}; nothing was written"
            )));
        }
        PairState::Absent => unreachable!("verified in memory"),
    };
    cx.note("cert_serial", &info.serial);
    cx.note(
        "cert_not_after",
        &crate::pki::cert::fmt_unix(info.not_after),
    );
    let path = cx.layout.staged(&format!("{}.crt", kind.stem()));
    cx.world.write(
        &path,
        certificate_blocks(&issued.cert_pem).as_bytes(),
        crate::files::PUBLIC_FILE_MODE,
    )?;
    cx.act(format!(
        "Verified the {} certificate (CN {}, O {}, chains to {}, valid until {}){} and staged it at {path}",
        kind.stem(),
        info.cn(),
        info.organizations.join(","),
        if issued.synthesized { "the dry-run CA" } else { "the cluster CA" },
        crate::pki::cert::fmt_unix(info.not_after),
        if issued.synthesized { " [dryrun: synthesized, not issued by the cluster]" } else { "" }
    ));
    Ok(())
}
