//! Checkpoints fetched from the Hugging Face hub into its standard cache, laid out as
//! `huggingface_hub` lays it out (`$HF_HOME/hub/models--OWNER--NAME/{blobs,snapshots,refs}`), so
//! that what Python tools fetched is found here and the other way round.
//!
//! A hub, a mirror (`HF_ENDPOINT`) or whatever answers in their place is not trusted: a commit
//! or an ETag it sends becomes a file name only once it is plain hex, a file is stored only at
//! the size announced (and, for a large file, its SHA-256), the token goes to the hub's own
//! host only, and every wait is bounded (`HF_HUB_ETAG_TIMEOUT`, `HF_HUB_DOWNLOAD_TIMEOUT`: the
//! longest silence, in seconds, 10 by default as in `huggingface_hub`).

use std::fs::File;
use std::io::{Read, Seek, Write};
use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::time::Duration;

use sha2::{Digest, Sha256};

use crate::error::{Error, Result};

const DEFAULT_ENDPOINT: &str = "https://huggingface.co";
/// Redirects followed at most (a renamed repository, then the file's storage).
const MAX_REDIRECTS: usize = 10;
/// A configuration or tokenizer file larger than this is no checkpoint's (the largest
/// tokenizer.json in use, Gemma's, is 34 MB); weights have no such bound.
const MAX_SMALL_FILE: u64 = 256 << 20;
/// Tries of a request the hub answered 429 or 5xx, or that did not connect.
const TRIES: u32 = 3;
/// A download slower than this on average (after the longest silence allowed) is given up: a
/// server that drips would hold it, and the file's lock, for good.
const SLOWEST_BYTES_PER_SECOND: f64 = 10_000.0;

/// One repository on the hub at one revision, and where its files are cached.
pub struct HubRepo {
    repo_id: String,
    revision: String,
    endpoint: String,
    /// `models--OWNER--NAME` in the cache.
    folder: PathBuf,
    token: Option<String>,
    offline: bool,
    agent: ureq::Agent,
    download_silence: Duration,
    /// The hub could not be reached for an earlier file: the others come from the cache at once.
    unreachable: std::cell::Cell<bool>,
}

/// Where the hub said a file is, and what it is.
struct Metadata {
    commit: String,
    etag: String,
    size: u64,
    /// Where its bytes are (the hub's own URL, or the storage it redirects to).
    location: String,
}

enum Failure {
    /// The repository has no such file.
    Missing,
    /// The hub could not be reached (a cached copy will do).
    Unreachable(String),
    Refused {
        reason: String,
        hint: String,
    },
}

