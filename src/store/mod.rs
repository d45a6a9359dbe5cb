//! Storage. [`Library`] is the face the rest of the program sees; [`DataDir`] is the embedded
//! backend behind it: one data folder holding the catalog (sled, source of truth), vectors (our
//! HNSW) and text (tantivy), kept in agreement. Writes go catalog first; the two indexes record
//! which catalog generation they reflect, and `DataDir::open` repairs any drift a crash left
//! behind.

pub mod catalog;
mod compaction;
pub mod copy;
pub mod exchange;
pub mod forget;
mod hnsw;
mod library;
pub mod migrations;
mod postgres;
pub mod room;
pub mod roots;
pub mod spaces;
mod text;
pub mod vectors;

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde::Serialize;

pub use catalog::{Catalog, Change, ImageId, ImageRecord, IndexedRoot, ModelInfo, SkipRecord, StoredPath, Tagging};
pub use hnsw::{EF_CONSTRUCTION, M as HNSW_M};
pub use library::{path_too_long, words, Filter, Known, Library, Lookup};
pub use postgres::{load_auth, update_auth};
use text::TextIndex;
pub use vectors::{HnswIndex, VectorHit, VectorIndex};

/// Where a library lives.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Location {
    /// The embedded backend: one data folder.
    Folder(PathBuf),
    /// A PostgreSQL database (`postgres://…`), optionally a streaming replica of it to search
    /// in, with a local folder for caches (thumbnails); `schema` holds a model space after the
    /// first (see [`spaces`]).
    Postgres { url: String, read_url: Option<String>, cache: PathBuf, schema: Option<String> },
}

impl Location {
    /// `--store URL` (a PostgreSQL database) if given, with `--read-store URL` (its replica);
    /// else the data folder.
    pub fn new(data_dir: PathBuf, store: Option<String>, read_store: Option<String>) -> Result<Self> {
        let is_postgres = |url: &str| url.starts_with("postgres://") || url.starts_with("postgresql://");
        match (store, read_store) {
            (None, None) => Ok(Self::Folder(data_dir)),
            (None, Some(_)) => Err(Error::Database {
                location: "--read-store".to_string(),
                reason: "a replica to read from needs the library it copies: give --store URL too".to_string(),
            }),
            (Some(url), read_url) if is_postgres(&url) && read_url.as_deref().is_none_or(is_postgres) => {
                Ok(Self::Postgres { url, read_url, cache: data_dir, schema: None })
            }
            (Some(url), read_url) => Err(Error::Database {
                location: if is_postgres(&url) { read_url.unwrap_or_default() } else { url },
                reason: "--store takes a PostgreSQL URL, postgres://USER@HOST:PORT/DATABASE (without --store, the library is the data folder)".to_string(),
            }),
        }
    }

    /// Whether a library is there already, found out without making one.
    pub fn holds_a_library(&self) -> Result<bool> {
        match self {
            Location::Folder(dir) => Ok(spaces::holds_a_library(dir)),
            Location::Postgres { url, .. } => postgres::holds_a_library(url),
        }
    }
}

/// Opens (creating if needed) the library at `location`.
pub fn open(location: &Location) -> Result<Box<dyn Library>> {
    Ok(match location {
        Location::Folder(dir) => Box::new(DataDir::open(dir)?),
        Location::Postgres { url, read_url, cache, schema } => {
            Box::new(postgres::Postgres::connect(url, read_url.as_deref(), cache, schema.as_deref())?)
        }
    })
}

use crate::error::{Error, Result};

/// `--data-dir`, else `IMGSEARCH_DATA_DIR`, else the platform data folder.
pub fn default_data_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("IMGSEARCH_DATA_DIR") {
        return PathBuf::from(dir);
    }
    dirs::data_dir().unwrap_or_else(|| PathBuf::from(".")).join("imgsearch")
}

pub struct DataDir {
    root: PathBuf,
    catalog: Catalog,
    vectors: HnswIndex,
    text: TextIndex,
    vectors_saved_at: Instant,
}

