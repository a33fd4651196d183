//! Authorization: `system:masters` may do anything (kube-apiserver's privileged group), a subset
//! of the Node authorizer (`plugin/pkg/auth/authorizer/node`: nodes may create and watch CSRs,
//! read their own Node, write Nodes and their status, their Lease in `kube-node-lease`, and events;
//! NodeRestriction admission then holds each node to its own objects, see `nodes.rs`), and RBAC
//! over the stored Roles, ClusterRoles and bindings. Also the default bootstrap policy objects a fresh
//! cluster has (`plugin/pkg/auth/authorizer/rbac/bootstrappolicy/policy.go`) and the ones
//! `kubeadm init` adds.

use serde_json::{Value, json};

use super::authn::UserInfo;
use super::store::Store;

/// What is being asked.
#[derive(Debug, Clone, Default)]
pub struct Attributes {
    /// Verb.
    pub verb: String,
    /// API group ("" for core).
    pub group: String,
    /// Resource plural (empty for non-resource requests).
    pub resource: String,
    /// Subresource.
    pub subresource: String,
    /// Namespace.
    pub namespace: String,
    /// Object name.
    pub name: String,
    /// URL path, for non-resource requests.
    pub path: String,
}

fn str_list(v: &Value) -> Vec<String> {
    v.as_array()
        .map(|a| {
            a.iter()
                .filter_map(|s| s.as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default()
}

fn rule_allows(rule: &Value, a: &Attributes) -> bool {
    let verbs = str_list(&rule["verbs"]);
    if !verbs.iter().any(|v| v == "*" || *v == a.verb) {
        return false;
    }
    if a.resource.is_empty() {
        let urls = str_list(&rule["nonResourceURLs"]);
        return urls.iter().any(|u| {
            u == "*"
                || *u == a.path
                || (u.ends_with('*') && a.path.starts_with(u.trim_end_matches('*')))
        });
    }
    let groups = str_list(&rule["apiGroups"]);
    if !groups.iter().any(|g| g == "*" || *g == a.group) {
        return false;
    }
    let full = if a.subresource.is_empty() {
        a.resource.clone()
    } else {
        format!("{}/{}", a.resource, a.subresource)
    };
    let resources = str_list(&rule["resources"]);
    if !resources
        .iter()
        .any(|r| r == "*" || *r == full || (r.starts_with("*/") && a.subresource == r[2..]))
    {
        return false;
    }
    let names = str_list(&rule["resourceNames"]);
    names.is_empty() || names.contains(&a.name)
}

fn subject_matches(subject: &Value, user: &UserInfo, binding_ns: &str) -> bool {
    let name = subject["name"].as_str().unwrap_or_default();
    match subject["kind"].as_str() {
        Some("User") => name == user.name,
        Some("Group") => user.in_group(name),
        Some("ServiceAccount") => {
            let ns = subject["namespace"].as_str().unwrap_or(binding_ns);
            user.name == format!("system:serviceaccount:{ns}:{name}")
        }
        _ => false,
    }
}

fn role_rules(store: &Store, role_ref: &Value, binding_ns: &str) -> Vec<Value> {
    let name = role_ref["name"].as_str().unwrap_or_default();
    let role = match role_ref["kind"].as_str() {
        Some("ClusterRole") => store.get("clusterroles", "", name),
        Some("Role") => store.get("roles", binding_ns, name),
        _ => None,
    };
    role.and_then(|r| r["rules"].as_array().cloned())
        .unwrap_or_default()
}

fn rbac_allows(store: &Store, user: &UserInfo, a: &Attributes) -> bool {
    let bound = |binding: &Value, ns: &str| -> bool {
        binding["subjects"]
            .as_array()
            .is_some_and(|subs| subs.iter().any(|s| subject_matches(s, user, ns)))
            && role_rules(store, &binding["roleRef"], ns)
                .iter()
                .any(|r| rule_allows(r, a))
    };
    // Every request is authorized: the bindings are read in place, not copied out per request.
    if store
        .range("clusterrolebindings", "", None)
        .any(|(_, b)| bound(b, ""))
    {
        return true;
    }
    !a.namespace.is_empty()
        && store
            .range("rolebindings", &a.namespace, None)
            .any(|(_, b)| bound(b, &a.namespace))
}

/// The Node authorizer's rules that matter to a joining node.
fn node_authorizer_allows(user: &UserInfo, a: &Attributes) -> bool {
    let Some(node) = user.name.strip_prefix("system:node:") else {
        return false;
    };
    if !user.in_group("system:nodes") {
        return false;
    }
    match (
        a.group.as_str(),
        a.resource.as_str(),
        a.subresource.as_str(),
    ) {
        ("certificates.k8s.io", "certificatesigningrequests", "") => {
            matches!(a.verb.as_str(), "create" | "get" | "list" | "watch")
        }
        // authorizeNode: a node writes Node objects (NodeRestriction keeps it to its own) and reads
        // only its own (a list or watch names it by a metadata.name field selector); of the
        // status it may update or patch, not read; deleting is not a node's.
        ("", "nodes", "") => match a.verb.as_str() {
            "create" | "update" | "patch" => true,
            "get" | "list" | "watch" => a.name == node,
            _ => false,
        },
        ("", "nodes", "status") => matches!(a.verb.as_str(), "update" | "patch"),
        // authorizeLease: its own Lease in kube-node-lease (create names none yet).
        ("coordination.k8s.io", "leases", "") => {
            a.namespace == NODE_LEASE_NAMESPACE
                && match a.verb.as_str() {
                    "create" => true,
                    "get" | "update" | "patch" | "delete" => a.name == node,
                    _ => false,
                }
        }
        ("", "events", "") | ("events.k8s.io", "events", "") => {
            matches!(a.verb.as_str(), "create" | "update" | "patch")
        }
        _ => false,
    }
}

/// Where nodes keep their heartbeat Leases.
pub const NODE_LEASE_NAMESPACE: &str = "kube-node-lease";

/// The rules `user` holds in `namespace` (cluster-wide ones included), as a SelfSubjectRulesReview
/// reports them: resource rules, non-resource rules, and whether the list is incomplete (an
/// authorizer that cannot enumerate its rules, the Node authorizer, was involved).
pub fn rules_for(
    store: &Store,
    user: &UserInfo,
    namespace: &str,
) -> (Vec<Value>, Vec<Value>, bool) {
    let mut resource_rules = Vec::new();
    let mut non_resource_rules = Vec::new();
    let mut collect = |binding: &Value, ns: &str| {
        let bound = binding["subjects"]
            .as_array()
            .is_some_and(|subs| subs.iter().any(|s| subject_matches(s, user, ns)));
        if !bound {
            return;
        }
        for r in role_rules(store, &binding["roleRef"], ns) {
            if r["nonResourceURLs"].is_array() {
                non_resource_rules
                    .push(json!({"verbs": r["verbs"], "nonResourceURLs": r["nonResourceURLs"]}));
            } else {
                let mut rule = json!({"verbs": r["verbs"], "apiGroups": r["apiGroups"], "resources": r["resources"]});
                if r["resourceNames"].is_array() {
                    rule["resourceNames"] = r["resourceNames"].clone();
                }
                resource_rules.push(rule);
            }
        }
    };
    for b in store.list("clusterrolebindings", "") {
        collect(&b, "");
    }
    if !namespace.is_empty() {
        for b in store.list("rolebindings", namespace) {
            collect(&b, namespace);
        }
    }
    let node = user.name.starts_with("system:node:") && user.in_group("system:nodes");
    (resource_rules, non_resource_rules, node)
}

/// Whether `user` may do `a`.
pub fn allowed(store: &Store, user: &UserInfo, a: &Attributes) -> bool {
    user.in_group("system:masters")
        || node_authorizer_allows(user, a)
        || rbac_allows(store, user, a)
}

/// The 403 message in kube-apiserver's shape.
pub fn forbidden_message(user: &UserInfo, a: &Attributes) -> String {
    if a.resource.is_empty() {
        return format!(
            "forbidden: User \"{}\" cannot {} path \"{}\"",
            user.name, a.verb, a.path
        );
    }
    let qualified = if a.group.is_empty() {
        a.resource.clone()
    } else {
        format!("{}.{}", a.resource, a.group)
    };
    let object = if a.name.is_empty() {
        qualified
    } else {
        format!("{qualified} \"{}\"", a.name)
    };
    let resource = if a.subresource.is_empty() {
        a.resource.clone()
    } else {
        format!("{}/{}", a.resource, a.subresource)
    };
    let scope = if a.namespace.is_empty() {
        "at the cluster scope".to_string()
    } else {
        format!("in the namespace \"{}\"", a.namespace)
    };
    format!(
        "{object} is forbidden: User \"{}\" cannot {} resource \"{resource}\" in API group \"{}\" {scope}",
        user.name, a.verb, a.group
    )
}

fn cluster_role(name: &str, rules: Value) -> Value {
    json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRole", "metadata": {"name": name, "labels": {"kubernetes.io/bootstrapping": "rbac-defaults"}}, "rules": rules})
}

fn cluster_binding(name: &str, role: &str, subjects: Value) -> Value {
    json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRoleBinding", "metadata": {"name": name},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": role}, "subjects": subjects})
}

