//! Certificate signing requests: building them, naming them the kubelet's way, and reading them.

use std::net::IpAddr;

use base64::Engine;
use rcgen::{CertificateParams, SanType};
use rustls_pki_types::CertificateSigningRequestDer;
use rustls_pki_types::pem::PemObject;
use x509_parser::certification_request::X509CertificationRequest;
use x509_parser::extensions::{GeneralName, ParsedExtension};
use x509_parser::prelude::FromDer;

use super::keys::PrivateKey;
use crate::error::{Error, Result};

/// Builds a PEM CSR for `key` with subject CN/O and SANs. Usages live in the Kubernetes CSR
/// object's `spec.usages`, not in the PKCS#10 request (as the kubelet's `certutil.MakeCSR`).
pub fn build(
    key: &PrivateKey,
    cn: &str,
    orgs: &[&str],
    dns: &[String],
    ips: &[IpAddr],
) -> Result<String> {
    let mut params = CertificateParams::default();
    params.distinguished_name = super::subject_dn(cn, orgs)?;
    for d in dns {
        let name = d.clone().try_into().map_err(|_| {
            Error::invalid(format!("{d:?} is not a valid DNS name for a certificate"))
        })?;
        params.subject_alt_names.push(SanType::DnsName(name));
    }
    for ip in ips {
        params.subject_alt_names.push(SanType::IpAddress(*ip));
    }
    let csr = params
        .serialize_request(key.pair())
        .map_err(|e| Error::internal(format!("cannot build the CSR: {e}")))?;
    csr.pem()
        .map_err(|e| Error::internal(format!("cannot encode the CSR: {e}")))
}

/// The kubelet's deterministic CSR name (`pkg/kubelet/certificate/bootstrap/bootstrap.go`
/// `digestedName`): `node-csr-` + base64url(SHA-512/256 over base64url(field) + "|" for the DER
/// public key, the CN, each organization and each usage). The same key and identity give the
/// same name, so a resumed run meets its own CSR (409) and re-attaches instead of making another.
pub fn digested_name(spki_der: &[u8], cn: &str, orgs: &[&str], usages: &[&str]) -> String {
    let enc = base64::engine::general_purpose::URL_SAFE_NO_PAD;
    let mut ctx = ring::digest::Context::new(&ring::digest::SHA512_256);
    let mut write = |data: &[u8]| {
        ctx.update(enc.encode(data).as_bytes());
        // '|' is outside the base64url alphabet, so fields cannot run into each other.
        ctx.update(b"|");
    };
    write(spki_der);
    write(cn.as_bytes());
    for o in orgs {
        write(o.as_bytes());
    }
    for u in usages {
        write(u.as_bytes());
    }
    format!("node-csr-{}", enc.encode(ctx.finish()))
}

/// What a PKCS#10 request says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CsrInfo {
    /// Subject common names.
    pub common_names: Vec<String>,
    /// Subject organizations, in order.
    pub organizations: Vec<String>,
    /// DNS SANs.
    pub dns_names: Vec<String>,
    /// IP SANs.
    pub ip_addresses: Vec<IpAddr>,
    /// Email SANs.
    pub emails: Vec<String>,
    /// URI SANs.
    pub uris: Vec<String>,
    /// DER SubjectPublicKeyInfo.
    pub spki: Vec<u8>,
    /// The public key's algorithm and size.
    pub key: KeyKind,
    /// Subject attributes other than CN and O (`OU`, `C`, or a dotted OID), in order.
    pub other_subject_attributes: Vec<String>,
    /// Whether a relative distinguished name of the subject holds more than one attribute
    /// (`/O=a+CN=b`).
    pub multi_valued_rdn: bool,
    /// The DER of the request.
    pub der: Vec<u8>,
}

/// The kind of public key a request carries.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeyKind {
    /// RSA with this many bits of modulus.
    Rsa(usize),
    /// ECDSA on P-256.
    EcdsaP256,
    /// ECDSA on P-384.
    EcdsaP384,
    /// Ed25519.
    Ed25519,
    /// Anything else: its algorithm OID (and curve OID, if any).
    Other(String),
}

