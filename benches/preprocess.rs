//! Decode + preprocess of camera-size JPEGs to the 224x224 CLIP input, one thread:
//! the DCT-scaled fast path against the exact full decode. Writes the JPEGs it uses to
//! target/bench-data/ so `scripts/compare_peers.py` can time Pillow on the same files.

use std::path::{Path, PathBuf};

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion};
use image::{imageops::FilterType, ImageEncoder, RgbImage};
use imgsearch::ingest::decode::{decode_file, DecodeOptions, DEFAULT_MAX_PIXELS};
use imgsearch::model::PreprocessConfig;

// Tensors of many MB are allocated and freed per layer; glibc's malloc hands them back to the OS
// and page-faults them in again each time (measured ~5% of the image tower). mimalloc reuses them.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// A photo-like JPEG of the given size: a real photo upscaled, plus sensor-like noise so the
/// entropy decoder has camera-like work to do.
fn camera_jpeg(name: &str, width: u32, height: u32) -> PathBuf {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let dir = root.join("target/bench-data");
    let path = dir.join(name);
    if path.exists() {
        return path;
    }
    std::fs::create_dir_all(&dir).unwrap();
    let photo = image::open(root.join("tests/fixtures/images/astronaut.jpg")).unwrap();
    let mut big: RgbImage = image::imageops::resize(&photo.to_rgb8(), width, height, FilterType::CatmullRom);
    let mut state = 0x2545F4914F6CDD1Du64;
    for px in big.pixels_mut() {
        for c in px.0.iter_mut() {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            *c = (*c as i32 + (state % 9) as i32 - 4).clamp(0, 255) as u8;
        }
    }
    let file = std::io::BufWriter::new(std::fs::File::create(&path).unwrap());
    image::codecs::jpeg::JpegEncoder::new_with_quality(file, 90)
        .write_image(big.as_raw(), width, height, image::ExtendedColorType::Rgb8)
        .unwrap();
    path
}

fn preprocess(c: &mut Criterion) {
    let pre = PreprocessConfig::clip_default(224);
    let files =
        [("12mp", camera_jpeg("photo_12mp.jpg", 4032, 3024)), ("3mp", camera_jpeg("photo_3mp.jpg", 2016, 1512))];
    let mut group = c.benchmark_group("preprocess");
    group.sample_size(20);
    for (label, path) in &files {
        for (name, options) in
            [("fast", DecodeOptions::for_model(&pre, DEFAULT_MAX_PIXELS)), ("exact", DecodeOptions::default())]
        {
            group.bench_with_input(BenchmarkId::new(name, label), path, |b, path| {
                b.iter(|| pre.apply(&decode_file(path, &options).unwrap().rgb))
            });
        }
    }
    group.finish();
}

criterion_group!(benches, preprocess);
criterion_main!(benches);
