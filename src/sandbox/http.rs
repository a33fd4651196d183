//! The HTTP side of the API: response bodies, `metav1.Status` errors in kube-apiserver's shape,
//! query strings, and request bodies read within their limits.

// The error side of these helpers is the HTTP response itself; boxing it buys nothing.
#![allow(clippy::result_large_err)]

use std::collections::BTreeMap;

use bytes::Bytes;
use http::{Request, Response, StatusCode, header};
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use serde_json::{Value, json};

use super::resources::ResourceDef;
use super::store::StoreError;

/// Response bodies (whole or streamed).
pub type Body = BoxBody<Bytes, std::io::Error>;

/// A handler's answer: the response, or the error response.
pub type Reply<T = Response<Body>> = std::result::Result<T, Response<Body>>;

/// kube-apiserver's `--max-request-bytes` default (`MaxRequestBodyBytes`, 3 MiB).
pub const MAX_REQUEST_BYTES: usize = 3 * 1024 * 1024;

/// A whole body.
pub fn full(bytes: Vec<u8>) -> Body {
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

/// A plain-text response (health checks).
pub fn text_response(code: StatusCode, text: &str) -> Response<Body> {
    Response::builder()
        .status(code)
        .header(header::CONTENT_TYPE, "text/plain")
        .body(full(text.as_bytes().to_vec()))
        .expect("response")
}

/// A `metav1.Status` failure.
pub fn status(code: u16, reason: &str, message: &str, details: Option<Value>) -> Response<Body> {
    let mut v = json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure", "message": message, "code": code});
    // `reason` is omitempty: a failure the server does not classify has none.
    if !reason.is_empty() {
        v["reason"] = json!(reason);
    }
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

/// 400 BadRequest.
pub fn bad_request(message: &str) -> Response<Body> {
    status(400, "BadRequest", message, None)
}

/// 404 for a path nothing serves.
pub fn no_such_path() -> Response<Body> {
    status(
        404,
        "NotFound",
        "the server could not find the requested resource",
        Some(json!({})),
    )
}

/// 404 for a path no API group serves: the API server's mux answers in plain text, not with a
/// Status (`k8s.io/apiserver/pkg/server/mux`, Go's `http.NotFound`).
pub fn page_not_found() -> Response<Body> {
    text_response(StatusCode::NOT_FOUND, "404 page not found\n")
}

/// `details` of a Status about one object.
pub fn details(def: &ResourceDef, name: &str) -> Value {
    let mut d = json!({"name": name, "kind": def.plural});
    if !def.group.is_empty() {
        d["group"] = json!(def.group);
    }
    d
}

/// 404 for an object.
pub fn not_found(def: &ResourceDef, name: &str) -> Response<Body> {
    status(
        404,
        "NotFound",
        &format!("{} \"{name}\" not found", def.qualified()),
        Some(details(def, name)),
    )
}

/// 403 for an object, with kube-apiserver's `<resource> "<name>" is forbidden: <why>` message.
pub fn forbidden_object(def: &ResourceDef, name: &str, why: &str) -> Response<Body> {
    status(
        403,
        "Forbidden",
        &format!("{} \"{name}\" is forbidden: {why}", def.qualified()),
        Some(details(def, name)),
    )
}

/// One field error of a 422.
#[derive(Debug, Clone)]
pub struct Cause {
    /// `metadata.name`, `spec.usages[1]`, …
    pub field: String,
    /// `FieldValueInvalid`, `FieldValueRequired`, …
    pub reason: &'static str,
    /// The message after the field, `Invalid value: …`.
    pub message: String,
}

impl Cause {
    /// A cause.
    pub fn new(
        field: impl Into<String>,
        reason: &'static str,
        message: impl Into<String>,
    ) -> Cause {
        Cause {
            field: field.into(),
            reason,
            message: message.into(),
        }
    }
}

/// 422 Invalid with its causes, in the API server's shape.
pub fn invalid_all(def: &ResourceDef, name: &str, causes: &[Cause]) -> Response<Body> {
    let kind = if def.group.is_empty() {
        def.kind.to_string()
    } else {
        format!("{}.{}", def.kind, def.group)
    };
    let listed: Vec<String> = causes
        .iter()
        .map(|c| format!("{}: {}", c.field, c.message))
        .collect();
    let message = if listed.len() == 1 {
        format!("{kind} \"{name}\" is invalid: {}", listed[0])
    } else {
        format!("{kind} \"{name}\" is invalid: [{}]", listed.join(", "))
    };
    let mut d = json!({"name": name, "kind": def.kind, "causes": causes.iter().map(|c| json!({"reason": c.reason, "message": c.message, "field": c.field})).collect::<Vec<_>>()});
    if !def.group.is_empty() {
        d["group"] = json!(def.group);
    }
    status(422, "Invalid", &message, Some(d))
}

/// 422 Invalid with one cause.
pub fn invalid(
    def: &ResourceDef,
    name: &str,
    field: &str,
    reason: &'static str,
    message: &str,
) -> Response<Body> {
    invalid_all(def, name, &[Cause::new(field, reason, message)])
}

/// The Status of a store failure.
pub fn store_error(def: &ResourceDef, name: &str, e: StoreError) -> Response<Body> {
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
        StoreError::TooLarge => status(
            413,
            "RequestEntityTooLarge",
            "etcdserver: request is too large",
            Some(details(def, name)),
        ),
    }
}

/// Adds `Warning: 299 - "…"` headers, as kube-apiserver reports ignored fields.
pub fn with_warnings(mut r: Response<Body>, warnings: &[String]) -> Response<Body> {
    for w in warnings {
        let text = format!("299 - \"{}\"", w.replace('"', "\\\""));
        if let Ok(v) = http::HeaderValue::from_str(&text) {
            r.headers_mut().append(header::WARNING, v);
        }
    }
    r
}

/// A parsed query string.
pub type Query = BTreeMap<String, String>;

/// Parses `a=b&c=d` (percent-decoded).
pub fn query_map(query: Option<&str>) -> Query {
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

/// Percent-decoding with `+` as space, as Go's `url.ParseQuery`.
pub fn percent_decode(s: &str) -> String {
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

/// A request header as text, or "".
pub fn header_text(req: &Request<Incoming>, name: header::HeaderName) -> String {
    req.headers()
        .get(name)
        .and_then(|h| h.to_str().ok())
        .unwrap_or_default()
        .to_string()
}

/// Reads a request body of at most `limit` bytes; more is 413, as kube-apiserver answers.
pub async fn read_body(req: Request<Incoming>, limit: usize) -> Reply<Vec<u8>> {
    match http_body_util::Limited::new(req.into_body(), limit)
        .collect()
        .await
    {
        Ok(c) => Ok(c.to_bytes().to_vec()),
        Err(_) => Err(status(
            413,
            "RequestEntityTooLarge",
            &format!("Request entity too large: limit is {limit}"),
            None,
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn queries_decode() {
        let q = query_map(Some(
            "fieldSelector=metadata.name%3Dnode-csr-x&limit=5&watch",
        ));
        assert_eq!(q["fieldSelector"], "metadata.name=node-csr-x");
        assert_eq!(q["limit"], "5");
        assert_eq!(q["watch"], "");
    }
}
