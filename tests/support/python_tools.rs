//! The project's pinned Python tools (`scripts/python-tools`), installed on
//! first use: shared by the tests that run a tool made by others.

use std::path::PathBuf;
use std::process::{Command, Stdio};

/// The bin directory of tool set `set` (`lint` or `sam`; see the script).
pub fn bin(set: &str) -> PathBuf {
    let out = Command::new(concat!(env!("CARGO_MANIFEST_DIR"), "/scripts/python-tools"))
        .arg(set)
        .stderr(Stdio::inherit())
        .output()
        .expect("scripts/python-tools runs");
    assert!(out.status.success(), "scripts/python-tools {set} failed");
    PathBuf::from(String::from_utf8(out.stdout).unwrap().trim())
}
