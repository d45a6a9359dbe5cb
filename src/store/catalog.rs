//! The catalog (`sled`): the source of truth. Every indexed picture's record — path, size,
//! mtime, content hash, dimensions, EXIF facts and the embedding itself — plus the files that
//! were skipped and why. The vector and text indexes can always be rebuilt from it.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use sled::transaction::{ConflictableTransactionError, TransactionError, Transactional};

use crate::error::{Error, Result};

pub type ImageId = u64;

/// A path as raw bytes: file names need not be UTF-8.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(untagged)]
pub enum StoredPath {
    Utf8(String),
    Raw(Vec<u8>),
}

impl StoredPath {
    pub fn from_path(path: &Path) -> Self {
        match path.to_str() {
            Some(s) => Self::Utf8(s.to_string()),
            None => Self::Raw(path_bytes(path)),
        }
    }

    /// The form a path takes in the catalog's own keys (raw bytes) back as a stored path.
    pub fn from_bytes(bytes: Vec<u8>) -> Self {
        match String::from_utf8(bytes) {
            Ok(s) => Self::Utf8(s),
            Err(e) => Self::Raw(e.into_bytes()),
        }
    }

    pub fn to_path_buf(&self) -> PathBuf {
        match self {
            Self::Utf8(s) => PathBuf::from(s),
            Self::Raw(bytes) => path_from_bytes(bytes),
        }
    }

    /// The path's bytes where they are not UTF-8 (and [`Self::display`] writes them as escapes).
    pub fn raw_bytes(&self) -> Option<&[u8]> {
        match self {
            Self::Utf8(_) => None,
            Self::Raw(bytes) => Some(bytes),
        }
    }

    /// The path as text: a byte that is not UTF-8 is written `\xNN`, so that two names that
    /// differ only there stay apart (as replacement characters, `caf\xE9.jpg` and `caf\xE8.jpg`
    /// both read `caf�.jpg`, in every listing, search result and JSON answer).
    pub fn display(&self) -> String {
        match self {
            Self::Utf8(s) => s.clone(),
            Self::Raw(bytes) => {
                let mut text = String::with_capacity(bytes.len() + 8);
                for chunk in bytes.utf8_chunks() {
                    text.push_str(chunk.valid());
                    for byte in chunk.invalid() {
                        text.push_str(&format!("\\x{byte:02X}"));
                    }
                }
                text
            }
        }
    }
}

#[cfg(unix)]
pub fn path_bytes(path: &Path) -> Vec<u8> {
    use std::os::unix::ffi::OsStrExt;
    path.as_os_str().as_bytes().to_vec()
}

#[cfg(not(unix))]
pub fn path_bytes(path: &Path) -> Vec<u8> {
    path.to_string_lossy().into_owned().into_bytes()
}

#[cfg(unix)]
pub fn path_from_bytes(bytes: &[u8]) -> PathBuf {
    use std::os::unix::ffi::OsStrExt;
    PathBuf::from(std::ffi::OsStr::from_bytes(bytes))
}

#[cfg(not(unix))]
pub fn path_from_bytes(bytes: &[u8]) -> PathBuf {
    PathBuf::from(String::from_utf8_lossy(bytes).into_owned())
}

/// What EXIF says about a photo (all optional: many files have none).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct PhotoFacts {
    /// When the photo was taken, seconds since the Unix epoch (camera local time taken as UTC).
    pub taken: Option<i64>,
    pub camera_make: Option<String>,
    pub camera_model: Option<String>,
    /// (latitude, longitude) in degrees.
    pub gps: Option<(f64, f64)>,
    /// What people wrote about the picture (a photo manager's title, description and keywords,
    /// with the names of the people in it: `ingest::captions`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub title: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub keywords: Vec<String>,
    /// The stars people gave it, 1–5 (0 unrated, -1 rejected), as XMP and Windows write them.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rating: Option<i8>,
}

impl PhotoFacts {
    /// "Make Model", or whichever of the two the photo has.
    pub fn camera(&self) -> Option<String> {
        let parts: Vec<&str> =
            [&self.camera_make, &self.camera_model].into_iter().flatten().map(String::as_str).collect();
        (!parts.is_empty()).then(|| parts.join(" "))
    }

