//! The REST verbs over the store, as kube-apiserver's generic registry runs them: decode (with
//! field validation), defaults and admission of the resource (`csrs`, `core`, `nodes`),
//! validation, then the store (optimistic concurrency, size limits); lists with selectors,
//! `limit`/`continue` and tables; watches; patches of every kind; deletes.

#![allow(clippy::result_large_err)]

use http::StatusCode;
use hyper::Response;
use serde_json::{Value, json};

use super::decode::{
    FieldValidation, Refusal, as_stored, decode_typed, field_validation, parse_apply, parse_body,
};
use super::http::{
    Body, Reply, bad_request, invalid, invalid_all, json_response, no_such_path, not_found, status,
    store_error, with_warnings,
};
use super::patch::{PatchKind, json_patch, merge_patch, patch_kind, record_manager};
use super::request::Call;
use super::selectors::Selectors;
use super::store::{Key, timestamp};
use super::validation::metadata_causes;

/// What the router hands over besides the call.
pub struct Payload<'a> {
    /// `Accept`.
    pub accept: &'a str,
    /// `Content-Type`.
    pub content_type: &'a str,
    /// The request body.
    pub bytes: &'a [u8],
}

/// Serves `verb` on the call's target.
pub fn serve(call: &Call<'_>, verb: &str, body: &Payload<'_>) -> Response<Body> {
    let t = call.target;
    if !t.subresource.is_empty() && !t.def.subresources.contains(&t.subresource.as_str()) {
        return no_such_path();
    }
    let subresource_write =
        matches!(verb, "update" | "patch" | "create") && !t.subresource.is_empty();
    if !subresource_write && !t.def.verbs.contains(&verb) {
        return status(
            405,
            "MethodNotAllowed",
            &format!("the server does not allow this method on the requested resource ({verb})"),
            Some(json!({})),
        );
    }
    let result = match verb {
        "get" => get(call, body.accept),
        "list" => list(call, body.accept),
        "watch" => Selectors::parse(t.def, call.query)
            .map(|sel| super::watch::serve(call.state.clone(), t, call.query, sel, body.accept)),
        "create" => create(call, body),
        "update" => update(call, body),
        "patch" => patch(call, body),
        "delete" => delete(call),
        "deletecollection" => delete_collection(call),
        _ => Err(status(
            405,
            "MethodNotAllowed",
            "the server does not allow this method on the requested resource",
            Some(json!({})),
        )),
    };
    result.unwrap_or_else(|r| r)
}

fn table_wanted(accept: &str) -> bool {
    accept.contains("as=Table")
}

fn get(call: &Call<'_>, accept: &str) -> Reply {
    let t = call.target;
    let (obj, rv) = {
        let s = call.state.store.lock().expect("store");
        (
            s.get(t.def.plural, &t.namespace, &t.name),
            s.resource_version(),
        )
    };
    let Some(mut obj) = obj else {
        return Err(not_found(t.def, &t.name));
    };
    if call.state.options.tamper_cluster_info
        && t.def.plural == "configmaps"
        && t.name == "cluster-info"
        && let Some(k) = obj["data"]["kubeconfig"].as_str()
    {
        let tampered = json!(k.replace("server: https://127.0.0.1", "server: https://127.0.0.2"));
        // The answer is changed, not the stored object.
        std::sync::Arc::make_mut(&mut obj)["data"]["kubeconfig"] = tampered;
    }
    Ok(if table_wanted(accept) {
        json_response(
            StatusCode::OK,
            &super::tables::table(t.def, std::slice::from_ref(&*obj), rv),
        )
    } else {
        json_response(StatusCode::OK, &obj)
    })
}

fn encode_continue(rv: u64, key: &Key) -> String {
    use base64::Engine;
    base64::engine::general_purpose::URL_SAFE_NO_PAD
        .encode(json!({"rv": rv, "key": [key.0, key.1, key.2]}).to_string())
}

