//! A stand-in for the Hugging Face hub on 127.0.0.1: serves a local folder the way
//! `huggingface.co/{repo}/resolve/{revision}/{file}` does (HEAD with X-Repo-Commit, a SHA-256
//! ETag and the size; GET with Range), so the real download code runs without network. It can
//! also misbehave as a hostile or broken server would ([`Behaviour`]).

use std::io::{BufRead, BufReader, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use sha2::{Digest, Sha256};

#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Behaviour {
    Honest,
    /// Names from the server that would lead out of the cache: an ETag and a commit of `../`.
    EscapingNames,
    /// Every file's bytes with one flipped, under the true file's SHA-256.
    CorruptBytes,
    /// Headers and the first bytes of a file, then silence (the connection stays open).
    StallsMidFile,
    /// HEAD answered with a redirect to another host (as the hub sends files to its storage).
    RedirectsToStorage,
}

pub struct StandInHub {
    pub endpoint: String,
    /// Whole files sent.
    pub downloads: Arc<AtomicUsize>,
    /// The `Authorization` header of each request another host (the "storage") received.
    pub storage_authorization: Arc<Mutex<Vec<Option<String>>>>,
    stop: Arc<AtomicBool>,
    ports: Vec<u16>,
}

pub const COMMIT: &str = "0123456789abcdef0123456789abcdef01234567";

struct Served {
    /// Each repository with the folder of its files.
    repos: Vec<(String, PathBuf)>,
    behaviour: Behaviour,
    downloads: Arc<AtomicUsize>,
    storage: String,
    storage_authorization: Arc<Mutex<Vec<Option<String>>>>,
}

impl StandInHub {
    /// Serves the files of `folder` as repository `repo` (any revision).
    pub fn serve(repo: &str, folder: PathBuf) -> Self {
        Self::serve_behaving(repo, folder, Behaviour::Honest)
    }

    pub fn serve_behaving(repo: &str, folder: PathBuf, behaviour: Behaviour) -> Self {
        Self::serve_repos(vec![(repo.to_string(), folder)], behaviour)
    }

    /// Serves several repositories, each `(repo, folder)`.
    pub fn serve_repos(repos: Vec<(String, PathBuf)>, behaviour: Behaviour) -> Self {
        let (hub, storage) = (TcpListener::bind("127.0.0.1:0").unwrap(), TcpListener::bind("127.0.0.1:0").unwrap());
        let ports = vec![hub.local_addr().unwrap().port(), storage.local_addr().unwrap().port()];
        let stop = Arc::new(AtomicBool::new(false));
        let served = Arc::new(Served {
            repos,
            behaviour,
            downloads: Arc::new(AtomicUsize::new(0)),
            // `localhost`, not 127.0.0.1: another host by name, as the hub's storage is.
            storage: format!("http://localhost:{}", ports[1]),
            storage_authorization: Arc::default(),
        });
        for (listener, is_storage) in [(hub, false), (storage, true)] {
            let (stop, served) = (stop.clone(), served.clone());
            std::thread::spawn(move || {
                for stream in listener.incoming() {
                    if stop.load(Ordering::SeqCst) {
                        break;
                    }
                    if let Ok(stream) = stream {
                        let served = served.clone();
                        std::thread::spawn(move || answer(stream, &served, is_storage));
                    }
                }
            });
        }
        Self {
            endpoint: format!("http://127.0.0.1:{}", ports[0]),
            downloads: served.downloads.clone(),
            storage_authorization: served.storage_authorization.clone(),
            stop,
            ports,
        }
    }
}

impl Drop for StandInHub {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        for port in &self.ports {
            let _ = TcpStream::connect(("127.0.0.1", *port)); // wake the accept loop
        }
    }
}

