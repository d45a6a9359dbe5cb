//! Taking a folder out of a library: a root that was moved, renamed or deleted for good, whose
//! pictures `index` keeps (it cannot tell a folder gone for good from a share not mounted), or a
//! folder whose pictures should no longer be found.

use std::path::{Path, PathBuf};

use super::catalog::{path_from_bytes, Change, StoredPath};
use super::Library;
use crate::error::Result;
use crate::ingest::video;

/// What [`forget`] took out of a library.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Forgotten {
    /// Pictures and videos (a video's later moments are part of it).
    pub pictures: u64,
    /// Files recorded as skipped.
    pub skipped: u64,
    /// Recorded roots at or below the folder (no longer rescanned).
    pub roots: Vec<PathBuf>,
}

impl Forgotten {
    pub fn is_empty(&self) -> bool {
        self.pictures == 0 && self.skipped == 0 && self.roots.is_empty()
    }
}

/// Removes every picture and skipped file stored at or below `folder` (a stored path: a local
/// absolute path, or `NAME:` and below for a named root), and every recorded root there.
pub fn forget(library: &mut dyn Library, folder: &Path) -> Result<Forgotten> {
    // Applied in batches, so that no write (a PostgreSQL transaction) grows with the folder.
    const BATCH: usize = 4096;
    let under = |path: &[u8]| path_from_bytes(path).starts_with(folder);
    let mut forgotten = Forgotten::default();
    let mut changes = Vec::new();
    let mut paths = Vec::new();
    for entry in library.paths() {
        let (path, _) = entry?;
        if under(&path) {
            forgotten.pictures += u64::from(video::split_moment(&path).is_none());
            paths.push(path);
        }
    }
    for record in library.skipped() {
        let record = record?;
        if record.path.to_path_buf().starts_with(folder) {
            forgotten.skipped += 1;
            changes.push(Change::Remove(record.path));
        }
    }
    changes.extend(paths.into_iter().map(|path| Change::Remove(StoredPath::from_bytes(path))));
    for batch in changes.chunks(BATCH) {
        library.apply(batch)?;
    }
    forgotten.roots =
        library.indexed_roots()?.iter().map(|root| root.key()).filter(|key| key.starts_with(folder)).collect();
    library.forget_roots(&forgotten.roots)?;
    library.save()?;
    Ok(forgotten)
}
