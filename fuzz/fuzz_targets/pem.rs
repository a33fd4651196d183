//! PEM certificates, CSRs and keys: CA bundles, issued certificates, staged keys, sandbox CSRs.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(certs) = bootlet::pki::parse_certs_pem(data, "fuzz") {
        let _ = bootlet::pki::pin::check_any(&[], &certs);
        let _ = bootlet::pki::cert::CertInfo::parse(&certs[0]);
    }
    let _ = bootlet::pki::cert::CertInfo::parse(data);
    let _ = bootlet::pki::csr::parse_pem(data);
    let _ = bootlet::pki::csr::parse_der(data);
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = bootlet::pki::keys::PrivateKey::from_pem(text, "fuzz");
        let _ = bootlet::pki::keys::private_key_block(text);
        let _ = bootlet::pki::keys::certificate_blocks(text);
        let _ = bootlet::pki::pin::Pin::parse(text);
    }
});
