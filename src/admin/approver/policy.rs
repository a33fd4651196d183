//! What the approver signs off: every check kubelet-csr-approver documents, each explicit and
//! named, plus one it lacks (the SANs must be among the Node's own addresses). A node that gets
//! any SAN signed can impersonate any host, which is why Kubernetes never auto-approves
//! `kubernetes.io/kubelet-serving` CSRs.

use std::net::IpAddr;
use std::time::Duration;

use k8s_openapi::api::certificates::v1::CertificateSigningRequest;
use k8s_openapi::api::core::v1::Node;

use crate::error::{Error, Result};
use crate::pki::csr::CsrInfo;

/// The signer this approver decides for.
pub const SIGNER: &str = "kubernetes.io/kubelet-serving";

/// An IP prefix (`10.0.0.0/8`, `fd00::/8`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IpPrefix {
    addr: IpAddr,
    len: u8,
}

impl IpPrefix {
    /// Parses `addr/len`.
    pub fn parse(text: &str) -> Result<IpPrefix> {
        let bad = || {
            Error::usage(format!(
                "--ip-prefixes: {text:?} is not an IP prefix like 10.0.0.0/8 or fd00::/8"
            ))
        };
        let (a, l) = text.trim().split_once('/').ok_or_else(bad)?;
        let addr: IpAddr = a.parse().map_err(|_| bad())?;
        let len: u8 = l.parse().map_err(|_| bad())?;
        let max = if addr.is_ipv4() { 32 } else { 128 };
        if len > max {
            return Err(bad());
        }
        Ok(IpPrefix { addr, len })
    }

    /// Whether `ip` is inside.
    pub fn contains(&self, ip: &IpAddr) -> bool {
        let bits = |a: &IpAddr| -> u128 {
            match a {
                IpAddr::V4(v) => u32::from(*v) as u128,
                IpAddr::V6(v) => u128::from(*v),
            }
        };
        let width = if self.addr.is_ipv4() { 32 } else { 128 };
        if self.addr.is_ipv4() != ip.is_ipv4() {
            return false;
        }
        if self.len == 0 {
            return true;
        }
        let shift = width - self.len as u32;
        (bits(&self.addr) >> shift) == (bits(ip) >> shift)
    }
}

impl std::fmt::Display for IpPrefix {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.addr, self.len)
    }
}

/// The approver's rules.
#[derive(Debug, Clone)]
pub struct Policy {
    /// At most this many DNS SANs.
    pub max_dns_names: usize,
    /// Every DNS SAN must match it.
    pub dns_regex: regex::Regex,
    /// Every IP SAN must be inside one of them.
    pub ip_prefixes: Vec<IpPrefix>,
    /// The longest `expirationSeconds` a CSR may ask for.
    pub max_expiration: Duration,
    /// A CSR whose Node does not exist is denied (else it waits).
    pub require_node: bool,
}

/// A DNS-1123 subdomain: the default `--dns-regex`.
pub const DEFAULT_DNS_REGEX: &str =
    r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$";

impl Default for Policy {
    fn default() -> Self {
        Policy {
            max_dns_names: 1,
            dns_regex: regex::Regex::new(DEFAULT_DNS_REGEX).expect("valid regex"),
            ip_prefixes: vec![
                IpPrefix::parse("0.0.0.0/0").expect("prefix"),
                IpPrefix::parse("::/0").expect("prefix"),
            ],
            // kubelet-csr-approver's default MAX_EXPIRATION_SECONDS: 367 days.
            max_expiration: Duration::from_secs(367 * 86_400),
            require_node: false,
        }
    }
}

/// What to do with a CSR.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// Every check passed.
    Approve(String),
    /// A check failed: its name (the condition's reason) and why.
    Deny {
        /// The check (`DNSRegex`, `NodeAddresses`, …).
        check: &'static str,
        /// One line naming what failed.
        message: String,
    },
    /// Cannot decide yet (the Node has not registered).
    Wait(String),
    /// Not this approver's to decide (another signer, or already decided).
    Ignore,
}

