//! Bootstrap tokens as `kubeadm token` manages them: the Secret exactly as kubeadm encodes it
//! (`cmd/kubeadm/app/apis/bootstraptoken/v1/utils.go` `BootstrapTokenToSecret`), the list as
//! `kubeadm token list` prints it (`cmd/kubeadm/app/cmd/token.go` `humanReadableBootstrapToken`,
//! with the secret half redacted), deletion by id or token, and the join command to paste.

use std::collections::BTreeMap;
use std::time::Duration;

use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::{ConfigMap, Secret};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::api::{Api, DeleteParams, ListParams, PostParams};
use serde::Serialize;

use crate::cluster::{Cluster, redacted_json};
use crate::error::{Error, ErrorKind, Result};
use crate::token::BootstrapToken;

/// The namespace of token Secrets.
pub const NAMESPACE: &str = "kube-system";
/// The Secret type of bootstrap tokens.
pub const SECRET_TYPE: &str = "bootstrap.kubernetes.io/token";
/// The usages a bootstrap token may have.
pub const USAGES: [&str; 2] = ["signing", "authentication"];

/// What a new token is for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenSpec {
    /// Lifetime from now; zero never expires.
    pub ttl: Duration,
    /// `signing` (cluster-info JWS), `authentication` (bootstrap credentials).
    pub usages: Vec<String>,
    /// `auth-extra-groups`.
    pub groups: Vec<String>,
    /// Free text.
    pub description: String,
}

impl Default for TokenSpec {
    fn default() -> Self {
        TokenSpec {
            ttl: Duration::from_secs(24 * 3600),
            usages: USAGES.iter().map(|u| u.to_string()).collect(),
            groups: vec![crate::token::DEFAULT_NODE_TOKEN_GROUP.to_string()],
            description: String::new(),
        }
    }
}

impl TokenSpec {
    /// Checks usages and groups as kubeadm validates them.
    pub fn validate(&self) -> Result<()> {
        for u in &self.usages {
            if !USAGES.contains(&u.as_str()) {
                return Err(Error::usage(format!(
                    "--usages: unknown usage {u:?}; bootstrap tokens have signing and authentication"
                )));
            }
        }
        for g in &self.groups {
            if !crate::token::valid_extra_group(g) {
                return Err(Error::usage(format!(
                    "--groups {g:?} is not a valid bootstrap group; it must match system:bootstrappers:[a-z0-9:-]{{0,255}}[a-z0-9]"
                )));
            }
        }
        Ok(())
    }

    /// The expiration a token made now would carry, RFC 3339 UTC; none for a zero TTL.
    pub fn expiration_from_now(&self) -> Option<String> {
        if self.ttl.is_zero() {
            return None;
        }
        let at = time::OffsetDateTime::now_utc() + self.ttl;
        Some(crate::pki::cert::fmt_unix(at.unix_timestamp()))
    }
}

/// The token Secret, as `BootstrapTokenToSecret` writes it.
pub fn secret_for(token: &BootstrapToken, spec: &TokenSpec, expiration: Option<&str>) -> Secret {
    let mut data = BTreeMap::new();
    let mut put = |k: &str, v: &str| {
        data.insert(k.to_string(), ByteString(v.as_bytes().to_vec()));
    };
    put("token-id", token.id());
    put("token-secret", token.secret().expose());
    if !spec.description.is_empty() {
        put("description", &spec.description);
    }
    if let Some(exp) = expiration {
        put("expiration", exp);
    }
    for u in &spec.usages {
        put(&format!("usage-bootstrap-{u}"), "true");
    }
    if !spec.groups.is_empty() {
        put("auth-extra-groups", &spec.groups.join(","));
    }
    Secret {
        metadata: ObjectMeta {
            name: Some(token.secret_name()),
            namespace: Some(NAMESPACE.into()),
            ..Default::default()
        },
        type_: Some(SECRET_TYPE.into()),
        data: Some(data),
        ..Default::default()
    }
}