/// Below this many filter matches, score them exactly instead of searching the graph: a very
/// selective filter starves HNSW's greedy search (recall would drop).
pub(crate) const EXACT_BELOW: usize = 2000;
/// Below one in this many pictures, filter matches are scanned rather than searched in the graph
/// (whose cost grows as one over the share that passes): benches/README.md, "Selective filters and places".
/// The f16 scores choose twice k (and 32) candidates, within ~1e-3 of exact, rescored exactly.
const SCAN_BELOW_ONE_IN: usize = 12;

/// During a long run the vector graph is saved at least this often, so that a crash costs at
/// most this much of re-linking on the next open (a save appends the new vectors and rewrites
/// only the links: ~0.3 s at a million pictures).
const SAVE_VECTORS_EVERY: Duration = Duration::from_secs(60);

/// What `imgsearch stats` reports.
#[derive(Debug, Serialize)]
pub struct Stats {
    pub data_dir: String,
    pub images: usize,
    pub vectors_live: usize,
    pub vectors_tombstoned: usize,
    pub text_documents: u64,
    pub skipped: usize,
    pub model: Option<ModelInfo>,
    pub size_bytes: u64,
    pub last_run: Option<serde_json::Value>,
}

impl DataDir {
    /// What a data folder holds for its library (beside its users, its mounts and its later
    /// model spaces): removing them empties it.
    pub(crate) const PARTS: [&str; 4] = ["catalog", "vectors", "text", "thumbnails"];

    /// Opens (creating if needed) the data folder, upgrades an old schema, and brings the
    /// vector and text indexes back in line with the catalog if a crash left them behind.
    pub fn open(root: &Path) -> Result<Self> {
        std::fs::create_dir_all(root).map_err(|source| Error::Write { path: root.to_owned(), source })?;
        compaction::settle(root)?;
        let catalog = Catalog::open(&root.join("catalog"))?;
        compaction::remove_leftovers(root)?;
        migrations::migrate(&catalog)?;
        let vectors = HnswIndex::open(&root.join("vectors"))?;
        let text = TextIndex::open(&root.join("text"))?;
        let mut data = Self { root: root.to_owned(), catalog, vectors, text, vectors_saved_at: Instant::now() };
        data.repair_indexes(false)?;
        Ok(data)
    }

    /// Re-derives the indexes from the catalog where they disagree (always, with `force`).
    /// Returns a description of what was repaired, empty if nothing was needed.
    fn repair_indexes(&mut self, force: bool) -> Result<Vec<String>> {
        let generation = self.catalog.generation()?;
        let mut repaired = Vec::new();
        let vectors_stale = force || self.vectors.saved_generation() != generation;
        let text_stale = force || self.text.committed_generation()? != generation;
        if !vectors_stale && !text_stale {
            return Ok(repaired);
        }
        let mut live = Vec::with_capacity(self.catalog.image_count());
        let mut records = Vec::new();
        for record in self.catalog.images() {
            let record = record?;
            live.push((record.id, record.embedding.clone()));
            if text_stale {
                records.push(record);
            }
        }
        if vectors_stale {
            let changed = if force {
                self.vectors.rebuild(&live);
                live.len()
            } else {
                self.vectors.reconcile(&live)
            };
            self.vectors.save(generation)?;
            repaired.push(format!("vector index: {changed} vectors re-synced with the catalog"));
        }
        if text_stale {
            self.text.remove_all()?;
            for record in &records {
                self.text.add(record)?;
            }
            self.text.commit(generation)?;
            repaired.push(format!("text index: rebuilt {} documents from the catalog", records.len()));
        }
        Ok(repaired)
    }