impl HubRepo {
    /// `repo_id` is `OWNER/NAME` (checked by the caller); `revision` a branch, tag, `refs/pr/N` or commit.
    pub fn new(repo_id: &str, revision: &str, offline: bool) -> Result<Self> {
        if !is_safe_relative_path(revision) {
            return Err(Error::Download {
                repo: repo_id.into(),
                file: "(any)".into(),
                reason: format!("{revision:?} is not a revision"),
                hint: "Give a branch, a tag, refs/pr/N or a commit hash after the @.".into(),
            });
        }
        let home = match std::env::var_os("HF_HOME") {
            Some(home) => PathBuf::from(home),
            None => dirs_home().join(".cache/huggingface"),
        };
        let hub = std::env::var_os("HF_HUB_CACHE").map_or_else(|| home.join("hub"), PathBuf::from);
        let token = std::env::var("HF_TOKEN").ok().or_else(|| {
            let path = std::env::var_os("HF_TOKEN_PATH").map_or_else(|| home.join("token"), PathBuf::from);
            std::fs::read_to_string(path).ok()
        });
        // The first line, as huggingface_hub reads it; a header can carry visible ASCII only.
        let token = token.and_then(|t| t.lines().next().map(|line| line.trim().to_string())).filter(|t| !t.is_empty());
        if token.as_ref().is_some_and(|t| !t.bytes().all(|b| b.is_ascii_graphic())) {
            return Err(Error::Download {
                repo: repo_id.into(),
                file: "(any)".into(),
                reason: "the access token (HF_TOKEN or HF_HOME's token file) holds spaces or characters no token has"
                    .into(),
                hint: "Set HF_TOKEN to the token as the hub shows it (hf_...).".into(),
            });
        }
        let seconds = |name: &str| {
            let value = std::env::var(name).ok().and_then(|v| v.trim().parse::<f64>().ok());
            // At most a day: a wait is meant to end.
            Duration::from_secs_f64(value.filter(|s| s.is_finite() && *s > 0.0).unwrap_or(10.0).min(86_400.0))
        };
        let answer_within = seconds("HF_HUB_ETAG_TIMEOUT");
        let agent = ureq::Agent::config_builder()
            .max_redirects(0)
            .max_redirects_will_error(false)
            .http_status_as_error(false)
            .timeout_connect(Some(answer_within))
            .timeout_recv_response(Some(answer_within))
            .user_agent(concat!("imgsearch/", env!("CARGO_PKG_VERSION")))
            .build()
            .into();
        Ok(Self {
            repo_id: repo_id.into(),
            revision: revision.into(),
            endpoint: std::env::var("HF_ENDPOINT")
                .ok()
                .filter(|e| !e.trim().is_empty())
                .unwrap_or_else(|| DEFAULT_ENDPOINT.into())
                .trim_end_matches('/')
                .to_string(),
            folder: hub.join(format!("models--{}", repo_id.replace('/', "--"))),
            token,
            offline,
            agent,
            download_silence: seconds("HF_HUB_DOWNLOAD_TIMEOUT"),
            unreachable: std::cell::Cell::new(false),
        })
    }

    /// The local path of `file` at this revision, fetched if need be; `None` when the repository
    /// has no such file (or, offline, when it was never fetched).
    pub fn fetch(&self, file: &str) -> Result<Option<PathBuf>> {
        assert!(is_safe_relative_path(file), "checkpoint file names are ours");
        if self.offline || self.unreachable.get() {
            return Ok(self.cached(file));
        }
        let metadata = match self.metadata(file) {
            Ok(metadata) => metadata,
            Err(Failure::Missing) => return Ok(None),
            // The cached revision, if there is one: its files are there, and a file it lacks is
            // one the repository does not have (huggingface_hub falls back the same way).
            Err(Failure::Unreachable(reason)) if self.cached_snapshot().is_some() => {
                tracing::warn!("the hub cannot be reached ({reason}): using the cached {}", self.repo_id);
                self.unreachable.set(true);
                return Ok(self.cached(file));
            }
            Err(Failure::Unreachable(reason)) => return Err(self.error(file, reason, NETWORK_HINT.into())),
            Err(Failure::Refused { reason, hint }) => return Err(self.error(file, reason, hint)),
        };
        if !is_weights(file) && metadata.size > MAX_SMALL_FILE {
            let reason = format!("the hub announces {} bytes, more than any checkpoint's {file}", metadata.size);
            return Err(self.error(file, reason, "Is HF_ENDPOINT a Hugging Face hub or mirror?".into()));
        }
        let blob = self.folder.join("blobs").join(&metadata.etag);
        if !blob.metadata().is_ok_and(|m| m.is_file() && m.len() == metadata.size) {
            self.download(file, &metadata, &blob)?;
        }
        let snapshot = self.folder.join("snapshots").join(&metadata.commit).join(file);
        self.record(&metadata.commit, &snapshot, &metadata.etag).map_err(|e| self.cache_error(file, e))?;
        Ok(Some(snapshot))
    }

    /// The cached copy of `file` at this revision, if there is one.
    fn cached(&self, file: &str) -> Option<PathBuf> {
        Some(self.cached_snapshot()?.join(file)).filter(|path| path.is_file())
    }

