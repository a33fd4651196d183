//! Request handling: authenticate, count, inject faults, authorize, then serve discovery or a
//! resource verb with the API server's validation and `metav1.Status` errors.

// The error side of these helpers is the HTTP response itself; boxing it buys nothing.
#![allow(clippy::result_large_err)]

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{Method, Request, Response, StatusCode, header};
use http_body_util::{BodyExt, Full, StreamBody};
use hyper::body::{Frame, Incoming};
use serde_json::{Value, json};

use super::authn::{Authn, UserInfo, authenticate};
use super::rbac::{Attributes, allowed, forbidden_message};
use super::resources::{self, ResourceDef};
use super::server::{Body, State, random_unit};
use super::store::{Event, StoreError, timestamp};
use crate::pki::cert::CertInfo;

const MAX_BODY: usize = 3 * 1024 * 1024;

fn full(bytes: Vec<u8>) -> Body {
    Full::new(Bytes::from(bytes))
        .map_err(|never| match never {})
        .boxed()
}

/// A JSON response.
pub fn json_response(code: StatusCode, v: &Value) -> Response<Body> {
    Response::builder()
        .status(code)
        .header(header::CONTENT_TYPE, "application/json")
        .body(full(serde_json::to_vec(v).unwrap_or_default()))
        .expect("response")
}

/// A `metav1.Status` failure.
pub fn status(code: u16, reason: &str, message: &str, details: Option<Value>) -> Response<Body> {
    let mut v = json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure", "message": message, "reason": reason, "code": code});
    if let Some(d) = details {
        v["details"] = d;
    }
    let mut r = json_response(
        StatusCode::from_u16(code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR),
        &v,
    );
    if code == 429 {
        r.headers_mut()
            .insert(header::RETRY_AFTER, http::HeaderValue::from_static("1"));
    }
    r
}

fn not_found(def: &ResourceDef, name: &str) -> Response<Body> {
    status(
        404,
        "NotFound",
        &format!("{} \"{name}\" not found", def.qualified()),
        Some(details(def, name)),
    )
}

fn details(def: &ResourceDef, name: &str) -> Value {
    let mut d = json!({"name": name, "kind": def.plural});
    if !def.group.is_empty() {
        d["group"] = json!(def.group);
    }
    d
}

/// 422 Invalid with one cause, in the API server's shape.
fn invalid(
    def: &ResourceDef,
    name: &str,
    field: &str,
    reason: &str,
    message: &str,
) -> Response<Body> {
    let kind = if def.group.is_empty() {
        def.kind.to_string()
    } else {
        format!("{}.{}", def.kind, def.group)
    };
    let mut d = json!({"name": name, "kind": def.kind, "causes": [{"reason": reason, "message": message, "field": field}]});
    if !def.group.is_empty() {
        d["group"] = json!(def.group);
    }
    status(
        422,
        "Invalid",
        &format!("{kind} \"{name}\" is invalid: {field}: {message}"),
        Some(d),
    )
}

fn store_error(def: &ResourceDef, name: &str, e: StoreError) -> Response<Body> {
    match e {
        StoreError::NotFound => not_found(def, name),
        StoreError::AlreadyExists => status(
            409,
            "AlreadyExists",
            &format!("{} \"{name}\" already exists", def.qualified()),
            Some(details(def, name)),
        ),
        StoreError::Conflict => status(
            409,
            "Conflict",
            &format!(
                "Operation cannot be fulfilled on {} \"{name}\": the object has been modified; please apply your changes to the latest version and try again",
                def.qualified()
            ),
            Some(details(def, name)),
        ),
    }
}

fn query_map(query: Option<&str>) -> BTreeMap<String, String> {
    let mut m = BTreeMap::new();
    for pair in query
        .unwrap_or_default()
        .split('&')
        .filter(|s| !s.is_empty())
    {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        m.insert(percent_decode(k), percent_decode(v));
    }
    m
}

fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'%' if i + 2 < bytes.len() => {
                match u8::from_str_radix(
                    std::str::from_utf8(&bytes[i + 1..i + 3]).unwrap_or("zz"),
                    16,
                ) {
                    Ok(b) => {
                        out.push(b);
                        i += 3;
                        continue;
                    }
                    Err(_) => out.push(b'%'),
                }
            }
            b'+' => out.push(b' '),
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Where a resource request points.
#[derive(Debug)]
struct Target {
    def: &'static ResourceDef,
    namespace: String,
    name: String,
    subresource: String,
}

