//! `Participant::from_image` on arbitrary attribute trees; the checks are
//! in `fuzz/harness.rs`.
#![no_main]

#[path = "../harness.rs"]
mod harness;

libfuzzer_sys::fuzz_target!(|data: &[u8]| harness::participant_image(data));
