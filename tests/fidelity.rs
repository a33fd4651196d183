//! The sandbox against clients nobody here wrote (issue 12): kubectl for what an operator types,
//! raw HTTP for what a client library sends, and the official Python client when it is
//! installed. Each divergence from kube-apiserver that was found has its test here, with the
//! upstream rule it follows.

mod common;

use std::path::Path;
use std::time::{Duration, Instant};

use bootlet::sandbox::SandboxOptions;
use common::*;
use serde_json::json;

fn kubectl_ok(sb: &TestSandbox, args: &[&str]) -> String {
    let r = sb.kubectl(args);
    assert_eq!(r.code, 0, "kubectl {args:?}\n{}\n{}", r.stdout, r.stderr);
    r.stdout
}

/// A CSR PEM made by openssl (an independent maker), base64 for `spec.request`.
fn openssl_csr(subject: &str, sans: Option<&str>) -> String {
    use base64::Engine;
    let dir = tempfile::tempdir().unwrap();
    let req = openssl_req(dir.path(), "r", subject, sans);
    base64::engine::general_purpose::STANDARD.encode(std::fs::read(req).unwrap())
}

const CSRS: &str = "/apis/certificates.k8s.io/v1/certificatesigningrequests";

#[test]
fn kubectl_auth_can_i_and_impersonation_use_the_sandboxs_own_authorizers() {
    let sb = TestSandbox::start();
    assert_eq!(
        kubectl_ok(
            &sb,
            &["auth", "can-i", "create", "certificatesigningrequests"]
        )
        .trim(),
        "yes"
    );
    let token_user = [
        "--as",
        "system:bootstrap:abcdef",
        "--as-group",
        "system:bootstrappers:kubeadm:default-node-token",
    ];
    let can = |verb: &str, what: &str| {
        let mut args = vec!["auth", "can-i", verb, what];
        args.extend_from_slice(&token_user);
        sb.kubectl(&args).stdout.trim().to_string()
    };
    assert_eq!(can("create", "certificatesigningrequests"), "yes");
    assert_eq!(can("list", "secrets"), "no");
    let mut list = vec!["auth", "can-i", "--list"];
    list.extend_from_slice(&token_user);
    let rules = kubectl_ok(&sb, &list);
    assert!(
        rules.contains("certificatesigningrequests.certificates.k8s.io"),
        "{rules}"
    );
    assert!(
        rules.contains("certificatesigningrequests.certificates.k8s.io/nodeclient"),
        "{rules}"
    );
    assert!(
        !rules.contains("*.*"),
        "the token user is not an admin\n{rules}"
    );
    let admin = kubectl_ok(&sb, &["auth", "can-i", "--list"]);
    assert!(admin.contains("*.*"), "{admin}");

    // --as: the admin lists secrets as the token user, and is refused as it would be.
    let as_token = sb.kubectl(&[
        "get",
        "secrets",
        "-n",
        "kube-system",
        "--as",
        "system:bootstrap:abcdef",
    ]);
    assert_ne!(as_token.code, 0);
    assert!(
        as_token
            .stderr
            .contains("User \"system:bootstrap:abcdef\" cannot list resource \"secrets\""),
        "{}",
        as_token.stderr
    );
    // A non-admin may not impersonate at all.
    let (code, body) = sb.json_as(
        Who::Cert("system:node:n1", &["system:nodes"]),
        &[("Impersonate-User", "kubernetes-admin")],
        "GET",
        "/api/v1/namespaces/kube-system/secrets",
        None,
    );
    assert_eq!(code, 403, "{body}");
    assert!(
        body["message"]
            .as_str()
            .unwrap()
            .contains("cannot impersonate resource \"users\""),
        "{body}"
    );
    let (code, body) = sb.json_as(
        Who::Admin,
        &[("Impersonate-Group", "system:masters")],
        "GET",
        "/api/v1/namespaces",
        None,
    );
    assert_eq!(code, 400, "groups without a user: {body}");
}

