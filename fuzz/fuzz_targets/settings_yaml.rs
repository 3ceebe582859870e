//! See `cozyboot_fuzz::check_settings_yaml` for the properties checked.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| cozyboot_fuzz::check_settings_yaml(data));