    /// Applies a batch: the catalog (durable) and the graph's inserts at once, then the text
    /// index once the catalog has said which pictures the batch replaced; the vectors are saved
    /// when the last save is [`SAVE_VECTORS_EVERY`] old.
    fn apply_batch(&mut self, changes: &[Change]) -> Result<()> {
        if changes.is_empty() {
            return Ok(());
        }
        let added: Vec<&ImageRecord> = changes
            .iter()
            .filter_map(|change| if let Change::Upsert(record) = change { Some(record) } else { None })
            .collect();
        let (catalog, text, vectors) = (&self.catalog, &mut self.text, &mut self.vectors);
        let (applied_tx, applied_rx) = std::sync::mpsc::channel::<(Vec<ImageId>, u64)>();
        let added_for_text = &added;
        let (applied, text_result) = std::thread::scope(|scope| {
            // The text index's commit mostly waits on the disk: the graph's inserts keep the
            // cores busy meanwhile.
            let text_done = scope.spawn(move || -> Result<()> {
                // No message: the catalog refused the batch, and the text index keeps its state.
                let Ok((removed, generation)) = applied_rx.recv() else { return Ok(()) };
                for id in &removed {
                    text.remove(*id);
                }
                added_for_text.iter().try_for_each(|record| text.add(record))?;
                // Retagged pictures keep their vectors; only their text document is replaced.
                for change in changes {
                    if let Change::Tag { id, .. } = change {
                        if let Some(record) = catalog.image_meta(*id)? {
                            text.remove(record.id);
                            text.add(&record)?;
                        }
                    }
                }
                text.commit(generation)
            });
            // The catalog's transaction and the graph's inserts share the rayon pool: a thread of
            // their own would leave the pool's workers spinning on two cores.
            let items: Vec<(ImageId, &[f32])> = added.iter().map(|r| (r.id, r.embedding.as_slice())).collect();
            let (applied, ()) = rayon::join(
                // The sender moves in: dropped with the closure when the catalog refuses the batch,
                // it tells the text thread, which would otherwise wait for good.
                move || {
                    let applied = catalog.apply(changes)?;
                    // A send fails only if the text thread is gone, which its join reports.
                    let _ = applied_tx.send(applied.clone());
                    Ok::<_, Error>(applied)
                },
                || vectors.insert_many(&items),
            );
            (applied, text_done.join().expect("the text index writer panicked"))
        });
        let removed = match applied {
            Ok((removed, _)) => removed,
            Err(e) => {
                // The catalog refused the batch: the graph must not keep what it took of it.
                for record in &added {
                    if catalog.image_meta(record.id)?.is_none() {
                        vectors.remove(record.id);
                    }
                }
                return Err(e);
            }
        };
        // The graph took the batch before it knew what the batch replaced: a picture re-added
        // under its own id (a moved file) stays live.
        let added_ids: HashSet<ImageId> = added.iter().map(|r| r.id).collect();
        for id in removed.iter().filter(|id| !added_ids.contains(id)) {
            self.vectors.remove(*id);
        }
        // Reported only now: the catalog holds the batch either way, and the graph follows it.
        text_result?;
        if self.vectors_saved_at.elapsed() > SAVE_VECTORS_EVERY {
            self.save_vectors(false)?;
        }
        Ok(())
    }

    /// Persists the vector graph (rebuilding it first if tombstones piled up, or `optimize`).
    fn save_vectors(&mut self, optimize: bool) -> Result<()> {
        let generation = self.catalog.generation()?;
        if optimize || self.vectors.needs_rebuild() {
            let live: Vec<_> = self.catalog.images().map(|r| r.map(|r| (r.id, r.embedding))).collect::<Result<_>>()?;
            self.vectors.rebuild(&live);
        } else if self.vectors.saved_generation() == generation {
            return Ok(());
        }
        self.vectors.save(generation)?;
        self.vectors_saved_at = Instant::now();
        Ok(())
    }

    /// Cosine scores of `ids` from their f32 embeddings in the catalog, best first.
    fn exact_scores(&self, ids: impl Iterator<Item = ImageId>, query: &[f32]) -> Result<Vec<(ImageId, f32)>> {
        let mut scored: Vec<(ImageId, f32)> = Vec::new();
        for id in ids {
            if let Some(embedding) = self.catalog.embedding(id)? {
                scored.push((id, score(&embedding, query)));
            }
        }
        best_first(&mut scored);
        Ok(scored)
    }
}