#[test]
fn kubectl_watch_columns_approval_timestamps_and_secret_types_match_upstream() {
    let sb = TestSandbox::configured(|o| o.run_controllers = false);
    let dir = tempfile::tempdir().unwrap();
    let watch_out = dir.path().join("watch.out");
    let mut watcher = std::process::Command::new("kubectl")
        .arg("--kubeconfig")
        .arg(sb.admin_conf())
        .args([
            "--cache-dir",
            s(&dir.path().join("cache")),
            "get",
            "csr",
            "-w",
            "--request-timeout=20s",
        ])
        .stdout(std::fs::File::create(&watch_out).unwrap())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(800));
    let request = openssl_csr("/CN=system:node:w1/O=system:nodes", Some("DNS:w1"));
    let manifest = dir.path().join("csr.yaml");
    std::fs::write(&manifest, format!("apiVersion: certificates.k8s.io/v1\nkind: CertificateSigningRequest\nmetadata:\n  name: w1-serving\nspec:\n  request: {request}\n  signerName: kubernetes.io/kubelet-serving\n  usages: [\"digital signature\", \"server auth\"]\n")).unwrap();
    kubectl_ok(&sb, &["create", "-f", s(&manifest)]);
    kubectl_ok(&sb, &["certificate", "approve", "w1-serving"]);
    let seen = eventually(10, || {
        let text = std::fs::read_to_string(&watch_out).unwrap_or_default();
        (text.lines().filter(|l| l.starts_with("w1-serving")).count() >= 2).then_some(text)
    });
    let _ = watcher.kill();
    let _ = watcher.wait();
    // Every event line, not just the first, has the server-side columns.
    for line in seen.lines().filter(|l| l.starts_with("w1-serving")) {
        assert!(
            line.contains("kubernetes.io/kubelet-serving") && line.contains("kubernetes-admin"),
            "{seen}"
        );
    }
    assert!(seen.lines().last().unwrap().contains("Approved"), "{seen}");
    // kubectl's protobuf leaves the condition times to the server: now, not 1970.
    let csr = sb
        .sb()
        .get("certificatesigningrequests", "", "w1-serving")
        .unwrap();
    let t = csr["status"]["conditions"][0]["lastTransitionTime"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(
        t.starts_with("20") && !t.starts_with("1970") && t.ends_with('Z') && t.len() == 20,
        "{t}"
    );

    kubectl_ok(
        &sb,
        &["create", "secret", "generic", "s1", "--from-literal=a=b"],
    );
    assert_eq!(
        kubectl_ok(&sb, &["get", "secret", "s1", "-o", "jsonpath={.type}"]),
        "Opaque"
    );
    let stored = sb.sb().get("secrets", "default", "s1").unwrap();
    assert!(
        stored["metadata"].get("generateName").is_none(),
        "an empty generateName is not echoed: {stored}"
    );
}

#[test]
fn unknown_fields_are_refused_warned_or_dropped_and_never_stored() {
    let sb = TestSandbox::start();
    let dir = tempfile::tempdir().unwrap();
    let f = write_file(
        dir.path(),
        "cm.yaml",
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: strict\ndata:\n  a: b\nbogus: 1\n",
    );
    let strict = sb.kubectl(&["create", "-f", s(&f)]);
    assert_ne!(strict.code, 0);
    assert!(
        strict
            .stderr
            .contains("strict decoding error: unknown field \"bogus\""),
        "{}",
        strict.stderr
    );
    assert!(
        sb.sb().get("configmaps", "default", "strict").is_none(),
        "nothing stored"
    );
    let warn = sb.kubectl(&["create", "-f", s(&f), "--validate=warn"]);
    assert_eq!(warn.code, 0, "{}", warn.stderr);
    assert_has(&warn.stderr, "unknown field \"bogus\"");
    let stored = sb.sb().get("configmaps", "default", "strict").unwrap();
    assert!(stored.get("bogus").is_none(), "{stored}");
    let (code, _) = sb.json(Who::Admin, "POST", "/api/v1/namespaces/default/configmaps?fieldValidation=Ignore", Some(json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "ignored"}, "extra": true})));
    assert_eq!(code, 201);
    assert!(
        sb.sb()
            .get("configmaps", "default", "ignored")
            .unwrap()
            .get("extra")
            .is_none()
    );
    let (code, body) = sb.json(
        Who::Admin,
        "POST",
        "/api/v1/namespaces/default/configmaps?fieldValidation=Loose",
        Some(json!({"metadata": {"name": "x"}})),
    );
    // As the real server answers (fixtures/conformance): a 422 about the request's options.
    assert_eq!(code, 422, "{body}");
    assert_eq!(body["details"]["kind"], "CreateOptions", "{body}");
    assert_eq!(
        body["details"]["causes"][0]["field"], "fieldValidation",
        "{body}"
    );
}

