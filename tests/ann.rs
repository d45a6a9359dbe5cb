//! The vector index against exact search: recall@10 with and without an allow-list filter,
//! tombstones never returned, and identical vectors (duplicate photos) never panic.

use std::collections::HashSet;

use imgsearch::store::{HnswIndex, VectorIndex};

/// Clustered unit vectors, like photo embeddings (bursts of similar pictures).
fn clustered(n: usize, dim: usize, seed: u64) -> Vec<Vec<f32>> {
    let mut state = seed;
    let mut next = move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        (state >> 11) as f32 / (1u64 << 53) as f32 - 0.5
    };
    let centres: Vec<Vec<f32>> = (0..50).map(|_| (0..dim).map(|_| next()).collect()).collect();
    (0..n)
        .map(|i| {
            let v: Vec<f32> = centres[i % centres.len()].iter().map(|c| c + 0.35 * next()).collect();
            let norm = v.iter().map(|x| x * x).sum::<f32>().sqrt();
            v.into_iter().map(|x| x / norm).collect()
        })
        .collect()
}

fn exact_top(vectors: &[Vec<f32>], query: &[f32], k: usize, allow: &dyn Fn(u64) -> bool) -> Vec<u64> {
    let mut scored: Vec<(u64, f32)> = vectors
        .iter()
        .enumerate()
        .filter(|(i, _)| allow(*i as u64))
        .map(|(i, v)| (i as u64, v.iter().zip(query).map(|(a, b)| a * b).sum()))
        .collect();
    scored.sort_by(|a, b| b.1.total_cmp(&a.1));
    scored.into_iter().take(k).map(|(i, _)| i).collect()
}

fn recall(index: &HnswIndex, vectors: &[Vec<f32>], queries: &[Vec<f32>], allow: &dyn Fn(u64) -> bool) -> f64 {
    let mut found = 0;
    for q in queries {
        let truth: HashSet<u64> = exact_top(vectors, q, 10, allow).into_iter().collect();
        found += index.search(q, 10, allow).iter().filter(|h| truth.contains(&h.id)).count();
    }
    found as f64 / (queries.len() * 10) as f64
}

#[test]
fn hnsw_recall_at_10_is_at_least_0_95_against_exact_search_with_and_without_filters() {
    let dir = tempfile::tempdir().unwrap();
    let vectors = clustered(6000, 64, 7);
    let queries = clustered(100, 64, 99);
    let mut index = HnswIndex::open(dir.path()).unwrap();
    for (i, v) in vectors.iter().enumerate() {
        index.insert(i as u64, v);
    }
    let all = recall(&index, &vectors, &queries, &|_| true);
    assert!(all >= 0.95, "recall@10 {all}");
    let half = recall(&index, &vectors, &queries, &|id| id % 2 == 0);
    assert!(half >= 0.95, "filtered recall@10 {half}");
    eprintln!("recall@10: {all:.3} unfiltered, {half:.3} with a 50% allow-list");

    // Tombstoned vectors never come back, and survive a save + reopen.
    for id in 0..3000u64 {
        index.remove(id);
    }
    assert!(queries.iter().all(|q| index.search(q, 10, &|_| true).iter().all(|h| h.id >= 3000)));
    index.save(1).unwrap();
    let reopened = HnswIndex::open(dir.path()).unwrap();
    assert_eq!(reopened.live_count(), 3000);
    assert!(queries.iter().all(|q| reopened.search(q, 10, &|_| true).iter().all(|h| h.id >= 3000)));
    let after = recall(&reopened, &vectors, &queries, &|id| id >= 3000);
    assert!(after >= 0.95, "recall after tombstones + reload {after}");
}

#[test]
fn identical_vectors_do_not_panic_the_index() {
    let dir = tempfile::tempdir().unwrap();
    let mut index = HnswIndex::open(dir.path()).unwrap();
    // Rounding makes dot(v, v) slightly above 1 for some unit vectors: hnsw_rs's DistDot asserts on it.
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
