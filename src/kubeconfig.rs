//! Reading kubeconfigs (with kube's parser) and writing the few shapes bootlet produces.
//!
//! Errors never quote the file: kubeconfigs carry tokens and keys, and YAML parsers like to show
//! the offending line.

use std::path::{Path, PathBuf};

use base64::Engine;
use kube::config::Kubeconfig;
use serde::Serialize;

use crate::error::{Error, Result};
use crate::secret::SecretString;
use crate::token::BootstrapToken;

/// The credentials a kubeconfig user carries.
#[derive(Debug, Clone)]
pub enum Credentials {
    /// No credentials (anonymous).
    None,
    /// A bearer token. Bootstrap tokens are recognized and validated.
    Token(SecretString),
    /// A client certificate (PEM) and its key (PEM).
    ClientCert {
        /// Certificate chain, PEM.
        cert_pem: String,
        /// Private key, PEM (any format rustls accepts).
        key_pem: SecretString,
    },
}

/// Everything needed to talk to one API server as one identity.
#[derive(Debug, Clone)]
pub struct ClusterAccess {
    /// `https://host:port`.
    pub server: String,
    /// Trusted CA bundle, PEM; `None` only with `insecure`.
    pub ca_pem: Option<Vec<u8>>,
    /// Skip server verification (token discovery's first fetch only).
    pub insecure: bool,
    /// Override the name verified in the server certificate.
    pub tls_server_name: Option<String>,
    /// Who we are.
    pub credentials: Credentials,
}

impl ClusterAccess {
    /// The bootstrap token, if the credentials are one.
    pub fn bootstrap_token(&self) -> Option<Result<BootstrapToken>> {
        match &self.credentials {
            Credentials::Token(t) => Some(BootstrapToken::parse(t.expose())),
            _ => None,
        }
    }
}

/// Parses a kubeconfig file and resolves its current context. `what` names the file in errors.
pub fn load(path: &Path, what: &str) -> Result<ClusterAccess> {
    let text =
        std::fs::read_to_string(path).map_err(|e| Error::io("read", path, e).context(what))?;
    parse_file_text(&text, path, what)
}

/// Parses `text`, read from `path` (relative references resolve beside it; errors name it).
pub fn parse_file_text(text: &str, path: &Path, what: &str) -> Result<ClusterAccess> {
    let base = path.parent().map(Path::to_path_buf).unwrap_or_default();
    parse(text, &base, &format!("{what} {}", path.display()))
}

