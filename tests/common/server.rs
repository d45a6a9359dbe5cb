//! Indexes a folder with the tiny test model, and runs `imgsearch serve` on a free port.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};

pub struct RunningServer {
    pub addr: String,
    child: Child,
}

impl Drop for RunningServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `imgsearch index PHOTOS [EXTRA...]` into `data` with the tiny b32 test model.
pub fn index_photos(photos: &Path, data: &Path, extra: &[&str]) {
    let status = Command::new(env!("CARGO_BIN_EXE_imgsearch"))
        .args(super::library_args(data))
        .arg("index")
        .arg(photos)
        .arg("--model")
        .arg(super::model_dir("tiny-clip-b32-quickgelu"))
        .arg("--quiet")
        .args(extra)
        .stdout(Stdio::null())
        .status()
        .unwrap();
    assert!(status.success());
}

pub fn index_and_serve(photos: &Path, data: &Path, extra: &[&str]) -> RunningServer {
    index_photos(photos, data, &[]);
    serve(data, extra)
}

/// `imgsearch serve` on a free port of 127.0.0.1 over an existing data folder.
pub fn serve(data: &Path, extra: &[&str]) -> RunningServer {
    spawn_server(data, extra, Stdio::inherit())
}

/// [`serve`], its log (stderr) written to `log`.
pub fn serve_logging_to(data: &Path, extra: &[&str], log: &Path) -> RunningServer {
    spawn_server(data, extra, std::fs::File::create(log).unwrap().into())
}

/// `imgsearch serve` on a free port of 127.0.0.1 over the PostgreSQL library `url`, with its
/// own local folder `cache` (as on a host of its own).
pub fn serve_store(url: &str, cache: &Path, extra: &[&str]) -> RunningServer {
    let library = vec!["--data-dir".into(), cache.as_os_str().to_owned(), "--store".into(), url.into()];
    spawn(&library, extra, Stdio::inherit())
}

fn spawn_server(data: &Path, extra: &[&str], stderr: Stdio) -> RunningServer {
    spawn(&super::library_args(data), extra, stderr)
}

fn spawn(library: &[std::ffi::OsString], extra: &[&str], stderr: Stdio) -> RunningServer {
    let mut child = Command::new(env!("CARGO_BIN_EXE_imgsearch"))
        .args(library)
        .args(["serve", "--addr", "127.0.0.1:0"])
        .args(extra)
        .stdout(Stdio::piped())
        .stderr(stderr)
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap()).read_line(&mut line).unwrap();
    let addr = line.trim().trim_start_matches("imgsearch serving on http://").trim_end_matches('/').to_string();
    assert!(addr.starts_with("127.0.0.1:"), "unexpected banner {line:?}");
    RunningServer { addr, child }
}
