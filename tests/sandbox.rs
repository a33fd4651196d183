//! The local control plane: authentication, RBAC, resources, watch, controllers, faults, kubectl
//! as a client, the `sandbox` and `demo` commands, and contract tests against `fixtures/api/`.

mod common;

use std::time::Duration;

use base64::Engine;
use common::*;
use serde_json::{Value, json};

const CSRS: &str = "/apis/certificates.k8s.io/v1/certificatesigningrequests";
const CLIENT_SIGNER: &str = "kubernetes.io/kube-apiserver-client-kubelet";
const SERVING_SIGNER: &str = "kubernetes.io/kubelet-serving";

fn fixture(name: &str) -> Value {
    let text = std::fs::read_to_string(format!(
        "{}/fixtures/api/{name}",
        env!("CARGO_MANIFEST_DIR")
    ))
    .unwrap();
    serde_json::from_str(&text).unwrap()
}

/// Every key of `want` is in `got` with the same JSON type (arrays: by their first element);
/// the identity fields of the top-level object are equal.
fn assert_shape(want: &Value, got: &Value, path: &str) {
    shape(want, got, path, 0)
}

fn shape(want: &Value, got: &Value, path: &str, depth: usize) {
    match (want, got) {
        (Value::Object(w), Value::Object(g)) => {
            for (k, wv) in w {
                let gv = g
                    .get(k)
                    .unwrap_or_else(|| panic!("{path}.{k} missing in {got}"));
                if depth == 0
                    && ["kind", "apiVersion", "status", "reason", "code", "type"]
                        .contains(&k.as_str())
                    && !wv.is_object()
                {
                    assert_eq!(wv, gv, "{path}.{k}");
                }
                shape(wv, gv, &format!("{path}.{k}"), depth + 1);
            }
        }
        (Value::Array(w), Value::Array(g)) => {
            if let (Some(w0), Some(g0)) = (w.first(), g.first()) {
                shape(w0, g0, &format!("{path}[0]"), depth + 1);
            }
        }
        (Value::String(_), Value::String(_))
        | (Value::Bool(_), Value::Bool(_))
        | (Value::Number(_), Value::Number(_))
        | (Value::Null, _) => {}
        _ => panic!("{path}: expected a value like {want}, got {got}"),
    }
}

fn token_user(sb: &TestSandbox, token: &str, expiration: Option<&str>, usages: &[&str]) {
    sb.add_token(token, expiration, usages);
}

#[test]
fn status_shapes_match_the_fixtures() {
    let sb = TestSandbox::start();
    let (code, v) = sb.json(
        Who::Bearer("nosuch.0123456789abcdef"),
        "GET",
        "/api/v1/namespaces",
        None,
    );
    assert_eq!(code, 401);
    assert_shape(&fixture("status-401.json"), &v, "401");
    let (code, v) = sb.json(
        Who::Anonymous,
        "GET",
        "/api/v1/namespaces/kube-system/secrets",
        None,
    );
    assert_eq!(code, 403);
    assert_shape(&fixture("status-403.json"), &v, "403");
    assert_eq!(
        v["message"],
        fixture("status-403.json")["message"],
        "the real message shape"
    );
    let (code, v) = sb.json(
        Who::Admin,
        "GET",
        "/api/v1/namespaces/kube-system/secrets/missing",
        None,
    );
    assert_eq!(code, 404);
    assert_eq!(v, fixture("status-404.json"));
    let csr = csr_json(
        "node-csr-example",
        "system:node:n",
        &["system:nodes"],
        &[],
        CLIENT_SIGNER,
        &["digital signature", "client auth"],
        None,
    );
    assert_eq!(sb.json(Who::Admin, "POST", CSRS, Some(csr.clone())).0, 201);
    let (code, v) = sb.json(Who::Admin, "POST", CSRS, Some(csr));
    assert_eq!(code, 409);
    assert_eq!(v, fixture("status-409.json"));
    let short = csr_json(
        "short",
        "system:node:n",
        &["system:nodes"],
        &[],
        CLIENT_SIGNER,
        &["digital signature", "client auth"],
        Some(599),
    );
    let (code, v) = sb.json(Who::Admin, "POST", CSRS, Some(short));
    assert_eq!(code, 422);
    assert_eq!(v, fixture("status-422.json"));
}

