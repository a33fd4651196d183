//! The resources the sandbox serves, their discovery documents, and the server-side tables kubectl
//! prints from.

use serde_json::{Value, json};

/// One served resource.
#[derive(Debug, Clone, Copy)]
pub struct ResourceDef {
    /// API group ("" = core).
    pub group: &'static str,
    /// Version.
    pub version: &'static str,
    /// Plural.
    pub plural: &'static str,
    /// Singular.
    pub singular: &'static str,
    /// Kind.
    pub kind: &'static str,
    /// Namespaced?
    pub namespaced: bool,
    /// Short names for kubectl.
    pub short_names: &'static [&'static str],
    /// Verbs.
    pub verbs: &'static [&'static str],
    /// Subresources.
    pub subresources: &'static [&'static str],
}

const STD_VERBS: &[&str] = &[
    "create", "delete", "get", "list", "patch", "update", "watch",
];

/// Everything served.
pub const RESOURCES: &[ResourceDef] = &[
    ResourceDef {
        group: "",
        version: "v1",
        plural: "namespaces",
        singular: "namespace",
        kind: "Namespace",
        namespaced: false,
        short_names: &["ns"],
        verbs: STD_VERBS,
        subresources: &[],
    },
    ResourceDef {
        group: "",
        version: "v1",
        plural: "secrets",
        singular: "secret",
        kind: "Secret",
        namespaced: true,
        short_names: &[],
        verbs: STD_VERBS,
        subresources: &[],
    },
    ResourceDef {
        group: "",
        version: "v1",
        plural: "configmaps",
        singular: "configmap",
        kind: "ConfigMap",
        namespaced: true,
        short_names: &["cm"],
        verbs: STD_VERBS,
        subresources: &[],
    },
    ResourceDef {
        group: "",
        version: "v1",
        plural: "nodes",
        singular: "node",
        kind: "Node",
        namespaced: false,
        short_names: &["no"],
        verbs: STD_VERBS,
        subresources: &["status"],
    },
    ResourceDef {
        group: "certificates.k8s.io",
        version: "v1",
        plural: "certificatesigningrequests",
        singular: "certificatesigningrequest",
        kind: "CertificateSigningRequest",
        namespaced: false,
        short_names: &["csr"],
        verbs: STD_VERBS,
        subresources: &["approval", "status"],
    },
    ResourceDef {
        group: "rbac.authorization.k8s.io",
        version: "v1",
        plural: "clusterroles",
        singular: "clusterrole",
        kind: "ClusterRole",
        namespaced: false,
        short_names: &[],
        verbs: STD_VERBS,
        subresources: &[],
    },
    ResourceDef {
        group: "rbac.authorization.k8s.io",
        version: "v1",
        plural: "clusterrolebindings",
        singular: "clusterrolebinding",
        kind: "ClusterRoleBinding",
        namespaced: false,
        short_names: &[],
        verbs: STD_VERBS,
        subresources: &[],
    },
    ResourceDef {
        group: "rbac.authorization.k8s.io",
        version: "v1",
        plural: "roles",
        singular: "role",
        kind: "Role",
        namespaced: true,
        short_names: &[],
        verbs: STD_VERBS,
        subresources: &[],
    },
    ResourceDef {
        group: "rbac.authorization.k8s.io",
        version: "v1",
        plural: "rolebindings",
        singular: "rolebinding",
        kind: "RoleBinding",
        namespaced: true,
        short_names: &[],
        verbs: STD_VERBS,
        subresources: &[],
    },
    ResourceDef {
        group: "authentication.k8s.io",
        version: "v1",
        plural: "selfsubjectreviews",
        singular: "selfsubjectreview",
        kind: "SelfSubjectReview",
        namespaced: false,
        short_names: &[],
        verbs: &["create"],
        subresources: &[],
    },
];

impl ResourceDef {
    /// `group/version` or `version`.
    pub fn api_version(&self) -> String {
        if self.group.is_empty() {
            self.version.to_string()
        } else {
            format!("{}/{}", self.group, self.version)
        }
    }

    /// `plural.group` or `plural`, as in Status messages.
    pub fn qualified(&self) -> String {
        if self.group.is_empty() {
            self.plural.to_string()
        } else {
            format!("{}.{}", self.plural, self.group)
        }
    }
}

/// The resource served at group/version/plural.
pub fn find(group: &str, version: &str, plural: &str) -> Option<&'static ResourceDef> {
    RESOURCES
        .iter()
        .find(|r| r.group == group && r.version == version && r.plural == plural)
}

/// `/version`.
pub fn version() -> Value {
    json!({"major": "1", "minor": "32", "gitVersion": "v1.32.0-bootlet-sandbox", "gitCommit": "0000000000000000000000000000000000000000",
        "gitTreeState": "clean", "buildDate": "2026-01-01T00:00:00Z", "goVersion": "rust", "compiler": "rustc", "platform": "linux/amd64"})
}

