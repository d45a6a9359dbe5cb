//! The vector index: approximate nearest neighbours over the embeddings (`hnsw_rs`).
//!
//! hnsw_rs cannot delete, so removed pictures become tombstones that searches filter out; the
//! graph is rebuilt from the catalog when tombstones pass a quarter of it (or on `optimize`).
//! It is persisted with `file_dump` into a fresh folder per save, and `state.json` (written
//! atomically, last) names the folder to load, so a crash mid-save never leaves a torn graph.

use std::collections::HashSet;
use std::path::{Path, PathBuf};

use hnsw_rs::prelude::{AnnT, Distance, Hnsw, HnswIo};
use serde::{Deserialize, Serialize};

use super::catalog::ImageId;
use crate::error::{Error, Result};

/// Cosine distance for L2-normalised vectors, `1 - dot`, clamped at 0. hnsw_rs's own `DistDot`
/// asserts `dot <= 1`, which rounding breaks for identical photos (a panic mid-index).
#[derive(Default, Clone, Copy)]
pub struct ClampedDot;

impl Distance<f32> for ClampedDot {
    fn eval(&self, a: &[f32], b: &[f32]) -> f32 {
        // Eight independent accumulators so the loop vectorises.
        let (ca, cb) = (a.chunks_exact(8), b.chunks_exact(8));
        let tail: f32 = ca.remainder().iter().zip(cb.remainder()).map(|(x, y)| x * y).sum();
        let mut acc = [0f32; 8];
        for (x, y) in ca.zip(cb) {
            for i in 0..8 {
                acc[i] += x[i] * y[i];
            }
        }
        let dot = acc.iter().sum::<f32>() + tail;
        // f32::max also maps a NaN to 0, which hnsw_rs would otherwise panic on.
        (1.0 - dot).max(0.0)
    }
}

/// A nearest-neighbour hit: the picture and its cosine similarity to the query.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct VectorHit {
    pub id: ImageId,
    pub score: f32,
}

/// What the query engine needs of a vector index; another engine can replace hnsw_rs behind it.
pub trait VectorIndex {
    fn insert(&mut self, id: ImageId, embedding: &[f32]);
    fn remove(&mut self, id: ImageId);
    /// The `k` nearest live vectors for which `allow` holds.
    fn search(&self, query: &[f32], k: usize, allow: &dyn Fn(ImageId) -> bool) -> Vec<VectorHit>;
    fn live_count(&self) -> usize;
    fn tombstone_count(&self) -> usize;
}

const MAX_CONNECTIONS: usize = 16;
const MAX_LAYERS: usize = 16;
const EF_CONSTRUCTION: usize = 200;
/// Search breadth: at least this, or k, whichever is larger.
const EF_SEARCH: usize = 64;
/// Rebuild when tombstones exceed this fraction of the graph.
const REBUILD_FRACTION: f64 = 0.25;

#[derive(Serialize, Deserialize, Default)]
struct SavedState {
    /// Catalog generation this graph reflects.
    generation: u64,
    /// Folder (under vectors/) and file basename of the dump; None when the graph was empty.
    dump: Option<(String, String)>,
    /// Every id in the graph (live and tombstoned).
    ids: Vec<ImageId>,
    tombstones: Vec<ImageId>,
}

pub struct HnswIndex {
    graph: Hnsw<'static, f32, ClampedDot>,
    in_graph: HashSet<ImageId>,
    tombstones: HashSet<ImageId>,
    dir: PathBuf,
    /// Catalog generation of the last save.
    saved_generation: u64,
}

fn new_graph(expected: usize) -> Hnsw<'static, f32, ClampedDot> {
    Hnsw::new(MAX_CONNECTIONS, expected.max(10_000), MAX_LAYERS, EF_CONSTRUCTION, ClampedDot)
}

impl HnswIndex {
    /// Loads the last saved graph from `dir` (or starts empty).
    pub fn open(dir: &Path) -> Result<Self> {
        std::fs::create_dir_all(dir).map_err(|source| Error::Io { path: dir.to_owned(), source })?;
        let state_path = dir.join("state.json");
        let state: SavedState = match std::fs::read(&state_path) {
            Ok(bytes) => serde_json::from_slice(&bytes)
                .map_err(|e| Error::Corrupt { what: state_path.display().to_string(), reason: e.to_string() })?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => SavedState::default(),
            Err(source) => return Err(Error::Io { path: state_path, source }),
        };
        let graph = match &state.dump {
            Some((folder, basename)) => {
                // The loaded graph borrows its HnswIo for life; leak that small struct once per load.
                let io: &'static mut HnswIo = Box::leak(Box::new(HnswIo::new(&dir.join(folder), basename)));
                io.load_hnsw::<f32, ClampedDot>().map_err(|e| Error::Corrupt {
                    what: format!("vector index {}", dir.join(folder).display()),
                    reason: format!("{e}; run `imgsearch repair` to rebuild it from the catalog"),
                })?
            }
            None => new_graph(state.ids.len()),
        };
        Ok(Self {
            graph,
            in_graph: state.ids.into_iter().collect(),
            tombstones: state.tombstones.into_iter().collect(),
            dir: dir.to_owned(),
            saved_generation: state.generation,
        })
    }

