//! Turning a request body into the object the API server would store: JSON, the protobuf kubectl's
//! typed commands send, or YAML (server-side apply); then the decoding rules of the real
//! server: unknown fields are never stored (kube-apiserver decodes into Go structs), and
//! `fieldValidation=Strict` (kubectl's default) makes them a 400, `Warn` a `Warning` header,
//! `Ignore` nothing (`staging/src/k8s.io/apiserver/pkg/endpoints/handlers/create.go`). Times come
//! out as Go's `metav1.Time` marshals them: RFC 3339, whole seconds, `Z` (MicroTime: six digits).
//!
//! The typed round trip through k8s-openapi's structs does both at once: what the structs do not
//! know is what the Go structs do not know.

#![allow(clippy::result_large_err)]

use serde_json::{Map, Value};

use super::http::{Cause, Query, Reply, bad_request};
use super::resources::ResourceDef;

/// `?fieldValidation=`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FieldValidation {
    /// Drop unknown fields silently.
    Ignore,
    /// Drop them with a `Warning` header (the server's default).
    Warn,
    /// Refuse the request.
    Strict,
}

/// The request's field validation mode.
pub fn field_validation(query: &Query) -> Reply<FieldValidation> {
    match query.get("fieldValidation").map(String::as_str) {
        None | Some("") | Some("Warn") => Ok(FieldValidation::Warn),
        Some("Ignore") => Ok(FieldValidation::Ignore),
        Some("Strict") => Ok(FieldValidation::Strict),
        Some(other) => Err(bad_request(&format!(
            "fieldValidation parameter unsupported: {other}, must be one of [Ignore Warn Strict]"
        ))),
    }
}

/// Parses a create/update body of `kind`: JSON, or kubectl's protobuf.
pub fn parse_body(kind: &str, body: &[u8], content_type: &str) -> Reply<Value> {
    let v: Value = if content_type.starts_with(super::protobuf::CONTENT_TYPE) {
        super::protobuf::decode(body)
            .map_err(|e| bad_request(&format!("the protobuf object could not be decoded: {e}")))?
    } else {
        serde_json::from_slice(body)
            .map_err(|e| bad_request(&format!("the object provided is not valid JSON: {e}")))?
    };
    expect_kind(kind, v)
}

/// Parses a server-side apply body (YAML or JSON).
pub fn parse_apply(def: &ResourceDef, body: &[u8]) -> Reply<Value> {
    let text = std::str::from_utf8(body)
        .map_err(|_| bad_request("the apply configuration is not UTF-8 text"))?;
    let v: Value = serde_saphyr::from_str(text)
        .map_err(|e| bad_request(&format!("error decoding YAML: {e}")))?;
    expect_kind(def.kind, v)
}

fn expect_kind(want: &str, v: Value) -> Reply<Value> {
    if !v.is_object() {
        return Err(bad_request("the object provided is not a JSON object"));
    }
    if let Some(kind) = v["kind"].as_str()
        && kind != want
    {
        return Err(bad_request(&format!(
            "the API version in the data does not match the expected kind {want} (got {kind})"
        )));
    }
    Ok(v)
}

/// The object as the Go structs of its kind would hold it: `None` for kinds without one (the
/// object is kept as given).
fn typed_round_trip(kind: &str, v: &Value) -> Option<Result<Value, String>> {
    macro_rules! via {
        ($t:ty) => {
            serde_json::from_value::<$t>(v.clone())
                .map_err(|e| e.to_string())
                .and_then(|o| serde_json::to_value(o).map_err(|e| e.to_string()))
        };
    }
    use k8s_openapi::api;
    Some(match kind {
        "Namespace" => via!(api::core::v1::Namespace),
        "Secret" => via!(api::core::v1::Secret),
        "ConfigMap" => via!(api::core::v1::ConfigMap),
        "Node" => via!(api::core::v1::Node),
        "Event" => via!(api::core::v1::Event),
        "ServiceAccount" => via!(api::core::v1::ServiceAccount),
        "CertificateSigningRequest" => via!(api::certificates::v1::CertificateSigningRequest),
        "ClusterRole" => via!(api::rbac::v1::ClusterRole),
        "ClusterRoleBinding" => via!(api::rbac::v1::ClusterRoleBinding),
        "Role" => via!(api::rbac::v1::Role),
        "RoleBinding" => via!(api::rbac::v1::RoleBinding),
        "Lease" => via!(api::coordination::v1::Lease),
        "SelfSubjectReview" => via!(api::authentication::v1::SelfSubjectReview),
        "TokenRequest" => via!(api::authentication::v1::TokenRequest),
        "SelfSubjectAccessReview" => via!(api::authorization::v1::SelfSubjectAccessReview),
        "SelfSubjectRulesReview" => via!(api::authorization::v1::SelfSubjectRulesReview),
        _ => return None,
    })
}

