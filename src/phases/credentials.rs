//! Checking the node's credentials on disk before trusting them: a certificate and its key read
//! (through the journal's trust rules), matched, checked against the node's identity and chained to
//! the trusted CA; installed (layout paths), staged, or the node kubeconfig.

use crate::engine::Ctx;
use crate::error::{ErrorKind, Result};
use crate::files::LayoutKind;
use crate::kubeconfig::{ClusterAccess, Credentials};
use crate::pki::cert::{CertInfo, Expectation, Usage, now_unix, verify_issued};
use crate::pki::keys::{PrivateKey, certificate_blocks, private_key_block};
use crate::secret::SecretString;

use super::cluster_record::{ClusterRecord, trusted_cas};
use super::node_identity::{CertKind, Identity, NODES_GROUP, node_user};

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
    cx.world
        .read_kubeconfig(cx.layout.path("kubeconfig"), "the node kubeconfig")
        .ok()
        .flatten()
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

/// Whether the node holds valid client credentials of its own: then it asks as itself, and no
/// bootstrap token (nor a bootstrap kubeconfig) is needed.
pub fn has_own_client_credentials(cx: &Ctx) -> Result<bool> {
    Ok(matches!(installed_client(cx)?, PairState::Valid(_)))
}

/// The installed client credentials of the node.
pub fn installed_client(cx: &Ctx) -> Result<PairState> {
    let cas = installed_cas(cx)?;
    let cn = node_user(&cx.settings.node_name);
    let id = Identity::client(&cn);
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
    let id = Identity::client(&cn);
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