#[test]
fn times_are_stored_as_rfc3339_seconds_in_utc() {
    let sb = TestSandbox::start();
    let (code, lease) = sb.json(Who::Admin, "POST", "/apis/coordination.k8s.io/v1/namespaces/default/leases", Some(json!({
        "apiVersion": "coordination.k8s.io/v1", "kind": "Lease", "metadata": {"name": "t"},
        "spec": {"holderIdentity": "a", "renewTime": "2026-01-01T01:00:00.123456+01:00", "leaseDurationSeconds": 15}})));
    assert_eq!(code, 201, "{lease}");
    assert_eq!(
        lease["spec"]["renewTime"], "2026-01-01T00:00:00.123456Z",
        "MicroTime: six digits, UTC"
    );
    let (code, body) = sb.json(Who::Admin, "POST", "/apis/coordination.k8s.io/v1/namespaces/default/leases", Some(json!({
        "apiVersion": "coordination.k8s.io/v1", "kind": "Lease", "metadata": {"name": "t9"},
        "spec": {"holderIdentity": "a", "renewTime": "2026-01-01T01:00:00.123456789+01:00", "leaseDurationSeconds": 15}})));
    assert_eq!(
        code, 400,
        "Go parses a MicroTime with exactly six digits (RFC3339Micro): {body}"
    );
    let (code, ev) = sb.json(Who::Admin, "POST", "/api/v1/namespaces/default/events", Some(json!({
        "apiVersion": "v1", "kind": "Event", "metadata": {"name": "e1"}, "involvedObject": {"kind": "Node", "name": "n1"},
        "reason": "Test", "message": "m", "type": "Normal", "firstTimestamp": "2026-01-01T05:06:07.89-02:00"})));
    assert_eq!(code, 201, "{ev}");
    assert_eq!(
        ev["firstTimestamp"], "2026-01-01T07:06:07Z",
        "Time: whole seconds, Z"
    );
    let events = kubectl_ok(
        &sb,
        &[
            "get",
            "events",
            "--field-selector",
            "involvedObject.name=n1",
        ],
    );
    assert!(events.contains("Test"), "{events}");
}

#[test]
fn csr_rules_status_subresource_subject_restriction_and_create_validation() {
    let sb = TestSandbox::configured(|o| o.run_controllers = false);
    let token = "sbrst1.0123456789abcdef";
    sb.add_token(token, None, &["authentication"]);
    let request = openssl_csr("/CN=system:node:x/O=system:nodes", Some("DNS:x"));
    let csr = |name: &str, signer: &str, usages: serde_json::Value, request: &str| {
        json!({
        "apiVersion": "certificates.k8s.io/v1", "kind": "CertificateSigningRequest", "metadata": {"name": name},
        "spec": {"request": request, "signerName": signer, "usages": usages}})
    };
    let (code, _) = sb.json(
        Who::Admin,
        "POST",
        CSRS,
        Some(csr(
            "c1",
            "kubernetes.io/kubelet-serving",
            json!(["digital signature", "server auth"]),
            &request,
        )),
    );
    assert_eq!(code, 201);
    // Approval only through /approval (strategy.go: /status preserves Approved/Denied).
    let mut with_approved = sb.sb().get("certificatesigningrequests", "", "c1").unwrap();
    with_approved["status"]["conditions"] =
        json!([{"type": "Approved", "status": "True", "reason": "Sneaky", "message": "m"}]);
    let (code, body) = sb.json(
        Who::Admin,
        "PUT",
        &format!("{CSRS}/c1/status"),
        Some(with_approved.clone()),
    );
    assert_eq!(code, 422, "{body}");
    assert!(
        body["message"]
            .as_str()
            .unwrap()
            .contains("updates may not add a condition of type \"Approved\""),
        "{body}"
    );
    let (code, _) = sb.json(
        Who::Admin,
        "PUT",
        &format!("{CSRS}/c1/approval"),
        Some(with_approved),
    );
    assert_eq!(code, 200, "the approval subresource takes it");
    // Times given in another zone or precision are stored as RFC 3339 seconds, Z.
    let stored = sb.sb().get("certificatesigningrequests", "", "c1").unwrap();
    assert!(
        stored["status"]["conditions"][0]["lastUpdateTime"]
            .as_str()
            .unwrap()
            .ends_with('Z')
    );

    // Duplicate usages and the legacy signer are 422 in certificates/v1.
    let (code, body) = sb.json(
        Who::Admin,
        "POST",
        CSRS,
        Some(csr(
            "c2",
            "kubernetes.io/kubelet-serving",
            json!(["digital signature", "server auth", "server auth"]),
            &request,
        )),
    );
    assert_eq!(code, 422, "{body}");
    assert_eq!(body["details"]["causes"][0]["field"], "spec.usages[2]");
    assert!(
        body["message"]
            .as_str()
            .unwrap()
            .contains("Duplicate value: \"server auth\""),
        "{body}"
    );
    let (code, body) = sb.json(
        Who::Admin,
        "POST",
        CSRS,
        Some(csr(
            "c3",
            "kubernetes.io/legacy-unknown",
            json!(["digital signature", "client auth"]),
            &request,
        )),
    );
    assert_eq!(code, 422, "{body}");
    assert!(
        body["message"]
            .as_str()
            .unwrap()
            .contains("the legacy signerName is not allowed via this API version"),
        "{body}"
    );

    // CertificateSubjectRestriction: nobody asks the API client signer for system:masters.
    let masters = openssl_csr("/CN=evil/O=system:masters", None);
    let (code, body) = sb.json(
        Who::Bearer(token),
        "POST",
        CSRS,
        Some(csr(
            "c4",
            "kubernetes.io/kube-apiserver-client",
            json!(["digital signature", "client auth"]),
            &masters,
        )),
    );
    assert_eq!(code, 403, "{body}");
    assert!(body["message"].as_str().unwrap().contains("use of kubernetes.io/kube-apiserver-client signer with system:masters group is not allowed"), "{body}");
    assert!(
        sb.sb()
            .get("certificatesigningrequests", "", "c4")
            .is_none()
    );
}

