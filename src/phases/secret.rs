//! secret (admin side): what `kubeadm init phase bootstrap-token` sets up, made idempotent.
//!
//! - `kube-system/bootstrap-token-<id>` of type `bootstrap.kubernetes.io/token` with `token-id`,
//!   `token-secret`, `expiration` (TTL), both usages and `auth-extra-groups`
//!   (`cmd/kubeadm/app/apis/bootstraptoken/v1/utils.go` `BootstrapTokenToSecret`);
//! - the ClusterRoleBindings of `cmd/kubeadm/app/phases/bootstraptoken/node/tlsbootstrap.go`
//!   (bootstrappers may create CSRs and get client CSRs auto-approved; nodes may renew);
//! - `kube-public/cluster-info` with only the cluster entry, and the Role/RoleBinding letting
//!   `system:anonymous` get it (`phases/bootstraptoken/clusterinfo/clusterinfo.go`).
//!
//! An identical Secret is left alone; one with the same id and another secret is an error; an
//! expired one is refused: bootlet never revives an expired token. Bindings are fixed names, so re-runs never duplicate them; a binding
//! missing our group gets it added.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{ConfigMap, Secret};
use k8s_openapi::api::rbac::v1::{
    ClusterRoleBinding, PolicyRule, Role, RoleBinding, RoleRef, Subject,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

use super::Check;
use crate::cluster::{Cluster, redacted_json};
use crate::engine::Ctx;
use crate::error::{Error, ErrorKind, Result};
use crate::token::BootstrapToken;

const NS_SYSTEM: &str = "kube-system";
const NS_PUBLIC: &str = "kube-public";
const CLUSTER_INFO: &str = "cluster-info";
const CLUSTER_INFO_RBAC: &str = "kubeadm:bootstrap-signer-clusterinfo";
const RBAC_GROUP: &str = "rbac.authorization.k8s.io";

/// The ClusterRoleBindings kubeadm creates: (binding, cluster role, subject group or None for the
/// token's groups).
const BINDINGS: [(&str, &str, Option<&str>); 3] = [
    (
        "kubeadm:kubelet-bootstrap",
        "system:node-bootstrapper",
        None,
    ),
    (
        "kubeadm:node-autoapprove-bootstrap",
        "system:certificates.k8s.io:certificatesigningrequests:nodeclient",
        None,
    ),
    (
        "kubeadm:node-autoapprove-certificate-rotation",
        "system:certificates.k8s.io:certificatesigningrequests:selfnodeclient",
        Some("system:nodes"),
    ),
];

/// Done when every object exists as it should.
pub async fn check(cx: &mut Ctx) -> Result<Check> {
    let Some(admin) = cx.admin()? else {
        return Ok(Check::Skip(
            "no --admin-kubeconfig: creating the token Secret and RBAC is the admin's step".into(),
        ));
    };
    let Some((token, _)) = cx.token()? else {
        return Ok(Check::NotDone("no bootstrap token yet".into()));
    };
    let mut missing = Vec::new();
    match admin.get_secret(NS_SYSTEM, &token.secret_name()).await? {
        Some(s) => {
            if let Err(why) = secret_matches(&s, &token) {
                missing.push(format!("Secret {}: {why}", token.secret_name()));
            }
        }
        None => missing.push(format!("Secret {}", token.secret_name())),
    }
    for (name, role, group) in BINDINGS {
        let groups = groups_for(cx, group);
        match admin.get_cluster_role_binding(name).await? {
            Some(b)
                if b.role_ref.name == role
                    && groups.iter().all(|g| has_group(b.subjects.as_deref(), g)) => {}
            _ => missing.push(format!("ClusterRoleBinding {name}")),
        }
    }
    if admin
        .get_configmap(NS_PUBLIC, CLUSTER_INFO)
        .await?
        .is_none()
    {
        missing.push("ConfigMap kube-public/cluster-info".into());
    }
    if admin
        .get_role(NS_PUBLIC, CLUSTER_INFO_RBAC)
        .await?
        .is_none()
    {
        missing.push(format!("Role {CLUSTER_INFO_RBAC}"));
    }
    if admin
        .get_role_binding(NS_PUBLIC, CLUSTER_INFO_RBAC)
        .await?
        .is_none()
    {
        missing.push(format!("RoleBinding {CLUSTER_INFO_RBAC}"));
    }
    Ok(if missing.is_empty() {
        Check::Done(format!(
            "token Secret {}, bootstrapper bindings and cluster-info are in place",
            token.secret_name()
        ))
    } else {
        Check::NotDone(format!("missing or different: {}", missing.join(", ")))
    })
}

/// Ensures the Secret, bindings and cluster-info.
pub async fn run(cx: &mut Ctx) -> Result<()> {
    let admin = cx
        .admin()?
        .ok_or_else(|| cx.missing("admin kubeconfig", "--admin-kubeconfig FILE"))?;
    let (token, _) = cx
        .token()?
        .ok_or_else(|| cx.missing("bootstrap token", "a given token or the state token file"))?;
    ensure_secret(cx, &admin, &token).await?;
    for (name, role, group) in BINDINGS {
        let groups = groups_for(cx, group);
        ensure_binding(cx, &admin, name, role, &groups).await?;
    }
    ensure_cluster_info(cx, &admin).await?;
    print_join_command(cx, &token)?;
    Ok(())
}

/// The command a node joins with: endpoint, the CA pin, and the token by reference (it is never
/// printed; hand it over in a file or `BOOTLET_TOKEN`).
fn print_join_command(cx: &mut Ctx, token: &BootstrapToken) -> Result<()> {
    let path = cx
        .settings
        .admin_kubeconfig
        .clone()
        .expect("admin kubeconfig given");
    let access = cx.given_kubeconfig(&path, "the admin kubeconfig")?;
    let Some(ca) = access.ca_pem.as_deref() else {
        return Ok(());
    };
    let pin = crate::pki::pin::Pin::of_cert(
        &crate::pki::parse_certs_pem(ca, "the admin kubeconfig CA")?[0],
    )?;
    let endpoint = access.server.trim_start_matches("https://");
    let stored = cx.world.read_host_path(cx.layout.path("token_file"));
    let held = match (stored, cx.token_origin()) {
        (Some(p), Some(crate::engine::context::TokenOrigin::StateFile)) => {
            format!("FILE a copy of {} (token {token})", p.display())
        }
        _ => format!("FILE holding token {token}"),
    };
    cx.act(format!(
        "Join a node with: bootlet join {endpoint} --discovery-token-ca-cert-hash {pin} --token-file FILE ({held}); or get a line to paste with: bootlet token create --print-join-command --kubeconfig {}",
        path.display()
    ));
    Ok(())
}

fn groups_for(cx: &Ctx, fixed: Option<&str>) -> Vec<String> {
    match fixed {
        Some(g) => vec![g.to_string()],
        None => cx.settings.token_groups.clone(),
    }
}

fn has_group(subjects: Option<&[Subject]>, group: &str) -> bool {
    subjects
        .unwrap_or_default()
        .iter()
        .any(|s| s.kind == "Group" && s.name == group)
}

fn data_str(s: &Secret, key: &str) -> Option<String> {
    s.data
        .as_ref()
        .and_then(|d| d.get(key))
        .map(|b| String::from_utf8_lossy(&b.0).into_owned())
        .or_else(|| s.string_data.as_ref().and_then(|d| d.get(key).cloned()))
}

/// How an existing Secret differs from what this token needs.
#[derive(Debug, PartialEq, Eq)]
enum Mismatch {
    /// Same id, another secret: someone else's token; never overwrite it.
    OtherSecret,
    /// Fixable by an update: wrong type, a missing usage, expired.
    Fixable(String),
}

impl std::fmt::Display for Mismatch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Mismatch::OtherSecret => f.write_str("holds a different token secret"),
            Mismatch::Fixable(why) => f.write_str(why),
        }
    }
}

