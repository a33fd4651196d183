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

use serde_json::{Value, json};

use super::http::{Query, Reply, bad_request, status};
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

/// The request's field validation mode. An unknown one is a 422 about the request's options
/// (`CreateOptions`, `UpdateOptions`, `PatchOptions`: `options_kind`), as the real server's
/// query-parameter validation answers.
pub fn field_validation(query: &Query, options_kind: &str) -> Reply<FieldValidation> {
    match query.get("fieldValidation").map(String::as_str) {
        None | Some("") | Some("Warn") => Ok(FieldValidation::Warn),
        Some("Ignore") => Ok(FieldValidation::Ignore),
        Some("Strict") => Ok(FieldValidation::Strict),
        Some(other) => {
            let why = format!(
                "Unsupported value: \"{other}\": supported values: \"\", \"Ignore\", \"Strict\", \"Warn\""
            );
            Err(status(
                422,
                "Invalid",
                &format!("{options_kind}.meta.k8s.io \"\" is invalid: fieldValidation: {why}"),
                Some(json!({"group": "meta.k8s.io", "kind": options_kind,
                    "causes": [{"reason": "FieldValueNotSupported", "message": why, "field": "fieldValidation"}]})),
            ))
        }
    }
}

/// Parses a create/update body of `kind` at `api_version`: JSON, or kubectl's protobuf. Under
/// `Strict`, a JSON key given twice in one object is refused, as Go's strict decoder does.
pub fn parse_body(
    kind: &str,
    api_version: &str,
    body: &[u8],
    content_type: &str,
    mode: FieldValidation,
) -> Reply<Value> {
    let v: Value = if content_type.starts_with(super::protobuf::CONTENT_TYPE) {
        super::protobuf::decode(body)
            .map_err(|e| bad_request(&format!("the protobuf object could not be decoded: {e}")))?
    } else {
        let v = serde_json::from_slice(body)
            .map_err(|e| bad_request(&format!("the object provided is not valid JSON: {e}")))?;
        if mode == FieldValidation::Strict
            && let Some(key) = duplicate_key(body)
        {
            return Err(bad_request(&format!(
                "{kind} in version \"{}\" cannot be handled as a {kind}: strict decoding error: duplicate field \"{key}\"",
                version_of(api_version)
            )));
        }
        v
    };
    let v = expect_kind(kind, v)?;
    match v["apiVersion"].as_str() {
        Some(given) if !given.is_empty() && given != api_version => Err(bad_request(&format!(
            "{kind} in version \"{}\" cannot be handled as a {kind}: no kind \"{kind}\" is registered for version \"{given}\" in scheme \"pkg/runtime/scheme.go:111\"",
            version_of(given)
        ))),
        _ => Ok(v),
    }
}

/// `v1` of `certificates.k8s.io/v1`.
fn version_of(api_version: &str) -> &str {
    api_version.rsplit('/').next().unwrap_or(api_version)
}

/// The first key given twice within one JSON object of `bytes`, at any depth.
fn duplicate_key(bytes: &[u8]) -> Option<String> {
    use serde::de::{self, Deserializer, MapAccess, SeqAccess, Visitor};
    struct Checked;
    struct CheckedVisitor;
    impl<'de> de::Deserialize<'de> for Checked {
        fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
            d.deserialize_any(CheckedVisitor)
        }
    }
    impl<'de> Visitor<'de> for CheckedVisitor {
        type Value = Checked;
        fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
            f.write_str("JSON")
        }
        fn visit_bool<E>(self, _: bool) -> Result<Checked, E> {
            Ok(Checked)
        }
        fn visit_i64<E>(self, _: i64) -> Result<Checked, E> {
            Ok(Checked)
        }
        fn visit_u64<E>(self, _: u64) -> Result<Checked, E> {
            Ok(Checked)
        }
        fn visit_f64<E>(self, _: f64) -> Result<Checked, E> {
            Ok(Checked)
        }
        fn visit_str<E>(self, _: &str) -> Result<Checked, E> {
            Ok(Checked)
        }
        fn visit_unit<E>(self) -> Result<Checked, E> {
            Ok(Checked)
        }
        fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Checked, A::Error> {
            while seq.next_element::<Checked>()?.is_some() {}
            Ok(Checked)
        }
        fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Checked, A::Error> {
            let mut seen = std::collections::HashSet::new();
            while let Some(key) = map.next_key::<String>()? {
                if !seen.insert(key.clone()) {
                    return Err(de::Error::custom(format!("\u{0}{key}")));
                }
                map.next_value::<Checked>()?;
            }
            Ok(Checked)
        }
    }
    let e = serde_json::from_slice::<Checked>(bytes).err()?;
    let text = e.to_string();
    let key = text.strip_prefix('\u{0}')?;
    Some(key.split(" at line ").next().unwrap_or(key).to_string())
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
        "SubjectAccessReview" => via!(api::authorization::v1::SubjectAccessReview),
        "TokenReview" => via!(api::authentication::v1::TokenReview),
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

