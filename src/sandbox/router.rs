//! One request, in kube-apiserver's filter order: latency injection, authentication,
//! impersonation, counting, fault injection, routing, authorization, the body within its limit,
//! then discovery or the REST verbs. Every path the sandbox serves is routed here and nowhere
//! else.

use std::sync::Arc;
use std::time::Duration;

use http::{Method, Request, Response, StatusCode, header};
use hyper::body::Incoming;
use serde_json::json;

use super::authn::{Authn, UserInfo, authenticate};
use super::http::{
    Body, MAX_REQUEST_BYTES, Query, header_text, json_response, no_such_path, page_not_found,
    query_map, read_body, status, text_response,
};
use super::rbac::{Attributes, allowed, forbidden_message};
use super::request::{Call, Target};
use super::resources::{self, ResourceDef};
use super::state::{State, random_unit};

enum Route {
    NonResource,
    ResourceList {
        group: String,
        version: String,
    },
    Resource(Target),
    /// A resource path the sandbox does not serve; `group_served` tells a Status 404 (an unknown
    /// resource of a served group version) from the mux's plain "404 page not found".
    Unknown {
        group_served: bool,
    },
}

fn route(path: &str) -> Route {
    let segs: Vec<&str> = path
        .trim_matches('/')
        .split('/')
        .filter(|s| !s.is_empty())
        .collect();
    let (group, version, rest): (&str, &str, &[&str]) = match segs.as_slice() {
        ["api", "v1", rest @ ..] => ("", "v1", rest),
        ["apis", g, v, rest @ ..] => (g, v, rest),
        _ => return Route::NonResource,
    };
    let group_served = resources::RESOURCES
        .iter()
        .any(|d| d.group == group && d.version == version);
    let t = |plural: &str, ns: &str, name: &str, sub: &str| -> Route {
        match resources::find(group, version, plural) {
            Some(def) => Route::Resource(Target {
                def,
                namespace: ns.into(),
                name: name.into(),
                subresource: sub.into(),
            }),
            None => Route::Unknown { group_served },
        }
    };
    match rest {
        [] => Route::ResourceList {
            group: group.into(),
            version: version.into(),
        },
        ["namespaces", ns, plural]
            if resources::find(group, version, plural).is_some_and(|d| d.namespaced) =>
        {
            t(plural, ns, "", "")
        }
        ["namespaces", ns, plural, name] => t(plural, ns, name, ""),
        ["namespaces", ns, plural, name, sub] => t(plural, ns, name, sub),
        [plural] => t(plural, "", "", ""),
        [plural, name] => t(plural, "", name, ""),
        [plural, name, sub] => t(plural, "", name, sub),
        _ => Route::Unknown { group_served },
    }
}

fn verb_of(method: &Method, target: &Target, query: &Query) -> &'static str {
    let is_watch = query.get("watch").is_some_and(|w| w == "true" || w == "1");
    match *method {
        Method::GET if target.name.is_empty() && is_watch => "watch",
        Method::GET if target.name.is_empty() => "list",
        Method::GET => "get",
        Method::POST => "create",
        Method::PUT => "update",
        Method::PATCH => "patch",
        Method::DELETE if target.name.is_empty() => "deletecollection",
        Method::DELETE => "delete",
        _ => "unknown",
    }
}

/// Request bodies beyond this are refused (413) for `def`: small objects get small limits, so
/// that a flood of large requests cannot take the sandbox's memory.
fn body_limit(def: &ResourceDef, subresource: &str) -> usize {
    match (def.plural, subresource) {
        (
            "selfsubjectreviews"
            | "selfsubjectaccessreviews"
            | "selfsubjectrulesreviews"
            | "tokenreviews"
            | "subjectaccessreviews",
            _,
        )
        | ("serviceaccounts", "token")
        | ("leases", _) => 64 * 1024,
        _ => MAX_REQUEST_BYTES,
    }
}

fn injected_fault() -> Response<Body> {
    if random_unit() < 0.5 {
        status(
            500,
            "InternalError",
            "Internal error occurred: bootlet sandbox injected fault",
            None,
        )
    } else {
        status(
            429,
            "TooManyRequests",
            "Too many requests, please try again later (bootlet sandbox injected fault)",
            Some(json!({"retryAfterSeconds": 1})),
        )
    }
}

