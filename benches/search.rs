//! Query latency at scale (not criterion: it reports percentiles and concurrency).
//!
//! Builds a data folder of N synthetic pictures (default 100,000; `IMGSEARCH_BENCH_N`) with
//! clustered 512-d embeddings, then measures:
//! - `Library::nearest` alone: p50/p99 per query and recall@10 against exact search (with and
//!   without a filter);
//! - a text query end to end over HTTP on 127.0.0.1 (`imgsearch serve`'s router in-process, CLIP
//!   ViT-B/32 text tower with random weights), every text new: p50/p99; and the next page of a
//!   query already asked, whose text embedding the server has kept;
//! - 50 concurrent clients (every text new): requests/s and errors.
//!
//! Run: `cargo bench --bench search` (takes a few minutes; most of it building the graph).
//! With `IMGSEARCH_BENCH_POSTGRES=postgres://USER@HOST:PORT/DB` (a server with pgvector, e.g.
//! from `scripts/postgres.sh start DIR`) the library is a PostgreSQL one (a fresh database
//! beside DB), and the concurrent clients are spread over two servers on it.

use std::collections::HashSet;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::time::{Duration, Instant};

use candle_core::Device;
use imgsearch::model::{ModelConfig, Precision};
use imgsearch::search::{tags, SearchEngine};
use imgsearch::server::{serve, ServeOptions};
use imgsearch::store::catalog::{ImageRecord, ModelInfo, PhotoFacts, StoredPath};
use imgsearch::store::{Change, Filter};
use imgsearch::Clip;

mod support;

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

const DIM: usize = 512;

fn rng(seed: u64) -> impl FnMut() -> f32 {
    let mut state = seed.max(1);
    move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        (state >> 11) as f32 / (1u64 << 53) as f32 - 0.5
    }
}

/// Clustered unit vectors: photo libraries are bursts of similar pictures. The cluster centres
/// are the same for every `seed` (queries come from the same distribution as the pictures);
/// the per-vector noise differs.
fn clustered(n: usize, seed: u64) -> Vec<Vec<f32>> {
    let mut centre_rng = rng(42);
    let centres: Vec<Vec<f32>> = (0..1000).map(|_| (0..DIM).map(|_| centre_rng()).collect()).collect();
    let mut next = rng(seed);
    (0..n)
        .map(|i| {
            let v: Vec<f32> = centres[(i * 7919) % centres.len()].iter().map(|c| c + 0.5 * next()).collect();
            let norm = v.iter().map(|x| x * x).sum::<f32>().sqrt();
            v.into_iter().map(|x| x / norm).collect()
        })
        .collect()
}

fn percentile(sorted: &[Duration], p: f64) -> f64 {
    sorted[((sorted.len() - 1) as f64 * p).round() as usize].as_secs_f64() * 1e3
}

fn http_get(addr: &str, path: &str) -> (u16, usize) {
    let mut stream = TcpStream::connect(addr).unwrap();
    write!(stream, "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n").unwrap();
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw).unwrap();
    let status = std::str::from_utf8(&raw[9..12]).unwrap().parse().unwrap_or(0);
    (status, raw.len())
}

