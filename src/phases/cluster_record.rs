//! The trusted cluster as discovery recorded it (`{state}/cluster.toml`): server, CA and its pin,
//! and the CAs a node credential must chain to.

use serde::{Deserialize, Serialize};

use crate::engine::Ctx;
use crate::error::{Error, Result};

/// The trusted cluster, as discovery recorded it in `{state}/cluster.toml`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClusterRecord {
    /// API server URL.
    pub server: String,
    /// How the CA was obtained.
    pub source: String,
    /// Pin of the CA bundle's first certificate.
    pub ca_pin: String,
    /// CA bundle, PEM.
    pub ca: String,
}

impl ClusterRecord {
    /// The record's path.
    pub fn path(cx: &Ctx) -> String {
        format!("{}/cluster.toml", cx.layout.path("state"))
    }

    /// Reads the record, `None` if absent; a damaged one is an error naming the way out. It is
    /// read (and held to the journal) every time, and parsed once per run and content.
    pub fn load(cx: &Ctx) -> Result<Option<ClusterRecord>> {
        let path = Self::path(cx);
        let Some(text) = cx.world.read_string(&path)? else {
            return Ok(None);
        };
        cx.cluster_records
            .get(&path, &text, || Self::parse(&path, &text))
            .map(Some)
    }

    fn parse(path: &str, text: &str) -> Result<ClusterRecord> {
        let rec: ClusterRecord = toml::from_str(text).map_err(|_| {
            Error::conflict(format!(
                "{path} is damaged; remove it and rerun (discovery will recreate it)"
            ))
        })?;
        crate::pki::parse_certs_pem(rec.ca.as_bytes(), &format!("the CA in {path}")).map_err(
            |e| {
                Error::conflict(format!(
                    "{path} is damaged ({}); remove it and rerun",
                    e.message()
                ))
            },
        )?;
        Ok(rec)
    }

    /// The record, or the missing-input error.
    pub fn require(cx: &Ctx) -> Result<ClusterRecord> {
        Self::load(cx)?.ok_or_else(|| cx.missing("trusted cluster", Self::path(cx)))
    }

    /// TOML text.
    pub fn render(&self) -> Result<String> {
        toml::to_string(self)
            .map_err(|e| Error::internal(format!("cannot render the cluster record: {e}")))
    }

    /// CA certificates, DER.
    pub fn ca_ders(&self) -> Vec<Vec<u8>> {
        crate::pki::parse_certs_pem(self.ca.as_bytes(), "the cluster CA")
            .map(|v| v.into_iter().map(|d| d.to_vec()).collect())
            .unwrap_or_default()
    }
}

/// The CAs a node credential must chain to: the trusted cluster CA, plus in a dry-run the
/// throw-away CA that answered for the cluster.
pub fn trusted_cas(cx: &Ctx, rec: Option<&ClusterRecord>) -> Vec<Vec<u8>> {
    let mut cas = rec.map(|r| r.ca_ders()).unwrap_or_default();
    if let Some(dry) = cx.dry_ca_if_any() {
        cas.push(dry.cert_der().to_vec());
    }
    cas
}