#[test]
fn discovery_documents_match_the_fixtures() {
    let sb = TestSandbox::start();
    for (path, fix) in [
        ("/version", "discovery-version.json"),
        ("/api", "discovery-api.json"),
        ("/apis", "discovery-apis.json"),
        (
            "/apis/certificates.k8s.io/v1",
            "discovery-certificates-v1.json",
        ),
        ("/api/v1", "discovery-core-v1.json"),
    ] {
        let (code, v) = sb.json(Who::Anonymous, "GET", path, None);
        if path == "/version" {
            assert_eq!(code, 200);
        } else {
            assert_eq!(
                code, 403,
                "anonymous may not discover {path} (system:discovery is for authenticated users)"
            );
        }
        let (code, v2) = sb.json(Who::Admin, "GET", path, None);
        assert_eq!(code, 200, "{path}");
        let got = if path == "/version" { v } else { v2 };
        assert_shape(&fixture(fix), &got, path);
    }
    let (_, v) = sb.json(Who::Admin, "GET", "/apis/certificates.k8s.io/v1", None);
    let csr = v["resources"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["name"] == "certificatesigningrequests")
        .unwrap();
    assert_eq!(csr["shortNames"], json!(["csr"]));
}

#[test]
fn an_issued_csr_and_its_watch_events_match_the_fixtures() {
    let sb = TestSandbox::start();
    let token = "shapes.0123456789abcdef";
    token_user(&sb, token, None, &["authentication", "signing"]);
    let csr = csr_json(
        "node-csr-example",
        "system:node:n1",
        &["system:nodes"],
        &[],
        CLIENT_SIGNER,
        &["digital signature", "client auth"],
        None,
    );
    let (code, created) = sb.json(Who::Bearer(token), "POST", CSRS, Some(csr));
    assert_eq!(code, 201, "{created}");
    let rv = created["metadata"]["resourceVersion"]
        .as_str()
        .unwrap()
        .to_string();
    let path = format!(
        "{CSRS}?watch=true&fieldSelector=metadata.name%3Dnode-csr-example&resourceVersion={rv}&timeoutSeconds=5"
    );
    let events = sb.watch_events(Who::Bearer(token), &path, 2, Duration::from_secs(5));
    assert_eq!(events.len(), 2, "approved, then issued: {events:?}");
    let want: Vec<Value> = std::fs::read_to_string(format!(
        "{}/fixtures/api/watch-events.jsonl",
        env!("CARGO_MANIFEST_DIR")
    ))
    .unwrap()
    .lines()
    .map(|l| serde_json::from_str(l).unwrap())
    .collect();
    assert_shape(&want[1], &events[0], "MODIFIED");
    let issued = &events[1]["object"];
    assert_shape(&fixture("csr-issued.json"), issued, "csr");
    assert_eq!(issued["spec"]["username"], "system:bootstrap:shapes");
    assert_eq!(
        issued["spec"]["groups"],
        json!([
            "system:bootstrappers",
            "system:bootstrappers:kubeadm:default-node-token",
            "system:authenticated"
        ])
    );
    // A watch from a resourceVersion older than the history: 410 Gone as an ERROR event.
    let gone = sb.watch_events(
        Who::Admin,
        &format!("{CSRS}?watch=1&resourceVersion=0&timeoutSeconds=1"),
        1,
        Duration::from_secs(2),
    );
    assert_eq!(
        gone[0]["type"], "ADDED",
        "resourceVersion 0 starts with the current state"
    );
    // Bookmarks when asked for.
    let bm = sb.watch_events(
        Who::Admin,
        &format!(
            "{CSRS}?watch=true&allowWatchBookmarks=true&resourceVersion={}&timeoutSeconds=7",
            issued["metadata"]["resourceVersion"].as_str().unwrap()
        ),
        1,
        Duration::from_secs(7),
    );
    assert_eq!(bm[0]["type"], "BOOKMARK");
    assert_shape(&want[2], &bm[0], "BOOKMARK");
}