#[test]
fn server_side_apply_and_json_patch_work_with_kubectl() {
    let sb = TestSandbox::start();
    let dir = tempfile::tempdir().unwrap();
    let f = write_file(
        dir.path(),
        "cm.yaml",
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: applied\ndata:\n  a: \"1\"\n",
    );
    assert!(
        kubectl_ok(&sb, &["apply", "--server-side", "-f", s(&f)]).contains("serverside-applied")
    );
    std::fs::write(
        &f,
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: applied\ndata:\n  a: \"2\"\n",
    )
    .unwrap();
    kubectl_ok(&sb, &["apply", "--server-side", "-f", s(&f)]);
    assert_eq!(
        kubectl_ok(
            &sb,
            &[
                "get",
                "cm",
                "applied",
                "-o",
                "jsonpath={.data.a} {.metadata.managedFields[0].manager}"
            ]
        ),
        "2 kubectl"
    );
    kubectl_ok(
        &sb,
        &[
            "patch",
            "cm",
            "applied",
            "--type",
            "json",
            "-p",
            r#"[{"op":"add","path":"/data/b","value":"x"},{"op":"remove","path":"/data/a"}]"#,
        ],
    );
    assert_eq!(
        kubectl_ok(&sb, &["get", "cm", "applied", "-o", "jsonpath={.data}"]),
        r#"{"b":"x"}"#
    );
    let failed = sb.kubectl(&[
        "patch",
        "cm",
        "applied",
        "--type",
        "json",
        "-p",
        r#"[{"op":"test","path":"/data/b","value":"nope"}]"#,
    ]);
    assert_ne!(failed.code, 0);
    assert_eq!(
        kubectl_ok(&sb, &["get", "cm", "applied", "-o", "jsonpath={.data}"]),
        r#"{"b":"x"}"#
    );
}

#[test]
fn namespace_deletion_goes_through_terminating_and_takes_its_content() {
    // Without controllers the namespace stays Terminating, as a real one does until its
    // content is gone.
    let sb = TestSandbox::configured(|o| o.run_controllers = false);
    kubectl_ok(&sb, &["create", "ns", "doomed"]);
    kubectl_ok(
        &sb,
        &["-n", "doomed", "create", "cm", "c1", "--from-literal=x=y"],
    );
    kubectl_ok(&sb, &["delete", "ns", "doomed", "--wait=false"]);
    assert_eq!(
        kubectl_ok(
            &sb,
            &["get", "ns", "doomed", "-o", "jsonpath={.status.phase}"]
        ),
        "Terminating"
    );
    let refused = sb.kubectl(&["-n", "doomed", "create", "cm", "c2", "--from-literal=x=y"]);
    assert!(
        refused.stderr.contains(
            "unable to create new content in namespace doomed because it is being terminated"
        ),
        "{}",
        refused.stderr
    );
    assert!(
        sb.kubectl(&["delete", "ns", "kube-system"])
            .stderr
            .contains("this namespace may not be deleted")
    );

    let live = TestSandbox::start();
    kubectl_ok(&live, &["create", "ns", "gone"]);
    kubectl_ok(
        &live,
        &["-n", "gone", "create", "cm", "c1", "--from-literal=x=y"],
    );
    assert!(
        live.sb()
            .get("serviceaccounts", "gone", "default")
            .is_some()
            || eventually(5, || live.sb().get("serviceaccounts", "gone", "default")).is_object()
    );
    kubectl_ok(&live, &["delete", "ns", "gone"]);
    assert!(live.sb().get("namespaces", "", "gone").is_none());
    assert!(
        live.sb().list("configmaps", "gone").is_empty(),
        "the content went with it"
    );
    assert!(live.sb().list("serviceaccounts", "gone").is_empty());
}

