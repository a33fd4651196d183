//! Which cluster a root belongs to, checked before any phase looks at the world: a root joined to
//! one cluster is never declared "already done" for another. kubeadm refuses any join where
//! `kubelet.conf` exists (preflight `FileAvailable--etc-kubernetes-kubelet.conf`); bootlet keeps
//! resuming and re-running the same join, but refuses another cluster by name.

use super::cluster_record::ClusterRecord;
use super::credentials::installed_kubeconfig;
use crate::engine::Ctx;
use crate::error::{Error, Result};
use crate::pki::pin::{Pin, check_any};

/// The cluster a root holds credentials for.
struct Joined {
    server: String,
    ca_ders: Vec<Vec<u8>>,
    pin: String,
    from: String,
}

/// The cluster this run asks for, as far as it is known before any request.
struct Target {
    server: String,
    ca_pin: Option<String>,
    pins: Vec<Pin>,
}

fn joined(cx: &Ctx) -> Result<Option<Joined>> {
    if let Some(rec) = ClusterRecord::load(cx)? {
        return Ok(Some(Joined {
            server: rec.server.clone(),
            ca_ders: rec.ca_ders(),
            pin: rec.ca_pin.clone(),
            from: ClusterRecord::path(cx),
        }));
    }
    let Some(kc) = installed_kubeconfig(cx) else {
        return Ok(None);
    };
    let ders: Vec<Vec<u8>> = kc
        .ca_pem
        .as_deref()
        .and_then(|ca| crate::pki::parse_certs_pem(ca, "the node kubeconfig CA").ok())
        .map(|v| v.into_iter().map(|d| d.to_vec()).collect())
        .unwrap_or_default();
    let pin = match ders.first() {
        Some(d) => Pin::of_cert(d)?.to_string(),
        None => "no CA".into(),
    };
    Ok(Some(Joined {
        server: kc.server,
        ca_ders: ders,
        pin,
        from: cx.layout.path("kubeconfig").to_string(),
    }))
}

fn target(cx: &Ctx) -> Result<Option<Target>> {
    if let Some(rec) = super::discovery::file_source_record(cx)? {
        return Ok(Some(Target {
            server: rec.server,
            ca_pin: Some(rec.ca_pin),
            pins: Vec::new(),
        }));
    }
    Ok(cx.settings.endpoint.as_ref().map(|e| Target {
        server: e.clone(),
        ca_pin: None,
        pins: cx.settings.ca_pins.clone(),
    }))
}

/// Fails with exit 9, naming both clusters and the way out, when the root is joined to another
/// cluster than the one this run targets (server URL or CA). A run without discovery input
/// targets whatever the root holds.
pub fn ensure_same_cluster(cx: &mut Ctx) -> Result<()> {
    let Some(have) = joined(cx)? else {
        return Ok(());
    };
    let Some(want) = target(cx)? else {
        return Ok(());
    };
    let same_server = have.server.trim_end_matches('/') == want.server.trim_end_matches('/');
    let same_ca = match &want.ca_pin {
        Some(p) => *p == have.pin,
        None => want.pins.is_empty() || check_any(&want.pins, &have.ca_ders).is_ok(),
    };
    if same_server && same_ca {
        return Ok(());
    }
    let wanted_ca = match (&want.ca_pin, want.pins.as_slice()) {
        (Some(p), _) => format!("CA {p}"),
        (None, []) => "an unpinned CA".into(),
        (None, pins) => format!(
            "CA pinned to {}",
            pins.iter()
                .map(|p| p.to_string())
                .collect::<Vec<_>>()
                .join(" or ")
        ),
    };
    let root = cx.settings.root.display();
    Err(Error::conflict(format!(
        "this root is joined to the cluster at {} (CA {}, per {}), but this run targets {} ({wanted_ca}); to move the node, run `bootlet reset --root {root}` first, or join into another --root",
        have.server, have.pin, have.from, want.server
    )))
}
