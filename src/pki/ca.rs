//! A certificate authority: the sandbox's cluster CA and the dry-run's throw-away CA.
//!
//! rcgen's defaults are unsafe for a signer (validity 1975–4096, no serial, a placeholder DN), so
//! every certificate here gets explicit validity, a random serial, a fresh DN and an authority key
//! identifier.

use std::net::IpAddr;

use rcgen::{
    BasicConstraints, CertificateParams, CertificateSigningRequestParams, DistinguishedName,
    DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair, KeyUsagePurpose, PublicKeyData,
    SanType, SerialNumber,
};
use ring::rand::{SecureRandom, SystemRandom};
use rustls_pki_types::CertificateDer;
use time::{Duration, OffsetDateTime};

use super::keys::PrivateKey;
use crate::error::{Error, Result};

/// How long the signer backdates `notBefore`, for clock skew (the kube-controller-manager signer
/// backdates by 5 minutes).
pub const BACKDATE: Duration = Duration::minutes(5);

/// Below this lifetime the signer does not take the backdate off the end (the signer's `Short`).
pub const SHORT: Duration = Duration::hours(8);

/// What a certificate may be used for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Usages {
    /// digital signature
    pub digital_signature: bool,
    /// key encipherment
    pub key_encipherment: bool,
    /// client auth
    pub client_auth: bool,
    /// server auth
    pub server_auth: bool,
}

impl Usages {
    /// Maps Kubernetes usage strings; `None` for one this CA does not issue.
    pub fn from_kube(usages: &[String]) -> Option<Usages> {
        let mut u = Usages {
            digital_signature: false,
            key_encipherment: false,
            client_auth: false,
            server_auth: false,
        };
        for s in usages {
            match s.as_str() {
                "digital signature" => u.digital_signature = true,
                "key encipherment" => u.key_encipherment = true,
                "client auth" => u.client_auth = true,
                "server auth" => u.server_auth = true,
                _ => return None,
            }
        }
        Some(u)
    }

    /// Client certificate usages for ECDSA keys.
    pub const CLIENT: Usages = Usages {
        digital_signature: true,
        key_encipherment: false,
        client_auth: true,
        server_auth: false,
    };
    /// Serving certificate usages for ECDSA keys.
    pub const SERVER: Usages = Usages {
        digital_signature: true,
        key_encipherment: false,
        client_auth: false,
        server_auth: true,
    };
}

/// What to put in a certificate.
#[derive(Debug, Clone)]
pub struct Subject<'a> {
    /// Common name.
    pub cn: &'a str,
    /// Organizations.
    pub orgs: &'a [String],
    /// DNS SANs.
    pub dns: &'a [String],
    /// IP SANs.
    pub ips: &'a [IpAddr],
}

/// A CA that can sign.
pub struct Ca {
    cert_pem: String,
    cert_der: CertificateDer<'static>,
    key: PrivateKey,
    issuer: Issuer<'static, KeyPair>,
}

impl std::fmt::Debug for Ca {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Ca({})", super::pin::Pin::of_spki(&self.key.spki_der()))
    }
}

impl Ca {
    /// A new self-signed CA with CN `cn`, valid 10 years (kubeadm's CA validity).
    pub fn generate(cn: &str) -> Result<Ca> {
        let key = PrivateKey::generate()?;
        let mut params = CertificateParams::default();
        params.distinguished_name = DistinguishedName::new();
        params.distinguished_name.push(DnType::CommonName, cn);
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.key_usages = vec![
            KeyUsagePurpose::DigitalSignature,
            KeyUsagePurpose::KeyEncipherment,
            KeyUsagePurpose::KeyCertSign,
        ];
        let now = OffsetDateTime::now_utc();
        params.not_before = now - BACKDATE;
        params.not_after = now + Duration::days(3650);
        params.serial_number = Some(random_serial()?);
        params.subject_alt_names = vec![SanType::DnsName(
            cn.to_string()
                .try_into()
                .map_err(|_| Error::internal("bad CA name"))?,
        )];
        let cert = params
            .self_signed(key.pair())
            .map_err(|e| Error::internal(format!("cannot self-sign the CA: {e}")))?;
        Self::from_pem(&cert.pem(), key.pem().expose())
    }