/// A serving CSR that passed the checks of its own content: what the Node check needs.
#[derive(Debug, Clone)]
pub struct Candidate {
    /// The node it is for.
    pub node: String,
    /// DNS SANs.
    pub dns: Vec<String>,
    /// IP SANs.
    pub ips: Vec<IpAddr>,
}

fn deny(check: &'static str, message: impl Into<String>) -> Decision {
    Decision::Deny {
        check,
        message: message.into(),
    }
}

fn decided(csr: &CertificateSigningRequest) -> bool {
    let status = csr.status.as_ref();
    status.is_some_and(|s| s.certificate.as_ref().is_some_and(|c| !c.0.is_empty()))
        || status
            .and_then(|s| s.conditions.as_ref())
            .is_some_and(|cs| {
                cs.iter()
                    .any(|c| c.type_ == "Approved" || c.type_ == "Denied")
            })
}

/// The checks of the CSR itself, in kubelet-csr-approver's order.
pub fn check_request(
    policy: &Policy,
    csr: &CertificateSigningRequest,
) -> std::result::Result<Candidate, Decision> {
    let spec = &csr.spec;
    if spec.signer_name != SIGNER || decided(csr) {
        return Err(Decision::Ignore);
    }
    let username = spec.username.clone().unwrap_or_default();
    let Some(node) = username
        .strip_prefix("system:node:")
        .filter(|n| !n.is_empty())
    else {
        return Err(deny(
            "Requestor",
            format!("the requestor {username:?} is not a node (system:node:<name>)"),
        ));
    };
    let req: CsrInfo = match crate::pki::csr::parse_pem(&spec.request.0) {
        Ok(r) => r,
        Err(e) => {
            return Err(deny(
                "Request",
                format!("spec.request is not a valid CSR: {}", e.message()),
            ));
        }
    };
    if req.cn() != username {
        return Err(deny(
            "CommonName",
            format!(
                "the subject CN {:?} is not the requestor {username:?}",
                req.cn()
            ),
        ));
    }
    if req.organizations != ["system:nodes"] {
        return Err(deny(
            "Organization",
            format!(
                "the subject O {:?} is not exactly [\"system:nodes\"]",
                req.organizations
            ),
        ));
    }
    let mut usages: Vec<&str> = spec.usages.iter().flatten().map(String::as_str).collect();
    usages.sort();
    let plain = ["digital signature", "server auth"];
    let with_ke = ["digital signature", "key encipherment", "server auth"];
    let usage_ok = usages == plain || (req.is_rsa && usages == with_ke);
    if !usage_ok {
        return Err(deny(
            "Usages",
            format!(
                "usages {usages:?} are not exactly [digital signature, server auth] (key encipherment is allowed for RSA keys only)"
            ),
        ));
    }
    if !req.emails.is_empty() || !req.uris.is_empty() {
        return Err(deny(
            "ForbiddenSAN",
            "email and URI subjectAltNames are not allowed",
        ));
    }
    if req.dns_names.is_empty() && req.ip_addresses.is_empty() {
        return Err(deny(
            "SANRequired",
            "a DNS or IP subjectAltName is required",
        ));
    }
    if req.dns_names.len() > policy.max_dns_names {
        return Err(deny(
            "DNSCount",
            format!(
                "{} DNS names {:?}; at most {} allowed (--max-dns-names)",
                req.dns_names.len(),
                req.dns_names,
                policy.max_dns_names
            ),
        ));
    }
    for d in &req.dns_names {
        if !policy.dns_regex.is_match(d) {
            return Err(deny(
                "DNSRegex",
                format!(
                    "DNS name {d:?} does not match --dns-regex {}",
                    policy.dns_regex.as_str()
                ),
            ));
        }
        if d != node && !d.starts_with(&format!("{node}.")) {
            return Err(deny(
                "DNSPrefix",
                format!("DNS name {d:?} does not start with the node name {node:?}"),
            ));
        }
    }
    for ip in &req.ip_addresses {
        if !policy.ip_prefixes.iter().any(|p| p.contains(ip)) {
            let allowed: Vec<String> = policy.ip_prefixes.iter().map(|p| p.to_string()).collect();
            return Err(deny(
                "IPPrefix",
                format!("IP {ip} is outside --ip-prefixes [{}]", allowed.join(", ")),
            ));
        }
    }
    if let Some(secs) = spec.expiration_seconds
        && secs as u64 > policy.max_expiration.as_secs()
    {
        return Err(deny(
            "Expiration",
            format!(
                "expirationSeconds {secs} exceeds --max-expiration {}s",
                policy.max_expiration.as_secs()
            ),
        ));
    }
    Ok(Candidate {
        node: node.to_string(),
        dns: req.dns_names.clone(),
        ips: req.ip_addresses.clone(),
    })
}