enum Route {
    NonResource,
    ResourceList { group: String, version: String },
    Resource(Target),
    Unknown,
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
    let t = |plural: &str, ns: &str, name: &str, sub: &str| -> Route {
        match resources::find(group, version, plural) {
            Some(def) => Route::Resource(Target {
                def,
                namespace: ns.into(),
                name: name.into(),
                subresource: sub.into(),
            }),
            None => Route::Unknown,
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
        _ => Route::Unknown,
    }
}

fn verb_of(method: &Method, target: &Target, query: &BTreeMap<String, String>) -> &'static str {
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

/// Handles one request.
pub async fn handle(
    state: Arc<State>,
    peer: Option<&CertInfo>,
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
    let user = {
        let store = state.store.lock().expect("store");
        authenticate(peer, auth.as_deref(), &store)
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
    let user = match user {
        Authn::User(u) => u,
        Authn::Rejected => {
            state.count("unauthenticated", verb);
            return status(401, "Unauthorized", "Unauthorized", None);
        }
    };
    state.count(&user.name, verb);
    if path.starts_with("/sandbox/") {
        return sandbox_endpoint(&state, &user, &path);
    }
    if state.options.fault_rate > 0.0 && random_unit() < state.options.fault_rate {
        return if random_unit() < 0.5 {
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
        };
    }
    match route {
        Route::NonResource => non_resource(&state, &user, &path),
        Route::Unknown => status(
            404,
            "NotFound",
            "the server could not find the requested resource",
            Some(json!({})),
        ),
        Route::ResourceList { group, version } => {
            let attrs = Attributes {
                verb: "get".into(),
                path: path.clone(),
                ..Default::default()
            };
            if !authorized(&state, &user, &attrs) {
                return forbidden(&user, &attrs);
            }
            match resources::api_resource_list(&group, &version) {
                Some(doc) => json_response(StatusCode::OK, &doc),
                None => status(
                    404,
                    "NotFound",
                    "the server could not find the requested resource",
                    Some(json!({})),
                ),
            }
        }
        Route::Resource(target) => {
            let attrs = Attributes {
                verb: verb.into(),
                group: target.def.group.into(),
                resource: target.def.plural.into(),
                subresource: target.subresource.clone(),
                namespace: target.namespace.clone(),
                name: target.name.clone(),
                path: path.clone(),
            };
            if !authorized(&state, &user, &attrs) {
                return forbidden(&user, &attrs);
            }
            let accept = req
                .headers()
                .get(header::ACCEPT)
                .and_then(|h| h.to_str().ok())
                .unwrap_or_default()
                .to_string();
            let content_type = req
                .headers()
                .get(header::CONTENT_TYPE)
                .and_then(|h| h.to_str().ok())
                .unwrap_or_default()
                .to_string();
            let json_or_proto = content_type.is_empty()
                || content_type.starts_with("application/json")
                || content_type.starts_with(super::protobuf::CONTENT_TYPE);
            if matches!(verb, "create" | "update") && !json_or_proto {
                return status(
                    415,
                    "UnsupportedMediaType",
                    &format!(
                        "the body of the request was in an unknown format - accepted media types include: application/json, application/vnd.kubernetes.protobuf (got {content_type})"
                    ),
                    None,
                );
            }
            let body = match read_body(req).await {
                Ok(b) => b,
                Err(r) => return r,
            };
            resource(
                &state,
                &user,
                verb,
                &target,
                &query,
                &accept,
                &content_type,
                &body,
            )
            .await
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

async fn read_body(req: Request<Incoming>) -> Result<Vec<u8>, Response<Body>> {
    let collected = http_body_util::Limited::new(req.into_body(), MAX_BODY)
        .collect()
        .await;
    match collected {
        Ok(c) => Ok(c.to_bytes().to_vec()),
        Err(_) => Err(status(
            413,
            "RequestEntityTooLarge",
            "the request body is too large or could not be read",
            None,
        )),
    }
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
        _ => status(
            404,
            "NotFound",
            "the server could not find the requested resource",
            None,
        ),
    }
}

fn non_resource(state: &State, user: &UserInfo, path: &str) -> Response<Body> {
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
    let doc = match segs.as_slice() {
        ["version"] => Some(resources::version()),
        ["api"] => Some(resources::api_versions(&addr)),
        ["apis"] => Some(resources::api_group_list()),
        ["apis", g] => resources::api_group(g),
        ["openapi", "v3"] => Some(resources::openapi_v3_root()),
        ["openapi", "v3", rest @ ..] => resources::openapi_v3_group_version(&rest.join("/")),
        ["healthz"] | ["livez"] | ["readyz"] => {
            return Response::builder()
                .status(200)
                .header(header::CONTENT_TYPE, "text/plain")
                .body(full(b"ok".to_vec()))
                .expect("response");
        }
        _ => None,
    };
    match doc {
        Some(d) => json_response(StatusCode::OK, &d),
        None => status(
            404,
            "NotFound",
            "the server could not find the requested resource",
            Some(json!({})),
        ),
    }
}

#[allow(clippy::too_many_arguments)]
async fn resource(
    state: &Arc<State>,
    user: &UserInfo,
    verb: &str,
    t: &Target,
    query: &BTreeMap<String, String>,
    accept: &str,
    content_type: &str,
    body: &[u8],
) -> Response<Body> {
    if !t.subresource.is_empty() && !t.def.subresources.contains(&t.subresource.as_str()) {
        return status(
            404,
            "NotFound",
            "the server could not find the requested resource",
            Some(json!({})),
        );
    }
    let subresource_update = verb == "update" && !t.subresource.is_empty();
    if !subresource_update && !t.def.verbs.contains(&verb) {
        return status(
            405,
            "MethodNotAllowed",
            &format!("the server does not allow this method on the requested resource ({verb})"),
            Some(json!({})),
        );
    }
    if t.def.namespaced && !t.namespace.is_empty() && t.def.plural != "namespaces" {
        let exists = state
            .store
            .lock()
            .expect("store")
            .get("namespaces", "", &t.namespace)
            .is_some();
        if !exists && verb == "create" {
            return status(
                404,
                "NotFound",
                &format!("namespaces \"{}\" not found", t.namespace),
                Some(json!({"name": t.namespace, "kind": "namespaces"})),
            );
        }
    }
    let table = accept.contains("as=Table");
    match verb {
        "get" => {
            let mut obj =
                state
                    .store
                    .lock()
                    .expect("store")
                    .get(t.def.plural, &t.namespace, &t.name);
            if state.options.tamper_cluster_info
                && t.def.plural == "configmaps"
                && t.name == "cluster-info"
                && let Some(o) = obj.as_mut()
                && let Some(k) = o["data"]["kubeconfig"].as_str()
            {
                o["data"]["kubeconfig"] =
                    json!(k.replace("server: https://127.0.0.1", "server: https://127.0.0.2"));
            }
            match obj {
                Some(o) if table => json_response(
                    StatusCode::OK,
                    &resources::table(
                        t.def,
                        &[o],
                        state.store.lock().expect("store").resource_version(),
                    ),
                ),
                Some(o) => json_response(StatusCode::OK, &o),
                None => not_found(t.def, &t.name),
            }
        }
        "list" => {
            let (items, rv) = {
                let s = state.store.lock().expect("store");
                (s.list(t.def.plural, &t.namespace), s.resource_version())
            };
            let items: Vec<Value> = items
                .into_iter()
                .filter(|o| field_selector_matches(query, o))
                .collect();
            if table {
                return json_response(StatusCode::OK, &resources::table(t.def, &items, rv));
            }
            json_response(
                StatusCode::OK,
                &json!({"kind": format!("{}List", t.def.kind), "apiVersion": t.def.api_version(), "metadata": {"resourceVersion": rv.to_string()}, "items": items}),
            )
        }
        "watch" => watch(state.clone(), t, query),
        "create" => create(state, user, t, body, content_type),
        "update" => update(state, user, t, body, content_type),
        "patch" => patch(state, user, t, content_type, body),
        "delete" => {
            if t.def.plural == "namespaces"
                && ["default", "kube-system", "kube-public"].contains(&t.name.as_str())
            {
                return status(
                    403,
                    "Forbidden",
                    &format!(
                        "namespaces \"{}\" is forbidden: this namespace may not be deleted",
                        t.name
                    ),
                    None,
                );
            }
            let r = state.store.lock().expect("store").delete(
                t.def.plural,
                &t.namespace,
                &t.name,
                None,
            );
            match r {
                Ok(o) => json_response(StatusCode::OK, &o),
                Err(e) => store_error(t.def, &t.name, e),
            }
        }
        _ => status(
            405,
            "MethodNotAllowed",
            "the server does not allow this method on the requested resource",
            Some(json!({})),
        ),
    }
}

fn field_selector_matches(query: &BTreeMap<String, String>, obj: &Value) -> bool {
    let Some(sel) = query.get("fieldSelector") else {
        return true;
    };
    sel.split(',').filter(|s| !s.is_empty()).all(|term| {
        let (neg, (k, v)) = match term.split_once("!=") {
            Some(kv) => (true, kv),
            None => (
                false,
                term.split_once("==")
                    .or_else(|| term.split_once('='))
                    .unwrap_or((term, "")),
            ),
        };
        let actual = match k {
            "metadata.name" => obj["metadata"]["name"].as_str().unwrap_or_default(),
            "metadata.namespace" => obj["metadata"]["namespace"].as_str().unwrap_or_default(),
            "spec.signerName" => obj["spec"]["signerName"].as_str().unwrap_or_default(),
            "type" => obj["type"].as_str().unwrap_or_default(),
            _ => return false,
        };
        (actual == v) != neg
    })
}

fn parse_object(t: &Target, body: &[u8], content_type: &str) -> Result<Value, Response<Body>> {
    let v: Value = if content_type.starts_with(super::protobuf::CONTENT_TYPE) {
        super::protobuf::decode(body).map_err(|e| {
            status(
                400,
                "BadRequest",
                &format!("the protobuf object could not be decoded: {e}"),
                None,
            )
        })?
    } else {
        serde_json::from_slice(body).map_err(|e| {
            status(
                400,
                "BadRequest",
                &format!("the object provided is not valid JSON: {e}"),
                None,
            )
        })?
    };
    if !v.is_object() {
        return Err(status(
            400,
            "BadRequest",
            "the object provided is not a JSON object",
            None,
        ));
    }
    if let Some(kind) = v["kind"].as_str()
        && kind != t.def.kind
    {
        return Err(status(
            400,
            "BadRequest",
            &format!(
                "the API version in the data does not match the expected kind {} (got {kind})",
                t.def.kind
            ),
            None,
        ));
    }
    Ok(v)
}

fn valid_dns_subdomain(name: &str) -> bool {
    crate::engine::runner::validate_node_name(name).is_ok()
}

/// RBAC objects may be named anything that is a path segment (they contain `:`), and so may CSRs
/// ("We don't care what you call your certificate requests.", `ValidateCertificateRequestName`);
/// others must be DNS-1123 subdomains.
fn name_ok(def: &ResourceDef, name: &str) -> bool {
    if def.group == "rbac.authorization.k8s.io" || def.plural == "certificatesigningrequests" {
        return !name.is_empty()
            && !name.contains('/')
            && !name.contains('%')
            && name != "."
            && name != "..";
    }
    valid_dns_subdomain(name)
}

fn create(
    state: &Arc<State>,
    user: &UserInfo,
    t: &Target,
    body: &[u8],
    content_type: &str,
) -> Response<Body> {
    let mut obj = match parse_object(t, body, content_type) {
        Ok(o) => o,
        Err(r) => return r,
    };
    if t.def.plural == "selfsubjectreviews" {
        let review = json!({"kind": "SelfSubjectReview", "apiVersion": "authentication.k8s.io/v1", "metadata": {"creationTimestamp": Value::Null},
            "status": {"userInfo": {"username": user.name, "groups": user.groups}}});
        return json_response(StatusCode::CREATED, &review);
    }
    if !obj["metadata"].is_object() {
        obj["metadata"] = json!({});
    }
    let mut name = obj["metadata"]["name"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    if name.is_empty()
        && let Some(prefix) = obj["metadata"]["generateName"].as_str()
    {
        name = format!("{prefix}{}", random_suffix());
        obj["metadata"]["name"] = json!(name);
    }
    if name.is_empty() {
        return invalid(
            t.def,
            "",
            "metadata.name",
            "FieldValueRequired",
            "Required value: name or generateName is required",
        );
    }
    if !name_ok(t.def, &name) {
        return invalid(
            t.def,
            &name,
            "metadata.name",
            "FieldValueInvalid",
            &format!(
                "Invalid value: \"{name}\": a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', and must start and end with an alphanumeric character"
            ),
        );
    }
    if t.def.namespaced
        && let Some(ns) = obj["metadata"]["namespace"].as_str()
        && ns != t.namespace
    {
        return status(
            400,
            "BadRequest",
            "the namespace of the provided object does not match the namespace sent on the request",
            None,
        );
    }
    obj["apiVersion"] = json!(t.def.api_version());
    obj["kind"] = json!(t.def.kind);
    match t.def.plural {
        "certificatesigningrequests" => {
            if let Err(r) = admit_csr(t.def, &name, &mut obj, user) {
                return r;
            }
        }
        "secrets" => {
            if let Err(r) = normalize_secret(t.def, &name, &mut obj) {
                return r;
            }
        }
        "namespaces" => {
            obj["status"] = json!({"phase": "Active"});
        }
        _ => {}
    }
    let r = state
        .store
        .lock()
        .expect("store")
        .create(t.def.plural, &t.namespace, obj);
    match r {
        Ok(o) => json_response(StatusCode::CREATED, &o),
        Err(e) => store_error(t.def, &name, e),
    }
}

fn random_suffix() -> String {
    const ALPHA: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";
    (0..5)
        .map(|_| ALPHA[(random_unit() * ALPHA.len() as f64) as usize % ALPHA.len()] as char)
        .collect()
}

/// `stringData` folds into `data` (base64), as the API server does; values must be valid base64.
fn normalize_secret(def: &ResourceDef, name: &str, obj: &mut Value) -> Result<(), Response<Body>> {
    use base64::Engine;
    let b64 = base64::engine::general_purpose::STANDARD;
    if let Some(sd) = obj.get("stringData").and_then(|v| v.as_object()).cloned() {
        let data = obj["data"].as_object().cloned().unwrap_or_default();
        let mut data = data;
        for (k, v) in sd {
            data.insert(k, json!(b64.encode(v.as_str().unwrap_or_default())));
        }
        obj["data"] = Value::Object(data);
        obj.as_object_mut().expect("object").remove("stringData");
    }
    if let Some(data) = obj["data"].as_object() {
        for (k, v) in data {
            if v.as_str().is_none_or(|s| b64.decode(s).is_err()) {
                return Err(invalid(
                    def,
                    name,
                    &format!("data[{k}]"),
                    "FieldValueInvalid",
                    "Invalid value: not valid base64",
                ));
            }
        }
    }
    if obj["type"].is_null() {
        obj["type"] = json!("Opaque");
    }
    Ok(())
}

const KNOWN_USAGES: &[&str] = &[
    "signing",
    "digital signature",
    "content commitment",
    "key encipherment",
    "key agreement",
    "data encipherment",
    "cert sign",
    "crl sign",
    "encipher only",
    "decipher only",
    "any",
    "server auth",
    "client auth",
    "code signing",
    "email protection",
    "s/mime",
    "ipsec end system",
    "ipsec tunnel",
    "ipsec user",
    "timestamping",
    "ocsp signing",
    "microsoft sgc",
    "netscape sgc",
];

/// CSR create validation (`ValidateCertificateSigningRequestCreate`) and the requester identity
/// the API server stamps into the spec.
fn admit_csr(
    def: &ResourceDef,
    name: &str,
    obj: &mut Value,
    user: &UserInfo,
) -> Result<(), Response<Body>> {
    use base64::Engine;
    let request_b64 = obj["spec"]["request"].as_str().unwrap_or_default();
    let request = base64::engine::general_purpose::STANDARD
        .decode(request_b64)
        .unwrap_or_default();
    if let Err(e) = crate::pki::csr::parse_pem(&request) {
        return Err(invalid(
            def,
            name,
            "spec.request",
            "FieldValueInvalid",
            &format!("Invalid value: []byte{{...}}: {}", e.message()),
        ));
    }
    let signer = obj["spec"]["signerName"].as_str().unwrap_or_default();
    if signer.is_empty() {
        return Err(invalid(
            def,
            name,
            "spec.signerName",
            "FieldValueRequired",
            "Required value",
        ));
    }
    if !signer.contains('/') {
        return Err(invalid(
            def,
            name,
            "spec.signerName",
            "FieldValueInvalid",
            &format!(
                "Invalid value: \"{signer}\": must be a fully qualified domain and path of the form 'example.com/signer-name'"
            ),
        ));
    }
    let usages: Vec<String> = obj["spec"]["usages"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|u| u.as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default();
    if usages.is_empty() {
        return Err(invalid(
            def,
            name,
            "spec.usages",
            "FieldValueRequired",
            "Required value",
        ));
    }
    for (i, u) in usages.iter().enumerate() {
        if !KNOWN_USAGES.contains(&u.as_str()) {
            return Err(invalid(
                def,
                name,
                &format!("spec.usages[{i}]"),
                "FieldValueNotSupported",
                &format!("Unsupported value: \"{u}\""),
            ));
        }
    }
    if let Some(secs) = obj["spec"]["expirationSeconds"].as_i64()
        && secs < 600
    {
        return Err(invalid(
            def,
            name,
            "spec.expirationSeconds",
            "FieldValueInvalid",
            &format!(
                "Invalid value: {secs}: may not specify a duration less than 600 seconds (10 minutes)"
            ),
        ));
    }
    obj["spec"]["username"] = json!(user.name);
    obj["spec"]["groups"] = json!(user.groups);
    // uid and extra are omitempty in the API: these authenticators set neither.
    let spec = obj["spec"].as_object_mut().expect("spec object");
    spec.remove("extra");
    if user.uid.is_empty() {
        spec.remove("uid");
    } else {
        spec.insert("uid".into(), json!(user.uid));
    }
    obj["status"] = json!({});
    Ok(())
}

fn update(
    state: &Arc<State>,
    user: &UserInfo,
    t: &Target,
    body: &[u8],
    content_type: &str,
) -> Response<Body> {
    let obj = match parse_object(t, body, content_type) {
        Ok(o) => o,
        Err(r) => return r,
    };
    if obj["metadata"]["name"]
        .as_str()
        .is_some_and(|n| n != t.name)
    {
        return status(
            400,
            "BadRequest",
            "the name of the object does not match the name on the URL",
            None,
        );
    }
    apply_update(state, user, t, obj, false)
}

/// Stores `new` as the next version of the target, keeping what this (sub)resource may not change.
fn apply_update(
    state: &Arc<State>,
    user: &UserInfo,
    t: &Target,
    mut new: Value,
    is_patch: bool,
) -> Response<Body> {
    let old = state
        .store
        .lock()
        .expect("store")
        .get(t.def.plural, &t.namespace, &t.name);
    let Some(old) = old else {
        return not_found(t.def, &t.name);
    };
    if !new["metadata"].is_object() {
        new["metadata"] = json!({});
    }
    new["apiVersion"] = json!(t.def.api_version());
    new["kind"] = json!(t.def.kind);
    if is_patch {
        new["metadata"]["resourceVersion"] = old["metadata"]["resourceVersion"].clone();
    }
    let merged = match (t.def.plural, t.subresource.as_str()) {
        ("certificatesigningrequests", "approval") => match approval(state, user, t, &old, &new) {
            Ok(v) => v,
            Err(r) => return r,
        },
        ("certificatesigningrequests", "status") => {
            let mut v = old.clone();
            v["status"] = new["status"].clone();
            v["metadata"]["resourceVersion"] = new["metadata"]["resourceVersion"].clone();
            v
        }
        ("certificatesigningrequests", "") => {
            // spec is immutable and status has its own subresources.
            let mut v = new.clone();
            v["spec"] = old["spec"].clone();
            v["status"] = old["status"].clone();
            v
        }
        ("secrets", _) => {
            let mut v = new.clone();
            if let Err(r) = normalize_secret(t.def, &t.name, &mut v) {
                return r;
            }
            if v["type"] != old["type"] {
                return invalid(
                    t.def,
                    &t.name,
                    "type",
                    "FieldValueInvalid",
                    &format!("Invalid value: {}: field is immutable", v["type"]),
                );
            }
            v
        }
        _ => new,
    };
    let r = state
        .store
        .lock()
        .expect("store")
        .update(t.def.plural, &t.namespace, &t.name, merged);
    match r {
        Ok(o) => json_response(StatusCode::OK, &o),
        Err(e) => store_error(t.def, &t.name, e),
    }
}

/// `/approval`: only Approved/Denied conditions change; none may be removed; the two exclude each
/// other; and the caller must be allowed to `approve` the CSR's signer.
fn approval(
    state: &State,
    user: &UserInfo,
    t: &Target,
    old: &Value,
    new: &Value,
) -> Result<Value, Response<Body>> {
    let signer = old["spec"]["signerName"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    let domain_wildcard = format!("{}/*", signer.split('/').next().unwrap_or_default());
    let may_approve = [signer.clone(), domain_wildcard].iter().any(|n| {
        let a = Attributes {
            verb: "approve".into(),
            group: "certificates.k8s.io".into(),
            resource: "signers".into(),
            name: n.clone(),
            ..Default::default()
        };
        authorized(state, user, &a)
    });
    if !may_approve {
        return Err(status(
            403,
            "Forbidden",
            &format!(
                "certificatesigningrequests.certificates.k8s.io \"{}\" is forbidden: user not permitted to approve requests with signerName \"{signer}\"",
                t.name
            ),
            Some(
                json!({"name": t.name, "group": "certificates.k8s.io", "kind": "certificatesigningrequests"}),
            ),
        ));
    }
    let old_conds = old["status"]["conditions"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    let mut new_conds = new["status"]["conditions"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    for c in &old_conds {
        let ty = c["type"].as_str().unwrap_or_default();
        if (ty == "Approved" || ty == "Denied") && !new_conds.iter().any(|n| n["type"] == ty) {
            return Err(invalid(
                t.def,
                &t.name,
                "status.conditions",
                "FieldValueForbidden",
                &format!("Forbidden: updates may not remove a condition of type \"{ty}\""),
            ));
        }
    }
    let now = timestamp();
    for c in new_conds.iter_mut() {
        let st = c["status"].as_str().unwrap_or_default();
        if st.is_empty() {
            c["status"] = json!("True");
        } else if !["True", "False", "Unknown"].contains(&st) {
            return Err(invalid(
                t.def,
                &t.name,
                "status.conditions",
                "FieldValueNotSupported",
                &format!("Unsupported value: \"{st}\""),
            ));
        }
        if c["lastUpdateTime"].is_null() {
            c["lastUpdateTime"] = json!(now);
        }
        if c["lastTransitionTime"].is_null() {
            c["lastTransitionTime"] = json!(now);
        }
    }
    let is_true = |ty: &str| {
        new_conds
            .iter()
            .any(|c| c["type"] == ty && c["status"] == "True")
    };
    if is_true("Approved") && is_true("Denied") {
        return Err(invalid(
            t.def,
            &t.name,
            "status.conditions",
            "FieldValueInvalid",
            "Invalid value: \"Denied\": Approved and Denied conditions are mutually exclusive",
        ));
    }
    // Other condition types (Failed) are not this subresource's to change.
    let mut conds: Vec<Value> = old_conds
        .into_iter()
        .filter(|c| c["type"] != "Approved" && c["type"] != "Denied")
        .collect();
    conds.extend(
        new_conds
            .into_iter()
            .filter(|c| c["type"] == "Approved" || c["type"] == "Denied"),
    );
    let mut v = old.clone();
    v["status"]["conditions"] = json!(conds);
    v["metadata"]["resourceVersion"] = new["metadata"]["resourceVersion"].clone();
    Ok(v)
}

fn patch(
    state: &Arc<State>,
    user: &UserInfo,
    t: &Target,
    content_type: &str,
    body: &[u8],
) -> Response<Body> {
    let kind = content_type.split(';').next().unwrap_or_default().trim();
    if !matches!(
        kind,
        "application/merge-patch+json" | "application/strategic-merge-patch+json"
    ) {
        return status(
            415,
            "UnsupportedMediaType",
            &format!(
                "the body of the request was in an unknown format - accepted media types include: application/merge-patch+json, application/strategic-merge-patch+json (got {kind})"
            ),
            None,
        );
    }
    let patch: Value = match serde_json::from_slice(body) {
        Ok(p) => p,
        Err(e) => {
            return status(
                400,
                "BadRequest",
                &format!("the patch is not valid JSON: {e}"),
                None,
            );
        }
    };
    let old = state
        .store
        .lock()
        .expect("store")
        .get(t.def.plural, &t.namespace, &t.name);
    let Some(mut doc) = old else {
        return not_found(t.def, &t.name);
    };
    merge_patch(&mut doc, &patch);
    apply_update(state, user, t, doc, true)
}

/// RFC 7386 JSON merge patch (strategic merge patches of the objects served here reduce to it:
/// none has a list with a merge key that bootlet or kubectl patches).
pub fn merge_patch(target: &mut Value, patch: &Value) {
    match patch {
        Value::Object(p) => {
            if !target.is_object() {
                *target = json!({});
            }
            let t = target.as_object_mut().expect("object");
            for (k, v) in p {
                if v.is_null() {
                    t.remove(k);
                } else {
                    merge_patch(t.entry(k.clone()).or_insert(Value::Null), v);
                }
            }
        }
        other => *target = other.clone(),
    }
}

fn event_line(kind: &str, object: &Value) -> Bytes {
    let mut line = serde_json::to_vec(&json!({"type": kind, "object": object})).unwrap_or_default();
    line.push(b'\n');
    Bytes::from(line)
}

fn event_matches(ev: &Event, t: &Target, query: &BTreeMap<String, String>) -> bool {
    ev.resource == t.def.plural
        && (t.namespace.is_empty() || ev.namespace == t.namespace)
        && field_selector_matches(query, &ev.object)
}

/// A watch: synthetic ADDED events for the current state when no resourceVersion (or "0") is
/// given, else every change after it (410 Gone when it is older than the history); bookmarks when
/// asked for; ends at `timeoutSeconds`, at shutdown, or abruptly when watch drops are injected.
fn watch(state: Arc<State>, t: &Target, query: &BTreeMap<String, String>) -> Response<Body> {
    let (tx, rx) = tokio::sync::mpsc::channel::<Result<Frame<Bytes>, std::io::Error>>(256);
    let t = Target {
        def: t.def,
        namespace: t.namespace.clone(),
        name: t.name.clone(),
        subresource: String::new(),
    };
    let query = query.clone();
    let from = query.get("resourceVersion").cloned().unwrap_or_default();
    let bookmarks = query
        .get("allowWatchBookmarks")
        .is_some_and(|v| v == "true" || v == "1");
    let timeout = query
        .get("timeoutSeconds")
        .and_then(|s| s.parse::<u64>().ok())
        .map(Duration::from_secs)
        .unwrap_or(Duration::from_secs(1800));
    let (initial, mut rx_events, mut last_rv) = {
        let store = state.store.lock().expect("store");
        let current = store.resource_version();
        let initial: Result<Vec<Bytes>, Bytes> = if from.is_empty() || from == "0" {
            Ok(store
                .list(t.def.plural, &t.namespace)
                .into_iter()
                .filter(|o| field_selector_matches(&query, o))
                .map(|o| event_line("ADDED", &o))
                .collect())
        } else {
            match from
                .parse::<u64>()
                .ok()
                .and_then(|rv| store.events_since(rv, t.def.plural))
            {
                Some(evs) => Ok(evs
                    .iter()
                    .filter(|e| event_matches(e, &t, &query))
                    .map(|e| event_line(e.kind, &e.object))
                    .collect()),
                None => Err(event_line(
                    "ERROR",
                    &json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure", "message": format!("too old resource version: {from} ({current})"), "reason": "Expired", "code": 410}),
                )),
            }
        };
        (initial, store.subscribe(), current)
    };
    let mut shutdown = state.shutdown.clone();
    let drop_after = state.options.drop_watch_after;
    let bookmark_every = state.options.bookmark_interval;
    let def = t.def;
    tokio::spawn(async move {
        let lines = match initial {
            Ok(lines) => lines,
            Err(gone) => {
                let _ = tx.send(Ok(Frame::data(gone))).await;
                return;
            }
        };
        for l in lines {
            if tx.send(Ok(Frame::data(l))).await.is_err() {
                return;
            }
        }
        let end = tokio::time::Instant::now() + timeout;
        let dropped_at = drop_after.map(|d| tokio::time::Instant::now() + d);
        let mut bookmark = tokio::time::interval(bookmark_every);
        bookmark.tick().await;
        loop {
            tokio::select! {
                _ = tokio::time::sleep_until(end) => return,
                _ = async { match dropped_at { Some(at) => tokio::time::sleep_until(at).await, None => std::future::pending().await } } => {
                    let _ = tx.send(Err(std::io::Error::new(std::io::ErrorKind::ConnectionReset, "bootlet sandbox dropped the watch"))).await;
                    return;
                }
                _ = shutdown.changed() => return,
                _ = bookmark.tick(), if bookmarks => {
                    let obj = json!({"kind": def.kind, "apiVersion": def.api_version(), "metadata": {"resourceVersion": last_rv.to_string()}});
                    if tx.send(Ok(Frame::data(event_line("BOOKMARK", &obj)))).await.is_err() { return; }
                }
                ev = rx_events.recv() => match ev {
                    Ok(ev) => {
                        if ev.rv <= last_rv { continue; }
                        last_rv = ev.rv;
                        if event_matches(&ev, &t, &query) && tx.send(Ok(Frame::data(event_line(ev.kind, &ev.object)))).await.is_err() {
                            return;
                        }
                    }
                    // Fell behind: end the watch; the client resumes from its last resourceVersion.
                    Err(_) => return,
                }
            }
        }
    });
    let stream = futures::stream::unfold(rx, |mut rx| async move {
        rx.recv().await.map(|item| (item, rx))
    });
    Response::builder()
        .status(200)
        .header(header::CONTENT_TYPE, "application/json")
        .header(header::TRANSFER_ENCODING, "chunked")
        .body(BodyExt::boxed(StreamBody::new(stream)))
        .expect("response")
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
        assert!(matches!(
            route("/apis/certificates.k8s.io/v1"),
            Route::ResourceList { .. }
        ));
        assert!(matches!(route("/version"), Route::NonResource));
    }

    #[test]
    fn merge_patches_and_decoding() {
        let mut doc = json!({"a": 1, "b": {"c": 2, "d": 3}});
        merge_patch(&mut doc, &json!({"b": {"c": null, "e": 4}, "f": [1]}));
        assert_eq!(doc, json!({"a": 1, "b": {"d": 3, "e": 4}, "f": [1]}));
        assert_eq!(
            percent_decode("metadata.name%3Dnode-csr-x"),
            "metadata.name=node-csr-x"
        );
    }
}
