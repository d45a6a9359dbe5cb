//! The one face of storage: what the query engine, the indexer, the CLI and the server ask of a
//! library, whichever backend keeps it. The embedded data folder ([`super::DataDir`]: sled,
//! our HNSW, tantivy) is one backend; each backend keeps its own schema and query language to
//! itself (tantivy queries are built in `text.rs`, not by the query engine).

use std::path::PathBuf;
use std::sync::Arc;

use super::catalog::{Change, ImageId, ImageRecord, IndexedRoot, ModelInfo, SkipRecord, Tagging};
use super::Stats;
use crate::error::Result;
use crate::geo::Area;

/// A condition on a picture's file and photo facts (the query language's `path:`, `after:`, …).
#[derive(Debug, Clone, PartialEq)]
pub enum Filter {
    /// A word of the path.
    Path(String),
    /// Anywhere below this folder (an absolute path).
    Folder(String),
    /// A word of the file name.
    Name(String),
    /// A word of the camera's make or model.
    Camera(String),
    /// A word of the title or description people gave the picture.
    Caption(String),
    /// A word of one of its keywords (or of a name of someone in it).
    Keyword(String),
    /// Rated with at least this many stars (1–5).
    Rating(i8),
    /// Taken at or after, Unix seconds.
    After(i64),
    /// Taken before, Unix seconds.
    Before(i64),
    /// The file format (jpeg, png, …).
    Type(String),
    /// Tagged with this label (lower-case; see `search::tags`).
    Tag(String),
    /// Taken at an hour of the day (local time, as the camera wrote it) from `from` up to, not
    /// including, `until` (0–23; wrapping past midnight when `until <= from`: 22 → 5 is the night).
    Hour { from: u8, until: u8 },
    /// Taken in this area (by the photo's GPS position, or a GeoTIFF's place).
    Place(Area),
}

/// The words of a text as the filters match them, on both backends (the embedded text index
/// tokenises with it): composed as [`composed`] says, lower-cased, split at every character that
/// is neither a letter, a digit nor a mark that combines with the one before (an accent without a
/// composed form, a Devanagari virama: part of its word); words of 40 bytes or more are dropped.
/// Lower-casing comes first, as a query may already be lower-cased: "İ" lower-cases to "i" and
/// a combining dot.
pub fn words(text: &str) -> std::vec::IntoIter<String> {
    use unicode_normalization::char::is_combining_mark;
    let words: Vec<String> = composed(&text.to_lowercase())
        .split(|c: char| !(c.is_alphanumeric() || is_combining_mark(c)))
        .filter(|w| !w.is_empty() && w.len() < 40)
        .map(str::to_owned)
        .collect();
    words.into_iter()
}

/// A text in Unicode's composed form (NFC), as the filters compare texts: macOS writes "é" in a
/// file name as "e" and a combining accent, a keyboard types one letter, and both must match.
pub fn composed(text: &str) -> String {
    use unicode_normalization::UnicodeNormalization;
    text.nfc().collect()
}

/// What a library holds at a path.
#[derive(Debug, Clone, PartialEq)]
pub enum Known {
    /// A picture: its record, without its embedding.
    Picture(Box<ImageRecord>),
    /// A file skipped, and why.
    Skipped(SkipRecord),
    Nothing,
}

