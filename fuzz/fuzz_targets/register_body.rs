//! `register::validate` (and the Idempotency-Key parser) on arbitrary
//! bytes; the checks are in `fuzz/harness.rs`.
#![no_main]

#[path = "../harness.rs"]
mod harness;

libfuzzer_sys::fuzz_target!(|data: &[u8]| harness::register_body(data));
