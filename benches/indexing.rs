//! End-to-end `imgsearch index` speed on camera-size JPEGs with a ViT-B/32-shaped model
//! (random weights), next to the decode-only and encoder-only rates it is made of; and the time
//! of an unchanged re-run over 10,000 files. Not criterion: each figure is one timed run.
//!
//! Run: `cargo bench --bench indexing` (`IMGSEARCH_BENCH_IMAGES`, default 128 photos of 12 MP).
//! With `IMGSEARCH_BENCH_POSTGRES=postgres://USER@HOST:PORT/DB` (a server with pgvector, e.g.
//! from `scripts/postgres.sh start DIR`) it also indexes into PostgreSQL libraries (fresh
//! databases beside DB), next to a data folder in the same run.

use std::path::{Path, PathBuf};
use std::time::Instant;

use candle_core::Device;
use image::{ImageEncoder, RgbImage};
use imgsearch::ingest::decode::{decode_file, DecodeOptions, DEFAULT_MAX_PIXELS};
use imgsearch::ingest::pipeline::{self, IndexOptions};
use imgsearch::model::{ModelConfig, ModelSpec, Precision, PreprocessedImage, Towers};
use imgsearch::store::roots::{Mounts, Root};
use imgsearch::store::Location;
use imgsearch::Clip;
use rayon::prelude::*;

mod support;

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

const BATCH: usize = 16;

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// `count` distinct 12 MP photo-like JPEGs (a real photo upscaled, per-file sensor noise).
fn camera_photos(count: usize) -> PathBuf {
    let dir = root().join(format!("target/bench-data/camera-{count}"));
    if dir.join(format!("photo_{:04}.jpg", count - 1)).exists() {
        return dir;
    }
    std::fs::create_dir_all(&dir).unwrap();
    let base = image::open(root().join("tests/fixtures/images/chelsea_progressive.jpg")).unwrap().to_rgb8();
    let big: RgbImage = image::imageops::resize(&base, 4032, 3024, image::imageops::FilterType::Triangle);
    (0..count).into_par_iter().for_each(|i| {
        let mut img = big.clone();
        let mut state = 0x2545F4914F6CDD1Du64.wrapping_mul(i as u64 + 1);
        for px in img.pixels_mut() {
            for c in px.0.iter_mut() {
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                *c = (*c as i32 + (state % 9) as i32 - 4).clamp(0, 255) as u8;
            }
        }
        let file = std::io::BufWriter::new(std::fs::File::create(dir.join(format!("photo_{i:04}.jpg"))).unwrap());
        image::codecs::jpeg::JpegEncoder::new_with_quality(file, 90)
            .write_image(img.as_raw(), 4032, 3024, image::ExtendedColorType::Rgb8)
            .unwrap();
    });
    dir
}

fn vit_b32_checkpoint() -> PathBuf {
    let dir = root().join("target/bench-data/vit-b32-random");
    if !dir.join("model.safetensors").exists() {
        let tokenizer = root().join("tests/fixtures/models/tiny-clip-b32-quickgelu/tokenizer.json");
        Clip::write_random_checkpoint(&ModelConfig::vit_base_patch32(), &tokenizer, &dir).unwrap();
    }
    dir
}

fn options(roots: Vec<PathBuf>) -> IndexOptions {
    IndexOptions {
        roots: roots.into_iter().map(|path| Root { name: None, path }).collect(),
        mounts: Mounts::default(),
        hidden: false,
        batch_size: BATCH,
        max_pixels: DEFAULT_MAX_PIXELS,
        max_file_size: 1 << 30,
        progress: false,
        remove_from_empty: false,
        rescan: false,
    }
}

fn peak_rss_mb() -> f64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find(|l| l.starts_with("VmHWM:"))
        .and_then(|l| l.split_whitespace().nth(1)?.parse::<f64>().ok())
        .unwrap_or(0.0)
        / 1024.0
}

struct Run {
    encode_rate: f64,
    embeddings: Vec<Vec<f32>>,
    /// `index` with the model already in memory (as `serve --watch` runs it, and as the Python
    /// peer loop is timed), then the whole command: model load included.
    e2e_loaded_rate: f64,
    e2e_rate: f64,
}

