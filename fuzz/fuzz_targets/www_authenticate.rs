//! libFuzzer entry point: the properties live in `lanyard_fuzz::www_authenticate`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| lanyard_fuzz::www_authenticate(data));
