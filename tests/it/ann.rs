//! The vector index against exact search on CLIP-like data (a picture cone, a text cone, events
//! and near-duplicates: `common/clip_like.rs`): recall@10 for text-like (out of distribution) and
//! picture-like queries, with and without an allow-list filter; tombstones never returned, also
//! after a save and reopen; the scan of the few pictures a selective filter passes; saves that append (a torn append survived); identical vectors; a
//! damaged or old-format index file.

use std::collections::HashSet;

use crate::common::clip_like::{exact_top, generate};
use imgsearch::store::{HnswIndex, VectorIndex};

fn recall(index: &HnswIndex, vectors: &[Vec<f32>], queries: &[Vec<f32>], allow: &dyn Fn(u64) -> bool) -> f64 {
    let mut found = 0;
    for q in queries {
        let truth: HashSet<u64> = exact_top(vectors, q, 10, allow).into_iter().collect();
        found += index.search(q, 10, allow).iter().filter(|h| truth.contains(&h.id)).count();
    }
    found as f64 / (queries.len() * 10) as f64
}

fn built(vectors: &[Vec<f32>], dir: &std::path::Path) -> HnswIndex {
    let mut index = HnswIndex::open(dir).unwrap();
    let items: Vec<(u64, &[f32])> = vectors.iter().enumerate().map(|(i, v)| (i as u64, v.as_slice())).collect();
    // Two calls: the second batch is linked into an existing graph, as a later `index` run is.
    index.insert_many(&items[..items.len() / 2]);
    index.insert_many(&items[items.len() / 2..]);
    index
}

#[test]
fn recall_at_10_holds_for_text_and_picture_queries_with_and_without_filters() {
    let dir = tempfile::tempdir().unwrap();
    let data = generate(6000, 100, 128, 7);
    let mut index = built(&data.pictures, dir.path());
    let text = recall(&index, &data.pictures, &data.text_queries, &|_| true);
    let picture = recall(&index, &data.pictures, &data.picture_queries, &|_| true);
    let text_half = recall(&index, &data.pictures, &data.text_queries, &|id| id % 2 == 0);
    eprintln!("recall@10: text {text:.3}, picture {picture:.3}, text with a 50% allow-list {text_half:.3}");
    assert!(text >= 0.95, "text-like queries: recall@10 {text}");
    assert!(picture >= 0.98, "picture-like queries: recall@10 {picture}");
    assert!(text_half >= 0.95, "filtered text-like queries: recall@10 {text_half}");

    // Tombstoned vectors never come back, and survive a save + reopen.
    for id in 0..3000u64 {
        index.remove(id);
    }
    let queries = [&data.text_queries[..], &data.picture_queries[..]].concat();
    assert!(queries.iter().all(|q| index.search(q, 10, &|_| true).iter().all(|h| h.id >= 3000)));
    index.save(1).unwrap();
    let reopened = HnswIndex::open(dir.path()).unwrap();
    assert_eq!((reopened.live_count(), reopened.tombstone_count(), reopened.saved_generation()), (3000, 3000, 1));
    assert!(queries.iter().all(|q| reopened.search(q, 10, &|_| true).iter().all(|h| h.id >= 3000)));
    let after = recall(&reopened, &data.pictures, &data.text_queries, &|id| id >= 3000);
    assert!(after >= 0.95, "text-like recall after tombstones + reload {after}");
}

