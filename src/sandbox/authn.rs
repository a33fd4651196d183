//! Authentication, in kube-apiserver's order: client certificate (verified by TLS against the
//! sandbox CA; user = CN, groups = O), then bearer token (bootstrap tokens, with every rule of
//! `plugin/pkg/auth/authenticator/token/bootstrap/bootstrap.go`, and the service-account tokens
//! this sandbox issues through TokenRequest), then anonymous. A token that authenticated is
//! remembered for 10 s, as kube-apiserver's token cache does (`TokenSuccessCacheTTL`, failures
//! not cached): a deleted token keeps working that long after its last success.

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
    /// Extra attributes: for a client certificate, the credential id kube-apiserver adds
    /// (`authentication.kubernetes.io/credential-id: X509SHA256=<hex of the certificate's
    /// SHA-256>`, `k8s.io/apiserver/pkg/authentication/request/x509`).
    pub extra: std::collections::BTreeMap<String, Vec<String>>,
}

/// A verified client certificate as authentication reads it.
#[derive(Debug, Clone)]
pub struct PeerCert {
    /// Its subject and names.
    pub info: CertInfo,
    /// `X509SHA256=<hex>` of its DER.
    pub credential_id: String,
}

impl PeerCert {
    /// Reads a verified peer certificate.
    pub fn parse(der: &[u8]) -> Option<PeerCert> {
        let info = CertInfo::parse(der).ok()?;
        let digest = ring::digest::digest(&ring::digest::SHA256, der);
        Some(PeerCert {
            info,
            credential_id: format!("X509SHA256={}", hex::encode(digest.as_ref())),
        })
    }
}

/// The extra key of a credential's id.
pub const CREDENTIAL_ID: &str = "authentication.kubernetes.io/credential-id";