impl std::fmt::Display for KeyKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            KeyKind::Rsa(bits) => write!(f, "RSA-{bits}"),
            KeyKind::EcdsaP256 => f.write_str("ECDSA P-256"),
            KeyKind::EcdsaP384 => f.write_str("ECDSA P-384"),
            KeyKind::Ed25519 => f.write_str("Ed25519"),
            KeyKind::Other(oid) => write!(f, "an unsupported key ({oid})"),
        }
    }
}

fn key_kind(spki: &x509_parser::x509::SubjectPublicKeyInfo<'_>) -> KeyKind {
    use x509_parser::oid_registry as oids;
    use x509_parser::public_key::PublicKey;
    let alg = &spki.algorithm.algorithm;
    if *alg == oids::OID_PKCS1_RSAENCRYPTION {
        return match spki.parsed() {
            Ok(PublicKey::RSA(rsa)) => KeyKind::Rsa(rsa.key_size()),
            _ => KeyKind::Other(alg.to_id_string()),
        };
    }
    if *alg == oids::OID_SIG_ED25519 {
        return KeyKind::Ed25519;
    }
    if *alg == oids::OID_KEY_TYPE_EC_PUBLIC_KEY {
        let curve = spki
            .algorithm
            .parameters
            .as_ref()
            .and_then(|p| p.as_oid().ok());
        return match curve {
            Some(c) if c == oids::OID_EC_P256 => KeyKind::EcdsaP256,
            Some(c) if c == oids::OID_NIST_EC_P384 => KeyKind::EcdsaP384,
            Some(c) => KeyKind::Other(format!("{} on {}", alg.to_id_string(), c.to_id_string())),
            None => KeyKind::Other(alg.to_id_string()),
        };
    }
    KeyKind::Other(alg.to_id_string())
}

/// The subject's attributes other than CN and O, and whether any RDN holds several.
fn subject_shape(subject: &x509_parser::x509::X509Name<'_>) -> (Vec<String>, bool) {
    use x509_parser::oid_registry as oids;
    let mut others = Vec::new();
    let mut multi = false;
    for rdn in subject.iter() {
        multi |= rdn.iter().count() > 1;
        for attr in rdn.iter() {
            let oid = attr.attr_type();
            if *oid == oids::OID_X509_COMMON_NAME || *oid == oids::OID_X509_ORGANIZATION_NAME {
                continue;
            }
            let name = x509_parser::objects::oid2abbrev(oid, x509_parser::objects::oid_registry())
                .map(str::to_string)
                .unwrap_or_else(|_| oid.to_id_string());
            others.push(name);
        }
    }
    (others, multi)
}

impl CsrInfo {
    /// The common name as Go's x509 reads it, and so kube-apiserver's authenticator, NodeRestriction
    /// and the signer: the last CN of the subject (`pkix.Name.FillFromRDNSequence` overwrites), or "".
    pub fn cn(&self) -> &str {
        self.common_names.last().map(String::as_str).unwrap_or("")
    }
}

/// Parses a PEM `CERTIFICATE REQUEST` and verifies its self-signature (proof of key possession).
pub fn parse_pem(pem: &[u8]) -> Result<CsrInfo> {
    let der = CertificateSigningRequestDer::from_pem_slice(pem)
        .map_err(|_| Error::invalid("the request is not a PEM \"CERTIFICATE REQUEST\" block"))?;
    parse_der(der.as_ref())
}

/// Parses a PEM request whose signature was verified when it was accepted, without verifying it
/// again: a stored CSR's request cannot change, and kube-controller-manager's csrapprover reads it
/// the same way (`ParseCSR`, no `CheckSignature`); the signer still verifies before it signs.
pub fn parse_pem_verified_before(pem: &[u8]) -> Result<CsrInfo> {
    let der = CertificateSigningRequestDer::from_pem_slice(pem)
        .map_err(|_| Error::invalid("the request is not a PEM \"CERTIFICATE REQUEST\" block"))?;
    parse_der_with(der.as_ref(), false)
}

