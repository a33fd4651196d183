//! The cluster side, with an admin's (or an approver's) credentials: bootstrap-token management
//! as `kubeadm token` does it ([`tokens`]), and the kubelet-serving CSR approver ([`approver`]).
//! They use the same cluster access and PKI code as the node side, outside the phase engine.

pub mod approver;
pub mod tokens;

use crate::cluster::Cluster;
use crate::error::Result;
use crate::kubeconfig::ClusterAccess;

/// Where the admin kubeconfig is: `--kubeconfig`, else the first file of `KUBECONFIG`, else
/// kubeadm's `/etc/kubernetes/admin.conf`.
pub fn admin_kubeconfig_path(flag: Option<&std::path::Path>) -> std::path::PathBuf {
    if let Some(p) = flag {
        return p.to_path_buf();
    }
    if let Some(first) = std::env::var_os("KUBECONFIG")
        .and_then(|v| std::env::split_paths(&v).find(|p| !p.as_os_str().is_empty()))
    {
        return first;
    }
    "/etc/kubernetes/admin.conf".into()
}

/// The admin's access and a client for it.
pub fn connect(
    flag: Option<&std::path::Path>,
    identity: &'static str,
    budget: std::time::Duration,
) -> Result<(ClusterAccess, Cluster)> {
    let path = admin_kubeconfig_path(flag);
    let access = crate::kubeconfig::load(&path, "the kubeconfig")?;
    let cluster = Cluster::unrestricted(&access, identity, budget)?;
    Ok((access, cluster))
}
