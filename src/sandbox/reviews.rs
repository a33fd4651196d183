//! Requests that create nothing but an answer: SelfSubjectReview (`kubectl auth whoami`),
//! SelfSubjectAccessReview (`kubectl auth can-i`), SelfSubjectRulesReview (`kubectl auth can-i
//! --list`), SubjectAccessReview and TokenReview (the webhook-style reviews an admin or a
//! component asks about someone else), all evaluated by the sandbox's own authenticators and
//! authorizers, and TokenRequest (`serviceaccounts/<name>/token`), which issues a
//! service-account token.

#![allow(clippy::result_large_err)]

use http::StatusCode;
use hyper::Response;
use serde_json::{Value, json};

use super::authn::UserInfo;
use super::http::{
    Body, Cause, Reply, bad_request, invalid, invalid_all, json_response, not_found,
};
use super::rbac::{Attributes, allowed, rules_for};
use super::request::Call;

/// Whether `call` is one of these.
pub fn is_review(call: &Call<'_>) -> bool {
    matches!(
        call.def().plural,
        "selfsubjectreviews"
            | "selfsubjectaccessreviews"
            | "selfsubjectrulesreviews"
            | "tokenreviews"
            | "subjectaccessreviews"
    ) || (call.def().plural == "serviceaccounts" && call.target.subresource == "token")
}

/// Answers a review (or issues a token); `obj` is the decoded request.
pub fn answer(call: &Call<'_>, mut obj: Value) -> Reply {
    obj["metadata"] = json!({"creationTimestamp": Value::Null});
    match call.def().plural {
        "selfsubjectreviews" => {
            obj["status"] = json!({"userInfo": user_info(call.user)});
        }
        "selfsubjectaccessreviews" => {
            one_kind_of_attributes(call, &obj["spec"])?;
            obj["status"] = access_verdict(call, call.user, &obj["spec"]);
        }
        "subjectaccessreviews" => {
            let spec = &obj["spec"];
            one_kind_of_attributes(call, spec)?;
            let groups: Vec<String> = spec["groups"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|g| g.as_str().map(String::from))
                .collect();
            let name = spec["user"].as_str().unwrap_or_default().to_string();
            if name.is_empty() && groups.is_empty() {
                let message =
                    "Invalid value: \"\": at least one of user or group must be specified";
                return Err(invalid_all(
                    call.def(),
                    "",
                    &[Cause::new("spec.user", "FieldValueInvalid", message)],
                ));
            }
            let subject = UserInfo {
                name,
                groups,
                uid: spec["uid"].as_str().unwrap_or_default().to_string(),
                extra: serde_json::from_value(spec["extra"].clone()).unwrap_or_default(),
            };
            obj["status"] = access_verdict(call, &subject, spec);
        }
        "tokenreviews" => {
            let token = obj["spec"]["token"]
                .as_str()
                .unwrap_or_default()
                .to_string();
            let user = {
                let store = call.state.store.lock().expect("store");
                super::authn::review_token(&token, &store, &call.state.token_key)
            };
            obj["status"] = match user {
                Some(u) => {
                    json!({"authenticated": true, "user": user_info(&u), "audiences": [super::authn::ISSUER]})
                }
                None => json!({"user": {}, "error": "[invalid bearer token, token lookup failed]"}),
            };
            // The token asked about is not echoed back.
            obj["spec"] = json!({});
        }
        "selfsubjectrulesreviews" => {
            let ns = obj["spec"]["namespace"]
                .as_str()
                .unwrap_or_default()
                .to_string();
            if ns.is_empty() {
                return Err(bad_request("no namespace on request"));
            }
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

/// A UserInfo as the authentication API writes it (`uid` and `extra` omitted when empty).
fn user_info(user: &UserInfo) -> Value {
    let mut info = json!({"username": user.name, "groups": user.groups});
    if !user.uid.is_empty() {
        info["uid"] = json!(user.uid);
    }
    if !user.extra.is_empty() {
        info["extra"] = json!(user.extra);
    }
    info
}

/// An access review names a resource or a path, not both, not neither
/// (`ValidateSubjectAccessReviewSpec`).
fn one_kind_of_attributes(call: &Call<'_>, spec: &Value) -> Reply<()> {
    if spec["nonResourceAttributes"].is_object() != spec["resourceAttributes"].is_object() {
        return Ok(());
    }
    let why = "exactly one of nonResourceAttributes or resourceAttributes must be specified";
    let message = format!("Invalid value: {}: {why}", spec["nonResourceAttributes"]);
    Err(invalid_all(
        call.def(),
        "",
        &[Cause::new("spec", "FieldValueInvalid", message)],
    ))
}

/// Whether `who` may do what an access review's spec names.
fn access_verdict(call: &Call<'_>, who: &UserInfo, spec: &Value) -> Value {
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
    if allowed(&call.state.store.lock().expect("store"), who, &attrs) {
        json!({"allowed": true, "reason": "allowed by the sandbox's authorizers (RBAC, Node, system:masters)"})
    } else {
        json!({"allowed": false})
    }
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