#[test]
fn the_bootstrap_token_authenticator_applies_every_rule() {
    let sb = TestSandbox::start();
    let create = |token: &str, name: &str| {
        let csr = csr_json(
            name,
            "system:node:x",
            &["system:nodes"],
            &[],
            CLIENT_SIGNER,
            &["digital signature", "client auth"],
            None,
        );
        sb.json(Who::Bearer(token), "POST", CSRS, Some(csr)).0
    };
    token_user(
        &sb,
        "goodtk.0123456789abcdef",
        Some("2099-01-01T00:00:00Z"),
        &["authentication"],
    );
    assert_eq!(create("goodtk.0123456789abcdef", "a1"), 201);
    assert_eq!(create("goodtk.0123456789abcdeg", "a2"), 401, "wrong secret");
    assert_eq!(create("nosuch.0123456789abcdef", "a3"), 401, "unknown id");
    assert_eq!(create("not-a-token", "a4"), 401, "not the token format");
    token_user(
        &sb,
        "exprd1.0123456789abcdef",
        Some("2020-01-01T00:00:00Z"),
        &["authentication"],
    );
    assert_eq!(create("exprd1.0123456789abcdef", "a5"), 401, "expired");
    token_user(
        &sb,
        "badexp.0123456789abcdef",
        Some("tomorrow"),
        &["authentication"],
    );
    assert_eq!(
        create("badexp.0123456789abcdef", "a6"),
        401,
        "unparseable expiration counts as expired"
    );
    token_user(&sb, "nouse1.0123456789abcdef", None, &["signing"]);
    assert_eq!(
        create("nouse1.0123456789abcdef", "a7"),
        401,
        "no usage-bootstrap-authentication"
    );
    let bad_groups = "system:bootstrappers:ok,system:masters";
    sb.add_token_for(
        "badgrp.0123456789abcdef",
        None,
        &["authentication"],
        bad_groups,
    );
    assert_eq!(
        create("badgrp.0123456789abcdef", "a8"),
        401,
        "one invalid extra group rejects the token"
    );
    let mut wrong_type = bootlet::sandbox::token_secret(
        &bootlet::token::BootstrapToken::parse("wrongt.0123456789abcdef").unwrap(),
        None,
        &["authentication"],
        "",
    );
    wrong_type["type"] = json!("Opaque");
    sb.sb().put("secrets", "kube-system", wrong_type);
    assert_eq!(
        create("wrongt.0123456789abcdef", "a9"),
        401,
        "wrong Secret type"
    );
    let mut mismatched = bootlet::sandbox::token_secret(
        &bootlet::token::BootstrapToken::parse("mismat.0123456789abcdef").unwrap(),
        None,
        &["authentication"],
        "",
    );
    mismatched["data"]["token-id"] =
        json!(base64::engine::general_purpose::STANDARD.encode("other1"));
    sb.sb().put("secrets", "kube-system", mismatched);
    assert_eq!(
        create("mismat.0123456789abcdef", "a10"),
        401,
        "token-id must match the name"
    );
    // Client certificates: user = CN, groups = O.
    let (_, v) = sb.json(
        Who::Cert("jane", &["dev", "ops"]),
        "POST",
        "/apis/authentication.k8s.io/v1/selfsubjectreviews",
        Some(json!({"kind": "SelfSubjectReview", "apiVersion": "authentication.k8s.io/v1"})),
    );
    assert_eq!(v["status"]["userInfo"]["username"], "jane");
    assert_eq!(
        v["status"]["userInfo"]["groups"],
        json!(["dev", "ops", "system:authenticated"])
    );
}

#[test]
fn rbac_follows_the_bootstrap_policy_and_the_kubeadm_bindings() {
    let sb = TestSandbox::start();
    let token = "rbacbt.0123456789abcdef";
    token_user(&sb, token, None, &["authentication"]);
    let (code, v) = sb.json(
        Who::Bearer(token),
        "GET",
        "/api/v1/namespaces/kube-system/secrets",
        None,
    );
    assert_eq!(code, 403);
    assert_eq!(
        v["message"],
        "secrets is forbidden: User \"system:bootstrap:rbacbt\" cannot list resource \"secrets\" in API group \"\" in the namespace \"kube-system\""
    );
    assert_eq!(
        sb.json(
            Who::Anonymous,
            "GET",
            "/api/v1/namespaces/kube-public/configmaps/cluster-info",
            None
        )
        .0,
        200
    );
    assert_eq!(
        sb.json(
            Who::Anonymous,
            "GET",
            "/api/v1/namespaces/kube-public/configmaps/other",
            None
        )
        .0,
        403
    );
    let node_csr = csr_json(
        "n-serving",
        "system:node:n1",
        &["system:nodes"],
        &["n1".into()],
        SERVING_SIGNER,
        &["digital signature", "server auth"],
        None,
    );
    assert_eq!(
        sb.json(
            Who::Cert("system:node:n1", &["system:nodes"]),
            "POST",
            CSRS,
            Some(node_csr)
        )
        .0,
        201,
        "the Node authorizer lets nodes create CSRs"
    );
    assert_eq!(
        sb.json(Who::Cert("jane", &["dev"]), "GET", CSRS, None).0,
        403
    );
    // A bare cluster has the default policy but not kubeadm's bindings.
    let bare = TestSandbox::configured(|o| o.bare = true);
    token_user(&bare, token, None, &["authentication"]);
    let csr = csr_json(
        "b1",
        "system:node:n1",
        &["system:nodes"],
        &[],
        CLIENT_SIGNER,
        &["digital signature", "client auth"],
        None,
    );
    let (code, v) = bare.json(Who::Bearer(token), "POST", CSRS, Some(csr));
    assert_eq!(code, 403, "{v}");
    assert_eq!(
        v["message"],
        "certificatesigningrequests.certificates.k8s.io is forbidden: User \"system:bootstrap:rbacbt\" cannot create resource \"certificatesigningrequests\" in API group \"certificates.k8s.io\" at the cluster scope"
    );
    assert!(
        bare.sb()
            .get("configmaps", "kube-public", "cluster-info")
            .is_none()
    );
    assert!(
        bare.sb()
            .get("clusterroles", "", "system:node-bootstrapper")
            .is_some()
    );
}

