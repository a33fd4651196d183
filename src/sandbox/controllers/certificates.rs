//! The certificate controllers of kube-controller-manager, with the real rules:
//! - csrapprover (`pkg/controller/certificates/approver/sarapprove.go`): auto-approves kubelet
//!   client CSRs after a SubjectAccessReview against `nodeclient` / `selfnodeclient`; never serving
//!   CSRs (unless the sandbox runs with `--auto-approve-serving`);
//! - signer (`pkg/controller/certificates/signer/signer.go`): re-validates approved CSRs of the
//!   kubelet signers (`pkg/apis/certificates/helpers.go`), signs with the CA honouring
//!   `expirationSeconds` (floor 600 s), or marks them `Failed`.

use std::collections::BTreeSet;
use std::time::Duration;

use base64::Engine;
use serde_json::{Value, json};

use super::super::authn::UserInfo;
use super::super::rbac::{Attributes, allowed};
use super::super::state::State;
use super::super::store::timestamp;
use crate::pki::ca::{Subject, Usages};
use crate::pki::csr::CsrInfo;

/// Kubelet client signer.
pub const CLIENT_KUBELET: &str = "kubernetes.io/kube-apiserver-client-kubelet";
/// Kubelet serving signer.
pub const KUBELET_SERVING: &str = "kubernetes.io/kubelet-serving";
/// Generic API client signer.
pub const APISERVER_CLIENT: &str = "kubernetes.io/kube-apiserver-client";

/// What became of a CSR the controllers looked at.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// Nothing (more) to do for now.
    Settled,
    /// Recognized as a kubelet client CSR, but the SubjectAccessReview said no: the approver
    /// returns an ignorable error and the controller requeues it with backoff
    /// (`certificate_controller.go` `processNextWorkItem`), so restoring a binding later still
    /// gets it approved.
    Retry,
}