/// The reads the indexer makes while its writer applies batches (and, under `serve --watch`,
/// while searches run): shared between threads, and never waiting on the writer.
pub trait Lookup: Send + Sync {
    /// The record (without its embedding) of the picture at `path` (stored path bytes).
    fn image_at(&self, path: &[u8]) -> Result<Option<ImageRecord>>;
    /// Why the file at `path` was skipped, if it was.
    fn skipped_at(&self, path: &[u8]) -> Result<Option<SkipRecord>>;
    /// What the library holds at each of `paths` (stored path bytes), in their order: a rescan's
    /// batch. A backend behind a network answers it in one round trip.
    fn known_at(&self, paths: &[Vec<u8>]) -> Result<Vec<Known>> {
        paths
            .iter()
            .map(|path| {
                Ok(match self.image_at(path)? {
                    Some(record) => Known::Picture(Box::new(record)),
                    None => self.skipped_at(path)?.map_or(Known::Nothing, Known::Skipped),
                })
            })
            .collect()
    }
    /// Any picture with exactly this content (blake3 hex), with its embedding.
    fn image_with_hash(&self, hash: &str) -> Result<Option<ImageRecord>>;
    /// Every stored path with its picture's id, without reading the records.
    fn paths(&self) -> Box<dyn Iterator<Item = Result<(Vec<u8>, ImageId)>> + '_>;
    /// Every skipped file, ignored ones included.
    fn skipped(&self) -> Box<dyn Iterator<Item = Result<SkipRecord>> + '_>;
    /// The longest stored path (bytes) the backend keeps, if it has a limit.
    fn longest_path(&self) -> Option<usize> {
        None
    }
}

/// Why `lookup`'s library cannot keep a file at `path` (stored path bytes), if it cannot: what
/// `index`, `import` and `migrate` say of it, leaving it out instead of failing the whole run.
pub fn path_too_long(lookup: &dyn Lookup, path: &[u8]) -> Option<String> {
    let longest = lookup.longest_path().filter(|&longest| path.len() > longest)?;
    Some(format!(
        "its path is {} bytes long; a library in PostgreSQL keeps paths of up to {longest} bytes (a data folder has \
         no such limit): move or rename the file closer to its root",
        path.len()
    ))
}

/// A library of pictures and their embeddings.
pub trait Library: Lookup {
    /// Where the library lives, as people should see it in messages and `stats`.
    fn location(&self) -> String;
    /// A local folder for caches that need not be shared (thumbnails).
    fn cache_dir(&self) -> PathBuf;
    /// Whether the library can be read now (the server's health check): its database answers,
    /// or its data folder is still there (a disk unplugged under a running server).
    fn check_reachable(&self) -> Result<()>;

    /// The model the library's embeddings were made with (`None` while it is empty).
    fn model_info(&self) -> Result<Option<ModelInfo>>;
    /// Checks `info` against the library's model; records it if the library has none yet.
    fn check_model(&self, info: &ModelInfo) -> Result<()>;

    /// A picture's record with its embedding.
    fn image(&self, id: ImageId) -> Result<Option<ImageRecord>>;
    /// A picture's record without its embedding (what hits and listings show).
    fn image_meta(&self, id: ImageId) -> Result<Option<ImageRecord>>;
    /// The records (without embeddings) of those of `ids` that exist, in the order of `ids`: a
    /// page of hits. A backend behind a network answers it in one round trip.
    fn images_meta(&self, ids: &[ImageId]) -> Result<Vec<ImageRecord>> {
        ids.iter().filter_map(|&id| self.image_meta(id).transpose()).collect()
    }
    /// The records (with embeddings) of the pictures at `paths` (stored path bytes), in the order
    /// of `paths`, `None` where there is none: a loader's batch. A backend behind a network
    /// answers it in one round trip.
    fn images_at(&self, paths: &[Vec<u8>]) -> Result<Vec<Option<ImageRecord>>> {
        paths
            .iter()
            .map(|path| match self.image_at(path)? {
                Some(meta) => self.image(meta.id),
                None => Ok(None),
            })
            .collect()
    }
    /// Every picture with exactly this content (blake3 hex); an empty hash matches nothing.
    fn images_with_hash(&self, hash: &str) -> Result<Vec<ImageId>>;
    fn image_count(&self) -> usize;
    /// Every record, with its embedding.
    fn images(&self) -> Box<dyn Iterator<Item = Result<ImageRecord>> + '_>;
    /// A handle for the indexer's workers.
    fn lookup(&self) -> Arc<dyn Lookup>;
    /// Every folder `index` was pointed at, with the options of its latest run.
    fn indexed_roots(&self) -> Result<Vec<IndexedRoot>>;
    /// The label set that tags pictures, if the library has one.
    fn tagging(&self) -> Result<Option<Tagging>>;
    /// Replaces (or with `None` removes) the label set; the pictures' tags are the caller's.
    fn set_tagging(&mut self, tagging: Option<&Tagging>) -> Result<()>;
    /// Every tag with how many pictures carry it.
    fn tag_counts(&self) -> Result<std::collections::HashMap<String, u64>>;
    /// Every keyword people gave pictures (the names of people in them among them), as spelled,
    /// with how many pictures carry it.
    fn keyword_counts(&self) -> Result<std::collections::HashMap<String, u64>>;
    /// The summary of the latest `index` run.
    fn last_run(&self) -> Result<Option<serde_json::Value>>;

