//! Private keys: ECDSA P-256, PKCS#8 PEM, kept in [`SecretString`]s.

use rcgen::{KeyPair, PKCS_ECDSA_P256_SHA256, PublicKeyData};
use rustls_pki_types::pem::PemObject;

use crate::error::{Error, Result};
use crate::secret::SecretString;

/// A private key and its public half. Clones share the key.
#[derive(Clone)]
pub struct PrivateKey {
    pair: std::sync::Arc<KeyPair>,
    pem: SecretString,
}

impl std::fmt::Debug for PrivateKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "PrivateKey(spki sha256 {})", &self.fingerprint()[..16])
    }
}

impl PrivateKey {
    /// A fresh ECDSA P-256 key from the OS CSPRNG.
    pub fn generate() -> Result<Self> {
        let pair = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256)
            .map_err(|e| Error::internal(format!("cannot generate an ECDSA P-256 key: {e}")))?;
        let pem = SecretString::new(pair.serialize_pem());
        Ok(PrivateKey {
            pair: std::sync::Arc::new(pair),
            pem,
        })
    }

    /// Loads a PKCS#8 PEM key. `what` names the file in errors; the key text is never echoed.
    /// Within [`super::remembered::remembering`] a text already loaded is not parsed again
    /// (parsing checks the public half: a point multiplication).
    pub fn from_pem(pem: &str, what: &str) -> Result<Self> {
        super::remembered::key_or(pem, || {
            let pair = KeyPair::from_pem(pem).map_err(|_| {
                Error::invalid(format!(
                    "{what} is not a PKCS#8 PEM private key (\"BEGIN PRIVATE KEY\"); convert one with `openssl pkcs8 -topk8 -nocrypt -in KEY -out KEY.pk8`"
                ))
            })?;
            Ok(PrivateKey {
                pem: SecretString::new(pem.to_string()),
                pair: std::sync::Arc::new(pair),
            })
        })
    }

    /// The PKCS#8 PEM text.
    pub fn pem(&self) -> &SecretString {
        &self.pem
    }

    /// The rcgen key pair, for signing CSRs and certificates.
    pub fn pair(&self) -> &KeyPair {
        &self.pair
    }

    /// DER SubjectPublicKeyInfo.
    pub fn spki_der(&self) -> Vec<u8> {
        self.pair.subject_public_key_info()
    }

    /// SHA-256 of the SubjectPublicKeyInfo, hex: a public name for the key, safe to log and journal.
    pub fn fingerprint(&self) -> String {
        super::sha256_hex(&self.spki_der())
    }
}

/// Extracts the private key of a PEM text holding certificates and a key (the kubelet's
/// `-current.pem` files hold both), as PKCS#8 PEM: bootlet's own pairs carry a `PRIVATE KEY`
/// block; the pairs the kubelet writes when it rotates carry its `EC PRIVATE KEY` (SEC1, Go's
/// `x509.MarshalECPrivateKey`), which is wrapped into PKCS#8 here.
pub fn private_key_block(pem: &str) -> Option<String> {
    if let Some(block) = pem_block(pem, "PRIVATE KEY") {
        return Some(block);
    }
    let sec1 = pem_block(pem, "EC PRIVATE KEY")?;
    let der = rustls_pki_types::PrivateSec1KeyDer::from_pem_slice(sec1.as_bytes()).ok()?;
    let pkcs8 = sec1_p256_to_pkcs8(der.secret_sec1_der())?;
    let body = base64::Engine::encode(&base64::engine::general_purpose::STANDARD, pkcs8);
    let mut out = String::from("-----BEGIN PRIVATE KEY-----\n");
    for line in body.as_bytes().chunks(64) {
        out.push_str(std::str::from_utf8(line).ok()?);
        out.push('\n');
    }
    out.push_str("-----END PRIVATE KEY-----\n");
    Some(out)
}

/// The first `-----BEGIN {label}-----` block of `pem`, with its END line.
fn pem_block(pem: &str, label: &str) -> Option<String> {
    let begin = format!("-----BEGIN {label}-----");
    let end_marker = format!("-----END {label}-----");
    let start = pem.find(&begin)?;
    let end = pem[start..].find(&end_marker)? + start + end_marker.len();
    Some(format!("{}\n", &pem[start..end]))
}

/// PKCS#8 `PrivateKeyInfo` around a SEC1 `ECPrivateKey` of a P-256 key (RFC 5208, RFC 5915): the
/// algorithm is id-ecPublicKey with the prime256v1 curve. Other curves are not the kubelet's.
fn sec1_p256_to_pkcs8(sec1: &[u8]) -> Option<Vec<u8>> {
    const P256_OID: &[u8] = &[0x06, 0x08, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07];
    const EC_PUBLIC_KEY_OID: &[u8] = &[0x06, 0x07, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x02, 0x01];
    // The curve must be P-256: its OID appears in the ECPrivateKey's parameters.
    if !sec1.windows(P256_OID.len()).any(|w| w == P256_OID) {
        return None;
    }
    fn tlv(tag: u8, content: &[u8]) -> Vec<u8> {
        let mut out = vec![tag];
        match content.len() {
            n if n < 0x80 => out.push(n as u8),
            n if n <= 0xff => out.extend([0x81, n as u8]),
            n => out.extend([0x82, (n >> 8) as u8, n as u8]),
        }
        out.extend_from_slice(content);
        out
    }
    let algorithm = tlv(0x30, &[EC_PUBLIC_KEY_OID, P256_OID].concat());
    let version = [0x02, 0x01, 0x00];
    let body = [&version[..], &algorithm, &tlv(0x04, sec1)].concat();
    Some(tlv(0x30, &body))
}

/// The `CERTIFICATE` blocks of a PEM text holding certificates and a key.
pub fn certificate_blocks(pem: &str) -> String {
    let mut out = String::new();
    let mut rest = pem;
    let (begin, end) = ("-----BEGIN CERTIFICATE-----", "-----END CERTIFICATE-----");
    while let Some(s) = rest.find(begin) {
        let Some(e) = rest[s..].find(end) else { break };
        out.push_str(&rest[s..s + e + end.len()]);
        out.push('\n');
        rest = &rest[s + e + end.len()..];
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_and_redacts() {
        let k = PrivateKey::generate().unwrap();
        let again = PrivateKey::from_pem(k.pem().expose(), "key").unwrap();
        assert_eq!(k.spki_der(), again.spki_der());
        assert!(!format!("{k:?}").contains("PRIVATE"));
        let e = PrivateKey::from_pem(
            "-----BEGIN EC PRIVATE KEY-----\nAAAA\n-----END EC PRIVATE KEY-----\n",
            "k.pem",
        )
        .unwrap_err();
        assert!(e.message().contains("openssl pkcs8"));
    }

    #[test]
    fn splits_bundles() {
        let k = PrivateKey::generate().unwrap();
        let bundle = format!(
            "-----BEGIN CERTIFICATE-----\nQUJD\n-----END CERTIFICATE-----\n{}",
            k.pem().expose()
        );
        assert_eq!(
            private_key_block(&bundle).unwrap().trim(),
            k.pem().expose().trim()
        );
        assert!(certificate_blocks(&bundle).starts_with("-----BEGIN CERTIFICATE-----"));
        assert!(!certificate_blocks(&bundle).contains("PRIVATE"));
    }
}