/// Parses kubeconfig text; relative file references resolve against `base_dir`.
pub fn parse(text: &str, base_dir: &Path, what: &str) -> Result<ClusterAccess> {
    let kc = Kubeconfig::from_yaml(text).map_err(|_| {
        Error::invalid(format!(
            "{what} is not a valid kubeconfig (YAML/JSON parse error); check it with `kubectl --kubeconfig FILE config view`"
        ))
    })?;
    let ctx_name = kc
        .current_context
        .clone()
        .filter(|c| !c.is_empty())
        .or_else(|| kc.contexts.first().map(|c| c.name.clone()));
    let ctx = ctx_name
        .as_ref()
        .and_then(|n| kc.contexts.iter().find(|c| &c.name == n))
        .and_then(|c| c.context.clone());
    let cluster_name = ctx.as_ref().map(|c| c.cluster.clone());
    let user_name = ctx.as_ref().and_then(|c| c.user.clone());
    let cluster = match &cluster_name {
        Some(n) => kc.clusters.iter().find(|c| &c.name == n),
        None if kc.clusters.len() == 1 => kc.clusters.first(),
        None => None,
    }
    .and_then(|c| c.cluster.clone())
    .ok_or_else(|| {
        Error::invalid(format!(
            "{what} names no usable cluster (check current-context and clusters)"
        ))
    })?;
    let server = cluster
        .server
        .clone()
        .filter(|s| !s.is_empty())
        .ok_or_else(|| Error::invalid(format!("{what} has a cluster without a server URL")))?;
    validate_server(&server, what)?;
    let ca_pem = match (
        &cluster.certificate_authority_data,
        &cluster.certificate_authority,
    ) {
        (Some(data), _) => Some(decode_b64(data, what, "certificate-authority-data")?),
        (None, Some(file)) => Some(read_ref(base_dir, file, what)?),
        (None, None) => None,
    };
    if let Some(ca) = &ca_pem {
        crate::pki::parse_certs_pem(ca, &format!("the CA in {what}"))?;
    }
    let insecure = cluster.insecure_skip_tls_verify.unwrap_or(false);
    if ca_pem.is_none() && !insecure {
        return Err(Error::invalid(format!(
            "{what} has no certificate-authority(-data) for its cluster; bootlet only talks to servers it can verify"
        )));
    }
    let user = match &user_name {
        Some(n) => kc
            .auth_infos
            .iter()
            .find(|u| &u.name == n)
            .and_then(|u| u.auth_info.clone()),
        None => None,
    };
    refuse_what_bootlet_does_not_do(&cluster, user.as_ref(), what)?;
    let credentials = match user {
        None => Credentials::None,
        Some(u) => {
            if let Some(t) = u.token.as_ref() {
                use secrecy::ExposeSecret;
                Credentials::Token(SecretString::new(t.expose_secret().trim().to_string()))
            } else if let Some(file) = &u.token_file {
                // kubectl's order: `token` first, then `tokenFile`.
                let bytes = read_ref(base_dir, file, what)?;
                let token = String::from_utf8(bytes).map_err(|_| {
                    Error::invalid(format!("{what}: its tokenFile {file} is not text"))
                })?;
                Credentials::Token(SecretString::new(token.trim().to_string()))
            } else if u.client_certificate.is_some() || u.client_certificate_data.is_some() {
                let cert_pem = match (&u.client_certificate_data, &u.client_certificate) {
                    (Some(d), _) => decode_b64(d, what, "client-certificate-data")?,
                    (None, Some(f)) => read_ref(base_dir, f, what)?,
                    _ => unreachable!(),
                };
                let key_pem = match (&u.client_key_data, &u.client_key) {
                    (Some(d), _) => {
                        use secrecy::ExposeSecret;
                        decode_b64(d.expose_secret(), what, "client-key-data")?
                    }
                    (None, Some(f)) => read_ref(base_dir, f, what)?,
                    (None, None) => {
                        return Err(Error::invalid(format!(
                            "{what} has a client certificate but no client key"
                        )));
                    }
                };
                let key_pem = String::from_utf8(key_pem).map_err(|_| {
                    Error::invalid(format!("{what}: the client key is not PEM text"))
                })?;
                Credentials::ClientCert {
                    cert_pem: String::from_utf8_lossy(&cert_pem).into_owned(),
                    key_pem: SecretString::new(key_pem),
                }
            } else {
                refuse_credentials_bootlet_cannot_use(&u, what)?;
                Credentials::None
            }
        }
    };
    Ok(ClusterAccess {
        server,
        ca_pem,
        insecure,
        tls_server_name: cluster.tls_server_name.clone(),
        credentials,
    })
}

/// Refuses what a kubeconfig may ask for that bootlet does not do, instead of quietly doing
/// something else: a `proxy-url` was bypassed and `as` dropped.
fn refuse_what_bootlet_does_not_do(
    cluster: &kube::config::Cluster,
    user: Option<&kube::config::AuthInfo>,
    what: &str,
) -> Result<()> {
    if let Some(proxy) = &cluster.proxy_url {
        return Err(Error::invalid(format!(
            "{what} sets proxy-url {proxy}, and bootlet connects to the API server directly: remove proxy-url, or run bootlet where the server is reachable without a proxy"
        )));
    }
    if let Some(u) = user
        && (u.impersonate.is_some()
            || u.impersonate_groups.is_some()
            || u.impersonate_uid.is_some())
    {
        return Err(Error::invalid(format!(
            "{what} impersonates another user (`as`), which bootlet does not do: use a kubeconfig for that user itself"
        )));
    }
    Ok(())
}

