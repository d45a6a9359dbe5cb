//! The vector index where it is hard: CLIP-like data (`tests/it/common/clip_like.rs`) with a
//! modality gap, events and near-duplicates; recall@10 against exact search for text-like
//! (out of distribution) and picture-like queries at several search breadths, queries/s on one
//! thread, build inserts/s, resident memory and open time.
//!
//! Run: `IMGSEARCH_BENCH_N=1000000 cargo bench --bench ann` (default 100,000 pictures). With
//! `IMGSEARCH_BENCH_DUMP=DIR` it also writes the vectors and the exact answers as .npy for
//! `scripts/ann_peers.py`, which runs hnswlib, usearch and faiss on the same data. With
//! `IMGSEARCH_BENCH_POSTGRES=postgres://USER@HOST:PORT/DB` (a server with pgvector, e.g. from
//! `scripts/postgres.sh start DIR`) the same pictures also go into a PostgreSQL library (a fresh
//! database beside DB), searched through the library at several `IMGSEARCH_PG_EF_SEARCH`.

#[path = "../tests/it/common/clip_like.rs"]
mod clip_like;
#[path = "../tests/it/common/npy.rs"]
mod npy;
mod support;

use std::collections::HashSet;
use std::time::Instant;

use imgsearch::store::{HnswIndex, VectorIndex, EF_CONSTRUCTION, HNSW_M};
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

/// A saved index opened in a process of its own, as `serve` opens it, which then answers
/// `queries` (one after another): (seconds to open, resident MB after opening, resident MB
/// after the queries). Measured in this process, freed memory the allocator kept would hide it;
/// the vectors are memory-mapped, so what is resident grows with the pages searches touch.
fn open_elsewhere(dir: &std::path::Path, queries: &[Vec<f32>]) -> (f64, f64, f64) {
    let query_file = dir.join("queries.f32");
    std::fs::write(&query_file, queries.iter().flatten().flat_map(|x| x.to_le_bytes()).collect::<Vec<u8>>()).unwrap();
    let out = std::process::Command::new(std::env::current_exe().unwrap())
        .env("IMGSEARCH_BENCH_OPEN", dir)
        .env("IMGSEARCH_BENCH_OPEN_QUERIES", &query_file)
        .output()
        .unwrap();
    std::fs::remove_file(query_file).unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    let mut numbers = text.split_whitespace().map(|v| v.parse::<f64>().unwrap());
    (numbers.next().unwrap(), numbers.next().unwrap(), numbers.next().unwrap())
}

