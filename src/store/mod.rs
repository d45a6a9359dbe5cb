//! The data folder: catalog (sled, source of truth), vectors (our HNSW) and text (tantivy),
//! kept in agreement. Writes go catalog first; the two indexes record which catalog generation
//! they reflect, and `DataDir::open` repairs any drift a crash left behind.

pub mod catalog;
pub mod exchange;
mod hnsw;
pub mod migrations;
pub mod text;
pub mod vectors;

use std::path::{Path, PathBuf};

use serde::Serialize;

pub use catalog::{Catalog, Change, ImageId, ImageRecord, ModelInfo, SkipRecord, StoredPath};
use text::TextIndex;
pub use vectors::{HnswIndex, VectorHit, VectorIndex};

use crate::error::{Error, Result};

/// `--data-dir`, else `IMGSEARCH_DATA_DIR`, else the platform data folder.
pub fn default_data_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("IMGSEARCH_DATA_DIR") {
        return PathBuf::from(dir);
    }
    dirs::data_dir().unwrap_or_else(|| PathBuf::from(".")).join("imgsearch")
}

pub struct DataDir {
    pub root: PathBuf,
    pub catalog: Catalog,
    pub vectors: HnswIndex,
    pub text: TextIndex,
}

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
    /// Opens (creating if needed) the data folder, upgrades an old schema, and brings the
    /// vector and text indexes back in line with the catalog if a crash left them behind.
    pub fn open(root: &Path) -> Result<Self> {
        std::fs::create_dir_all(root).map_err(|source| Error::Io { path: root.to_owned(), source })?;
        let catalog = Catalog::open(&root.join("catalog"))?;
        migrations::migrate(&catalog)?;
        let vectors = HnswIndex::open(&root.join("vectors"))?;
        let text = TextIndex::open(&root.join("text"))?;
        let mut data = Self { root: root.to_owned(), catalog, vectors, text };
        data.repair(false)?;
        Ok(data)
    }

    /// Checks the model against the one the folder was indexed with; records it on first use.
    pub fn check_model(&self, info: &ModelInfo) -> Result<()> {
        match self.catalog.model_info()? {
            None => self.catalog.set_model_info(info),
            Some(recorded) if recorded == *info => Ok(()),
            Some(recorded) => Err(Error::ModelMismatch {
                data_dir: self.root.clone(),
                recorded: format!("{} (dim {})", recorded.model, recorded.dim),
                requested: format!("{} (dim {})", info.model, info.dim),
            }),
        }
    }

    /// Re-derives the indexes from the catalog where they disagree (always, with `force`).
    /// Returns a description of what was repaired, empty if nothing was needed.
    pub fn repair(&mut self, force: bool) -> Result<Vec<String>> {
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

    /// Applies a batch: catalog (durable) first, then the text index, then the vectors.
    pub fn apply(&mut self, changes: &[Change]) -> Result<()> {
        if changes.is_empty() {
            return Ok(());
        }
        let (removed, generation) = self.catalog.apply(changes)?;
        for id in &removed {
            self.text.remove(*id);
            self.vectors.remove(*id);
        }
        let mut added = Vec::new();
        for change in changes {
            if let Change::Upsert(record) = change {
                self.text.add(record)?;
                added.push((record.id, record.embedding.as_slice()));
            }
        }
        self.vectors.insert_many(&added);
        self.text.commit(generation)
    }

    /// Persists the vector graph (rebuilding it first if tombstones piled up, or `optimize`).
    pub fn save_vectors(&mut self, optimize: bool) -> Result<()> {
        let generation = self.catalog.generation()?;
        if optimize || self.vectors.needs_rebuild() {
            let live: Vec<_> = self.catalog.images().map(|r| r.map(|r| (r.id, r.embedding))).collect::<Result<_>>()?;
            self.vectors.rebuild(&live);
        } else if self.vectors.saved_generation() == generation {
            return Ok(());
        }
        self.vectors.save(generation)
    }

    pub fn stats(&self) -> Result<Stats> {
        self.stats_with_size(self.size_bytes())
    }

    /// The stats with a size of the folder measured by the caller ([`DataDir::size_bytes`]),
    /// which may be a recent one: measuring walks every file, a thumbnail per picture included.
    pub fn stats_with_size(&self, size_bytes: u64) -> Result<Stats> {
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

    /// Bytes of every file in the data folder.
    pub fn size_bytes(&self) -> u64 {
        folder_size(&self.root)
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