fn decode_continue(token: &str) -> Option<(u64, Key)> {
    use base64::Engine;
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(token)
        .ok()?;
    let v: Value = serde_json::from_slice(&bytes).ok()?;
    let k = v["key"].as_array()?;
    Some((
        v["rv"].as_u64()?,
        (
            k.first()?.as_str()?.to_string(),
            k.get(1)?.as_str()?.to_string(),
            k.get(2)?.as_str()?.to_string(),
        ),
    ))
}

/// A list page: selectors, `limit` (with `continue` and `remainingItemCount`), or a Table.
/// Pages are cut from the current store rather than the snapshot of the first page, which a real
/// API server keeps (etcd revisions); the continue token carries the first page's
/// resourceVersion.
fn list(call: &Call<'_>, accept: &str) -> Reply {
    let t = call.target;
    let sel = Selectors::parse(t.def, call.query)?;
    let limit = match call.query.get("limit").map(String::as_str) {
        None | Some("") | Some("0") => None,
        Some(l) => Some(
            l.parse::<usize>()
                .map_err(|_| bad_request(&format!("invalid limit {l:?}")))?,
        ),
    };
    let after = match call.query.get("continue").filter(|c| !c.is_empty()) {
        Some(c) => Some(decode_continue(c).ok_or_else(|| {
            status(
                400,
                "BadRequest",
                "continue key is not valid: the continue parameter is malformed",
                None,
            )
        })?),
        None => None,
    };
    let (items, next, remaining, rv) = {
        let s = call.state.store.lock().expect("store");
        let rv = after
            .as_ref()
            .map(|(rv, _)| *rv)
            .unwrap_or(s.resource_version());
        let mut matching = s
            .range(t.def.plural, &t.namespace, after.as_ref().map(|(_, k)| k))
            .filter(|((_, _, name), _)| sel.pinned_name().is_none_or(|n| n == name))
            .filter(|(_, o)| sel.matches(o));
        let mut items = Vec::new();
        let mut last: Option<Key> = None;
        let mut next = None;
        let mut remaining = None;
        while let Some((k, o)) = matching.next() {
            if limit.is_some_and(|l| items.len() >= l) {
                // One more exists: a next page.
                remaining = Some(1 + matching.count());
                next = last.as_ref().map(|k| encode_continue(rv, k));
                break;
            }
            items.push(o.clone());
            last = Some(k.clone());
        }
        (items, next, remaining, rv)
    };
    Ok(page(call, accept, items, next, remaining, rv))
}

fn page(
    call: &Call<'_>,
    accept: &str,
    items: Vec<Value>,
    next: Option<String>,
    remaining: Option<usize>,
    rv: u64,
) -> Response<Body> {
    let t = call.target;
    let mut meta = json!({"resourceVersion": rv.to_string()});
    if let Some(c) = &next {
        meta["continue"] = json!(c);
    }
    if let Some(n) = remaining {
        meta["remainingItemCount"] = json!(n);
    }
    if table_wanted(accept) {
        let mut table = super::tables::table(t.def, &items, rv);
        table["metadata"] = meta;
        return json_response(StatusCode::OK, &table);
    }
    json_response(
        StatusCode::OK,
        &json!({"kind": format!("{}List", t.def.kind), "apiVersion": t.def.api_version(), "metadata": meta, "items": items}),
    )
}

/// Names RBAC objects and CSRs may have: any path segment ("We don't care what you call your
/// certificate requests.", `ValidateCertificateRequestName`); others are DNS-1123 subdomains.
fn name_ok(call: &Call<'_>, name: &str) -> bool {
    let def = call.def();
    if def.group == "rbac.authorization.k8s.io" || def.plural == "certificatesigningrequests" {
        return !name.is_empty()
            && !name.contains('/')
            && !name.contains('%')
            && name != "."
            && name != "..";
    }
    crate::engine::runner::validate_node_name(name).is_ok()
}

fn random_suffix() -> String {
    const ALPHA: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";
    (0..5)
        .map(|_| {
            ALPHA[(super::state::random_unit() * ALPHA.len() as f64) as usize % ALPHA.len()] as char
        })
        .collect()
}