fn conditions(csr: &Value) -> Vec<String> {
    csr["status"]["conditions"]
        .as_array()
        .map(|a| {
            a.iter()
                .map(|c| {
                    format!(
                        "{}:{}",
                        c["type"].as_str().unwrap(),
                        c["reason"].as_str().unwrap_or("")
                    )
                })
                .collect()
        })
        .unwrap_or_default()
}

#[test]
fn the_approver_and_signer_follow_the_real_rules() {
    let sb = TestSandbox::start();
    let token = "ctrlbt.0123456789abcdef";
    token_user(&sb, token, None, &["authentication"]);
    // A kubelet client CSR from a bootstrapper: approved and signed; expirationSeconds honoured.
    let csr = csr_json(
        "c1",
        "system:node:n1",
        &["system:nodes"],
        &[],
        CLIENT_SIGNER,
        &["digital signature", "client auth"],
        Some(3600),
    );
    assert_eq!(sb.json(Who::Bearer(token), "POST", CSRS, Some(csr)).0, 201);
    let issued = eventually(5, || {
        sb.sb()
            .get("certificatesigningrequests", "", "c1")
            .filter(|c| c["status"]["certificate"].is_string())
    });
    assert_eq!(conditions(&issued), ["Approved:AutoApproved"]);
    let pem = base64::engine::general_purpose::STANDARD
        .decode(issued["status"]["certificate"].as_str().unwrap())
        .unwrap();
    let der = bootlet::pki::parse_certs_pem(&pem, "c").unwrap();
    let info = bootlet::pki::cert::CertInfo::parse(&der[0]).unwrap();
    assert_eq!(
        info.not_after - info.not_before,
        3600 + 300,
        "1h plus the 5 minute backdate"
    );
    assert!(bootlet::pki::cert::signed_by(
        &der[0],
        sb.sb().ca().cert_der()
    ));
    // The floor: 600 s requested is the minimum accepted.
    let csr = csr_json(
        "c2",
        "system:node:n2",
        &["system:nodes"],
        &[],
        CLIENT_SIGNER,
        &["digital signature", "client auth"],
        Some(600),
    );
    assert_eq!(sb.json(Who::Bearer(token), "POST", CSRS, Some(csr)).0, 201);
    let c2 = eventually(5, || {
        sb.sb()
            .get("certificatesigningrequests", "", "c2")
            .filter(|c| c["status"]["certificate"].is_string())
    });
    let info = bootlet::pki::cert::CertInfo::parse(
        &bootlet::pki::parse_certs_pem(
            &base64::engine::general_purpose::STANDARD
                .decode(c2["status"]["certificate"].as_str().unwrap())
                .unwrap(),
            "c",
        )
        .unwrap()[0],
    )
    .unwrap();
    assert_eq!(info.not_after - info.not_before, 600 + 300);
    // A serving CSR is never auto-approved.
    let serving = csr_json(
        "s1",
        "system:node:n1",
        &["system:nodes"],
        &["n1".into()],
        SERVING_SIGNER,
        &["digital signature", "server auth"],
        None,
    );
    assert_eq!(
        sb.json(
            Who::Cert("system:node:n1", &["system:nodes"]),
            "POST",
            CSRS,
            Some(serving)
        )
        .0,
        201
    );
    std::thread::sleep(Duration::from_millis(1500));
    assert!(conditions(&sb.sb().get("certificatesigningrequests", "", "s1").unwrap()).is_empty());
    // A client CSR that breaks the kubelet rules is not auto-approved; approved by an admin, the
    // signer marks it Failed.
    let bad = csr_json(
        "bad1",
        "system:node:n1",
        &["system:nodes"],
        &["evil.example".into()],
        CLIENT_SIGNER,
        &["digital signature", "client auth"],
        None,
    );
    assert_eq!(sb.json(Who::Bearer(token), "POST", CSRS, Some(bad)).0, 201);
    std::thread::sleep(Duration::from_millis(1200));
    assert!(
        conditions(
            &sb.sb()
                .get("certificatesigningrequests", "", "bad1")
                .unwrap()
        )
        .is_empty()
    );
    let approve = sb.kubectl(&["certificate", "approve", "bad1"]);
    assert_eq!(approve.code, 0, "{}", approve.stderr);
    let failed = eventually(5, || {
        sb.sb()
            .get("certificatesigningrequests", "", "bad1")
            .filter(|c| conditions(c).len() == 2)
    });
    assert_eq!(
        conditions(&failed),
        ["Approved:KubectlApprove", "Failed:SignerValidationFailure"]
    );
    assert!(
        failed["status"]["conditions"][1]["message"]
            .as_str()
            .unwrap()
            .contains("DNS subjectAltNames are not allowed")
    );
    // Serving CSRs are approved with --auto-approve-serving, and only the node's own.
    let demo = TestSandbox::configured(|o| o.auto_approve_serving = true);
    let own = csr_json(
        "s2",
        "system:node:n1",
        &["system:nodes"],
        &["n1".into()],
        SERVING_SIGNER,
        &["digital signature", "server auth"],
        None,
    );
    assert_eq!(
        demo.json(
            Who::Cert("system:node:n1", &["system:nodes"]),
            "POST",
            CSRS,
            Some(own)
        )
        .0,
        201
    );
    eventually(5, || {
        demo.sb()
            .get("certificatesigningrequests", "", "s2")
            .filter(|c| c["status"]["certificate"].is_string())
    });
    // Another node's name is refused at create by NodeRestriction (admitCSR), as the real API
    // server does; nothing is left for the demo's auto-approval to consider.
    let foreign = csr_json(
        "s3",
        "system:node:other",
        &["system:nodes"],
        &["other".into()],
        SERVING_SIGNER,
        &["digital signature", "server auth"],
        None,
    );
    let (code, body) = demo.json(
        Who::Cert("system:node:n1", &["system:nodes"]),
        "POST",
        CSRS,
        Some(foreign),
    );
    assert_eq!(code, 403, "{body}");
    assert_has(
        body["message"].as_str().unwrap(),
        "can only create a node CSR with CN=system:node:n1",
    );
    assert!(
        demo.sb()
            .get("certificatesigningrequests", "", "s3")
            .is_none()
    );
}

