//! kubelet-config: the hand-off from bootlet to the node agent. For the kubelet layout it writes
//! what kubeadm's `kubelet-start` phase writes (`/var/lib/kubelet/config.yaml` and a flags file,
//! here `bootlet-flags.env`), without starting the service; for Krustlet, whose configuration is
//! its command line, it prints that line. The join's last line repeats the start command.
//!
//! The configuration follows kubeadm's defaults for a joined node
//! (cmd/kubeadm/app/componentconfigs/kubelet.go): no anonymous access, webhook authentication and
//! authorization against the API server, client certificates checked against the cluster CA,
//! client certificate rotation on, and `serverTLSBootstrap` on exactly when bootlet obtained a
//! CA-signed serving certificate (so that the kubelet keeps rotating it through CSRs rather than
//! falling back to a self-signed one).

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

fn kubelet_configuration(client_ca_file: &str, server_tls_bootstrap: bool) -> String {
    format!(
        "# Written by bootlet (phase kubelet-config); `bootlet reset` removes it while unchanged.\n\
         apiVersion: kubelet.config.k8s.io/v1beta1\n\
         kind: KubeletConfiguration\n\
         authentication:\n\
         \x20 anonymous:\n\
         \x20   enabled: false\n\
         \x20 webhook:\n\
         \x20   enabled: true\n\
         \x20   cacheTTL: 2m0s\n\
         \x20 x509:\n\
         \x20   clientCAFile: {client_ca_file}\n\
         authorization:\n\
         \x20 mode: Webhook\n\
         \x20 webhook:\n\
         \x20   cacheAuthorizedTTL: 5m0s\n\
         \x20   cacheUnauthorizedTTL: 30s\n\
         rotateCertificates: true\n\
         serverTLSBootstrap: {server_tls_bootstrap}\n"
    )
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

fn expected(cx: &Ctx) -> Result<Expected> {
    let config =
        kubelet_configuration(cx.layout.path("ca_cert"), serving_certificate(cx).is_some());
    let flags = format!(
        "# Written by bootlet (phase kubelet-config). systemd: EnvironmentFile=-{} and\n\
         # ExecStart=/usr/bin/kubelet ${FLAGS_VARIABLE} (contrib/systemd/10-bootlet-kubelet.conf).\n\
         {FLAGS_VARIABLE}=\"{}\"\n",
        cx.layout.path("kubelet_flags"),
        kubelet_flags(cx).join(" ")
    );
    Ok(Expected { config, flags })
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
    let want = expected(cx)?;
    let (config, flags) = (
        cx.layout.path("kubelet_config"),
        cx.layout.path("kubelet_flags"),
    );
    if holds(cx, config, &want.config)? && holds(cx, flags, &want.flags)? {
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
    let want = expected(cx)?;
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
        cx.act(format!("{verb} the KubeletConfiguration {config}"));
    }
    if wrote_flags {
        cx.act(format!(
            "{verb} the kubelet flags {flags} ({FLAGS_VARIABLE})"
        ));
    }
    Ok(())
}