/// The encoder alone on already decoded photos (the pipeline's batch size), then `index` end to
/// end into a fresh data folder (walk + read + hash + decode + encode + write), first with the
/// model already loaded, then with its load included.
fn encode_and_index(spec: &ModelSpec, decoded: &[PreprocessedImage], photos: &Path, count: usize) -> Run {
    let clip = spec.load(&Device::Cpu, Towers::Image).unwrap();
    let t = Instant::now();
    let mut embeddings = Vec::with_capacity(decoded.len());
    for batch in decoded.chunks(BATCH) {
        embeddings.extend(clip.embed_images(batch).unwrap());
    }
    let encode_rate = count as f64 / t.elapsed().as_secs_f64();
    let index_rate = |loaded: Option<&Clip>| {
        let data_dir = tempfile::tempdir().unwrap();
        count as f64 / index_seconds(&Location::Folder(data_dir.path().to_owned()), spec, loaded, photos, count)
    };
    let e2e_loaded_rate = index_rate(Some(&clip));
    drop(clip);
    Run { encode_rate, embeddings, e2e_loaded_rate, e2e_rate: index_rate(None) }
}

/// Seconds `index` takes to add the `count` pictures under `photos` to a new library at `location`.
fn index_seconds(location: &Location, spec: &ModelSpec, loaded: Option<&Clip>, photos: &Path, count: usize) -> f64 {
    let mut data = imgsearch::store::open(location).unwrap();
    let t = Instant::now();
    let summary = pipeline::run(&mut *data, spec, loaded, &Device::Cpu, &options(vec![photos.to_path_buf()])).unwrap();
    assert_eq!(summary.indexed as usize, count);
    t.elapsed().as_secs_f64()
}

fn dot(a: &[f32], b: &[f32]) -> f32 {
    a.iter().zip(b).map(|(x, y)| x * y).sum()
}