    /// An id no other picture has or had.
    fn new_id(&self) -> Result<ImageId>;
    /// Applies a batch of changes: durable on return, searchable at once.
    fn apply(&mut self, changes: &[Change]) -> Result<()>;
    /// Records a finished `index` run: its roots (with their options) and its summary.
    fn record_run(&mut self, roots: &[IndexedRoot], summary: &serde_json::Value) -> Result<()>;
    /// Stops recording these roots (by [`IndexedRoot::key`]), so that no rescan walks them again;
    /// their pictures are the caller's to remove.
    fn forget_roots(&mut self, keys: &[std::path::PathBuf]) -> Result<()>;
    /// Persists whatever `apply` kept in memory only (a long run calls it at its end).
    fn save(&mut self) -> Result<()>;
    /// Saves and closes the library, leaving it quick for the next process to open (a command
    /// that wrote much calls it last).
    fn close(self: Box<Self>) -> Result<()>;

    /// The `k` pictures nearest to `query` (a unit vector) among those that pass every filter,
    /// leaving out `exclude`: exact cosine scores from the stored f32 embeddings, best first.
    fn nearest(
        &self,
        query: &[f32],
        k: usize,
        filters: &[Filter],
        exclude: Option<ImageId>,
    ) -> Result<Vec<(ImageId, f32)>>;
    /// The `k` pictures nearest to the stored picture `id` (whose embedding is `embedding`), itself
    /// left out: exact cosine scores, best first. What duplicate search asks of every picture; a
    /// backend may answer it faster than [`Library::nearest`], starting where the picture is.
    fn nearest_to_picture(&self, id: ImageId, embedding: &[f32], k: usize) -> Result<Vec<(ImageId, f32)>> {
        self.nearest(embedding, k, &[], Some(id))
    }
    /// Which of `ids` pass every filter.
    fn passing(&self, ids: &[ImageId], filters: &[Filter]) -> Result<Vec<ImageId>>;
    /// The first `limit` pictures that pass every filter, newest (date taken) first.
    fn newest(&self, filters: &[Filter], limit: usize) -> Result<Vec<ImageId>>;

    /// Counts, sizes and the latest run; `size_bytes` as measured by [`Library::size_bytes`]
    /// (measuring can be slow: callers may reuse a recent figure).
    fn stats(&self, size_bytes: u64) -> Result<Stats>;
    /// Bytes the library takes on this machine.
    fn size_bytes(&self) -> u64;
    /// Re-derives every index from the records where they disagree (always, with `force`);
    /// says what was repaired.
    fn repair(&mut self, force: bool) -> Result<Vec<String>>;
    /// A long load begins (`import`, `migrate`, `index`): the backend may stop maintaining an
    /// index and build it once in [`Library::end_bulk_load`], which the loader calls when done
    /// (after an interrupted load, the next load or `imgsearch repair` builds it; searches stay
    /// exact meanwhile).
    fn begin_bulk_load(&mut self) -> Result<()> {
        Ok(())
    }
    /// Ends it, showing on `progress` any index build that takes long.
    fn end_bulk_load(&mut self, _progress: &indicatif::ProgressBar) -> Result<()> {
        Ok(())
    }
    /// Rebuilds the nearest-neighbour index from the live pictures, and gives back the disk space
    /// of removed ones where the store keeps it; says what changed.
    fn optimize(&mut self) -> Result<String>;
}