#[test]
fn the_bootstrap_signer_is_byte_compatible_with_kubeadm_and_the_cleaner_removes_expired_tokens() {
    let sb = TestSandbox::start();
    let golden = std::fs::read_to_string(format!(
        "{}/fixtures/kubeadm-golden/cluster-info-kubeconfig.yaml",
        env!("CARGO_MANIFEST_DIR")
    ))
    .unwrap();
    let mut ci = sb
        .sb()
        .get("configmaps", "kube-public", "cluster-info")
        .unwrap();
    ci["data"] = json!({"kubeconfig": golden});
    sb.sb().put("configmaps", "kube-public", ci);
    token_user(&sb, "abcdef.abcdef0123456789", None, &["signing"]);
    let signed = eventually(5, || {
        sb.sb()
            .get("configmaps", "kube-public", "cluster-info")
            .filter(|c| c["data"]["jws-kubeconfig-abcdef"].is_string())
    });
    assert_eq!(
        signed["data"]["jws-kubeconfig-abcdef"],
        "eyJhbGciOiJIUzI1NiIsImtpZCI6ImFiY2RlZiJ9..wUZ0q9o0VK1RWFptmSBOEem2bXHWrHyxrposHg0mb1w"
    );
    // A token without usage-bootstrap-signing gets no signature; an expired one loses its
    // signature and its Secret.
    token_user(&sb, "nosign.0123456789abcdef", None, &["authentication"]);
    let soon = (time::OffsetDateTime::now_utc() + time::Duration::seconds(2))
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap();
    token_user(
        &sb,
        "expire.0123456789abcdef",
        Some(&soon),
        &["signing", "authentication"],
    );
    eventually(5, || {
        sb.sb()
            .get("configmaps", "kube-public", "cluster-info")
            .filter(|c| c["data"]["jws-kubeconfig-expire"].is_string())
    });
    eventually(8, || {
        sb.sb()
            .get("secrets", "kube-system", "bootstrap-token-expire")
            .is_none()
            .then_some(())
    });
    let ci = eventually(5, || {
        sb.sb()
            .get("configmaps", "kube-public", "cluster-info")
            .filter(|c| c["data"]["jws-kubeconfig-expire"].is_null())
    });
    assert!(ci["data"]["jws-kubeconfig-nosign"].is_null());
    assert!(ci["data"]["jws-kubeconfig-abcdef"].is_string());
}

