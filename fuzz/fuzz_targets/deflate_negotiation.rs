#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| sockeye_core::fuzzing::deflate_negotiation(data));
