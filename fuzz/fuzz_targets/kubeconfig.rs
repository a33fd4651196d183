//! Kubeconfigs from hostile files: bootstrap, discovery and admin kubeconfigs, cluster-info.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data) {
        if let Ok(access) = bootlet::kubeconfig::parse(text, std::path::Path::new("/nonexistent"), "fuzz") {
            let _ = access.bootstrap_token();
        }
        let _ = bootlet::kubeconfig::endpoint_url(text);
    }
});