    /// Where it was taken (latitude, longitude), when the position it carries names a place.
    pub fn place(&self) -> Option<(f64, f64)> {
        self.gps.filter(|(latitude, longitude)| crate::geo::is_valid(*latitude, *longitude))
    }
}

/// A folder `index` was run on and how it was walked: `serve --watch` rescans it the same way
/// (a rescan without `--hidden` would drop the hidden pictures an `index --hidden` added).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct IndexedRoot {
    /// Where the root was on the host that indexed it last.
    pub path: PathBuf,
    /// The name its pictures are stored under (`index NAME=PATH`), so that hosts that mount it
    /// elsewhere find them (see `roots.rs`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    pub hidden: bool,
    pub max_pixels: u64,
    pub max_file_size: u64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ImageRecord {
    pub id: ImageId,
    pub path: StoredPath,
    pub size: u64,
    pub mtime_ns: i128,
    /// blake3 of the file's bytes, hex: finds moved and copied files.
    pub hash: String,
    /// Upright size of the picture.
    pub width: u32,
    pub height: u32,
    /// "jpeg", "png", ...
    pub format: String,
    pub facts: PhotoFacts,
    /// Stored apart from the JSON record, as raw little-endian f32 (5x smaller, no float parsing).
    #[serde(skip)]
    pub embedding: Vec<f32>,
    /// Unix seconds when it was indexed.
    pub indexed_at: u64,
    /// Zero-shot tags (labels of the library's [`Tagging`] that describe the picture), best first.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tags: Vec<String>,
    /// Which reader of file facts made `facts` ([`crate::ingest::exif::FACTS_VERSION`]; 0: one
    /// before captions were read). The next `index` reads a picture with an older one again,
    /// keeping its embedding.
    #[serde(default)]
    pub facts_version: u32,
}

impl ImageRecord {
    /// For a moment of a video (see `ingest::video`): how many seconds into the video it is.
    pub fn video_seconds(&self) -> Option<f64> {
        let path = stored_bytes(&self.path);
        let seconds = crate::ingest::video::later_moment(&self.format, &path).map_or(0.0, |(_, seconds)| seconds);
        crate::ingest::video::is_video_format(&self.format).then_some(seconds)
    }

    /// The hash of the file [`Self::file_path`] names (a moment's video's).
    pub fn file_hash(&self) -> &str {
        crate::ingest::video::file_hash(&self.hash)
    }

    /// The file the record was read from: a moment's video, any other picture's own path.
    pub fn file_path(&self) -> StoredPath {
        let path = stored_bytes(&self.path);
        match crate::ingest::video::later_moment(&self.format, &path) {
            Some((file, _)) => StoredPath::from_bytes(file.to_vec()),
            None => self.path.clone(),
        }
    }
}

/// The labels of a stored record, read without the rest of it (a count reads every record).
#[derive(Deserialize)]
struct RecordLabels {
    #[serde(default)]
    tags: Vec<String>,
    facts: FactLabels,
}

#[derive(Deserialize)]
struct FactLabels {
    #[serde(default)]
    keywords: Vec<String>,
}

#[cfg(test)]
impl ImageRecord {
    /// A record for unit tests: a 1×1 PNG at `path` with this embedding and a hash of its own.
    pub(crate) fn made_up(id: ImageId, path: &str, embedding: Vec<f32>) -> Self {
        Self {
            id,
            path: StoredPath::from_path(std::path::Path::new(path)),
            size: 1,
            mtime_ns: 0,
            hash: format!("{id:016x}"),
            width: 1,
            height: 1,
            format: "png".into(),
            facts: Default::default(),
            embedding,
            indexed_at: 0,
            tags: Vec::new(),
            facts_version: crate::ingest::exif::FACTS_VERSION,
        }
    }
}

/// A file that was not indexed, and why. Kept so an unchanged bad file is not read again.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SkipRecord {
    pub path: StoredPath,
    pub size: u64,
    pub mtime_ns: i128,
    pub reason: String,
    /// Not an image at all (a text file, a video): remembered, but not reported as an error.
    pub ignored: bool,
    /// Skipped for something other than its content: it could not be read, it was over a size
    /// limit of that run, or this machine had no decoder for its format. Every run tries it again.
    #[serde(default)]
    pub retry: bool,
}

