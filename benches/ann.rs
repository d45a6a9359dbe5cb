//! The vector index where it is hard: CLIP-like data (`tests/common/clip_like.rs`) with a
//! modality gap, events and near-duplicates; recall@10 against exact search for text-like
//! (out of distribution) and picture-like queries at several search breadths, queries/s on one
//! thread, build inserts/s, resident memory and open time.
//!
//! Run: `IMGSEARCH_BENCH_N=1000000 cargo bench --bench ann` (default 100,000 pictures). With
//! `IMGSEARCH_BENCH_DUMP=DIR` it also writes the vectors and the exact answers as .npy for
//! `scripts/ann_peers.py`, which runs hnswlib, usearch and faiss on the same data.

#[path = "../tests/common/clip_like.rs"]
mod clip_like;
#[path = "../tests/common/npy.rs"]
mod npy;

use std::collections::HashSet;
use std::time::Instant;

use imgsearch::store::{HnswIndex, VectorIndex};
use rayon::prelude::*;

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

const DIM: usize = 512;

fn resident_mb() -> f64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let kb: f64 = status
        .lines()
        .find(|l| l.starts_with("VmRSS:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0.0);
    kb / 1024.0
}

fn write_npy(path: &std::path::Path, descr: &str, rows: usize, cols: usize, data: &[u8]) {
    std::fs::write(path, npy::npy_bytes(descr, &[rows, cols], data)).unwrap();
}

/// A saved index opened in a process of its own, as `serve` opens it: (seconds, resident MB
/// of that process). Measured in this process, freed memory the allocator kept would hide it.
fn open_elsewhere(dir: &std::path::Path) -> (f64, f64) {
    let out =
        std::process::Command::new(std::env::current_exe().unwrap()).env("IMGSEARCH_BENCH_OPEN", dir).output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    let mut numbers = text.split_whitespace().map(|v| v.parse::<f64>().unwrap());
    (numbers.next().unwrap(), numbers.next().unwrap())
}

/// The exact answers a dump folder already holds for these queries (computing them at 1M takes
/// minutes), if it holds them for exactly these pictures (`pictures` as .npy bytes).
fn dumped_truth(dir: &std::path::Path, pictures: &[u8], kind: &str, queries: usize) -> Option<Vec<Vec<u64>>> {
    let dumped = std::fs::read(dir.join("pictures.npy")).ok()?;
    if dumped.len() < pictures.len() || dumped[dumped.len() - pictures.len()..] != *pictures {
        return None;
    }
    let bytes = std::fs::read(dir.join(format!("{kind}_truth.npy"))).ok()?;
    let header_len = u16::from_le_bytes([bytes[8], bytes[9]]) as usize;
    let ids: Vec<u64> =
        bytes[10 + header_len..].chunks_exact(8).map(|b| i64::from_le_bytes(b.try_into().unwrap()) as u64).collect();
    (ids.len() == queries * 10).then(|| ids.chunks(10).map(|c| c.to_vec()).collect())
}

fn main() {
    if std::env::args().any(|a| a == "--list") {
        return;
    }
    if let Ok(dir) = std::env::var("IMGSEARCH_BENCH_OPEN") {
        let t = Instant::now();
        let index = HnswIndex::open(std::path::Path::new(&dir)).unwrap();
        println!("{} {}", t.elapsed().as_secs_f64(), resident_mb());
        drop(index);
        return;
    }
    let n: usize = std::env::var("IMGSEARCH_BENCH_N").ok().and_then(|v| v.parse().ok()).unwrap_or(100_000);
    let queries: usize = std::env::var("IMGSEARCH_BENCH_QUERIES").ok().and_then(|v| v.parse().ok()).unwrap_or(1000);
    let t = Instant::now();
    let data = clip_like::generate(n, queries, DIM, 1);
    eprintln!("generated {n} pictures in {:.1} s", t.elapsed().as_secs_f64());
    let kinds = [("text", &data.text_queries), ("picture", &data.picture_queries)];
    let t = Instant::now();
    let dump = std::env::var("IMGSEARCH_BENCH_DUMP").ok().map(std::path::PathBuf::from);
    let floats = |vs: &[Vec<f32>]| -> Vec<u8> { vs.iter().flatten().flat_map(|x| x.to_le_bytes()).collect() };
    let picture_bytes = floats(&data.pictures);
    let truth: Vec<Vec<Vec<u64>>> = kinds
        .iter()
        .map(|(kind, qs)| {
            dump.as_deref().and_then(|d| dumped_truth(d, &picture_bytes, kind, queries)).unwrap_or_else(|| {
                qs.par_iter().map(|q| clip_like::exact_top(&data.pictures, q, 10, &|_| true)).collect()
            })
        })
        .collect();
    eprintln!("exact answers in {:.1} s", t.elapsed().as_secs_f64());
    let dot = |a: &[f32], b: &[f32]| a.iter().zip(b).map(|(x, y)| x * y).sum::<f32>();
    let best_text =
        data.text_queries.iter().zip(&truth[0]).map(|(q, t)| dot(q, &data.pictures[t[0] as usize])).sum::<f32>()
            / queries as f32;
    let best_picture =
        data.picture_queries.iter().zip(&truth[1]).map(|(q, t)| dot(q, &data.pictures[t[0] as usize])).sum::<f32>()
            / queries as f32;

    if let Some(dir) = dump.as_deref() {
        std::fs::create_dir_all(dir).unwrap();
        write_npy(&dir.join("pictures.npy"), "<f4", n, DIM, &picture_bytes);
        for ((kind, qs), answers) in kinds.iter().zip(&truth) {
            write_npy(&dir.join(format!("{kind}_queries.npy")), "<f4", queries, DIM, &floats(qs));
            let ids: Vec<u8> = answers.iter().flatten().flat_map(|i| (*i as i64).to_le_bytes()).collect();
            write_npy(&dir.join(format!("{kind}_truth.npy")), "<i8", queries, 10, &ids);
        }
    }

    let dir = tempfile::tempdir().unwrap();
    let t = Instant::now();
    let mut index = HnswIndex::open(dir.path()).unwrap();
    let items: Vec<(u64, &[f32])> = data.pictures.iter().enumerate().map(|(i, v)| (i as u64, v.as_slice())).collect();
    index.insert_many(&items);
    let build_s = t.elapsed().as_secs_f64();
    let t = Instant::now();
    index.save(1).unwrap();
    let save_s = t.elapsed().as_secs_f64();
    drop(index);
    let (open_s, opened_mb) = open_elsewhere(dir.path());
    let index = HnswIndex::open(dir.path()).unwrap();

    println!("## Vector index at {n} CLIP-like pictures (dim {DIM}, M = 16, ef_construction 200)\n");
    println!(
        "Mean cosine of the best match: text queries {best_text:.3}, picture queries {best_picture:.3}. \
         Build {:.0} inserts/s (2 threads), save {save_s:.2} s; a fresh process opens it in {open_s:.2} s \
         and is then {opened_mb:.0} MB resident.\n",
        n as f64 / build_s
    );
    println!("| search | text recall@10 | text queries/s | picture recall@10 | picture queries/s |");
    println!("|---|---:|---:|---:|---:|");
    let measure = |search: &dyn Fn(&[f32]) -> Vec<u64>| -> Vec<(f64, f64)> {
        kinds
            .iter()
            .zip(&truth)
            .map(|((_, qs), answers)| {
                let t = Instant::now();
                let found: usize = qs
                    .iter()
                    .zip(answers)
                    .map(|(q, truth)| {
                        let truth: HashSet<&u64> = truth.iter().collect();
                        search(q).iter().filter(|id| truth.contains(id)).count()
                    })
                    .sum();
                (found as f64 / (qs.len() * 10) as f64, qs.len() as f64 / t.elapsed().as_secs_f64())
            })
            .collect()
    };
    let row = |label: String, r: Vec<(f64, f64)>| {
        println!("| {label} | {:.3} | {:.0} | {:.3} | {:.0} |", r[0].0, r[0].1, r[1].0, r[1].1);
    };
    // One thread, as one client's query runs.
    let pool = rayon::ThreadPoolBuilder::new().num_threads(1).build().unwrap();
    pool.install(|| {
        // Warm-up: the first queries fault in the graph's pages.
        measure(&|q| index.search_with_ef(q, 10, Some(64), &|_| true).iter().map(|h| h.id).collect());
        for ef in [32, 64, 128, 192, 256, 384, 512] {
            let r = measure(&|q| index.search_with_ef(q, 10, Some(ef), &|_| true).iter().map(|h| h.id).collect());
            row(format!("ef {ef}"), r);
        }
        let r = measure(&|q| index.search(q, 10, &|_| true).iter().map(|h| h.id).collect());
        row("default (`VectorIndex::search`)".into(), r);
    });
}