/// Parses a DER PKCS#10 request and verifies its signature.
pub fn parse_der(der: &[u8]) -> Result<CsrInfo> {
    parse_der_with(der, true)
}

fn parse_der_with(der: &[u8], verify: bool) -> Result<CsrInfo> {
    let (_, req) = X509CertificationRequest::from_der(der)
        .map_err(|e| Error::invalid(format!("the certificate request does not parse: {e}")))?;
    if verify {
        req.verify_signature()
            .map_err(|_| Error::invalid("the certificate request's signature does not verify"))?;
    }
    let info = &req.certification_request_info;
    let strings = |it: &mut dyn Iterator<Item = &x509_parser::x509::AttributeTypeAndValue<'_>>| {
        it.filter_map(|a| a.as_str().ok().map(str::to_string))
            .collect::<Vec<_>>()
    };
    let (other_subject_attributes, multi_valued_rdn) = subject_shape(&info.subject);
    let mut out = CsrInfo {
        key: key_kind(&info.subject_pki),
        other_subject_attributes,
        multi_valued_rdn,
        common_names: strings(&mut info.subject.iter_common_name()),
        organizations: strings(&mut info.subject.iter_organization()),
        dns_names: vec![],
        ip_addresses: vec![],
        emails: vec![],
        uris: vec![],
        spki: info.subject_pki.raw.to_vec(),
        der: der.to_vec(),
    };
    if let Some(exts) = req.requested_extensions() {
        for ext in exts {
            if let ParsedExtension::SubjectAlternativeName(san) = ext {
                for name in &san.general_names {
                    match name {
                        GeneralName::DNSName(d) => out.dns_names.push(d.to_string()),
                        GeneralName::IPAddress(b) => {
                            if let Some(ip) = super::cert::ip_from_bytes(b) {
                                out.ip_addresses.push(ip);
                            }
                        }
                        GeneralName::RFC822Name(e) => out.emails.push(e.to_string()),
                        GeneralName::URI(u) => out.uris.push(u.to_string()),
                        _ => {}
                    }
                }
            }
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builds_parses_and_names_deterministically() {
        let k = PrivateKey::generate().unwrap();
        let pem = build(
            &k,
            "system:node:n1",
            &["system:nodes"],
            &["n1".into()],
            &["10.0.0.1".parse().unwrap()],
        )
        .unwrap();
        let info = parse_pem(pem.as_bytes()).unwrap();
        assert_eq!(info.cn(), "system:node:n1");
        assert_eq!(info.organizations, ["system:nodes"]);
        assert_eq!(info.dns_names, ["n1"]);
        assert_eq!(info.ip_addresses, ["10.0.0.1".parse::<IpAddr>().unwrap()]);
        assert_eq!(info.spki, k.spki_der());
        assert_eq!(info.key, KeyKind::EcdsaP256);
        let usages = ["digital signature", "client auth"];
        let a = digested_name(&k.spki_der(), "system:node:n1", &["system:nodes"], &usages);
        let b = digested_name(&k.spki_der(), "system:node:n1", &["system:nodes"], &usages);
        let c = digested_name(&k.spki_der(), "system:node:n2", &["system:nodes"], &usages);
        assert_eq!(a, b);
        assert_ne!(a, c);
        assert!(a.starts_with("node-csr-") && a.len() == "node-csr-".len() + 43);
    }

    #[test]
    fn rejects_tampered_requests() {
        let k = PrivateKey::generate().unwrap();
        let pem = build(&k, "system:node:n1", &["system:nodes"], &[], &[]).unwrap();
        let der = CertificateSigningRequestDer::from_pem_slice(pem.as_bytes()).unwrap();
        let mut bytes = der.as_ref().to_vec();
        let n = bytes.len();
        bytes[n - 5] ^= 0x55;
        assert!(parse_der(&bytes).is_err());
    }
}