impl SkipRecord {
    /// Whether an unchanged file skipped before is read again.
    pub fn worth_retrying(&self) -> bool {
        // Builds before HEIF support recorded HEIC and AVIF pictures with this reason, before
        // `retry` existed.
        self.retry || self.reason.ends_with("images are not supported by this build")
    }
}

/// One change to the catalog; a writer applies a batch of them atomically.
// Nearly every change is an upsert, built once per picture and moved into its batch: boxing the
// record would add an allocation per picture to make the rare removals smaller.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone)]
pub enum Change {
    /// Add a picture (replacing whatever was recorded at its path).
    Upsert(ImageRecord),
    /// Forget the picture at this path (the file is gone).
    Remove(StoredPath),
    /// Record a skipped file (replacing any picture at its path).
    Skip(SkipRecord),
    /// Replace a picture's tags (nothing else about it changes; a picture gone meanwhile is
    /// left gone).
    Tag { id: ImageId, tags: Vec<String> },
}

/// The library's label set for zero-shot tags, with what scoring it needs, so that tagging new
/// pictures or a new threshold needs no text model (see `search::tags`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Tagging {
    /// The model the label embeddings were made with (the library's).
    pub model: String,
    pub labels: Vec<String>,
    /// Per label: its unit text embedding minus the unit embedding of the neutral prompts ("a
    /// photo."), so that a picture's margin for a label is one dot product.
    pub directions: Vec<Vec<f32>>,
    /// A label is a tag when sigmoid(temperature × margin) reaches this.
    pub threshold: f32,
    /// The model's logit scale (CLIP's 100; SigLIP's own).
    pub temperature: f32,
    /// At most this many tags per picture, the most probable.
    pub max_tags: usize,
    /// Where the labels came from, for people (`tags --json`): "built-in", a file's path.
    pub sources: Vec<String>,
}

/// What the data folder was indexed with: mixing models would mix vector spaces.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ModelInfo {
    pub model: String,
    pub dim: usize,
    /// The preprocessing pipeline as canonical JSON text (resize, crop, mean, std, filter);
    /// text, not a JSON value, so comparing it is exact (float parsing may move the last bit).
    pub preprocess: String,
}

pub const SCHEMA_VERSION: u32 = 1;

const META: &str = "meta";
const IMAGES: &str = "images";
const PATHS: &str = "paths";
const HASHES: &str = "hashes";
const SKIPPED: &str = "skipped";
const EMBEDDINGS: &str = "embeddings";

#[derive(Clone)]
pub struct Catalog {
    db: sled::Db,
    meta: sled::Tree,
    images: sled::Tree,
    paths: sled::Tree,
    hashes: sled::Tree,
    skipped: sled::Tree,
    embeddings: sled::Tree,
    /// Added to sled's id generator: a compacted copy starts that generator again at 0, and
    /// must not give out the ids of pictures it holds (see [`Catalog::copy_live_into`]).
    ids_from: u64,
    path: PathBuf,
}

/// The meta key of [`Catalog::ids_from`](Catalog).
const IDS_FROM: &str = "ids_from";

/// Removes the snapshots sled began and never finished in the catalog folder `dir`; whether
/// there were any.
fn remove_unfinished_snapshots(dir: &Path) -> bool {
    let unfinished: Vec<PathBuf> = std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .flatten()
        .map(|entry| entry.path())
        .filter(|path| {
            path.file_name()
                .and_then(|name| name.to_str())
                .is_some_and(|name| name.starts_with("snap.") && name.ends_with(".generating"))
        })
        .collect();
    for path in &unfinished {
        tracing::warn!("{}: a snapshot sled did not finish writing (it was stopped): removed", path.display());
        let _ = std::fs::remove_file(path);
    }
    !unfinished.is_empty()
}

fn corrupt(what: &str, e: impl std::fmt::Display) -> Error {
    Error::Corrupt { what: what.to_string(), reason: e.to_string() }
}

