//! What one run has already parsed or verified, by digest of the input: a run looks at each
//! credential several times (the plan, the recheck after a phase, the install, the next phase's
//! check), and the same bytes give the same answer every time. Only successes are kept, only for
//! the run that found them ([`remembering`] scopes the memory around it), and nothing here is
//! ever written out: the keys stay in the [`PrivateKey`]s that redact them.

use std::cell::RefCell;
use std::collections::{HashMap, HashSet};

use rustls_pki_types::CertificateDer;

use super::keys::PrivateKey;
use crate::error::Result;

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

/// The key this run loaded from the PEM text `pem`, or the one `load` makes of it (remembered
/// if it loads).
pub(super) fn key_or(pem: &str, load: impl FnOnce() -> Result<PrivateKey>) -> Result<PrivateKey> {
    recall_or(|m| &mut m.keys, pem.as_bytes(), load)
}

/// The certificates this run parsed from the PEM text `pem`, or the ones `parse` finds in it
/// (remembered if they all parse).
pub(super) fn certificates_or(
    pem: &[u8],
    parse: impl FnOnce() -> Result<Vec<CertificateDer<'static>>>,
) -> Result<Vec<CertificateDer<'static>>> {
    recall_or(|m| &mut m.certificates, pem, parse)
}

/// What this run made of `input` before, or what `make` makes of it now, kept if it succeeds.
fn recall_or<T: Clone>(
    table: fn(&mut Memory) -> &mut HashMap<Digest, T>,
    input: &[u8],
    make: impl FnOnce() -> Result<T>,
) -> Result<T> {
    let digest = digest_of(&[input]);
    if let Some(made) = with(|m| table(m).get(&digest).cloned()).flatten() {
        return Ok(made);
    }
    let made = make()?;
    with(|m| table(m).insert(digest, made.clone()));
    Ok(made)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn remembers_within_a_scope_and_not_outside() {
        let key = PrivateKey::generate().unwrap();
        let pem = key.pem().expose().clone();
        let loads = std::cell::Cell::new(0);
        let load = || {
            loads.set(loads.get() + 1);
            Ok(key.clone())
        };
        key_or(&pem, load).unwrap();
        key_or(&pem, load).unwrap();
        assert_eq!(loads.get(), 2, "outside a scope nothing is kept");
        remembering(async {
            let again = key_or(&pem, load).unwrap();
            assert_eq!(loads.get(), 3, "each scope starts empty");
            assert_eq!(again.fingerprint(), key.fingerprint());
            key_or(&pem, load).unwrap();
            assert_eq!(loads.get(), 3, "loaded once per scope");
            let failed = key_or("other", || Err(crate::error::Error::invalid("no")));
            assert!(failed.is_err());
            key_or("other", load).unwrap();
            assert_eq!(loads.get(), 4, "a failure is not kept");
            let d = digest_of(&[pem.as_bytes()]);
            signature_ok(d);
            assert!(signature_verified(&d));
            assert!(!signature_verified(&digest_of(&[b"other"])));
        })
        .await;
        let d = digest_of(&[pem.as_bytes()]);
        remembering(async { assert!(!signature_verified(&d), "not carried over") }).await;
    }

    #[test]
    fn digests_keep_part_boundaries() {
        assert_ne!(digest_of(&[b"ab", b"c"]), digest_of(&[b"a", b"bc"]));
    }
}