/// One row of `token list`.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct TokenInfo {
    /// `id.<redacted>`.
    pub token: String,
    /// The id.
    pub id: String,
    /// Time to live, kubeadm's short form (`23h`, `<forever>`, `<invalid>` once expired).
    pub ttl: String,
    /// RFC 3339, or none.
    pub expires: Option<String>,
    /// Whether it has expired.
    pub expired: bool,
    /// Usages, sorted.
    pub usages: Vec<String>,
    /// Description.
    pub description: String,
    /// Extra groups.
    pub extra_groups: Vec<String>,
}

fn data(s: &Secret, key: &str) -> Option<String> {
    s.data
        .as_ref()
        .and_then(|d| d.get(key))
        .map(|b| String::from_utf8_lossy(&b.0).into_owned())
}

/// `duration.ShortHumanDuration` of apimachinery.
pub fn short_human_duration(seconds: i64) -> String {
    match seconds {
        s if s < -1 => "<invalid>".into(),
        s if s < 0 => "0s".into(),
        s if s < 60 => format!("{s}s"),
        s if s < 3600 => format!("{}m", s / 60),
        s if s < 86_400 => format!("{}h", s / 3600),
        s if s < 365 * 86_400 => format!("{}d", s / 86_400),
        s => format!("{}y", s / (365 * 86_400)),
    }
}

/// The row of a token Secret, or `None` (with the reason) for one that is not a usable token.
pub fn info_of(s: &Secret) -> std::result::Result<TokenInfo, String> {
    let name = s.metadata.name.clone().unwrap_or_default();
    let id = data(s, "token-id").ok_or(format!("bootstrap token has no token-id data: {name}"))?;
    if name != format!("bootstrap-token-{id}") {
        return Err(format!(
            "bootstrap token name is not of the form 'bootstrap-token-(token-id)': {name}"
        ));
    }
    data(s, "token-secret").ok_or(format!("bootstrap token has no token-secret data: {name}"))?;
    let expires = data(s, "expiration");
    let (ttl, expired) = match &expires {
        None => ("<forever>".to_string(), false),
        Some(e) => {
            match time::OffsetDateTime::parse(e, &time::format_description::well_known::Rfc3339) {
                Ok(t) => {
                    // Sub-second precision, as Go's time.Sub: a fresh 24h token has 23h left.
                    let now = time::OffsetDateTime::now_utc();
                    let left = (t - now).as_seconds_f64().floor() as i64;
                    (short_human_duration(left), left <= 0)
                }
                Err(_) => ("<invalid>".to_string(), true),
            }
        }
    };
    let mut usages: Vec<String> = s
        .data
        .iter()
        .flatten()
        .filter_map(|(k, v)| {
            k.strip_prefix("usage-bootstrap-")
                .filter(|_| v.0 == b"true")
                .map(str::to_string)
        })
        .collect();
    usages.sort();
    let extra_groups = data(s, "auth-extra-groups")
        .map(|g| {
            g.split(',')
                .map(str::trim)
                .filter(|g| !g.is_empty())
                .map(str::to_string)
                .collect()
        })
        .unwrap_or_default();
    Ok(TokenInfo {
        token: format!("{id}.{}", crate::secret::REDACTED),
        id,
        ttl,
        expires,
        expired,
        usages,
        description: data(s, "description").unwrap_or_default(),
        extra_groups,
    })
}