/// Why a body could not become the object to store.
pub enum Refusal {
    /// A field of the wrong type or form: what Go's decoder cannot read.
    Malformed(String),
    /// Unknown fields under `fieldValidation=Strict`.
    Strict(String),
}

impl Refusal {
    /// The 400 a create or update answers.
    pub fn bad_request(self) -> hyper::Response<super::http::Body> {
        match self {
            Refusal::Malformed(m) | Refusal::Strict(m) => bad_request(&m),
        }
    }
}

/// Applies the decoding rules to `obj` (whose `apiVersion` and `kind` are set): returns the
/// object to store and the warnings to send, or the 400 of `Strict` / a malformed field.
pub fn as_stored(obj: Value, mode: FieldValidation) -> Reply<(Value, Vec<String>)> {
    decode_typed(obj, mode).map_err(Refusal::bad_request)
}

/// [`as_stored`] with the refusal left to the caller: a patch that makes a malformed object is
/// a 422 about the patch (`patch.go`), not a 400.
pub fn decode_typed(obj: Value, mode: FieldValidation) -> Result<(Value, Vec<String>), Refusal> {
    let kind = obj["kind"].as_str().unwrap_or_default().to_string();
    let Some(typed) = typed_round_trip(&kind, &obj) else {
        return Ok((obj, Vec::new()));
    };
    let typed = typed
        .and_then(|t| micro_times_exact(&kind, &obj).map(|()| t))
        .map_err(|e| {
            let prefix = if mode == FieldValidation::Strict {
                "strict decoding error: "
            } else {
                ""
            };
            Refusal::Malformed(format!("{prefix}{e}"))
        })?;
    let mut unknown = Vec::new();
    unknown_paths(&obj, &typed, "", &mut unknown);
    let warnings: Vec<String> = unknown
        .iter()
        .map(|p| format!("unknown field \"{p}\""))
        .collect();
    match mode {
        FieldValidation::Strict if !warnings.is_empty() => Err(Refusal::Strict(format!(
            "strict decoding error: {}",
            warnings.join(", ")
        ))),
        FieldValidation::Warn => Ok((typed, warnings)),
        _ => Ok((typed, Vec::new())),
    }
}

/// A Lease's times are `metav1.MicroTime`, which Go parses with exactly six fractional digits
/// (`RFC3339Micro`): whole seconds or milliseconds do not decode.
fn micro_times_exact(kind: &str, obj: &Value) -> Result<(), String> {
    if kind != "Lease" {
        return Ok(());
    }
    static MICRO: std::sync::OnceLock<regex::Regex> = std::sync::OnceLock::new();
    let re = MICRO.get_or_init(|| {
        regex::Regex::new(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{6}(Z|[+-]\d{2}:\d{2})$")
            .expect("regex")
    });
    for field in ["acquireTime", "renewTime"] {
        if let Some(t) = obj["spec"][field].as_str()
            && !re.is_match(t)
        {
            return Err(format!(
                "parsing time \"{t}\" as \"2006-01-02T15:04:05.000000Z07:00\": cannot parse it as a MicroTime (six fractional digits)"
            ));
        }
    }
    Ok(())
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
}