/// A filter that passes few pictures (3%): scanning them (every f16 copy scored) finds the true
/// best matches best first, and no tombstone.
#[test]
fn scanning_the_few_pictures_a_filter_passes_finds_the_true_best() {
    let dir = tempfile::tempdir().unwrap();
    let data = generate(6000, 100, 128, 11);
    let mut index = built(&data.pictures, dir.path());
    index.remove(32);
    let allow = |id: u64| id.is_multiple_of(32) && id != 32;
    let passing: Vec<u64> = (0..6000u64).filter(|id| id.is_multiple_of(32)).collect(); // 32, tombstoned, too
    let (mut found, mut asked) = (0, 0);
    for query in [&data.text_queries[..], &data.picture_queries[..]].concat() {
        let truth: HashSet<u64> = exact_top(&data.pictures, &query, 10, &allow).into_iter().collect();
        let hits = index.nearest_among(&query, &mut passing.iter().copied(), 10);
        assert_eq!(hits.len(), 10);
        assert!(hits.iter().all(|h| allow(h.id)), "{hits:?}");
        assert!(hits.windows(2).all(|w| w[0].score >= w[1].score), "best first: {hits:?}");
        found += hits.iter().filter(|h| truth.contains(&h.id)).count();
        asked += 10;
    }
    let recall = found as f64 / asked as f64;
    assert!(recall >= 0.99, "recall@10 of the scan {recall}");
}

#[test]
fn identical_vectors_do_not_break_the_index() {
    let dir = tempfile::tempdir().unwrap();
    let mut index = HnswIndex::open(dir.path()).unwrap();
    // Rounding makes dot(v, v) slightly above 1 for some unit vectors.
    let v: Vec<f32> = (0..512).map(|i| ((i * 37 % 101) as f32).sin()).collect();
    let norm = v.iter().map(|x| x * x).sum::<f32>().sqrt();
    let v: Vec<f32> = v.iter().map(|x| x / norm * 1.000_001).collect();
    for id in 0..200 {
        index.insert(id, &v);
    }
    let hits = index.search(&v, 5, &|_| true);
    assert_eq!(hits.len(), 5);
    assert!(hits.iter().all(|h| h.score >= 0.999));
}

/// Every query's hits from `a` and `b`, which must be the same graph.
fn assert_same_answers(a: &HnswIndex, b: &HnswIndex, queries: &[Vec<f32>]) {
    for q in queries {
        assert_eq!(a.search(q, 10, &|_| true), b.search(q, 10, &|_| true));
    }
}

fn file_names(dir: &std::path::Path) -> Vec<String> {
    let mut names: Vec<String> =
        std::fs::read_dir(dir).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect();
    names.sort();
    names
}

#[test]
fn a_save_appends_the_new_vectors_and_survives_a_torn_append() {
    let dir = tempfile::tempdir().unwrap();
    let data = generate(2000, 40, 64, 5);
    let queries = [&data.text_queries[..], &data.picture_queries[..]].concat();
    let items: Vec<(u64, &[f32])> = data.pictures.iter().enumerate().map(|(i, v)| (i as u64, v.as_slice())).collect();
    let vectors_file = dir.path().join("vectors.1.f16");
    let mut index = HnswIndex::open(dir.path()).unwrap();
    index.insert_many(&items[..1500]);
    index.save(1).unwrap();
    assert_eq!(std::fs::metadata(&vectors_file).unwrap().len(), 1500 * 64 * 2);

    // The next save appends to the same file; what was written stays as it was.
    let before = std::fs::read(&vectors_file).unwrap();
    index.insert_many(&items[1500..1800]);
    index.save(2).unwrap();
    let after = std::fs::read(&vectors_file).unwrap();
    assert_eq!((after.len(), &after[..before.len()]), (1800 * 64 * 2, &before[..]));
    assert_same_answers(&index, &HnswIndex::open(dir.path()).unwrap(), &queries);

    // A crash in the middle of the next save's append leaves bytes that graph.bin does not count:
    // the library opens as last saved, and its next save writes over them.
    let mut torn = std::fs::OpenOptions::new().append(true).open(&vectors_file).unwrap();
    std::io::Write::write_all(&mut torn, &[0xAB; 1000]).unwrap();
    let mut reopened = HnswIndex::open(dir.path()).unwrap();
    assert_same_answers(&index, &reopened, &queries);
    reopened.insert_many(&items[1800..]);
    reopened.save(3).unwrap();
    assert_eq!(std::fs::metadata(&vectors_file).unwrap().len(), 2000 * 64 * 2);
    assert_same_answers(&reopened, &HnswIndex::open(dir.path()).unwrap(), &queries);

    // A rebuild renumbers the slots: its save starts a new vectors file and drops the old one.
    let live: Vec<(u64, Vec<f32>)> =
        items.iter().filter(|(id, _)| id % 3 != 0).map(|(id, v)| (*id, v.to_vec())).collect();
    reopened.rebuild(&live);
    reopened.save(4).unwrap();
    assert_eq!(file_names(dir.path()), ["graph.bin", "vectors.2.f16"]);
    assert_same_answers(&reopened, &HnswIndex::open(dir.path()).unwrap(), &queries);

    // A vectors file shorter than the graph says is damage: the index opens empty at generation
    // 0, which the data folder rebuilds from its catalog.
    let file = dir.path().join("vectors.2.f16");
    let length = std::fs::metadata(&file).unwrap().len();
    std::fs::OpenOptions::new().write(true).open(&file).unwrap().set_len(length - 2).unwrap();
    let damaged = HnswIndex::open(dir.path()).unwrap();
    assert_eq!((damaged.live_count(), damaged.saved_generation()), (0, 0));
}

