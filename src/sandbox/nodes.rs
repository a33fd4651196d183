//! Nodes and Leases: the NodeRestriction admission plugin (`plugin/pkg/admission/noderestriction`:
//! a node may create and modify only its own Node and its own Lease in `kube-node-lease`), the
//! Node strategy (an update of the Node keeps its status, `/status` keeps its spec,
//! `pkg/registry/core/node/strategy.go`), and Lease validation (`pkg/apis/coordination/validation`).
//! Leases need the resourceVersion they read on update: a stale one is a 409, which is what leader
//! election relies on.

#![allow(clippy::result_large_err)]

use serde_json::Value;

use super::http::{Reply, forbidden_object, invalid};
use super::rbac::NODE_LEASE_NAMESPACE;
use super::request::Call;

/// The node a request comes from, if it is one.
fn requesting_node<'a>(call: &'a Call<'_>) -> Option<&'a str> {
    call.user
        .name
        .strip_prefix("system:node:")
        .filter(|_| call.user.in_group("system:nodes"))
}

/// NodeRestriction for a write of `name` (create, update, patch, delete).
pub fn admit_write(call: &Call<'_>, name: &str) -> Reply<()> {
    let Some(node) = requesting_node(call) else {
        return Ok(());
    };
    let def = call.def();
    match def.plural {
        "nodes" if name != node => Err(forbidden_object(
            def,
            name,
            &format!("node \"{node}\" is not allowed to modify node \"{name}\""),
        )),
        "leases" if call.target.namespace == NODE_LEASE_NAMESPACE && name != node => {
            Err(forbidden_object(
                def,
                name,
                "can only access node lease with the same name as the requesting node",
            ))
        }
        _ => Ok(()),
    }
}

/// NodeRestriction's `admitCSR`: a node may create a kubelet-serving or kubelet-client CSR only
/// for itself (its CN exactly `system:node:<name>`). It runs as mutating admission, before the
/// CSR's validation, so an unparseable request is refused here first.
pub fn admit_csr(call: &Call<'_>, name: &str, signer: &str, request: &[u8]) -> Reply<()> {
    let Some(node) = requesting_node(call) else {
        return Ok(());
    };
    if signer != "kubernetes.io/kubelet-serving"
        && signer != "kubernetes.io/kube-apiserver-client-kubelet"
    {
        return Ok(());
    }
    let def = call.def();
    let cn = match crate::pki::csr::parse_pem(request) {
        Ok(req) => req.cn().to_string(),
        Err(e) => {
            let why = format!("unable to parse csr: {}", e.message());
            return Err(forbidden_object(def, name, &why));
        }
    };
    if cn != format!("system:node:{node}") {
        let why = format!("can only create a node CSR with CN=system:node:{node}");
        return Err(forbidden_object(def, name, &why));
    }
    Ok(())
}

/// Lease validation.
pub fn validate(call: &Call<'_>, name: &str, obj: &Value) -> Reply<()> {
    if call.def().plural != "leases" {
        return Ok(());
    }
    for field in ["leaseDurationSeconds", "leaseTransitions"] {
        if let Some(v) = obj["spec"][field].as_i64() {
            let bad = if field == "leaseDurationSeconds" {
                v <= 0
            } else {
                v < 0
            };
            if bad {
                return Err(invalid(
                    call.def(),
                    name,
                    &format!("spec.{field}"),
                    "FieldValueInvalid",
                    &format!(
                        "Invalid value: {v}: must be {}",
                        if field == "leaseDurationSeconds" {
                            "greater than 0"
                        } else {
                            "greater than or equal to 0"
                        }
                    ),
                ));
            }
        }
    }
    Ok(())
}

/// The object an update of a Node (or its status) stores.
pub fn prepare_update(call: &Call<'_>, old: &Value, mut new: Value) -> Value {
    if call.def().plural != "nodes" {
        return new;
    }
    if call.target.subresource == "status" {
        let mut v = old.clone();
        v["status"] = new["status"].clone();
        v["metadata"]["resourceVersion"] = new["metadata"]["resourceVersion"].clone();
        v
    } else {
        new["status"] = old["status"].clone();
        new
    }
}
