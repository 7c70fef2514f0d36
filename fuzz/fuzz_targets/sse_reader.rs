//! libFuzzer entry point: the properties live in `lanyard_fuzz::sse_reader`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| lanyard_fuzz::sse_reader(data));
