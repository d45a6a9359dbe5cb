//! The `imgsearch` binary on a test library.

use std::path::Path;
use std::process::{Command, Output};

use serde_json::Value;

/// `imgsearch` on the library kept in `data` (see `library_args`), on the CPU, offline.
pub fn imgsearch(data: &Path) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_imgsearch"));
    cmd.args(super::library_args(data)).args(["--device", "cpu"]).env("HF_HUB_OFFLINE", "1");
    cmd
}

/// Runs `cmd`, which must succeed.
pub fn run(cmd: &mut Command) -> Output {
    let out = cmd.output().unwrap();
    assert!(out.status.success(), "stderr: {}", String::from_utf8_lossy(&out.stderr));
    out
}

/// Runs `cmd`, which must succeed and print JSON.
pub fn json(cmd: &mut Command) -> Value {
    serde_json::from_slice(&run(cmd).stdout).unwrap()
}
