//! CLIP configuration, read from a checkpoint's `config.json` and `preprocessor_config.json`.
//!
//! Field names and defaults mirror Hugging Face's `CLIPConfig` / `CLIPImageProcessor`, so any
//! checkpoint saved by `transformers` loads without a translation table. Nothing about the shape
//! is hard-coded: a field missing from the file takes the value `transformers` would give it.

use serde::Deserialize;
use std::path::Path;

use crate::error::{Error, Result};

/// The activation inside each transformer MLP (`hidden_act`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Activation {
    /// `x * sigmoid(1.702 x)`: what OpenAI's original checkpoints use.
    QuickGelu,
    /// Exact GELU (erf), `transformers`' `"gelu"`.
    Gelu,
    /// The tanh approximation, `"gelu_new"` / `"gelu_pytorch_tanh"` in `transformers`.
    #[serde(alias = "gelu_pytorch_tanh")]
    GeluNew,
}

#[derive(Debug, Clone, Deserialize, serde::Serialize)]
pub struct TextConfig {
    #[serde(default = "TextConfig::default_vocab_size")]
    pub vocab_size: usize,
    #[serde(default = "TextConfig::default_hidden_size")]
    pub hidden_size: usize,
    #[serde(default = "TextConfig::default_intermediate_size")]
    pub intermediate_size: usize,
    #[serde(default = "default_num_hidden_layers")]
    pub num_hidden_layers: usize,
    #[serde(default = "TextConfig::default_num_attention_heads")]
    pub num_attention_heads: usize,
    #[serde(default = "TextConfig::default_max_position_embeddings")]
    pub max_position_embeddings: usize,
    #[serde(default = "default_activation")]
    pub hidden_act: Activation,
    #[serde(default = "default_layer_norm_eps")]
    pub layer_norm_eps: f64,
}

impl TextConfig {
    fn default_vocab_size() -> usize {
        49408
    }
    fn default_hidden_size() -> usize {
        512
    }
    fn default_intermediate_size() -> usize {
        2048
    }
    fn default_num_attention_heads() -> usize {
        8
    }
    fn default_max_position_embeddings() -> usize {
        77
    }
}

#[derive(Debug, Clone, Deserialize, serde::Serialize)]
pub struct VisionConfig {
    #[serde(default = "VisionConfig::default_hidden_size")]
    pub hidden_size: usize,
    #[serde(default = "VisionConfig::default_intermediate_size")]
    pub intermediate_size: usize,
    #[serde(default = "default_num_hidden_layers")]
    pub num_hidden_layers: usize,
    #[serde(default = "VisionConfig::default_num_attention_heads")]
    pub num_attention_heads: usize,
    #[serde(default = "VisionConfig::default_num_channels")]
    pub num_channels: usize,
    #[serde(default = "VisionConfig::default_image_size")]
    pub image_size: usize,
    #[serde(default = "VisionConfig::default_patch_size")]
    pub patch_size: usize,
    #[serde(default = "default_activation")]
    pub hidden_act: Activation,
    #[serde(default = "default_layer_norm_eps")]
    pub layer_norm_eps: f64,
}

impl VisionConfig {
    fn default_hidden_size() -> usize {
        768
    }
    fn default_intermediate_size() -> usize {
        3072
    }
    fn default_num_attention_heads() -> usize {
        12
    }
    fn default_num_channels() -> usize {
        3
    }
    fn default_image_size() -> usize {
        224
    }
    fn default_patch_size() -> usize {
        32
    }

    pub fn num_patches(&self) -> usize {
        (self.image_size / self.patch_size).pow(2)
    }
}

fn default_num_hidden_layers() -> usize {
    12
}
fn default_activation() -> Activation {
    Activation::QuickGelu
}
fn default_layer_norm_eps() -> f64 {
    1e-5
}

/// The top-level `config.json` of a `CLIPModel` checkpoint.
#[derive(Debug, Clone, Deserialize, serde::Serialize)]
pub struct ClipConfig {
    pub text_config: TextConfig,
    pub vision_config: VisionConfig,
    #[serde(default = "ClipConfig::default_projection_dim")]
    pub projection_dim: usize,
}