fn group(g: &str) -> Value {
    json!({"apiGroup": "rbac.authorization.k8s.io", "kind": "Group", "name": g})
}

/// ClusterRoles and ClusterRoleBindings every cluster starts with.
pub fn default_policy() -> Vec<(&'static str, Value)> {
    vec![
        (
            "clusterroles",
            cluster_role(
                "cluster-admin",
                json!([{"apiGroups": ["*"], "resources": ["*"], "verbs": ["*"]}, {"nonResourceURLs": ["*"], "verbs": ["*"]}]),
            ),
        ),
        (
            "clusterroles",
            cluster_role(
                "system:discovery",
                json!([{"nonResourceURLs": ["/api", "/api/*", "/apis", "/apis/*", "/healthz", "/livez", "/openapi", "/openapi/*", "/readyz", "/version", "/version/"], "verbs": ["get"]}]),
            ),
        ),
        (
            "clusterroles",
            cluster_role(
                "system:public-info-viewer",
                json!([{"nonResourceURLs": ["/healthz", "/livez", "/readyz", "/version", "/version/"], "verbs": ["get"]}]),
            ),
        ),
        (
            "clusterroles",
            cluster_role(
                "system:basic-user",
                json!([
            {"apiGroups": ["authorization.k8s.io"], "resources": ["selfsubjectaccessreviews", "selfsubjectrulesreviews"], "verbs": ["create"]},
            {"apiGroups": ["authentication.k8s.io"], "resources": ["selfsubjectreviews"], "verbs": ["create"]}]),
            ),
        ),
        (
            "clusterroles",
            cluster_role(
                "system:node-bootstrapper",
                json!([{"apiGroups": ["certificates.k8s.io"], "resources": ["certificatesigningrequests"], "verbs": ["create", "get", "list", "watch"]}]),
            ),
        ),
        (
            "clusterroles",
            cluster_role(
                "system:certificates.k8s.io:certificatesigningrequests:nodeclient",
                json!([{"apiGroups": ["certificates.k8s.io"], "resources": ["certificatesigningrequests/nodeclient"], "verbs": ["create"]}]),
            ),
        ),
        (
            "clusterroles",
            cluster_role(
                "system:certificates.k8s.io:certificatesigningrequests:selfnodeclient",
                json!([{"apiGroups": ["certificates.k8s.io"], "resources": ["certificatesigningrequests/selfnodeclient"], "verbs": ["create"]}]),
            ),
        ),
        (
            "clusterrolebindings",
            cluster_binding(
                "cluster-admin",
                "cluster-admin",
                json!([group("system:masters")]),
            ),
        ),
        (
            "clusterrolebindings",
            cluster_binding(
                "system:discovery",
                "system:discovery",
                json!([group("system:authenticated")]),
            ),
        ),
        (
            "clusterrolebindings",
            cluster_binding(
                "system:public-info-viewer",
                "system:public-info-viewer",
                json!([
                    group("system:authenticated"),
                    group("system:unauthenticated")
                ]),
            ),
        ),
        (
            "clusterrolebindings",
            cluster_binding(
                "system:basic-user",
                "system:basic-user",
                json!([group("system:authenticated")]),
            ),
        ),
    ]
}

