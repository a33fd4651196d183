//! Object validation the sandbox shares with kube-apiserver, field path for field path (the
//! causes a client reads): metadata (`apimachinery/pkg/api/validation/objectmeta.go`,
//! `pkg/apis/meta/v1/validation`), Node taints (`pkg/apis/core/validation`
//! `validateNodeTaints`), and RBAC objects (`pkg/apis/rbac/validation`).

use serde_json::{Map, Value};

use super::http::Cause;

/// kube-apiserver's cap on the total size of an object's annotations
/// (`TotalAnnotationSizeLimitB`, 256 KiB).
pub const ANNOTATIONS_LIMIT: usize = 256 * 1024;

/// Label values and the name part of a qualified name (`IsQualifiedName`, `IsValidLabelValue`).
fn name_part_ok(s: &str) -> bool {
    static NAME: std::sync::OnceLock<regex::Regex> = std::sync::OnceLock::new();
    let re = NAME.get_or_init(|| {
        regex::Regex::new(r"^([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]$").expect("regex")
    });
    s.len() <= 63 && re.is_match(s)
}

/// `IsDNS1123Subdomain`, the prefix of a qualified name.
fn dns_subdomain_ok(s: &str) -> bool {
    static SUBDOMAIN: std::sync::OnceLock<regex::Regex> = std::sync::OnceLock::new();
    let re = SUBDOMAIN.get_or_init(|| {
        regex::Regex::new(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
            .expect("regex")
    });
    s.len() <= 253 && re.is_match(s)
}

/// `IsQualifiedName`: `[prefix/]name`, the form of label keys, annotation keys and taint keys.
pub fn qualified_name_ok(s: &str) -> bool {
    match s.split_once('/') {
        Some((prefix, name)) => {
            !prefix.is_empty() && dns_subdomain_ok(prefix) && name_part_ok(name)
        }
        None => name_part_ok(s),
    }
}

/// `IsValidLabelValue`: empty, or a name part.
pub fn label_value_ok(s: &str) -> bool {
    s.is_empty() || name_part_ok(s)
}

const QUALIFIED_NAME_RULE: &str = "name part must consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character (e.g. 'MyName',  or 'my.name',  or '123-abc', regex used for validation is '([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]') with an optional DNS subdomain prefix and '/' (e.g. 'example.com/MyName')";
const LABEL_VALUE_RULE: &str = "a valid label must be an empty string or consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character (e.g. 'MyValue',  or 'my_value',  or '12345', regex used for validation is '(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?'), at most 63 characters";

/// `ValidateObjectMeta`'s rules on labels and annotations. Every cause of a label or annotation
/// names the map, not the key (`field.Invalid(fldPath, …)` upstream).
pub fn metadata_causes(meta: &Value) -> Vec<Cause> {
    let empty = Map::new();
    let mut causes = Vec::new();
    let annotations = meta["annotations"].as_object().unwrap_or(&empty);
    for k in annotations.keys() {
        if !qualified_name_ok(&k.to_lowercase()) {
            causes.push(Cause::new(
                "metadata.annotations",
                "FieldValueInvalid",
                format!("Invalid value: \"{k}\": {QUALIFIED_NAME_RULE}"),
            ));
        }
    }
    let total: usize = annotations
        .iter()
        .map(|(k, v)| k.len() + v.as_str().map(str::len).unwrap_or(0))
        .sum();
    if total > ANNOTATIONS_LIMIT {
        causes.push(Cause::new(
            "metadata.annotations",
            "FieldValueTooLong",
            format!("Too long: must have at most {ANNOTATIONS_LIMIT} bytes"),
        ));
    }
    for (k, v) in meta["labels"].as_object().unwrap_or(&empty) {
        if !qualified_name_ok(k) {
            causes.push(Cause::new(
                "metadata.labels",
                "FieldValueInvalid",
                format!("Invalid value: \"{k}\": {QUALIFIED_NAME_RULE}"),
            ));
        }
        let v = v.as_str().unwrap_or_default();
        if !label_value_ok(v) {
            causes.push(Cause::new(
                "metadata.labels",
                "FieldValueInvalid",
                format!("Invalid value: \"{v}\": {LABEL_VALUE_RULE}"),
            ));
        }
    }
    causes
}

/// A Node's taints. Upstream validates them under the path `metadata.taints` (sic), and clients
/// see that path, so the sandbox names it the same way.
pub fn taint_causes(node: &Value) -> Vec<Cause> {
    let mut causes = Vec::new();
    let mut seen = std::collections::HashSet::new();
    for (i, t) in node["spec"]["taints"]
        .as_array()
        .into_iter()
        .flatten()
        .enumerate()
    {
        let at = format!("metadata.taints[{i}]");
        let key = t["key"].as_str().unwrap_or_default();
        if !qualified_name_ok(key) {
            causes.push(Cause::new(
                format!("{at}.key"),
                "FieldValueInvalid",
                format!("Invalid value: \"{key}\": {QUALIFIED_NAME_RULE}"),
            ));
        }
        let value = t["value"].as_str().unwrap_or_default();
        if !label_value_ok(value) {
            causes.push(Cause::new(
                format!("{at}.value"),
                "FieldValueInvalid",
                format!("Invalid value: \"{value}\": {LABEL_VALUE_RULE}"),
            ));
        }
        let effect = t["effect"].as_str().unwrap_or_default();
        match effect {
            "" => causes.push(Cause::new(
                format!("{at}.effect"),
                "FieldValueRequired",
                "Required value",
            )),
            "NoSchedule" | "PreferNoSchedule" | "NoExecute" => {}
            other => causes.push(Cause::new(
                format!("{at}.effect"),
                "FieldValueNotSupported",
                format!("Unsupported value: \"{other}\": supported values: \"NoSchedule\", \"PreferNoSchedule\", \"NoExecute\""),
            )),
        }
        if !seen.insert((key.to_string(), effect.to_string())) {
            causes.push(Cause::new(
                at,
                "FieldValueDuplicate",
                "Duplicate value: taints must be unique by key and effect pair",
            ));
        }
    }
    causes
}

/// The rules of a Role or ClusterRole (`ValidatePolicyRule`).
pub fn rule_causes(obj: &Value, namespaced: bool) -> Vec<Cause> {
    let mut causes = Vec::new();
    let len = |r: &Value, k: &str| r[k].as_array().map(Vec::len).unwrap_or(0);
    for (i, r) in obj["rules"].as_array().into_iter().flatten().enumerate() {
        let at = format!("rules[{i}]");
        if len(r, "verbs") == 0 {
            causes.push(Cause::new(
                format!("{at}.verbs"),
                "FieldValueRequired",
                "Required value: verbs must contain at least one value",
            ));
        }
        if len(r, "nonResourceURLs") > 0 {
            if namespaced {
                causes.push(Cause::new(
                    format!("{at}.nonResourceURLs"),
                    "FieldValueInvalid",
                    "Invalid value: namespaced rules cannot apply to non-resource URLs",
                ));
            }
            if len(r, "apiGroups") + len(r, "resources") + len(r, "resourceNames") > 0 {
                causes.push(Cause::new(
                    format!("{at}.nonResourceURLs"),
                    "FieldValueInvalid",
                    "Invalid value: rules cannot apply to both regular resources and non-resource URLs",
                ));
            }
            continue;
        }
        if len(r, "apiGroups") == 0 {
            causes.push(Cause::new(
                format!("{at}.apiGroups"),
                "FieldValueRequired",
                "Required value: resource rules must supply at least one api group",
            ));
        }
        if len(r, "resources") == 0 {
            causes.push(Cause::new(
                format!("{at}.resources"),
                "FieldValueRequired",
                "Required value: resource rules must supply at least one resource",
            ));
        }
    }
    causes
}

/// A RoleBinding's or ClusterRoleBinding's roleRef and subjects.
pub fn binding_causes(obj: &Value, namespaced: bool) -> Vec<Cause> {
    const RBAC: &str = "rbac.authorization.k8s.io";
    let mut causes = Vec::new();
    let role = &obj["roleRef"];
    let group = role["apiGroup"].as_str().unwrap_or_default();
    if group != RBAC {
        causes.push(Cause::new(
            "roleRef.apiGroup",
            "FieldValueNotSupported",
            format!("Unsupported value: \"{group}\": supported values: \"{RBAC}\""),
        ));
    }
    let kind = role["kind"].as_str().unwrap_or_default();
    let kinds: &[&str] = if namespaced {
        &["Role", "ClusterRole"]
    } else {
        &["ClusterRole"]
    };
    if !kinds.contains(&kind) {
        causes.push(Cause::new(
            "roleRef.kind",
            "FieldValueNotSupported",
            format!("Unsupported value: \"{kind}\": supported values: {kinds:?}"),
        ));
    }
    if role["name"].as_str().unwrap_or_default().is_empty() {
        causes.push(Cause::new(
            "roleRef.name",
            "FieldValueRequired",
            "Required value",
        ));
    }
    for (i, s) in obj["subjects"].as_array().into_iter().flatten().enumerate() {
        let at = format!("subjects[{i}]");
        if s["name"].as_str().unwrap_or_default().is_empty() {
            causes.push(Cause::new(
                format!("{at}.name"),
                "FieldValueRequired",
                "Required value",
            ));
        }
        let group = s["apiGroup"].as_str().unwrap_or_default();
        match s["kind"].as_str().unwrap_or_default() {
            "ServiceAccount" => {
                if !group.is_empty() {
                    causes.push(Cause::new(
                        format!("{at}.apiGroup"),
                        "FieldValueNotSupported",
                        format!("Unsupported value: \"{group}\": supported values: \"\""),
                    ));
                }
                if !namespaced && s["namespace"].as_str().unwrap_or_default().is_empty() {
                    causes.push(Cause::new(
                        format!("{at}.namespace"),
                        "FieldValueRequired",
                        "Required value",
                    ));
                }
            }
            "User" | "Group" if group != RBAC => causes.push(Cause::new(
                format!("{at}.apiGroup"),
                "FieldValueNotSupported",
                format!("Unsupported value: \"{group}\": supported values: \"{RBAC}\""),
            )),
            "User" | "Group" => {}
            other => causes.push(Cause::new(
                format!("{at}.kind"),
                "FieldValueNotSupported",
                format!("Unsupported value: \"{other}\": supported values: \"ServiceAccount\", \"User\", \"Group\""),
            )),
        }
    }
    causes
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn annotation_sizes_are_capped() {
        let big = "x".repeat(ANNOTATIONS_LIMIT);
        let causes = metadata_causes(&json!({"annotations": {"a": big}}));
        assert_eq!(causes[0].field, "metadata.annotations");
        assert!(metadata_causes(&json!({"annotations": {"a": "b"}})).is_empty());
    }

    #[test]
    fn label_keys_and_values_follow_the_qualified_name_rules() {
        assert!(qualified_name_ok("kubernetes.io/hostname"));
        assert!(qualified_name_ok("node-role.kubernetes.io/control-plane"));
        assert!(!qualified_name_ok("not a key!"));
        assert!(!qualified_name_ok("/x"));
        assert!(!qualified_name_ok(&"x".repeat(64)));
        assert!(label_value_ok("") && label_value_ok("a.b-c_d"));
        assert!(!label_value_ok("not a value!") && !label_value_ok(&"x".repeat(64)));
        let causes = metadata_causes(&json!({"labels": {"ok": "not a value!", "bad key!": "v"}}));
        assert_eq!(causes.len(), 2);
        assert!(causes.iter().all(|c| c.field == "metadata.labels"));
    }

    #[test]
    fn taints_are_checked_under_upstreams_path() {
        let node = json!({"spec": {"taints": [{"key": "a", "effect": "Sometimes"}, {"key": "a", "effect": "NoSchedule"}, {"key": "a", "effect": "NoSchedule"}]}});
        let fields: Vec<String> = taint_causes(&node).into_iter().map(|c| c.field).collect();
        assert_eq!(fields, ["metadata.taints[0].effect", "metadata.taints[2]"]);
    }
}