impl ClipConfig {
    fn default_projection_dim() -> usize {
        512
    }

    pub fn from_file(path: &Path) -> Result<Self> {
        let config: ClipConfig = read_json(path)?;
        config.validate(path)?;
        Ok(config)
    }

    /// The exact shape of `openai/clip-vit-base-patch32` (used by benchmarks with random weights).
    pub fn vit_base_patch32() -> Self {
        serde_json::from_str(r#"{"text_config": {}, "vision_config": {}}"#).expect("defaults are the ViT-B/32 shape")
    }

    fn validate(&self, path: &Path) -> Result<()> {
        let bad = |why: String| Err(Error::BadCheckpoint { path: path.to_owned(), reason: why });
        let v = &self.vision_config;
        let t = &self.text_config;
        if v.patch_size == 0 || !v.image_size.is_multiple_of(v.patch_size) {
            return bad(format!("vision image_size {} is not a multiple of patch_size {}", v.image_size, v.patch_size));
        }
        for (tower, hidden, heads) in
            [("vision", v.hidden_size, v.num_attention_heads), ("text", t.hidden_size, t.num_attention_heads)]
        {
            if heads == 0 || hidden % heads != 0 {
                return bad(format!("{tower} hidden_size {hidden} is not divisible by num_attention_heads {heads}"));
            }
        }
        if t.max_position_embeddings < 2 {
            return bad("text max_position_embeddings must leave room for the start and end tokens".into());
        }
        Ok(())
    }
}

/// How `CLIPImageProcessor` turns a picture into the model's input, from `preprocessor_config.json`.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct PreprocessConfig {
    pub do_resize: bool,
    /// Length the shortest side is resized to.
    pub shortest_edge: u32,
    pub do_center_crop: bool,
    pub crop_height: u32,
    pub crop_width: u32,
    pub do_rescale: bool,
    pub rescale_factor: f32,
    pub do_normalize: bool,
    pub image_mean: [f32; 3],
    pub image_std: [f32; 3],
    pub resample: Resample,
}

/// PIL's resampling filters, by the integer codes `preprocessor_config.json` stores.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub enum Resample {
    Nearest,
    Lanczos,
    Bilinear,
    Bicubic,
    Box,
    Hamming,
}

impl Resample {
    fn from_pil_code(code: u64) -> Option<Self> {
        Some(match code {
            0 => Self::Nearest,
            1 => Self::Lanczos,
            2 => Self::Bilinear,
            3 => Self::Bicubic,
            4 => Self::Box,
            5 => Self::Hamming,
            _ => return None,
        })
    }
}

const OPENAI_CLIP_MEAN: [f32; 3] = [0.481_454_66, 0.457_827_5, 0.408_210_73];
const OPENAI_CLIP_STD: [f32; 3] = [0.268_629_5, 0.261_302_6, 0.275_777_1];

impl PreprocessConfig {
    /// `CLIPImageProcessor`'s defaults, sized for a model whose input is `image_size` square.
    pub fn clip_default(image_size: u32) -> Self {
        Self {
            do_resize: true,
            shortest_edge: image_size,
            do_center_crop: true,
            crop_height: image_size,
            crop_width: image_size,
            do_rescale: true,
            rescale_factor: 1.0 / 255.0,
            do_normalize: true,
            image_mean: OPENAI_CLIP_MEAN,
            image_std: OPENAI_CLIP_STD,
            resample: Resample::Bicubic,
        }
    }