/// Paths present (and not null) in `given` that `known` lacks.
fn unknown_paths(given: &Value, known: &Value, path: &str, out: &mut Vec<String>) {
    match (given, known) {
        (Value::Object(g), Value::Object(k)) => {
            for (key, v) in g {
                let p = if path.is_empty() {
                    key.clone()
                } else {
                    format!("{path}.{key}")
                };
                match k.get(key) {
                    None if !v.is_null() => out.push(p),
                    None => {}
                    Some(kv) => unknown_paths(v, kv, &p, out),
                }
            }
        }
        (Value::Array(g), Value::Array(k)) => {
            for (i, v) in g.iter().enumerate() {
                if let Some(kv) = k.get(i) {
                    unknown_paths(v, kv, &format!("{path}[{i}]"), out);
                }
            }
        }
        _ => {}
    }
}

/// Applies the decoding rules to `obj` (whose `apiVersion` and `kind` are set): returns the
/// object to store and the warnings to send, or the 400 of `Strict` / a malformed field.
pub fn as_stored(obj: Value, mode: FieldValidation) -> Reply<(Value, Vec<String>)> {
    let kind = obj["kind"].as_str().unwrap_or_default().to_string();
    let Some(typed) = typed_round_trip(&kind, &obj) else {
        return Ok((obj, Vec::new()));
    };
    let typed = typed.map_err(|e| {
        let prefix = if mode == FieldValidation::Strict {
            "strict decoding error: "
        } else {
            ""
        };
        bad_request(&format!("{prefix}{e}"))
    })?;
    let mut unknown = Vec::new();
    unknown_paths(&obj, &typed, "", &mut unknown);
    let warnings: Vec<String> = unknown
        .iter()
        .map(|p| format!("unknown field \"{p}\""))
        .collect();
    match mode {
        FieldValidation::Strict if !warnings.is_empty() => Err(bad_request(&format!(
            "strict decoding error: {}",
            warnings.join(", ")
        ))),
        FieldValidation::Warn => Ok((typed, warnings)),
        _ => Ok((typed, Vec::new())),
    }
}

/// kube-apiserver's cap on the total size of an object's annotations
/// (`TotalAnnotationSizeLimitB`, 256 KiB, apimachinery validation).
pub const ANNOTATIONS_LIMIT: usize = 256 * 1024;

/// `ValidateObjectMeta`'s size rules that matter against abuse: annotations at most 256 KiB in
/// all, label values at most 63 characters.
pub fn metadata_causes(meta: &Value) -> Vec<Cause> {
    let mut causes = Vec::new();
    let total: usize = meta["annotations"]
        .as_object()
        .map(|a| {
            a.iter()
                .map(|(k, v)| k.len() + v.as_str().map(str::len).unwrap_or(0))
                .sum()
        })
        .unwrap_or(0);
    if total > ANNOTATIONS_LIMIT {
        causes.push(Cause::new(
            "metadata.annotations",
            "FieldValueTooLong",
            format!("Too long: must have at most {ANNOTATIONS_LIMIT} bytes"),
        ));
    }
    for (k, v) in meta["labels"].as_object().unwrap_or(&Map::new()) {
        let v = v.as_str().unwrap_or_default();
        if v.len() > 63 {
            causes.push(Cause::new(
                format!("metadata.labels[{k}]"),
                "FieldValueInvalid",
                format!("Invalid value: \"{v}\": must be no more than 63 characters"),
            ));
        }
    }
    causes
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn unknown_fields_are_dropped_warned_or_refused_and_times_normalized() {
        let cm = json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "a", "bogus": 1,
            "creationTimestamp": "2026-01-02T03:04:05.678+01:00"}, "data": {"k": "v"}, "extra": {"x": 1}});
        let (stored, warnings) = as_stored(cm.clone(), FieldValidation::Warn).unwrap();
        assert!(stored.get("extra").is_none() && stored["metadata"].get("bogus").is_none());
        assert_eq!(stored["data"]["k"], "v");
        assert_eq!(
            stored["metadata"]["creationTimestamp"],
            "2026-01-02T02:04:05Z"
        );
        assert_eq!(
            warnings,
            [
                "unknown field \"extra\"",
                "unknown field \"metadata.bogus\""
            ]
        );
        let e = as_stored(cm.clone(), FieldValidation::Strict).unwrap_err();
        assert_eq!(e.status(), 400);
        let (_, none) = as_stored(cm, FieldValidation::Ignore).unwrap();
        assert!(none.is_empty());
    }

    #[test]
    fn annotation_sizes_are_capped() {
        let big = "x".repeat(ANNOTATIONS_LIMIT);
        let causes = metadata_causes(&json!({"annotations": {"a": big}}));
        assert_eq!(causes[0].field, "metadata.annotations");
        assert!(metadata_causes(&json!({"annotations": {"a": "b"}})).is_empty());
    }
}
