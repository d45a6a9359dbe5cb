//! The vector index: our own HNSW graph ([`super::hnsw`]) over f16 copies of the embeddings,
//! with image ids, tombstones and persistence.
//!
//! HNSW cannot delete, so removed pictures become tombstones that searches walk through but never
//! return; the graph is rebuilt from the catalog when tombstones pass a quarter of it (or on
//! `optimize`). On disk: the f16 vectors in `vectors.{n}.f16`, only ever appended to (and
//! memory-mapped on open), and the links, ids and tombstones in `graph.bin`, flat arrays
//! rewritten and renamed into place on each save, so a crash mid-save never leaves a torn graph
//! and opening a million pictures reads ~140 MB instead of 1.2 GB.

use std::collections::HashMap;
use std::io::{ErrorKind, Read, Seek, Write};
use std::path::{Path, PathBuf};

use super::catalog::ImageId;
use super::hnsw::{Graph, Rows};
use crate::error::{Error, Result};

/// A nearest-neighbour hit: the picture and its cosine similarity to the query (f16-accurate:
/// within ~1e-3 of the exact score, which the query engine recomputes for the hits it shows).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct VectorHit {
    pub id: ImageId,
    pub score: f32,
}

/// What the query engine needs of a vector index; another engine can replace ours behind it.
pub trait VectorIndex {
    fn insert(&mut self, id: ImageId, embedding: &[f32]);
    fn remove(&mut self, id: ImageId);
    /// The `k` nearest live vectors for which `allow` holds.
    fn search(&self, query: &[f32], k: usize, allow: &dyn Fn(ImageId) -> bool) -> Vec<VectorHit>;
    /// The `k` nearest live vectors among `ids`, every one of them scored: for a filter that
    /// passes too few pictures for the graph, whose search would wander through the rest.
    fn nearest_among(&self, query: &[f32], ids: &mut dyn Iterator<Item = ImageId>, k: usize) -> Vec<VectorHit>;
    fn live_count(&self) -> usize;
    fn tombstone_count(&self) -> usize;
}

/// Search breadth for a query near the pictures (a picture, "more like this") in a library of up
/// to 100,000: at least this, or k, whichever is larger. (64 kept recall@10 at 0.99 on a graph
/// built with `ef_construction` 200; 72 does on ours.)
const EF_NEAR: usize = 72;
/// Search breadth for a query far from every picture: a text query, whose best matches score
/// ≈ 0.3 where a picture's score 0.8+ (CLIP's modality gap). A graph linked picture to picture
/// leads such a query astray sooner, so it searches wider.
const EF_FAR: usize = 160;
/// Below this cosine similarity at the end of the descent through the upper layers, a query is
/// far from the pictures.
const FAR_BELOW: f32 = 0.5;
/// How the breadth for the same recall grows past 100,000 pictures: as (n / 100,000)^0.45, fitted
/// on CLIP-like data at 100k and 1M (benches/README.md: ef 64 → 192 for picture queries, 128 → 384
/// for text queries, to keep recall@10 at 0.99 and 0.95).
const BREADTH_GROWTH: f64 = 0.45;
/// Search breadth for a stored picture's own neighbours ([`HnswIndex::neighbours_of`]): at 1M
/// CLIP-like pictures, duplicate search found as many near-duplicate groups (95,349) as a full
/// search of each picture (95,300) in a third of the time.
const EF_OWN_NEIGHBOURS: usize = 32;
/// Rebuild when tombstones exceed this fraction of the graph.
const REBUILD_FRACTION: f64 = 0.25;
const GRAPH_FILE: &str = "graph.bin";
const MAGIC: &[u8; 8] = b"IMGSHNSW";
/// 2: vectors in their own file, appended to on each save (1 had them inside `graph.bin`).
const FORMAT_VERSION: u32 = 2;

#[cfg(target_endian = "big")]
compile_error!("the vector index file is written in the host's byte order, assumed little-endian");

