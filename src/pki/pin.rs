//! CA public-key pins in kubeadm's `--discovery-token-ca-cert-hash` format: `sha256:<hex>` over the
//! DER SubjectPublicKeyInfo (RFC 7469), as `cmd/kubeadm/app/util/pubkeypin/pubkeypin.go`.

use std::fmt;

use super::cert::CertInfo;
use crate::error::{Error, Result};

/// One pin.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Pin(String);

impl Pin {
    /// Parses `sha256:<64 hex>`. The format name is case-insensitive and the hex is lower-cased,
    /// as kubeadm does.
    pub fn parse(text: &str) -> Result<Self> {
        let text = text.trim();
        let Some((format, value)) = text.split_once(':').filter(|(_, v)| !v.contains(':')) else {
            return Err(Error::invalid(format!(
                "invalid CA pin {text:?}: expected \"format:hex-value\" like sha256:<64 hex digits>; known format(s) are: sha256"
            )));
        };
        if !format.eq_ignore_ascii_case("sha256") {
            return Err(Error::invalid(format!(
                "invalid CA pin: unknown hash format {format:?}; known format(s) are: sha256"
            )));
        }
        let bytes = hex::decode(value).map_err(|_| {
            Error::invalid(format!("invalid CA pin {text:?}: the value is not hex"))
        })?;
        if bytes.len() != 32 {
            return Err(Error::invalid(format!(
                "invalid CA pin {text:?}: expected a 32 byte SHA-256 hash, found {} bytes",
                bytes.len()
            )));
        }
        Ok(Pin(format!("sha256:{}", value.to_ascii_lowercase())))
    }

    /// The pin of a DER SubjectPublicKeyInfo.
    pub fn of_spki(spki: &[u8]) -> Pin {
        Pin(format!("sha256:{}", super::sha256_hex(spki)))
    }

    /// The pin of a DER certificate.
    pub fn of_cert(der: &[u8]) -> Result<Pin> {
        Ok(Pin::of_spki(&CertInfo::parse(der)?.spki))
    }

    /// The pin text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for Pin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Passes if ANY certificate of the bundle is pinned by ANY of `pins` (kubeadm `Set.CheckAny`;
/// several pins allow CA rotation). The error shows the observed pins and subjects, both public.
pub fn check_any(pins: &[Pin], cert_ders: &[impl AsRef<[u8]>]) -> Result<Pin> {
    let mut observed = Vec::new();
    for der in cert_ders {
        let info = CertInfo::parse(der.as_ref())?;
        let pin = Pin::of_spki(&info.spki);
        if pins.contains(&pin) {
            return Ok(pin);
        }
        observed.push(format!("{pin} (CN={})", info.cn()));
    }
    Err(Error::untrusted(format!(
        "the cluster CA is not pinned: none of the public keys [{}] match --discovery-token-ca-cert-hash; recompute the pin on the control plane with `bootlet ca-pin /etc/kubernetes/pki/ca.crt`",
        observed.join(", ")
    )))
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOLDEN_CA: &str = include_str!("../../fixtures/kubeadm-golden/ca.pem");
    const GOLDEN_PIN: &str =
        "sha256:3b793efefe27a19f93b0fbe6e637e9c41d0dde8a377d6ab1c0f656bf1136dd8a";

    #[test]
    fn golden_ca_pin_matches_kubeadm() {
        let certs = crate::pki::parse_certs_pem(GOLDEN_CA.as_bytes(), "golden CA").unwrap();
        assert_eq!(Pin::of_cert(&certs[0]).unwrap().as_str(), GOLDEN_PIN);
        let upper = GOLDEN_PIN.to_uppercase();
        assert_eq!(Pin::parse(&upper).unwrap().as_str(), GOLDEN_PIN);
        assert!(check_any(&[Pin::parse(GOLDEN_PIN).unwrap()], &certs).is_ok());
    }

    #[test]
    fn any_pin_passes_and_mismatch_names_observed() {
        let certs = crate::pki::parse_certs_pem(GOLDEN_CA.as_bytes(), "golden CA").unwrap();
        let other = Pin::parse(&format!("sha256:{}", "00".repeat(32))).unwrap();
        assert!(check_any(&[other.clone(), Pin::parse(GOLDEN_PIN).unwrap()], &certs).is_ok());
        let e = check_any(&[other], &certs).unwrap_err();
        assert!(e.message().contains(GOLDEN_PIN), "{e}");
    }

    #[test]
    fn rejects_bad_pins() {
        for bad in [
            "",
            "sha256",
            "md5:00",
            "sha256:zz",
            "sha256:abcd",
            "sha256:a:b",
        ] {
            assert!(Pin::parse(bad).is_err(), "{bad}");
        }
    }
}