/// For a user with neither a token nor a client certificate (which bootlet would use whatever
/// else it has): refuses what it has instead, which bootlet cannot use. Without this, an exec
/// plugin's user became an anonymous one, and a 403 that named `system:anonymous`.
fn refuse_credentials_bootlet_cannot_use(u: &kube::config::AuthInfo, what: &str) -> Result<()> {
    let unsupported = if let Some(exec) = &u.exec {
        let command = exec.command.as_deref().unwrap_or("?");
        Some(format!("an exec credential plugin ({command})"))
    } else if u.auth_provider.is_some() {
        Some("an auth-provider".to_string())
    } else if u.username.is_some() || u.password.is_some() {
        Some("a username and password (basic auth, which Kubernetes removed in 1.19)".to_string())
    } else {
        None
    };
    if let Some(how) = unsupported {
        return Err(Error::invalid(format!(
            "{what} authenticates with {how}, which bootlet does not run: use a kubeconfig whose user has a client certificate or a token"
        )));
    }
    if u.client_key.is_some() || u.client_key_data.is_some() {
        return Err(Error::invalid(format!(
            "{what} has a client key but no client certificate (client-certificate or client-certificate-data): add the certificate the key belongs to"
        )));
    }
    Ok(())
}

fn validate_server(server: &str, what: &str) -> Result<()> {
    let uri: http::Uri = server
        .parse()
        .map_err(|_| Error::invalid(format!("{what}: server {server:?} is not a URL")))?;
    if uri.scheme_str() != Some("https") || uri.host().is_none() {
        return Err(Error::invalid(format!(
            "{what}: server {server:?} must be an https:// URL with a host"
        )));
    }
    Ok(())
}

fn decode_b64(data: &str, what: &str, field: &str) -> Result<Vec<u8>> {
    let cleaned: String = data.chars().filter(|c| !c.is_whitespace()).collect();
    base64::engine::general_purpose::STANDARD
        .decode(cleaned)
        .map_err(|_| Error::invalid(format!("{what}: {field} is not valid base64")))
}

fn read_ref(base: &Path, file: &str, what: &str) -> Result<Vec<u8>> {
    let p = if Path::new(file).is_absolute() {
        PathBuf::from(file)
    } else {
        base.join(file)
    };
    std::fs::read(&p).map_err(|e| {
        Error::io("read", &p, e).context(format!("{what} refers to a missing or unreadable file"))
    })
}

/// A normalized API server URL from an endpoint like `10.0.0.1:6443` or `https://host:6443`.
pub fn endpoint_url(endpoint: &str) -> Result<String> {
    let e = endpoint.trim().trim_end_matches('/');
    let url = if e.starts_with("https://") {
        e.to_string()
    } else if e.contains("://") {
        return Err(Error::usage(format!(
            "API server endpoint {endpoint:?} must use https"
        )));
    } else {
        format!("https://{e}")
    };
    validate_server(&url, "the API server endpoint").map_err(|_| {
        Error::usage(format!(
            "API server endpoint {endpoint:?} is not host:port or an https:// URL"
        ))
    })?;
    Ok(url)
}

// ----- writing ---------------------------------------------------------------------------------

#[derive(Serialize)]
struct File<'a> {
    #[serde(rename = "apiVersion")]
    api_version: &'a str,
    kind: &'a str,
    clusters: Vec<NamedCluster<'a>>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    contexts: Vec<NamedContext<'a>>,
    #[serde(rename = "current-context")]
    current_context: &'a str,
    preferences: Empty,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    users: Vec<NamedUser<'a>>,
}

#[derive(Serialize)]
struct Empty {}

#[derive(Serialize)]
struct NamedCluster<'a> {
    cluster: ClusterOut<'a>,
    name: &'a str,
}

#[derive(Serialize)]
struct ClusterOut<'a> {
    #[serde(rename = "certificate-authority-data")]
    ca_data: String,
    server: &'a str,
}

#[derive(Serialize)]
struct NamedContext<'a> {
    context: ContextOut<'a>,
    name: &'a str,
}

#[derive(Serialize)]
struct ContextOut<'a> {
    cluster: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    namespace: Option<&'a str>,
    user: &'a str,
}

#[derive(Serialize)]
struct NamedUser<'a> {
    name: &'a str,
    user: UserOut,
}

#[derive(Serialize, Default)]
struct UserOut {
    #[serde(rename = "client-certificate", skip_serializing_if = "Option::is_none")]
    client_certificate: Option<String>,
    #[serde(
        rename = "client-certificate-data",
        skip_serializing_if = "Option::is_none"
    )]
    client_certificate_data: Option<String>,
    #[serde(rename = "client-key", skip_serializing_if = "Option::is_none")]
    client_key: Option<String>,
    #[serde(rename = "client-key-data", skip_serializing_if = "Option::is_none")]
    client_key_data: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    token: Option<String>,
}

