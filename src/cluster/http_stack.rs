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
    // Named in the API server's audit log as the kubelet and kubectl name themselves.
    let agent = http::HeaderValue::from_str(&user_agent()).expect("ASCII");
    let service = tower::ServiceExt::map_request(service, move |mut req: http::Request<_>| {
        req.headers_mut()
            .insert(http::header::USER_AGENT, agent.clone());
        req
    });
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

/// `bootlet/<version> (<os>/<arch>)`, the form of Go clients' `kubelet/v1.37.2 (linux/amd64)`.
pub fn user_agent() -> String {
    format!(
        "bootlet/{} ({}/{})",
        env!("CARGO_PKG_VERSION"),
        std::env::consts::OS,
        std::env::consts::ARCH
    )
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

/// The TLS provider of every connection bootlet makes or serves: ring, with the choices that cost a
/// handshake the least CPU offered first, all of them ones every TLS 1.3 server accepts
/// (docs/decisions.md, "P-256 and AES-128 first"):
/// - key exchange P-256 before X25519: ring's P-256 costs about half of its X25519 (65 against
///   123 µs for a key pair and its agreement on the development machine), and TLS 1.3 requires
///   every server to support it (RFC 8446, 9.1), so no server has to ask again;
/// - TLS 1.3's AES-128-GCM-SHA256 first, as Go orders it on hardware with AES instructions (the
///   kubelet's order): its SHA-256 has CPU instructions where SHA-384 has none.
///
/// A rustls server follows the client's order, so the sandbox still gives kubectl its X25519.
pub fn crypto_provider() -> rustls::crypto::CryptoProvider {
    use rustls::crypto::ring::{cipher_suite, default_provider, kx_group};
    rustls::crypto::CryptoProvider {
        kx_groups: vec![kx_group::SECP256R1, kx_group::X25519, kx_group::SECP384R1],
        cipher_suites: vec![
            cipher_suite::TLS13_AES_128_GCM_SHA256,
            cipher_suite::TLS13_AES_256_GCM_SHA384,
            cipher_suite::TLS13_CHACHA20_POLY1305_SHA256,
            cipher_suite::TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256,
            cipher_suite::TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384,
            cipher_suite::TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256,
            cipher_suite::TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256,
            cipher_suite::TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384,
            cipher_suite::TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256,
        ],
        ..default_provider()
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use rustls::{CipherSuite, NamedGroup};

    use super::crypto_provider;

    /// The group and suite that a client with `client`'s provider and a server with bootlet's
    /// agree on, from a handshake in memory.
    fn negotiated(client: rustls::crypto::CryptoProvider) -> (NamedGroup, CipherSuite) {
        let cert = rcgen::generate_simple_self_signed(vec!["localhost".to_string()]).unwrap();
        let cert_der = cert.cert.der().clone();
        let key =
            rustls_pki_types::PrivateKeyDer::try_from(cert.signing_key.serialize_der()).unwrap();
        let server = rustls::ServerConfig::builder_with_provider(Arc::new(crypto_provider()))
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_no_client_auth()
            .with_single_cert(vec![cert_der.clone()], key)
            .unwrap();
        let mut roots = rustls::RootCertStore::empty();
        roots.add(cert_der).unwrap();
        let client = rustls::ClientConfig::builder_with_provider(Arc::new(client))
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_root_certificates(roots)
            .with_no_client_auth();
        let name = rustls_pki_types::ServerName::try_from("localhost").unwrap();
        let mut c = rustls::ClientConnection::new(Arc::new(client), name).unwrap();
        let mut s = rustls::ServerConnection::new(Arc::new(server)).unwrap();
        while c.is_handshaking() || s.is_handshaking() {
            let mut wire = Vec::new();
            c.write_tls(&mut wire).unwrap();
            s.read_tls(&mut wire.as_slice()).unwrap();
            s.process_new_packets().unwrap();
            let mut wire = Vec::new();
            s.write_tls(&mut wire).unwrap();
            c.read_tls(&mut wire.as_slice()).unwrap();
            c.process_new_packets().unwrap();
        }
        (
            c.negotiated_key_exchange_group().unwrap().name(),
            c.negotiated_cipher_suite().unwrap().suite(),
        )
    }

    #[test]
    fn bootlet_connects_with_p256_and_aes_128_and_still_serves_x25519_clients() {
        assert_eq!(
            negotiated(crypto_provider()),
            (NamedGroup::secp256r1, CipherSuite::TLS13_AES_128_GCM_SHA256)
        );
        // kubectl's order (X25519 first) against the sandbox: the server follows the client.
        assert_eq!(
            negotiated(rustls::crypto::ring::default_provider()).0,
            NamedGroup::X25519
        );
    }

    #[test]
    fn no_suite_or_group_of_the_default_is_dropped() {
        let sorted = |codes: Vec<u16>| {
            let mut codes = codes;
            codes.sort();
            codes
        };
        let suites = |p: rustls::crypto::CryptoProvider| {
            sorted(
                p.cipher_suites
                    .iter()
                    .map(|s| u16::from(s.suite()))
                    .collect(),
            )
        };
        let groups = |p: rustls::crypto::CryptoProvider| {
            sorted(p.kx_groups.iter().map(|g| u16::from(g.name())).collect())
        };
        let default = rustls::crypto::ring::default_provider;
        assert_eq!(suites(crypto_provider()), suites(default()));
        assert_eq!(groups(crypto_provider()), groups(default()));
    }
}
