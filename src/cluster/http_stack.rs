//! The HTTP stack under `kube::Client`: hyper-util's pooled client over a hyper-rustls connector,
//! with kube's own TLS configuration, base URI and token layers (docs/decisions.md, "The node's
//! HTTP stack is assembled by bootlet, under `kube::Client`").

use std::time::Duration;

use base64::Engine;

use super::retry;
use crate::error::{Error, Result};
use crate::kubeconfig::{ClusterAccess, Credentials};

/// A plain kube client for `access` (TLS set up from the kubeconfig's CA and credentials, kube's
/// own retry layer off). Connects lazily.
///
/// The HTTP stack under it is built here, not by `kube::Client::try_from`, for two reasons a
/// 1,000-node storm measured (docs/performance.md, "The storm"): kube's TLS configuration keeps a
/// session cache of 256 servers per client (14.5 MiB of the storm's peak heap) for resumption that
/// a client making one connection never uses, so resumption is off; and its tracing layer makes a
/// span per request that nothing here reads (bootlet's [`Gate`] records every request itself).
/// What stays kube's own: the TLS trust and client identity (`rustls_client_config`), the base URI
/// and the bearer token (`base_uri_layer`, `auth_layer`).
pub fn kube_client(access: &ClusterAccess) -> Result<kube::Client> {
    use kube::client::ConfigExt;
    let config = kube_config(access)?;
    let cannot = |e: &dyn std::fmt::Display| {
        Error::invalid(format!(
            "cannot build an API client for {}: {e}",
            access.server
        ))
    };
    let mut tls = config
        .rustls_client_config()
        .map_err(|e| cannot(&retry::one_line(&e)))?;
    tls.resumption = rustls::client::Resumption::disabled();
    let mut http = hyper_util::client::legacy::connect::HttpConnector::new();
    http.enforce_http(false);
    http.set_connect_timeout(config.connect_timeout);
    let mut https = hyper_rustls::HttpsConnectorBuilder::new()
        .with_tls_config(tls)
        .https_or_http();
    if let Some(name) = &config.tls_server_name {
        let name = rustls_pki_types::ServerName::try_from(name.clone())
            .map_err(|e| cannot(&format!("tls-server-name {name:?}: {e}")))?;
        https = https.with_server_name_resolver(hyper_rustls::FixedServerNameResolver::new(name));
    }
    let connector = https.enable_http1().wrap_connector(http);
    let client = hyper_util::client::legacy::Builder::new(hyper_util::rt::TokioExecutor::new())
        .build(connector);
    // Boxed errors: the token layer's two halves (static or refreshed) must agree on one type.
    let service = tower::ServiceExt::map_err(
        tower::Layer::layer(&config.base_uri_layer(), client),
        tower::BoxError::from,
    );
    let auth = config
        .auth_layer()
        .map_err(|e| cannot(&retry::one_line(&e)))?;
    Ok(match auth {
        Some(auth) => kube::Client::new(
            tower::Layer::layer(&auth, service),
            config.default_namespace,
        ),
        None => kube::Client::new(service, config.default_namespace),
    })
}

/// kube's view of `access`: server, trusted CA, TLS server name and credentials.
fn kube_config(access: &ClusterAccess) -> Result<kube::Config> {
    let uri: http::Uri = access
        .server
        .parse()
        .map_err(|_| Error::invalid(format!("server {:?} is not a URL", access.server)))?;
    let mut config = kube::Config::new(uri);
    config.default_retry = false;
    config.connect_timeout = Some(Duration::from_secs(10));
    config.read_timeout = None;
    config.accept_invalid_certs = access.insecure;
    config.tls_server_name = access.tls_server_name.clone();
    config.root_cert = Some(match &access.ca_pem {
        Some(ca) => crate::pki::parse_certs_pem(ca, "the cluster CA")?
            .iter()
            .map(|d| d.to_vec())
            .collect(),
        // Discovery's anonymous fetch, whose answer is checked by its signature and CA pin
        // instead. An empty store, not `None`: with no roots kube builds the platform verifier,
        // which reads the whole system trust store (~150 files, ~1,000 system calls per token
        // join) only for `accept_invalid_certs` to replace it.
        None => Vec::new(),
    });
    let b64 = base64::engine::general_purpose::STANDARD;
    match &access.credentials {
        Credentials::None => {}
        Credentials::Token(t) => {
            config.auth_info.token = Some(secrecy::SecretString::from(t.expose().clone()));
        }
        Credentials::ClientCert { cert_pem, key_pem } => {
            config.auth_info.client_certificate_data = Some(b64.encode(cert_pem));
            config.auth_info.client_key_data =
                Some(secrecy::SecretString::from(b64.encode(key_pem.expose())));
        }
    }
    Ok(config)
}