#[test]
fn nodes_and_leases_follow_the_node_authorizer_noderestriction_and_optimistic_concurrency() {
    let sb = TestSandbox::start();
    let me = Who::Cert("system:node:edge-1", &["system:nodes"]);
    let node = |name: &str| json!({"apiVersion": "v1", "kind": "Node", "metadata": {"name": name}, "status": {"addresses": [{"type": "InternalIP", "address": "10.0.0.5"}]}});
    let (code, body) = sb.json(me_(), "POST", "/api/v1/nodes", Some(node("edge-1")));
    assert_eq!(code, 201, "{body}");
    let (code, body) = sb.json(me_(), "POST", "/api/v1/nodes", Some(node("edge-2")));
    assert_eq!(code, 403, "{body}");
    assert!(
        body["message"]
            .as_str()
            .unwrap()
            .contains("node \"edge-1\" is not allowed to modify node \"edge-2\""),
        "{body}"
    );
    let (code, _) = sb.json(Who::Admin, "POST", "/api/v1/nodes", Some(node("edge-2")));
    assert_eq!(code, 201);
    let (code, _) = sb.json(me_(), "GET", "/api/v1/nodes/edge-2", None);
    assert_eq!(
        code, 403,
        "a node reads only its own Node (the Node authorizer of 1.37)"
    );
    let (code, _) = sb.json(me_(), "GET", "/api/v1/nodes/edge-1", None);
    assert_eq!(code, 200, "its own");
    let (code, _) = sb.json(
        me_(),
        "GET",
        "/api/v1/nodes?fieldSelector=metadata.name%3Dedge-1",
        None,
    );
    assert_eq!(code, 200, "a list naming only itself");
    let (code, _) = sb.json(me_(), "GET", "/api/v1/nodes", None);
    assert_eq!(code, 403, "not all Nodes");
    let patch = serde_json::to_vec(&json!({"status": {"conditions": [{"type": "Ready", "status": "True", "reason": "KubeletReady", "message": "ok"}]}})).unwrap();
    let (code, _, body) = sb.raw(
        me,
        "PATCH",
        "/api/v1/nodes/edge-1/status",
        Some(("application/merge-patch+json", patch.clone())),
    );
    assert_eq!(code, 200, "{body}");
    let (code, _, _) = sb.raw(
        me_(),
        "PATCH",
        "/api/v1/nodes/edge-2/status",
        Some(("application/merge-patch+json", patch)),
    );
    assert_eq!(code, 403);
    assert!(kubectl_ok(&sb, &["get", "nodes"]).contains("Ready"));

    let leases = "/apis/coordination.k8s.io/v1/namespaces/kube-node-lease/leases";
    let lease = |name: &str| json!({"apiVersion": "coordination.k8s.io/v1", "kind": "Lease", "metadata": {"name": name}, "spec": {"holderIdentity": name, "leaseDurationSeconds": 40}});
    let (code, created) = sb.json(me_(), "POST", leases, Some(lease("edge-1")));
    assert_eq!(code, 201, "{created}");
    let (code, body) = sb.json(me_(), "POST", leases, Some(lease("edge-2")));
    assert_eq!(code, 403, "{body}");
    let mut renewed = created.clone();
    renewed["spec"]["renewTime"] = json!("2026-12-01T00:00:00.000000Z");
    let (code, _) = sb.json(
        me_(),
        "PUT",
        &format!("{leases}/edge-1"),
        Some(renewed.clone()),
    );
    assert_eq!(code, 200);
    let (code, body) = sb.json(
        me_(),
        "PUT",
        &format!("{leases}/edge-1"),
        Some(renewed.clone()),
    );
    assert_eq!(code, 409, "a stale resourceVersion is a conflict: {body}");
    renewed["metadata"]
        .as_object_mut()
        .unwrap()
        .remove("resourceVersion");
    let (code, body) = sb.json(me_(), "PUT", &format!("{leases}/edge-1"), Some(renewed));
    assert_eq!(
        code, 422,
        "leases need the resourceVersion they read: {body}"
    );
}

fn me_() -> Who<'static> {
    Who::Cert("system:node:edge-1", &["system:nodes"])
}

