//! The sandbox's decoder of kubectl's protobuf request bodies (network input to the sandbox).
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = bootlet::sandbox::protobuf::decode(data);
});
