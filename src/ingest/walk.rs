//! Finding candidate files under the roots: recursive, symlinks followed (walkdir detects
//! loops), hidden entries skipped unless asked for, and nothing but regular files passed on —
//! a pipe or a device (also behind a symlink) is never opened.

use std::path::{Path, PathBuf};
use std::time::UNIX_EPOCH;

use walkdir::WalkDir;

/// A regular file, with what the incremental check compares.
#[derive(Debug, Clone)]
pub struct Candidate {
    pub path: PathBuf,
    pub size: u64,
    pub mtime_ns: i128,
}

#[derive(Debug)]
pub enum Found {
    File(Candidate),
    /// Something that cannot be indexed, with the reason (special file, loop, unreadable folder).
    Problem {
        path: PathBuf,
        reason: String,
    },
}

fn is_hidden(name: &std::ffi::OsStr) -> bool {
    name.as_encoded_bytes().first() == Some(&b'.')
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

/// Walks every root in turn.
pub fn walk(roots: &[PathBuf], hidden: bool) -> impl Iterator<Item = Found> + '_ {
    roots.iter().flat_map(move |root| walk_root(root, hidden))
}

fn walk_root(root: &Path, hidden: bool) -> impl Iterator<Item = Found> {
    WalkDir::new(root)
        .follow_links(true)
        .into_iter()
        .filter_entry(move |e| hidden || e.depth() == 0 || !is_hidden(e.file_name()))
        .filter_map(|entry| match entry {
            Err(e) => {
                let path = e.path().map(Path::to_path_buf).unwrap_or_default();
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
                Ok(meta) if meta.is_file() => Some(Found::File(Candidate {
                    path: entry.into_path(),
                    size: meta.len(),
                    mtime_ns: mtime_ns(&meta),
                })),
                Ok(_) => Some(Found::Problem {
                    path: entry.into_path(),
                    reason: "not a regular file (pipe, socket or device): never read".into(),
                }),
                Err(e) => Some(Found::Problem { path: entry.into_path(), reason: e.to_string() }),
            },
        })
}