#[test]
fn service_account_tokens_authenticate_as_the_account() {
    let sb = TestSandbox::start();
    let token = eventually(5, || {
        let r = sb.kubectl(&["create", "token", "default", "--duration", "15m"]);
        (r.code == 0).then(|| r.stdout.trim().to_string())
    });
    remember_secrets(&token);
    let (code, body) = sb.json(
        Who::Bearer(&token),
        "POST",
        "/apis/authentication.k8s.io/v1/selfsubjectreviews",
        Some(json!({"apiVersion": "authentication.k8s.io/v1", "kind": "SelfSubjectReview"})),
    );
    assert_eq!(code, 201, "{body}");
    assert_eq!(
        body["status"]["userInfo"]["username"],
        "system:serviceaccount:default:default"
    );
    assert!(
        body["status"]["userInfo"]["groups"]
            .as_array()
            .unwrap()
            .contains(&json!("system:serviceaccounts:default"))
    );
    let (code, _) = sb.json(
        Who::Bearer(&token),
        "GET",
        "/api/v1/namespaces/kube-system/secrets",
        None,
    );
    assert_eq!(code, 403);
    let (code, body) = sb.json(Who::Admin, "POST", "/api/v1/namespaces/default/serviceaccounts/default/token", Some(json!({"apiVersion": "authentication.k8s.io/v1", "kind": "TokenRequest", "spec": {"expirationSeconds": 60}})));
    assert_eq!(code, 422, "{body}");
    let mut forged = token.clone();
    forged.pop();
    forged.push(if token.ends_with('A') { 'B' } else { 'A' });
    let (code, _) = sb.json(Who::Bearer(&forged), "GET", "/api", None);
    assert_eq!(code, 401, "a forged signature does not authenticate");
    kubectl_ok(&sb, &["delete", "serviceaccount", "default"]);
    // Refused once the API server's 10 s token cache has forgotten its last success.
    let deleted = std::time::Instant::now();
    eventually(15, || {
        (sb.json(Who::Bearer(&token), "GET", "/api", None).0 == 401).then_some(())
    });
    assert!(
        deleted.elapsed() < std::time::Duration::from_secs(12),
        "the account is gone"
    );
}

#[test]
fn lists_page_with_limit_and_continue_and_refuse_unknown_selectors() {
    let sb = TestSandbox::start();
    for i in 0..7 {
        sb.sb().put("configmaps", "default", json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": format!("p{i}")}, "data": {"i": i.to_string()}}));
    }
    let mut names = Vec::new();
    let mut cont = String::new();
    let mut pages = 0;
    loop {
        let (code, page) = sb.json(
            Who::Admin,
            "GET",
            &format!("/api/v1/namespaces/default/configmaps?limit=3&continue={cont}"),
            None,
        );
        assert_eq!(code, 200, "{page}");
        pages += 1;
        names.extend(
            page["items"]
                .as_array()
                .unwrap()
                .iter()
                .map(|o| o["metadata"]["name"].as_str().unwrap().to_string()),
        );
        match page["metadata"]["continue"].as_str() {
            Some(c) => {
                assert!(page["metadata"]["remainingItemCount"].as_u64().unwrap() > 0);
                cont = c.to_string();
            }
            None => break,
        }
    }
    assert_eq!(pages, 3);
    assert_eq!(names, ["p0", "p1", "p2", "p3", "p4", "p5", "p6"]);
    assert!(kubectl_ok(&sb, &["get", "cm", "--chunk-size=2"]).contains("p6"));
    let (code, body) = sb.json(
        Who::Admin,
        "GET",
        "/apis/certificates.k8s.io/v1/certificatesigningrequests?fieldSelector=spec.foo%3Dbar",
        None,
    );
    assert_eq!(code, 400);
    assert_eq!(body["message"], "field label not supported: spec.foo");
    let (code, _) = sb.json(
        Who::Admin,
        "GET",
        "/api/v1/namespaces/default/configmaps?continue=garbage",
        None,
    );
    assert_eq!(code, 400);
    let labelled = kubectl_ok(&sb, &["get", "cm", "-l", "!nope", "-o", "name"]);
    assert!(labelled.contains("configmap/p0"));
}

#[test]
fn secret_keys_sizes_and_annotations_are_held_to_the_api_limits() {
    let sb = TestSandbox::start();
    let (code, body) = sb.json(Who::Admin, "POST", "/api/v1/namespaces/default/secrets", Some(json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "k"}, "stringData": {"a/b": "c"}})));
    assert_eq!(code, 422, "{body}");
    assert_eq!(body["details"]["causes"][0]["field"], "data[a/b]");
    let big = "x".repeat(300 * 1024);
    let (code, body) = sb.json(Who::Admin, "POST", "/api/v1/namespaces/default/configmaps", Some(json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "a", "annotations": {"big": big}}})));
    assert_eq!(code, 422, "{body}");
    assert!(
        body["message"]
            .as_str()
            .unwrap()
            .contains("metadata.annotations: Too long: must have at most 262144 bytes"),
        "{body}"
    );
    let csr = json!({"apiVersion": "certificates.k8s.io/v1", "kind": "CertificateSigningRequest", "metadata": {"name": "fat", "annotations": {"a": "x".repeat(290 * 1024)}},
        "spec": {"request": openssl_csr("/CN=x", None), "signerName": "example.com/x", "usages": ["client auth"]}});
    let (code, _) = sb.json(Who::Admin, "POST", CSRS, Some(csr));
    assert_eq!(code, 422, "CSRs are capped the same way");
    let huge = "y".repeat(1100 * 1024);
    let (code, body) = sb.json(Who::Admin, "POST", "/api/v1/namespaces/default/configmaps", Some(json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "huge"}, "data": {"h": huge}})));
    assert_eq!(code, 422, "{body}");
    let body = vec![b'{'; 4 * 1024 * 1024];
    let (code, _, _) = sb.raw(
        Who::Admin,
        "POST",
        "/api/v1/namespaces/default/configmaps",
        Some(("application/json", body)),
    );
    assert_eq!(code, 413, "bodies over 3 MiB");
    let (code, _, _) = sb.raw(
        Who::Admin,
        "POST",
        "/apis/authorization.k8s.io/v1/selfsubjectaccessreviews",
        Some(("application/json", vec![b' '; 100 * 1024])),
    );
    assert_eq!(code, 413, "reviews are small");
}