/// A picture's score for a query: the dot product of their unit vectors (their cosine). Every
/// backend scores with this, so that they agree to the last bit.
fn score(embedding: &[f32], query: &[f32]) -> f32 {
    embedding.iter().zip(query).map(|(a, b)| a * b).sum()
}

/// Best score first; ties (copies of one picture) in id order, as every backend breaks them.
fn best_first(scored: &mut [(ImageId, f32)]) {
    scored.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
}

impl Lookup for Catalog {
    fn image_at(&self, path: &[u8]) -> Result<Option<ImageRecord>> {
        Catalog::image_at(self, path)
    }

    fn skipped_at(&self, path: &[u8]) -> Result<Option<SkipRecord>> {
        Catalog::skipped_at(self, path)
    }

    fn image_with_hash(&self, hash: &str) -> Result<Option<ImageRecord>> {
        Catalog::image_with_hash(self, hash)
    }

    fn paths(&self) -> Box<dyn Iterator<Item = Result<(Vec<u8>, ImageId)>> + '_> {
        Box::new(Catalog::paths(self))
    }

    fn skipped(&self) -> Box<dyn Iterator<Item = Result<SkipRecord>> + '_> {
        Box::new(Catalog::skipped(self))
    }
}

impl Lookup for DataDir {
    fn image_at(&self, path: &[u8]) -> Result<Option<ImageRecord>> {
        self.catalog.image_at(path)
    }

    fn skipped_at(&self, path: &[u8]) -> Result<Option<SkipRecord>> {
        self.catalog.skipped_at(path)
    }

    fn image_with_hash(&self, hash: &str) -> Result<Option<ImageRecord>> {
        self.catalog.image_with_hash(hash)
    }

    fn paths(&self) -> Box<dyn Iterator<Item = Result<(Vec<u8>, ImageId)>> + '_> {
        Box::new(self.catalog.paths())
    }

    fn skipped(&self) -> Box<dyn Iterator<Item = Result<SkipRecord>> + '_> {
        Box::new(self.catalog.skipped())
    }
}

impl Library for DataDir {
    fn location(&self) -> String {
        self.root.display().to_string()
    }

    fn cache_dir(&self) -> PathBuf {
        self.root.clone()
    }

    fn check_reachable(&self) -> Result<()> {
        match std::fs::metadata(&self.root) {
            Ok(meta) if meta.is_dir() => Ok(()),
            Ok(_) => Err(Error::Io { path: self.root.clone(), source: std::io::ErrorKind::NotADirectory.into() }),
            Err(source) => Err(Error::Io { path: self.root.clone(), source }),
        }
    }

    fn model_info(&self) -> Result<Option<ModelInfo>> {
        self.catalog.model_info()
    }

    /// Checks the model against the one the folder was indexed with; records it on first use.
    fn check_model(&self, info: &ModelInfo) -> Result<()> {
        match self.catalog.model_info()? {
            None => self.catalog.set_model_info(info),
            Some(recorded) if recorded == *info => Ok(()),
            Some(recorded) => Err(Error::ModelMismatch {
                library: self.root.display().to_string(),
                recorded: format!("{} (dim {})", recorded.model, recorded.dim),
                requested: format!("{} (dim {})", info.model, info.dim),
            }),
        }
    }

    fn image(&self, id: ImageId) -> Result<Option<ImageRecord>> {
        self.catalog.image(id)
    }

    fn image_meta(&self, id: ImageId) -> Result<Option<ImageRecord>> {
        self.catalog.image_meta(id)
    }

    fn images_with_hash(&self, hash: &str) -> Result<Vec<ImageId>> {
        self.catalog.images_with_hash(hash)
    }

    fn image_count(&self) -> usize {
        self.catalog.image_count()
    }

