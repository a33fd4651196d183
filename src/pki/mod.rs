//! Keys, CSRs, certificate checks, CA pins, detached JWS and a small CA.
//!
//! Parsing uses x509-parser and rustls-pki-types (PEM); generation and signing use rcgen on ring.
//! Private keys are PKCS#8 PEM (`PRIVATE KEY`), the one format rcgen's ring backend can load.

pub mod ca;
pub mod cert;
pub mod csr;
pub mod jws;
pub mod keys;
pub mod pin;
pub mod remembered;
pub mod rotation;

use base64::Engine;
use rustls_pki_types::CertificateDer;
use rustls_pki_types::pem::PemObject;

use crate::error::{Error, Result};

/// Encodes DER as a PEM block with 64-column lines.
pub fn pem_encode(label: &str, der: &[u8]) -> String {
    let b64 = base64::engine::general_purpose::STANDARD.encode(der);
    let mut out = format!("-----BEGIN {label}-----\n");
    for chunk in b64.as_bytes().chunks(64) {
        out.push_str(std::str::from_utf8(chunk).unwrap_or_default());
        out.push('\n');
    }
    out.push_str(&format!("-----END {label}-----\n"));
    out
}

/// All `CERTIFICATE` blocks of a PEM text, in order. `what` names the input in errors.
pub fn parse_certs_pem(pem: &[u8], what: &str) -> Result<Vec<CertificateDer<'static>>> {
    remembered::certificates_or(pem, || {
        let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(pem)
            .collect::<std::result::Result<_, _>>()
            .map_err(|e| {
                Error::invalid(format!(
                    "{what} is not valid PEM ({}); expected one or more CERTIFICATE blocks",
                    pem_problem(&e)
                ))
            })?;
        if certs.is_empty() {
            return Err(Error::invalid(format!(
                "{what} holds no CERTIFICATE block; expected a PEM certificate"
            )));
        }
        for (i, der) in certs.iter().enumerate() {
            cert::CertInfo::parse(der)
                .map_err(|e| e.context(format!("{what}, certificate {}", i + 1)))?;
        }
        Ok(certs)
    })
}

/// A subject of organizations then a common name. rcgen keeps one value per attribute type, so
/// a second organization is stored under a custom type with the organization OID (2.5.4.10),
/// which encodes to the same attribute; a third cannot be expressed.
pub fn subject_dn(cn: &str, orgs: &[&str]) -> Result<rcgen::DistinguishedName> {
    use rcgen::DnType;
    let mut dn = rcgen::DistinguishedName::new();
    match orgs {
        [] => {}
        [o] => dn.push(DnType::OrganizationName, *o),
        [o1, o2] => {
            dn.push(DnType::OrganizationName, *o1);
            dn.push(DnType::CustomDnType(vec![2, 5, 4, 10]), *o2);
        }
        _ => {
            return Err(Error::invalid(
                "at most two organizations per certificate subject are supported",
            ));
        }
    }
    dn.push(DnType::CommonName, cn);
    Ok(dn)
}

/// What is wrong with a PEM text, in words (the parser's own message quotes raw bytes).
fn pem_problem(e: &rustls_pki_types::pem::Error) -> &'static str {
    use rustls_pki_types::pem::Error as E;
    match e {
        E::MissingSectionEnd { .. } => "a BEGIN line has no matching END line: truncated?",
        E::IllegalSectionStart { .. } => "a malformed BEGIN line",
        E::Base64Decode(_) => "a block's body is not base64",
        E::SectionTooLarge => "a block is too large",
        _ => "unreadable",
    }
}

/// SHA-256 of bytes, as lower-case hex.
pub fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(ring::digest::digest(&ring::digest::SHA256, bytes))
}
