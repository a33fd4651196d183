//! The server-side tables kubectl prints from (`Accept: application/json;as=Table;v=v1;g=meta.k8s.io`):
//! the columns kube-apiserver's printers give each kind.

use serde_json::{Value, json};

use super::resources::ResourceDef;

/// A human age like kube-apiserver prints (`5s`, `3m2s`, `4h`, `2d`).
pub fn age(created: &str) -> String {
    let Ok(t) =
        time::OffsetDateTime::parse(created, &time::format_description::well_known::Rfc3339)
    else {
        return "<unknown>".into();
    };
    let s = (time::OffsetDateTime::now_utc() - t).whole_seconds().max(0);
    match s {
        0..120 => format!("{s}s"),
        120..600 => format!("{}m{}s", s / 60, s % 60),
        600..10_800 => format!("{}m", s / 60),
        10_800..172_800 => format!("{}h", s / 3600),
        _ => format!("{}d", s / 86_400),
    }
}

fn csr_condition(obj: &Value) -> String {
    let mut out: Vec<String> = obj["status"]["conditions"]
        .as_array()
        .map(|cs| {
            cs.iter()
                .filter(|c| c["status"] == "True")
                .filter_map(|c| c["type"].as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default();
    if out.is_empty() {
        return "Pending".into();
    }
    if obj["status"]["certificate"]
        .as_str()
        .is_some_and(|c| !c.is_empty())
    {
        out.push("Issued".into());
    }
    out.join(",")
}

fn node_ready(obj: &Value) -> &'static str {
    let ready = obj["status"]["conditions"]
        .as_array()
        .and_then(|cs| cs.iter().find(|c| c["type"] == "Ready"))
        .map(|c| c["status"] == "True");
    match ready {
        Some(true) => "Ready",
        Some(false) => "NotReady",
        None => "Unknown",
    }
}

fn columns(def: &ResourceDef) -> Vec<(&'static str, &'static str)> {
    match def.plural {
        "namespaces" => vec![("Name", "string"), ("Status", "string"), ("Age", "string")],
        "secrets" => vec![
            ("Name", "string"),
            ("Type", "string"),
            ("Data", "string"),
            ("Age", "string"),
        ],
        "configmaps" => vec![("Name", "string"), ("Data", "string"), ("Age", "string")],
        "nodes" => vec![
            ("Name", "string"),
            ("Status", "string"),
            ("Roles", "string"),
            ("Age", "string"),
            ("Version", "string"),
        ],
        "leases" => vec![("Name", "string"), ("Holder", "string"), ("Age", "string")],
        "serviceaccounts" => vec![("Name", "string"), ("Secrets", "string"), ("Age", "string")],
        "events" => vec![
            ("Last Seen", "string"),
            ("Type", "string"),
            ("Reason", "string"),
            ("Object", "string"),
            ("Message", "string"),
        ],
        "certificatesigningrequests" => vec![
            ("Name", "string"),
            ("Age", "string"),
            ("SignerName", "string"),
            ("Requestor", "string"),
            ("RequestedDuration", "string"),
            ("Condition", "string"),
        ],
        _ => vec![("Name", "string"), ("Age", "string")],
    }
}

fn cells(def: &ResourceDef, obj: &Value) -> Vec<Value> {
    let name = obj["metadata"]["name"].clone();
    let age = json!(age(obj["metadata"]["creationTimestamp"]
        .as_str()
        .unwrap_or_default()));
    let count = |v: &Value| json!(v.as_object().map(|m| m.len()).unwrap_or(0));
    match def.plural {
        "namespaces" => vec![
            name,
            json!(obj["status"]["phase"].as_str().unwrap_or("Active")),
            age,
        ],
        "secrets" => vec![name, obj["type"].clone(), count(&obj["data"]), age],
        "configmaps" => vec![name, count(&obj["data"]), age],
        "nodes" => vec![
            name,
            json!(node_ready(obj)),
            json!("<none>"),
            age,
            json!(
                obj["status"]["nodeInfo"]["kubeletVersion"]
                    .as_str()
                    .unwrap_or_default()
            ),
        ],
        "leases" => vec![
            name,
            json!(obj["spec"]["holderIdentity"].as_str().unwrap_or_default()),
            age,
        ],
        "serviceaccounts" => vec![name, json!(0), age],
        "events" => vec![
            age,
            obj["type"].clone(),
            obj["reason"].clone(),
            json!(format!(
                "{}/{}",
                obj["involvedObject"]["kind"]
                    .as_str()
                    .unwrap_or_default()
                    .to_ascii_lowercase(),
                obj["involvedObject"]["name"].as_str().unwrap_or_default()
            )),
            obj["message"].clone(),
        ],
        "certificatesigningrequests" => vec![
            name,
            age,
            obj["spec"]["signerName"].clone(),
            obj["spec"]["username"].clone(),
            json!(
                obj["spec"]["expirationSeconds"]
                    .as_u64()
                    .map(|s| format!("{}m", s / 60))
                    .unwrap_or_else(|| "<none>".into())
            ),
            json!(csr_condition(obj)),
        ],
        _ => vec![name, age],
    }
}

/// A `meta.k8s.io/v1` Table of `objects`; `with_columns` false leaves out the column definitions
/// (watch events after the first, as kube-apiserver sends them).
pub fn table(def: &ResourceDef, objects: &[Value], resource_version: u64) -> Value {
    table_with(def, objects, resource_version, true)
}

/// [`table`], choosing whether the column definitions go along.
pub fn table_with(
    def: &ResourceDef,
    objects: &[Value],
    resource_version: u64,
    with_columns: bool,
) -> Value {
    let cols: Vec<Value> = columns(def)
        .iter()
        .map(|(n, t)| {
            let mut c =
                json!({"name": n, "type": t, "format": "", "description": n, "priority": 0});
            if *n == "Name" {
                c["format"] = json!("name");
            }
            c
        })
        .collect();
    let rows: Vec<Value> = objects
        .iter()
        .map(|o| {
            json!({"cells": cells(def, o), "object": {"kind": "PartialObjectMetadata", "apiVersion": "meta.k8s.io/v1", "metadata": o["metadata"]}})
        })
        .collect();
    let cols = if with_columns { json!(cols) } else { json!([]) };
    json!({"kind": "Table", "apiVersion": "meta.k8s.io/v1", "metadata": {"resourceVersion": resource_version.to_string()}, "columnDefinitions": cols, "rows": rows})
}
