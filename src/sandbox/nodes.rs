//! Nodes and Leases: the NodeRestriction admission plugin (`plugin/pkg/admission/noderestriction`:
//! a node may create and modify only its own Node and its own Lease in `kube-node-lease`), the
//! Node strategy (an update of the Node keeps its status, `/status` keeps its spec,
//! `pkg/registry/core/node/strategy.go`), and Lease validation (`pkg/apis/coordination/validation`).
//! Leases need the resourceVersion they read on update: a stale one is a 409, which is what leader
//! election relies on.

#![allow(clippy::result_large_err)]

use serde_json::Value;

use super::http::{Reply, forbidden_object, invalid, invalid_all};
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

/// NodeRestriction's `admitNode` on what a node writes into its own Node: on create, no label it
/// may not set; on update, no change to taints, ownerReferences or a label it may not set.
pub fn admit_node_object(call: &Call<'_>, old: Option<&Value>, new: &Value) -> Reply<()> {
    let Some(node) = requesting_node(call) else {
        return Ok(());
    };
    if call.def().plural != "nodes" {
        return Ok(());
    }
    let forbid = |why: String| Err(forbidden_object(call.def(), &call.target.name, &why));
    let Some(old) = old else {
        let labels = forbidden_labels(modified_labels(&new["metadata"]["labels"], &Value::Null));
        if !labels.is_empty() {
            return forbid(format!(
                "node \"{node}\" is not allowed to set the following labels: {}",
                labels.join(", ")
            ));
        }
        return Ok(());
    };
    let empty = |v: &Value| v.is_null() || v.as_array().is_some_and(Vec::is_empty);
    let differs = |a: &Value, b: &Value| a != b && !(empty(a) && empty(b));
    if differs(&new["spec"]["taints"], &old["spec"]["taints"]) {
        return forbid(format!("node \"{node}\" is not allowed to modify taints"));
    }
    if differs(
        &new["metadata"]["ownerReferences"],
        &old["metadata"]["ownerReferences"],
    ) {
        return forbid(format!(
            "node \"{node}\" is not allowed to modify ownerReferences"
        ));
    }
    let labels = forbidden_labels(modified_labels(
        &new["metadata"]["labels"],
        &old["metadata"]["labels"],
    ));
    if !labels.is_empty() {
        return forbid(format!(
            "is not allowed to modify labels: {}",
            labels.join(", ")
        ));
    }
    Ok(())
}

/// The label keys whose presence or value differs between `a` and `b`, sorted.
fn modified_labels(a: &Value, b: &Value) -> Vec<String> {
    let empty = serde_json::Map::new();
    let (a, b) = (
        a.as_object().unwrap_or(&empty),
        b.as_object().unwrap_or(&empty),
    );
    let mut keys: Vec<String> = a
        .iter()
        .filter(|(k, v)| b.get(*k) != Some(*v))
        .chain(b.iter().filter(|(k, v)| a.get(*k) != Some(*v)))
        .map(|(k, _)| k.clone())
        .collect();
    keys.sort();
    keys.dedup();
    keys
}

/// Of `keys`, those a kubelet may not set (`getForbiddenLabels`): the
/// `node-restriction.kubernetes.io` namespace, and `kubernetes.io` / `k8s.io` labels that are not
/// the kubelet's own (`pkg/kubelet/apis/well_known_labels.go`).
fn forbidden_labels(keys: Vec<String>) -> Vec<String> {
    const KUBELET_LABELS: &[&str] = &[
        "kubernetes.io/hostname",
        "topology.kubernetes.io/zone",
        "topology.kubernetes.io/region",
        "failure-domain.beta.kubernetes.io/zone",
        "failure-domain.beta.kubernetes.io/region",
        "beta.kubernetes.io/instance-type",
        "node.kubernetes.io/instance-type",
        "kubernetes.io/os",
        "kubernetes.io/arch",
        "beta.kubernetes.io/os",
        "beta.kubernetes.io/arch",
    ];
    let within = |ns: &str, domain: &str| ns == domain || ns.ends_with(&format!(".{domain}"));
    keys.into_iter()
        .filter(|k| {
            let ns = k.split_once('/').map(|(ns, _)| ns).unwrap_or_default();
            let kubelets = KUBELET_LABELS.contains(&k.as_str())
                || within(ns, "kubelet.kubernetes.io")
                || within(ns, "node.kubernetes.io");
            let kubernetes = within(ns, "kubernetes.io") || within(ns, "k8s.io");
            within(ns, "node-restriction.kubernetes.io") || (kubernetes && !kubelets)
        })
        .collect()
}

/// The TaintNodesByCondition admission plugin: a new Node is born `not-ready`, so nothing is
/// scheduled on it before its kubelet says it is ready (`plugin/pkg/admission/nodetaint`).
pub fn taint_new_node(call: &Call<'_>, node: &mut Value) {
    if call.def().plural != "nodes" {
        return;
    }
    const KEY: &str = "node.kubernetes.io/not-ready";
    let taints = &mut node["spec"]["taints"];
    if !taints.is_array() {
        *taints = Value::Array(Vec::new());
    }
    let list = taints.as_array_mut().expect("array");
    if !list
        .iter()
        .any(|t| t["key"] == KEY && t["effect"] == "NoSchedule")
    {
        list.push(serde_json::json!({"key": KEY, "effect": "NoSchedule"}));
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

/// Lease validation, and a Node's taints.
pub fn validate(call: &Call<'_>, name: &str, obj: &Value) -> Reply<()> {
    if call.def().plural == "nodes" {
        let causes = super::validation::taint_causes(obj);
        return if causes.is_empty() {
            Ok(())
        } else {
            Err(invalid_all(call.def(), name, &causes))
        };
    }
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