pub struct HnswIndex {
    graph: Graph,
    /// Slot → image id.
    ids: Vec<ImageId>,
    /// Image id → slot, for every id in the graph (live or tombstoned).
    slots: HashMap<ImageId, u32>,
    /// Per slot: removed since it was inserted.
    deleted: Vec<bool>,
    tombstones: usize,
    dir: PathBuf,
    /// Catalog generation of the last save.
    saved_generation: u64,
    /// Number of the vectors file (`vectors.{epoch}.f16`) the last save wrote.
    epoch: u64,
    /// How many slots' vectors that file holds; `None` after a rebuild renumbered the slots,
    /// when the next save starts a new file.
    vectors_written: Option<usize>,
}

impl HnswIndex {
    /// Loads the last saved graph from `dir` (or starts empty). A folder from an older version
    /// (hnsw_rs dumps) opens empty at generation 0, so the data folder rebuilds it from the catalog.
    pub fn open(dir: &Path) -> Result<Self> {
        std::fs::create_dir_all(dir).map_err(|source| Error::Write { path: dir.to_owned(), source })?;
        let path = dir.join(GRAPH_FILE);
        let empty = || Self {
            graph: Graph::new(0),
            ids: Vec::new(),
            slots: HashMap::new(),
            deleted: Vec::new(),
            tombstones: 0,
            dir: dir.to_owned(),
            saved_generation: 0,
            epoch: 0,
            vectors_written: None,
        };
        let mut index = empty();
        if !path.exists() {
            return Ok(index);
        }
        match index.load(&path) {
            Ok(()) => Ok(index),
            // Damaged (cut short, overwritten): the graph is derived data, so it starts empty at
            // generation 0 and the data folder rebuilds it from the catalog. Refusing instead left
            // every command, `repair` too, failing on it.
            Err(e) if matches!(e.kind(), ErrorKind::InvalidData | ErrorKind::UnexpectedEof | ErrorKind::NotFound) => {
                tracing::warn!("the vector index {} is damaged ({e}): rebuilding it from the catalog", path.display());
                Ok(empty())
            }
            Err(e) => Err(Error::Corrupt { what: format!("vector index {}", path.display()), reason: e.to_string() }),
        }
    }

    fn load(&mut self, path: &Path) -> std::io::Result<()> {
        let bad = |what: &str| std::io::Error::new(std::io::ErrorKind::InvalidData, what.to_string());
        let mut file = std::io::BufReader::with_capacity(1 << 20, std::fs::File::open(path)?);
        let mut magic = [0u8; 8];
        file.read_exact(&mut magic)?;
        if &magic != MAGIC {
            return Err(bad("not an imgsearch vector index"));
        }
        let mut version = 0u64;
        file.read_exact(bytemuck::bytes_of_mut(&mut version))?;
        if version < u64::from(FORMAT_VERSION) {
            // An older build's file: start empty at generation 0, and the data folder rebuilds
            // the graph from the catalog.
            return Ok(());
        }
        if version != u64::from(FORMAT_VERSION) {
            // Not damaged: a newer build's, which this one must leave as it is.
            let newer =
                format!("format version {version} is newer than this build's ({FORMAT_VERSION}): use that build");
            return Err(std::io::Error::new(std::io::ErrorKind::Unsupported, newer));
        }
        let mut header = [0u64; 6];
        file.read_exact(bytemuck::cast_slice_mut(&mut header))?;
        let [generation, dim, n, entry, upper_count, epoch] = header;
        let (dim, n) = (dim as usize, n as usize);
        self.graph = Graph::new(dim);
        self.ids = vec![0; n];
        file.read_exact(bytemuck::cast_slice_mut(&mut self.ids))?;
        let mut deleted = vec![0u8; n];
        file.read_exact(&mut deleted)?;
        self.deleted = deleted.iter().map(|d| *d != 0).collect();
        self.graph.levels = vec![0; n];
        file.read_exact(&mut self.graph.levels)?;
        self.graph.layer0 = vec![0; n * Graph::LAYER0_STRIDE];
        file.read_exact(bytemuck::cast_slice_mut(&mut self.graph.layer0))?;
        for _ in 0..upper_count {
            let mut head = [0u32; 2];
            file.read_exact(bytemuck::cast_slice_mut(&mut head))?;
            let mut lists = vec![0u32; head[1] as usize];
            file.read_exact(bytemuck::cast_slice_mut(&mut lists))?;
            self.graph.upper.insert(head[0], lists);
        }
        if n > 0 {
            let vectors = std::fs::File::open(self.dir.join(vectors_file(epoch)))?;
            if vectors.metadata()?.len() < (n * dim * 2) as u64 {
                return Err(bad("the vectors file holds fewer vectors than the graph"));
            }
            self.graph.vectors = Rows::map(&vectors, n * dim)?;
        }
        self.graph.entry = (entry != u64::MAX).then_some(entry as u32);
        if self.graph.entry.is_some_and(|e| e as usize >= n) || !self.graph.links_are_sound() {
            return Err(bad("a link points outside the graph"));
        }
        self.slots = self.ids.iter().enumerate().map(|(slot, id)| (*id, slot as u32)).collect();
        self.tombstones = self.deleted.iter().filter(|d| **d).count();
        self.saved_generation = generation;
        self.epoch = epoch;
        self.vectors_written = Some(n);
        Ok(())
    }

