//! Encoder speed in the exact openai/clip-vit-base-patch32 shape (random weights): image tower
//! images/s at batch 1, 8, 32; text query latency at 8 and 77 tokens. In f32, and again in bf16
//! (`image_encoder_bf16`, `text_encoder_bf16`) where the CPU has AMX or AVX512_BF16. The same
//! for google/siglip-base-patch16-224's shape (`siglip_image_encoder`, `siglip_text_encoder`:
//! its texts are always padded to 64 tokens); `cargo bench --bench encoders -- siglip` runs those.
//! `scripts/compare_peers.py` reads these results (ids must stay stable).

use std::path::Path;

use candle_core::Device;
use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use imgsearch::model::{ModelConfig, Precision};
use imgsearch::Clip;

// Tensors of many MB are allocated and freed per layer; glibc's malloc hands them back to the OS
// and page-faults them in again each time (measured ~5% of the image tower). mimalloc reuses them.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn vit_b32(precision: Precision) -> Clip {
    let tokenizer =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/models/tiny-clip-b32-quickgelu/tokenizer.json");
    Clip::with_random_weights(ModelConfig::vit_base_patch32(), Some(&tokenizer), &Device::Cpu, precision).unwrap()
}

/// SigLIP B/16 at 224 (`SiglipConfig()`'s defaults) with the SigLIP fixture's SentencePiece-style
/// tokenizer (a small vocabulary: speed does not depend on which ids come in).
fn siglip_b16(precision: Precision) -> Clip {
    let tokenizer = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/models/tiny-siglip-sp/tokenizer.json");
    let config =
        ModelConfig::from_json(serde_json::json!({"model_type": "siglip"}), Path::new("SiglipConfig()")).unwrap();
    Clip::with_random_weights(config, Some(&tokenizer), &Device::Cpu, precision).unwrap()
}

/// The precisions this machine runs, with the suffix of their benchmark groups.
fn precisions() -> Vec<(Precision, &'static str)> {
    let mut list = vec![(Precision::F32, "")];
    if Precision::Bf16.check(&Device::Cpu).is_ok() {
        list.push((Precision::Bf16, "_bf16"));
    }
    list
}

fn image_encoder(c: &mut Criterion) {
    for (precision, suffix) in precisions() {
        image_encoder_in(c, &vit_b32(precision), &format!("image_encoder{suffix}"));
        image_encoder_in(c, &siglip_b16(precision), &format!("siglip_image_encoder{suffix}"));
    }
}

fn image_encoder_in(c: &mut Criterion, clip: &Clip, name: &str) {
    let size = clip.config().vision_config.image_size;
    let mut group = c.benchmark_group(name);
    group.sample_size(10);
    for batch in [1usize, 8, 32] {
        let images = vec![clip.preprocess_config().test_pattern(size, size); batch];
        group.throughput(Throughput::Elements(batch as u64));
        group.bench_with_input(BenchmarkId::new("batch", batch), &images, |b, images| {
            b.iter(|| clip.embed_images(images).unwrap())
        });
    }
    group.finish();
}

fn text_encoder(c: &mut Criterion) {
    let short = "a photo of a cat night"; // 6 words + start/end = 8 tokens
    let long = "a very long caption that keeps going on ".repeat(20); // truncated to 77
    for (precision, suffix) in precisions() {
        let texts = [(8usize, short.to_string()), (77, long.clone())];
        text_encoder_in(c, &vit_b32(precision), &format!("text_encoder{suffix}"), &texts);
        // SigLIP pads every text to its 64-token context.
        let texts = [(64usize, short.to_string())];
        text_encoder_in(c, &siglip_b16(precision), &format!("siglip_text_encoder{suffix}"), &texts);
    }
}

fn text_encoder_in(c: &mut Criterion, clip: &Clip, name: &str, texts: &[(usize, String)]) {
    let mut group = c.benchmark_group(name);
    for (tokens, text) in texts {
        assert_eq!(clip.tokenizer().encode(text).unwrap().ids.len(), *tokens);
        group.bench_with_input(BenchmarkId::new("tokens", tokens), text, |b, text| {
            b.iter(|| clip.embed_texts(&[text.as_str()]).unwrap())
        });
    }
    group.finish();
}

criterion_group!(benches, image_encoder, text_encoder);
criterion_main!(benches);
