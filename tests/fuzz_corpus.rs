//! The fuzz targets' checks (`fuzz/harness.rs`) over every input kept in
//! `fuzz/corpus/<target>/` (the seed corpus) and `fuzz/regressions/<target>/`
//! (what the fuzzer once found), on stable Rust: CI runs this instead of
//! libFuzzer, which needs a nightly compiler and a sanitizer build.

#[path = "../fuzz/harness.rs"]
mod harness;

use std::path::Path;

/// Runs `check` on every file kept for `target`; returns how many.
fn replay(target: &str, check: fn(&[u8])) -> usize {
    let fuzz = Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz");
    let mut inputs = 0;
    for dir in ["corpus", "regressions"] {
        let Ok(entries) = std::fs::read_dir(fuzz.join(dir).join(target)) else {
            continue;
        };
        for entry in entries {
            let path = entry.unwrap().path();
            let data = std::fs::read(&path).unwrap();
            let outcome = std::panic::catch_unwind(|| check(&data));
            assert!(outcome.is_ok(), "{} fails the check", path.display());
            inputs += 1;
        }
    }
    inputs
}

#[test]
fn register_body_corpus_and_regressions_pass() {
    let inputs = replay("register_body", harness::register_body);
    assert!(inputs >= 20, "the seed corpus is there ({inputs} inputs)");
}

#[test]
fn participant_image_corpus_and_regressions_pass() {
    let inputs = replay("participant_image", harness::participant_image);
    assert!(inputs >= 20, "the seed corpus is there ({inputs} inputs)");
}