    /// Reads `preprocessor_config.json`; fields it lacks keep `CLIPImageProcessor`'s defaults.
    pub fn from_file(path: &Path, image_size: u32) -> Result<Self> {
        let raw: serde_json::Value = read_json(path)?;
        let bad = |why: String| Error::BadCheckpoint { path: path.to_owned(), reason: why };
        let mut cfg = Self::clip_default(image_size);
        let get = |key: &str| raw.get(key).filter(|v| !v.is_null());
        if let Some(v) = get("do_resize").and_then(|v| v.as_bool()) {
            cfg.do_resize = v;
        }
        if let Some(size) = get("size") {
            // Either a plain integer (older files) or {"shortest_edge": n}; {"height","width"}
            // is a fixed-size resize, which CLIP processors never use.
            cfg.shortest_edge = match size.as_u64().or_else(|| size.get("shortest_edge").and_then(|v| v.as_u64())) {
                Some(n) => n as u32,
                None => {
                    return Err(bad(format!(
                        "unsupported `size` {size}: expected an integer or {{\"shortest_edge\": n}}"
                    )))
                }
            };
        }
        if let Some(v) = get("do_center_crop").and_then(|v| v.as_bool()) {
            cfg.do_center_crop = v;
        }
        if let Some(crop) = get("crop_size") {
            let (h, w) = match crop.as_u64() {
                Some(n) => (n, n),
                None => match (crop.get("height").and_then(|v| v.as_u64()), crop.get("width").and_then(|v| v.as_u64()))
                {
                    (Some(h), Some(w)) => (h, w),
                    _ => return Err(bad(format!("unsupported `crop_size` {crop}"))),
                },
            };
            cfg.crop_height = h as u32;
            cfg.crop_width = w as u32;
        }
        if let Some(v) = get("do_rescale").and_then(|v| v.as_bool()) {
            cfg.do_rescale = v;
        }
        if let Some(v) = get("rescale_factor").and_then(|v| v.as_f64()) {
            cfg.rescale_factor = v as f32;
        }
        if let Some(v) = get("do_normalize").and_then(|v| v.as_bool()) {
            cfg.do_normalize = v;
        }
        for (key, target) in [("image_mean", &mut cfg.image_mean), ("image_std", &mut cfg.image_std)] {
            if let Some(v) = get(key) {
                *target = parse_triplet(v)
                    .ok_or_else(|| bad(format!("`{key}` must be a number or a list of 3 numbers, got {v}")))?;
            }
        }
        if let Some(v) = get("resample") {
            cfg.resample = v
                .as_u64()
                .and_then(Resample::from_pil_code)
                .ok_or_else(|| bad(format!("unknown `resample` {v}: expected a PIL filter code 0-5")))?;
        }
        if cfg.shortest_edge == 0 || cfg.crop_height == 0 || cfg.crop_width == 0 {
            return Err(bad("image sizes must be positive".into()));
        }
        if cfg.image_std.contains(&0.0) {
            return Err(bad("image_std must not contain 0".into()));
        }
        Ok(cfg)
    }

    /// Checks that this pipeline produces exactly the square input the vision tower expects.
    pub fn check_matches_model(&self, image_size: u32, path: &Path) -> Result<()> {
        let fits = self.do_center_crop && self.crop_height == image_size && self.crop_width == image_size;
        if fits && self.do_resize {
            return Ok(());
        }
        Err(Error::BadCheckpoint {
            path: path.to_owned(),
            reason: format!(
                "preprocessing must resize and centre-crop to the model's {image_size}x{image_size} input \
                 (do_resize={}, do_center_crop={}, crop {}x{})",
                self.do_resize, self.do_center_crop, self.crop_height, self.crop_width
            ),
        })
    }
}

fn parse_triplet(v: &serde_json::Value) -> Option<[f32; 3]> {
    if let Some(x) = v.as_f64() {
        return Some([x as f32; 3]);
    }
    let list = v.as_array()?;
    if list.len() != 3 {
        return None;
    }
    let mut out = [0.0; 3];
    for (o, x) in out.iter_mut().zip(list) {
        *o = x.as_f64()? as f32;
    }
    Some(out)
}

fn read_json<T: serde::de::DeserializeOwned>(path: &Path) -> Result<T> {
    let text = std::fs::read_to_string(path).map_err(|source| Error::Io { path: path.to_owned(), source })?;
    serde_json::from_str(&text).map_err(|e| Error::BadCheckpoint { path: path.to_owned(), reason: e.to_string() })
}