/// Approves or signs the CSR `csr` (the version an event carried), if it is still current.
pub fn handle_csr(state: &State, csr: &Value) -> Outcome {
    let name = csr["metadata"]["name"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    // Act on the latest version; the event may be stale.
    let Some(current) =
        state
            .store
            .lock()
            .expect("store")
            .get("certificatesigningrequests", "", &name)
    else {
        return Outcome::Settled;
    };
    if current["metadata"]["resourceVersion"] != csr["metadata"]["resourceVersion"]
        && csr["metadata"]["resourceVersion"].is_string()
    {
        return Outcome::Settled;
    }
    match approve(state, &current) {
        Approval::Approved => Outcome::Settled,
        Approval::Refused => Outcome::Retry,
        Approval::NotMine => {
            sign(state, &current);
            Outcome::Settled
        }
    }
}

/// The approver's answer.
enum Approval {
    /// It approved (the signer acts on the next event).
    Approved,
    /// Recognized, but the requester may not have it auto-approved (yet).
    Refused,
    /// Not a CSR it approves (or already decided).
    NotMine,
}

fn conditions(csr: &Value) -> Vec<Value> {
    csr["status"]["conditions"]
        .as_array()
        .cloned()
        .unwrap_or_default()
}

fn has_condition(csr: &Value, ty: &str) -> bool {
    conditions(csr)
        .iter()
        .any(|c| c["type"] == ty && c["status"] == "True")
}

fn has_certificate(csr: &Value) -> bool {
    csr["status"]["certificate"]
        .as_str()
        .is_some_and(|c| !c.is_empty())
}

fn parse_request(csr: &Value) -> Option<CsrInfo> {
    let b = base64::engine::general_purpose::STANDARD
        .decode(csr["spec"]["request"].as_str()?)
        .ok()?;
    // Verified at create (csrs.rs); signing verifies it again (rcgen's `from_der`), as the signer's
    // `CheckSignature` does upstream.
    crate::pki::csr::parse_pem_verified_before(&b).ok()
}

fn usages(csr: &Value) -> Vec<String> {
    csr["spec"]["usages"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|u| u.as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default()
}

fn usage_set(u: &[String]) -> BTreeSet<&str> {
    u.iter().map(String::as_str).collect()
}

/// The usages must equal the set with key encipherment, or (for non-RSA keys) the set without.
/// `kubeletServingRequiredUsages.Equal(usages) || kubeletServingRequiredUsagesNoRSA.Equal(usages)`
/// (and the client's): either set is accepted for any key; the "NoRSA" set is named for the keys
/// that need it, not checked against the key.
fn usages_match(set: &BTreeSet<&str>, with_ke: &BTreeSet<&str>, without: &BTreeSet<&str>) -> bool {
    set == with_ke || set == without
}

/// `ValidateKubeletClientCSR`.
pub fn validate_kubelet_client(req: &CsrInfo, usages: &[String]) -> Result<(), String> {
    if req.organizations != ["system:nodes"] {
        return Err("subject organization is not system:nodes".into());
    }
    if !req.dns_names.is_empty() {
        return Err("DNS subjectAltNames are not allowed".into());
    }
    if !req.emails.is_empty() {
        return Err("Email subjectAltNames are not allowed".into());
    }
    if !req.ip_addresses.is_empty() {
        return Err("IP subjectAltNames are not allowed".into());
    }
    if !req.uris.is_empty() {
        return Err("URI subjectAltNames are not allowed".into());
    }
    if !req.cn().starts_with("system:node:") {
        return Err("subject common name does not begin with system:node:".into());
    }
    let set = usage_set(usages);
    let with_ke = ["client auth", "digital signature", "key encipherment"]
        .into_iter()
        .collect();
    let without = ["client auth", "digital signature"].into_iter().collect();
    if !usages_match(&set, &with_ke, &without) {
        return Err("usages did not match [client auth digital signature key encipherment]".into());
    }
    Ok(())
}

/// `ValidateKubeletServingCSR`.
pub fn validate_kubelet_serving(req: &CsrInfo, usages: &[String]) -> Result<(), String> {
    if req.organizations != ["system:nodes"] {
        return Err("subject organization is not system:nodes".into());
    }
    if req.dns_names.is_empty() && req.ip_addresses.is_empty() {
        return Err("DNS or IP subjectAltName is required".into());
    }
    if !req.emails.is_empty() {
        return Err("Email subjectAltNames are not allowed".into());
    }
    if !req.uris.is_empty() {
        return Err("URI subjectAltNames are not allowed".into());
    }
    let set = usage_set(usages);
    let with_ke = ["digital signature", "key encipherment", "server auth"]
        .into_iter()
        .collect();
    let without = ["digital signature", "server auth"].into_iter().collect();
    if !usages_match(&set, &with_ke, &without) {
        return Err("usages did not match [digital signature key encipherment server auth]".into());
    }
    if !req.cn().starts_with("system:node:") {
        return Err("subject common name does not begin with system:node:".into());
    }
    Ok(())
}

fn requester(csr: &Value) -> UserInfo {
    let groups = csr["spec"]["groups"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|g| g.as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default();
    UserInfo {
        name: csr["spec"]["username"].as_str().unwrap_or_default().into(),
        groups,
        uid: csr["spec"]["uid"].as_str().unwrap_or_default().into(),
        extra: Default::default(),
    }
}

fn subject_access_review(state: &State, csr: &Value, subresource: &str) -> bool {
    let attrs = Attributes {
        verb: "create".into(),
        group: "certificates.k8s.io".into(),
        resource: "certificatesigningrequests".into(),
        subresource: subresource.into(),
        ..Default::default()
    };
    allowed(&state.store.lock().expect("store"), &requester(csr), &attrs)
}

/// The approver.
fn approve(state: &State, csr: &Value) -> Approval {
    if has_certificate(csr) || has_condition(csr, "Approved") || has_condition(csr, "Denied") {
        return Approval::NotMine;
    }
    let Some(req) = parse_request(csr) else {
        return Approval::NotMine;
    };
    let signer = csr["spec"]["signerName"].as_str().unwrap_or_default();
    let usages = usages(csr);
    let username = csr["spec"]["username"].as_str().unwrap_or_default();
    let is_node_client = signer == CLIENT_KUBELET && validate_kubelet_client(&req, &usages).is_ok();
    let recognizers: [(bool, &str, &str); 2] = [
        (
            is_node_client && username == req.cn(),
            "selfnodeclient",
            "Auto approving self kubelet client certificate after SubjectAccessReview.",
        ),
        (
            is_node_client,
            "nodeclient",
            "Auto approving kubelet client certificate after SubjectAccessReview.",
        ),
    ];
    for (recognized, subresource, message) in recognizers {
        if recognized && subject_access_review(state, csr, subresource) {
            add_condition(state, csr, "Approved", "AutoApproved", message);
            return Approval::Approved;
        }
    }
    if state.options.auto_approve_serving
        && signer == KUBELET_SERVING
        && validate_kubelet_serving(&req, &usages).is_ok()
        && username == req.cn()
    {
        add_condition(
            state,
            csr,
            "Approved",
            "AutoApproved",
            "Auto approving kubelet serving certificate (bootlet sandbox --auto-approve-serving).",
        );
        return Approval::Approved;
    }
    if is_node_client {
        Approval::Refused
    } else {
        Approval::NotMine
    }
}

fn add_condition(state: &State, csr: &Value, ty: &str, reason: &str, message: &str) -> bool {
    let mut updated = csr.clone();
    let now = timestamp();
    let mut conds = conditions(csr);
    conds.push(json!({"type": ty, "status": "True", "reason": reason, "message": message, "lastUpdateTime": now, "lastTransitionTime": now}));
    updated["status"]["conditions"] = json!(conds);
    let name = csr["metadata"]["name"].as_str().unwrap_or_default();
    state
        .store
        .lock()
        .expect("store")
        .update("certificatesigningrequests", "", name, updated)
        .is_ok()
}

/// The signer: only approved, not failed, not yet issued CSRs of the signers it serves.
fn sign(state: &State, csr: &Value) {
    if !has_condition(csr, "Approved") || has_condition(csr, "Failed") || has_certificate(csr) {
        return;
    }
    let signer = csr["spec"]["signerName"].as_str().unwrap_or_default();
    if ![CLIENT_KUBELET, KUBELET_SERVING, APISERVER_CLIENT].contains(&signer) {
        return;
    }
    let Some(req) = parse_request(csr) else {
        add_condition(
            state,
            csr,
            "Failed",
            "SignerValidationFailure",
            "unable to parse csr",
        );
        return;
    };
    let usages = usages(csr);
    let validation = match signer {
        CLIENT_KUBELET => validate_kubelet_client(&req, &usages),
        KUBELET_SERVING => validate_kubelet_serving(&req, &usages),
        _ => {
            if usages.iter().any(|u| u == "client auth")
                && !usages.iter().any(|u| u == "server auth")
            {
                Ok(())
            } else {
                Err("invalid usage for client certificate".to_string())
            }
        }
    };
    if let Err(why) = validation {
        add_condition(state, csr, "Failed", "SignerValidationFailure", &why);
        return;
    }
    let Some(kube_usages) = Usages::from_kube(&usages) else {
        add_condition(
            state,
            csr,
            "Failed",
            "SignerValidationFailure",
            "unsupported usage",
        );
        return;
    };
    let mut lifetime = state.options.signing_duration;
    if let Some(secs) = csr["spec"]["expirationSeconds"].as_u64() {
        lifetime = lifetime.min(Duration::from_secs(secs.max(600)));
    }
    let subject = Subject {
        cn: req.cn(),
        orgs: &req.organizations,
        dns: &req.dns_names,
        ips: &req.ip_addresses,
    };
    let pem = match state.ca.sign_request(
        &req.der,
        &subject,
        kube_usages,
        time::Duration::seconds(lifetime.as_secs() as i64),
    ) {
        Ok(p) => p,
        Err(e) => {
            add_condition(state, csr, "Failed", "SignerValidationFailure", e.message());
            return;
        }
    };
    let mut updated = csr.clone();
    updated["status"]["certificate"] = json!(base64::engine::general_purpose::STANDARD.encode(pem));
    let name = csr["metadata"]["name"].as_str().unwrap_or_default();
    let _ =
        state
            .store
            .lock()
            .expect("store")
            .update("certificatesigningrequests", "", name, updated);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pki::keys::PrivateKey;

    fn csr(cn: &str, orgs: &[&str], dns: &[String]) -> CsrInfo {
        let k = PrivateKey::generate().unwrap();
        let pem = crate::pki::csr::build(&k, cn, orgs, dns, &[]).unwrap();
        crate::pki::csr::parse_pem(pem.as_bytes()).unwrap()
    }

    #[test]
    fn kubelet_client_rules() {
        let u = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        let ok = csr("system:node:n1", &["system:nodes"], &[]);
        assert!(validate_kubelet_client(&ok, &u(&["digital signature", "client auth"])).is_ok());
        assert!(
            validate_kubelet_client(
                &ok,
                &u(&["digital signature", "key encipherment", "client auth"])
            )
            .is_ok()
        );
        assert_eq!(
            validate_kubelet_client(&ok, &u(&["client auth"])).unwrap_err(),
            "usages did not match [client auth digital signature key encipherment]"
        );
        let two_orgs = csr("system:node:n1", &["system:nodes", "x"], &[]);
        assert!(
            validate_kubelet_client(&two_orgs, &u(&["digital signature", "client auth"])).is_err()
        );
        let with_dns = csr("system:node:n1", &["system:nodes"], &["n1".into()]);
        assert_eq!(
            validate_kubelet_client(&with_dns, &u(&["digital signature", "client auth"]))
                .unwrap_err(),
            "DNS subjectAltNames are not allowed"
        );
        let bad_cn = csr("n1", &["system:nodes"], &[]);
        assert!(
            validate_kubelet_client(&bad_cn, &u(&["digital signature", "client auth"])).is_err()
        );
        assert_eq!(
            validate_kubelet_serving(&ok, &u(&["digital signature", "server auth"])).unwrap_err(),
            "DNS or IP subjectAltName is required"
        );
        assert!(
            validate_kubelet_serving(&with_dns, &u(&["digital signature", "server auth"])).is_ok()
        );
    }
}