/// Decodes a body for `call`'s kind (a subresource may take another: `serviceaccounts/token`
/// takes a TokenRequest): the object to work on and the field warnings.
fn decode(call: &Call<'_>, body: &Payload<'_>, options_kind: &str) -> Reply<(Value, Vec<String>)> {
    let mode = field_validation(call.query, options_kind)?;
    let def = if call.def().plural == "serviceaccounts" && call.target.subresource == "token" {
        &super::resources::TOKEN_REQUEST
    } else {
        call.def()
    };
    let mut obj = parse_body(
        def.kind,
        &def.api_version(),
        body.bytes,
        body.content_type,
        mode,
    )?;
    obj["apiVersion"] = json!(def.api_version());
    obj["kind"] = json!(def.kind);
    as_stored(obj, mode)
}

/// Name, generateName, namespace and size rules of a new object's metadata.
fn admit_metadata(call: &Call<'_>, obj: &mut Value) -> Reply<String> {
    let t = call.target;
    if !obj["metadata"].is_object() {
        obj["metadata"] = json!({});
    }
    if obj["metadata"]["generateName"].as_str() == Some("") {
        obj["metadata"]
            .as_object_mut()
            .expect("meta")
            .remove("generateName");
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
        return Err(invalid(
            t.def,
            "",
            "metadata.name",
            "FieldValueRequired",
            "Required value: name or generateName is required",
        ));
    }
    if !name_ok(call, &name) {
        return Err(invalid(
            t.def,
            &name,
            "metadata.name",
            "FieldValueInvalid",
            &format!(
                "Invalid value: \"{name}\": a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', and must start and end with an alphanumeric character"
            ),
        ));
    }
    if t.def.namespaced
        && let Some(ns) = obj["metadata"]["namespace"].as_str()
        && !ns.is_empty()
        && ns != t.namespace
    {
        return Err(bad_request(
            "the namespace of the provided object does not match the namespace sent on the request",
        ));
    }
    validate_metadata(call, &name, obj)?;
    Ok(name)
}

fn validate_metadata(call: &Call<'_>, name: &str, obj: &Value) -> Reply<()> {
    let causes = metadata_causes(&obj["metadata"]);
    if causes.is_empty() {
        Ok(())
    } else {
        Err(invalid_all(call.def(), name, &causes))
    }
}

/// The resource's own create rules.
fn admit_resource_create(call: &Call<'_>, name: &str, obj: &mut Value) -> Reply<()> {
    super::nodes::admit_write(call, name)?;
    super::nodes::taint_new_node(call, obj);
    super::nodes::admit_node_object(call, None, obj)?;
    super::nodes::validate(call, name, obj)?;
    match call.def().plural {
        "certificatesigningrequests" => super::csrs::admit_create(call, name, obj),
        _ => super::core::admit_create(call, name, obj),
    }
}

fn create(call: &Call<'_>, body: &Payload<'_>) -> Reply {
    let t = call.target;
    let (obj, warnings) = decode(call, body, "CreateOptions")?;
    if super::reviews::is_review(call) {
        return super::reviews::answer(call, obj).map(|r| with_warnings(r, &warnings));
    }
    if !t.subresource.is_empty() {
        return Err(no_such_path());
    }
    created(call, obj, &warnings)
}

/// Stores a new object after its metadata and resource rules.
fn created(call: &Call<'_>, mut obj: Value, warnings: &[String]) -> Reply {
    let t = call.target;
    let name = admit_metadata(call, &mut obj)?;
    super::core::check_namespace_open(call, &name)?;
    admit_resource_create(call, &name, &mut obj)?;
    let stored = call
        .state
        .store
        .lock()
        .expect("store")
        .create(t.def.plural, &t.namespace, obj)
        .map_err(|e| store_error(t.def, &name, e))?;
    Ok(with_warnings(
        json_response(StatusCode::CREATED, &stored),
        warnings,
    ))
}

