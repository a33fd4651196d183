//! The node's identity: `system:node:<name>` in group `system:nodes`, what its two certificates
//! (client, serving) must say, and the CSR usages and signers that ask for them.

use std::net::IpAddr;

use crate::pki::cert::Usage;

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

impl<'a> Identity<'a> {
    /// The node's client identity `cn`: no SANs required.
    pub fn client(cn: &'a str) -> Identity<'a> {
        Identity {
            cn,
            usage: Usage::Client,
            dns: &[],
            ips: &[],
        }
    }
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
    /// The CSR's signer.
    pub fn signer(self) -> &'static str {
        match self {
            CertKind::Client => crate::cluster::csr::SIGNER_CLIENT,
            CertKind::Serving => crate::cluster::csr::SIGNER_SERVING,
        }
    }
    /// The usages its CSR asks for.
    pub fn usages(self) -> [&'static str; 2] {
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