/// How a written kubeconfig's user authenticates.
pub enum UserSpec<'a> {
    /// Bearer token.
    Token(&'a BootstrapToken),
    /// Embedded client certificate and key.
    EmbeddedCert {
        /// PEM certificate.
        cert_pem: &'a str,
        /// PEM key.
        key_pem: &'a SecretString,
    },
    /// Certificate and key in one file referenced by path (the kubelet's `-current.pem`).
    CertFile(&'a str),
}

fn b64(bytes: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

fn render(file: &File<'_>) -> Result<String> {
    serde_saphyr::to_string(file)
        .map_err(|e| Error::internal(format!("cannot render kubeconfig: {e}")))
}

/// A kubeconfig with one cluster, one user and one context.
pub fn render_user(
    cluster: &str,
    server: &str,
    ca_pem: &[u8],
    user_name: &str,
    context: &str,
    user: UserSpec<'_>,
) -> Result<String> {
    let user_out = match user {
        UserSpec::Token(t) => UserOut {
            token: Some(t.expose_full()),
            ..Default::default()
        },
        UserSpec::EmbeddedCert { cert_pem, key_pem } => UserOut {
            client_certificate_data: Some(b64(cert_pem.as_bytes())),
            client_key_data: Some(b64(key_pem.expose().as_bytes())),
            ..Default::default()
        },
        UserSpec::CertFile(path) => UserOut {
            client_certificate: Some(path.to_string()),
            client_key: Some(path.to_string()),
            ..Default::default()
        },
    };
    render(&File {
        api_version: "v1",
        kind: "Config",
        clusters: vec![NamedCluster {
            cluster: ClusterOut {
                ca_data: b64(ca_pem),
                server,
            },
            name: cluster,
        }],
        contexts: vec![NamedContext {
            context: ContextOut {
                cluster,
                namespace: None,
                user: user_name,
            },
            name: context,
        }],
        current_context: context,
        preferences: Empty {},
        users: vec![NamedUser {
            name: user_name,
            user: user_out,
        }],
    })
}

/// The bootstrap kubeconfig, named as kubeadm names it (`discovery.go`: cluster `kubernetes`,
/// user `tls-bootstrap-token-user`).
pub fn render_bootstrap(server: &str, ca_pem: &[u8], token: &BootstrapToken) -> Result<String> {
    render_user(
        "kubernetes",
        server,
        ca_pem,
        "tls-bootstrap-token-user",
        "tls-bootstrap-token-user@kubernetes",
        UserSpec::Token(token),
    )
}

/// The node's kubeconfig, named as the kubelet writes it (`writeKubeconfigFromBootstrapping`:
/// `default-cluster`, `default-auth`, `default-context`).
pub fn render_node(server: &str, ca_pem: &[u8], user: UserSpec<'_>) -> Result<String> {
    render_user(
        "default-cluster",
        server,
        ca_pem,
        "default-auth",
        "default-context",
        user,
    )
}

/// The `kubeconfig` key of `kube-public/cluster-info`: only a cluster, named `""`, as kubeadm's
/// clusterinfo phase writes it.
pub fn render_cluster_info(server: &str, ca_pem: &[u8]) -> Result<String> {
    render(&File {
        api_version: "v1",
        kind: "Config",
        clusters: vec![NamedCluster {
            cluster: ClusterOut {
                ca_data: b64(ca_pem),
                server,
            },
            name: "",
        }],
        contexts: vec![],
        current_context: "",
        preferences: Empty {},
        users: vec![],
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOLDEN: &str = include_str!("../fixtures/kubeadm-golden/cluster-info-kubeconfig.yaml");

    #[test]
    fn parses_kubeadm_cluster_info() {
        let a = parse(GOLDEN, Path::new("/"), "cluster-info").unwrap();
        assert_eq!(a.server, "https://192.168.0.101:6443");
        assert!(a.ca_pem.is_some());
        assert!(matches!(a.credentials, Credentials::None));
    }

    #[test]
    fn bootstrap_round_trip_and_no_echo_on_error() {
        let t = BootstrapToken::parse("abcdef.0123456789abcdef").unwrap();
        let ca = crate::pki::ca::Ca::generate("kubernetes").unwrap();
        let text =
            render_bootstrap("https://127.0.0.1:6443", ca.cert_pem().as_bytes(), &t).unwrap();
        let a = parse(&text, Path::new("/"), "bootstrap").unwrap();
        assert_eq!(a.server, "https://127.0.0.1:6443");
        assert_eq!(a.bootstrap_token().unwrap().unwrap(), t);
        let broken = text.replace("clusters:", "clusters: [");
        let e = parse(&broken, Path::new("/"), "bootstrap").unwrap_err();
        assert!(!e.message().contains("0123456789abcdef"));
    }

    /// A kubeconfig for the sandbox-like server `https://127.0.0.1:6443` whose user is `user`
    /// (YAML lines under `user:`) and whose cluster has `cluster_extra` too.
    fn with_user(user: &str, cluster_extra: &str) -> String {
        let ca = crate::pki::ca::Ca::generate("kubernetes").unwrap();
        let ca_data = base64::engine::general_purpose::STANDARD.encode(ca.cert_pem());
        format!(
            "apiVersion: v1\nkind: Config\nclusters:\n- name: c\n  cluster:\n    server: https://127.0.0.1:6443\n    certificate-authority-data: {ca_data}\n{cluster_extra}contexts:\n- name: x\n  context:\n    cluster: c\n    user: u\ncurrent-context: x\nusers:\n- name: u\n  user:\n{user}"
        )
    }

    #[test]
    fn what_bootlet_does_not_do_is_refused_by_name_not_turned_anonymous() {
        let refused = |user: &str, extra: &str| {
            parse(
                &with_user(user, extra),
                Path::new("/"),
                "the admin kubeconfig",
            )
            .unwrap_err()
            .message()
            .to_string()
        };
        let exec = "    exec:\n      apiVersion: client.authentication.k8s.io/v1\n      command: aws\n      args: [eks, get-token]\n";
        let e = refused(exec, "");
        assert!(e.contains("exec credential plugin (aws)"), "{e}");
        assert!(e.contains("client certificate or a token"), "{e}");
        let e = refused("    auth-provider:\n      name: gcp\n", "");
        assert!(e.contains("auth-provider"), "{e}");
        let e = refused("    username: admin\n    password: hunter2\n", "");
        assert!(e.contains("basic auth") && !e.contains("hunter2"), "{e}");
        let e = refused("    client-key-data: AAAA\n", "");
        assert!(e.contains("client key but no client certificate"), "{e}");
        let e = refused("    token: abc\n    as: someone\n", "");
        assert!(e.contains("impersonates"), "{e}");
        let e = refused("    token: abc\n", "    proxy-url: http://proxy:3128\n");
        assert!(e.contains("proxy-url http://proxy:3128"), "{e}");
        // Beside a token, an exec section changes nothing: the token is what bootlet sends.
        let both = format!("    token: abc\n{exec}");
        let a = parse(&with_user(&both, ""), Path::new("/"), "k").unwrap();
        assert!(matches!(a.credentials, Credentials::Token(t) if t.expose() == "abc"));
    }

    #[test]
    fn a_token_file_is_read_beside_the_kubeconfig_and_trimmed() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("token"), "s3cr3t\n").unwrap();
        let a = parse(&with_user("    tokenFile: token\n", ""), dir.path(), "k").unwrap();
        assert!(matches!(a.credentials, Credentials::Token(t) if t.expose() == "s3cr3t"));
        let e = parse(&with_user("    tokenFile: nope\n", ""), dir.path(), "k").unwrap_err();
        assert!(e.message().contains("missing or unreadable"), "{e}");
    }

    #[test]
    fn endpoints_normalize() {
        assert_eq!(
            endpoint_url("10.0.0.1:6443").unwrap(),
            "https://10.0.0.1:6443"
        );
        assert_eq!(endpoint_url("https://h:1/").unwrap(), "https://h:1");
        assert!(endpoint_url("http://h:1").is_err());
        assert!(endpoint_url("").is_err());
    }
}