fn update(call: &Call<'_>, body: &Payload<'_>) -> Reply {
    let t = call.target;
    let (obj, warnings) = decode(call, body, "UpdateOptions")?;
    if obj["metadata"]["name"]
        .as_str()
        .is_some_and(|n| n != t.name)
    {
        return Err(bad_request(
            "the name of the object does not match the name on the URL",
        ));
    }
    if t.def.conditional_update
        && t.subresource.is_empty()
        && obj["metadata"]["resourceVersion"]
            .as_str()
            .is_none_or(str::is_empty)
    {
        return Err(invalid(
            t.def,
            &t.name,
            "metadata.resourceVersion",
            "FieldValueInvalid",
            "Invalid value: 0x0: must be specified for an update",
        ));
    }
    stored_update(call, obj, &warnings)
}

/// Stores `new` as the next version of the target, keeping what this (sub)resource may not change.
fn stored_update(call: &Call<'_>, mut new: Value, warnings: &[String]) -> Reply {
    let t = call.target;
    let old = call
        .state
        .store
        .lock()
        .expect("store")
        .get(t.def.plural, &t.namespace, &t.name);
    let Some(old) = old else {
        return Err(not_found(t.def, &t.name));
    };
    if !new["metadata"].is_object() {
        new["metadata"] = json!({});
    }
    new["apiVersion"] = json!(t.def.api_version());
    new["kind"] = json!(t.def.kind);
    super::nodes::admit_write(call, &t.name)?;
    super::nodes::admit_node_object(call, Some(&old), &new)?;
    super::nodes::validate(call, &t.name, &new)?;
    validate_metadata(call, &t.name, &new)?;
    let merged = match t.def.plural {
        "certificatesigningrequests" => super::csrs::prepare_update(call, &old, &new)?,
        "nodes" => super::nodes::prepare_update(call, &old, new),
        _ => super::core::prepare_update(call, &old, new)?,
    };
    let stored = call
        .state
        .store
        .lock()
        .expect("store")
        .update(t.def.plural, &t.namespace, &t.name, merged)
        .map_err(|e| store_error(t.def, &t.name, e))?;
    Ok(with_warnings(
        json_response(StatusCode::OK, &stored),
        warnings,
    ))
}

fn patch(call: &Call<'_>, body: &Payload<'_>) -> Reply {
    let t = call.target;
    let kind = patch_kind(body.content_type)?;
    let mode = field_validation(call.query, "PatchOptions")?;
    let old = call
        .state
        .store
        .lock()
        .expect("store")
        .get(t.def.plural, &t.namespace, &t.name)
        .map(std::sync::Arc::unwrap_or_clone);
    if kind == PatchKind::Apply {
        return apply(call, body, old, mode);
    }
    let Some(mut doc) = old else {
        return Err(not_found(t.def, &t.name));
    };
    let patch: Value = serde_json::from_slice(body.bytes)
        .map_err(|e| bad_request(&format!("the patch is not valid JSON: {e}")))?;
    let rv = doc["metadata"]["resourceVersion"].clone();
    match kind {
        PatchKind::Json => json_patch(&mut doc, &patch).map_err(|e| {
            status(
                422,
                "Invalid",
                &format!("the server rejected our request due to an error in our request: {e}"),
                None,
            )
        })?,
        _ => merge_patch(&mut doc, &patch),
    }
    // A patch is unconditional unless it names the resourceVersion it expects.
    if patch.pointer("/metadata/resourceVersion").is_none() {
        doc["metadata"]["resourceVersion"] = rv;
    }
    let (doc, warnings) = decode_typed(doc, mode).map_err(|r| patch_refused(&patch, r))?;
    stored_update(call, doc, &warnings)
}

/// A patch whose result does not decode, or has unknown fields under `Strict`: a 422 about the
/// patch, with no kind (`patch.go`, `applyPatchToObject`).
fn patch_refused(patch: &Value, refusal: Refusal) -> Response<Body> {
    let (Refusal::Malformed(why) | Refusal::Strict(why)) = refusal;
    let message = format!("Invalid value: \"{patch}\": {why}");
    status(
        422,
        "Invalid",
        &format!(" \"\" is invalid: patch: {message}"),
        Some(
            json!({"causes": [{"reason": "FieldValueInvalid", "message": message, "field": "patch"}]}),
        ),
    )
}

