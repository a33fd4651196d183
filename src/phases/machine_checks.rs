//! The checks kubeadm's join makes of the machine for the kubelet it hands the node to
//! (`cmd/kubeadm/app/preflight/checks.go`: the container runtime, the kubelet's ports, IP
//! forwarding, swap), named as kubeadm names them and ignorable as its are. They look at the
//! running machine, so they apply only when bootlet configures this machine itself (`--root /`),
//! not an image under another root; all but the kubelet's port apply only when the join hands off
//! to a kubelet (the kubelet layout, kubelet-config not skipped).

use std::path::Path;

use crate::engine::Ctx;
use crate::files::LayoutKind;

/// The name of the container runtime check.
pub const CRI: &str = "CRI";
/// The name of the IP forwarding check.
pub const IP_FORWARD: &str = "FileContent--proc-sys-net-ipv4-ip_forward";

/// Whether the machine is the node (`--root /`).
fn machine_is_the_node(cx: &Ctx) -> bool {
    cx.settings.root == Path::new("/")
}

/// Whether this run hands the node to a kubelet.
fn hands_off_to_a_kubelet(cx: &Ctx) -> bool {
    cx.layout.kind() == LayoutKind::Kubelet
        && !cx
            .settings
            .skip_phases
            .iter()
            .any(|p| p == "kubelet-config")
}

/// Every check's name, whether or not it applies this run.
pub fn names() -> Vec<String> {
    ["Port-10250", "Port-10248", CRI, IP_FORWARD]
        .map(String::from)
        .to_vec()
}

/// (name, problem) of each check that applies this run.
pub fn outcomes(cx: &Ctx) -> Vec<(String, Option<String>)> {
    if !machine_is_the_node(cx) {
        return Vec::new();
    }
    let mut out = vec![port("Port-10250", "0.0.0.0", 10250, "the kubelet's API")];
    if hands_off_to_a_kubelet(cx) {
        out.push(port(
            "Port-10248",
            "127.0.0.1",
            10248,
            "the kubelet's healthz",
        ));
        out.push((CRI.into(), runtime_problem(&cx.settings.cri_socket)));
        out.push((
            IP_FORWARD.into(),
            ip_forward_problem(Path::new("/proc/sys/net/ipv4/ip_forward")),
        ));
    }
    out
}

/// Warnings that stop nothing (kubeadm's Swap check only warns: the cluster's KubeletConfiguration,
/// read later, says whether the kubelet accepts swap).
pub fn warnings(cx: &Ctx) -> Vec<String> {
    if !machine_is_the_node(cx) || !hands_off_to_a_kubelet(cx) {
        return Vec::new();
    }
    swap_warning(Path::new("/proc/swaps")).into_iter().collect()
}

fn port(name: &str, host: &str, number: u16, what: &str) -> (String, Option<String>) {
    let problem = std::net::TcpListener::bind((host, number))
        .err()
        .filter(|e| e.kind() == std::io::ErrorKind::AddrInUse)
        .map(|_| format!("port {number} ({what}) is in use: a kubelet may already run here; stop it first or check for another service"));
    (name.into(), problem)
}

/// Whether the container runtime answers at `endpoint` (`unix:///…`): it accepts a connection.
pub fn runtime_problem(endpoint: &str) -> Option<String> {
    let path = endpoint.strip_prefix("unix://").unwrap_or(endpoint);
    match std::os::unix::net::UnixStream::connect(path) {
        Ok(_) => None,
        Err(e) => Some(format!(
            "the container runtime at {endpoint} does not answer ({e}): start it (containerd, CRI-O), or give its socket with --cri-socket"
        )),
    }
}

/// IP forwarding must be on for pods' traffic (kubeadm checks the file holds 1).
pub fn ip_forward_problem(file: &Path) -> Option<String> {
    let value = std::fs::read_to_string(file).unwrap_or_default();
    (value.trim() != "1").then(|| {
        format!(
            "{} is {:?}, not 1: the node would not forward its pods' traffic; enable it (sysctl -w net.ipv4.ip_forward=1, and in /etc/sysctl.d to keep it)",
            file.display(),
            value.trim()
        )
    })
}

/// Swap in use (any line after the header of /proc/swaps).
pub fn swap_warning(swaps: &Path) -> Option<String> {
    let text = std::fs::read_to_string(swaps).unwrap_or_default();
    let active = text
        .lines()
        .skip(1)
        .filter(|l| !l.trim().is_empty())
        .count();
    (active > 0).then(|| {
        format!(
            "[Swap] swap is on ({active} device(s) in {}): the kubelet refuses to start with swap unless its configuration sets failSwapOn: false",
            swaps.display()
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_machine_check_reads_what_kubeadms_reads() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("f");
        std::fs::write(&f, "0\n").unwrap();
        assert!(ip_forward_problem(&f).unwrap().contains("not 1"));
        std::fs::write(&f, "1\n").unwrap();
        assert!(ip_forward_problem(&f).is_none());
        std::fs::write(&f, "Filename Type Size Used Priority\n").unwrap();
        assert!(swap_warning(&f).is_none());
        std::fs::write(
            &f,
            "Filename Type Size Used Priority\n/swapfile file 1024 0 -2\n",
        )
        .unwrap();
        assert!(swap_warning(&f).unwrap().contains("failSwapOn: false"));
        let sock = dir.path().join("cri.sock");
        assert!(
            runtime_problem(&format!("unix://{}", sock.display()))
                .unwrap()
                .contains("--cri-socket")
        );
        let _listener = std::os::unix::net::UnixListener::bind(&sock).unwrap();
        assert!(runtime_problem(&format!("unix://{}", sock.display())).is_none());
    }
}
