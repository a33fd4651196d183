//! CertificateSigningRequests: create validation (`pkg/apis/certificates/validation/validation.go`
//! `ValidateCertificateSigningRequestCreate`), NodeRestriction's CSR rule (`nodes.rs`), the
//! CertificateSubjectRestriction admission plugin
//! (`plugin/pkg/admission/certificates/subjectrestriction`), the requester identity the API
//! server stamps into the spec, and the rules of the main resource, `/status` and `/approval`
//! (`pkg/registry/certificates/certificates/strategy.go`).

#![allow(clippy::result_large_err)]

use serde_json::{Value, json};

use super::http::{Cause, Reply, forbidden_object, invalid_all};
use super::rbac::{Attributes, allowed};
use super::request::Call;
use super::store::timestamp;

const KNOWN_USAGES: &[&str] = &[
    "signing",
    "digital signature",
    "content commitment",
    "key encipherment",
    "key agreement",
    "data encipherment",
    "cert sign",
    "crl sign",
    "encipher only",
    "decipher only",
    "any",
    "server auth",
    "client auth",
    "code signing",
    "email protection",
    "s/mime",
    "ipsec end system",
    "ipsec tunnel",
    "ipsec user",
    "timestamping",
    "ocsp signing",
    "microsoft sgc",
    "netscape sgc",
];

/// The signer certificates/v1 refuses (`certificates.LegacyUnknownSignerName`).
const LEGACY_UNKNOWN: &str = "kubernetes.io/legacy-unknown";
/// The signer CertificateSubjectRestriction guards.
const APISERVER_CLIENT: &str = "kubernetes.io/kube-apiserver-client";

