//! The node's Node object, registered as its kubelet would register it, for a serving CSR that
//! waits: an approver that checks a serving certificate's SANs against the Node's addresses
//! (`bootlet approver`, kubelet-csr-approver) waits for a Node, which only a running agent
//! registers, and the agent starts only after the join. After a short grace (an admin or a
//! fast approver needs no Node) the join registers it itself, as the node (the Node authorizer
//! lets a node create Nodes, NodeRestriction only its own), with the addresses it is about to
//! serve on. The kubelet adopts an existing Node of its name when it starts
//! (`kubelet_node_status.go`, `tryRegisterWithAPIServer`).

use std::net::IpAddr;
use std::time::Duration;

use k8s_openapi::api::core::v1::{Node, NodeAddress, NodeStatus};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

use crate::cluster::Cluster;
use crate::error::Result;
use crate::output::Output;

/// How long a serving CSR waits before the join registers the Node.
pub const GRACE: Duration = Duration::from_secs(3);

/// The Node the kubelet would register for `name` on `ips`: its default labels and its
/// addresses (the node IPs, then the host name).
pub fn node_object(name: &str, ips: &[IpAddr]) -> Node {
    let arch = match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        other => other,
    };
    let labels = [
        ("kubernetes.io/hostname", name),
        ("kubernetes.io/os", std::env::consts::OS),
        ("kubernetes.io/arch", arch),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect();
    let mut addresses: Vec<NodeAddress> = ips
        .iter()
        .map(|ip| NodeAddress {
            type_: "InternalIP".into(),
            address: ip.to_string(),
        })
        .collect();
    addresses.push(NodeAddress {
        type_: "Hostname".into(),
        address: name.to_string(),
    });
    Node {
        metadata: ObjectMeta {
            name: Some(name.to_string()),
            labels: Some(labels),
            ..Default::default()
        },
        status: Some(NodeStatus {
            addresses: Some(addresses),
            ..Default::default()
        }),
        ..Default::default()
    }
}

/// After [`GRACE`], registers the Node unless it exists; says what it did. Never fails the join:
/// a Node it cannot register only leaves an address-checking approver waiting, as before.
pub async fn register_after_grace(cluster: Cluster, name: String, ips: Vec<IpAddr>, out: Output) {
    tokio::time::sleep(GRACE).await;
    match register(&cluster, &name, &ips).await {
        Ok(true) => out.say(
            "serving-csr",
            format!(
                "Registered Node {name} (addresses {}) as its kubelet would, so that an approver can check the serving CSR against it; the kubelet adopts it when it starts",
                shown(&ips, &name)
            ),
        ),
        Ok(false) => {}
        Err(e) => out.warn(
            "serving-csr",
            format!(
                "could not register Node {name} for an approver to check ({}); the CSR waits for an admin or for the Node",
                e.message()
            ),
        ),
    }
}

fn shown(ips: &[IpAddr], name: &str) -> String {
    ips.iter()
        .map(|i| i.to_string())
        .chain(std::iter::once(name.to_string()))
        .collect::<Vec<_>>()
        .join(", ")
}

/// Creates the Node if it does not exist; whether it did.
async fn register(cluster: &Cluster, name: &str, ips: &[IpAddr]) -> Result<bool> {
    let existing: Option<Node> = cluster.get_cluster("nodes", name).await?;
    if existing.is_some() {
        return Ok(false);
    }
    let node = node_object(name, ips);
    let recorded = serde_json::to_value(&node).unwrap_or_default();
    Ok(cluster
        .create_cluster("nodes", &node, recorded)
        .await?
        .is_some())
}
