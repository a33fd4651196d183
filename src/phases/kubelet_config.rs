//! kubelet-config: the hand-off from bootlet to the node agent. For the kubelet layout it writes
//! what kubeadm's `kubelet-start` phase writes (`/var/lib/kubelet/config.yaml` and a flags file,
//! here `bootlet-flags.env`), without starting the service; for Krustlet, whose configuration is
//! its command line, it prints that line. The join's last line repeats the start command.
//!
//! The configuration is built as kubeadm's kubelet-start builds it: the cluster's
//! `kube-system/kubelet-config` ConfigMap (kubeadm's `upload-config kubelet`: clusterDNS,
//! clusterDomain, cgroupDriver, …), read as the node, with the node's own fields on top. Without
//! that ConfigMap it is kubeadm's defaults for a joined node (cmd/kubeadm/app/componentconfigs/
//! kubelet.go) and the phase says what it left to the operator. Either way: no anonymous access,
//! webhook authentication and authorization, client certificates checked against the cluster CA,
//! and the kubelet rotating both its certificates (`rotateCertificates`, `serverTLSBootstrap`):
//! after the hand-off the kubelet owns rotation (docs/lifecycle.md). The flags file names the
//! container runtime endpoint (`--cri-socket`, kubeadm's default containerd socket).

use super::Check;
use super::credentials::{PairState, installed_client, installed_serving};
use crate::engine::Ctx;
use crate::error::{Error, Result};
use crate::files::LayoutKind;

/// The environment variable of the flags file, read by the systemd drop-in in `contrib/systemd`.
pub const FLAGS_VARIABLE: &str = "KUBELET_BOOTLET_ARGS";

/// The files this phase keeps, with the bytes each should hold.
struct Expected {
    config: String,
    flags: String,
}

/// The installed serving certificate bootlet obtained, if there is one.
fn serving_certificate(cx: &Ctx) -> Option<crate::pki::cert::CertInfo> {
    match installed_serving(cx) {
        Ok(PairState::Valid(p)) => Some(p.info),
        _ => None,
    }
}

/// The node's addresses: as given, else those in its serving certificate (which were detected
/// from the route to the API server), so that the agent advertises what the certificate names.
fn node_ips(cx: &Ctx) -> Vec<String> {
    let ips = if cx.settings.node_ips.is_empty() {
        serving_certificate(cx)
            .map(|c| c.ip_addresses)
            .unwrap_or_default()
    } else {
        cx.settings.node_ips.clone()
    };
    ips.iter().map(|ip| ip.to_string()).collect()
}

/// The cluster's kubelet configuration, as kubeadm's `upload-config kubelet` publishes it.
enum ClusterConfig {
    /// The ConfigMap's `kubelet` document, as a YAML mapping.
    Found(serde_json::Value),
    /// Why there is none to build on.
    Absent(String),
}

const CONFIG_MAP: (&str, &str) = ("kube-system", "kubelet-config");

/// Reads `kube-system/kubelet-config` as the node (kubeadm binds it for nodes and bootstrappers).
async fn cluster_config(cx: &mut Ctx) -> Result<ClusterConfig> {
    let rec = super::cluster_record::ClusterRecord::require(cx)?;
    let Some(pair) = super::credentials::node_client_pair(cx)? else {
        return Err(cx.missing(
            "installed credentials",
            "a verified node client certificate (write-files)",
        ));
    };
    let cluster = cx.cluster(&super::credentials::node_access(&rec, &pair), "node")?;
    let (ns, name) = CONFIG_MAP;
    let cm = match cluster.get_configmap(ns, name).await {
        Ok(cm) => cm,
        Err(e) if e.message().contains("(403)") => {
            return Ok(ClusterConfig::Absent(format!(
                "the node may not read {ns}/{name} (kubeadm's upload-config binds it for nodes)"
            )));
        }
        Err(e) => return Err(e),
    };
    let Some(cm) = cm else {
        return Ok(ClusterConfig::Absent(format!(
            "the cluster has no {ns}/{name} ConfigMap (kubeadm's upload-config kubelet makes it)"
        )));
    };
    let text = cm
        .data
        .and_then(|d| d.get("kubelet").cloned())
        .unwrap_or_default();
    let doc: serde_json::Value = serde_saphyr::from_str(&text).map_err(|e| {
        Error::invalid(format!(
            "{ns}/{name} does not hold a KubeletConfiguration under the key kubelet: {e}"
        ))
    })?;
    if doc["kind"] != "KubeletConfiguration" {
        return Err(Error::invalid(format!(
            "{ns}/{name}'s kubelet key holds a {}, not a KubeletConfiguration",
            doc["kind"].as_str().unwrap_or("document without a kind")
        )));
    }
    Ok(ClusterConfig::Found(doc))
}