    /// The folder of this revision's cached files, if it was fetched before.
    fn cached_snapshot(&self) -> Option<PathBuf> {
        let commit = match is_commit(&self.revision) {
            true => self.revision.clone(),
            false => std::fs::read_to_string(self.folder.join("refs").join(&self.revision)).ok()?.trim().to_string(),
        };
        is_commit(&commit).then(|| self.folder.join("snapshots").join(commit)).filter(|folder| folder.is_dir())
    }

    /// Asks the hub what `file` is at this revision: its commit, content tag, size and where its
    /// bytes are. Redirects within the hub (a renamed repository) are followed; one to another
    /// host is the file's storage, and the hub's answer is the redirect's own headers.
    fn metadata(&self, file: &str) -> std::result::Result<Metadata, Failure> {
        let mut url = format!(
            "{}/{}/resolve/{}/{}",
            self.endpoint,
            self.repo_id,
            percent_encoding::utf8_percent_encode(&self.revision, percent_encoding::NON_ALPHANUMERIC),
            file
        );
        for _ in 0..MAX_REDIRECTS {
            let response =
                self.send(|| self.with_token(self.agent.head(&url), &url).header("Accept-Encoding", "identity"))?;
            let status = response.status().as_u16();
            let header = |name: &str| response.headers().get(name).and_then(|v| v.to_str().ok()).map(str::to_string);
            let location = header("location").map(|to| absolute(&url, &to));
            if (300..400).contains(&status) && location.as_deref().is_some_and(|to| same_origin(to, &self.endpoint)) {
                url = location.expect("checked");
                continue;
            }
            if status == 404 {
                return match header("x-error-code").as_deref() {
                    Some("RepoNotFound") => Err(refused("the hub has no such repository".into(), NAME_HINT)),
                    Some("RevisionNotFound") => {
                        Err(refused(format!("the repository has no revision {:?}", self.revision), NAME_HINT))
                    }
                    _ => Err(Failure::Missing),
                };
            }
            if status == 401 || status == 403 {
                let reason =
                    format!("the hub answered {status}: the repository is private or gated, or does not exist");
                return Err(refused(reason, TOKEN_HINT));
            }
            if !(200..400).contains(&status) {
                return Err(refused(format!("the hub answered {status}"), NETWORK_HINT));
            }
            let not_a_hub = |what: &str| refused(format!("the server's answer has no usable {what}"), ENDPOINT_HINT);
            let commit = header("x-repo-commit").filter(|c| is_commit(c)).ok_or_else(|| not_a_hub("X-Repo-Commit"))?;
            let etag = header("x-linked-etag")
                .or_else(|| header("etag"))
                .map(|tag| tag.trim_start_matches("W/").trim_matches('"').to_ascii_lowercase())
                .filter(|tag| is_content_tag(tag))
                .ok_or_else(|| not_a_hub("ETag"))?;
            // A redirect's own Content-Length is its body's, not the file's.
            let redirected = (300..400).contains(&status);
            let size = header("x-linked-size")
                .or_else(|| header("content-length").filter(|_| !redirected))
                .and_then(|s| s.trim().parse::<u64>().ok())
                .ok_or_else(|| not_a_hub("size"))?;
            let location = match redirected {
                true => location
                    .filter(|to| to.starts_with("https://") || to.starts_with("http://"))
                    .ok_or_else(|| not_a_hub("Location"))?,
                false => url,
            };
            return Ok(Metadata { commit, etag, size, location });
        }
        Err(refused(format!("more than {MAX_REDIRECTS} redirects"), ENDPOINT_HINT))
    }

