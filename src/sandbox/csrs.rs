//! CertificateSigningRequests: create validation (`pkg/apis/certificates/validation/validation.go`
//! `ValidateCertificateSigningRequestCreate`), NodeRestriction's CSR rule (`nodes.rs`), the
//! CertificateSubjectRestriction admission plugin
//! (`plugin/pkg/admission/certificates/subjectrestriction`), the requester identity the API
//! server stamps into the spec, and the rules of the main resource, `/status` and `/approval`
//! (`pkg/registry/certificates/certificates/strategy.go`).

#![allow(clippy::result_large_err)]

use serde_json::{Value, json};

use super::http::{Cause, Reply, forbidden_object, invalid, invalid_all};
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
    // uid and extra are omitempty in the API: these authenticators set extra never.
    let spec = obj["spec"].as_object_mut().expect("spec object");
    spec.remove("extra");
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

/// `populateConditionTimestamps`: a condition without times gets now; the typed round trip has
/// already written times as RFC 3339 seconds.
fn stamp_conditions(call: &Call<'_>, conds: &mut [Value]) -> Reply<()> {
    let now = timestamp();
    for c in conds.iter_mut() {
        let st = c["status"].as_str().unwrap_or_default();
        if st.is_empty() {
            c["status"] = json!("True");
        } else if !["True", "False", "Unknown"].contains(&st) {
            return Err(invalid(
                call.def(),
                &call.target.name,
                "status.conditions",
                "FieldValueNotSupported",
                &format!("Unsupported value: \"{st}\""),
            ));
        }
        for field in ["lastUpdateTime", "lastTransitionTime"] {
            if c[field].is_null() {
                c[field] = json!(now);
            }
        }
    }
    Ok(())
}

/// The object an update of the CSR itself, `/status` or `/approval` stores.
pub fn prepare_update(call: &Call<'_>, old: &Value, new: &Value) -> Reply<Value> {
    let def = call.def();
    let name = &call.target.name;
    match call.target.subresource.as_str() {
        "approval" => approval(call, old, new),
        "status" => {
            // Updating /status may not modify spec, nor add or remove Approved/Denied.
            let old_conds = conditions(old);
            let mut new_conds = conditions(new);
            for ty in ["Approved", "Denied"] {
                if count_of(&new_conds, ty) > count_of(&old_conds, ty) {
                    return Err(invalid(
                        def,
                        name,
                        "status.conditions",
                        "FieldValueForbidden",
                        &format!("Forbidden: updates may not add a condition of type \"{ty}\""),
                    ));
                }
                if count_of(&new_conds, ty) < count_of(&old_conds, ty) {
                    return Err(invalid(
                        def,
                        name,
                        "status.conditions",
                        "FieldValueForbidden",
                        &format!("Forbidden: updates may not remove a condition of type \"{ty}\""),
                    ));
                }
            }
            stamp_conditions(call, &mut new_conds)?;
            let old_cert = old["status"]["certificate"].as_str().unwrap_or_default();
            let new_cert = new["status"]["certificate"].as_str().unwrap_or_default();
            if !old_cert.is_empty() && old_cert != new_cert {
                return Err(invalid(
                    def,
                    name,
                    "status.certificate",
                    "FieldValueForbidden",
                    "Forbidden: updates may not modify existing certificate content",
                ));
            }
            let mut v = old.clone();
            v["status"] = new["status"].clone();
            v["status"]["conditions"] = json!(new_conds);
            v["metadata"]["resourceVersion"] = new["metadata"]["resourceVersion"].clone();
            Ok(v)
        }
        _ => {
            // spec is immutable and status has its own subresources.
            let mut v = new.clone();
            v["spec"] = old["spec"].clone();
            v["status"] = old["status"].clone();
            Ok(v)
        }
    }
}

/// `/approval`: only Approved/Denied conditions change; none may be removed; the two exclude each
/// other; and the caller must be allowed to `approve` the CSR's signer.
fn approval(call: &Call<'_>, old: &Value, new: &Value) -> Reply<Value> {
    let def = call.def();
    let name = &call.target.name;
    let signer = old["spec"]["signerName"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    let domain_wildcard = format!("{}/*", signer.split('/').next().unwrap_or_default());
    let may_approve = {
        let store = call.state.store.lock().expect("store");
        [signer.clone(), domain_wildcard].iter().any(|n| {
            let a = Attributes {
                verb: "approve".into(),
                group: "certificates.k8s.io".into(),
                resource: "signers".into(),
                name: n.clone(),
                ..Default::default()
            };
            allowed(&store, call.user, &a)
        })
    };
    if !may_approve {
        return Err(forbidden_object(
            def,
            name,
            &format!("user not permitted to approve requests with signerName \"{signer}\""),
        ));
    }
    let old_conds = conditions(old);
    let mut new_conds = conditions(new);
    for c in &old_conds {
        let ty = c["type"].as_str().unwrap_or_default();
        if (ty == "Approved" || ty == "Denied") && !new_conds.iter().any(|n| n["type"] == ty) {
            return Err(invalid(
                def,
                name,
                "status.conditions",
                "FieldValueForbidden",
                &format!("Forbidden: updates may not remove a condition of type \"{ty}\""),
            ));
        }
    }
    stamp_conditions(call, &mut new_conds)?;
    let is_true = |ty: &str| {
        new_conds
            .iter()
            .any(|c| c["type"] == ty && c["status"] == "True")
    };
    if is_true("Approved") && is_true("Denied") {
        return Err(invalid(
            def,
            name,
            "status.conditions",
            "FieldValueInvalid",
            "Invalid value: \"Denied\": Approved and Denied conditions are mutually exclusive",
        ));
    }
    // Other condition types (Failed) are not this subresource's to change.
    let mut conds: Vec<Value> = old_conds
        .into_iter()
        .filter(|c| c["type"] != "Approved" && c["type"] != "Denied")
        .collect();
    conds.extend(
        new_conds
            .into_iter()
            .filter(|c| c["type"] == "Approved" || c["type"] == "Denied"),
    );
    let mut v = old.clone();
    v["status"]["conditions"] = json!(conds);
    v["metadata"]["resourceVersion"] = new["metadata"]["resourceVersion"].clone();
    Ok(v)
}