/// Handles one request.
pub async fn handle(
    state: Arc<State>,
    peer: Option<&super::authn::PeerCert>,
    req: Request<Incoming>,
) -> Response<Body> {
    let (lo, hi) = state.options.latency_ms;
    if hi > 0 {
        let ms = lo + ((hi - lo) as f64 * random_unit()) as u64;
        tokio::time::sleep(Duration::from_millis(ms)).await;
    }
    let auth = req
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|h| h.to_str().ok())
        .map(str::to_string);
    let authn = {
        let store = state.store.lock().expect("store");
        let mut cache = state.token_cache.lock().expect("token cache");
        authenticate(peer, auth.as_deref(), &store, &state.token_key, &mut cache)
    };
    let method = req.method().clone();
    let path = req.uri().path().to_string();
    let query = query_map(req.uri().query());
    let route = route(&path);
    let verb = match &route {
        Route::Resource(t) => verb_of(&method, t, &query),
        _ => match method {
            Method::GET => "get",
            Method::POST => "post",
            _ => "unknown",
        },
    };
    let requester = match authn {
        Authn::User(u) => u,
        Authn::Rejected => {
            state.count("unauthenticated", verb);
            return status(401, "Unauthorized", "Unauthorized", None);
        }
    };
    let user = {
        let store = state.store.lock().expect("store");
        super::impersonation::effective_user(&store, requester.clone(), req.headers())
    };
    let user = match user {
        Ok(u) => u,
        Err(r) => {
            state.count(&requester.name, verb);
            return r;
        }
    };
    state.count(&user.name, verb);
    if path.starts_with("/sandbox/") {
        return sandbox_endpoint(&state, &user, &path);
    }
    if state.options.fault_rate > 0.0 && random_unit() < state.options.fault_rate {
        return injected_fault();
    }
    match route {
        Route::NonResource => non_resource(&state, &user, &path, &query),
        Route::Unknown { group_served: true } => no_such_path(),
        Route::Unknown {
            group_served: false,
        } => page_not_found(),
        Route::ResourceList { group, version } => {
            let attrs = Attributes {
                verb: "get".into(),
                path: path.clone(),
                ..Default::default()
            };
            if !authorized(&state, &user, &attrs) {
                return forbidden(&user, &attrs);
            }
            match super::discovery::api_resource_list(&group, &version) {
                Some(doc) => json_response(StatusCode::OK, &doc),
                None => page_not_found(),
            }
        }
        Route::Resource(target) => {
            let attrs = Attributes {
                verb: verb.into(),
                group: target.def.group.into(),
                resource: target.def.plural.into(),
                subresource: target.subresource.clone(),
                namespace: target.namespace.clone(),
                name: request_name(&target.name, verb, &query),
                path: path.clone(),
            };
            if !authorized(&state, &user, &attrs) {
                return forbidden(&user, &attrs);
            }
            let accept = header_text(&req, header::ACCEPT);
            let content_type = header_text(&req, header::CONTENT_TYPE);
            let json_or_proto = content_type.is_empty()
                || content_type.starts_with("application/json")
                || content_type.starts_with(super::protobuf::CONTENT_TYPE);
            if matches!(verb, "create" | "update") && !json_or_proto {
                return status(
                    415,
                    "UnsupportedMediaType",
                    &format!(
                        "the body of the request was in an unknown format - accepted media types include: application/json, application/yaml, application/vnd.kubernetes.protobuf (got {content_type})"
                    ),
                    None,
                );
            }
            let bytes = match read_body(req, body_limit(target.def, &target.subresource)).await {
                Ok(b) => b,
                Err(r) => return r,
            };
            let call = Call {
                state: &state,
                user: &user,
                target: &target,
                query: &query,
            };
            super::rest::serve(
                &call,
                verb,
                &super::rest::Payload {
                    accept: &accept,
                    content_type: &content_type,
                    bytes: &bytes,
                },
            )
        }
    }
}

fn authorized(state: &State, user: &UserInfo, attrs: &Attributes) -> bool {
    allowed(&state.store.lock().expect("store"), user, attrs)
}

