//! Private keys: ECDSA P-256, PKCS#8 PEM, kept in [`SecretString`]s.

use rcgen::{KeyPair, PKCS_ECDSA_P256_SHA256, PublicKeyData};

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

/// Extracts the first `PRIVATE KEY` block from a PEM text holding certificates and a key (the
/// kubelet's `-current.pem` files hold both).
pub fn private_key_block(pem: &str) -> Option<String> {
    let start = pem.find("-----BEGIN PRIVATE KEY-----")?;
    let end_marker = "-----END PRIVATE KEY-----";
    let end = pem[start..].find(end_marker)? + start + end_marker.len();
    Some(format!("{}\n", &pem[start..end]))
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