impl UserInfo {
    /// `system:anonymous`.
    pub fn anonymous() -> UserInfo {
        UserInfo {
            name: "system:anonymous".into(),
            groups: vec!["system:unauthenticated".into()],
            uid: String::new(),
            extra: Default::default(),
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

/// kube-apiserver's cache of successful token authentications
/// (`k8s.io/apiserver/pkg/authentication/token/cache`, wrapped around the token authenticators in
/// `pkg/kubeapiserver/authenticator/config.go` with `TokenSuccessCacheTTL` 10 s and
/// `TokenFailureCacheTTL` 0). Keyed by the token's SHA-256, never the token; bounded.
#[derive(Debug, Default)]
pub struct TokenCache {
    entries: std::collections::HashMap<[u8; 32], (UserInfo, std::time::Instant)>,
}

impl TokenCache {
    /// How long a success is remembered.
    pub const TTL: std::time::Duration = std::time::Duration::from_secs(10);
    /// At most this many tokens are remembered; beyond, the expired go, then everything.
    const CAPACITY: usize = 4096;

    fn key(token: &str) -> [u8; 32] {
        let d = ring::digest::digest(&ring::digest::SHA256, token.as_bytes());
        d.as_ref().try_into().expect("32 bytes")
    }

    fn get(&self, token: &str) -> Option<UserInfo> {
        let (user, at) = self.entries.get(&Self::key(token))?;
        (at.elapsed() < Self::TTL).then(|| user.clone())
    }

    fn remember(&mut self, token: &str, user: &UserInfo) {
        if self.entries.len() >= Self::CAPACITY {
            self.entries.retain(|_, (_, at)| at.elapsed() < Self::TTL);
            if self.entries.len() >= Self::CAPACITY {
                self.entries.clear();
            }
        }
        let now = std::time::Instant::now();
        self.entries.insert(Self::key(token), (user.clone(), now));
    }
}

/// Authenticates from the verified peer certificate and the Authorization header.
pub fn authenticate(
    peer_cert: Option<&PeerCert>,
    authorization: Option<&str>,
    store: &Store,
    token_key: &ring::hmac::Key,
    cache: &mut TokenCache,
) -> Authn {
    if let Some(cert) = peer_cert {
        let mut groups = cert.info.organizations.clone();
        groups.push("system:authenticated".into());
        return Authn::User(UserInfo {
            name: cert.info.cn().to_string(),
            groups,
            uid: String::new(),
            extra: [(CREDENTIAL_ID.to_string(), vec![cert.credential_id.clone()])].into(),
        });
    }
    if let Some(h) = authorization {
        let Some(token) = h.strip_prefix("Bearer ").map(str::trim) else {
            return Authn::Rejected;
        };
        if let Some(u) = cache.get(token) {
            return Authn::User(u);
        }
        let user = if token.split('.').count() == 3 {
            service_account_user(token, store, token_key)
        } else {
            bootstrap_token_user(token, store)
        };
        return match user {
            Some(u) => {
                cache.remember(token, &u);
                Authn::User(u)
            }
            None => Authn::Rejected,
        };
    }
    Authn::User(UserInfo::anonymous())
}

/// A TokenReview's verdict on `token`: who it is, by the same authenticators a request's bearer
/// token meets (without the cache: a review asks about now).
pub fn review_token(token: &str, store: &Store, token_key: &ring::hmac::Key) -> Option<UserInfo> {
    if token.split('.').count() == 3 {
        service_account_user(token, store, token_key)
    } else {
        bootstrap_token_user(token, store)
    }
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
        extra: Default::default(),
    })
}

/// The service-account issuer, also the API server's audience.
pub const ISSUER: &str = "https://kubernetes.default.svc.cluster.local";

fn b64url() -> base64::engine::GeneralPurpose {
    base64::engine::general_purpose::URL_SAFE_NO_PAD
}

/// A service-account token (a JWT, as kube-apiserver's TokenRequest returns; signed here with
/// the sandbox's HMAC key rather than the service-account key pair, which clients never check).
pub fn issue_service_account_token(
    key: &ring::hmac::Key,
    namespace: &str,
    name: &str,
    uid: &str,
    audiences: &[String],
    expires_at: i64,
) -> String {
    use base64::Engine;
    let now = crate::pki::cert::now_unix();
    let header = serde_json::json!({"alg": "HS256", "kid": "bootlet-sandbox", "typ": "JWT"});
    let claims = serde_json::json!({"aud": audiences, "exp": expires_at, "iat": now, "nbf": now, "iss": ISSUER,
        "sub": format!("system:serviceaccount:{namespace}:{name}"),
        "kubernetes.io": {"namespace": namespace, "serviceaccount": {"name": name, "uid": uid}}});
    let signing_input = format!(
        "{}.{}",
        b64url().encode(header.to_string()),
        b64url().encode(claims.to_string())
    );
    let sig = ring::hmac::sign(key, signing_input.as_bytes());
    format!("{signing_input}.{}", b64url().encode(sig.as_ref()))
}

/// The service account a token this sandbox issued stands for, while it is unexpired and the
/// account still exists with the same uid (the legacy and bound-token rules that matter here).
fn service_account_user(token: &str, store: &Store, key: &ring::hmac::Key) -> Option<UserInfo> {
    use base64::Engine;
    let (signing_input, sig) = token.rsplit_once('.')?;
    let sig = b64url().decode(sig).ok()?;
    ring::hmac::verify(key, signing_input.as_bytes(), &sig).ok()?;
    let claims: Value =
        serde_json::from_slice(&b64url().decode(signing_input.split_once('.')?.1).ok()?).ok()?;
    if claims["iss"] != ISSUER || claims["exp"].as_i64()? <= crate::pki::cert::now_unix() {
        return None;
    }
    let ns = claims["kubernetes.io"]["namespace"].as_str()?;
    let name = claims["kubernetes.io"]["serviceaccount"]["name"].as_str()?;
    let uid = claims["kubernetes.io"]["serviceaccount"]["uid"].as_str()?;
    let sa = store.get("serviceaccounts", ns, name)?;
    if sa["metadata"]["uid"].as_str() != Some(uid) {
        return None;
    }
    Some(UserInfo {
        name: format!("system:serviceaccount:{ns}:{name}"),
        groups: vec![
            "system:serviceaccounts".into(),
            format!("system:serviceaccounts:{ns}"),
            "system:authenticated".into(),
        ],
        uid: uid.to_string(),
        extra: Default::default(),
    })
}