    /// One request, tried again when the hub is busy or failing, or the connection failed.
    fn send(
        &self,
        request: impl Fn() -> ureq::RequestBuilder<ureq::typestate::WithoutBody>,
    ) -> std::result::Result<ureq::http::Response<ureq::Body>, Failure> {
        let mut last = String::new();
        for attempt in 0..TRIES {
            if attempt > 0 {
                std::thread::sleep(Duration::from_millis(500 << attempt));
            }
            match request().call() {
                Ok(response) if response.status() == 429 => {
                    last = "the hub limits how often it is asked (429): wait a few minutes (an HF_TOKEN raises the \
                            limits)"
                        .into();
                }
                Ok(response) if response.status().is_server_error() => {
                    last = format!("the hub answered {} (it is failing or busy)", response.status().as_u16());
                }
                Ok(response) => return Ok(response),
                Err(e) => last = e.to_string(),
            }
        }
        Err(Failure::Unreachable(last))
    }

    /// The token goes to the hub's own host only, never to the storage it redirects to.
    fn with_token<B>(&self, request: ureq::RequestBuilder<B>, url: &str) -> ureq::RequestBuilder<B> {
        match &self.token {
            Some(token) if same_origin(url, &self.endpoint) => {
                request.header("Authorization", format!("Bearer {token}"))
            }
            _ => request,
        }
    }

    /// Fetches the file's bytes into `blob`: resumed from an earlier part where the server
    /// allows, held to the announced size, and checked against its tag (a SHA-256, or git's
    /// SHA-1 of a file kept without LFS) before it is a blob. Processes fetching the same file
    /// wait for each other.
    fn download(&self, file: &str, metadata: &Metadata, blob: &Path) -> Result<()> {
        let blobs = blob.parent().expect("in blobs/");
        let cache_error = |e: std::io::Error| self.cache_error(file, e);
        // Where `huggingface_hub` keeps its locks, so that it and we wait for each other too.
        let locks = self
            .folder
            .parent()
            .expect("in the hub cache")
            .join(".locks")
            .join(self.folder.file_name().expect("named"));
        std::fs::create_dir_all(blobs).and_then(|()| std::fs::create_dir_all(&locks)).map_err(cache_error)?;
        let lock = File::create(locks.join(format!("{}.lock", metadata.etag))).map_err(cache_error)?;
        lock.lock().map_err(cache_error)?;
        if blob.metadata().is_ok_and(|m| m.len() == metadata.size) {
            return Ok(()); // another process fetched it meanwhile
        }
        let partial = blobs.join(format!("{}.incomplete", metadata.etag));
        let mut out = File::options().create(true).append(true).open(&partial).map_err(cache_error)?;
        let mut have = out.metadata().map_err(cache_error)?.len();
        if have > metadata.size {
            out.set_len(0).map_err(cache_error)?;
            have = 0;
        }
        // A part as long as the file (a run stopped while it was checked) is only checked.
        if have < metadata.size {
            self.receive(file, metadata, &mut out, have)?;
        }
        drop(out);
        let digest = match metadata.etag.len() {
            64 => sha256_of(&partial),
            _ => git_blob_sha1_of(&partial),
        }
        .map_err(cache_error)?;
        if digest != metadata.etag {
            let _ = std::fs::remove_file(&partial);
            let reason = format!("what arrived hashes to {digest}, not to its tag {}", metadata.etag);
            let hint = "Run again to fetch it anew; if it repeats, check HF_ENDPOINT and any proxy.";
            return Err(self.error(file, reason, hint.into()));
        }
        std::fs::rename(&partial, blob).map_err(cache_error)
    }