/// Ok when `s` is a usable Secret for `token`.
fn secret_matches(s: &Secret, token: &BootstrapToken) -> std::result::Result<(), Mismatch> {
    let secret = data_str(s, "token-secret").unwrap_or_default();
    if !constant_time_eq(secret.as_bytes(), token.secret().expose().as_bytes()) {
        return Err(Mismatch::OtherSecret);
    }
    if s.type_.as_deref() != Some("bootstrap.kubernetes.io/token") {
        return Err(Mismatch::Fixable("of the wrong type".into()));
    }
    for usage in ["usage-bootstrap-authentication", "usage-bootstrap-signing"] {
        if data_str(s, usage).as_deref() != Some("true") {
            return Err(Mismatch::Fixable(format!("missing {usage}=true")));
        }
    }
    if let Some(exp) = data_str(s, "expiration") {
        // An unparseable expiration counts as expired, as the authenticator treats it.
        let ok = time::OffsetDateTime::parse(&exp, &time::format_description::well_known::Rfc3339)
            .is_ok_and(|t| t > time::OffsetDateTime::now_utc());
        if !ok {
            return Err(Mismatch::Fixable("expired".into()));
        }
    }
    Ok(())
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// The token's expiry: the one recorded when bootlet generated it, else now + `--token-ttl`.
fn expiration(cx: &Ctx) -> Option<String> {
    let stored = matches!(
        cx.token_origin(),
        Some(crate::engine::context::TokenOrigin::StateFile)
    );
    if stored && let Some(at) = cx.stored_token_expiry() {
        return Some(crate::pki::cert::fmt_unix(at.unix_timestamp()));
    }
    if cx.settings.token_ttl.is_zero() {
        return None;
    }
    let exp = time::OffsetDateTime::now_utc() + cx.settings.token_ttl;
    Some(crate::pki::cert::fmt_unix(exp.unix_timestamp()))
}

/// The token Secret as kubeadm encodes it (`admin::tokens::secret_for`): both usages, the
/// configured groups, the recorded (or now + TTL) expiry.
fn desired_secret(cx: &Ctx, token: &BootstrapToken) -> Secret {
    let spec = crate::admin::tokens::TokenSpec {
        ttl: cx.settings.token_ttl,
        usages: crate::admin::tokens::USAGES
            .iter()
            .map(|u| u.to_string())
            .collect(),
        groups: cx.settings.token_groups.clone(),
        description: format!(
            "bootstrap token created by bootlet for node {}",
            cx.settings.node_name
        ),
    };
    crate::admin::tokens::secret_for(token, &spec, expiration(cx).as_deref())
}

async fn ensure_secret(cx: &mut Ctx, admin: &Cluster, token: &BootstrapToken) -> Result<()> {
    let name = token.secret_name();
    let desired = desired_secret(cx, token);
    match admin.get_secret(NS_SYSTEM, &name).await? {
        None => {
            admin
                .create_namespaced("secrets", NS_SYSTEM, &desired, redacted_json(&desired))
                .await?;
            cx.act(format!(
                "{} Secret {NS_SYSTEM}/{name} (expires in {:?}, groups {})",
                cx.sent("Created", "Would create"),
                cx.settings.token_ttl,
                cx.settings.token_groups.join(",")
            ));
        }
        Some(existing) => match secret_matches(&existing, token) {
            Ok(()) => cx.act(format!(
                "Secret {NS_SYSTEM}/{name} already exists with this token; left alone"
            )),
            Err(Mismatch::OtherSecret) => {
                return Err(Error::new(
                    ErrorKind::Rejected,
                    format!(
                        "a bootstrap token Secret with id {} already exists with a different secret; use another token, or delete it (kubectl -n {NS_SYSTEM} delete secret {name})",
                        token.id()
                    ),
                ));
            }
            Err(Mismatch::Fixable(why)) if why == "expired" => {
                return Err(Error::new(
                    ErrorKind::Rejected,
                    format!(
                        "the token Secret {NS_SYSTEM}/{name} has expired; bootlet does not revive an expired token: use a fresh one (`bootlet phase token --new-token`, or give another token)"
                    ),
                ));
            }
            Err(Mismatch::Fixable(why)) => {
                let mut updated = desired.clone();
                updated.metadata.resource_version = existing.metadata.resource_version.clone();
                admin
                    .replace_namespaced(
                        "secrets",
                        NS_SYSTEM,
                        &name,
                        &updated,
                        redacted_json(&updated),
                    )
                    .await?;
                cx.act(format!(
                    "{} Secret {NS_SYSTEM}/{name} (it was {why})",
                    cx.sent("Updated", "Would update")
                ));
            }
        },
    }
    Ok(())
}

fn group_subject(g: &str) -> Subject {
    Subject {
        api_group: Some(RBAC_GROUP.into()),
        kind: "Group".into(),
        name: g.into(),
        namespace: None,
    }
}

async fn ensure_binding(
    cx: &mut Ctx,
    admin: &Cluster,
    name: &str,
    role: &str,
    groups: &[String],
) -> Result<()> {
    match admin.get_cluster_role_binding(name).await? {
        None => {
            let b = ClusterRoleBinding {
                metadata: ObjectMeta {
                    name: Some(name.into()),
                    ..Default::default()
                },
                role_ref: RoleRef {
                    api_group: RBAC_GROUP.into(),
                    kind: "ClusterRole".into(),
                    name: role.into(),
                },
                subjects: Some(groups.iter().map(|g| group_subject(g)).collect()),
            };
            admin
                .create_cluster("clusterrolebindings", &b, redacted_json(&b))
                .await?;
            cx.act(format!(
                "{} ClusterRoleBinding {name} -> {role} for {}",
                cx.sent("Created", "Would create"),
                groups.join(",")
            ));
        }
        Some(existing) => {
            if existing.role_ref.name != role {
                return Err(Error::conflict(format!(
                    "ClusterRoleBinding {name} exists but refers to {} instead of {role}; fix or delete it (kubectl delete clusterrolebinding {name})",
                    existing.role_ref.name
                )));
            }
            let missing: Vec<&String> = groups
                .iter()
                .filter(|g| !has_group(existing.subjects.as_deref(), g))
                .collect();
            if missing.is_empty() {
                cx.act(format!("ClusterRoleBinding {name} already in place"));
                return Ok(());
            }
            let mut updated = existing.clone();
            let subjects = updated.subjects.get_or_insert_with(Vec::new);
            subjects.extend(missing.iter().map(|g| group_subject(g)));
            admin
                .replace_cluster(
                    "clusterrolebindings",
                    name,
                    &updated,
                    redacted_json(&updated),
                )
                .await?;
            cx.act(format!(
                "{} {} to ClusterRoleBinding {name}",
                cx.sent("Added", "Would add"),
                missing
                    .iter()
                    .map(|s| s.as_str())
                    .collect::<Vec<_>>()
                    .join(",")
            ));
        }
    }
    Ok(())
}

async fn ensure_cluster_info(cx: &mut Ctx, admin: &Cluster) -> Result<()> {
    match admin.get_configmap(NS_PUBLIC, CLUSTER_INFO).await? {
        Some(cm) => {
            if cm
                .data
                .as_ref()
                .is_none_or(|d| !d.contains_key("kubeconfig"))
            {
                cx.warn("kube-public/cluster-info exists without a kubeconfig key; token discovery will not work until it has one");
            } else {
                cx.act("ConfigMap kube-public/cluster-info already exists; left alone");
            }
        }
        None => {
            let path = cx
                .settings
                .admin_kubeconfig
                .clone()
                .expect("admin kubeconfig given");
            let access = cx.given_kubeconfig(&path, "the admin kubeconfig")?;
            let ca = access.ca_pem.clone().ok_or_else(|| {
                Error::invalid("the admin kubeconfig has no CA data to publish in cluster-info")
            })?;
            let kubeconfig = crate::kubeconfig::render_cluster_info(&access.server, &ca)?;
            let cm = ConfigMap {
                metadata: ObjectMeta {
                    name: Some(CLUSTER_INFO.into()),
                    namespace: Some(NS_PUBLIC.into()),
                    ..Default::default()
                },
                data: Some(BTreeMap::from([("kubeconfig".to_string(), kubeconfig)])),
                ..Default::default()
            };
            admin
                .create_namespaced("configmaps", NS_PUBLIC, &cm, redacted_json(&cm))
                .await?;
            cx.act(format!(
                "{} ConfigMap {NS_PUBLIC}/{CLUSTER_INFO} for {}",
                cx.sent("Created", "Would create"),
                access.server
            ));
        }
    }
    if admin
        .get_role(NS_PUBLIC, CLUSTER_INFO_RBAC)
        .await?
        .is_none()
    {
        let role = Role {
            metadata: ObjectMeta {
                name: Some(CLUSTER_INFO_RBAC.into()),
                namespace: Some(NS_PUBLIC.into()),
                ..Default::default()
            },
            rules: Some(vec![PolicyRule {
                api_groups: Some(vec![String::new()]),
                resources: Some(vec!["configmaps".into()]),
                resource_names: Some(vec![CLUSTER_INFO.into()]),
                verbs: vec!["get".into()],
                ..Default::default()
            }]),
        };
        admin
            .create_namespaced("roles", NS_PUBLIC, &role, redacted_json(&role))
            .await?;
        cx.act(format!(
            "{} Role {NS_PUBLIC}/{CLUSTER_INFO_RBAC} (get cluster-info)",
            cx.sent("Created", "Would create")
        ));
    }
    if admin
        .get_role_binding(NS_PUBLIC, CLUSTER_INFO_RBAC)
        .await?
        .is_none()
    {
        let rb = RoleBinding {
            metadata: ObjectMeta {
                name: Some(CLUSTER_INFO_RBAC.into()),
                namespace: Some(NS_PUBLIC.into()),
                ..Default::default()
            },
            role_ref: RoleRef {
                api_group: RBAC_GROUP.into(),
                kind: "Role".into(),
                name: CLUSTER_INFO_RBAC.into(),
            },
            subjects: Some(vec![Subject {
                api_group: Some(RBAC_GROUP.into()),
                kind: "User".into(),
                name: "system:anonymous".into(),
                namespace: None,
            }]),
        };
        admin
            .create_namespaced("rolebindings", NS_PUBLIC, &rb, redacted_json(&rb))
            .await?;
        cx.act(format!(
            "{} RoleBinding {NS_PUBLIC}/{CLUSTER_INFO_RBAC} for system:anonymous",
            cx.sent("Created", "Would create")
        ));
    }
    Ok(())
}