/// What a joined node always runs with, whatever the cluster says: the node's own fields.
fn node_fields(client_ca_file: &str) -> serde_json::Value {
    serde_json::json!({
        "apiVersion": "kubelet.config.k8s.io/v1beta1",
        "kind": "KubeletConfiguration",
        "authentication": {
            "anonymous": {"enabled": false},
            "webhook": {"enabled": true},
            "x509": {"clientCAFile": client_ca_file}
        },
        "authorization": {"mode": "Webhook"},
        "rotateCertificates": true,
        "serverTLSBootstrap": true
    })
}

/// kubeadm's defaults for a joined node's kubelet, when the cluster publishes none.
fn kubeadm_defaults() -> serde_json::Value {
    serde_json::json!({
        "authentication": {"webhook": {"cacheTTL": "2m0s"}},
        "authorization": {"webhook": {"cacheAuthorizedTTL": "5m0s", "cacheUnauthorizedTTL": "30s"}}
    })
}

/// `over` merged onto `base`, mappings recursively (the node's fields win).
fn merged(mut base: serde_json::Value, over: &serde_json::Value) -> serde_json::Value {
    match (base.as_object_mut(), over.as_object()) {
        (Some(b), Some(o)) => {
            for (k, v) in o {
                let old = b.remove(k).unwrap_or(serde_json::Value::Null);
                b.insert(k.clone(), merged(old, v));
            }
            base
        }
        _ => over.clone(),
    }
}

/// The KubeletConfiguration this node gets, as YAML.
fn kubelet_configuration(client_ca_file: &str, cluster: &ClusterConfig) -> Result<String> {
    let base = match cluster {
        ClusterConfig::Found(doc) => doc.clone(),
        ClusterConfig::Absent(_) => kubeadm_defaults(),
    };
    let doc = merged(base, &node_fields(client_ca_file));
    let yaml = serde_saphyr::to_string(&doc)
        .map_err(|e| Error::internal(format!("cannot render the KubeletConfiguration: {e}")))?;
    let source = match cluster {
        ClusterConfig::Found(_) => format!(
            "# Built from the cluster's {}/{} with this node's fields on top.\n",
            CONFIG_MAP.0, CONFIG_MAP.1
        ),
        ClusterConfig::Absent(_) => String::new(),
    };
    Ok(format!(
        "# Written by bootlet (phase kubelet-config); `bootlet reset` removes it while unchanged.\n{source}{yaml}"
    ))
}

/// The kubelet's flags, in the order kubeadm's drop-in passes them.
fn kubelet_flags(cx: &Ctx) -> Vec<String> {
    let l = &cx.layout;
    let mut flags = vec![format!("--config={}", l.path("kubelet_config"))];
    if cx.settings.keep_bootstrap_kubeconfig {
        flags.push(format!(
            "--bootstrap-kubeconfig={}",
            l.path("bootstrap_kubeconfig")
        ));
    }
    flags.push(format!("--kubeconfig={}", l.path("kubeconfig")));
    flags.push(format!(
        "--container-runtime-endpoint={}",
        cx.settings.cri_socket
    ));
    // The certificates name system:node:<node-name>; the Node authorizer only lets the kubelet
    // act for the Node of that name, so it must register under it, whatever the host name is.
    flags.push(format!("--hostname-override={}", cx.settings.node_name));
    let ips = node_ips(cx);
    if !ips.is_empty() {
        flags.push(format!("--node-ip={}", ips.join(",")));
    }
    flags
}

/// Krustlet's flags: its files are flags, its kubeconfig an environment variable.
fn krustlet_flags(cx: &Ctx) -> Vec<String> {
    let l = &cx.layout;
    let mut flags = vec![
        format!("--node-name={}", cx.settings.node_name),
        format!("--cert-file={}", l.path("serving_cert")),
        format!("--private-key-file={}", l.path("serving_key")),
    ];
    if cx.settings.keep_bootstrap_kubeconfig {
        flags.push(format!(
            "--bootstrap-file={}",
            l.path("bootstrap_kubeconfig")
        ));
    }
    if let Some(ip) = node_ips(cx).first() {
        flags.push(format!("--node-ip={ip}"));
    }
    flags
}

/// The exact command that starts the node agent with what this join wrote (paths as seen from
/// inside the root).
pub fn start_command(cx: &Ctx) -> String {
    match cx.layout.kind() {
        LayoutKind::Kubelet => format!("kubelet {}", kubelet_flags(cx).join(" ")),
        LayoutKind::Krustlet => format!(
            "KUBECONFIG={} krustlet-wasi {}",
            cx.layout.path("kubeconfig"),
            krustlet_flags(cx).join(" ")
        ),
    }
}

fn expected_flags(cx: &Ctx) -> String {
    format!(
        "# Written by bootlet (phase kubelet-config). systemd: EnvironmentFile=-{} and\n\
         # ExecStart=/usr/bin/kubelet ${FLAGS_VARIABLE} (contrib/systemd/10-bootlet-kubelet.conf).\n\
         {FLAGS_VARIABLE}=\"{}\"\n",
        cx.layout.path("kubelet_flags"),
        kubelet_flags(cx).join(" ")
    )
}