#[test]
fn a_damaged_or_old_index_file_opens_empty_to_be_rebuilt_and_a_newer_one_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let data = generate(500, 1, 64, 3);
    built(&data.pictures, dir.path()).save(4).unwrap();
    let file = dir.path().join("graph.bin");
    let bytes = std::fs::read(&file).unwrap();
    // Cut short, and a link pointing past the graph: never a panic or a wrong answer, but an
    // empty index at generation 0, which the data folder rebuilds from its catalog.
    let opens_empty = || {
        let index = HnswIndex::open(dir.path()).unwrap();
        assert_eq!((index.live_count(), index.saved_generation()), (0, 0));
    };
    std::fs::write(&file, &bytes[..bytes.len() / 2]).unwrap();
    opens_empty();
    // The file: magic and header (64 bytes), ids (8 per slot), deleted and level (1 each), then
    // each slot's layer-0 list: a count and 32 links of 4 bytes.
    let n = 500;
    let first_link = 64 + n * (8 + 1 + 1) + 4;
    let mut bad_link = bytes.clone();
    bad_link[first_link..first_link + 4].copy_from_slice(&9999u32.to_le_bytes());
    std::fs::write(&file, &bad_link).unwrap();
    opens_empty();

    // A newer build's graph is not this build's to discard.
    let mut newer = bytes.clone();
    newer[8..16].copy_from_slice(&99u64.to_le_bytes());
    std::fs::write(&file, &newer).unwrap();
    let error = HnswIndex::open(dir.path()).err().expect("a newer format is refused").to_string();
    assert!(error.contains("newer than this build"), "{error}");

    // A graph file of format 1 (vectors inside it) opens empty at generation 0, so the data
    // folder rebuilds it from the catalog.
    let mut format_1 = bytes[..8].to_vec();
    format_1.extend(1u64.to_le_bytes());
    format_1.extend([0; 48]);
    std::fs::write(&file, &format_1).unwrap();
    let index = HnswIndex::open(dir.path()).unwrap();
    assert_eq!((index.live_count(), index.saved_generation()), (0, 0));

    // A folder of the hnsw_rs era (state.json and dump folders) opens empty at generation 0 too;
    // the next save clears the old files away.
    let old = tempfile::tempdir().unwrap();
    std::fs::write(old.path().join("state.json"), br#"{"generation": 7, "dump": null, "ids": [], "tombstones": []}"#)
        .unwrap();
    std::fs::create_dir(old.path().join("g7-123")).unwrap();
    let mut index = HnswIndex::open(old.path()).unwrap();
    assert_eq!((index.live_count(), index.saved_generation()), (0, 0));
    index.insert(1, &data.pictures[0]);
    index.save(8).unwrap();
    assert_eq!(file_names(old.path()), ["graph.bin", "vectors.1.f16"]);
}
