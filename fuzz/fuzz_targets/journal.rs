//! Journals found on disk: truncated, edited, from other versions.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    if let Ok(j) = bootlet::engine::journal::Journal::parse(&text, "fuzz") {
        let _ = j.check_intent("n1", bootlet::files::LayoutKind::Kubelet, "fuzz");
        let again = j.render().expect("a parsed journal renders");
        assert_eq!(bootlet::engine::journal::Journal::parse(&again, "fuzz").expect("round trip"), j);
    }
});
