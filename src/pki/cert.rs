//! Reading certificates and checking an issued certificate before anything uses it.

use std::net::IpAddr;

use x509_parser::certificate::X509Certificate;
use x509_parser::extensions::GeneralName;
use x509_parser::prelude::FromDer;

use crate::error::{Error, Result};

/// The facts of a certificate bootlet checks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CertInfo {
    /// Subject common names.
    pub common_names: Vec<String>,
    /// Subject organizations.
    pub organizations: Vec<String>,
    /// DNS SANs.
    pub dns_names: Vec<String>,
    /// IP SANs.
    pub ip_addresses: Vec<IpAddr>,
    /// Extended key usage: client auth.
    pub client_auth: bool,
    /// Extended key usage: server auth.
    pub server_auth: bool,
    /// Basic constraints CA flag.
    pub is_ca: bool,
    /// Unix seconds.
    pub not_before: i64,
    /// Unix seconds.
    pub not_after: i64,
    /// DER SubjectPublicKeyInfo.
    pub spki: Vec<u8>,
    /// Raw DER of subject and issuer names, for chain checks.
    pub subject_raw: Vec<u8>,
    /// Raw DER of the issuer name.
    pub issuer_raw: Vec<u8>,
    /// Serial number as hex.
    pub serial: String,
}

impl CertInfo {
    /// Parses a DER certificate.
    pub fn parse(der: &[u8]) -> Result<Self> {
        let (_, cert) = X509Certificate::from_der(der)
            .map_err(|e| Error::invalid(format!("not an X.509 certificate: {e}")))?;
        Ok(Self::from_parsed(&cert))
    }

    fn from_parsed(cert: &X509Certificate<'_>) -> Self {
        let strings =
            |it: &mut dyn Iterator<Item = &x509_parser::x509::AttributeTypeAndValue<'_>>| {
                it.filter_map(|a| a.as_str().ok().map(str::to_string))
                    .collect::<Vec<_>>()
            };
        let mut dns_names = Vec::new();
        let mut ip_addresses = Vec::new();
        if let Ok(Some(san)) = cert.subject_alternative_name() {
            for name in &san.value.general_names {
                match name {
                    GeneralName::DNSName(d) => dns_names.push(d.to_string()),
                    GeneralName::IPAddress(b) => {
                        if let Some(ip) = ip_from_bytes(b) {
                            ip_addresses.push(ip);
                        }
                    }
                    _ => {}
                }
            }
        }
        let (client_auth, server_auth) = match cert.extended_key_usage() {
            Ok(Some(eku)) => (eku.value.client_auth, eku.value.server_auth),
            _ => (false, false),
        };
        CertInfo {
            common_names: strings(&mut cert.subject().iter_common_name()),
            organizations: strings(&mut cert.subject().iter_organization()),
            dns_names,
            ip_addresses,
            client_auth,
            server_auth,
            is_ca: cert.is_ca(),
            not_before: cert.validity().not_before.timestamp(),
            not_after: cert.validity().not_after.timestamp(),
            spki: cert.public_key().raw.to_vec(),
            subject_raw: cert.subject().as_raw().to_vec(),
            issuer_raw: cert.issuer().as_raw().to_vec(),
            serial: cert.raw_serial_as_string(),
        }
    }

    /// The common name as Go's x509 reads it, and so kube-apiserver's authenticator, NodeRestriction
    /// and the signer: the last CN of the subject (`pkix.Name.FillFromRDNSequence` overwrites), or "".
    pub fn cn(&self) -> &str {
        self.common_names.last().map(String::as_str).unwrap_or("")
    }
}

/// Decodes a SAN IP address (4 or 16 bytes).
pub fn ip_from_bytes(b: &[u8]) -> Option<IpAddr> {
    match b.len() {
        4 => Some(IpAddr::from(<[u8; 4]>::try_from(b).ok()?)),
        16 => Some(IpAddr::from(<[u8; 16]>::try_from(b).ok()?)),
        _ => None,
    }
}

/// Which extended key usage an issued certificate must carry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Usage {
    /// `client auth`, for the node's API client certificate.
    Client,
    /// `server auth`, for the kubelet's serving certificate.
    Server,
}

/// What an issued certificate must be.
#[derive(Debug, Clone)]
pub struct Expectation<'a> {
    /// Required common name.
    pub cn: &'a str,
    /// Required organizations (exactly this set).
    pub organizations: &'a [&'a str],
    /// Required extended key usage.
    pub usage: Usage,
    /// DNS SANs that must be present.
    pub dns_names: &'a [String],
    /// IP SANs that must be present.
    pub ip_addresses: &'a [IpAddr],
}

