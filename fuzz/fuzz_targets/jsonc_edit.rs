//! libFuzzer entry point: the properties live in `lanyard_fuzz::jsonc_edit`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| lanyard_fuzz::jsonc_edit(data));