impl Catalog {
    pub fn open(dir: &Path) -> Result<Self> {
        // Opening may write (a new log segment, a snapshot): see `room`.
        super::room::check(dir, 0)?;
        let db = match sled::Config::new().path(dir).open() {
            // sled 0.34 reads a snapshot it was killed while writing (`snap.*.generating`, never
            // renamed into place) as the newest one, and then finds it corrupt. Such a file is
            // always a leftover (sled took the folder's lock before reading): removed, the
            // catalog opens from its log and last whole snapshot.
            Err(sled::Error::Corruption { .. }) if remove_unfinished_snapshots(dir) => {
                sled::Config::new().path(dir).open()
            }
            opened => opened,
        };
        let db = db.map_err(|e| match e {
            sled::Error::Io(io) if io.to_string().contains("could not acquire lock") => {
                Error::DataDirLocked { path: dir.parent().unwrap_or(dir).to_owned() }
            }
            sled::Error::Io(io) if io.kind() == std::io::ErrorKind::PermissionDenied => {
                Error::NoWriteAccess { path: dir.to_owned() }
            }
            other => Error::Store { path: dir.to_owned(), reason: other.to_string() },
        })?;
        let tree =
            |name: &str| db.open_tree(name).map_err(|e| Error::Store { path: dir.to_owned(), reason: e.to_string() });
        let meta = tree(META)?;
        let ids_from =
            match meta.get(IDS_FROM).map_err(|e| Error::Store { path: dir.to_owned(), reason: e.to_string() })? {
                Some(bytes) => serde_json::from_slice(&bytes).map_err(|e| corrupt(IDS_FROM, e))?,
                None => 0,
            };
        Ok(Self {
            meta,
            ids_from,
            images: tree(IMAGES)?,
            paths: tree(PATHS)?,
            hashes: tree(HASHES)?,
            skipped: tree(SKIPPED)?,
            embeddings: tree(EMBEDDINGS)?,
            db,
            path: dir.to_owned(),
        })
    }

    fn store_err(&self, e: impl std::fmt::Display) -> Error {
        Error::Store { path: self.path.clone(), reason: e.to_string() }
    }

    fn meta_json<T: serde::de::DeserializeOwned>(&self, key: &str) -> Result<Option<T>> {
        match self.meta.get(key).map_err(|e| self.store_err(e))? {
            Some(bytes) => Ok(Some(serde_json::from_slice(&bytes).map_err(|e| corrupt(key, e))?)),
            None => Ok(None),
        }
    }

    /// Durable on return: a `kill -9` right after must not forget which model a folder uses.
    fn set_meta_json<T: Serialize>(&self, key: &str, value: &T) -> Result<()> {
        let bytes = serde_json::to_vec(value).expect("meta values serialise");
        super::room::check(&self.path, 0)?;
        self.meta.insert(key, bytes).map_err(|e| self.store_err(e))?;
        self.flush()
    }

    /// The schema version of an existing catalog, or `None` for a brand-new one.
    pub fn schema_version(&self) -> Result<Option<u32>> {
        self.meta_json("schema_version")
    }

    pub fn set_schema_version(&self, version: u32) -> Result<()> {
        self.set_meta_json("schema_version", &version)
    }

    pub fn model_info(&self) -> Result<Option<ModelInfo>> {
        self.meta_json("model")
    }

    pub fn set_model_info(&self, info: &ModelInfo) -> Result<()> {
        self.set_meta_json("model", info)
    }

    /// Every folder `index` was pointed at, with the options of its latest run.
    pub fn indexed_roots(&self) -> Result<Vec<IndexedRoot>> {
        Ok(self.meta_json("roots")?.unwrap_or_default())
    }

    /// Adds these roots, or updates the options of those already recorded.
    pub fn record_roots(&self, roots: &[IndexedRoot]) -> Result<()> {
        let mut all = self.indexed_roots()?;
        // A root given a name replaces its unnamed entry (its pictures were re-keyed).
        all.retain(|known| !roots.iter().any(|r| known.key() == r.key() || known.key() == r.path));
        all.extend_from_slice(roots);
        self.set_meta_json("roots", &all)
    }

    pub fn forget_roots(&self, keys: &[PathBuf]) -> Result<()> {
        let mut all = self.indexed_roots()?;
        all.retain(|known| !keys.contains(&known.key()));
        self.set_meta_json("roots", &all)
    }

    pub fn tagging(&self) -> Result<Option<Tagging>> {
        self.meta_json("tagging")
    }

    pub fn set_tagging(&self, tagging: Option<&Tagging>) -> Result<()> {
        match tagging {
            Some(tagging) => self.set_meta_json("tagging", tagging),
            None => {
                super::room::check(&self.path, 0)?;
                self.meta.remove("tagging").map_err(|e| self.store_err(e))?;
                self.flush()
            }
        }
    }