/// kubeadm's table (tabwriter: minimum width 10, padding 3).
pub fn table(rows: &[TokenInfo]) -> String {
    let none = |v: String| {
        if v.is_empty() {
            "<none>".to_string()
        } else {
            v
        }
    };
    let mut cells: Vec<Vec<String>> = vec![
        [
            "TOKEN",
            "TTL",
            "EXPIRES",
            "USAGES",
            "DESCRIPTION",
            "EXTRA GROUPS",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect(),
    ];
    for r in rows {
        cells.push(vec![
            r.token.clone(),
            if r.expired {
                format!("{} (expired)", r.ttl)
            } else {
                r.ttl.clone()
            },
            r.expires.clone().unwrap_or_else(|| "<never>".into()),
            none(r.usages.join(",")),
            // The description is anyone's text: a newline must not make a row of its own.
            none(crate::output::escape_controls(&r.description)),
            none(r.extra_groups.join(",")),
        ]);
    }
    let widths: Vec<usize> = (0..6)
        .map(|c| {
            cells
                .iter()
                .map(|row| row[c].chars().count())
                .max()
                .unwrap_or(0)
                + 3
        })
        .map(|w| w.max(10))
        .collect();
    let mut out = String::new();
    for row in cells {
        let mut line = String::new();
        for (c, cell) in row.iter().enumerate() {
            if c + 1 == row.len() {
                line.push_str(cell);
            } else {
                line.push_str(&format!("{cell:<w$}", w = widths[c]));
            }
        }
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out
}

fn secrets(admin: &Cluster) -> Api<Secret> {
    Api::namespaced(admin.client().clone(), NAMESPACE)
}

/// Creates the token's Secret; an existing token with that id is an error.
pub async fn create(admin: &Cluster, token: &BootstrapToken, spec: &TokenSpec) -> Result<String> {
    spec.validate()?;
    let expiration = spec.expiration_from_now();
    let secret = secret_for(token, spec, expiration.as_deref());
    let api = secrets(admin);
    let created = admin
        .write(
            Cluster::req(
                "create",
                "secrets",
                "POST",
                api.resource_url().to_string(),
                Some(redacted_json(&secret)),
            ),
            || {
                let (api, secret) = (api.clone(), secret.clone());
                async move {
                    match api.create(&PostParams::default(), &secret).await {
                        Ok(_) => Ok(true),
                        Err(kube::Error::Api(s)) if s.code == 409 => Ok(false),
                        Err(e) => Err(e),
                    }
                }
            },
        )
        .await?;
    if created == Some(false) {
        return Err(Error::new(
            ErrorKind::Rejected,
            format!(
                "a bootstrap token with id {:?} already exists; choose another token, or delete it first (bootlet token delete {})",
                token.id(),
                token.id()
            ),
        ));
    }
    Ok(token.secret_name())
}

/// Every bootstrap-token Secret's row (malformed ones are reported in the second list).
pub async fn list(admin: &Cluster) -> Result<(Vec<TokenInfo>, Vec<String>)> {
    let api = secrets(admin);
    let lp = ListParams::default().fields(&format!("type={SECRET_TYPE}"));
    let path = format!("{}?fieldSelector=type%3D{SECRET_TYPE}", api.resource_url());
    let list = admin
        .read(Cluster::req("list", "secrets", "GET", path, None), || {
            let (api, lp) = (api.clone(), lp.clone());
            async move { api.list(&lp).await.map(Some) }
        })
        .await?
        .map(|l| l.items)
        .unwrap_or_default();
    let mut rows = Vec::new();
    let mut problems = Vec::new();
    for s in &list {
        match info_of(s) {
            Ok(r) => rows.push(r),
            Err(p) => problems.push(p),
        }
    }
    rows.sort_by(|a, b| a.id.cmp(&b.id));
    Ok((rows, problems))
}

/// The token id of `arg`: an id, or a whole token (whose secret half is not needed).
pub fn id_of(arg: &str) -> Result<String> {
    let valid_id = |s: &str| {
        s.len() == 6
            && s.bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
    };
    if valid_id(arg) {
        return Ok(arg.to_string());
    }
    BootstrapToken::parse(arg)
        .map(|t| t.id().to_string())
        .map_err(|_| {
            Error::usage(format!(
                "given token or token id {:?} didn't match pattern [a-z0-9]{{6}} or [a-z0-9]{{6}}.[a-z0-9]{{16}}",
                crate::secret::redact_tokens(arg)
            ))
        })
}

/// Deletes the Secrets of `ids`; when some do not exist, nothing is deleted and the error names
/// them.
pub async fn delete(admin: &Cluster, ids: &[String]) -> Result<()> {
    let mut missing = Vec::new();
    for id in ids {
        let name = format!("bootstrap-token-{id}");
        let found = admin.get_secret(NAMESPACE, &name).await?;
        if found.is_none_or(|s| s.type_.as_deref() != Some(SECRET_TYPE)) {
            missing.push(id.clone());
        }
    }
    if !missing.is_empty() {
        return Err(Error::usage(format!(
            "no bootstrap token with id {}; nothing was deleted (see bootlet token list)",
            missing.join(", ")
        )));
    }
    for id in ids {
        delete_one(admin, id).await?;
    }
    Ok(())
}

/// Deletes one token Secret; absent is fine.
pub async fn delete_one(admin: &Cluster, id: &str) -> Result<()> {
    let api = secrets(admin);
    let name = format!("bootstrap-token-{id}");
    admin
        .write(
            Cluster::req(
                "delete",
                "secrets",
                "DELETE",
                format!("{}/{name}", api.resource_url()),
                None,
            ),
            || {
                let (api, name) = (api.clone(), name.clone());
                async move {
                    match api.delete(&name, &DeleteParams::default()).await {
                        Ok(_) => Ok(()),
                        Err(kube::Error::Api(s)) if s.code == 404 => Ok(()),
                        Err(e) => Err(e),
                    }
                }
            },
        )
        .await?;
    Ok(())
}

/// Endpoint (`host:port`) and CA pin for a join command: from `kube-public/cluster-info` (what
/// nodes will discover), else from the admin kubeconfig.
pub async fn endpoint_and_pin(
    admin: &Cluster,
    access: &crate::kubeconfig::ClusterAccess,
) -> Result<(String, String)> {
    let info: Option<ConfigMap> = admin.get_configmap("kube-public", "cluster-info").await?;
    let from_info = info
        .and_then(|cm| cm.data)
        .and_then(|d| d.get("kubeconfig").cloned())
        .and_then(|k| crate::kubeconfig::parse(&k, std::path::Path::new("/"), "cluster-info").ok());
    let (server, ca) = match from_info {
        Some(kc) if kc.ca_pem.is_some() => (kc.server, kc.ca_pem.unwrap_or_default()),
        _ => (
            access.server.clone(),
            access.ca_pem.clone().ok_or_else(|| {
                Error::invalid("the kubeconfig has no CA, and cluster-info has none to pin")
            })?,
        ),
    };
    let certs = crate::pki::parse_certs_pem(&ca, "the cluster CA")?;
    let pin = crate::pki::pin::Pin::of_cert(&certs[0])?.to_string();
    Ok((server.trim_start_matches("https://").to_string(), pin))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_secret_is_encoded_as_kubeadm_does_and_listed_back() {
        let t = BootstrapToken::parse("abcdef.0123456789abcdef").unwrap();
        let spec = TokenSpec {
            description: "for edge".into(),
            ..Default::default()
        };
        let s = secret_for(&t, &spec, Some("2030-01-01T00:00:00Z"));
        let d = s.data.as_ref().unwrap();
        let keys: Vec<&str> = d.keys().map(String::as_str).collect();
        assert_eq!(
            keys,
            [
                "auth-extra-groups",
                "description",
                "expiration",
                "token-id",
                "token-secret",
                "usage-bootstrap-authentication",
                "usage-bootstrap-signing"
            ]
        );
        assert_eq!(s.type_.as_deref(), Some(SECRET_TYPE));
        let row = info_of(&s).unwrap();
        assert_eq!(row.token, "abcdef.<redacted>");
        assert_eq!(row.usages, ["authentication", "signing"]);
        assert!(!row.expired);
        let text = table(&[row]);
        assert!(text.starts_with("TOKEN"), "{text}");
        assert!(!text.contains("0123456789abcdef"));
    }

    #[test]
    fn durations_and_ids_read_like_kubeadms() {
        assert_eq!(short_human_duration(86_399), "23h");
        assert_eq!(short_human_duration(-5), "<invalid>");
        assert_eq!(short_human_duration(3 * 86_400), "3d");
        assert_eq!(id_of("abcdef").unwrap(), "abcdef");
        assert_eq!(id_of("abcdef.0123456789abcdef").unwrap(), "abcdef");
        assert!(!id_of("ABC").unwrap_err().message().contains("0123"));
    }
}