    pub fn saved_generation(&self) -> u64 {
        self.saved_generation
    }

    /// Makes the index hold exactly `live` (id → embedding from the catalog): inserts what is
    /// missing, tombstones what is no longer there. Returns how many ids changed.
    pub fn reconcile(&mut self, live: &[(ImageId, Vec<f32>)]) -> usize {
        let live_ids: std::collections::HashSet<ImageId> = live.iter().map(|(id, _)| *id).collect();
        let stale: Vec<ImageId> = self
            .slots
            .iter()
            .filter(|(id, slot)| !live_ids.contains(id) && !self.deleted[**slot as usize])
            .map(|(id, _)| *id)
            .collect();
        let changed = stale.len();
        for id in stale {
            self.remove(id);
        }
        let missing: Vec<(ImageId, &[f32])> =
            live.iter().filter(|(id, _)| !self.slots.contains_key(id)).map(|(id, e)| (*id, e.as_slice())).collect();
        self.insert_many(&missing);
        changed + missing.len()
    }

    /// Inserts many vectors at once, on all cores. An id already in the graph is only revived.
    pub fn insert_many(&mut self, items: &[(ImageId, &[f32])]) {
        let mut fresh: Vec<(ImageId, &[f32])> = Vec::with_capacity(items.len());
        let mut seen = std::collections::HashSet::with_capacity(items.len());
        for &(id, embedding) in items {
            match self.slots.get(&id) {
                Some(&slot) => self.revive(slot),
                None if seen.insert(id) => fresh.push((id, embedding)),
                None => {}
            }
        }
        let Some((_, first)) = fresh.first() else { return };
        if self.graph.is_empty() {
            self.graph = Graph::new(first.len());
        }
        let vectors: Vec<&[f32]> = fresh.iter().map(|(_, e)| *e).collect();
        let slots = self.graph.insert(&vectors);
        for ((id, _), slot) in fresh.iter().zip(slots) {
            self.ids.push(*id);
            self.deleted.push(false);
            self.slots.insert(*id, slot);
        }
    }

    fn revive(&mut self, slot: u32) {
        if std::mem::replace(&mut self.deleted[slot as usize], false) {
            self.tombstones -= 1;
        }
    }

    /// The `k` nearest live vectors for which `allow` holds, searching `ef` wide (`None`: as wide
    /// as the query's distance from the pictures calls for).
    pub fn search_with_ef(
        &self,
        query: &[f32],
        k: usize,
        ef: Option<usize>,
        allow: &dyn Fn(ImageId) -> bool,
    ) -> Vec<VectorHit> {
        if k == 0 || query.len() != self.graph.dim {
            return Vec::new();
        }
        let Some((start, similarity)) = self.graph.descend(query) else { return Vec::new() };
        let ef = ef.unwrap_or_else(|| {
            let base = if similarity < FAR_BELOW { EF_FAR } else { EF_NEAR };
            let growth = (self.live_count() as f64 / 100_000.0).max(1.0).powf(BREADTH_GROWTH);
            (base as f64 * growth).round() as usize
        });
        let live = |slot: u32| !self.deleted[slot as usize] && allow(self.ids[slot as usize]);
        let mut hits = self.graph.search_from(query, start, ef.max(k), &live);
        hits.truncate(k);
        hits.into_iter().map(|(slot, score)| VectorHit { id: self.ids[slot as usize], score }).collect()
    }