    /// How many pictures carry each tag.
    pub fn tag_counts(&self) -> Result<std::collections::HashMap<String, u64>> {
        self.label_counts(|labels| labels.tags)
    }

    /// How many pictures carry each keyword.
    pub fn keyword_counts(&self) -> Result<std::collections::HashMap<String, u64>> {
        self.label_counts(|labels| labels.facts.keywords)
    }

    /// How many pictures carry each of the labels `labels_of` gives a record (none twice).
    fn label_counts(
        &self,
        labels_of: impl Fn(RecordLabels) -> Vec<String>,
    ) -> Result<std::collections::HashMap<String, u64>> {
        let mut counts = std::collections::HashMap::new();
        for bytes in self.images.iter().values() {
            let labels: RecordLabels = serde_json::from_slice(&bytes.map_err(|e| self.store_err(e))?)
                .map_err(|e| corrupt("image record", e))?;
            for label in labels_of(labels) {
                *counts.entry(label).or_insert(0) += 1;
            }
        }
        Ok(counts)
    }

    pub fn last_run(&self) -> Result<Option<serde_json::Value>> {
        self.meta_json("last_run")
    }

    pub fn set_last_run(&self, summary: &serde_json::Value) -> Result<()> {
        self.set_meta_json("last_run", summary)
    }

    /// Bumped by every applied batch: the vector and text indexes record the generation they
    /// reflect, so drift after a crash is detected on open.
    pub fn generation(&self) -> Result<u64> {
        Ok(self.meta_json("generation")?.unwrap_or(0))
    }

    pub fn new_id(&self) -> Result<ImageId> {
        Ok(self.ids_from + self.db.generate_id().map_err(|e| self.store_err(e))?)
    }

    /// How many entries (keys) it holds, and their bytes with their values': what a copy of
    /// only what is live holds (see [`Catalog::copy_live_into`]).
    pub fn live_size(&self) -> Result<(u64, u64)> {
        let (mut entries, mut bytes) = (0, 0);
        for name in self.db.tree_names() {
            for entry in self.db.open_tree(&name).map_err(|e| self.store_err(e))?.iter() {
                let (key, value) = entry.map_err(|e| self.store_err(e))?;
                entries += 1;
                bytes += (key.len() + value.len()) as u64;
            }
        }
        Ok((entries, bytes))
    }

    /// Writes a copy holding only what is live to the new folder `dest` (sled never gives back the
    /// space of removed or rewritten records; a copy does), flushed. `copied` counts the entries.
    pub fn copy_live_into(&self, dest: &Path, copied: &dyn Fn(u64)) -> Result<()> {
        const BATCH: usize = 1000;
        let failed = |e: sled::Error| Error::Store { path: dest.to_owned(), reason: e.to_string() };
        let copy = sled::Config::new().path(dest).open().map_err(failed)?;
        for name in self.db.tree_names() {
            let (from, to) =
                (self.db.open_tree(&name).map_err(|e| self.store_err(e))?, copy.open_tree(&name).map_err(failed)?);
            let mut batch = sled::Batch::default();
            let mut in_batch = 0;
            for entry in from.iter() {
                let (key, value) = entry.map_err(|e| self.store_err(e))?;
                batch.insert(key, value);
                in_batch += 1;
                if in_batch == BATCH {
                    super::room::check(dest, 0)?;
                    to.apply_batch(std::mem::take(&mut batch)).map_err(failed)?;
                    copied(in_batch as u64);
                    in_batch = 0;
                }
            }
            to.apply_batch(batch).map_err(failed)?;
            copied(in_batch as u64);
        }
        // The copy's generator starts again at 0: its ids follow every id this one gave out.
        let next = self.new_id()? + 1;
        copy.open_tree(META)
            .map_err(failed)?
            .insert(IDS_FROM, serde_json::to_vec(&next).expect("a number"))
            .map_err(failed)?;
        copy.flush().map_err(failed)?;
        Ok(())
    }

    /// A record with its embedding.
    pub fn image(&self, id: ImageId) -> Result<Option<ImageRecord>> {
        self.image_meta(id)?.map(|record| self.with_embedding(record)).transpose()
    }