fn usages(obj: &Value) -> Vec<String> {
    obj["spec"]["usages"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|u| u.as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default()
}

/// Create: validation, subject restriction, and the requester's identity in the spec.
pub fn admit_create(call: &Call<'_>, name: &str, obj: &mut Value) -> Reply<()> {
    use base64::Engine;
    let def = call.def();
    let request = base64::engine::general_purpose::STANDARD
        .decode(obj["spec"]["request"].as_str().unwrap_or_default())
        .unwrap_or_default();
    let signer = obj["spec"]["signerName"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    super::nodes::admit_csr(call, name, &signer, &request)?;
    let parsed = crate::pki::csr::parse_pem(&request);
    let mut causes = Vec::new();
    if let Err(e) = &parsed {
        causes.push(Cause::new(
            "spec.request",
            "FieldValueInvalid",
            format!("Invalid value: []byte{{...}}: {}", e.message()),
        ));
    }
    if signer.is_empty() {
        causes.push(Cause::new(
            "spec.signerName",
            "FieldValueRequired",
            "Required value",
        ));
    } else if signer == LEGACY_UNKNOWN {
        causes.push(Cause::new(
            "spec.signerName",
            "FieldValueInvalid",
            format!("Invalid value: \"{signer}\": the legacy signerName is not allowed via this API version"),
        ));
    } else if !signer.contains('/') {
        causes.push(Cause::new(
            "spec.signerName",
            "FieldValueInvalid",
            format!("Invalid value: \"{signer}\": must be a fully qualified domain and path of the form 'example.com/signer-name'"),
        ));
    }
    let usages = usages(obj);
    if usages.is_empty() {
        causes.push(Cause::new(
            "spec.usages",
            "FieldValueRequired",
            "Required value",
        ));
    }
    for (i, u) in usages.iter().enumerate() {
        if !KNOWN_USAGES.contains(&u.as_str()) {
            causes.push(Cause::new(
                format!("spec.usages[{i}]"),
                "FieldValueNotSupported",
                format!("Unsupported value: \"{u}\""),
            ));
        } else if usages[..i].contains(u) {
            causes.push(Cause::new(
                format!("spec.usages[{i}]"),
                "FieldValueDuplicate",
                format!("Duplicate value: \"{u}\""),
            ));
        }
    }
    if let Some(secs) = obj["spec"]["expirationSeconds"].as_i64()
        && secs < 600
    {
        causes.push(Cause::new(
            "spec.expirationSeconds",
            "FieldValueInvalid",
            format!("Invalid value: {secs}: may not specify a duration less than 600 seconds (10 minutes)"),
        ));
    }
    if !causes.is_empty() {
        return Err(invalid_all(def, name, &causes));
    }
    // CertificateSubjectRestriction: nobody gets system:masters through the API client signer.
    if signer == APISERVER_CLIENT
        && let Ok(req) = &parsed
        && req.organizations.iter().any(|o| o == "system:masters")
    {
        return Err(forbidden_object(
            def,
            name,
            "use of kubernetes.io/kube-apiserver-client signer with system:masters group is not allowed",
        ));
    }
    obj["spec"]["username"] = json!(call.user.name);
    obj["spec"]["groups"] = json!(call.user.groups);
    // uid and extra are omitempty in the API.
    let spec = obj["spec"].as_object_mut().expect("spec object");
    if call.user.extra.is_empty() {
        spec.remove("extra");
    } else {
        spec.insert("extra".into(), json!(call.user.extra));
    }
    if call.user.uid.is_empty() {
        spec.remove("uid");
    } else {
        spec.insert("uid".into(), json!(call.user.uid));
    }
    obj["status"] = json!({});
    Ok(())
}

fn conditions(v: &Value) -> Vec<Value> {
    v["status"]["conditions"]
        .as_array()
        .cloned()
        .unwrap_or_default()
}

fn count_of(conds: &[Value], ty: &str) -> usize {
    conds.iter().filter(|c| c["type"] == ty).count()
}

/// The v1 defaulting of a condition (an empty status is `True`) and the strategy's
/// `populateConditionTimestamps`: a missing `lastUpdateTime` is now, a missing
/// `lastTransitionTime` is that of the old condition of the same type and status, else now.
fn stamp_conditions(conds: &mut [Value], old: &[Value]) {
    let now = timestamp();
    for c in conds.iter_mut() {
        if c["status"].as_str().unwrap_or_default().is_empty() {
            c["status"] = json!("True");
        }
        if c["lastUpdateTime"].is_null() {
            c["lastUpdateTime"] = json!(now);
        }
        if c["lastTransitionTime"].is_null() {
            c["lastTransitionTime"] = old
                .iter()
                .find(|o| {
                    o["type"] == c["type"]
                        && o["status"] == c["status"]
                        && !o["lastTransitionTime"].is_null()
                })
                .map_or_else(|| json!(now), |o| o["lastTransitionTime"].clone());
        }
    }
}

/// `validateConditions`, with the allowances the old object earns (data from older releases may
/// keep what is no longer accepted).
fn condition_causes(conds: &[Value], old: &[Value]) -> Vec<Cause> {
    let has = |cs: &[Value], ty: &str| cs.iter().any(|c| c["type"] == ty);
    let duplicated = |cs: &[Value]| {
        let mut seen = std::collections::HashSet::new();
        cs.iter().any(|c| !seen.insert(c["type"].to_string()))
    };
    let allow_both = has(old, "Approved") && has(old, "Denied");
    let allow_duplicates = duplicated(old);
    let allow_empty_type = has(old, "");
    let mut causes = Vec::new();
    let mut seen = std::collections::HashSet::new();
    let (mut approved, mut denied) = (false, false);
    for (i, c) in conds.iter().enumerate() {
        let at = format!("status.conditions[{i}]");
        let ty = c["type"].as_str().unwrap_or_default();
        if ty.is_empty() && !allow_empty_type {
            causes.push(Cause::new(
                format!("{at}.type"),
                "FieldValueRequired",
                "Required value",
            ));
        }
        let status = c["status"].as_str().unwrap_or_default();
        let allowed: &[&str] = if ["Approved", "Denied", "Failed"].contains(&ty) {
            &["True"]
        } else {
            &["False", "True", "Unknown"]
        };
        if status.is_empty() {
            causes.push(Cause::new(
                format!("{at}.status"),
                "FieldValueRequired",
                "Required value",
            ));
        } else if !allowed.contains(&status) {
            let listed: Vec<String> = allowed.iter().map(|a| format!("\"{a}\"")).collect();
            causes.push(Cause::new(
                format!("{at}.status"),
                "FieldValueNotSupported",
                format!(
                    "Unsupported value: \"{status}\": supported values: {}",
                    listed.join(", ")
                ),
            ));
        }
        if !allow_both {
            approved |= ty == "Approved";
            denied |= ty == "Denied";
            if (ty == "Approved" || ty == "Denied") && approved && denied {
                causes.push(Cause::new(
                    "status.conditions",
                    "FieldValueInvalid",
                    format!("Invalid value: \"{ty}\": Approved and Denied conditions are mutually exclusive"),
                ));
            }
        }
        if !allow_duplicates && !seen.insert(ty.to_string()) {
            causes.push(Cause::new(
                format!("{at}.type"),
                "FieldValueDuplicate",
                format!("Duplicate value: \"{ty}\""),
            ));
        }
    }
    causes
}

/// `validateCertificate`: `status.certificate`, when set, is PEM CERTIFICATE blocks only, each
/// a certificate.
fn certificate_problem(cert: &Value) -> Option<String> {
    use base64::Engine;
    let b64 = cert.as_str().filter(|c| !c.is_empty())?;
    let Ok(pem) = base64::engine::general_purpose::STANDARD.decode(b64) else {
        return Some("illegal base64 data".into());
    };
    let mut blocks = 0;
    for block in x509_parser::pem::Pem::iter_from_buffer(&pem) {
        let Ok(block) = block else { break };
        if block.label != "CERTIFICATE" {
            return Some(format!(
                "only CERTIFICATE PEM blocks are allowed, found {:?}",
                block.label
            ));
        }
        if let Err(e) = x509_parser::parse_x509_certificate(&block.contents) {
            return Some(format!("x509: malformed certificate ({e})"));
        }
        blocks += 1;
    }
    (blocks == 0).then(|| "must contain at least one CERTIFICATE PEM block".into())
}

/// What an update of `old` to `new` through `subresource` may not do
/// (`validateCertificateSigningRequestUpdate`).
fn update_causes(old: &Value, new: &Value, subresource: &str) -> Vec<Cause> {
    let (old_conds, new_conds) = (conditions(old), conditions(new));
    let mut causes = condition_causes(&new_conds, &old_conds);
    for ty in ["Approved", "Denied", "Failed"] {
        if count_of(&new_conds, ty) < count_of(&old_conds, ty) {
            causes.push(Cause::new(
                "status.conditions",
                "FieldValueForbidden",
                format!("Forbidden: updates may not remove a condition of type \"{ty}\""),
            ));
        }
    }
    if subresource != "approval" {
        for ty in ["Approved", "Denied"] {
            let of = |cs: &[Value]| {
                cs.iter()
                    .filter(|c| c["type"] == ty)
                    .cloned()
                    .collect::<Vec<_>>()
            };
            let (was, is) = (of(&old_conds), of(&new_conds));
            if is.len() > was.len() {
                causes.push(Cause::new(
                    "status.conditions",
                    "FieldValueForbidden",
                    format!("Forbidden: updates may not add a condition of type \"{ty}\""),
                ));
            } else if is.len() == was.len() && is != was {
                causes.push(Cause::new(
                    "status.conditions",
                    "FieldValueForbidden",
                    format!("Forbidden: updates may not modify a condition of type \"{ty}\""),
                ));
            }
        }
    }
    let (old_cert, new_cert) = (&old["status"]["certificate"], &new["status"]["certificate"]);
    let blank = |v: &Value| v.as_str().is_none_or(str::is_empty);
    if old_cert != new_cert && !(blank(old_cert) && blank(new_cert)) {
        if let Some(why) =
            certificate_problem(new_cert).filter(|_| certificate_problem(old_cert).is_none())
        {
            causes.push(Cause::new(
                "status.certificate",
                "FieldValueInvalid",
                format!("Invalid value: \"<certificate data>\": {why}"),
            ));
        }
        if subresource != "status" {
            causes.push(Cause::new(
                "status.certificate",
                "FieldValueForbidden",
                "Forbidden: updates may not set certificate content",
            ));
        } else if !blank(old_cert) {
            causes.push(Cause::new(
                "status.certificate",
                "FieldValueForbidden",
                "Forbidden: updates may not modify existing certificate content",
            ));
        }
    }
    causes
}

/// The object an update stores: the main resource changes only metadata; `/status` the status
/// but the Approved/Denied conditions, which keep their old values
/// (`preserveConditionInstances`); `/approval` the conditions, all of them
/// (`pkg/registry/certificates/certificates/strategy.go`).
pub fn prepare_update(call: &Call<'_>, old: &Value, new: &Value) -> Reply<Value> {
    let subresource = call.target.subresource.as_str();
    let mut v = old.clone();
    v["metadata"]["resourceVersion"] = new["metadata"]["resourceVersion"].clone();
    let mut conds = conditions(new);
    match subresource {
        "approval" => check_may_approve(call, old)?,
        "status" => {
            v["status"] = new["status"].clone();
            for ty in ["Approved", "Denied"] {
                preserve_instances(&mut conds, &conditions(old), ty);
            }
        }
        _ => {
            let mut v = new.clone();
            v["spec"] = old["spec"].clone();
            v["status"] = old["status"].clone();
            return Ok(v);
        }
    }
    stamp_conditions(&mut conds, &conditions(old));
    if conds.is_empty() {
        if let Some(status) = v["status"].as_object_mut() {
            status.remove("conditions");
        }
    } else {
        v["status"]["conditions"] = json!(conds);
    }
    let causes = update_causes(old, &v, subresource);
    if causes.is_empty() {
        Ok(v)
    } else {
        Err(invalid_all(call.def(), &call.target.name, &causes))
    }
}

/// The old instances of `ty` in place of the new ones, when there are as many.
fn preserve_instances(conds: &mut [Value], old: &[Value], ty: &str) {
    let old: Vec<&Value> = old.iter().filter(|c| c["type"] == ty).collect();
    let at: Vec<usize> = (0..conds.len())
        .filter(|&i| conds[i]["type"] == ty)
        .collect();
    if old.len() == at.len() {
        for (i, o) in at.into_iter().zip(old) {
            conds[i] = o.clone();
        }
    }
}

/// `/approval` needs `approve` on the CSR's signer (or its domain's wildcard), which the
/// CertificateApproval admission plugin checks.
fn check_may_approve(call: &Call<'_>, old: &Value) -> Reply<()> {
    let signer = old["spec"]["signerName"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    let domain_wildcard = format!("{}/*", signer.split('/').next().unwrap_or_default());
    let store = call.state.store.lock().expect("store");
    let may = [signer.clone(), domain_wildcard].iter().any(|n| {
        let a = Attributes {
            verb: "approve".into(),
            group: "certificates.k8s.io".into(),
            resource: "signers".into(),
            name: n.clone(),
            ..Default::default()
        };
        allowed(&store, call.user, &a)
    });
    if may {
        Ok(())
    } else {
        Err(forbidden_object(
            call.def(),
            &call.target.name,
            &format!("user not permitted to approve requests with signerName \"{signer}\""),
        ))
    }
}