    /// The `k` nearest live vectors to the stored picture `id` (`embedding` is its vector), itself
    /// left out, searching layer 0 from the picture's own place in the graph: its close
    /// neighbours (the pairs duplicate search wants) lie a few links away, so neither the descent
    /// nor the breadth a far query needs is spent. Empty if `id` is not in the index.
    pub fn neighbours_of(&self, id: ImageId, embedding: &[f32], k: usize) -> Vec<VectorHit> {
        let Some(&slot) = self.slots.get(&id) else { return Vec::new() };
        if k == 0 || embedding.len() != self.graph.dim {
            return Vec::new();
        }
        let live = |other: u32| other != slot && !self.deleted[other as usize];
        let mut hits = self.graph.search_from(embedding, slot, EF_OWN_NEIGHBOURS.max(k), &live);
        hits.truncate(k);
        hits.into_iter().map(|(slot, score)| VectorHit { id: self.ids[slot as usize], score }).collect()
    }

    pub fn needs_rebuild(&self) -> bool {
        self.tombstones > 100 && self.tombstones as f64 > REBUILD_FRACTION * self.ids.len() as f64
    }

    /// A fresh graph of only the live vectors.
    pub fn rebuild(&mut self, live: &[(ImageId, Vec<f32>)]) {
        self.graph = Graph::new(0);
        self.ids.clear();
        self.slots.clear();
        self.deleted.clear();
        self.tombstones = 0;
        self.vectors_written = None;
        let items: Vec<(ImageId, &[f32])> = live.iter().map(|(id, e)| (*id, e.as_slice())).collect();
        self.insert_many(&items);
    }

    /// Saves without rewriting what is already on disk: the vectors (nine tenths of the bytes)
    /// are appended to their file, then the links, ids and tombstones, which any insert may
    /// change anywhere, are written to a temporary file that is synced and renamed over the last
    /// one. A crash at any point leaves the last save whole: its `graph.bin` counts how many
    /// vectors are its own, and the next save cuts whatever a torn append left past them.
    pub fn save(&mut self, generation: u64) -> Result<()> {
        super::room::check(&self.dir, self.bytes_to_save())?;
        let (epoch, written) = self.append_vectors()?;
        self.epoch = epoch;
        self.vectors_written = Some(written);
        let path = self.dir.join(GRAPH_FILE);
        let tmp = self.dir.join(format!("{GRAPH_FILE}.tmp"));
        let io = |source| Error::Write { path: tmp.clone(), source };
        let file = std::fs::File::create(&tmp).map_err(io)?;
        let mut out = std::io::BufWriter::with_capacity(1 << 20, file);
        let entry = self.graph.entry.map_or(u64::MAX, u64::from);
        let header = [
            u64::from(FORMAT_VERSION),
            generation,
            self.graph.dim as u64,
            self.ids.len() as u64,
            entry,
            self.graph.upper.len() as u64,
            epoch,
        ];
        out.write_all(MAGIC).map_err(io)?;
        out.write_all(bytemuck::cast_slice(&header)).map_err(io)?;
        out.write_all(bytemuck::cast_slice(&self.ids)).map_err(io)?;
        let deleted: Vec<u8> = self.deleted.iter().map(|d| u8::from(*d)).collect();
        out.write_all(&deleted).map_err(io)?;
        out.write_all(&self.graph.levels).map_err(io)?;
        out.write_all(bytemuck::cast_slice(&self.graph.layer0)).map_err(io)?;
        for (slot, lists) in &self.graph.upper {
            out.write_all(bytemuck::cast_slice(&[*slot, lists.len() as u32])).map_err(io)?;
            out.write_all(bytemuck::cast_slice(lists)).map_err(io)?;
        }
        let file = out.into_inner().map_err(|e| io(e.into_error()))?;
        file.sync_all().map_err(io)?;
        std::fs::rename(&tmp, &path).map_err(io)?;
        self.saved_generation = generation;
        // Older vectors files, and what older versions left here (hnsw_rs dumps), are garbage.
        let keep = [std::ffi::OsString::from(GRAPH_FILE), vectors_file(epoch).into()];
        if let Ok(entries) = std::fs::read_dir(&self.dir) {
            for entry in entries.flatten() {
                if !keep.contains(&entry.file_name()) {
                    let _ = if entry.path().is_dir() {
                        std::fs::remove_dir_all(entry.path())
                    } else {
                        std::fs::remove_file(entry.path())
                    };
                }
            }
        }
        Ok(())
    }