    /// A record without its embedding: what hits and listings show (one read less per hit).
    pub fn image_meta(&self, id: ImageId) -> Result<Option<ImageRecord>> {
        match self.images.get(id.to_be_bytes()).map_err(|e| self.store_err(e))? {
            Some(bytes) => Ok(Some(serde_json::from_slice(&bytes).map_err(|e| corrupt("image record", e))?)),
            None => Ok(None),
        }
    }

    /// Only the embedding of a picture (no record to parse): what exact scoring reads.
    pub fn embedding(&self, id: ImageId) -> Result<Option<Vec<f32>>> {
        let bytes = self.embeddings.get(id.to_be_bytes()).map_err(|e| self.store_err(e))?;
        Ok(bytes.map(|b| b.chunks_exact(4).map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]])).collect()))
    }

    fn with_embedding(&self, mut record: ImageRecord) -> Result<ImageRecord> {
        record.embedding = self.embedding(record.id)?.ok_or_else(|| {
            corrupt("catalog", format!("image {} has no embedding; run `imgsearch repair`", record.id))
        })?;
        Ok(record)
    }

    /// The record (without its embedding) of the picture at `path`.
    pub fn image_at(&self, path: &[u8]) -> Result<Option<ImageRecord>> {
        match self.paths.get(path).map_err(|e| self.store_err(e))? {
            Some(id) => self.image_meta(id_from(&id)?),
            None => Ok(None),
        }
    }

    pub fn skipped_at(&self, path: &[u8]) -> Result<Option<SkipRecord>> {
        match self.skipped.get(path).map_err(|e| self.store_err(e))? {
            Some(bytes) => Ok(Some(serde_json::from_slice(&bytes).map_err(|e| corrupt("skip record", e))?)),
            None => Ok(None),
        }
    }

    /// Every indexed picture with exactly this content (blake3 hex). An empty hash is unknown
    /// content (a picture imported without its file) and matches nothing.
    pub fn images_with_hash(&self, hash: &str) -> Result<Vec<ImageId>> {
        if hash.is_empty() {
            return Ok(Vec::new());
        }
        self.hashes
            .scan_prefix(hash.as_bytes())
            .map(|entry| {
                let (key, _) = entry.map_err(|e| self.store_err(e))?;
                id_from(&key[key.len() - 8..])
            })
            .collect()
    }

    /// Any indexed picture with exactly this content.
    pub fn image_with_hash(&self, hash: &str) -> Result<Option<ImageRecord>> {
        for id in self.images_with_hash(hash)? {
            if let Some(record) = self.image(id)? {
                return Ok(Some(record));
            }
        }
        Ok(None)
    }

    pub fn images(&self) -> impl Iterator<Item = Result<ImageRecord>> + '_ {
        self.images.iter().values().map(|v| {
            let bytes = v.map_err(|e| self.store_err(e))?;
            self.with_embedding(serde_json::from_slice(&bytes).map_err(|e| corrupt("image record", e))?)
        })
    }

    /// All indexed paths with their ids, without decoding the records.
    pub fn paths(&self) -> impl Iterator<Item = Result<(Vec<u8>, ImageId)>> + '_ {
        self.paths.iter().map(|kv| {
            let (k, v) = kv.map_err(|e| self.store_err(e))?;
            Ok((k.to_vec(), id_from(&v)?))
        })
    }

    pub fn skipped(&self) -> impl Iterator<Item = Result<SkipRecord>> + '_ {
        self.skipped.iter().values().map(|v| {
            let bytes = v.map_err(|e| self.store_err(e))?;
            serde_json::from_slice(&bytes).map_err(|e| corrupt("skip record", e))
        })
    }

    pub fn image_count(&self) -> usize {
        self.images.len()
    }

    /// Applies `changes` in one transaction and returns the ids removed (replaced or deleted)
    /// and the new generation. Durable on return (flushed).
    pub fn apply(&self, changes: &[Change]) -> Result<(Vec<ImageId>, u64)> {
        // A batch writes a few megabytes at most: well within the reserve.
        super::room::check(&self.path, 0)?;
        let trees = (&self.images, &self.paths, &self.hashes, &self.skipped, &self.meta, &self.embeddings);
        let result = trees.transaction(|(images, paths, hashes, skipped, meta, embeddings)| {
            let mut removed = Vec::new();
            // Drops whatever picture is recorded at `path` from every tree.
            let mut forget = |path: &[u8]| -> sled::transaction::ConflictableTransactionResult<(), Error> {
                if let Some(old) = paths.remove(path)? {
                    if let Some(bytes) = images.remove(&old)? {
                        let record: ImageRecord = serde_json::from_slice(&bytes)
                            .map_err(|e| ConflictableTransactionError::Abort(corrupt("image record", e)))?;
                        hashes.remove(hash_key(&record.hash, record.id))?;
                    }
                    embeddings.remove(&old)?;
                    removed.push(id_from(&old).map_err(ConflictableTransactionError::Abort)?);
                }
                Ok(())
            };
            for change in changes {
                match change {
                    Change::Upsert(record) => {
                        let path = stored_bytes(&record.path);
                        forget(&path)?;
                        skipped.remove(path.as_slice())?;
                        let json = serde_json::to_vec(record).expect("records serialise");
                        images.insert(&record.id.to_be_bytes(), json)?;
                        let vector: Vec<u8> = record.embedding.iter().flat_map(|v| v.to_le_bytes()).collect();
                        embeddings.insert(&record.id.to_be_bytes(), vector)?;
                        paths.insert(path, &record.id.to_be_bytes())?;
                        hashes.insert(hash_key(&record.hash, record.id), &[])?;
                    }
                    Change::Remove(path) => {
                        let path = stored_bytes(path);
                        forget(&path)?;
                        skipped.remove(path)?;
                    }
                    Change::Skip(record) => {
                        let path = stored_bytes(&record.path);
                        forget(&path)?;
                        skipped.insert(path, serde_json::to_vec(record).expect("records serialise"))?;
                    }
                    Change::Tag { id, tags } => {
                        if let Some(bytes) = images.get(id.to_be_bytes())? {
                            let mut record: ImageRecord = serde_json::from_slice(&bytes)
                                .map_err(|e| ConflictableTransactionError::Abort(corrupt("image record", e)))?;
                            record.tags.clone_from(tags);
                            images
                                .insert(&id.to_be_bytes(), serde_json::to_vec(&record).expect("records serialise"))?;
                        }
                    }
                }
            }
            let generation: u64 = match meta.get("generation")? {
                Some(bytes) => serde_json::from_slice(&bytes).unwrap_or(0),
                None => 0,
            } + 1;
            meta.insert("generation", serde_json::to_vec(&generation).expect("u64 serialises"))?;
            Ok((removed, generation))
        });
        let out = result.map_err(|e| match e {
            TransactionError::Abort(e) => e,
            TransactionError::Storage(e) => self.store_err(e),
        })?;
        self.flush()?;
        Ok(out)
    }

    pub fn flush(&self) -> Result<()> {
        self.db.flush().map_err(|e| self.store_err(e))?;
        Ok(())
    }
}

