//! What the approver signs off: every check kubelet-csr-approver documents, each explicit and
//! named, plus those it lacks (the requestor's node name, every CN, the subject's shape, the key
//! type, special addresses, and the SANs among the Node's own addresses and no other Node's). A node that gets
//! any SAN signed can impersonate any host, which is why Kubernetes never auto-approves
//! `kubernetes.io/kubelet-serving` CSRs.

use std::net::IpAddr;
use std::time::Duration;

use k8s_openapi::api::certificates::v1::CertificateSigningRequest;
use k8s_openapi::api::core::v1::Node;

use crate::error::{Error, Result};
use crate::pki::csr::{CsrInfo, KeyKind};

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
    /// DNS SANs other than the node's own name must match it (and start with `<node>.`); without
    /// it, the node's name is the only DNS SAN allowed.
    pub dns_regex: Option<regex::Regex>,
    /// Every IP SAN must be inside one of them.
    pub ip_prefixes: Vec<IpPrefix>,
    /// The longest `expirationSeconds` a CSR may ask for.
    pub max_expiration: Duration,
    /// A CSR whose Node does not exist is denied (else it waits).
    pub require_node: bool,
}

/// A DNS-1123 subdomain (`k8s.io/apimachinery/pkg/util/validation` `IsDNS1123Subdomain`): what a
/// node name must be, checked before a name from a CSR's requestor is looked up.
pub const DNS1123_SUBDOMAIN: &str =
    r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$";

/// The longest a denial or approval message may be: a condition's message rides in the
/// `/approval` update, and an unbounded one (a CSR with 52,000 SANs) exceeds the API server's
/// request limit.
pub const MAX_MESSAGE: usize = 1024;

impl Default for Policy {
    fn default() -> Self {
        Policy {
            max_dns_names: 1,
            dns_regex: None,
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
    /// The node it is for (a valid node name).
    pub node: String,
    /// DNS SANs.
    pub dns: Vec<String>,
    /// IP SANs.
    pub ips: Vec<IpAddr>,
}

/// `text` cut to [`MAX_MESSAGE`] bytes at a character boundary.
pub fn bounded(text: String) -> String {
    if text.len() <= MAX_MESSAGE {
        return text;
    }
    let mut end = MAX_MESSAGE - 3;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}...", &text[..end])
}

/// `value` quoted with every control character escaped (so a log line or condition quoting it is
/// one line that says what it says), cut to 256 bytes.
pub fn quoted(value: &str) -> String {
    let q = format!("{value:?}");
    if q.len() <= 256 {
        return q;
    }
    let mut end = 250;
    while !q.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}...\"", &q[..end])
}