fn main() {
    if std::env::args().any(|a| a == "--list") {
        return;
    }
    let count: usize = std::env::var("IMGSEARCH_BENCH_IMAGES").ok().and_then(|v| v.parse().ok()).unwrap_or(128);
    let photos = camera_photos(count);
    let model = vit_b32_checkpoint();
    let spec = ModelSpec::resolve(model.to_str().unwrap()).unwrap();
    let files: Vec<PathBuf> = std::fs::read_dir(&photos).unwrap().map(|e| e.unwrap().path()).collect();
    let threads = rayon::current_num_threads();

    // Decode only: all cores, the pipeline's decode path.
    let t = Instant::now();
    let decoded: Vec<PreprocessedImage> = files
        .par_iter()
        .map(|f| {
            spec.preprocess
                .apply(&decode_file(f, &DecodeOptions::for_model(&spec.preprocess, DEFAULT_MAX_PIXELS)).unwrap().rgb)
        })
        .collect();
    let decode_rate = count as f64 / t.elapsed().as_secs_f64();

    let f32_run = encode_and_index(&spec, &decoded, &photos, count);
    let (encode_rate, e2e_loaded_rate, e2e_rate) = (f32_run.encode_rate, f32_run.e2e_loaded_rate, f32_run.e2e_rate);
    // bf16 where this CPU has it, with how far its embeddings of the same photos stray.
    let bf16 = Precision::Bf16.check(&Device::Cpu).is_ok().then(|| {
        let run = encode_and_index(&spec.clone().with_precision(Precision::Bf16), &decoded, &photos, count);
        // As distances (1 - cosine) next to the distance between *different* photos in f32: these
        // photos are one picture with noise and the weights are random, so all embeddings sit
        // close together; bf16's error only means something relative to that spread.
        let pairs = run.embeddings.iter().zip(&f32_run.embeddings);
        let errors: Vec<f64> = pairs.map(|(a, b)| 1.0 - dot(a, b) as f64).collect();
        let neighbours = f32_run.embeddings.windows(2).map(|w| 1.0 - dot(&w[0], &w[1]) as f64);
        serde_json::json!({"encode_per_s": run.encode_rate, "end_to_end_per_s": run.e2e_rate,
                           "end_to_end_loaded_per_s": run.e2e_loaded_rate,
                           "distance_to_f32_max": errors.iter().cloned().fold(0.0, f64::max),
                           "distance_to_f32_mean": errors.iter().sum::<f64>() / errors.len() as f64,
                           "f32_distance_between_photos_mean": neighbours.sum::<f64>() / (count - 1).max(1) as f64})
    });
    let rss = peak_rss_mb();

    // Unchanged re-run over 10,000 small files (the tiny test model: a re-run loads no model).
    let many = root().join("target/bench-data/small-10000");
    if !many.join("9999.png").exists() {
        std::fs::create_dir_all(&many).unwrap();
        (0..10_000u32).into_par_iter().for_each(|i| {
            RgbImage::from_fn(16, 16, |x, y| image::Rgb([(i % 251) as u8, (i / 251) as u8, (x * 16 + y) as u8]))
                .save(many.join(format!("{i}.png")))
                .unwrap();
        });
    }
    let tiny =
        ModelSpec::resolve(root().join("tests/fixtures/models/tiny-clip-b32-quickgelu").to_str().unwrap()).unwrap();
    let small_dir = tempfile::tempdir().unwrap();
    let mut small = imgsearch::store::open(&Location::Folder(small_dir.path().to_owned())).unwrap();
    pipeline::run(&mut *small, &tiny, None, &Device::Cpu, &options(vec![many.clone()])).unwrap();
    let t = Instant::now();
    let rerun = pipeline::run(&mut *small, &tiny, None, &Device::Cpu, &options(vec![many.clone()])).unwrap();
    let rerun_s = t.elapsed().as_secs_f64();
    assert_eq!(rerun.unchanged, 10_000);

    println!("## Indexing {count} camera-size JPEGs (4032x3024), ViT-B/32 shape, batch {BATCH}, {threads} threads\n");
    println!("| measure | images/s |\n|---|---:|");
    println!("| decode + preprocess only (all threads) | {decode_rate:.1} |");
    println!("| image encoder only | {encode_rate:.1} |");
    println!(
        "| end to end `index`, model in memory | {e2e_loaded_rate:.1} ({:.0}% of encoder-only) |",
        100.0 * e2e_loaded_rate / encode_rate
    );
    println!("| end to end `index`, model load included | {e2e_rate:.1} |");
    if let Some(b) = &bf16 {
        println!("| bf16 image encoder only | {:.1} |", b["encode_per_s"].as_f64().unwrap());
        println!(
            "| bf16 end to end `index`, model in memory | {:.1} |",
            b["end_to_end_loaded_per_s"].as_f64().unwrap()
        );
        println!("| bf16 end to end `index`, model load included | {:.1} |", b["end_to_end_per_s"].as_f64().unwrap());
        println!(
            "\nbf16 vs f32 embeddings of the same photo, distance (1 - cosine): max {:.2e}, mean {:.2e}; \
             f32 embeddings of two different photos: mean {:.2e}.",
            b["distance_to_f32_max"].as_f64().unwrap(),
            b["distance_to_f32_mean"].as_f64().unwrap(),
            b["f32_distance_between_photos_mean"].as_f64().unwrap()
        );
    }
    println!("\nPeak RSS of the whole benchmark process: {rss:.0} MB.");
    println!("Unchanged re-run over 10,000 files: {rerun_s:.2} s.");
    if let Ok(admin) = std::env::var("IMGSEARCH_BENCH_POSTGRES") {
        // Back to back, the model in memory: the camera photos (the encoder sets the pace), and
        // the 10,000 small files with the tiny model (storage sets it).
        let clip = spec.load(&Device::Cpu, Towers::Image).unwrap();
        let cache = tempfile::tempdir().unwrap();
        let folders = [tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap()];
        let folder = |i: usize| Location::Folder(folders[i].path().to_owned());
        let camera = |location: Location| count as f64 / index_seconds(&location, &spec, Some(&clip), &photos, count);
        let (camera_folder, camera_pg) = (camera(folder(0)), camera(support::new_database(&admin, cache.path())));
        let small = |location: Location| 10_000.0 / index_seconds(&location, &tiny, None, &many, 10_000);
        let (small_folder, small_pg) = (small(folder(1)), small(support::new_database(&admin, cache.path())));
        println!("\n### Into PostgreSQL (`--store`), same run\n");
        println!("| `index`, first run | data folder | PostgreSQL | PostgreSQL / folder |\n|---|---:|---:|---:|");
        println!(
            "| {count} camera photos, ViT-B/32 in memory | {camera_folder:.1}/s | {camera_pg:.1}/s | {:.0}% |",
            100.0 * camera_pg / camera_folder
        );
        println!(
            "| 10,000 small PNGs, tiny model | {small_folder:.0}/s | {small_pg:.0}/s | {:.0}% |",
            100.0 * small_pg / small_folder
        );
    }
    // For scripts/compare_peers.py, which runs a Python peer pipeline on the same photos.
    let results = serde_json::json!({
        "photos": photos, "count": count, "batch": BATCH, "threads": threads,
        "cpu_kernels": imgsearch::model::kernels::isa().name(),
        "jpeg_decoder": if cfg!(feature = "turbojpeg") {
            "own reduced-size decoder at 1/8 and 1/4, libjpeg-turbo for the rest"
        } else {
            "own reduced-size decoder at 1/8 and 1/4, jpeg-decoder for the rest"
        },
        "decode_per_s": decode_rate, "encode_per_s": encode_rate, "end_to_end_per_s": e2e_rate,
        "end_to_end_loaded_per_s": e2e_loaded_rate, "checkpoint": model,
        "rerun_10000_s": rerun_s, "peak_rss_mb": rss, "bf16": bf16,
    });
    std::fs::write(root().join("target/bench-data/indexing.json"), results.to_string()).unwrap();
}
