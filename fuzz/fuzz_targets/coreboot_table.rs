#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| parkboot_fuzz::coreboot_table(data));
