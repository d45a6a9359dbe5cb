//! CLIP encoder speed in the exact openai/clip-vit-base-patch32 shape (random weights):
//! image tower images/s at batch 1, 8, 32; text query latency at 8 and 77 tokens.
//! `scripts/compare_peers.py` reads these results (ids must stay stable).

use std::path::Path;

use candle_core::Device;
use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use imgsearch::model::{ClipConfig, PreprocessedImage};
use imgsearch::Clip;

// Tensors of many MB are allocated and freed per layer; glibc's malloc hands them back to the OS
// and page-faults them in again each time (measured ~5% of the image tower). mimalloc reuses them.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn vit_b32() -> Clip {
    let tokenizer =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/models/tiny-clip-b32-quickgelu/tokenizer.json");
    Clip::with_random_weights(ClipConfig::vit_base_patch32(), &tokenizer, &Device::Cpu).unwrap()
}

fn image_encoder(c: &mut Criterion) {
    let clip = vit_b32();
    let size = clip.config().vision_config.image_size;
    let mut group = c.benchmark_group("image_encoder");
    group.sample_size(10);
    for batch in [1usize, 8, 32] {
        let pixels: Vec<f32> = (0..3 * size * size).map(|i| ((i * 7919) % 255) as f32 / 128.0 - 1.0).collect();
        let images = vec![PreprocessedImage { pixels, height: size, width: size }; batch];
        group.throughput(Throughput::Elements(batch as u64));
        group.bench_with_input(BenchmarkId::new("batch", batch), &images, |b, images| {
            b.iter(|| clip.embed_images(images).unwrap())
        });
    }
    group.finish();
}

fn text_encoder(c: &mut Criterion) {
    let clip = vit_b32();
    let mut group = c.benchmark_group("text_encoder");
    let short = "a photo of a cat night"; // 6 words + start/end = 8 tokens
    let long = "a very long caption that keeps going on ".repeat(20); // truncated to 77
    for (tokens, text) in [(8usize, short.to_string()), (77, long)] {
        assert_eq!(clip.tokenizer().encode(&text).unwrap().ids.len(), tokens);
        group.bench_with_input(BenchmarkId::new("tokens", tokens), &text, |b, text| {
            b.iter(|| clip.embed_texts(&[text.as_str()]).unwrap())
        });
    }
    group.finish();
}

criterion_group!(benches, image_encoder, text_encoder);
criterion_main!(benches);
