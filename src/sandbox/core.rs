//! The core resources' rules: Namespaces (the NamespaceLifecycle admission plugin and deletion
//! through `Terminating`, `pkg/registry/core/namespace/storage`), Secrets and ConfigMaps
//! (`pkg/apis/core/validation`: keys, 1 MiB of data, `stringData`, the default type, immutability),
//! ServiceAccounts and Events (stored as given, after decoding).

#![allow(clippy::result_large_err)]

use serde_json::{Value, json};

use super::http::{Cause, Reply, invalid_all, status};
use super::request::Call;
use super::store::timestamp;
use super::validation::{binding_causes, rule_causes};

/// `core.MaxSecretSize` (and the same cap on a ConfigMap's data).
pub const MAX_DATA_BYTES: usize = 1024 * 1024;

/// Namespaces every cluster has and nobody may delete.
pub const SYSTEM_NAMESPACES: [&str; 4] =
    ["default", "kube-system", "kube-public", "kube-node-lease"];

/// `IsConfigMapKey`: `[-._a-zA-Z0-9]+`, at most 253 characters, not `.` or `..`.
fn key_problem(key: &str) -> Option<String> {
    if key.is_empty() || key.len() > 253 {
        return Some("must be no more than 253 characters".into());
    }
    if key == "." || key == ".." {
        return Some(format!("must not be '{key}'"));
    }
    if !key
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
    {
        return Some("a valid config key must consist of alphanumeric characters, '-', '_' or '.' (e.g. 'key.name',  or 'KEY_NAME',  or 'key-name', regex used for validation is '[-._a-zA-Z0-9]+')".into());
    }
    None
}

fn key_causes(field: &str, map: &Value, causes: &mut Vec<Cause>) -> usize {
    let mut size = 0;
    for (k, v) in map.as_object().into_iter().flatten() {
        if let Some(why) = key_problem(k) {
            causes.push(Cause::new(
                format!("{field}[{k}]"),
                "FieldValueInvalid",
                format!("Invalid value: \"{k}\": {why}"),
            ));
        }
        size += v.as_str().map(str::len).unwrap_or(0);
    }
    size
}

/// `stringData` folds into `data` (base64), as the API server does; an empty type is `Opaque`.
fn normalize_secret(obj: &mut Value) {
    use base64::Engine;
    let b64 = base64::engine::general_purpose::STANDARD;
    if let Some(sd) = obj.get("stringData").and_then(|v| v.as_object()).cloned() {
        let mut data = obj["data"].as_object().cloned().unwrap_or_default();
        for (k, v) in sd {
            data.insert(k, json!(b64.encode(v.as_str().unwrap_or_default())));
        }
        obj["data"] = Value::Object(data);
        obj.as_object_mut().expect("object").remove("stringData");
    }
    if obj["type"].as_str().is_none_or(str::is_empty) {
        obj["type"] = json!("Opaque");
    }
}

fn secret_causes(obj: &Value) -> Vec<Cause> {
    let mut causes = Vec::new();
    // Sizes of the decoded values: base64 is 4/3 of them.
    let encoded = key_causes("data", &obj["data"], &mut causes);
    if encoded * 3 / 4 > MAX_DATA_BYTES {
        causes.push(Cause::new(
            "data",
            "FieldValueTooLong",
            format!("Too long: must have at most {MAX_DATA_BYTES} bytes"),
        ));
    }
    causes
}

fn configmap_causes(obj: &Value) -> Vec<Cause> {
    let mut causes = Vec::new();
    let mut size = key_causes("data", &obj["data"], &mut causes);
    size += key_causes("binaryData", &obj["binaryData"], &mut causes) * 3 / 4;
    for k in obj["binaryData"]
        .as_object()
        .into_iter()
        .flatten()
        .map(|(k, _)| k)
    {
        if obj["data"].get(k).is_some() {
            causes.push(Cause::new(
                format!("data[{k}]"),
                "FieldValueInvalid",
                format!("Invalid value: \"{k}\": duplicate of key present in binaryData"),
            ));
        }
    }
    if size > MAX_DATA_BYTES {
        causes.push(Cause::new(
            // Upstream names `field.NewPath("")`, which the real server reports as `[]`.
            "[]",
            "FieldValueTooLong",
            format!("Too long: must have at most {MAX_DATA_BYTES} bytes"),
        ));
    }
    causes
}

/// Create-time defaults and validation.
pub fn admit_create(call: &Call<'_>, name: &str, obj: &mut Value) -> Reply<()> {
    let causes = match call.def().plural {
        "namespaces" => {
            obj["spec"] = json!({"finalizers": ["kubernetes"]});
            obj["status"] = json!({"phase": "Active"});
            Vec::new()
        }
        "secrets" => {
            normalize_secret(obj);
            secret_causes(obj)
        }
        "configmaps" => configmap_causes(obj),
        "roles" | "clusterroles" => rule_causes(obj, call.def().namespaced),
        "rolebindings" | "clusterrolebindings" => binding_causes(obj, call.def().namespaced),
        _ => Vec::new(),
    };
    if causes.is_empty() {
        Ok(())
    } else {
        Err(invalid_all(call.def(), name, &causes))
    }
}