/// The roles and bindings `kubeadm init` adds for node bootstrap
/// (`cmd/kubeadm/app/phases/bootstraptoken/node/tlsbootstrap.go`): a bootstrap token may create
/// CSRs, have its client CSRs approved, and get Nodes (`AllowBootstrapTokensToGetNodes`, which
/// `kubeadm join` uses to look for a Node of the same name).
pub fn kubeadm_bootstrap_bindings() -> Vec<(&'static str, Value)> {
    let token_group = crate::token::DEFAULT_NODE_TOKEN_GROUP;
    vec![
        (
            "clusterroles",
            cluster_role(
                "kubeadm:get-nodes",
                json!([{"apiGroups": [""], "resources": ["nodes"], "verbs": ["get"]}]),
            ),
        ),
        (
            "clusterrolebindings",
            cluster_binding(
                "kubeadm:get-nodes",
                "kubeadm:get-nodes",
                json!([group(token_group)]),
            ),
        ),
        (
            "clusterrolebindings",
            cluster_binding(
                "kubeadm:kubelet-bootstrap",
                "system:node-bootstrapper",
                json!([group(token_group)]),
            ),
        ),
        (
            "clusterrolebindings",
            cluster_binding(
                "kubeadm:node-autoapprove-bootstrap",
                "system:certificates.k8s.io:certificatesigningrequests:nodeclient",
                json!([group(token_group)]),
            ),
        ),
        (
            "clusterrolebindings",
            cluster_binding(
                "kubeadm:node-autoapprove-certificate-rotation",
                "system:certificates.k8s.io:certificatesigningrequests:selfnodeclient",
                json!([group("system:nodes")]),
            ),
        ),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn store_with(objs: Vec<(&'static str, Value)>) -> Store {
        let mut s = Store::new();
        for (r, o) in objs {
            s.create(r, "", o).unwrap();
        }
        s
    }

    fn attrs(verb: &str, group: &str, resource: &str, sub: &str) -> Attributes {
        Attributes {
            verb: verb.into(),
            group: group.into(),
            resource: resource.into(),
            subresource: sub.into(),
            ..Default::default()
        }
    }

    #[test]
    fn bootstrappers_may_create_csrs_only_with_the_bindings() {
        let bootstrapper = UserInfo {
            name: "system:bootstrap:abcdef".into(),
            groups: vec![
                "system:bootstrappers".into(),
                crate::token::DEFAULT_NODE_TOKEN_GROUP.into(),
                "system:authenticated".into(),
            ],
            uid: String::new(),
            extra: Default::default(),
        };
        let create = attrs(
            "create",
            "certificates.k8s.io",
            "certificatesigningrequests",
            "",
        );
        let bare = store_with(default_policy());
        assert!(!allowed(&bare, &bootstrapper, &create));
        assert_eq!(
            forbidden_message(&bootstrapper, &create),
            "certificatesigningrequests.certificates.k8s.io is forbidden: User \"system:bootstrap:abcdef\" cannot create resource \"certificatesigningrequests\" in API group \"certificates.k8s.io\" at the cluster scope"
        );
        let mut objs = default_policy();
        objs.extend(kubeadm_bootstrap_bindings());
        let full = store_with(objs);
        assert!(allowed(&full, &bootstrapper, &create));
        assert!(allowed(
            &full,
            &bootstrapper,
            &attrs(
                "create",
                "certificates.k8s.io",
                "certificatesigningrequests",
                "nodeclient"
            )
        ));
        assert!(!allowed(
            &full,
            &bootstrapper,
            &attrs(
                "create",
                "certificates.k8s.io",
                "certificatesigningrequests",
                "selfnodeclient"
            )
        ));
        assert!(!allowed(
            &full,
            &bootstrapper,
            &attrs("list", "", "secrets", "")
        ));
        assert!(allowed(
            &full,
            &UserInfo::anonymous(),
            &Attributes {
                verb: "get".into(),
                path: "/version".into(),
                ..Default::default()
            }
        ));
    }
}
