//! libFuzzer entry point: the properties live in `lanyard_fuzz::prm_metadata`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| lanyard_fuzz::prm_metadata(data));