/// The child of [`open_elsewhere`].
fn open_and_answer(dir: &str, query_file: &str) {
    let t = Instant::now();
    let index = HnswIndex::open(std::path::Path::new(dir)).unwrap();
    let (open_s, opened_mb) = (t.elapsed().as_secs_f64(), resident_mb());
    let floats: Vec<f32> =
        std::fs::read(query_file).unwrap().chunks_exact(4).map(|b| f32::from_le_bytes(b.try_into().unwrap())).collect();
    for query in floats.chunks_exact(DIM) {
        index.search(query, 10, &|_| true);
    }
    println!("{open_s} {opened_mb} {}", resident_mb());
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
    if let (Ok(dir), Ok(queries)) =
        (std::env::var("IMGSEARCH_BENCH_OPEN"), std::env::var("IMGSEARCH_BENCH_OPEN_QUERIES"))
    {
        open_and_answer(&dir, &queries);
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
    let mut index = HnswIndex::open(dir.path()).unwrap();
    let items: Vec<(u64, &[f32])> = data.pictures.iter().enumerate().map(|(i, v)| (i as u64, v.as_slice())).collect();
    // The last 1% goes in after a first save, as a later `index` run adds to a library: the
    // second save appends their vectors and rewrites only the links.
    let (first, later) = items.split_at(n - n / 100);
    let t = Instant::now();
    index.insert_many(first);
    let mut build_s = t.elapsed().as_secs_f64();
    let t = Instant::now();
    index.save(1).unwrap();
    let save_s = t.elapsed().as_secs_f64();
    let t = Instant::now();
    index.insert_many(later);
    build_s += t.elapsed().as_secs_f64();
    let t = Instant::now();
    index.save(2).unwrap();
    let resave_s = t.elapsed().as_secs_f64();
    drop(index);
    let all_queries = [&data.text_queries[..], &data.picture_queries[..]].concat();
    let (open_s, opened_mb, answered_mb) = open_elsewhere(dir.path(), &all_queries);
    let saved_mb = walkdir::WalkDir::new(dir.path())
        .into_iter()
        .flatten()
        .filter_map(|e| e.metadata().ok())
        .map(|m| m.len() as f64 / 1048576.0)
        .sum::<f64>();
    let index = HnswIndex::open(dir.path()).unwrap();

    println!(
        "## Vector index at {n} CLIP-like pictures (dim {DIM}, M = {HNSW_M}, ef_construction {EF_CONSTRUCTION})\n"
    );
    println!(
        "Mean cosine of the best match: text queries {best_text:.3}, picture queries {best_picture:.3}. \
         Build {:.0} inserts/s ({} threads), save {save_s:.2} s ({saved_mb:.0} MB), a later save after \
         1% more pictures {resave_s:.2} s; a fresh process \
         opens it in {open_s:.2} s and is then {opened_mb:.0} MB resident, {answered_mb:.0} MB after \
         answering the {} queries default-wide.\n",
        n as f64 / build_s,
        rayon::current_num_threads(),
        all_queries.len()
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
    if let Ok(admin) = std::env::var("IMGSEARCH_BENCH_POSTGRES") {
        postgres_library(&admin, &data.pictures, &data.text_queries, &measure);
    }
}

/// Runs every query through a search (query → ids found): (recall@10, queries/s) for text-like,
/// then picture-like queries.
type Measure<'a> = dyn Fn(&dyn Fn(&[f32]) -> Vec<u64>) -> Vec<(f64, f64)> + 'a;

/// The pictures in a PostgreSQL library (pgvector HNSW, m 16, ef_construction 64), built and
/// searched through `Library` as `index` and `search` use it; `measure` as above.
fn postgres_library(admin: &str, pictures: &[Vec<f32>], text_queries: &[Vec<f32>], measure: &Measure) {
    use imgsearch::store::catalog::{ImageRecord, ModelInfo, PhotoFacts, StoredPath};
    use imgsearch::store::Change;
    let cache = tempfile::tempdir().unwrap();
    let location = support::new_database(admin, cache.path());
    let open = || imgsearch::store::open(&location).unwrap();
    let mut library = open();
    library.check_model(&ModelInfo { model: "clip-like".into(), dim: DIM, preprocess: "{}".into() }).unwrap();
    let t = Instant::now();
    library.begin_bulk_load().unwrap();
    for (start, chunk) in (0..pictures.len()).step_by(1000).zip(pictures.chunks(1000)) {
        let changes: Vec<Change> = chunk
            .iter()
            .enumerate()
            .map(|(i, v)| {
                let id = (start + i) as u64;
                Change::Upsert(ImageRecord {
                    id: id + 1,
                    path: StoredPath::Utf8(format!("/photos/IMG_{id:07}.jpg")),
                    size: 1,
                    mtime_ns: 0,
                    hash: format!("{id:064x}"),
                    width: 1,
                    height: 1,
                    format: "jpeg".into(),
                    facts: PhotoFacts::default(),
                    embedding: v.clone(),
                    indexed_at: 0,
                    tags: Vec::new(),
                    facts_version: 0,
                })
            })
            .collect();
        library.apply(&changes).unwrap();
    }
    let load_s = t.elapsed().as_secs_f64();
    let t = Instant::now();
    library.end_bulk_load(&indicatif::ProgressBar::hidden()).unwrap();
    let index_s = t.elapsed().as_secs_f64();
    let size_mb = library.size_bytes() as f64 / 1048576.0;
    drop(library);
    println!(
        "\n### The same pictures in PostgreSQL 18 + pgvector 0.8 (`--store`)\n\nLoaded as `import` does (`Library::apply` \
         in batches of 1,000 inside a bulk load: the HNSW index built once at the end): rows {:.0}/s ({load_s:.0} s), \
         then the index in {index_s:.0} s, {:.0} pictures/s overall; the database takes {size_mb:.0} MB. \
         Searched through `Library::nearest` (k = 10, candidates re-scored exactly), one client:\n",
        pictures.len() as f64 / load_s,
        pictures.len() as f64 / (load_s + index_s)
    );
    println!("| hnsw.ef_search | text recall@10 | text queries/s | picture recall@10 | picture queries/s | text p50 |");
    println!("|---|---:|---:|---:|---:|---:|");
    for ef in [100, 200, 400, 600, 800] {
        std::env::set_var("IMGSEARCH_PG_EF_SEARCH", ef.to_string());
        let library = open();
        let nearest = |q: &[f32]| library.nearest(q, 10, &[], None).unwrap().iter().map(|(id, _)| id - 1).collect();
        measure(&nearest); // warm-up: the index's pages into the server's cache
        let r = measure(&nearest);
        let mut times: Vec<f64> = text_queries
            .iter()
            .map(|q| {
                let t = Instant::now();
                std::hint::black_box(nearest(q));
                t.elapsed().as_secs_f64() * 1e3
            })
            .collect();
        times.sort_by(f64::total_cmp);
        let p50 = times[times.len() / 2];
        println!("| {ef} | {:.3} | {:.0} | {:.3} | {:.0} | {p50:.1} ms |", r[0].0, r[0].1, r[1].0, r[1].1);
    }
    std::env::remove_var("IMGSEARCH_PG_EF_SEARCH");
}
