//! The bootstrap-token controllers of kube-controller-manager:
//! - bootstrap signer (`pkg/controller/bootstrap/bootstrapsigner.go`): keeps `jws-kubeconfig-<id>`
//!   in `kube-public/cluster-info` for every valid signing token;
//! - token cleaner (`pkg/controller/bootstrap/tokencleaner.go`): deletes expired token Secrets,
//!   at the moment the earliest one expires rather than on a poll.

use base64::Engine;
use serde_json::{Value, json};

use super::super::authn::token_expired;
use super::super::state::State;

fn secret_data(secret: &Value, key: &str) -> Option<String> {
    let b = base64::engine::general_purpose::STANDARD
        .decode(secret["data"][key].as_str()?)
        .ok()?;
    String::from_utf8(b).ok()
}

/// `validateSecretForSigning`: the token a Secret holds, if it may sign cluster-info.
fn signing_token(secret: &Value) -> Option<crate::token::BootstrapToken> {
    let name = secret["metadata"]["name"].as_str()?;
    let id = name.strip_prefix("bootstrap-token-")?;
    if id.len() != 6
        || !id
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
    {
        return None;
    }
    if secret["type"].as_str() != Some("bootstrap.kubernetes.io/token") {
        return None;
    }
    if secret_data(secret, "token-id")? != id {
        return None;
    }
    let token_secret = secret_data(secret, "token-secret")?;
    if token_secret.is_empty()
        || token_expired(secret)
        || secret_data(secret, "usage-bootstrap-signing").as_deref() != Some("true")
    {
        return None;
    }
    crate::token::BootstrapToken::parse(&format!("{id}.{token_secret}")).ok()
}

/// The bootstrap signer: recompute every `jws-kubeconfig-<id>`, drop stale ones, update only on
/// change.
pub fn sign_cluster_info(state: &State) {
    let mut store = state.store.lock().expect("store");
    let Some(cm) = store.get("configmaps", "kube-public", "cluster-info") else {
        return;
    };
    let Some(kubeconfig) = cm["data"]["kubeconfig"].as_str().map(str::to_string) else {
        return;
    };
    let mut data = cm["data"].as_object().cloned().unwrap_or_default();
    let before = data.clone();
    data.retain(|k, _| !k.starts_with("jws-kubeconfig-"));
    for secret in store.list("secrets", "kube-system") {
        if let Some(token) = signing_token(&secret) {
            data.insert(
                format!("jws-kubeconfig-{}", token.id()),
                json!(crate::pki::jws::sign_detached(&kubeconfig, &token)),
            );
        }
    }
    if data != before {
        let mut updated = (*cm).clone();
        updated["data"] = Value::Object(data);
        let _ = store.update("configmaps", "kube-public", "cluster-info", updated);
    }
}

/// The token cleaner: delete expired bootstrap-token Secrets (with a uid precondition).
pub fn clean_tokens(state: &State) {
    let mut store = state.store.lock().expect("store");
    for secret in store.list("secrets", "kube-system") {
        if secret["type"].as_str() == Some("bootstrap.kubernetes.io/token")
            && token_expired(&secret)
        {
            let name = secret["metadata"]["name"]
                .as_str()
                .unwrap_or_default()
                .to_string();
            let uid = secret["metadata"]["uid"].as_str().map(str::to_string);
            let _ = store.delete("secrets", "kube-system", &name, uid.as_deref());
        }
    }
}

/// When the next bootstrap-token Secret expires (unix seconds), if any does.
pub fn next_expiry(state: &State) -> Option<i64> {
    let store = state.store.lock().expect("store");
    store
        .range("secrets", "kube-system", None)
        .filter(|(_, s)| s["type"].as_str() == Some("bootstrap.kubernetes.io/token"))
        .filter_map(|(_, s)| {
            let exp = secret_data(s, "expiration")?;
            time::OffsetDateTime::parse(&exp, &time::format_description::well_known::Rfc3339)
                .ok()
                .map(|t| t.unix_timestamp())
        })
        .min()
}
