//! Indexes a folder with the tiny test model, and runs `imgsearch serve` on a free port.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};

pub struct RunningServer {
    pub addr: String,
    /// `http`, or `https` with --tls-cert.
    pub scheme: String,
    child: Child,
}

impl RunningServer {
    /// Sends the server process `signal` (libc's number: SIGTERM, SIGINT).
    pub fn signal(&self, signal: i32) {
        // SAFETY: kill takes a process id and a signal number.
        assert_eq!(unsafe { libc::kill(self.child.id() as i32, signal) }, 0, "cannot signal the server");
    }

    /// How the server process ended, waited for up to `within`; None while it still runs.
    pub fn exited_within(&mut self, within: std::time::Duration) -> Option<std::process::ExitStatus> {
        let until = std::time::Instant::now() + within;
        loop {
            match self.child.try_wait().unwrap() {
                Some(status) => return Some(status),
                None if std::time::Instant::now() > until => return None,
                None => std::thread::sleep(std::time::Duration::from_millis(50)),
            }
        }
    }

    /// The server process's thread count, from /proc.
    pub fn threads(&self) -> usize {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id())).unwrap();
        status.lines().find_map(|l| l.strip_prefix("Threads:")).unwrap().trim().parse().unwrap()
    }
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

/// A library (in a temporary folder, returned with it) of copies of these fixture photos.
pub fn indexed_fixtures(names: &[&str]) -> (tempfile::TempDir, std::path::PathBuf) {
    let tmp = tempfile::tempdir().unwrap();
    let photos = tmp.path().join("photos");
    std::fs::create_dir_all(&photos).unwrap();
    for name in names {
        std::fs::copy(super::image_path(name), photos.join(name)).unwrap();
    }
    let data = tmp.path().join("data");
    index_photos(&photos, &data, &[]);
    (tmp, data)
}

/// `imgsearch user add NAME --password-stdin` on the library at `data`.
pub fn add_user(data: &Path, name: &str, password: &str) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_imgsearch"))
        .args(super::library_args(data))
        .args(["user", "add", name, "--password-stdin"])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    std::io::Write::write_all(&mut child.stdin.take().unwrap(), format!("{password}\n").as_bytes()).unwrap();
    assert!(child.wait().unwrap().success(), "user add {name}");
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
    let url = line.trim().trim_start_matches("imgsearch serving on ").trim_end_matches('/');
    let (scheme, addr) = url.split_once("://").unwrap_or_else(|| panic!("unexpected banner {line:?}"));
    assert!(addr.starts_with("127.0.0.1:"), "unexpected banner {line:?}");
    RunningServer { addr: addr.to_string(), scheme: scheme.to_string(), child }
}
