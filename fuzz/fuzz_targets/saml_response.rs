//! libFuzzer entry point: the properties live in `lanyard_fuzz::saml_response`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| lanyard_fuzz::saml_response(data));