    fn images(&self) -> Box<dyn Iterator<Item = Result<ImageRecord>> + '_> {
        Box::new(self.catalog.images())
    }

    fn lookup(&self) -> Arc<dyn Lookup> {
        Arc::new(self.catalog.clone())
    }

    fn indexed_roots(&self) -> Result<Vec<IndexedRoot>> {
        self.catalog.indexed_roots()
    }

    fn last_run(&self) -> Result<Option<serde_json::Value>> {
        self.catalog.last_run()
    }

    fn new_id(&self) -> Result<ImageId> {
        self.catalog.new_id()
    }

    fn apply(&mut self, changes: &[Change]) -> Result<()> {
        self.apply_batch(changes)
    }

    fn tagging(&self) -> Result<Option<Tagging>> {
        self.catalog.tagging()
    }

    fn set_tagging(&mut self, tagging: Option<&Tagging>) -> Result<()> {
        self.catalog.set_tagging(tagging)
    }

    fn tag_counts(&self) -> Result<std::collections::HashMap<String, u64>> {
        self.catalog.tag_counts()
    }

    fn keyword_counts(&self) -> Result<std::collections::HashMap<String, u64>> {
        self.catalog.keyword_counts()
    }

    fn record_run(&mut self, roots: &[IndexedRoot], summary: &serde_json::Value) -> Result<()> {
        self.catalog.record_roots(roots)?;
        self.catalog.set_last_run(summary)
    }

    fn forget_roots(&mut self, keys: &[PathBuf]) -> Result<()> {
        self.catalog.forget_roots(keys)
    }

    fn save(&mut self) -> Result<()> {
        self.save_vectors(false)
    }

    fn close(mut self: Box<Self>) -> Result<()> {
        self.save_vectors(false)?;
        let catalog = self.root.join("catalog");
        drop(self);
        // sled writes the snapshot that spares an open the replay of its whole log only while
        // opening: opened once more here, the next process opens a million pictures in 0.6 s
        // instead of 3.8 s. sled's background flusher can hold the file lock a moment after the
        // drop (seen once in a test run: `index` failed at its very end); as this only speeds
        // up the next open, a lock still held after a second is left alone.
        for _ in 0..50 {
            match Catalog::open(&catalog) {
                Ok(_) => return Ok(()),
                // Everything is written; with the disk this full, the next open replays the log.
                Err(Error::DiskFull { .. }) => return Ok(()),
                Err(Error::DataDirLocked { .. }) => std::thread::sleep(Duration::from_millis(20)),
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }

    fn nearest(
        &self,
        query: &[f32],
        k: usize,
        filters: &[Filter],
        exclude: Option<ImageId>,
    ) -> Result<Vec<(ImageId, f32)>> {
        let allowed: Option<HashSet<ImageId>> =
            if filters.is_empty() { None } else { Some(self.text.matching(filters)?.into_iter().collect()) };
        let allow = |id: ImageId| allowed.as_ref().is_none_or(|a| a.contains(&id)) && Some(id) != exclude;
        // Either way the scores are exact: the graph's f16 copies only choose the candidates.
        let mut scored = match &allowed {
            Some(ids) if ids.len() < EXACT_BELOW => {
                self.exact_scores(ids.iter().copied().filter(|id| allow(*id)), query)?
            }
            // Too many to read from the catalog, too few for the graph (its search would wander
            // through the pictures the filter rejects): every f16 copy scanned, the best rescored.
            Some(ids) if ids.len() < self.vectors.live_count() / SCAN_BELOW_ONE_IN => {
                let hits =
                    self.vectors.nearest_among(query, &mut ids.iter().copied().filter(|id| allow(*id)), 2 * k + 32);
                self.exact_scores(hits.into_iter().map(|h| h.id), query)?
            }
            _ => {
                let hits = self.vectors.search(query, k, &allow);
                self.exact_scores(hits.into_iter().map(|h| h.id), query)?
            }
        };
        scored.truncate(k);
        Ok(scored)
    }

    fn nearest_to_picture(&self, id: ImageId, embedding: &[f32], k: usize) -> Result<Vec<(ImageId, f32)>> {
        let hits = self.vectors.neighbours_of(id, embedding, k);
        self.exact_scores(hits.into_iter().map(|h| h.id), embedding)
    }

    fn passing(&self, ids: &[ImageId], filters: &[Filter]) -> Result<Vec<ImageId>> {
        if filters.is_empty() {
            return Ok(ids.to_vec());
        }
        let allowed: HashSet<ImageId> = self.text.matching(filters)?.into_iter().collect();
        Ok(ids.iter().copied().filter(|id| allowed.contains(id)).collect())
    }

    fn newest(&self, filters: &[Filter], limit: usize) -> Result<Vec<ImageId>> {
        self.text.newest(filters, limit)
    }

    fn stats(&self, size_bytes: u64) -> Result<Stats> {
        let mut skipped = 0;
        for record in self.catalog.skipped() {
            if !record?.ignored {
                skipped += 1;
            }
        }
        Ok(Stats {
            data_dir: self.root.display().to_string(),
            images: self.catalog.image_count(),
            vectors_live: self.vectors.live_count(),
            vectors_tombstoned: self.vectors.tombstone_count(),
            text_documents: self.text.doc_count(),
            skipped,
            model: self.catalog.model_info()?,
            size_bytes,
            last_run: self.catalog.last_run()?,
        })
    }

    fn size_bytes(&self) -> u64 {
        folder_size(&self.root)
    }

    fn repair(&mut self, force: bool) -> Result<Vec<String>> {
        self.repair_indexes(force)
    }

    fn optimize(&mut self) -> Result<String> {
        let before = self.vectors.tombstone_count();
        self.save_vectors(true)?;
        let vectors =
            format!("vector index rebuilt: {} live vectors, {before} tombstones dropped", self.vectors.live_count());
        let (compacted, catalog) = compaction::compact(&self.root, &self.catalog)?;
        if let Some(compacted) = compacted {
            self.catalog = compacted; // the replaced one closes here
            compaction::remove_leftovers(&self.root)?;
        }
        Ok(format!("{vectors}\n{catalog}"))
    }
}

fn folder_size(dir: &Path) -> u64 {
    walkdir::WalkDir::new(dir)
        .into_iter()
        .flatten()
        .filter_map(|e| e.metadata().ok())
        .filter(|m| m.is_file())
        .map(|m| m.len())
        .sum()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn axis(i: usize) -> Vec<f32> {
        let mut v = vec![0f32; 8];
        v[i] = 1.0;
        v
    }

    /// The graph takes a batch while the catalog reports, at the same time, which pictures it
    /// replaced: a picture upserted again under its own id stays live and found, and one
    /// replaced under a new id is gone from the graph.
    #[test]
    fn a_picture_upserted_again_under_its_own_id_stays_searchable() {
        let tmp = tempfile::tempdir().unwrap();
        let mut data = DataDir::open(tmp.path()).unwrap();
        let (a, b) = (data.new_id().unwrap(), data.new_id().unwrap());
        data.apply(&[
            Change::Upsert(ImageRecord::made_up(a, "/p/a.png", axis(0))),
            Change::Upsert(ImageRecord::made_up(b, "/p/b.png", axis(1))),
        ])
        .unwrap();
        let b_again = data.new_id().unwrap();
        data.apply(&[
            Change::Upsert(ImageRecord::made_up(a, "/p/a.png", axis(0))),
            Change::Upsert(ImageRecord::made_up(b_again, "/p/b.png", axis(2))),
        ])
        .unwrap();
        assert_eq!(data.stats(0).unwrap().vectors_live, 2);
        assert_eq!(data.nearest(&axis(0), 1, &[], None).unwrap()[0].0, a);
        assert_eq!(data.nearest(&axis(2), 1, &[], None).unwrap()[0].0, b_again);
        let found: Vec<ImageId> = data.nearest(&axis(1), 5, &[], None).unwrap().into_iter().map(|(id, _)| id).collect();
        assert!(!found.contains(&b), "the replaced picture is still found: {found:?}");
    }
}