/// The object an update stores.
pub fn prepare_update(call: &Call<'_>, old: &Value, mut new: Value) -> Reply<Value> {
    let def = call.def();
    let name = &call.target.name;
    let mut causes = Vec::new();
    match def.plural {
        "secrets" | "configmaps" => {
            if def.plural == "secrets" {
                normalize_secret(&mut new);
                causes.extend(secret_causes(&new));
                if new["type"] != old["type"] {
                    causes.push(Cause::new(
                        "type",
                        "FieldValueInvalid",
                        format!("Invalid value: {}: field is immutable", new["type"]),
                    ));
                }
            } else {
                causes.extend(configmap_causes(&new));
            }
            if old["immutable"] == true {
                for field in ["data", "binaryData"] {
                    if new[field] != old[field] {
                        causes.push(Cause::new(
                            field,
                            "FieldValueForbidden",
                            "Forbidden: field is immutable when `immutable` is set",
                        ));
                    }
                }
            }
        }
        "roles" | "clusterroles" => causes.extend(rule_causes(&new, def.namespaced)),
        "rolebindings" | "clusterrolebindings" => {
            causes.extend(binding_causes(&new, def.namespaced));
            if new["roleRef"] != old["roleRef"] {
                causes.push(Cause::new(
                    "roleRef",
                    "FieldValueInvalid",
                    format!("Invalid value: {}: cannot change roleRef", new["roleRef"]),
                ));
            }
        }
        "namespaces" if call.target.subresource == "status" => {
            let mut v = old.clone();
            v["status"] = new["status"].clone();
            v["metadata"]["resourceVersion"] = new["metadata"]["resourceVersion"].clone();
            new = v;
        }
        "namespaces" => {
            new["status"] = old["status"].clone();
            new["metadata"]["deletionTimestamp"] = old["metadata"]["deletionTimestamp"].clone();
        }
        _ => {}
    }
    if causes.is_empty() {
        Ok(new)
    } else {
        Err(invalid_all(def, name, &causes))
    }
}

/// NamespaceLifecycle: no new content in a namespace that is missing or being terminated.
pub fn check_namespace_open(call: &Call<'_>, name: &str) -> Reply<()> {
    let t = call.target;
    if !t.def.namespaced || t.namespace.is_empty() {
        return Ok(());
    }
    let ns = call
        .state
        .store
        .lock()
        .expect("store")
        .get("namespaces", "", &t.namespace);
    match ns {
        None => Err(status(
            404,
            "NotFound",
            &format!("namespaces \"{}\" not found", t.namespace),
            Some(json!({"name": t.namespace, "kind": "namespaces"})),
        )),
        Some(ns) if ns["status"]["phase"] == "Terminating" => Err(status(
            403,
            "Forbidden",
            &format!(
                "{} \"{name}\" is forbidden: unable to create new content in namespace {} because it is being terminated",
                t.def.qualified(),
                t.namespace
            ),
            Some(json!({"name": name, "kind": t.def.plural})),
        )),
        Some(_) => Ok(()),
    }
}

/// DELETE of a Namespace: it turns `Terminating`; the namespace controller deletes its content
/// and then the Namespace itself.
pub fn delete_namespace(call: &Call<'_>) -> Reply<Value> {
    let name = &call.target.name;
    if SYSTEM_NAMESPACES.contains(&name.as_str()) {
        return Err(status(
            403,
            "Forbidden",
            &format!("namespaces \"{name}\" is forbidden: this namespace may not be deleted"),
            Some(json!({"name": name, "kind": "namespaces"})),
        ));
    }
    let mut store = call.state.store.lock().expect("store");
    let Some(ns) = store.get("namespaces", "", name) else {
        return Err(super::http::not_found(call.def(), name));
    };
    let mut ns = std::sync::Arc::unwrap_or_clone(ns);
    if ns["status"]["phase"] == "Terminating" {
        return Ok(ns);
    }
    ns["metadata"]["deletionTimestamp"] = json!(timestamp());
    ns["status"]["phase"] = json!("Terminating");
    store
        .update("namespaces", "", name, ns)
        .map(std::sync::Arc::unwrap_or_clone)
        .map_err(|e| super::http::store_error(call.def(), name, e))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn config_keys_follow_the_api_rule() {
        assert!(key_problem("token-secret").is_none());
        assert!(key_problem("a.b_C-1").is_none());
        assert!(key_problem("a/b").is_some());
        assert!(key_problem("..").is_some());
        assert!(key_problem("").is_some());
    }
}
