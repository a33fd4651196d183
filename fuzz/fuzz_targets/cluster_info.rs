//! cluster-info as an untrusted server serves it: the first line is `jws-kubeconfig-<id>`, the rest
//! the `kubeconfig` value. Verification must never panic, and must fail for anything not signed with
//! the token's secret.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let (jws, kubeconfig) = text.split_once('\n').unwrap_or((&text, ""));
    let token = bootlet::token::BootstrapToken::parse("abcdef.abcdef0123456789").unwrap();
    let verified = bootlet::pki::jws::verify_detached(jws, kubeconfig, &token);
    if verified {
        // Only the real signature of this exact payload verifies.
        assert_eq!(bootlet::pki::jws::sign_detached(kubeconfig, &token), jws.trim());
    }
    if let Ok(access) = bootlet::kubeconfig::parse(kubeconfig, std::path::Path::new("/nonexistent"), "fuzz") {
        if let Some(ca) = access.ca_pem {
            if let Ok(certs) = bootlet::pki::parse_certs_pem(&ca, "fuzz") {
                let pin = bootlet::pki::pin::Pin::parse("sha256:3b793efefe27a19f93b0fbe6e637e9c41d0dde8a377d6ab1c0f656bf1136dd8a").unwrap();
                let _ = bootlet::pki::pin::check_any(&[pin], &certs);
            }
        }
    }
});