    /// Appends the file's bytes from `have` on to `out`, following redirects (the token stays
    /// with the hub's host), until the announced size; never more. A server that cannot go on
    /// from `have` sends the whole file again.
    fn receive(&self, file: &str, metadata: &Metadata, out: &mut File, mut have: u64) -> Result<()> {
        let failed = |reason: String| self.error(file, reason, NETWORK_HINT.into());
        let cache_error = |e: std::io::Error| self.cache_error(file, e);
        let mut url = metadata.location.clone();
        let mut tries = 0;
        let response = loop {
            tries += 1;
            if tries > MAX_REDIRECTS {
                return Err(failed(format!("more than {MAX_REDIRECTS} redirects or restarts")));
            }
            let range = format!("bytes={have}-");
            let response = self
                .send(|| {
                    let request = self.with_token(self.agent.get(&url), &url).header("Accept-Encoding", "identity");
                    match have {
                        0 => request,
                        _ => request.header("Range", &range),
                    }
                })
                .map_err(|f| match f {
                    Failure::Unreachable(reason) | Failure::Refused { reason, .. } => failed(reason),
                    Failure::Missing => failed("not found".into()),
                })?;
            let status = response.status().as_u16();
            let header = |name: &str| response.headers().get(name).and_then(|v| v.to_str().ok());
            let resumed_at = header("content-range")
                .and_then(|range| range.strip_prefix("bytes ")?.split('-').next()?.parse::<u64>().ok());
            match status {
                300..=399 => match header("location").map(|to| absolute(&url, to)) {
                    Some(to) if to.starts_with("https://") || to.starts_with("http://") => url = to,
                    _ => return Err(failed(format!("a redirect ({status}) to no usable place"))),
                },
                206 if resumed_at == Some(have) => break response,
                200 => {
                    // The whole file again: what was kept is dropped.
                    out.set_len(0).and_then(|()| out.rewind()).map_err(cache_error)?;
                    have = 0;
                    break response;
                }
                // It cannot go on from there (another version of the file, a part not its own):
                // start over.
                206 | 416 if have > 0 => {
                    out.set_len(0).and_then(|()| out.rewind()).map_err(cache_error)?;
                    have = 0;
                }
                _ => return Err(failed(format!("the download was answered {status}"))),
            }
        };
        let progress = indicatif::ProgressBar::new(metadata.size).with_position(have);
        progress.set_style(
            indicatif::ProgressStyle::with_template("{msg} {bar:30} {bytes}/{total_bytes} {bytes_per_sec} ETA {eta}")
                .expect("a valid template"),
        );
        progress.set_message(format!("fetching {} {file}", self.repo_id));
        // Read on a thread of its own, so that a server that stops sending is given up on after
        // the longest silence allowed, and one that drips is given up on at the slowest rate.
        let (chunks, received) = mpsc::sync_channel::<std::io::Result<Vec<u8>>>(4);
        let mut body = response.into_body().into_reader();
        std::thread::spawn(move || loop {
            let mut chunk = vec![0u8; 1 << 16];
            let read = body.read(&mut chunk).map(|n| {
                chunk.truncate(n);
                chunk
            });
            let end = !matches!(&read, Ok(chunk) if !chunk.is_empty());
            if chunks.send(read).is_err() || end {
                return;
            }
        });
        let deadline = std::time::Instant::now()
            + self.download_silence
            + Duration::from_secs_f64((metadata.size - have) as f64 / SLOWEST_BYTES_PER_SECOND);
        while have < metadata.size {
            let left = deadline.saturating_duration_since(std::time::Instant::now());
            let chunk = match received.recv_timeout(self.download_silence.min(left)) {
                Ok(Ok(chunk)) if chunk.is_empty() => break,
                Ok(Ok(chunk)) => chunk,
                Ok(Err(e)) => return Err(failed(format!("the download broke off: {e}"))),
                Err(_) if left.is_zero() => {
                    return Err(failed(format!(
                        "the download ran slower than {} kB/s (run again: it goes on from where it stopped)",
                        SLOWEST_BYTES_PER_SECOND / 1000.0
                    )))
                }
                Err(_) => {
                    return Err(failed(format!(
                        "nothing arrived for {} s (HF_HUB_DOWNLOAD_TIMEOUT)",
                        self.download_silence.as_secs_f64()
                    )))
                }
            };
            let room = (metadata.size - have).min(chunk.len() as u64) as usize;
            out.write_all(&chunk[..room]).map_err(cache_error)?;
            have += room as u64;
            progress.set_position(have);
        }
        progress.finish_and_clear();
        if have < metadata.size {
            return Err(failed(format!(
                "the download ended at {have} of {} bytes (run again: it goes on from there)",
                metadata.size
            )));
        }
        Ok(())
    }

