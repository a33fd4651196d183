//! The namespace controllers: deleting a `Terminating` namespace's content and then the namespace
//! (`pkg/controller/namespace/deletion`), and giving every namespace its `default` ServiceAccount
//! (`pkg/controller/serviceaccount`).

use serde_json::{Value, json};

use super::super::resources::RESOURCES;
use super::super::state::State;

/// Deletes everything in the terminating namespace `name`, then the namespace.
pub fn finish_deletion(state: &State, ns: &Value) {
    if ns["status"]["phase"] != "Terminating" {
        return;
    }
    let name = ns["metadata"]["name"].as_str().unwrap_or_default();
    let mut store = state.store.lock().expect("store");
    for def in RESOURCES.iter().filter(|d| d.namespaced) {
        let names: Vec<String> = store
            .range(def.plural, name, None)
            .map(|((_, _, n), _)| n.clone())
            .collect();
        for n in names {
            let _ = store.delete(def.plural, name, &n, None);
        }
    }
    let _ = store.delete("namespaces", "", name, None);
}

/// Creates the `default` ServiceAccount of the namespace `ns` if it lacks one.
pub fn ensure_default_service_account(state: &State, ns: &Value) {
    if ns["status"]["phase"] == "Terminating" {
        return;
    }
    let name = ns["metadata"]["name"].as_str().unwrap_or_default();
    let mut store = state.store.lock().expect("store");
    if store.get("serviceaccounts", name, "default").is_none() {
        let _ = store.create(
            "serviceaccounts",
            name,
            json!({"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": "default"}}),
        );
    }
}