/// Server-side apply: creates the object or merges the applied configuration into it.
fn apply(call: &Call<'_>, body: &Payload<'_>, old: Option<Value>, mode: FieldValidation) -> Reply {
    let t = call.target;
    let manager = call
        .query
        .get("fieldManager")
        .filter(|m| !m.is_empty())
        .ok_or_else(|| bad_request("PATCH, application/apply-patch+yaml requires fieldManager"))?
        .clone();
    let mut applied = parse_apply(t.def, body.bytes)?;
    if applied["metadata"]["name"]
        .as_str()
        .is_some_and(|n| n != t.name)
    {
        return Err(bad_request(
            "the name of the object does not match the name on the URL",
        ));
    }
    applied["apiVersion"] = json!(t.def.api_version());
    applied["kind"] = json!(t.def.kind);
    let now = timestamp();
    match old {
        None => {
            applied["metadata"]["name"] = json!(t.name);
            record_manager(&mut applied, &manager, "Apply", &now);
            let (obj, warnings) = as_stored(applied, mode)?;
            created(call, obj, &warnings)
        }
        Some(mut doc) => {
            let rv = doc["metadata"]["resourceVersion"].clone();
            merge_patch(&mut doc, &applied);
            doc["metadata"]["resourceVersion"] = rv;
            record_manager(&mut doc, &manager, "Apply", &now);
            let (doc, warnings) = as_stored(doc, mode)?;
            stored_update(call, doc, &warnings)
        }
    }
}

fn delete(call: &Call<'_>) -> Reply {
    let t = call.target;
    if t.def.plural == "namespaces" {
        return super::core::delete_namespace(call).map(|ns| json_response(StatusCode::OK, &ns));
    }
    super::nodes::admit_write(call, &t.name)?;
    let r =
        call.state
            .store
            .lock()
            .expect("store")
            .delete(t.def.plural, &t.namespace, &t.name, None);
    r.map(|o| json_response(StatusCode::OK, &deleted_status(t.def, &o)))
        .map_err(|e| store_error(t.def, &t.name, e))
}

/// Deletes every object the selectors match, as the generic registry's `DeleteCollection`:
/// the answer is the list of what was deleted.
fn delete_collection(call: &Call<'_>) -> Reply {
    let t = call.target;
    let sel = Selectors::parse(t.def, call.query)?;
    let (deleted, rv) = {
        let mut s = call.state.store.lock().expect("store");
        let names: Vec<String> = s
            .range(t.def.plural, &t.namespace, None)
            .filter(|(_, o)| sel.matches(o))
            .map(|((_, _, name), _)| name.clone())
            .collect();
        let deleted: Vec<Value> = names
            .iter()
            .filter_map(|n| s.delete(t.def.plural, &t.namespace, n, None).ok())
            .map(std::sync::Arc::unwrap_or_clone)
            .collect();
        (deleted, s.resource_version())
    };
    Ok(page(call, "", deleted, None, None, rv))
}

/// What a delete answers once the object is gone: a `Success` Status naming it, as the generic
/// registry does for every resource the sandbox serves but namespaces (`registry/generic/registry/
/// store.go`, `finalizeDelete` without `ReturnDeletedObject`).
fn deleted_status(def: &super::resources::ResourceDef, obj: &Value) -> Value {
    let name = obj["metadata"]["name"].as_str().unwrap_or_default();
    let mut details = super::http::details(def, name);
    details["uid"] = obj["metadata"]["uid"].clone();
    json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success", "details": details})
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn continue_tokens_round_trip() {
        let k: Key = ("secrets".into(), "kube-system".into(), "a".into());
        assert_eq!(decode_continue(&encode_continue(7, &k)), Some((7, k)));
        assert_eq!(decode_continue("garbage"), None);
    }
}
