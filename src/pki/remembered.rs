//! What one run has already parsed or verified, by digest of the input: a run looks at each
//! credential several times (the plan, the recheck after a phase, the install, the next phase's
//! check), and the same bytes give the same answer every time. Only successes are kept, only for
//! the run that found them ([`remembering`] scopes the memory around it), and nothing here is
//! ever written out: the keys stay in the [`PrivateKey`]s that redact them.

use std::cell::RefCell;
use std::collections::{HashMap, HashSet};

use rustls_pki_types::CertificateDer;

use super::keys::PrivateKey;

/// SHA-256 of an input: the memory's key.
pub(super) type Digest = [u8; 32];

#[derive(Default)]
struct Memory {
    /// Certificate signatures that verified: digest of (signed part, signature, CA).
    signatures: HashSet<Digest>,
    /// Keys loaded, by digest of their PEM text.
    keys: HashMap<Digest, PrivateKey>,
    /// PEM texts whose certificates all parsed, by digest of the text.
    certificates: HashMap<Digest, Vec<CertificateDer<'static>>>,
}

tokio::task_local! {
    static MEMORY: RefCell<Memory>;
}

/// Runs `f` with a fresh memory: what it parses or verifies is not parsed or verified again
/// within it. Outside such a scope nothing is remembered.
pub async fn remembering<F: std::future::Future>(f: F) -> F::Output {
    MEMORY.scope(Default::default(), f).await
}

/// The digest of `parts`, each length-prefixed so that no two sequences of parts collide.
pub(super) fn digest_of(parts: &[&[u8]]) -> Digest {
    let mut d = ring::digest::Context::new(&ring::digest::SHA256);
    for part in parts {
        d.update(&(part.len() as u64).to_be_bytes());
        d.update(part);
    }
    let mut out = [0u8; 32];
    out.copy_from_slice(d.finish().as_ref());
    out
}

fn with<T>(f: impl FnOnce(&mut Memory) -> T) -> Option<T> {
    MEMORY.try_with(|m| f(&mut m.borrow_mut())).ok()
}

/// Whether this run verified the signature named by `digest`.
pub(super) fn signature_verified(digest: &Digest) -> bool {
    with(|m| m.signatures.contains(digest)).unwrap_or(false)
}

/// Remembers a signature that verified.
pub(super) fn signature_ok(digest: Digest) {
    with(|m| m.signatures.insert(digest));
}

/// The key this run loaded from the PEM text with `digest`.
pub(super) fn loaded_key(digest: &Digest) -> Option<PrivateKey> {
    with(|m| m.keys.get(digest).cloned()).flatten()
}

/// Remembers a key loaded from the PEM text with `digest`.
pub(super) fn key_loaded(digest: Digest, key: &PrivateKey) {
    with(|m| m.keys.insert(digest, key.clone()));
}

/// The certificates this run parsed from the PEM text with `digest`.
pub(super) fn parsed_certificates(digest: &Digest) -> Option<Vec<CertificateDer<'static>>> {
    with(|m| m.certificates.get(digest).cloned()).flatten()
}

/// Remembers the certificates parsed from the PEM text with `digest`.
pub(super) fn certificates_parsed(digest: Digest, certs: &[CertificateDer<'static>]) {
    with(|m| m.certificates.insert(digest, certs.to_vec()));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn remembers_within_a_scope_and_not_outside() {
        let key = PrivateKey::generate().unwrap();
        let d = digest_of(&[key.pem().expose().as_bytes()]);
        key_loaded(d, &key);
        assert!(loaded_key(&d).is_none(), "outside a scope nothing is kept");
        remembering(async {
            assert!(loaded_key(&d).is_none(), "each scope starts empty");
            key_loaded(d, &key);
            let again = loaded_key(&d).expect("remembered");
            assert_eq!(again.fingerprint(), key.fingerprint());
            signature_ok(d);
            assert!(signature_verified(&d));
            assert!(!signature_verified(&digest_of(&[b"other"])));
        })
        .await;
        remembering(async { assert!(!signature_verified(&d), "not carried over") }).await;
    }

    #[test]
    fn digests_keep_part_boundaries() {
        assert_ne!(digest_of(&[b"ab", b"c"]), digest_of(&[b"a", b"bc"]));
    }
}