    /// Loads a CA from PEM certificate and PKCS#8 key.
    pub fn from_pem(cert_pem: &str, key_pem: &str) -> Result<Ca> {
        let certs = super::parse_certs_pem(cert_pem.as_bytes(), "the CA certificate")?;
        let cert_der = certs[0].clone().into_owned();
        let key = PrivateKey::from_pem(key_pem, "the CA key")?;
        let info = super::cert::CertInfo::parse(&cert_der)?;
        if info.spki != key.spki_der() {
            return Err(Error::invalid(
                "the CA key does not match the CA certificate",
            ));
        }
        if !info.is_ca {
            return Err(Error::invalid(
                "the CA certificate is not a CA (basic constraints CA:FALSE)",
            ));
        }
        let signing = KeyPair::from_pem(key.pem().expose())
            .map_err(|e| Error::invalid(format!("cannot load the CA key: {e}")))?;
        let issuer = Issuer::from_ca_cert_der(&cert_der, signing)
            .map_err(|e| Error::invalid(format!("cannot use the CA certificate: {e}")))?;
        Ok(Ca {
            cert_pem: super::pem_encode("CERTIFICATE", &cert_der),
            cert_der,
            key,
            issuer,
        })
    }

    /// The CA certificate, PEM.
    pub fn cert_pem(&self) -> &str {
        &self.cert_pem
    }

    /// The CA certificate, DER.
    pub fn cert_der(&self) -> &[u8] {
        &self.cert_der
    }

    /// The CA key.
    pub fn key(&self) -> &PrivateKey {
        &self.key
    }

    /// Signs a verified PKCS#10 request (DER) with the given subject, SANs, usages and lifetime.
    /// The subject and SANs are taken from the caller, which has validated them against the
    /// request; usages come from the Kubernetes CSR's `spec.usages`, as the real signer does.
    pub fn sign_request(
        &self,
        request_der: &[u8],
        subject: &Subject<'_>,
        usages: Usages,
        lifetime: Duration,
    ) -> Result<String> {
        let der = rustls_pki_types::CertificateSigningRequestDer::from(request_der.to_vec());
        let mut req = CertificateSigningRequestParams::from_der(&der)
            .map_err(|e| Error::invalid(format!("cannot sign this request: {e}")))?;
        req.params = leaf_params(subject, usages, lifetime)?;
        let cert = req
            .signed_by(&self.issuer)
            .map_err(|e| Error::internal(format!("cannot sign: {e}")))?;
        Ok(cert.pem())
    }

    /// Issues a certificate for a key the caller holds (admin client, sandbox server).
    pub fn issue(
        &self,
        key: &impl PublicKeyData,
        subject: &Subject<'_>,
        usages: Usages,
        lifetime: Duration,
    ) -> Result<String> {
        let params = leaf_params(subject, usages, lifetime)?;
        let cert = params
            .signed_by(key, &self.issuer)
            .map_err(|e| Error::internal(format!("cannot issue: {e}")))?;
        Ok(cert.pem())
    }
}

fn leaf_params(
    subject: &Subject<'_>,
    usages: Usages,
    lifetime: Duration,
) -> Result<CertificateParams> {
    let mut params = CertificateParams::default();
    let orgs: Vec<&str> = subject.orgs.iter().map(String::as_str).collect();
    params.distinguished_name = super::subject_dn(subject.cn, &orgs)?;
    for d in subject.dns {
        params.subject_alt_names.push(SanType::DnsName(
            d.clone()
                .try_into()
                .map_err(|_| Error::invalid(format!("bad DNS name {d:?}")))?,
        ));
    }
    for ip in subject.ips {
        params.subject_alt_names.push(SanType::IpAddress(*ip));
    }
    let now = OffsetDateTime::now_utc();
    params.not_before = now - BACKDATE;
    // The kube-controller-manager signer (pkg/controller/certificates/authority/policies.go,
    // PermissiveSigningPolicy.apply) backdates NotBefore by 5 minutes for clock skew, and for a
    // lifetime of 8 h or more takes those minutes off the end, so the total stays the lifetime;
    // a short-lived certificate keeps its full lifetime from now.
    params.not_after = if lifetime < SHORT {
        now + lifetime
    } else {
        now + lifetime - BACKDATE
    };
    params.serial_number = Some(random_serial()?);
    params.use_authority_key_identifier_extension = true;
    params.is_ca = IsCa::ExplicitNoCa;
    if usages.digital_signature {
        params.key_usages.push(KeyUsagePurpose::DigitalSignature);
    }
    if usages.key_encipherment {
        params.key_usages.push(KeyUsagePurpose::KeyEncipherment);
    }
    if usages.client_auth {
        params
            .extended_key_usages
            .push(ExtendedKeyUsagePurpose::ClientAuth);
    }
    if usages.server_auth {
        params
            .extended_key_usages
            .push(ExtendedKeyUsagePurpose::ServerAuth);
    }
    Ok(params)
}