fn deny(check: &'static str, message: impl Into<String>) -> Decision {
    Decision::Deny {
        check,
        message: bounded(message.into()),
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

/// The node name a requestor stands for, if it is a node with a valid name.
fn requesting_node(username: &str) -> std::result::Result<&str, Decision> {
    let Some(node) = username.strip_prefix("system:node:") else {
        return Err(deny(
            "Requestor",
            format!(
                "the requestor {} is not a node (system:node:<name>)",
                quoted(username)
            ),
        ));
    };
    let valid = node.len() <= 253
        && regex::Regex::new(DNS1123_SUBDOMAIN)
            .expect("valid regex")
            .is_match(node);
    if !valid {
        return Err(deny(
            "Requestor",
            format!(
                "the requestor's node name {} is not a valid node name (a DNS-1123 subdomain)",
                quoted(node)
            ),
        ));
    }
    Ok(node)
}

/// The subject: one CN, the requestor's; O exactly system:nodes; nothing else (the signer copies
/// the subject, and Go's x509 keeps only the last CN).
fn check_subject(req: &CsrInfo, username: &str) -> std::result::Result<(), Decision> {
    if req.common_names.len() != 1 {
        return Err(deny(
            "CommonName",
            format!(
                "the subject has {} common names; exactly one is allowed (the signer would keep only the last)",
                req.common_names.len()
            ),
        ));
    }
    if req.cn() != username {
        return Err(deny(
            "CommonName",
            format!(
                "the subject CN {} is not the requestor {}",
                quoted(req.cn()),
                quoted(username)
            ),
        ));
    }
    if req.multi_valued_rdn || !req.other_subject_attributes.is_empty() {
        let extra = req.other_subject_attributes.join(", ");
        return Err(deny(
            "Subject",
            format!(
                "the subject may hold only CN and O, one per RDN; it has {}",
                if extra.is_empty() {
                    "a multi-valued RDN".to_string()
                } else {
                    quoted(&extra)
                }
            ),
        ));
    }
    if req.organizations != ["system:nodes"] {
        let orgs: Vec<String> = req.organizations.iter().map(|o| quoted(o)).collect();
        return Err(deny(
            "Organization",
            format!(
                "the subject O [{}] is not exactly [\"system:nodes\"]",
                orgs.join(", ")
            ),
        ));
    }
    Ok(())
}

/// Keys a kubelet makes and every TLS client of the kubelet takes: RSA of 2048 bits or more,
/// ECDSA P-256 or P-384. With an RSA key, key encipherment may be asked for; with ECDSA it is
/// meaningless and refused.
fn check_key_and_usages(req: &CsrInfo, usages: &[String]) -> std::result::Result<(), Decision> {
    let rsa = match &req.key {
        KeyKind::Rsa(bits) if *bits >= 2048 => true,
        KeyKind::EcdsaP256 | KeyKind::EcdsaP384 => false,
        other => {
            return Err(deny(
                "KeyType",
                format!(
                    "the key is {other}; only RSA (2048 bits or more) and ECDSA P-256 or P-384 keys are approved"
                ),
            ));
        }
    };
    let mut sorted: Vec<&str> = usages.iter().map(String::as_str).collect();
    sorted.sort();
    let plain = ["digital signature", "server auth"];
    let with_ke = ["digital signature", "key encipherment", "server auth"];
    if !(sorted == plain || (rsa && sorted == with_ke)) {
        let shown: Vec<String> = sorted.iter().take(8).map(|u| quoted(u)).collect();
        return Err(deny(
            "Usages",
            format!(
                "usages [{}] are not exactly [digital signature, server auth] (key encipherment is allowed for RSA keys only)",
                shown.join(", ")
            ),
        ));
    }
    Ok(())
}

/// Addresses no node may have a serving certificate for unless the operator's prefixes name them
/// explicitly (a prefix longer than /0 that contains them): loopback, unspecified, link-local,
/// multicast and broadcast.
fn special(ip: &IpAddr) -> bool {
    match ip {
        IpAddr::V4(v) => {
            v.is_loopback()
                || v.is_unspecified()
                || v.is_link_local()
                || v.is_multicast()
                || v.is_broadcast()
        }
        IpAddr::V6(v) => {
            v.is_loopback()
                || v.is_unspecified()
                || v.is_multicast()
                || (v.segments()[0] & 0xffc0) == 0xfe80
        }
    }
}

fn check_sans(policy: &Policy, req: &CsrInfo, node: &str) -> std::result::Result<(), Decision> {
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
                "{} DNS names; at most {} allowed (--max-dns-names)",
                req.dns_names.len(),
                policy.max_dns_names
            ),
        ));
    }
    for d in &req.dns_names {
        if d == node {
            continue;
        }
        let Some(re) = &policy.dns_regex else {
            return Err(deny(
                "DNSName",
                format!(
                    "DNS name {} is not the node's name {}; other names need --dns-regex",
                    quoted(d),
                    quoted(node)
                ),
            ));
        };
        if !re.is_match(d) {
            return Err(deny(
                "DNSRegex",
                format!(
                    "DNS name {} does not match --dns-regex {}",
                    quoted(d),
                    re.as_str()
                ),
            ));
        }
        if !d.starts_with(&format!("{node}.")) {
            return Err(deny(
                "DNSPrefix",
                format!(
                    "DNS name {} does not start with the node name {}",
                    quoted(d),
                    quoted(node)
                ),
            ));
        }
    }
    for ip in &req.ip_addresses {
        let inside: Vec<&IpPrefix> = policy
            .ip_prefixes
            .iter()
            .filter(|p| p.contains(ip))
            .collect();
        if inside.is_empty() {
            let allowed: Vec<String> = policy.ip_prefixes.iter().map(|p| p.to_string()).collect();
            return Err(deny(
                "IPPrefix",
                format!("IP {ip} is outside --ip-prefixes [{}]", allowed.join(", ")),
            ));
        }
        if special(ip) && inside.iter().all(|p| p.len == 0) {
            return Err(deny(
                "SpecialIP",
                format!(
                    "IP {ip} is a loopback, unspecified, link-local, multicast or broadcast address; approve it only by naming its prefix in --ip-prefixes"
                ),
            ));
        }
    }
    Ok(())
}