    /// Appends the vectors inserted since the last save to its vectors file, or writes them all
    /// to a new one after a rebuild; synced. Returns the file's number and how many it holds.
    /// What [`Self::save`] writes: the vectors not yet in their file, and the graph file (written
    /// beside the last one before it replaces it).
    fn bytes_to_save(&self) -> u64 {
        let vectors = self.ids.len().saturating_sub(self.vectors_written.unwrap_or(0)) * self.graph.dim * 2;
        let links: usize = self.graph.upper.values().map(|lists| 8 + 4 * lists.len()).sum();
        let graph = 8 * self.ids.len()
            + self.deleted.len()
            + self.graph.levels.len()
            + std::mem::size_of_val(&self.graph.layer0[..])
            + links;
        (vectors + graph) as u64
    }

    fn append_vectors(&self) -> Result<(u64, usize)> {
        let (epoch, from) = match self.vectors_written {
            Some(written) => (self.epoch, written),
            None => (self.epoch + 1, 0),
        };
        let path = self.dir.join(vectors_file(epoch));
        let io = |source| Error::Write { path: path.clone(), source };
        let mut file = std::fs::OpenOptions::new().write(true).create(true).truncate(false).open(&path).map_err(io)?;
        let start = (from * self.graph.dim * 2) as u64;
        file.set_len(start).map_err(io)?;
        file.seek(std::io::SeekFrom::Start(start)).map_err(io)?;
        let mut out = std::io::BufWriter::with_capacity(1 << 20, file);
        for piece in self.graph.vectors.starting_at(from * self.graph.dim) {
            out.write_all(bytemuck::cast_slice(piece)).map_err(io)?;
        }
        out.into_inner().map_err(|e| io(e.into_error()))?.sync_all().map_err(io)?;
        Ok((epoch, self.ids.len()))
    }
}

fn vectors_file(epoch: u64) -> String {
    format!("vectors.{epoch}.f16")
}

impl VectorIndex for HnswIndex {
    fn insert(&mut self, id: ImageId, embedding: &[f32]) {
        self.insert_many(&[(id, embedding)]);
    }

    fn remove(&mut self, id: ImageId) {
        if let Some(&slot) = self.slots.get(&id) {
            if !std::mem::replace(&mut self.deleted[slot as usize], true) {
                self.tombstones += 1;
            }
        }
    }

    fn search(&self, query: &[f32], k: usize, allow: &dyn Fn(ImageId) -> bool) -> Vec<VectorHit> {
        self.search_with_ef(query, k, None, allow)
    }

    fn nearest_among(&self, query: &[f32], ids: &mut dyn Iterator<Item = ImageId>, k: usize) -> Vec<VectorHit> {
        if query.len() != self.graph.dim {
            return Vec::new();
        }
        let slots = ids.filter_map(|id| self.slots.get(&id).copied()).filter(|slot| !self.deleted[*slot as usize]);
        let hits = self.graph.nearest_among(query, slots, k);
        hits.into_iter().map(|(slot, score)| VectorHit { id: self.ids[slot as usize], score }).collect()
    }

    fn live_count(&self) -> usize {
        self.ids.len() - self.tombstones
    }

    fn tombstone_count(&self) -> usize {
        self.tombstones
    }
}
