#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| parkboot_fuzz::config_text(data));