fn main() {
    if std::env::args().any(|a| a == "--list") {
        return; // `cargo bench -- --list` probing for criterion-style benches
    }
    let n: usize = std::env::var("IMGSEARCH_BENCH_N").ok().and_then(|v| v.parse().ok()).unwrap_or(100_000);
    let tmp = tempfile::tempdir().unwrap();
    let vectors = clustered(n, 42);

    let started = Instant::now();
    let postgres = std::env::var("IMGSEARCH_BENCH_POSTGRES").ok();
    let location = match &postgres {
        Some(admin) => support::new_database(admin, tmp.path()),
        None => imgsearch::store::Location::Folder(tmp.path().to_owned()),
    };
    let mut data = imgsearch::store::open(&location).unwrap();
    data.check_model(&ModelInfo { model: "random-weights".into(), dim: DIM, preprocess: "{}".into() }).unwrap();
    for (chunk_index, chunk) in vectors.chunks(5000).enumerate() {
        let changes: Vec<Change> = chunk
            .iter()
            .enumerate()
            .map(|(i, v)| {
                let id = (chunk_index * 5000 + i) as u64;
                Change::Upsert(ImageRecord {
                    id,
                    path: StoredPath::Utf8(format!("/photos/{}/IMG_{id:06}.jpg", 2000 + id % 25)),
                    size: 3_000_000,
                    mtime_ns: id as i128,
                    hash: format!("{id:064x}"),
                    width: 4032,
                    height: 3024,
                    format: if id.is_multiple_of(10) { "png".into() } else { "jpeg".into() },
                    facts: PhotoFacts { taken: Some(1_500_000_000 + id as i64 * 600), ..Default::default() },
                    embedding: v.clone(),
                    indexed_at: 0,
                    tags: Vec::new(),
                    facts_version: 0,
                })
            })
            .collect();
        data.apply(&changes).unwrap();
    }
    data.save().unwrap();
    let build_s = started.elapsed().as_secs_f64();

    // Nearest neighbours through the library (graph search + exact re-scoring), no model.
    let queries = clustered(1000, 7);
    let mut latencies = Vec::new();
    for q in &queries {
        let t = Instant::now();
        std::hint::black_box(data.nearest(q, 10, &[], None).unwrap());
        latencies.push(t.elapsed());
    }
    latencies.sort();
    let exact = |q: &[f32], allow: &dyn Fn(u64) -> bool| -> HashSet<u64> {
        let mut scored: Vec<(u64, f32)> = vectors
            .iter()
            .enumerate()
            .filter(|(i, _)| allow(*i as u64))
            .map(|(i, v)| (i as u64, v.iter().zip(q).map(|(a, b)| a * b).sum()))
            .collect();
        scored.sort_by(|a, b| b.1.total_cmp(&a.1));
        scored.into_iter().take(10).map(|(i, _)| i).collect()
    };
    // `filters` must select exactly what `allow` does.
    let recall = |filters: &[Filter], allow: &dyn Fn(u64) -> bool| -> f64 {
        let found: usize = queries[..200]
            .iter()
            .map(|q| {
                let truth = exact(q, allow);
                data.nearest(q, 10, filters, None).unwrap().iter().filter(|(id, _)| truth.contains(id)).count()
            })
            .sum();
        found as f64 / 2000.0
    };
    let recall_all = recall(&[], &|_| true);
    // Every tenth picture is a PNG.
    let recall_filtered = recall(&[Filter::Type("png".into())], &|id| id % 10 == 0);

    let tokenizer =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/models/tiny-clip-b32-quickgelu/tokenizer.json");
    let random_clip =
        || Clip::with_random_weights(ModelConfig::vit_base_patch32(), Some(&tokenizer), &Device::Cpu, Precision::F32);

    // Zero-shot tags: the built-in labels embedded with the ViT-B/32 text tower (what the first
    // `index` of a library does), then every picture tagged from its stored embedding, twice
    // (the second time with another threshold, as `tags --threshold` does).
    let started = Instant::now();
    let tagging = tags::build_tagging(
        "random-weights",
        &random_clip,
        tags::LabelSet::builtin(),
        tags::DEFAULT_THRESHOLD,
        tags::DEFAULT_MAX_TAGS,
        None,
        &|_, _| {},
    )
    .unwrap();
    let labels_s = started.elapsed().as_secs_f64();
    let label_count = tagging.labels.len();
    // Random weights put no label near these synthetic pictures: for the retag, labels along
    // the pictures' cluster centres (each picture then has its cluster's tag to write).
    let tagging = imgsearch::store::Tagging {
        directions: clustered(label_count, 11).into_iter().map(|d| d.iter().map(|x| 0.1 * x).collect()).collect(),
        ..tagging
    };
    data.set_tagging(Some(&tagging)).unwrap();
    let started = Instant::now();
    let first_changed = tags::retag(&mut *data, &|_, _| {}).unwrap();
    let tag_s = started.elapsed().as_secs_f64();
    let tagged: u64 = data.tag_counts().unwrap().values().sum();
    data.set_tagging(Some(&imgsearch::store::Tagging { threshold: 0.999, ..tagging })).unwrap();
    let started = Instant::now();
    let second_changed = tags::retag(&mut *data, &|_, _| {}).unwrap();
    let retag_s = started.elapsed().as_secs_f64();

    // End to end over HTTP with the ViT-B/32 text tower.
    let clip = std::sync::Arc::new(random_clip().unwrap());
    // On PostgreSQL a second server shares the library, as a second host would.
    let mut libraries = vec![data];
    if postgres.is_some() {
        libraries.push(imgsearch::store::open(&location).unwrap());
    }
    let servers: Vec<String> = libraries
        .into_iter()
        .map(|library| {
            let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
            let addr = format!("127.0.0.1:{port}");
            let options = ServeOptions {
                addr: addr.parse().unwrap(),
                upload_limit: 32 << 20,
                max_pixels: 250_000_000,
                watch_interval: None,
                // Measures search, not sign-in.
                auth: imgsearch::auth::AuthStore::for_library(&location),
                no_auth: true,
                workers: imgsearch::server::default_workers(),
                queue_timeout: Duration::from_secs(10),
                idle_timeout: imgsearch::server::DEFAULT_IDLE_TIMEOUT,
                tls: None,
                trust_proxy: false,
                announce_in: None,
            };
            let engine = SearchEngine::new(library, clip.clone());
            std::thread::spawn(move || serve(engine, options, None, None).unwrap());
            while TcpStream::connect(&addr).is_err() {
                std::thread::sleep(Duration::from_millis(20));
            }
            addr
        })
        .collect();
    let addr = servers[0].clone();
    let words = ["sunset", "beach", "dog", "city at night", "mountain lake", "birthday cake", "snow", "red car"];
    // Every text different (a number in it), so that each runs the text tower: the server keeps
    // the embeddings of recent query texts, which `cached` measures.
    let query =
        |i: usize| format!("/api/search?q=a%20photo%20of%20{}%20{i}&k=20", words[i % words.len()].replace(' ', "%20"));
    let cached = |i: usize| {
        format!("/api/search?q=a%20photo%20of%20{}&k=20&offset=20", words[i % words.len()].replace(' ', "%20"))
    };
    for i in 0..10 {
        http_get(&addr, &query(1_000_000 + i)); // warm-up
        http_get(&addr, &cached(i));
    }
    let timed = |path: &dyn Fn(usize) -> String| {
        let mut times: Vec<Duration> = (0..200)
            .map(|i| {
                let t = Instant::now();
                let (status, _) = http_get(&addr, &path(i));
                assert_eq!(status, 200);
                t.elapsed()
            })
            .collect();
        times.sort();
        times
    };
    let http = timed(&query);
    let http_cached = timed(&cached);
    // A composed query with two new texts, a weight and one to move away from (issue 18's
    // target: at most 1.5× a plain query).
    let composed = |i: usize| {
        format!(
            "/api/search?q=2:a%20photo%20of%20{}%20{i}%20-crowd%20{i}&k=20",
            words[i % words.len()].replace(' ', "%20")
        )
    };
    let http_composed = timed(&composed);

    let clients = 50;
    let per_client = 8;
    let t = Instant::now();
    let errors: usize = std::thread::scope(|s| {
        let handles: Vec<_> = (0..clients)
            .map(|c| {
                let addr = servers[c % servers.len()].clone();
                s.spawn(move || {
                    (0..per_client).filter(|i| http_get(&addr, &query(c * per_client + i)).0 != 200).count()
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).sum()
    });
    let rps = (clients * per_client) as f64 / t.elapsed().as_secs_f64();

    let store = if postgres.is_some() { "PostgreSQL + pgvector, two servers" } else { "data folder" };
    println!("## Search at {n} pictures (dim {DIM}, {store})\n");
    println!("| measure | value |\n|---|---:|");
    println!("| library build (records, filter fields, HNSW inserts) | {build_s:.0} s |");
    println!(
        "| nearest-neighbour search p50 / p99 (k=10, default breadth, exact re-scoring, 1 thread) | {:.2} / {:.2} ms |",
        percentile(&latencies, 0.5),
        percentile(&latencies, 0.99)
    );
    println!("| nearest-neighbour recall@10 vs exact | {recall_all:.3} |");
    println!(
        "| built-in tag labels embedded ({label_count} labels × 3 prompts, ViT-B/32 text tower) | {labels_s:.1} s |"
    );
    println!(
        "| every picture tagged against {label_count} labels, from stored embeddings ({first_changed} changed, {:.1} tags each) | {tag_s:.1} s |",
        tagged as f64 / n as f64
    );
    println!("| retagged at another threshold ({second_changed} changed) | {retag_s:.1} s |");
    println!("| nearest-neighbour recall@10 vs exact, `type:png` filter (10%) | {recall_filtered:.3} |");
    println!(
        "| text query over HTTP p50 / p99 (ViT-B/32 text tower, k=20, every text new) | {:.1} / {:.1} ms |",
        percentile(&http, 0.5),
        percentile(&http, 0.99)
    );
    println!(
        "| composed query over HTTP p50 / p99 (`2:a photo of … -crowd …`, both texts new) | {:.1} / {:.1} ms ({:.2}× the plain query's p50) |",
        percentile(&http_composed, 0.5),
        percentile(&http_composed, 0.99),
        percentile(&http_composed, 0.5) / percentile(&http, 0.5)
    );
    println!(
        "| the next page of a query already asked (text embedding cached) p50 / p99 | {:.1} / {:.1} ms |",
        percentile(&http_cached, 0.5),
        percentile(&http_cached, 0.99)
    );
    println!("| {clients} concurrent clients, every text new: requests/s, errors | {rps:.1}/s, {errors} |");
}
