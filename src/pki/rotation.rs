//! When a certificate is due for rotation: the kubelet's rule, fixed per certificate.
//!
//! client-go's certificate manager (`staging/src/k8s.io/client-go/util/certificate/
//! certificate_manager.go`, `nextRotationDeadline` and `jitteryDuration`) rotates at
//! `NotBefore + wait.Jitter(total, 0.2) - 0.3 * total`, a uniformly random point between 70 % and
//! 90 % of the certificate's lifetime, "so each node will rotate at approximately 70-90% of the
//! total lifetime" and a fleet does not renew all at once. The kubelet draws a new random number
//! each time it computes the deadline; bootlet runs as separate processes, so it derives the
//! fraction from the certificate itself (its serial and public key): every run, `plan`,
//! `certs check-expiration` and `renew --watch` agree on one deadline per certificate, and
//! certificates still spread uniformly over the window.

use super::cert::CertInfo;

/// The fraction of the lifetime at which `cert` rotates, in [0.7, 0.9).
pub fn rotation_fraction(cert: &CertInfo) -> f64 {
    let mut seed = cert.serial.as_bytes().to_vec();
    seed.extend_from_slice(&cert.spki);
    let digest = super::sha256_hex(&seed);
    let u = u64::from_str_radix(&digest[..16], 16).unwrap_or(0) as f64 / (u64::MAX as f64 + 1.0);
    0.7 + 0.2 * u
}

/// The rotation deadline of `cert` (unix seconds).
pub fn rotation_deadline(cert: &CertInfo) -> i64 {
    let total = (cert.not_after - cert.not_before).max(0) as f64;
    cert.not_before + (total * rotation_fraction(cert)) as i64
}

/// Whether `cert` is due at `now` (unix seconds).
pub fn is_due(cert: &CertInfo, now: i64) -> bool {
    now >= rotation_deadline(cert)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cert(serial: &str, not_before: i64, not_after: i64) -> CertInfo {
        CertInfo {
            common_names: vec![],
            organizations: vec![],
            dns_names: vec![],
            ip_addresses: vec![],
            client_auth: true,
            server_auth: false,
            is_ca: false,
            not_before,
            not_after,
            spki: vec![1, 2, 3],
            subject_raw: vec![],
            issuer_raw: vec![],
            serial: serial.into(),
        }
    }

    #[test]
    fn deadlines_fall_uniformly_between_70_and_90_percent_and_are_stable() {
        let year = 365 * 24 * 3600;
        let mut buckets = [0u32; 4];
        for i in 0..4000 {
            let c = cert(&format!("{i:x}"), 1_000, 1_000 + year);
            let f = rotation_fraction(&c);
            assert!((0.7..0.9).contains(&f), "{f}");
            assert_eq!(
                rotation_deadline(&c),
                rotation_deadline(&c.clone()),
                "stable per certificate"
            );
            let d = rotation_deadline(&c);
            assert!(d >= 1_000 + year * 7 / 10 && d <= 1_000 + year * 9 / 10);
            buckets[((f - 0.7) / 0.05) as usize] += 1;
        }
        // Uniform: each 5-point quarter of the window holds about a quarter of the certificates.
        for b in buckets {
            assert!((850..1150).contains(&b), "{buckets:?}");
        }
    }

    #[test]
    fn due_only_after_the_deadline() {
        let c = cert("ab", 0, 1000);
        let d = rotation_deadline(&c);
        assert!(!is_due(&c, d - 1));
        assert!(is_due(&c, d));
        assert!(is_due(&c, 2000));
    }
}