    /// Records `commit` as this revision's and links the snapshot's file to its blob. Each is
    /// made under a name of this process's and renamed into place: processes recording the
    /// same file at once never see (or leave) one half made.
    fn record(&self, commit: &str, snapshot: &Path, etag: &str) -> std::io::Result<()> {
        let temporary = |path: &Path| path.with_extension(format!("{}.part", std::process::id()));
        if self.revision != commit {
            let reference = self.folder.join("refs").join(&self.revision);
            std::fs::create_dir_all(reference.parent().expect("in refs/"))?;
            std::fs::write(temporary(&reference), commit)?;
            std::fs::rename(temporary(&reference), &reference)?;
        }
        let depth = snapshot.strip_prefix(&self.folder).map_or(0, |inside| inside.components().count() - 1);
        let target = Path::new(&"../".repeat(depth)).join("blobs").join(etag);
        if std::fs::read_link(snapshot).is_ok_and(|linked| linked == target) {
            return Ok(());
        }
        std::fs::create_dir_all(snapshot.parent().expect("in snapshots/COMMIT/"))?;
        let _ = std::fs::remove_file(temporary(snapshot));
        link(&target, &temporary(snapshot), &self.folder.join("blobs").join(etag))?;
        std::fs::rename(temporary(snapshot), snapshot)
    }

    fn cache_error(&self, file: &str, e: std::io::Error) -> Error {
        self.error(file, format!("cannot write the cache: {e}"), CACHE_HINT.into())
    }

    fn error(&self, file: &str, reason: String, hint: String) -> Error {
        Error::Download { repo: self.repo_id.clone(), file: file.into(), reason, hint }
    }
}

const NETWORK_HINT: &str = "Check the network (and HF_ENDPOINT if set), set HF_HUB_OFFLINE=1 to use what is already \
                            cached, or pass --model a local folder with config.json, model.safetensors and \
                            tokenizer.json.";
const TOKEN_HINT: &str = "Check the name; for a private or gated repository, accept its terms on the hub and set \
                          HF_TOKEN to an access token (or log in with `hf auth login`).";
const NAME_HINT: &str = "Check the repository's name and revision (OWNER/NAME@REVISION).";
const ENDPOINT_HINT: &str = "The server does not answer as a Hugging Face hub does: check HF_ENDPOINT and any proxy.";
const CACHE_HINT: &str = "Check that HF_HOME (or HF_HUB_CACHE) is a writable folder with room.";

fn refused(reason: String, hint: &str) -> Failure {
    Failure::Refused { reason, hint: hint.into() }
}

/// The weights, which may be any size; every other file is small.
fn is_weights(file: &str) -> bool {
    [".safetensors", ".bin", ".pt", ".pth"].iter().any(|ext| file.ends_with(ext))
}

