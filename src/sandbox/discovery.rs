//! Discovery: `/version`, `/api`, `/apis`, the resource lists, and the minimal OpenAPI v3 kubectl
//! reads to validate on the server.

use serde_json::{Value, json};

use super::resources::{RESOURCES, ResourceDef};

/// The release whose rules the sandbox follows: the one `tests/kube/` builds and the conformance
/// goldens were recorded from (`fixtures/conformance/`).
pub const RELEASE: (&str, &str, &str) = ("1", "37", "2");

/// `/version`, with the fields of the release the sandbox is held to; `gitVersion` says it is the
/// sandbox (as semver build metadata, which version comparisons ignore).
pub fn version() -> Value {
    let (major, minor, patch) = RELEASE;
    json!({"major": major, "minor": minor, "emulationMajor": major, "emulationMinor": minor,
        "minCompatibilityMajor": major, "minCompatibilityMinor": (minor.parse::<u32>().unwrap_or(1) - 1).to_string(),
        "gitVersion": format!("v{major}.{minor}.{patch}+bootlet-sandbox"), "gitCommit": "0000000000000000000000000000000000000000",
        "gitTreeState": "clean", "buildDate": "2026-01-01T00:00:00Z", "goVersion": "rust", "compiler": "rustc", "platform": "linux/amd64"})
}

/// `/api`.
pub fn api_versions(server_address: &str) -> Value {
    json!({"kind": "APIVersions", "versions": ["v1"], "serverAddressByClientCIDRs": [{"clientCIDR": "0.0.0.0/0", "serverAddress": server_address}]})
}

fn groups() -> Vec<&'static str> {
    let mut g: Vec<&str> = Vec::new();
    for r in RESOURCES.iter().filter(|r| !r.group.is_empty()) {
        if !g.contains(&r.group) {
            g.push(r.group);
        }
    }
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
            let (kind, verbs, group, version) = match *sub {
                "token" => (
                    "TokenRequest",
                    json!(["create"]),
                    "authentication.k8s.io",
                    "v1",
                ),
                _ => (d.kind, json!(["get", "patch", "update"]), "", ""),
            };
            let mut s = json!({"name": format!("{}/{sub}", d.plural), "singularName": "", "namespaced": d.namespaced, "kind": kind, "verbs": verbs});
            if !group.is_empty() {
                s["group"] = json!(group);
                s["version"] = json!(version);
            }
            resources.push(s);
        }
    }
    Some(
        json!({"kind": "APIResourceList", "apiVersion": "v1", "groupVersion": defs[0].api_version(), "resources": resources}),
    )
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
        json!({"openapi": "3.0.0", "info": {"title": "Kubernetes (bootlet sandbox)", "version": format!("v{}.{}.{}", RELEASE.0, RELEASE.1, RELEASE.2)}, "paths": paths, "components": {}}),
    )
}
