//! Duplicate groups: exact copies (same content hash), near duplicates (the same picture
//! re-encoded, resized or lightly cropped: embeddings above a similarity threshold), and bursts
//! (different shots taken seconds apart that look alike), kept apart from duplicates. Each
//! group names its best copy; nothing is deleted.
//!
//! A video is a duplicate only as an exact copy of its file: its moments are not pictures of
//! their own here, and two videos that open on the same black frame are not alike.
//!
//! Pairs come from the vector index (each picture's nearest neighbours), so the work grows with
//! the library, not with its square.

use std::collections::HashMap;

use rayon::prelude::*;
use serde::Serialize;

use crate::error::Result;
use crate::store::{ImageId, ImageRecord, Library};

/// Records whose neighbours are searched together (and whose embeddings are held at once).
const CHUNK: usize = 8192;

#[derive(Debug, Clone)]
pub struct DuplicateOptions {
    /// Cosine similarity at or above which two pictures without different capture times are
    /// the same picture.
    pub near: f32,
    /// Cosine similarity at or above which two shots taken `burst_seconds` apart or less (but not
    /// at the same second) form a burst.
    pub burst: f32,
    pub burst_seconds: i64,
    /// Neighbours looked at per picture.
    pub neighbours: usize,
}

impl Default for DuplicateOptions {
    fn default() -> Self {
        Self { near: 0.95, burst: 0.85, burst_seconds: 10, neighbours: 8 }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum GroupKind {
    Exact,
    Near,
    Burst,
}

#[derive(Debug, Clone, Serialize)]
pub struct DuplicateGroup {
    pub kind: GroupKind,
    pub ids: Vec<ImageId>,
    pub paths: Vec<String>,
    /// The copy to keep: the most pixels, then the largest file, then the earliest taken, then
    /// the first indexed.
    pub best: ImageId,
}

/// Union-find over picture ids.
#[derive(Default)]
struct Groups(HashMap<ImageId, ImageId>);

impl Groups {
    fn root(&mut self, id: ImageId) -> ImageId {
        let parent = *self.0.entry(id).or_insert(id);
        if parent == id {
            return id;
        }
        let root = self.root(parent);
        self.0.insert(id, root);
        root
    }

    fn join(&mut self, a: ImageId, b: ImageId) {
        let (ra, rb) = (self.root(a), self.root(b));
        if ra != rb {
            self.0.insert(ra.max(rb), ra.min(rb));
        }
    }

    fn members(mut self) -> Vec<Vec<ImageId>> {
        let ids: Vec<ImageId> = self.0.keys().copied().collect();
        let mut by_root: HashMap<ImageId, Vec<ImageId>> = HashMap::new();
        for id in ids {
            let root = self.root(id);
            by_root.entry(root).or_default().push(id);
        }
        by_root.into_values().filter(|m| m.len() > 1).collect()
    }
}

pub fn find_duplicates(library: &dyn Library, options: &DuplicateOptions) -> Result<Vec<DuplicateGroup>> {
    find_duplicates_in_chunks(library, options, CHUNK)
}

fn find_duplicates_in_chunks(
    library: &dyn Library,
    options: &DuplicateOptions,
    chunk_len: usize,
) -> Result<Vec<DuplicateGroup>> {
    // Each picture's neighbours above the lower of the two thresholds, in parallel, a chunk of
    // records at a time: only the chunk's embeddings are held (a million would be 2 GB).
    let floor = options.near.min(options.burst);
    let mut records: HashMap<ImageId, ImageRecord> = HashMap::new();
    let mut pairs: Vec<(ImageId, ImageId, f32)> = Vec::new();
    let mut chunk: Vec<ImageRecord> = Vec::with_capacity(chunk_len);
    let mut all = library.images().peekable();
    while let Some(record) = all.next() {
        chunk.push(record?);
        if chunk.len() >= chunk_len || all.peek().is_none() {
            let found = chunk
                .par_iter()
                .filter(|record| record.video_seconds().is_none())
                .map(|record| -> Result<Vec<(ImageId, ImageId, f32)>> {
                    let neighbours = library.nearest_to_picture(record.id, &record.embedding, options.neighbours)?;
                    Ok(neighbours
                        .into_iter()
                        .filter(|(other, score)| *score >= floor && record.id < *other)
                        .map(|(other, score)| (record.id, other, score))
                        .collect())
                })
                .collect::<Result<Vec<_>>>()?;
            pairs.extend(found.into_iter().flatten());
            records.extend(chunk.drain(..).map(|record| (record.id, ImageRecord { embedding: Vec::new(), ..record })));
        }
    }
    let mut exact = Groups::default();
    let mut by_hash: HashMap<&str, ImageId> = HashMap::new();
    // A record imported without its file's hash (a foreign Parquet file) has none to compare.
    let a_later_moment = |r: &ImageRecord| r.video_seconds().is_some_and(|seconds| seconds > 0.0);
    for record in records.values().filter(|r| !r.hash.is_empty() && !a_later_moment(r)) {
        match by_hash.get(record.hash.as_str()) {
            Some(&first) => exact.join(first, record.id),
            None => {
                by_hash.insert(&record.hash, record.id);
            }
        }
    }
    let (mut near, mut burst) = (Groups::default(), Groups::default());
    for (a, b, score) in pairs {
        let (ra, rb) = (&records[&a], &records[&b]);
        if (ra.hash == rb.hash && !ra.hash.is_empty()) || rb.video_seconds().is_some() {
            continue; // an exact copy, grouped as such; or a video's moment
        }
        let apart = match (ra.facts.taken, rb.facts.taken) {
            (Some(ta), Some(tb)) => Some((ta - tb).abs()),
            _ => None,
        };
        // Different capture times make different shots: a burst, never a duplicate.
        match apart {
            Some(seconds) if seconds > 0 && seconds <= options.burst_seconds && score >= options.burst => {
                burst.join(a, b)
            }
            Some(seconds) if seconds > 0 => {}
            _ if score >= options.near => near.join(a, b),
            _ => {}
        }
    }
    let mut groups: Vec<DuplicateGroup> =
        [(GroupKind::Exact, exact), (GroupKind::Near, near), (GroupKind::Burst, burst)]
            .into_iter()
            .flat_map(|(kind, groups)| groups.members().into_iter().map(move |ids| (kind, ids)))
            .map(|(kind, mut ids)| {
                ids.sort_unstable();
                let best = *ids.iter().max_by_key(|id| keep_order(&records[id])).expect("groups have members");
                let paths = ids.iter().map(|id| records[id].path.display()).collect();
                DuplicateGroup { kind, ids, paths, best }
            })
            .collect();
    groups.sort_by_key(|g| (g.kind as u8, g.ids[0]));
    Ok(groups)
}

/// Larger is better: pixels, then file size, then earlier taken (an undated picture last), then
/// the first indexed.
fn keep_order(record: &ImageRecord) -> (u64, u64, std::cmp::Reverse<i64>, std::cmp::Reverse<ImageId>) {
    let pixels = u64::from(record.width) * u64::from(record.height);
    let taken = record.facts.taken.unwrap_or(i64::MAX);
    (pixels, record.size, std::cmp::Reverse(taken), std::cmp::Reverse(record.id))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::{Change, DataDir};

    /// Pairs of near copies spread over the library, so that chunks of 7 split many of them:
    /// grouping must not depend on where the chunks end (nor drop the last, partial one).
    #[test]
    fn groups_do_not_depend_on_how_the_records_are_chunked() {
        let tmp = tempfile::tempdir().unwrap();
        let mut data = DataDir::open(tmp.path()).unwrap();
        let dim = 16;
        let unit = |v: Vec<f32>| {
            let norm = v.iter().map(|x| x * x).sum::<f32>().sqrt();
            v.into_iter().map(|x| x / norm).collect::<Vec<f32>>()
        };
        let mut changes = Vec::new();
        for i in 0..40usize {
            // Picture i and picture i + 40 are near copies; the 40 originals point every which way.
            let original: Vec<f32> = (0..dim)
                .map(|d| {
                    // splitmix64's finaliser: unrelated values for neighbouring (i, d).
                    let mut z = ((i * dim + d) as u64).wrapping_add(0x9E37_79B9_7F4A_7C15);
                    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
                    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
                    ((z ^ (z >> 31)) >> 40) as f32 / (1u64 << 24) as f32 - 0.5
                })
                .collect();
            let copy: Vec<f32> =
                original.iter().enumerate().map(|(d, x)| x + if d == i % dim { 0.05 } else { 0.0 }).collect();
            for (n, embedding) in [(i, original), (i + 40, copy)] {
                let id = data.new_id().unwrap();
                changes.push((n, id, unit(embedding)));
            }
        }
        changes.sort_by_key(|(n, _, _)| *n);
        let records: Vec<Change> = changes
            .into_iter()
            .map(|(n, id, embedding)| Change::Upsert(ImageRecord::made_up(id, &format!("/p/{n}.png"), embedding)))
            .collect();
        data.apply(&records).unwrap();
        let options = DuplicateOptions::default();
        let whole = find_duplicates_in_chunks(&data, &options, 1000).unwrap();
        assert_eq!(whole.iter().filter(|g| g.kind == GroupKind::Near).count(), 40, "{whole:?}");
        let ids = |groups: &[DuplicateGroup]| groups.iter().map(|g| g.ids.clone()).collect::<Vec<_>>();
        let chunked = find_duplicates_in_chunks(&data, &options, 7).unwrap();
        assert_eq!(ids(&chunked), ids(&whole));
    }
}
