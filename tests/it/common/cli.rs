//! The `imgsearch` binary on a test library.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
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

/// `imgsearch embed --image …` of `pictures` with the model in folder `model`, on the CPU: each
/// picture's embedding by its path.
pub fn embed_pictures(model: &Path, pictures: &[PathBuf]) -> HashMap<PathBuf, Vec<f32>> {
    let mut command = Command::new(env!("CARGO_BIN_EXE_imgsearch"));
    command.args(["embed", "--device", "cpu", "--json", "--model"]).arg(model);
    for picture in pictures {
        command.arg("--image").arg(picture);
    }
    let embedded = json(&mut command);
    pictures
        .iter()
        .map(|picture| {
            let vector = embedded["images"][picture.to_str().unwrap()]
                .as_array()
                .unwrap_or_else(|| panic!("{picture:?}: {embedded:#}"))
                .iter()
                .map(|x| x.as_f64().unwrap() as f32)
                .collect();
            (picture.clone(), vector)
        })
        .collect()
}
