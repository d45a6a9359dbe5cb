//! Finding candidate files under the roots: recursive, symlinks followed (walkdir detects
//! loops), hidden entries skipped unless asked for, and nothing but regular files passed on —
//! a pipe or a device (also behind a symlink) is never opened.
//!
//! A file reachable under two paths is passed on once. A symbolic link to a folder inside one
//! of the roots is not followed (that folder is walked under its own path); any other second
//! path to the same file (a bind mount, a hard link) is recognised by device and inode, and the
//! first path in name order wins.

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::time::UNIX_EPOCH;

use walkdir::WalkDir;

/// A regular file, with what the incremental check compares.
#[derive(Debug, Clone)]
pub struct Candidate {
    pub path: PathBuf,
    pub size: u64,
    pub mtime_ns: i128,
    /// Device and inode, where the platform has them.
    pub file_id: Option<(u64, u64)>,
}

impl Candidate {
    pub fn new(path: PathBuf, meta: &std::fs::Metadata) -> Self {
        Self { path, size: meta.len(), mtime_ns: mtime_ns(meta), file_id: file_id(meta) }
    }
}

#[derive(Debug)]
pub enum Found {
    File(Candidate),
    /// A folder that cannot be walked, with the reason (unreadable, a link loop): what the
    /// library holds under it is kept, since what is there cannot be known.
    Problem {
        path: PathBuf,
        reason: String,
    },
    /// A path that is no picture, with the reason (a pipe or device, a link to nothing): what the
    /// library held there is gone.
    NotAPicture {
        path: PathBuf,
        reason: String,
    },
}

/// A hidden entry (its name starts with '.'), or one of the folders NAS and desktop systems keep
/// beside people's files: thumbnails of every photo (Synology's `@eaDir`), recycle bins and
/// snapshots (whole second copies of the library).
fn is_hidden(name: &std::ffi::OsStr) -> bool {
    const SYSTEM_FOLDERS: [&str; 7] = [
        "@eaDir",
        "#recycle",
        "#snapshot",
        "@Recycle",
        "@Recently-Snapshot",
        "$RECYCLE.BIN",
        "System Volume Information",
    ];
    name.as_encoded_bytes().first() == Some(&b'.') || SYSTEM_FOLDERS.iter().any(|folder| name == *folder)
}

pub fn mtime_ns(meta: &std::fs::Metadata) -> i128 {
    meta.modified()
        .ok()
        .map(|t| match t.duration_since(UNIX_EPOCH) {
            Ok(d) => d.as_nanos() as i128,
            Err(e) => -(e.duration().as_nanos() as i128),
        })
        .unwrap_or(0)
}

/// Walks every root in turn (`roots` canonical: no symbolic links in them).
pub fn walk(roots: &[PathBuf], hidden: bool) -> impl Iterator<Item = Found> + '_ {
    let mut files_seen = HashSet::new();
    roots.iter().flat_map(move |root| walk_root(root, roots, hidden)).filter(move |found| match found {
        Found::File(candidate) => candidate.file_id.is_none_or(|id| files_seen.insert(id)),
        Found::Problem { .. } | Found::NotAPicture { .. } => true,
    })
}

/// A symbolic link to a folder that one of the roots already holds.
fn links_inside(entry: &walkdir::DirEntry, roots: &[PathBuf]) -> bool {
    entry.depth() > 0
        && entry.path_is_symlink()
        && entry.file_type().is_dir()
        && std::fs::canonicalize(entry.path()).is_ok_and(|target| roots.iter().any(|r| target.starts_with(r)))
}

/// Opens `path` for reading only if it is a regular file, checked on the opened file: a file
/// swapped for a pipe or a device since the walk is refused, not waited on. (A pipe's `open`
/// blocks until a writer comes; one such request per blocking thread wedged the server.)
pub fn open_regular_file(path: &Path) -> std::io::Result<std::fs::File> {
    let mut options = std::fs::OpenOptions::new();
    options.read(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        // Reads of a regular file never block on this flag; `open` of a pipe returns at once.
        options.custom_flags(libc::O_NONBLOCK);
    }
    let file = options.open(path)?;
    if !file.metadata()?.is_file() {
        return Err(std::io::Error::new(std::io::ErrorKind::InvalidInput, "not a regular file (a pipe or a device?)"));
    }
    Ok(file)
}

/// The bytes of the regular file at `path` ([`open_regular_file`]), refused past `limit` bytes
/// rather than read without end (`/dev/zero` given as a query's vector file).
pub fn read_regular_file(path: &Path, limit: u64) -> std::io::Result<Vec<u8>> {
    let mut bytes = Vec::new();
    std::io::Read::read_to_end(&mut std::io::Read::take(open_regular_file(path)?, limit + 1), &mut bytes)?;
    if bytes.len() as u64 > limit {
        let message = format!("larger than {} MB, more than such a file ever holds", limit / 1_000_000);
        return Err(std::io::Error::new(std::io::ErrorKind::InvalidInput, message));
    }
    Ok(bytes)
}

#[cfg(unix)]
pub fn file_id(meta: &std::fs::Metadata) -> Option<(u64, u64)> {
    use std::os::unix::fs::MetadataExt;
    Some((meta.dev(), meta.ino()))
}

#[cfg(not(unix))]
pub fn file_id(_: &std::fs::Metadata) -> Option<(u64, u64)> {
    None
}

fn walk_root<'a>(root: &Path, roots: &'a [PathBuf], hidden: bool) -> impl Iterator<Item = Found> + 'a {
    WalkDir::new(root)
        .follow_links(true)
        // Name order: which of two paths to one file wins must not depend on the file system.
        .sort_by_file_name()
        .into_iter()
        .filter_entry(move |e| (hidden || e.depth() == 0 || !is_hidden(e.file_name())) && !links_inside(e, roots))
        .filter_map(|entry| match entry {
            Err(e) => {
                let path = e.path().map(Path::to_path_buf).unwrap_or_default();
                if let Some(link) = dangling_link(&path) {
                    return Some(link);
                }
                let reason = if e.loop_ancestor().is_some() {
                    "symbolic link loop (not followed again)".to_string()
                } else {
                    e.io_error().map(|io| io.to_string()).unwrap_or_else(|| e.to_string())
                };
                Some(Found::Problem { path, reason })
            }
            Ok(entry) if entry.file_type().is_dir() => None,
            // With follow_links, metadata() is the target's: a symlink to /dev/zero is a device.
            Ok(entry) => match entry.metadata() {
                Ok(meta) if meta.is_file() => Some(Found::File(Candidate::new(entry.into_path(), &meta))),
                Ok(_) => Some(Found::NotAPicture {
                    path: entry.into_path(),
                    reason: "not a regular file (pipe, socket or device): never read".into(),
                }),
                Err(e) => dangling_link(entry.path())
                    .or_else(|| Some(Found::Problem { path: entry.into_path(), reason: e.to_string() })),
            },
        })
}

/// A symbolic link whose target is gone: no picture, and said so with where it pointed.
fn dangling_link(path: &Path) -> Option<Found> {
    let is_link = std::fs::symlink_metadata(path).is_ok_and(|meta| meta.file_type().is_symlink());
    if !is_link || std::fs::metadata(path).is_ok() {
        return None;
    }
    let target = std::fs::read_link(path).map_or_else(|_| "?".to_string(), |t| t.display().to_string());
    Some(Found::NotAPicture {
        path: path.to_path_buf(),
        reason: format!("a symbolic link to {target}, which does not exist"),
    })
}