pub fn stored_bytes(path: &StoredPath) -> Vec<u8> {
    match path {
        StoredPath::Utf8(s) => s.as_bytes().to_vec(),
        StoredPath::Raw(bytes) => bytes.clone(),
    }
}

fn hash_key(hash: &str, id: ImageId) -> Vec<u8> {
    let mut key = hash.as_bytes().to_vec();
    key.extend_from_slice(&id.to_be_bytes());
    key
}

fn id_from(bytes: &[u8]) -> Result<ImageId> {
    let array: [u8; 8] =
        bytes.try_into().map_err(|_| corrupt("image id", format!("{} bytes instead of 8", bytes.len())))?;
    Ok(ImageId::from_be_bytes(array))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A snapshot sled was killed while writing (as `optimize` or an open can be) leaves the
    /// catalog readable, with everything it held.
    #[test]
    fn a_snapshot_left_unfinished_by_a_kill_is_not_read() {
        let dir = tempfile::tempdir().unwrap();
        let catalog = Catalog::open(dir.path()).unwrap();
        catalog.set_last_run(&serde_json::json!({"indexed": 3})).unwrap();
        drop(catalog);
        let unfinished = dir.path().join("snap.FFFFFFFFFFFFFFF0.generating");
        std::fs::write(&unfinished, b"").unwrap();
        let catalog = Catalog::open(dir.path()).unwrap();
        assert_eq!(catalog.last_run().unwrap().unwrap()["indexed"], 3);
        assert!(!unfinished.exists());
    }
}
