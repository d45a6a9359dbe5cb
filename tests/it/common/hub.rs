//! A stand-in for the Hugging Face hub on 127.0.0.1: serves a local folder the way
//! `huggingface.co/{repo}/resolve/{revision}/{file}` does (ETag, X-Repo-Commit, Range requests),
//! so the real download code runs without network.

use std::io::{BufRead, BufReader, Write};
use std::net::{TcpListener, TcpStream};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;

pub struct StandInHub {
    pub endpoint: String,
    pub downloads: Arc<AtomicUsize>,
    stop: Arc<AtomicBool>,
    port: u16,
}

const COMMIT: &str = "0123456789abcdef0123456789abcdef01234567";

impl StandInHub {
    /// Serves the files of `folder` as repository `repo` (any revision).
    pub fn serve(repo: &str, folder: PathBuf) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let stop = Arc::new(AtomicBool::new(false));
        let downloads = Arc::new(AtomicUsize::new(0));
        let (stop2, downloads2, repo) = (stop.clone(), downloads.clone(), repo.to_string());
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                if stop2.load(Ordering::SeqCst) {
                    break;
                }
                if let Ok(stream) = stream {
                    let _ = answer(stream, &repo, &folder, &downloads2);
                }
            }
        });
        Self { endpoint: format!("http://127.0.0.1:{port}"), downloads, stop, port }
    }
}

impl Drop for StandInHub {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        let _ = TcpStream::connect(("127.0.0.1", self.port)); // wake the accept loop
    }
}

fn answer(mut stream: TcpStream, repo: &str, folder: &std::path::Path, downloads: &AtomicUsize) -> std::io::Result<()> {
    let mut reader = BufReader::new(stream.try_clone()?);
    let mut request_line = String::new();
    reader.read_line(&mut request_line)?;
    let mut range_start = None;
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line)? == 0 || line == "\r\n" {
            break;
        }
        if let Some((name, value)) = line.split_once(':') {
            if name.eq_ignore_ascii_case("range") {
                // "bytes=S-" or "bytes=S-E"
                let spec = value.trim().trim_start_matches("bytes=");
                let (s, e) = spec.split_once('-').unwrap_or((spec, ""));
                range_start = Some((s.parse::<usize>().unwrap_or(0), e.parse::<usize>().ok()));
            }
        }
    }
    let path = request_line.split_whitespace().nth(1).unwrap_or("/");
    let prefix = format!("/{repo}/resolve/");
    let file = path.strip_prefix(&prefix).and_then(|rest| rest.split_once('/')).map(|(_rev, file)| file.to_string());
    let body = file.as_ref().filter(|f| !f.contains("..")).and_then(|f| std::fs::read(folder.join(f)).ok());
    let Some(body) = body else {
        let msg = b"Entry not found";
        write!(
            stream,
            "HTTP/1.1 404 Not Found\r\nContent-Length: {}\r\nX-Error-Code: EntryNotFound\r\nConnection: close\r\n\r\n",
            msg.len()
        )?;
        return stream.write_all(msg);
    };
    let etag = format!("{:016x}", fnv1a(&body));
    let total = body.len();
    let (start, end) = match range_start {
        Some((s, Some(e))) => (s.min(total), (e + 1).min(total)),
        Some((s, None)) => (s.min(total), total),
        None => (0, total),
    };
    if end - start == total && total > 1 {
        downloads.fetch_add(1, Ordering::SeqCst);
    }
    let slice = &body[start..end];
    write!(
        stream,
        "HTTP/1.1 206 Partial Content\r\nContent-Range: bytes {start}-{}/{total}\r\nETag: \"{etag}\"\r\nX-Repo-Commit: {COMMIT}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        end.saturating_sub(1),
        slice.len()
    )?;
    stream.write_all(slice)
}

fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf29ce484222325u64, |h, b| (h ^ *b as u64).wrapping_mul(0x100000001b3))
}