/// `/api`.
pub fn api_versions(server_address: &str) -> Value {
    json!({"kind": "APIVersions", "versions": ["v1"], "serverAddressByClientCIDRs": [{"clientCIDR": "0.0.0.0/0", "serverAddress": server_address}]})
}

fn groups() -> Vec<&'static str> {
    let mut g: Vec<&str> = RESOURCES
        .iter()
        .map(|r| r.group)
        .filter(|g| !g.is_empty())
        .collect();
    g.dedup();
    g
}

fn group_doc(g: &str) -> Value {
    let gv = format!("{g}/v1");
    json!({"name": g, "versions": [{"groupVersion": gv, "version": "v1"}], "preferredVersion": {"groupVersion": gv, "version": "v1"}})
}

/// `/apis`.
pub fn api_group_list() -> Value {
    json!({"kind": "APIGroupList", "apiVersion": "v1", "groups": groups().iter().map(|g| group_doc(g)).collect::<Vec<_>>()})
}

/// `/apis/<group>`.
pub fn api_group(group: &str) -> Option<Value> {
    groups().contains(&group).then(|| {
        let mut d = group_doc(group);
        d["kind"] = json!("APIGroup");
        d["apiVersion"] = json!("v1");
        d
    })
}

/// `/api/v1` or `/apis/<group>/<version>`.
pub fn api_resource_list(group: &str, version: &str) -> Option<Value> {
    let defs: Vec<&ResourceDef> = RESOURCES
        .iter()
        .filter(|r| r.group == group && r.version == version)
        .collect();
    if defs.is_empty() {
        return None;
    }
    let mut resources = Vec::new();
    for d in &defs {
        let mut r = json!({"name": d.plural, "singularName": d.singular, "namespaced": d.namespaced, "kind": d.kind, "verbs": d.verbs});
        if !d.short_names.is_empty() {
            r["shortNames"] = json!(d.short_names);
        }
        resources.push(r);
        for sub in d.subresources {
            resources.push(json!({"name": format!("{}/{sub}", d.plural), "singularName": "", "namespaced": d.namespaced, "kind": d.kind, "verbs": ["get", "patch", "update"]}));
        }
    }
    Some(
        json!({"kind": "APIResourceList", "apiVersion": "v1", "groupVersion": defs[0].api_version(), "resources": resources}),
    )
}

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

/// A `meta.k8s.io/v1` Table of `objects`.
pub fn table(def: &ResourceDef, objects: &[Value], resource_version: u64) -> Value {
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
    json!({"kind": "Table", "apiVersion": "meta.k8s.io/v1", "metadata": {"resourceVersion": resource_version.to_string()}, "columnDefinitions": cols, "rows": rows})
}

fn gv_path(group: &str, version: &str) -> String {
    if group.is_empty() {
        format!("api/{version}")
    } else {
        format!("apis/{group}/{version}")
    }
}

/// `/openapi/v3`: one entry per group-version.
pub fn openapi_v3_root() -> Value {
    let mut paths = serde_json::Map::new();
    for d in RESOURCES {
        let p = gv_path(d.group, d.version);
        paths.insert(
            p.clone(),
            json!({"serverRelativeURL": format!("/openapi/v3/{p}?hash=bootlet-sandbox")}),
        );
    }
    json!({"paths": paths})
}

/// `/openapi/v3/<gv>`: only what kubectl reads from it, the PATCH operation of each object path
/// with its group-version-kind and the `fieldValidation` parameter (which tells kubectl to validate
/// on the server instead of downloading schemas). The sandbox has no schemas to offer.
pub fn openapi_v3_group_version(gv: &str) -> Option<Value> {
    let defs: Vec<&ResourceDef> = RESOURCES
        .iter()
        .filter(|d| gv_path(d.group, d.version) == gv)
        .collect();
    if defs.is_empty() {
        return None;
    }
    let mut paths = serde_json::Map::new();
    for d in defs.iter().filter(|d| d.verbs.contains(&"patch")) {
        let base = format!("/{gv}");
        let path = if d.namespaced {
            format!("{base}/namespaces/{{namespace}}/{}/{{name}}", d.plural)
        } else {
            format!("{base}/{}/{{name}}", d.plural)
        };
        paths.insert(path, json!({"patch": {
            "x-kubernetes-group-version-kind": {"group": d.group, "version": d.version, "kind": d.kind},
            "parameters": [{"name": "fieldValidation", "in": "query", "schema": {"type": "string", "uniqueItems": true}}],
            "responses": {"200": {"description": "OK"}}
        }}));
    }
    Some(
        json!({"openapi": "3.0.0", "info": {"title": "Kubernetes (bootlet sandbox)", "version": "v1.32.0"}, "paths": paths, "components": {}}),
    )
}
