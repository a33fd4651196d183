//! `--config` files and the values flags take.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data) {
        if let Ok(options) = toml::from_str::<bootlet::settings::Options>(text) {
            let _ = bootlet::settings::Settings::resolve(options, None);
        }
        let _ = bootlet::settings::parse_duration(text, "fuzz");
        let _ = bootlet::token::BootstrapToken::parse(text);
        let _ = bootlet::engine::runner::validate_node_name(text);
    }
});