fn random_serial() -> Result<SerialNumber> {
    let mut bytes = [0u8; 16];
    SystemRandom::new()
        .fill(&mut bytes)
        .map_err(|_| Error::internal("the OS random number generator failed"))?;
    bytes[0] &= 0x7f; // positive INTEGER
    bytes[0] |= 0x01; // no leading zero byte to trim
    Ok(SerialNumber::from_slice(&bytes))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pki::cert::{Expectation, Usage, now_unix, verify_issued};

    #[test]
    fn signs_requests_that_verify() {
        let ca = Ca::generate("kubernetes").unwrap();
        let key = PrivateKey::generate().unwrap();
        let csr =
            crate::pki::csr::build(&key, "system:node:n1", &["system:nodes"], &[], &[]).unwrap();
        let info = crate::pki::csr::parse_pem(csr.as_bytes()).unwrap();
        let orgs = vec!["system:nodes".to_string()];
        let pem = ca
            .sign_request(
                &info.der,
                &Subject {
                    cn: "system:node:n1",
                    orgs: &orgs,
                    dns: &[],
                    ips: &[],
                },
                Usages::CLIENT,
                Duration::hours(1),
            )
            .unwrap();
        let der = crate::pki::parse_certs_pem(pem.as_bytes(), "cert").unwrap();
        let expect = Expectation {
            cn: "system:node:n1",
            organizations: &["system:nodes"],
            usage: Usage::Client,
            dns_names: &[],
            ip_addresses: &[],
        };
        verify_issued(
            &der[0],
            &key.spki_der(),
            &[ca.cert_der()],
            &expect,
            now_unix(),
        )
        .unwrap();
        // Another CA must not verify it.
        let other = Ca::generate("kubernetes").unwrap();
        let e = verify_issued(
            &der[0],
            &key.spki_der(),
            &[other.cert_der()],
            &expect,
            now_unix(),
        )
        .unwrap_err();
        assert!(e.message().contains("does not chain"));
        // Wrong key, wrong usage, expired.
        let k2 = PrivateKey::generate().unwrap();
        assert!(
            verify_issued(
                &der[0],
                &k2.spki_der(),
                &[ca.cert_der()],
                &expect,
                now_unix()
            )
            .is_err()
        );
        let server = Expectation {
            usage: Usage::Server,
            ..expect.clone()
        };
        assert!(
            verify_issued(
                &der[0],
                &key.spki_der(),
                &[ca.cert_der()],
                &server,
                now_unix()
            )
            .is_err()
        );
        assert!(
            verify_issued(
                &der[0],
                &key.spki_der(),
                &[ca.cert_der()],
                &expect,
                now_unix() + 7200
            )
            .is_err()
        );
    }

    #[test]
    fn round_trips_through_pem() {
        let ca = Ca::generate("kubernetes").unwrap();
        let again = Ca::from_pem(ca.cert_pem(), ca.key().pem().expose()).unwrap();
        assert_eq!(again.cert_der(), ca.cert_der());
        let other = Ca::generate("x").unwrap();
        assert!(Ca::from_pem(ca.cert_pem(), other.key().pem().expose()).is_err());
    }
}