fn is_hex(text: &str) -> bool {
    text.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

/// A git commit hash: what a snapshot folder is named after.
fn is_commit(text: &str) -> bool {
    text.len() == 40 && is_hex(text)
}

/// A content tag a blob may be named after, and checked against: git's SHA-1 of a file kept in
/// the repository itself (40 hex digits), or the SHA-256 of one kept with LFS (64).
fn is_content_tag(text: &str) -> bool {
    matches!(text.len(), 40 | 64) && is_hex(text)
}

/// A path of plain names (a revision such as `refs/pr/15`, a file in a repository): nothing that
/// could lead out of the folder it is joined to.
fn is_safe_relative_path(text: &str) -> bool {
    !text.is_empty()
        && text.len() <= 256
        && text.split('/').all(|part| {
            !part.is_empty()
                && part != "."
                && part != ".."
                && part.chars().all(|c| c.is_ascii_alphanumeric() || "-_.+".contains(c))
        })
}

/// `scheme://host[:port]` of a URL.
fn origin(url: &str) -> Option<&str> {
    let (scheme, rest) = url.split_once("://")?;
    let end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    Some(&url[..scheme.len() + 3 + end])
}

fn same_origin(url: &str, endpoint: &str) -> bool {
    origin(url).is_some_and(|o| Some(o.to_ascii_lowercase()) == origin(endpoint).map(str::to_ascii_lowercase))
}

/// A `Location` made absolute against the URL that answered with it.
fn absolute(base: &str, location: &str) -> String {
    match (location.starts_with('/') && !location.starts_with("//"), origin(base)) {
        (true, Some(origin)) => format!("{origin}{location}"),
        _ => location.to_string(),
    }
}

fn sha256_of(path: &Path) -> std::io::Result<String> {
    let mut hasher = Sha256::new();
    each_part_of(path, |part| hasher.update(part))?;
    Ok(hasher.finalize().iter().map(|b| format!("{b:02x}")).collect())
}

/// Git's name for a file's content (`git hash-object`): the SHA-1 of `blob LENGTH\0` and the
/// bytes, which the hub gives as the ETag of a file kept without LFS.
fn git_blob_sha1_of(path: &Path) -> std::io::Result<String> {
    let mut hasher = Sha1::default();
    hasher.update(format!("blob {}\0", std::fs::metadata(path)?.len()).as_bytes());
    each_part_of(path, |part| hasher.update(part))?;
    Ok(hasher.finish().iter().map(|b| format!("{b:02x}")).collect())
}

/// Hands `take` the file's bytes a megabyte at a time.
fn each_part_of(path: &Path, mut take: impl FnMut(&[u8])) -> std::io::Result<()> {
    let mut file = File::open(path)?;
    let mut buffer = vec![0u8; 1 << 20];
    loop {
        match file.read(&mut buffer)? {
            0 => return Ok(()),
            n => take(&buffer[..n]),
        }
    }
}

/// SHA-1 (FIPS 180-4), only to check files against git's names for them: no crate in the tree
/// has it, and the hub names every file kept without LFS so.
#[derive(Default)]
struct Sha1 {
    state: Option<[u32; 5]>,
    pending: Vec<u8>,
    length: u64,
}

impl Sha1 {
    fn update(&mut self, mut bytes: &[u8]) {
        self.length += bytes.len() as u64;
        if !self.pending.is_empty() {
            let take = (64 - self.pending.len()).min(bytes.len());
            self.pending.extend_from_slice(&bytes[..take]);
            bytes = &bytes[take..];
            if self.pending.len() == 64 {
                let block = std::mem::take(&mut self.pending);
                self.block(&block);
            }
        }
        let whole = bytes.len() / 64 * 64;
        for block in bytes[..whole].chunks_exact(64) {
            self.block(block);
        }
        self.pending.extend_from_slice(&bytes[whole..]);
    }

    fn block(&mut self, block: &[u8]) {
        let state = self.state.get_or_insert([0x67452301, 0xEFCDAB89, 0x98BADCFE, 0x10325476, 0xC3D2E1F0]);
        let mut w = [0u32; 80];
        for (i, word) in block.chunks_exact(4).enumerate() {
            w[i] = u32::from_be_bytes(word.try_into().expect("4 bytes"));
        }
        for i in 16..80 {
            w[i] = (w[i - 3] ^ w[i - 8] ^ w[i - 14] ^ w[i - 16]).rotate_left(1);
        }
        let [mut a, mut b, mut c, mut d, mut e] = *state;
        for (i, word) in w.iter().enumerate() {
            let (f, k) = match i {
                0..=19 => ((b & c) | (!b & d), 0x5A827999),
                20..=39 => (b ^ c ^ d, 0x6ED9EBA1),
                40..=59 => ((b & c) | (b & d) | (c & d), 0x8F1BBCDC),
                _ => (b ^ c ^ d, 0xCA62C1D6),
            };
            let next = a.rotate_left(5).wrapping_add(f).wrapping_add(e).wrapping_add(k).wrapping_add(*word);
            (e, d, c, b, a) = (d, c, b.rotate_left(30), a, next);
        }
        for (s, v) in state.iter_mut().zip([a, b, c, d, e]) {
            *s = s.wrapping_add(v);
        }
    }

    fn finish(mut self) -> [u8; 20] {
        let bits = self.length * 8;
        let mut tail = std::mem::take(&mut self.pending);
        tail.push(0x80);
        while tail.len() % 64 != 56 {
            tail.push(0);
        }
        tail.extend_from_slice(&bits.to_be_bytes());
        for block in tail.chunks_exact(64) {
            self.block(block);
        }
        let state = self.state.unwrap_or([0x67452301, 0xEFCDAB89, 0x98BADCFE, 0x10325476, 0xC3D2E1F0]);
        let mut out = [0u8; 20];
        for (chunk, word) in out.chunks_exact_mut(4).zip(state) {
            chunk.copy_from_slice(&word.to_be_bytes());
        }
        out
    }
}

/// A relative symlink as `huggingface_hub` makes them; a copy where links cannot be made.
fn link(target: &Path, at: &Path, blob: &Path) -> std::io::Result<()> {
    #[cfg(unix)]
    {
        let _ = blob;
        std::os::unix::fs::symlink(target, at)
    }
    #[cfg(not(unix))]
    {
        let _ = target;
        std::fs::copy(blob, at).map(|_| ())
    }
}

fn dirs_home() -> PathBuf {
    std::env::var_os("HOME").map_or_else(|| PathBuf::from("."), PathBuf::from)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_from_a_server_or_a_command_line_never_lead_out_of_the_cache() {
        for bad in ["..", "../x", "a/../../b", "/etc", "a//b", "", ".", "a b", "a\\b", "x\0y"] {
            assert!(!is_safe_relative_path(bad), "{bad:?}");
        }
        for good in ["main", "refs/pr/15", "v1.0", "config.json", "2024-01-01"] {
            assert!(is_safe_relative_path(good), "{good:?}");
        }
        assert!(is_commit("0123456789abcdef0123456789abcdef01234567"));
        for bad in ["../../../../tmp/x", "0123456789ABCDEF0123456789abcdef01234567", "abc", "x/.."] {
            assert!(!is_commit(bad) && !is_content_tag(bad), "{bad:?}");
        }
    }

    #[test]
    fn sha1_is_gits_name_for_a_files_content() {
        let sha1 = |parts: &[&[u8]]| {
            let mut hasher = Sha1::default();
            parts.iter().for_each(|part| hasher.update(part));
            hasher.finish().iter().map(|b| format!("{b:02x}")).collect::<String>()
        };
        assert_eq!(sha1(&[b"abc"]), "a9993e364706816aba3e25717850c26c9cd0d89d");
        assert_eq!(sha1(&[b""]), "da39a3ee5e6b4b0d3255bfef95601890afd80709");
        let long = b"abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq";
        assert_eq!(sha1(&[long]), "84983e441c3bd26ebaae4aa1f95129e5e54670f1");
        assert_eq!(sha1(&[&long[..7], &long[7..]]), "84983e441c3bd26ebaae4aa1f95129e5e54670f1");
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("hello"), b"hello\n").unwrap();
        // `echo hello | git hash-object --stdin`
        assert_eq!(git_blob_sha1_of(&dir.path().join("hello")).unwrap(), "ce013625030ba8dba906f756967f9e9ca394464a");
    }

    #[test]
    fn the_token_stays_with_the_hubs_own_origin() {
        let hub = "https://huggingface.co";
        assert!(same_origin("https://huggingface.co/a/resolve/main/x", hub));
        assert!(!same_origin("https://cdn-lfs.hf.co/x", hub));
        assert!(!same_origin("https://huggingface.co.evil.com/x", hub));
        assert!(!same_origin("http://huggingface.co/x", hub));
        assert!(!same_origin("http://127.0.0.1:8001/x", "http://127.0.0.1:8000"));
        assert_eq!(absolute("http://h:1/a/b", "/c"), "http://h:1/c");
    }
}