async fn expected(cx: &mut Ctx) -> Result<(Expected, ClusterConfig)> {
    let cluster = cluster_config(cx).await?;
    let config = kubelet_configuration(cx.layout.path("ca_cert"), &cluster)?;
    let flags = expected_flags(cx);
    Ok((Expected { config, flags }, cluster))
}

/// Why the file at `path` is not bootlet's to replace, if it is not: it exists and the journal
/// does not record bootlet writing what it holds (an operator's own kubelet configuration).
fn foreign(cx: &Ctx, path: &str) -> Option<String> {
    (cx.world.exists(path) && !cx.world.holds_what_bootlet_wrote(path))
        .then(|| format!("{path} exists and bootlet did not write it"))
}

fn holds(cx: &Ctx, path: &str, want: &str) -> Result<bool> {
    Ok(cx.world.read(path)?.as_deref() == Some(want.as_bytes())
        && cx.world.mode_and_owner(path).map(|(m, _)| m) == Some(crate::files::PUBLIC_FILE_MODE))
}

/// Done when both files hold what this join calls for; Krustlet keeps nothing. Without installed
/// credentials there is nothing to hand over: a join told to skip write-files skips this too.
pub async fn check(cx: &mut Ctx) -> Result<Check> {
    if !matches!(installed_client(cx)?, PairState::Valid(_)) {
        if cx.settings.skip_phases.iter().any(|p| p == "write-files") {
            return Ok(Check::Skip(
                "write-files is in --skip-phases: no installed credentials to hand to the node agent"
                    .into(),
            ));
        }
        return Ok(Check::NotDone(
            "the node's credentials are not installed yet".into(),
        ));
    }
    if cx.layout.kind() == LayoutKind::Krustlet {
        return Ok(Check::Done(
            "Krustlet is configured by its command line; nothing to write".into(),
        ));
    }
    // The configuration was built from the cluster's at the join (as kubeadm's kubelet-start
    // does): bootlet's own file stands; only the flags follow this run's settings.
    let want_flags = expected_flags(cx);
    let (config, flags) = (
        cx.layout.path("kubelet_config"),
        cx.layout.path("kubelet_flags"),
    );
    let config_done = cx.world.holds_what_bootlet_wrote(config)
        && cx.world.mode_and_owner(config).map(|(m, _)| m) == Some(crate::files::PUBLIC_FILE_MODE);
    if config_done && holds(cx, flags, &want_flags)? {
        return Ok(Check::Done(format!(
            "{config} and {flags} are as this join needs"
        )));
    }
    Ok(Check::NotDone(if cx.world.exists(config) {
        format!("{config} or {flags} differs from what this join needs")
    } else {
        format!("no {config} yet")
    }))
}

/// Writes the configuration and the flags file.
pub async fn run(cx: &mut Ctx) -> Result<()> {
    if !matches!(installed_client(cx)?, PairState::Valid(_)) {
        return Err(cx.missing(
            "installed credentials",
            "a verified node kubeconfig and client certificate (write-files)",
        ));
    }
    if cx.layout.kind() == LayoutKind::Krustlet {
        let line = start_command(cx);
        cx.act(format!("Krustlet takes its files as flags: {line}"));
        return Ok(());
    }
    let (want, cluster) = expected(cx).await?;
    let config = cx.layout.path("kubelet_config").to_string();
    let flags = cx.layout.path("kubelet_flags").to_string();
    for path in [&config, &flags] {
        if let Some(why) = foreign(cx, path) {
            return Err(Error::conflict(format!(
                "{why}; bootlet does not replace a kubelet configuration it did not write: move it away, or keep it with --skip-phases kubelet-config"
            )));
        }
    }
    let mode = crate::files::PUBLIC_FILE_MODE;
    let wrote_config = cx
        .world
        .write_if_changed(&config, want.config.as_bytes(), mode)?;
    let wrote_flags = cx
        .world
        .write_if_changed(&flags, want.flags.as_bytes(), mode)?;
    let verb = cx.sent("Wrote", "Would write");
    if wrote_config {
        match &cluster {
            ClusterConfig::Found(_) => cx.act(format!(
                "{verb} the KubeletConfiguration {config}, built from the cluster's {}/{} with this node's fields on top",
                CONFIG_MAP.0, CONFIG_MAP.1
            )),
            ClusterConfig::Absent(why) => cx.act(format!(
                "{verb} the KubeletConfiguration {config} from kubeadm's defaults: {why}; clusterDNS, clusterDomain and cgroupDriver are left to you (the kubelet's own defaults: no cluster DNS, cgroupfs)"
            )),
        }
    }
    if wrote_flags {
        cx.act(format!(
            "{verb} the kubelet flags {flags} ({FLAGS_VARIABLE})"
        ));
    }
    Ok(())
}
