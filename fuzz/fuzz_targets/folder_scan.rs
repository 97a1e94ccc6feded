#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| googlenet::fuzz_targets::folder_scan(data));