/// The checks of the CSR itself, in kubelet-csr-approver's order, and those it lacks (the
/// requestor's node name, every CN, the subject's shape, the key).
pub fn check_request(
    policy: &Policy,
    csr: &CertificateSigningRequest,
) -> std::result::Result<Candidate, Decision> {
    let spec = &csr.spec;
    if spec.signer_name != SIGNER || decided(csr) {
        return Err(Decision::Ignore);
    }
    let username = spec.username.clone().unwrap_or_default();
    let node = requesting_node(&username)?;
    let req: CsrInfo = crate::pki::csr::parse_pem(&spec.request.0).map_err(|e| {
        deny(
            "Request",
            format!("spec.request is not a valid CSR: {}", e.message()),
        )
    })?;
    check_subject(&req, &username)?;
    check_key_and_usages(&req, spec.usages.as_deref().unwrap_or_default())?;
    check_sans(policy, &req, node)?;
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

/// Whether `address` (of `kinds`) is among `node`'s status addresses.
fn lists(node: &Node, kinds: &[&str], matches: impl Fn(&str) -> bool) -> bool {
    node.status
        .as_ref()
        .and_then(|s| s.addresses.as_ref())
        .is_some_and(|addrs| {
            addrs
                .iter()
                .any(|a| kinds.contains(&a.type_.as_str()) && matches(&a.address))
        })
}

fn same_ip(address: &str, ip: &IpAddr) -> bool {
    address.parse::<IpAddr>().ok() == Some(*ip)
}

const DNS_KINDS: [&str; 3] = ["Hostname", "InternalDNS", "ExternalDNS"];
const IP_KINDS: [&str; 3] = ["InternalIP", "ExternalIP", "Hostname"];

/// The checks against the cluster's Nodes. A Node's addresses are what its kubelet reported, and a
/// node may patch its own status (NodeRestriction allows it), so they are never the authority
/// alone: every SAN must be among the node's own addresses *and* inside the policy (checked
/// before), *and* no other Node may list it. `node` is `None` when the Node does not exist.
pub fn check_node(
    policy: &Policy,
    c: &Candidate,
    node: Option<&Node>,
    others: &[Node],
) -> Decision {
    let Some(node) = node else {
        return if policy.require_node {
            deny(
                "NodeMissing",
                format!("Node {} does not exist (--require-node)", quoted(&c.node)),
            )
        } else {
            Decision::Wait(format!(
                "Node {} has not registered yet; the CSR stays pending until it does",
                quoted(&c.node)
            ))
        };
    };
    for d in &c.dns {
        if !lists(node, &DNS_KINDS, |a| a == d) {
            return deny(
                "NodeAddresses",
                format!(
                    "DNS name {} is not among Node {}'s addresses",
                    quoted(d),
                    quoted(&c.node)
                ),
            );
        }
    }
    for ip in &c.ips {
        if !lists(node, &IP_KINDS, |a| same_ip(a, ip)) {
            return deny(
                "NodeAddresses",
                format!("IP {ip} is not among Node {}'s addresses", quoted(&c.node)),
            );
        }
    }
    for other in others {
        let name = other.metadata.name.as_deref().unwrap_or_default();
        if name == c.node {
            continue;
        }
        let claimed = c
            .dns
            .iter()
            .find(|d| lists(other, &DNS_KINDS, |a| a == d.as_str()))
            .map(|d| format!("DNS name {}", quoted(d)))
            .or_else(|| {
                c.ips
                    .iter()
                    .find(|ip| lists(other, &IP_KINDS, |a| same_ip(a, ip)))
                    .map(|ip| format!("IP {ip}"))
            });
        if let Some(what) = claimed {
            return deny(
                "AddressInUse",
                format!("{what} is also an address of Node {}", quoted(name)),
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
    bounded(format!(
        "Approved by bootlet approver: requestor, subject, key, usages, SANs [{}]{} checked",
        sans.join(", "),
        if node_checked {
            " and the Node's addresses (its own, no other Node's)"
        } else {
            ""
        }
    ))
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
