//! Fixtures and helpers shared by the integration tests.
#![allow(dead_code)] // each test binary uses a different subset

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use candle_core::Device;
use serde::Deserialize;

pub mod clip_like;
pub mod http;
pub mod hub;
pub mod npy;
pub mod server;

pub const MODELS: [&str; 2] = ["tiny-clip-b32-quickgelu", "tiny-clip-p14-gelu"];

pub fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures")
}

pub fn model_dir(name: &str) -> PathBuf {
    fixtures().join("models").join(name)
}

pub fn image_path(name: &str) -> PathBuf {
    fixtures().join("images").join(name)
}

/// What `scripts/make_test_model.py` computed with `transformers` for one checkpoint.
#[derive(Deserialize)]
pub struct Reference {
    pub dim: usize,
    pub texts: Vec<String>,
    pub token_ids: HashMap<String, Vec<u32>>,
    pub image_embeds: HashMap<String, Vec<f32>>,
    pub text_embeds: HashMap<String, Vec<f32>>,
}

pub fn reference(model: &str) -> Reference {
    let path = fixtures().join("reference").join(format!("{model}.json"));
    serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap()
}

/// `CLIPImageProcessor`'s pixel_values for every fixture image, (3, H, W) each.
pub fn reference_pixels(model: &str) -> HashMap<String, candle_core::Tensor> {
    let path = fixtures().join("reference").join(format!("{model}_pixels.safetensors"));
    candle_core::safetensors::load(path, &Device::Cpu).unwrap()
}

pub fn cosine(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len(), "embedding lengths differ");
    let dot: f32 = a.iter().zip(b).map(|(x, y)| x * y).sum();
    let na: f32 = a.iter().map(|x| x * x).sum::<f32>().sqrt();
    let nb: f32 = b.iter().map(|x| x * x).sum::<f32>().sqrt();
    dot / (na * nb)
}

/// Every device this build and machine can run the tests on: the CPU always, plus the GPU of
/// the `cuda` / `metal` feature when one is present. Tests loop over it, so one test body
/// proves parity everywhere.
pub fn devices() -> Vec<Device> {
    let mut devices = vec![Device::Cpu];
    if cfg!(feature = "cuda") && candle_core::utils::cuda_is_available() {
        devices.push(Device::new_cuda(0).expect("CUDA reported available"));
    }
    if cfg!(feature = "metal") && candle_core::utils::metal_is_available() {
        devices.push(Device::new_metal(0).expect("Metal reported available"));
    }
    devices
}