/// The check beyond kubelet-csr-approver's: every SAN is one of the Node's own addresses.
/// `node` is `None` when the Node does not exist.
pub fn check_node(policy: &Policy, c: &Candidate, node: Option<&Node>) -> Decision {
    let Some(node) = node else {
        return if policy.require_node {
            deny(
                "NodeMissing",
                format!("Node {:?} does not exist (--require-node)", c.node),
            )
        } else {
            Decision::Wait(format!(
                "Node {:?} has not registered yet; the CSR stays pending until it does",
                c.node
            ))
        };
    };
    let addresses = node
        .status
        .as_ref()
        .and_then(|s| s.addresses.as_ref())
        .cloned()
        .unwrap_or_default();
    for d in &c.dns {
        let known = addresses.iter().any(|a| {
            matches!(a.type_.as_str(), "Hostname" | "InternalDNS" | "ExternalDNS")
                && a.address == *d
        });
        if !known {
            return deny(
                "NodeAddresses",
                format!("DNS name {d:?} is not among Node {:?}'s addresses", c.node),
            );
        }
    }
    for ip in &c.ips {
        let known = addresses.iter().any(|a| {
            matches!(a.type_.as_str(), "InternalIP" | "ExternalIP" | "Hostname")
                && a.address.parse::<IpAddr>().ok() == Some(*ip)
        });
        if !known {
            return deny(
                "NodeAddresses",
                format!("IP {ip} is not among Node {:?}'s addresses", c.node),
            );
        }
    }
    Decision::Approve(approval_message(c, true))
}

/// The message of an approval.
pub fn approval_message(c: &Candidate, node_checked: bool) -> String {
    let sans: Vec<String> = c
        .dns
        .iter()
        .cloned()
        .chain(c.ips.iter().map(|i| i.to_string()))
        .collect();
    format!(
        "Approved by bootlet approver: requestor, subject, usages, SANs [{}]{} checked",
        sans.join(", "),
        if node_checked {
            " and the Node's addresses"
        } else {
            ""
        }
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefixes_contain_what_they_should() {
        let p = IpPrefix::parse("10.0.0.0/8").unwrap();
        assert!(p.contains(&"10.200.1.1".parse().unwrap()));
        assert!(!p.contains(&"11.0.0.1".parse().unwrap()));
        assert!(!p.contains(&"::1".parse().unwrap()));
        assert!(
            IpPrefix::parse("fd00::/8")
                .unwrap()
                .contains(&"fd12::1".parse().unwrap())
        );
        assert!(
            IpPrefix::parse("0.0.0.0/0")
                .unwrap()
                .contains(&"1.2.3.4".parse().unwrap())
        );
        assert!(IpPrefix::parse("10.0.0.0/33").is_err());
        assert!(IpPrefix::parse("nope").is_err());
    }
}
