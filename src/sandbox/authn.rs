//! Authentication, in kube-apiserver's order: client certificate (verified by TLS against the
//! sandbox CA; user = CN, groups = O), then bearer token (bootstrap tokens only, with every rule
//! of `plugin/pkg/auth/authenticator/token/bootstrap/bootstrap.go`), then anonymous.

use serde_json::Value;

use super::store::Store;
use crate::pki::cert::CertInfo;

/// Who is asking.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UserInfo {
    /// User name.
    pub name: String,
    /// Groups, including `system:authenticated` or `system:unauthenticated`.
    pub groups: Vec<String>,
    /// User uid (empty for these authenticators).
    pub uid: String,
}

impl UserInfo {
    /// `system:anonymous`.
    pub fn anonymous() -> UserInfo {
        UserInfo {
            name: "system:anonymous".into(),
            groups: vec!["system:unauthenticated".into()],
            uid: String::new(),
        }
    }

    /// Whether the user is in `group`.
    pub fn in_group(&self, group: &str) -> bool {
        self.groups.iter().any(|g| g == group)
    }
}

/// The outcome of authentication.
#[derive(Debug)]
pub enum Authn {
    /// Authenticated (or anonymous).
    User(UserInfo),
    /// Credentials were presented and rejected: 401.
    Rejected,
}

/// Authenticates from the verified peer certificate and the Authorization header.
pub fn authenticate(
    peer_cert: Option<&CertInfo>,
    authorization: Option<&str>,
    store: &Store,
) -> Authn {
    if let Some(cert) = peer_cert {
        let mut groups = cert.organizations.clone();
        groups.push("system:authenticated".into());
        return Authn::User(UserInfo {
            name: cert.cn().to_string(),
            groups,
            uid: String::new(),
        });
    }
    if let Some(h) = authorization {
        let Some(token) = h.strip_prefix("Bearer ").map(str::trim) else {
            return Authn::Rejected;
        };
        return match bootstrap_token_user(token, store) {
            Some(u) => Authn::User(u),
            None => Authn::Rejected,
        };
    }
    Authn::User(UserInfo::anonymous())
}

fn data(secret: &Value, key: &str) -> Option<String> {
    use base64::Engine;
    let b64 = secret["data"][key].as_str()?;
    let bytes = base64::engine::general_purpose::STANDARD.decode(b64).ok()?;
    String::from_utf8(bytes).ok()
}

/// Whether a bootstrap-token Secret's `expiration` has passed. Missing = never expires;
/// unparseable = expired (cluster-bootstrap `GetExpiration`).
pub fn token_expired(secret: &Value) -> bool {
    match data(secret, "expiration") {
        None => false,
        Some(s) => {
            match time::OffsetDateTime::parse(&s, &time::format_description::well_known::Rfc3339) {
                Ok(t) => t <= time::OffsetDateTime::now_utc(),
                Err(_) => true,
            }
        }
    }
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// The bootstrap token authenticator. Every failure is silent (a plain 401), as upstream; unlike
/// the version read for the reference, nothing here logs the presented secret.
fn bootstrap_token_user(token: &str, store: &Store) -> Option<UserInfo> {
    let parsed = crate::token::BootstrapToken::parse(token).ok()?;
    let secret = store.get("secrets", "kube-system", &parsed.secret_name())?;
    if secret["metadata"]["deletionTimestamp"].is_string() {
        return None;
    }
    if secret["type"].as_str() != Some("bootstrap.kubernetes.io/token")
        || !secret["data"].is_object()
    {
        return None;
    }
    let stored = data(&secret, "token-secret")?;
    if !constant_time_eq(stored.as_bytes(), parsed.secret().expose().as_bytes()) {
        return None;
    }
    if data(&secret, "token-id")? != parsed.id() {
        return None;
    }
    if token_expired(&secret) {
        return None;
    }
    if data(&secret, "usage-bootstrap-authentication").as_deref() != Some("true") {
        return None;
    }
    let mut groups = vec!["system:bootstrappers".to_string()];
    if let Some(extra) = data(&secret, "auth-extra-groups") {
        for g in extra.split(',').map(str::trim).filter(|g| !g.is_empty()) {
            // One invalid group rejects the whole token (GetGroups).
            if !crate::token::valid_extra_group(g) {
                return None;
            }
            groups.push(g.to_string());
        }
    }
    groups.sort();
    groups.dedup();
    groups.push("system:authenticated".into());
    Some(UserInfo {
        name: parsed.user_name(),
        groups,
        uid: String::new(),
    })
}
