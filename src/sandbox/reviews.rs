//! Requests that create nothing but an answer: SelfSubjectReview (`kubectl auth whoami`),
//! SelfSubjectAccessReview (`kubectl auth can-i`), SelfSubjectRulesReview (`kubectl auth can-i
//! --list`), all evaluated by the sandbox's own authorizers, and TokenRequest
//! (`serviceaccounts/<name>/token`), which issues a service-account token.

#![allow(clippy::result_large_err)]

use http::StatusCode;
use hyper::Response;
use serde_json::{Value, json};

use super::http::{Body, Reply, invalid, json_response, not_found};
use super::rbac::{Attributes, allowed, rules_for};
use super::request::Call;

/// Whether `call` is one of these.
pub fn is_review(call: &Call<'_>) -> bool {
    matches!(
        call.def().plural,
        "selfsubjectreviews" | "selfsubjectaccessreviews" | "selfsubjectrulesreviews"
    ) || (call.def().plural == "serviceaccounts" && call.target.subresource == "token")
}

/// Answers a review (or issues a token); `obj` is the decoded request.
pub fn answer(call: &Call<'_>, mut obj: Value) -> Reply {
    obj["metadata"] = json!({"creationTimestamp": Value::Null});
    match call.def().plural {
        "selfsubjectreviews" => {
            let mut info = json!({"username": call.user.name, "groups": call.user.groups});
            if !call.user.uid.is_empty() {
                info["uid"] = json!(call.user.uid);
            }
            obj["status"] = json!({"userInfo": info});
        }
        "selfsubjectaccessreviews" => {
            let spec = &obj["spec"];
            let attrs = if spec["nonResourceAttributes"].is_object() {
                let n = &spec["nonResourceAttributes"];
                Attributes {
                    verb: n["verb"].as_str().unwrap_or_default().into(),
                    path: n["path"].as_str().unwrap_or_default().into(),
                    ..Default::default()
                }
            } else {
                let r = &spec["resourceAttributes"];
                let s = |k: &str| r[k].as_str().unwrap_or_default().to_string();
                Attributes {
                    verb: s("verb"),
                    group: s("group"),
                    resource: s("resource"),
                    subresource: s("subresource"),
                    namespace: s("namespace"),
                    name: s("name"),
                    path: String::new(),
                }
            };
            let ok = allowed(&call.state.store.lock().expect("store"), call.user, &attrs);
            obj["status"] = if ok {
                json!({"allowed": true, "reason": "allowed by the sandbox's authorizers (RBAC, Node, system:masters)"})
            } else {
                json!({"allowed": false})
            };
        }
        "selfsubjectrulesreviews" => {
            let ns = obj["spec"]["namespace"]
                .as_str()
                .unwrap_or_default()
                .to_string();
            let (resource_rules, non_resource_rules, incomplete) =
                rules_for(&call.state.store.lock().expect("store"), call.user, &ns);
            obj["status"] = json!({"resourceRules": resource_rules, "nonResourceRules": non_resource_rules, "incomplete": incomplete});
            if incomplete {
                obj["status"]["evaluationError"] =
                    json!("the Node authorizer does not enumerate its rules");
            }
        }
        _ => return token_request(call, obj),
    }
    Ok(json_response(StatusCode::CREATED, &obj))
}

/// TokenRequest: a token for the service account, for `expirationSeconds` (default 1 h, at least
/// 10 minutes) and the requested audiences (default the API server's).
fn token_request(call: &Call<'_>, mut obj: Value) -> Reply<Response<Body>> {
    let t = call.target;
    let sa = call
        .state
        .store
        .lock()
        .expect("store")
        .get("serviceaccounts", &t.namespace, &t.name);
    let Some(sa) = sa else {
        return Err(not_found(call.def(), &t.name));
    };
    let secs = obj["spec"]["expirationSeconds"].as_i64().unwrap_or(3600);
    if secs < 600 {
        return Err(invalid(
            &super::resources::TOKEN_REQUEST,
            &t.name,
            "spec.expirationSeconds",
            "FieldValueInvalid",
            &format!("Invalid value: {secs}: may not specify a duration less than 10 minutes"),
        ));
    }
    let audiences: Vec<String> = obj["spec"]["audiences"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|s| s.as_str().map(str::to_string))
                .collect()
        })
        .filter(|a: &Vec<String>| !a.is_empty())
        .unwrap_or_else(|| vec!["https://kubernetes.default.svc.cluster.local".into()]);
    let expires = crate::pki::cert::now_unix() + secs;
    let token = super::authn::issue_service_account_token(
        &call.state.token_key,
        &t.namespace,
        &t.name,
        sa["metadata"]["uid"].as_str().unwrap_or_default(),
        &audiences,
        expires,
    );
    obj["apiVersion"] = json!("authentication.k8s.io/v1");
    obj["kind"] = json!("TokenRequest");
    obj["metadata"] =
        json!({"name": t.name, "namespace": t.namespace, "creationTimestamp": Value::Null});
    obj["spec"]["audiences"] = json!(audiences);
    obj["spec"]["expirationSeconds"] = json!(secs);
    obj["status"] =
        json!({"token": token, "expirationTimestamp": crate::pki::cert::fmt_unix(expires)});
    Ok(json_response(StatusCode::CREATED, &obj))
}
