#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| parkboot_fuzz::gzip(data));