#[test]
fn resources_validate_conflict_and_guard_the_approval_subresource() {
    let sb = TestSandbox::start();
    // Stale update: 409 Conflict.
    let (_, cm) = sb.json(Who::Admin, "POST", "/api/v1/namespaces/default/configmaps", Some(json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c"}, "data": {"a": "1"}})));
    let mut stale = cm.clone();
    let mut fresh = cm.clone();
    fresh["data"]["a"] = json!("2");
    assert_eq!(
        sb.json(
            Who::Admin,
            "PUT",
            "/api/v1/namespaces/default/configmaps/c",
            Some(fresh)
        )
        .0,
        200
    );
    stale["data"]["a"] = json!("3");
    let (code, v) = sb.json(
        Who::Admin,
        "PUT",
        "/api/v1/namespaces/default/configmaps/c",
        Some(stale),
    );
    assert_eq!((code, v["reason"].as_str()), (409, Some("Conflict")));
    // Invalid objects: 422.
    let (code, v) = sb.json(
        Who::Admin,
        "POST",
        "/api/v1/namespaces/default/configmaps",
        Some(json!({"metadata": {"name": "Bad_Name"}})),
    );
    assert_eq!((code, v["reason"].as_str()), (422, Some("Invalid")));
    let mut bad_pem = csr_json(
        "bp",
        "system:node:n",
        &["system:nodes"],
        &[],
        CLIENT_SIGNER,
        &["client auth"],
        None,
    );
    bad_pem["spec"]["request"] =
        json!(base64::engine::general_purpose::STANDARD.encode("not a csr"));
    assert_eq!(sb.json(Who::Admin, "POST", CSRS, Some(bad_pem)).0, 422);
    let no_usages = csr_json(
        "nu",
        "system:node:n",
        &["system:nodes"],
        &[],
        CLIENT_SIGNER,
        &[],
        None,
    );
    assert_eq!(sb.json(Who::Admin, "POST", CSRS, Some(no_usages)).0, 422);
    // Creating in a missing namespace: 404.
    assert_eq!(
        sb.json(
            Who::Admin,
            "POST",
            "/api/v1/namespaces/nope/configmaps",
            Some(json!({"metadata": {"name": "x"}}))
        )
        .0,
        404
    );
    // Approval: Approved and Denied exclude each other; conditions cannot be removed.
    let csr = csr_json(
        "ap",
        "system:node:n",
        &["system:nodes"],
        &["n".into()],
        SERVING_SIGNER,
        &["digital signature", "server auth"],
        None,
    );
    let (_, created) = sb.json(Who::Admin, "POST", CSRS, Some(csr));
    let mut both = created.clone();
    both["status"]["conditions"] =
        json!([{"type": "Approved", "status": "True"}, {"type": "Denied", "status": "True"}]);
    let (code, v) = sb.json(
        Who::Admin,
        "PUT",
        &format!("{CSRS}/ap/approval"),
        Some(both),
    );
    assert_eq!(code, 422, "{v}");
    assert!(
        v["message"]
            .as_str()
            .unwrap()
            .contains("mutually exclusive")
    );
    let mut approve = created.clone();
    approve["status"]["conditions"] =
        json!([{"type": "Approved", "status": "True", "reason": "Test"}]);
    let (code, approved) = sb.json(
        Who::Admin,
        "PUT",
        &format!("{CSRS}/ap/approval"),
        Some(approve),
    );
    assert_eq!(code, 200);
    let mut remove = approved.clone();
    remove["status"]["conditions"] = json!([]);
    let (code, v) = sb.json(
        Who::Admin,
        "PUT",
        &format!("{CSRS}/ap/approval"),
        Some(remove),
    );
    assert_eq!(code, 422, "{v}");
    // Only callers allowed to approve the signer may approve.
    let (code, v) = sb.json(
        Who::Cert("system:node:n", &["system:nodes"]),
        "PUT",
        &format!("{CSRS}/ap/approval"),
        Some(approved),
    );
    assert_eq!(code, 403, "{v}");
    // Delete.
    assert_eq!(
        sb.json(Who::Admin, "DELETE", &format!("{CSRS}/ap"), None).0,
        200
    );
    assert_eq!(
        sb.json(Who::Admin, "GET", &format!("{CSRS}/ap"), None).0,
        404
    );
}

#[test]
fn kubectl_works_against_the_sandbox() {
    let sb = TestSandbox::start();
    let ns = sb.kubectl(&["get", "ns"]);
    assert_eq!(ns.code, 0, "{}", ns.stderr);
    for n in ["default", "kube-system", "kube-public"] {
        assert!(ns.stdout.contains(n));
    }
    let dir = tempfile::tempdir().unwrap();
    let secret = write_file(
        dir.path(),
        "token.yaml",
        "apiVersion: v1\nkind: Secret\nmetadata:\n  name: bootstrap-token-07401b\n  namespace: kube-system\ntype: bootstrap.kubernetes.io/token\nstringData:\n  auth-extra-groups: system:bootstrappers:kubeadm:default-node-token\n  expiration: \"2099-01-01T00:00:00Z\"\n  token-id: 07401b\n  token-secret: f395accd246ae52d\n  usage-bootstrap-authentication: \"true\"\n  usage-bootstrap-signing: \"true\"\n",
    );
    let created = sb.kubectl(&["create", "-f", secret.to_str().unwrap()]);
    assert_eq!(created.code, 0, "{}", created.stderr);
    let applied = sb.kubectl(&["apply", "-f", secret.to_str().unwrap()]);
    assert_eq!(applied.code, 0, "{}", applied.stderr);
    let secrets = sb.kubectl(&["get", "secret", "-n", "kube-system"]);
    assert!(
        secrets
            .stdout
            .contains("bootstrap-token-07401b   bootstrap.kubernetes.io/token   6"),
        "{}",
        secrets.stdout
    );
    // The token kubectl created authenticates, and its CSR shows up in kubectl.
    let csr = csr_json(
        "node-csr-kubectl",
        "system:node:k1",
        &["system:nodes"],
        &["k1".into()],
        SERVING_SIGNER,
        &["digital signature", "server auth"],
        None,
    );
    assert_eq!(
        sb.json(
            Who::Cert("system:node:k1", &["system:nodes"]),
            "POST",
            CSRS,
            Some(csr)
        )
        .0,
        201
    );
    let list = sb.kubectl(&["get", "csr"]);
    assert!(
        list.stdout.contains("node-csr-kubectl")
            && list.stdout.contains("Pending")
            && list.stdout.contains("system:node:k1"),
        "{}",
        list.stdout
    );
    let yaml = sb.kubectl(&["get", "csr", "node-csr-kubectl", "-o", "yaml"]);
    assert!(
        yaml.stdout
            .contains("signerName: kubernetes.io/kubelet-serving")
            && yaml.stdout.contains("username: system:node:k1"),
        "{}",
        yaml.stdout
    );
    let approve = sb.kubectl(&["certificate", "approve", "node-csr-kubectl"]);
    assert_eq!(approve.code, 0, "{}", approve.stderr);
    eventually(5, || {
        sb.sb()
            .get("certificatesigningrequests", "", "node-csr-kubectl")
            .filter(|c| c["status"]["certificate"].is_string())
    });
    let other = csr_json(
        "node-csr-deny",
        "system:node:k1",
        &["system:nodes"],
        &["k1".into()],
        SERVING_SIGNER,
        &["digital signature", "server auth"],
        None,
    );
    sb.json(Who::Admin, "POST", CSRS, Some(other));
    let deny = sb.kubectl(&["certificate", "deny", "node-csr-deny"]);
    assert_eq!(deny.code, 0, "{}", deny.stderr);
    let listed = sb.kubectl(&["get", "csr"]);
    assert!(
        listed
            .stdout
            .lines()
            .any(|l| l.starts_with("node-csr-deny") && l.contains("Denied")),
        "{}",
        listed.stdout
    );
    assert!(
        listed
            .stdout
            .lines()
            .any(|l| l.starts_with("node-csr-kubectl") && l.contains("Approved,Issued"))
    );
    let who = sb.kubectl(&[
        "auth",
        "whoami",
        "-o",
        "jsonpath={.status.userInfo.username}",
    ]);
    assert_eq!(who.stdout, "kubernetes-admin");
}

#[test]
fn faults_latency_and_counters() {
    let sb = TestSandbox::configured(|o| o.fault_rate = 1.0);
    let mut seen = std::collections::BTreeSet::new();
    for _ in 0..30 {
        let (code, headers, v) = sb.raw(Who::Admin, "GET", "/api/v1/namespaces", None);
        seen.insert(code);
        if code == 429 {
            assert_eq!(headers.get("retry-after").unwrap(), "1");
            assert_eq!(v["details"]["retryAfterSeconds"], 1);
        } else {
            assert_eq!((code, v["reason"].as_str()), (500, Some("InternalError")));
        }
    }
    assert_eq!(seen.into_iter().collect::<Vec<_>>(), [429, 500]);
    let (code, _, counters) = sb.raw(Who::Admin, "GET", "/sandbox/v1/requests", None);
    assert_eq!(code, 200);
    assert_eq!(counters["kubernetes-admin"]["list"], 30);
    assert_eq!(
        sb.raw(Who::Anonymous, "GET", "/sandbox/v1/requests", None)
            .0,
        403
    );
    let slow = TestSandbox::configured(|o| o.latency_ms = (150, 150));
    let t = std::time::Instant::now();
    slow.raw(Who::Admin, "GET", "/version", None);
    assert!(t.elapsed() >= Duration::from_millis(150));
    let drops = TestSandbox::configured(|o| o.drop_watch_after = Some(Duration::from_millis(300)));
    let t = std::time::Instant::now();
    let events = drops.watch_events(
        Who::Admin,
        &format!("{CSRS}?watch=true&resourceVersion=1&timeoutSeconds=30"),
        10,
        Duration::from_secs(10),
    );
    assert!(events.is_empty());
    assert!(
        t.elapsed() < Duration::from_secs(5),
        "the watch was dropped early"
    );
}

#[test]
fn the_sandbox_command_serves_writes_its_files_and_stops_on_ctrl_c() {
    use std::io::{BufRead, BufReader};
    let dir = tempfile::tempdir().unwrap();
    let mut child = std::process::Command::new(bin())
        .args(["sandbox", "--dir", dir.path().to_str().unwrap()])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let mut out = BufReader::new(child.stdout.take().unwrap());
    let mut first = String::new();
    out.read_line(&mut first).unwrap();
    let url = first
        .trim()
        .strip_prefix("bootlet sandbox is serving ")
        .expect("the first line names the URL")
        .to_string();
    assert!(url.starts_with("https://127.0.0.1:"));
    assert_eq!(mode(&dir.path().join("admin.conf")), 0o600);
    assert_eq!(mode(&dir.path().join("ca.key")), 0o600);
    let ns = kubectl_with(
        &dir.path().join("admin.conf"),
        dir.path(),
        &["get", "ns", "-o", "name"],
    );
    assert!(ns.stdout.contains("namespace/kube-system"), "{}", ns.stderr);
    let admin = bootlet::kubeconfig::load(&dir.path().join("admin.conf"), "admin").unwrap();
    assert_eq!(admin.server, url);
    let pem = std::fs::read(dir.path().join("admin.conf")).unwrap();
    let _ = pem;
    // Ctrl-C.
    let pid = child.id().to_string();
    std::process::Command::new("kill")
        .args(["-INT", &pid])
        .status()
        .unwrap();
    let status = child.wait().unwrap();
    assert!(status.success(), "{status:?}");
    let mut rest = String::new();
    std::io::Read::read_to_string(&mut out, &mut rest).unwrap();
    assert!(rest.contains("bootlet sandbox stopped"));
    // Restarted with the same CA: the same pin.
    let again = bootlet(&[
        "sandbox",
        "--dir",
        "/nonexistent/x",
        "--ca-cert",
        "/nonexistent/ca.crt",
        "--ca-key",
        "/nonexistent/ca.key",
    ]);
    assert_eq!(again.code, 11, "{}", again.stderr);
    bootlet(&["sandbox", "--dir", "x", "--fault-rate", "2"]).fails_with(2, "between 0 and 1");
}

#[test]
fn the_demo_joins_a_node_whose_certificates_openssl_accepts() {
    let out = tempfile::tempdir().unwrap();
    let run = bootlet(&["demo", "--out", out.path().to_str().unwrap()]);
    run.ok();
    assert!(
        run.stdout
            .contains("[admin] kubectl certificate approve node-csr-")
    );
    assert!(
        run.stdout
            .contains("authenticates as system:node:demo-node")
    );
    let ca = out.path().join("sandbox/ca.crt");
    for pem in [
        "node/var/lib/kubelet/pki/kubelet-client-current.pem",
        "node/var/lib/kubelet/pki/kubelet-server-current.pem",
    ] {
        assert!(
            openssl_verify(&ca, &out.path().join(pem)),
            "openssl rejects {pem}"
        );
    }
    for phase in JOIN_PHASES {
        assert!(
            run.stdout
                .lines()
                .any(|l| l.trim_start().starts_with(phase) && l.contains(" ms ")),
            "no timing for {phase}"
        );
    }
    let k = tempfile::tempdir().unwrap();
    bootlet(&[
        "demo",
        "--out",
        k.path().to_str().unwrap(),
        "--layout",
        "krustlet",
    ])
    .ok();
    assert!(openssl_verify(
        &k.path().join("sandbox/ca.crt"),
        &k.path().join("node/krustlet/config/krustlet.crt")
    ));
}