    pub fn saved_generation(&self) -> u64 {
        self.saved_generation
    }

    /// Makes the index hold exactly `live` (id → embedding from the catalog): inserts what is
    /// missing, tombstones what is no longer there. Returns how many ids changed.
    pub fn reconcile(&mut self, live: &[(ImageId, Vec<f32>)]) -> usize {
        let live_ids: HashSet<ImageId> = live.iter().map(|(id, _)| *id).collect();
        let stale: Vec<ImageId> = self
            .in_graph
            .iter()
            .filter(|id| !live_ids.contains(id) && !self.tombstones.contains(id))
            .copied()
            .collect();
        let changed = stale.len();
        for id in stale {
            self.remove(id);
        }
        let missing: Vec<(ImageId, &[f32])> =
            live.iter().filter(|(id, _)| !self.in_graph.contains(id)).map(|(id, e)| (*id, e.as_slice())).collect();
        self.insert_many(&missing);
        changed + missing.len()
    }

    /// Inserts many vectors at once, on all cores (hnsw_rs's parallel insertion).
    pub fn insert_many(&mut self, items: &[(ImageId, &[f32])]) {
        let fresh: Vec<(&[f32], usize)> =
            items.iter().filter(|(id, _)| !self.in_graph.contains(id)).map(|(id, e)| (*e, *id as usize)).collect();
        self.graph.parallel_insert_slice(&fresh);
        for (id, _) in items {
            self.in_graph.insert(*id);
            self.tombstones.remove(id);
        }
    }

    pub fn needs_rebuild(&self) -> bool {
        self.tombstones.len() > 100 && self.tombstones.len() as f64 > REBUILD_FRACTION * self.in_graph.len() as f64
    }

    /// A fresh graph of only the live vectors.
    pub fn rebuild(&mut self, live: &[(ImageId, Vec<f32>)]) {
        self.graph = new_graph(live.len());
        let points: Vec<(&[f32], usize)> = live.iter().map(|(id, e)| (e.as_slice(), *id as usize)).collect();
        self.graph.parallel_insert_slice(&points);
        self.in_graph = live.iter().map(|(id, _)| *id).collect();
        self.tombstones.clear();
    }

    /// Writes the graph to a new folder, then points `state.json` at it, then deletes old folders.
    pub fn save(&mut self, generation: u64) -> Result<()> {
        let io = |path: &Path, source| Error::Io { path: path.to_owned(), source };
        let folder = format!("g{generation}-{}", std::process::id());
        let dump = if self.graph.get_nb_point() > 0 {
            let target = self.dir.join(&folder);
            std::fs::create_dir_all(&target).map_err(|e| io(&target, e))?;
            let basename = self
                .graph
                .file_dump(&target, "graph")
                .map_err(|e| Error::Store { path: target.clone(), reason: e.to_string() })?;
            Some((folder.clone(), basename))
        } else {
            None
        };
        let state = SavedState {
            generation,
            dump,
            ids: self.in_graph.iter().copied().collect(),
            tombstones: self.tombstones.iter().copied().collect(),
        };
        let tmp = self.dir.join("state.json.tmp");
        let bytes = serde_json::to_vec(&state).expect("state serialises");
        std::fs::write(&tmp, bytes).map_err(|e| io(&tmp, e))?;
        std::fs::File::open(&tmp).and_then(|f| f.sync_all()).map_err(|e| io(&tmp, e))?;
        std::fs::rename(&tmp, self.dir.join("state.json")).map_err(|e| io(&tmp, e))?;
        self.saved_generation = generation;
        // Old dumps are garbage now; one still mmapped elsewhere stays valid until unmapped.
        if let Ok(entries) = std::fs::read_dir(&self.dir) {
            for entry in entries.flatten() {
                let name = entry.file_name();
                if entry.path().is_dir() && name.to_string_lossy() != folder {
                    let _ = std::fs::remove_dir_all(entry.path());
                }
            }
        }
        Ok(())
    }
}

impl VectorIndex for HnswIndex {
    fn insert(&mut self, id: ImageId, embedding: &[f32]) {
        if self.in_graph.insert(id) {
            self.graph.insert((embedding, id as usize));
        }
        self.tombstones.remove(&id);
    }

    fn remove(&mut self, id: ImageId) {
        if self.in_graph.contains(&id) {
            self.tombstones.insert(id);
        }
    }

    fn search(&self, query: &[f32], k: usize, allow: &dyn Fn(ImageId) -> bool) -> Vec<VectorHit> {
        if k == 0 || self.graph.get_nb_point() == 0 {
            return Vec::new();
        }
        let filter = |id: &usize| !self.tombstones.contains(&(*id as ImageId)) && allow(*id as ImageId);
        let ef = EF_SEARCH.max(k);
        self.graph
            .search_filter(query, k, ef, Some(&filter))
            .into_iter()
            .map(|n| VectorHit { id: n.d_id as ImageId, score: 1.0 - n.distance })
            .collect()
    }

    fn live_count(&self) -> usize {
        self.in_graph.len() - self.tombstones.len()
    }

    fn tombstone_count(&self) -> usize {
        self.tombstones.len()
    }
}