#[test]
fn half_open_connections_beyond_the_cap_are_refused_and_time_out() {
    let sb = TestSandbox::with(SandboxOptions {
        max_connections: 64,
        handshake_timeout: Duration::from_millis(1500),
        ..Default::default()
    });
    let addr = sb.endpoint();
    // utime + stime of this process (the sandbox runs in it), in seconds (100 ticks a second).
    let cpu = || {
        let stat = std::fs::read_to_string("/proc/self/stat").unwrap();
        let after = &stat[stat.rfind(')').unwrap() + 2..];
        let f: Vec<&str> = after.split_whitespace().collect();
        (f[11].parse::<f64>().unwrap() + f[12].parse::<f64>().unwrap()) / 100.0
    };
    let cpu_before = cpu();
    let mut half_open: Vec<std::net::TcpStream> = (0..150)
        .map(|_| std::net::TcpStream::connect(&addr).unwrap())
        .collect();
    // The excess is closed at once (read sees EOF), not queued.
    std::thread::sleep(Duration::from_millis(300));
    let closed = half_open
        .iter_mut()
        .map(|c| {
            use std::io::Read;
            c.set_read_timeout(Some(Duration::from_millis(20))).unwrap();
            matches!(c.read(&mut [0u8; 1]), Ok(0))
        })
        .filter(|eof| *eof)
        .count();
    assert!(
        closed >= 150 - 64,
        "{closed} of 150 refused beyond the cap of 64"
    );
    // After the handshake timeout the held slots are free again, and kubectl answers quickly.
    std::thread::sleep(Duration::from_millis(1700));
    let started = Instant::now();
    kubectl_ok(&sb, &["get", "ns"]);
    assert!(
        started.elapsed() < Duration::from_secs(1),
        "kubectl get ns took {:?}",
        started.elapsed()
    );
    let spent = cpu() - cpu_before;
    assert!(
        spent < 1.0,
        "the sandbox does not spin: {spent:.2} s of CPU"
    );
    drop(half_open);
}

/// The Python client in `target/pyenv`, installed there from PyPI on first use (about 25 s), as
/// the real control plane is built on first use: the test never passes without it.
fn python() -> std::path::PathBuf {
    let venv = Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/target/pyenv"));
    let python = venv.join("bin/python");
    let has_client = || {
        std::process::Command::new(&python)
            .args(["-c", "import kubernetes"])
            .output()
            .is_ok_and(|o| o.status.success())
    };
    if has_client() {
        return python;
    }
    let install = std::process::Command::new("sh")
        .arg("-c")
        .arg(format!(
            "python3 -m venv {0} && {0}/bin/pip install -q kubernetes",
            venv.display()
        ))
        .output();
    let why = match &install {
        Ok(o) if o.status.success() => String::new(),
        Ok(o) => String::from_utf8_lossy(&o.stderr)
            .lines()
            .last()
            .unwrap_or_default()
            .to_string(),
        Err(e) => e.to_string(),
    };
    assert!(
        has_client(),
        "the Python kubernetes client is not installed and could not be ({why}): it needs python3 with venv and PyPI; install it with `python3 -m venv target/pyenv && target/pyenv/bin/pip install kubernetes`"
    );
    python
}