fn forbidden(user: &UserInfo, a: &Attributes) -> Response<Body> {
    let mut d = json!({"kind": a.resource});
    if !a.name.is_empty() {
        d["name"] = json!(a.name);
    }
    if !a.group.is_empty() {
        d["group"] = json!(a.group);
    }
    status(
        403,
        "Forbidden",
        &forbidden_message(user, a),
        if a.resource.is_empty() { None } else { Some(d) },
    )
}

fn sandbox_endpoint(state: &State, user: &UserInfo, path: &str) -> Response<Body> {
    if !user.in_group("system:masters") {
        return status(
            403,
            "Forbidden",
            &format!(
                "forbidden: User \"{}\" cannot get path \"{path}\"",
                user.name
            ),
            None,
        );
    }
    match path {
        "/sandbox/v1/requests" => json_response(
            StatusCode::OK,
            &json!(*state.counters.lock().expect("counters")),
        ),
        _ => no_such_path(),
    }
}

fn non_resource(state: &State, user: &UserInfo, path: &str, query: &Query) -> Response<Body> {
    let attrs = Attributes {
        verb: "get".into(),
        path: path.into(),
        ..Default::default()
    };
    if !authorized(state, user, &attrs) {
        return forbidden(user, &attrs);
    }
    let segs: Vec<&str> = path
        .trim_matches('/')
        .split('/')
        .filter(|s| !s.is_empty())
        .collect();
    let addr = state.url.trim_start_matches("https://").to_string();
    use super::discovery as d;
    let doc = match segs.as_slice() {
        ["version"] => Some(d::version()),
        ["api"] => Some(d::api_versions(&addr)),
        ["apis"] => Some(d::api_group_list()),
        ["apis", g] => d::api_group(g),
        ["openapi", "v3"] => Some(d::openapi_v3_root()),
        ["openapi", "v3", rest @ ..] => d::openapi_v3_group_version(&rest.join("/")),
        [check @ ("healthz" | "livez" | "readyz")] => return health(check, query),
        _ => None,
    };
    match doc {
        Some(doc) => json_response(StatusCode::OK, &doc),
        None => page_not_found(),
    }
}

/// A health endpoint: `ok`, or with `?verbose` each check and the verdict, in the API server's
/// words (`k8s.io/apiserver/pkg/server/healthz`). The sandbox's checks are its own: it answers
/// (ping), it logs (log), its store takes requests (store).
fn health(check: &str, query: &Query) -> Response<Body> {
    if !query.contains_key("verbose") {
        return text_response(StatusCode::OK, "ok");
    }
    let listed: String = ["ping", "log", "store"]
        .iter()
        .map(|c| format!("[+]{c} ok\n"))
        .collect();
    text_response(StatusCode::OK, &format!("{listed}{check} check passed\n"))
}

/// The name authorization sees (`requestinfo.go`): the path's, or for a list or watch the name a
/// `metadata.name` field selector requires.
fn request_name(
    path_name: &str,
    verb: &str,
    query: &std::collections::BTreeMap<String, String>,
) -> String {
    if !path_name.is_empty() || !matches!(verb, "list" | "watch") {
        return path_name.to_string();
    }
    query
        .get("fieldSelector")
        .and_then(|sel| {
            sel.split(',').find_map(|req| {
                let req = req.trim();
                req.strip_prefix("metadata.name==")
                    .or_else(|| req.strip_prefix("metadata.name="))
                    .map(str::to_string)
            })
        })
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routes() {
        assert!(
            matches!(route("/api/v1/namespaces/kube-system/secrets"), Route::Resource(Target { ref namespace, ref name, .. }) if namespace == "kube-system" && name.is_empty())
        );
        assert!(
            matches!(route("/api/v1/namespaces/kube-system"), Route::Resource(Target { def, ref name, .. }) if def.plural == "namespaces" && name == "kube-system")
        );
        assert!(
            matches!(route("/apis/certificates.k8s.io/v1/certificatesigningrequests/x/approval"), Route::Resource(Target { ref subresource, .. }) if subresource == "approval")
        );
        assert!(
            matches!(route("/api/v1/namespaces/default/serviceaccounts/default/token"), Route::Resource(Target { ref subresource, .. }) if subresource == "token")
        );
        assert!(matches!(
            route("/apis/certificates.k8s.io/v1"),
            Route::ResourceList { .. }
        ));
        assert!(matches!(route("/version"), Route::NonResource));
    }
}