fn answer(mut stream: TcpStream, served: &Served, is_storage: bool) -> std::io::Result<()> {
    let mut reader = BufReader::new(stream.try_clone()?);
    let mut request_line = String::new();
    reader.read_line(&mut request_line)?;
    let (mut range_start, mut authorization) = (0, None);
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line)? == 0 || line == "\r\n" {
            break;
        }
        if let Some((name, value)) = line.split_once(':') {
            if name.eq_ignore_ascii_case("range") {
                let spec = value.trim().trim_start_matches("bytes=");
                range_start = spec.split('-').next().and_then(|s| s.parse::<usize>().ok()).unwrap_or(0);
            }
            if name.eq_ignore_ascii_case("authorization") {
                authorization = Some(value.trim().to_string());
            }
        }
    }
    if is_storage {
        served.storage_authorization.lock().unwrap().push(authorization);
    }
    let mut words = request_line.split_whitespace();
    let (method, path) = (words.next().unwrap_or("GET"), words.next().unwrap_or("/"));
    // `/{repo}/resolve/{revision}/{file}`, or on the storage `/storage/{repo index}/{file}`.
    let found = served.repos.iter().enumerate().find_map(|(index, (repo, folder))| {
        let file = match is_storage {
            true => path.strip_prefix(&format!("/storage/{index}/")).map(str::to_string),
            false => path
                .strip_prefix(&format!("/{repo}/resolve/"))
                .and_then(|rest| rest.split_once('/'))
                .map(|(_rev, file)| file.to_string()),
        }?;
        Some((index, folder, file))
    });
    let (index, file) = match &found {
        Some((index, _, file)) => (*index, Some(file.clone())),
        None => (0, None),
    };
    let body = found
        .as_ref()
        .filter(|(_, _, f)| !f.contains(".."))
        .and_then(|(_, folder, f)| std::fs::read(folder.join(f)).ok());
    let (Some(file), Some(mut body)) = (file, body) else {
        let msg = b"Entry not found";
        write!(
            stream,
            "HTTP/1.1 404 Not Found\r\nContent-Length: {}\r\nX-Error-Code: EntryNotFound\r\nConnection: close\r\n\r\n",
            msg.len()
        )?;
        return stream.write_all(msg);
    };
    let total = body.len();
    let (etag, commit) = match served.behaviour {
        Behaviour::EscapingNames => ("../../../../../escaped-etag".to_string(), "../../../../../escaped-commit"),
        _ => (content_tag(&file, &body), COMMIT),
    };
    if method == "HEAD" {
        if served.behaviour == Behaviour::RedirectsToStorage && !is_storage {
            return write!(
                stream,
                "HTTP/1.1 302 Found\r\nLocation: {}/storage/{index}/{file}\r\nX-Repo-Commit: {commit}\r\n\
                 X-Linked-Etag: \"{etag}\"\r\nX-Linked-Size: {total}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
                served.storage
            );
        }
        return write!(
            stream,
            "HTTP/1.1 200 OK\r\nETag: \"{etag}\"\r\nX-Repo-Commit: {commit}\r\nContent-Length: {total}\r\n\
             Connection: close\r\n\r\n"
        );
    }
    if served.behaviour == Behaviour::CorruptBytes && !body.is_empty() {
        let middle = body.len() / 2;
        body[middle] ^= 0x55;
    }
    let start = range_start.min(total);
    if start == 0 && total > 1 {
        served.downloads.fetch_add(1, Ordering::SeqCst);
    }
    let slice = &body[start..];
    write!(
        stream,
        "HTTP/1.1 206 Partial Content\r\nContent-Range: bytes {start}-{}/{total}\r\nETag: \"{etag}\"\r\n\
         X-Repo-Commit: {commit}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        total.saturating_sub(1),
        slice.len()
    )?;
    if served.behaviour == Behaviour::StallsMidFile {
        stream.write_all(&slice[..slice.len().min(10)])?;
        std::thread::sleep(std::time::Duration::from_secs(120));
        return Ok(());
    }
    stream.write_all(slice)
}

/// The hub's tag for a file: the SHA-256 of weights (kept with LFS), git's SHA-1 of the others.
fn content_tag(file: &str, body: &[u8]) -> String {
    if file.ends_with(".safetensors") || file.ends_with(".bin") {
        return Sha256::digest(body).iter().map(|b| format!("{b:02x}")).collect();
    }
    let mut git = std::process::Command::new("git")
        .args(["hash-object", "--stdin"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("git hashes the stand-in hub's files as the hub names them");
    git.stdin.take().unwrap().write_all(body).unwrap();
    String::from_utf8(git.wait_with_output().unwrap().stdout).unwrap().trim().to_string()
}

/// Every file under `folder` (the cache a test gave the program), for checks that nothing
/// was written elsewhere.
pub fn files_under(folder: &Path) -> Vec<PathBuf> {
    let mut found = Vec::new();
    let mut stack = vec![folder.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).into_iter().flatten().flatten() {
            let path = entry.path();
            match entry.file_type() {
                Ok(t) if t.is_dir() => stack.push(path),
                _ => found.push(path),
            }
        }
    }
    found
}