#[test]
fn the_python_client_works_against_the_sandbox() {
    let py = python();
    let sb = TestSandbox::start();
    let token = "pyclnt.0123456789abcdef";
    sb.add_token(token, None, &["authentication"]);
    let script = r#"
import sys, json, base64, threading
from kubernetes import client, config, watch
from kubernetes.client.rest import ApiException
config.load_kube_config(config_file=sys.argv[1])
core = client.CoreV1Api(); certs = client.CertificatesV1Api(); coord = client.CoordinationV1Api()
authz = client.AuthorizationV1Api()
out = {}
out["namespaces"] = sorted(n.metadata.name for n in core.list_namespace().items)
core.create_namespaced_secret("default", client.V1Secret(metadata=client.V1ObjectMeta(name="py"), string_data={"k": "v"}))
s = core.read_namespaced_secret("py", "default")
out["secret"] = [s.type, base64.b64decode(s.data["k"]).decode()]
rv = certs.list_certificate_signing_request().metadata.resource_version
csr = client.V1CertificateSigningRequest(metadata=client.V1ObjectMeta(name="py-csr"),
    spec=client.V1CertificateSigningRequestSpec(request=sys.argv[2], signer_name="kubernetes.io/kubelet-serving", usages=["digital signature", "server auth"]))
certs.create_certificate_signing_request(csr)
got = certs.read_certificate_signing_request("py-csr")
got.status.conditions = [client.V1CertificateSigningRequestCondition(type="Approved", status="True", reason="PyApproved", message="approved by the python client")]
certs.replace_certificate_signing_request_approval("py-csr", got)
seen = []
for ev in watch.Watch().stream(certs.list_certificate_signing_request, resource_version=rv, timeout_seconds=3):
    seen.append(ev["type"])
    if len(seen) >= 2: break
out["watch"] = seen
review = authz.create_self_subject_access_review(client.V1SelfSubjectAccessReview(spec=client.V1SelfSubjectAccessReviewSpec(
    resource_attributes=client.V1ResourceAttributes(verb="create", group="certificates.k8s.io", resource="certificatesigningrequests"))))
out["can_create_csr"] = review.status.allowed
lease = coord.create_namespaced_lease("default", client.V1Lease(metadata=client.V1ObjectMeta(name="py-lease"), spec=client.V1LeaseSpec(holder_identity="a", lease_duration_seconds=10)))
coord.replace_namespaced_lease("py-lease", "default", lease)
try:
    coord.replace_namespaced_lease("py-lease", "default", lease)
    out["stale"] = 200
except ApiException as e:
    out["stale"] = e.status
cfg = client.Configuration(); cfg.host = core.api_client.configuration.host
cfg.ssl_ca_cert = core.api_client.configuration.ssl_ca_cert; cfg.api_key = {"authorization": "Bearer " + sys.argv[3]}
try:
    client.CoreV1Api(client.ApiClient(cfg)).list_namespaced_secret("kube-system")
    out["token_user"] = 200
except ApiException as e:
    out["token_user"] = e.status
print(json.dumps(out))
"#;
    let dir = tempfile::tempdir().unwrap();
    let f = dir.path().join("t.py");
    std::fs::write(&f, script).unwrap();
    let request = openssl_csr("/CN=system:node:py/O=system:nodes", Some("DNS:py"));
    let stdout = output_ok(
        std::process::Command::new(&py)
            .arg(&f)
            .arg(sb.admin_conf())
            .arg(&request)
            .arg(token),
    );
    let v: serde_json::Value = serde_json::from_str(stdout.trim()).unwrap();
    assert_eq!(
        v["namespaces"],
        json!(["default", "kube-node-lease", "kube-public", "kube-system"])
    );
    assert_eq!(v["secret"], json!(["Opaque", "v"]));
    assert_eq!(v["watch"], json!(["ADDED", "MODIFIED"]));
    assert_eq!(v["can_create_csr"], true);
    assert_eq!(v["stale"], 409);
    assert_eq!(v["token_user"], 403);
    let csr = sb
        .sb()
        .get("certificatesigningrequests", "", "py-csr")
        .unwrap();
    assert_eq!(csr["status"]["conditions"][0]["reason"], "PyApproved");
}