/// Checks `cert_der` before use: it is for `key_spki`, has the expected subject and usage, chains
/// to one of `ca_ders` (signature verified), and is valid at `now` (unix seconds). The error names
/// the first failed check.
pub fn verify_issued(
    cert_der: &[u8],
    key_spki: &[u8],
    ca_ders: &[impl AsRef<[u8]>],
    expect: &Expectation<'_>,
    now: i64,
) -> Result<CertInfo> {
    let (_, cert) = X509Certificate::from_der(cert_der)
        .map_err(|e| Error::untrusted(format!("the certificate does not parse: {e}")))?;
    let info = CertInfo::from_parsed(&cert);
    if info.spki != key_spki {
        return Err(Error::untrusted(
            "the certificate is for a different key than the one bootlet generated; do not use it, rerun to request a new one",
        ));
    }
    if info.common_names != [expect.cn] {
        return Err(Error::untrusted(format!(
            "the certificate's CN is {:?}, expected {:?}",
            info.common_names, expect.cn
        )));
    }
    let mut got_orgs = info.organizations.clone();
    got_orgs.sort();
    let mut want_orgs: Vec<String> = expect.organizations.iter().map(|s| s.to_string()).collect();
    want_orgs.sort();
    if got_orgs != want_orgs {
        return Err(Error::untrusted(format!(
            "the certificate's organizations are {got_orgs:?}, expected {want_orgs:?}"
        )));
    }
    let usage_ok = match expect.usage {
        Usage::Client => info.client_auth,
        Usage::Server => info.server_auth,
    };
    if !usage_ok {
        return Err(Error::untrusted(format!(
            "the certificate lacks the {} extended key usage",
            match expect.usage {
                Usage::Client => "client auth",
                Usage::Server => "server auth",
            }
        )));
    }
    for dns in expect.dns_names {
        if !info.dns_names.contains(dns) {
            return Err(Error::untrusted(format!(
                "the certificate lacks the DNS SAN {dns}"
            )));
        }
    }
    for ip in expect.ip_addresses {
        if !info.ip_addresses.contains(ip) {
            return Err(Error::untrusted(format!(
                "the certificate lacks the IP SAN {ip}"
            )));
        }
    }
    verify_chain(&cert, ca_ders)?;
    if now >= info.not_after {
        return Err(Error::untrusted(format!(
            "the certificate expired at {}",
            fmt_unix(info.not_after)
        )));
    }
    if now < info.not_before {
        return Err(Error::untrusted(format!(
            "the certificate is not valid until {} (it is {} here); check this machine's clock",
            fmt_unix(info.not_before),
            fmt_unix(now)
        )));
    }
    Ok(info)
}

/// Verifies that `cert` was signed by one of `ca_ders` (issuer name and signature).
fn verify_chain(cert: &X509Certificate<'_>, ca_ders: &[impl AsRef<[u8]>]) -> Result<()> {
    for ca_der in ca_ders {
        let Ok((_, ca)) = X509Certificate::from_der(ca_der.as_ref()) else {
            continue;
        };
        if ca.subject().as_raw() == cert.issuer().as_raw()
            && signed_by_ca(cert, &ca, ca_der.as_ref())
        {
            return Ok(());
        }
    }
    Err(Error::untrusted(
        "the certificate does not chain to the cluster CA; the API server may not be the cluster you trust",
    ))
}

fn signed_by_ca(cert: &X509Certificate<'_>, ca: &X509Certificate<'_>, ca_der: &[u8]) -> bool {
    let key = super::remembered::digest_of(&[
        cert.tbs_certificate.as_ref(),
        cert.signature_value.data.as_ref(),
        ca_der,
    ]);
    if super::remembered::signature_verified(&key) {
        return true;
    }
    let verified = cert.verify_signature(Some(ca.public_key())).is_ok();
    if verified {
        super::remembered::signature_ok(key);
    }
    verified
}

/// Whether a certificate (DER) was signed by the CA (DER).
pub fn signed_by(cert_der: &[u8], ca_der: &[u8]) -> bool {
    let Ok((_, cert)) = X509Certificate::from_der(cert_der) else {
        return false;
    };
    verify_chain(&cert, &[ca_der]).is_ok()
}

/// RFC 3339 of unix seconds, for messages.
pub fn fmt_unix(secs: i64) -> String {
    time::OffsetDateTime::from_unix_timestamp(secs)
        .ok()
        .and_then(|t| {
            t.format(&time::format_description::well_known::Rfc3339)
                .ok()
        })
        .unwrap_or_else(|| secs.to_string())
}

/// Now, unix seconds.
pub fn now_unix() -> i64 {
    time::OffsetDateTime::now_utc().unix_timestamp()
}
