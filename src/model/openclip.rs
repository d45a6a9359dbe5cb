//! OpenCLIP checkpoints: `open_clip_config.json` + `open_clip_model.safetensors` (or
//! `open_clip_pytorch_model.bin`) as published on the hub, and bare state dicts (RemoteCLIP's
//! `RemoteCLIP-ViT-B-32.pt`) with a named architecture.
//!
//! OpenCLIP's ViT is OpenAI's CLIP under other names, so rather than a third set of towers the
//! config is translated into a [`ModelConfig`] and the tensors renamed to `CLIPModel`'s (the
//! fused `in_proj` split into q, k and v; the projection matrices transposed). CoCa's two
//! additions, the image tower's attentional pooler and the class token after the text, are
//! options of those towers. A text tower OpenCLIP builds from a Hugging Face model
//! (`hf_model_name`: BERT-style, or NLLB's encoder) is described by that model's `config.json`
//! and runs in `hf_text.rs`, under the same layer names. Towers from timm, other Hugging Face
//! models, ResNets, and the rarer ViT options are refused by name instead of running wrong.

use std::collections::HashMap;
use std::path::Path;

use candle_core::Tensor;
use serde::Deserialize;

use super::config::{read_json, Alpha, CropRounding, Family, HfArchitecture, ModelConfig, PreprocessConfig, Resample};
use crate::error::{Error, Result};

/// The architectures a bare state dict can name, copied verbatim from open-clip-torch 2.32's
/// `model_configs/` (the ViT towers with OpenAI's text tower, CoCa's, and those with an
/// XLM-RoBERTa, NLLB or RoBERTa text tower, whose config.json and tokenizer come from the hub).
const BUILTIN_ARCHS: &str = include_str!("openclip_archs.json");

/// OpenCLIP's `model_cfg`: what `open_clip.create_model` builds.
#[derive(Debug, Clone, Deserialize)]
pub struct OpenClipModelConfig {
    embed_dim: usize,
    #[serde(default)]
    quick_gelu: bool,
    vision_cfg: serde_json::Map<String, serde_json::Value>,
    text_cfg: serde_json::Map<String, serde_json::Value>,
    #[serde(flatten)]
    other: serde_json::Map<String, serde_json::Value>,
}

/// OpenCLIP's `preprocess_cfg` (`open_clip.PreprocessCfg`); absent fields take its defaults.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct OpenClipPreprocess {
    mean: Option<[f32; 3]>,
    std: Option<[f32; 3]>,
    interpolation: Option<String>,
    resize_mode: Option<String>,
}

/// One OpenCLIP checkpoint's configuration, wherever it came from.
#[derive(Debug, Clone)]
pub struct OpenClipConfig {
    pub model: OpenClipModelConfig,
    pub preprocess: OpenClipPreprocess,
}

/// OpenAI's normalisation, open_clip's default when a checkpoint does not name its own.
const OPENAI_MEAN: [f32; 3] = [0.481_454_66, 0.457_827_5, 0.408_210_73];
const OPENAI_STD: [f32; 3] = [0.268_629_5, 0.261_302_6, 0.275_777_1];

impl OpenClipConfig {
    /// `open_clip_config.json`: `{"model_cfg": {...}, "preprocess_cfg": {...}}`.
    pub fn from_hub_file(path: &Path) -> Result<Self> {
        #[derive(Deserialize)]
        struct File {
            model_cfg: OpenClipModelConfig,
            #[serde(default)]
            preprocess_cfg: OpenClipPreprocess,
        }
        let file: File = read_json(path)?;
        Ok(Self { model: file.model_cfg, preprocess: file.preprocess_cfg })
    }

    /// `arch`: a built-in architecture name (`ViT-B-32`), or a JSON file holding a model config
    /// (or a whole `open_clip_config.json`, preprocessing included).
    pub fn from_arch(arch: &str) -> Result<Self> {
        let path = Path::new(arch);
        let model = if path.is_file() {
            let raw: serde_json::Value = read_json(path)?;
            if raw.get("model_cfg").is_some() {
                return Self::from_hub_file(path);
            }
            serde_json::from_value(raw)
                .map_err(|e| Error::BadCheckpoint { path: path.to_owned(), reason: e.to_string() })?
        } else {
            let mut archs: HashMap<String, OpenClipModelConfig> =
                serde_json::from_str(BUILTIN_ARCHS).expect("the built-in architectures parse");
            archs.remove(arch).ok_or_else(|| Error::BadCheckpoint {
                path: arch.into(),
                reason: format!(
                    "no such OpenCLIP architecture or file: name one of {} or a model config JSON file",
                    builtin_arch_names().join(", ")
                ),
            })?
        };
        Ok(Self { model, preprocess: OpenClipPreprocess::default() })
    }

    /// The Hugging Face model and tokenizer a text tower is built from (`hf_model_name`,
    /// `hf_tokenizer_name`, which defaults to the model), as named: a folder or a hub repository.
    pub fn hf_text_names(&self) -> Option<(String, String)> {
        let name = |key: &str| self.model.text_cfg.get(key).and_then(|v| v.as_str()).map(str::to_string);
        let model = name("hf_model_name")?;
        Some((model.clone(), name("hf_tokenizer_name").unwrap_or(model)))
    }

    /// The equivalent `CLIPModel` configuration; options the towers do not implement are refused.
    ///
    /// `text_model`: the `config.json` of the Hugging Face model a text tower is built from
    /// (`hf_model_name`), where the config names one.
    pub fn model_config(&self, path: &Path, text_model: Option<&Path>) -> Result<ModelConfig> {
        let bad = |reason: String| Error::BadCheckpoint { path: path.to_owned(), reason };
        let m = &self.model;
        let unsupported = |tower: &str,
                           cfg: &serde_json::Map<String, serde_json::Value>,
                           key: &str,
                           ok: &dyn Fn(&serde_json::Value) -> bool| {
            let instead = match key {
                "hf_tokenizer_name" => {
                    "OpenCLIP's own text transformer with a Hugging Face tokenizer (hf_tokenizer_name without \
                     hf_model_name) is not implemented; for queries in many languages use an XLM-RoBERTa OpenCLIP or \
                     SigLIP 2 (google/siglip2-*)"
                }
                "timm_model_name" => {
                    "image towers from timm (OpenCLIP's SigLIP, ConvNeXt, EVA) are not implemented; SigLIP and SigLIP 2 \
                     are on the hub in Hugging Face's format as google/siglip-*, google/siglip2-*"
                }
                _ => "imgsearch runs OpenCLIP's ViT towers as OpenAI's CLIP builds them, and this option changes that",
            };
            match cfg.get(key) {
                Some(v) if !v.is_null() && !ok(v) => Err(bad(format!(
                    "OpenCLIP {tower} option {key}={v} is not supported: {instead}. `imgsearch models` lists what runs"
                ))),
                _ => Ok(()),
            }
        };
        let is_false = |v: &serde_json::Value| v.as_bool() == Some(false);
        let is = |expected: &'static str| move |v: &serde_json::Value| v.as_str() == Some(expected);
        let v = &m.vision_cfg;
        let t = &m.text_cfg;
        // `final_ln_after_pool` is not checked: with the only poolings run here (the class token,
        // the end-of-text token), normalising the pooled token or every token before picking it
        // is the same arithmetic; open_clip's plain CLIP class never reads the text one at all.
        unsupported("vision", v, "timm_model_name", &|_| false)?;
        // CoCa's pooler (a bool); the strings select pooler layouts open_clip marks untested.
        unsupported("vision", v, "attentional_pool", &|v| v.is_boolean())?;
        unsupported("vision", v, "no_ln_pre", &is_false)?;
        unsupported("vision", v, "pool_type", &is("tok"))?;
        unsupported("vision", v, "pos_embed_type", &is("learnable"))?;
        unsupported("vision", v, "norm_kwargs", &|_| false)?;
        unsupported("vision", v, "act_kwargs", &|_| false)?;
        let hf_text = match t.get("hf_model_name").filter(|name| !name.is_null()) {
            None => None,
            Some(name) => {
                let text_model = text_model.ok_or_else(|| {
                    bad(format!("the text model {name} that hf_model_name names was not fetched with the checkpoint"))
                })?;
                Some(hf_text_config(t, m.embed_dim, text_model)?)
            }
        };
        let embed_cls = t.get("embed_cls").and_then(|v| v.as_bool()).unwrap_or(false);
        if hf_text.is_none() {
            unsupported("text", t, "hf_tokenizer_name", &|_| false)?;
            unsupported("text", t, "embed_cls", &|v| v.is_boolean())?;
            unsupported("text", t, "no_causal_mask", &is_false)?;
            if embed_cls {
                // What the class token does not see: open_clip's tokenizer pads with 0. It is also
                // what the tower is pooled at, whatever pool_type says.
                unsupported("text", t, "pad_id", &|v| v.as_u64() == Some(0))?;
            } else {
                unsupported("text", t, "pool_type", &is("argmax"))?;
            }
            unsupported("text", t, "proj_bias", &is_false)?;
            unsupported("text", t, "proj_type", &is("linear"))?;
            unsupported("text", t, "norm_kwargs", &|_| false)?;
            unsupported("text", t, "act_kwargs", &|_| false)?;
            // The tokenizer cleans texts as open_clip's default ("lower": ftfy, entities, whitespace,
            // lowercase); "whitespace" and "canonicalize" would tokenize differently.
            let default_cleaning = |v: &serde_json::Value| {
                v.as_object()
                    .is_some_and(|kwargs| kwargs.iter().all(|(k, v)| k == "clean" && v.as_str() == Some("lower")))
            };
            unsupported("text", t, "tokenizer_kwargs", &default_cleaning)?;
        }
        // `custom_text` only keeps the text tower's weights under `text.` (see `to_clip_names`).
        unsupported("model", &m.other, "custom_text", &|v| v.is_boolean())?;
        if v.get("layers").is_some_and(|l| l.is_array()) {
            return Err(bad("OpenCLIP ResNet image towers are not supported, only ViT ones".into()));
        }
        let num = |cfg: &serde_json::Map<String, serde_json::Value>, key: &str, default: f64| -> Result<f64> {
            match cfg.get(key) {
                None => Ok(default),
                Some(v) => v.as_f64().ok_or_else(|| bad(format!("OpenCLIP option {key}={v} is not a number"))),
            }
        };
        // A size: a whole number, not one a cast would turn into another (-64 into 0, 1e30 into
        // usize::MAX, 64.7 into 64).
        let whole = |value: f64, key: &str| -> Result<usize> {
            match value >= 0.0 && value.fract() == 0.0 && value <= 1e9 {
                true => Ok(value as usize),
                false => Err(bad(format!("OpenCLIP option {key}={value} is not a size (a whole number)"))),
            }
        };
        let size = |cfg: &serde_json::Map<String, serde_json::Value>, key: &str, default: f64| -> Result<usize> {
            whole(num(cfg, key, default)?, key)
        };
        // open_clip takes an image or patch size as one number or as (height, width).
        let square = |key: &str, default: f64| -> Result<usize> {
            match v.get(key).and_then(|v| v.as_array()) {
                None => size(v, key, default),
                Some(pair) => match pair.as_slice() {
                    [h, w] if h == w && h.is_number() => whole(h.as_f64().unwrap_or_default(), key),
                    _ => Err(bad(format!("OpenCLIP vision {key}={pair:?}: only square sizes are supported"))),
                },
            }
        };
        let (v_width, t_width) = (size(v, "width", 768.0)?, size(t, "width", 512.0)?);
        let head_width = size(v, "head_width", 64.0)?;
        if head_width == 0 {
            return Err(bad("vision head_width must be positive".into()));
        }
        let activation = if m.quick_gelu { "quick_gelu" } else { "gelu" };
        let context_length = size(t, "context_length", 77.0)?;
        let attentional_pool = v.get("attentional_pool").and_then(|v| v.as_bool()).unwrap_or(false).then(
            || -> Result<serde_json::Value> {
                Ok(serde_json::json!({
                    "queries": size(v, "attn_pooler_queries", 256.0)?,
                    "heads": size(v, "attn_pooler_heads", 8.0)?,
                }))
            },
        );
        // open_clip: LayerNorm's default epsilon, MLP width int(width * mlp_ratio), vision
        // heads width // head_width.
        let clip_text = || -> Result<serde_json::Value> {
            Ok(serde_json::json!({
                "vocab_size": size(t, "vocab_size", 49408.0)?,
                "hidden_size": t_width,
                "intermediate_size": (t_width as f64 * num(t, "mlp_ratio", 4.0)?) as usize,
                "num_hidden_layers": size(t, "layers", 12.0)?,
                "num_attention_heads": size(t, "heads", 8.0)?,
                "max_position_embeddings": context_length + usize::from(embed_cls),
                "hidden_act": activation,
                "layer_norm_eps": 1e-5,
                "class_token": embed_cls,
            }))
        };
        let config = serde_json::json!({
            "model_type": "clip",
            "projection_dim": m.embed_dim,
            "text_config": match hf_text {
                Some(text) => text,
                None => clip_text()?,
            },
            "vision_config": {
                "hidden_size": v_width,
                "intermediate_size": (v_width as f64 * num(v, "mlp_ratio", 4.0)?) as usize,
                "num_hidden_layers": size(v, "layers", 12.0)?,
                "num_attention_heads": v_width / head_width,
                "image_size": square("image_size", 224.0)?,
                "patch_size": square("patch_size", 16.0)?,
                "hidden_act": activation,
                "layer_norm_eps": 1e-5,
                "attentional_pool": attentional_pool.transpose()?,
            },
        });
        ModelConfig::from_json(config, path)
    }

    /// open_clip's inference transform (`image_transform(is_train=False)`) as a preprocessing
    /// description: RGB, resize, centre crop with torchvision's rounding, ToTensor, normalise.
    pub fn preprocess(&self, image_size: u32, path: &Path) -> Result<PreprocessConfig> {
        let bad = |reason: String| Error::BadCheckpoint { path: path.to_owned(), reason };
        let p = &self.preprocess;
        let resample = match p.interpolation.as_deref().unwrap_or("bicubic") {
            "bicubic" | "random" => Resample::Bicubic,
            "bilinear" => Resample::Bilinear,
            other => return Err(bad(format!("preprocess_cfg interpolation \"{other}\" is not supported"))),
        };
        let mut cfg = PreprocessConfig {
            resample,
            image_mean: p.mean.unwrap_or(OPENAI_MEAN),
            image_std: p.std.unwrap_or(OPENAI_STD),
            crop_rounding: CropRounding::HalfToEven,
            alpha: Alpha::Discard,
            ..PreprocessConfig::family_default(Family::Clip, image_size)
        };
        match p.resize_mode.as_deref().unwrap_or("shortest") {
            "shortest" => {}
            "squash" => {
                cfg.exact_size = Some((image_size, image_size));
                cfg.do_center_crop = false;
            }
            other => {
                return Err(bad(format!("preprocess_cfg resize_mode \"{other}\" is not supported (shortest, squash)")))
            }
        }
        cfg.check_sizes().map_err(bad)?;
        Ok(cfg)
    }
}

/// The text tower of an OpenCLIP model built from a Hugging Face model (`hf_model_name`): the
/// encoder's shape from that model's `config.json` (`text_model`), with `transformers`' class
/// defaults for what it leaves out, and open_clip's pooling, projection and text cleaning.
fn hf_text_config(
    t: &serde_json::Map<String, serde_json::Value>,
    embed_dim: usize,
    text_model: &Path,
) -> Result<serde_json::Value> {
    let bad = |reason: String| Error::BadCheckpoint { path: text_model.to_owned(), reason };
    let hf: serde_json::Map<String, serde_json::Value> = read_json(text_model)?;
    let model_type = hf.get("model_type").and_then(|v| v.as_str()).unwrap_or_default();
    // RoBERTa's and NLLB's positions skip the padding; BERT's do not. Each family names its
    // shape in its own words, with `transformers`' class defaults.
    let (architecture, default_pad, positions_after_pad, default_pooler) = match model_type {
        "bert" => (HfArchitecture::Bert, 0, false, "cls_pooler"),
        "roberta" | "xlm-roberta" => (HfArchitecture::Bert, 1, true, "mean_pooler"),
        "m2m_100" => (HfArchitecture::M2m100, 1, true, "cls_pooler"),
        other => {
            return Err(bad(format!(
                "OpenCLIP text towers from Hugging Face \"{other}\" models are not implemented (BERT, RoBERTa, \
                 XLM-RoBERTa and NLLB (m2m_100) ones run; mT5's does not); for queries in many languages use an \
                 XLM-RoBERTa or NLLB OpenCLIP, or SigLIP 2 (google/siglip2-*)"
            )))
        }
    };
    let bert = architecture == HfArchitecture::Bert;
    let key = |bert_name: &'static str, m2m100_name: &'static str| if bert { bert_name } else { m2m100_name };
    if let Some(kind) = hf.get("position_embedding_type").and_then(|v| v.as_str()).filter(|k| *k != "absolute") {
        return Err(bad(format!("position_embedding_type \"{kind}\" is not supported, only \"absolute\"")));
    }
    let size = |key: &str, default: u64| -> Result<u64> {
        match hf.get(key).filter(|v| !v.is_null()) {
            None => Ok(default),
            Some(v) => v.as_u64().ok_or_else(|| bad(format!("{key}={v} is not a size (a whole number)"))),
        }
    };
    let width = size(key("hidden_size", "d_model"), if bert { 768 } else { 1024 })?;
    let option = |key: &str| t.get(key).map(|v| v.as_str().ok_or(v));
    let refused = |key: &str, value: &dyn std::fmt::Display, runs: &str| {
        Err(Error::BadCheckpoint {
            path: text_model.to_owned(),
            reason: format!("OpenCLIP text option {key}={value} is not supported ({runs} run)"),
        })
    };
    // open_clip's own defaults when the config names none; a null takes the architecture's.
    let pooler = match option("hf_pooler_type") {
        None => "mean_pooler",
        Some(Err(v)) if v.is_null() => default_pooler,
        Some(Ok(name)) => name,
        Some(Err(v)) => return refused("hf_pooler_type", v, "mean_pooler, cls_pooler, cls_last_hidden_state_pooler"),
    };
    let pooler = match pooler {
        "mean_pooler" => "mean",
        // An encoder-decoder's encoder has no pooler of its own: open_clip takes the first token.
        "cls_pooler" if !bert => "first_token",
        "cls_pooler" => "first_token_dense",
        "cls_last_hidden_state_pooler" => "first_token",
        other => return refused("hf_pooler_type", &other, "mean_pooler, cls_pooler, cls_last_hidden_state_pooler"),
    };
    let projection = match option("hf_proj_type") {
        None | Some(Ok("mlp")) => "mlp",
        Some(Ok("linear")) => "linear",
        Some(Err(v)) if v.is_null() && width == embed_dim as u64 => "identity",
        Some(Ok(other)) => return refused("hf_proj_type", &other, "mlp, linear"),
        Some(Err(v)) => return refused("hf_proj_type", v, "mlp, linear, or none where the widths match"),
    };
    // open_clip's HFTokenizer: "whitespace" (ftfy, entities, whitespace) by default, or "lower".
    let mut lowercase = false;
    for (key, value) in t.get("tokenizer_kwargs").and_then(|v| v.as_object()).into_iter().flatten() {
        match (key.as_str(), value) {
            ("clean", v) if v.as_str() == Some("whitespace") => lowercase = false,
            ("clean", v) if v.as_str() == Some("lower") => lowercase = true,
            ("strip_sep_token", v) if v.as_bool() == Some(false) => {}
            _ => return refused(&format!("tokenizer_kwargs.{key}"), value, "clean \"whitespace\" or \"lower\""),
        }
    }
    let context_length = match t.get("context_length").filter(|v| !v.is_null()) {
        None => 77,
        Some(v) => v.as_u64().ok_or_else(|| bad(format!("text_cfg context_length={v} is not a size")))?,
    };
    let scale_embedding = hf.get("scale_embedding").and_then(|v| v.as_bool()).unwrap_or(true);
    Ok(serde_json::json!({
        "vocab_size": size("vocab_size", if bert { 30522 } else { 128112 })?,
        "hidden_size": width,
        "intermediate_size": size(key("intermediate_size", "encoder_ffn_dim"), if bert { 3072 } else { 4096 })?,
        "num_hidden_layers": size(key("num_hidden_layers", "encoder_layers"), 12)?,
        "num_attention_heads": size(key("num_attention_heads", "encoder_attention_heads"), if bert { 12 } else { 16 })?,
        "max_position_embeddings": size("max_position_embeddings", if bert { 512 } else { 1024 })?,
        "hidden_act": hf.get(key("hidden_act", "activation_function")).cloned()
            .unwrap_or_else(|| if bert { "gelu" } else { "relu" }.into()),
        // NLLB's layer norms are torch's default.
        "layer_norm_eps": match bert {
            true => hf.get("layer_norm_eps").cloned().unwrap_or_else(|| 1e-12.into()),
            false => 1e-5.into(),
        },
        "hf_encoder": {
            "architecture": architecture,
            "embed_scale": if !bert && scale_embedding { (width as f64).sqrt() } else { 1.0 },
            "type_vocab_size": if bert { size("type_vocab_size", 2)? } else { 0 },
            "pad_token_id": size("pad_token_id", default_pad)?,
            "positions_after_pad": positions_after_pad,
            "context_length": context_length,
            "masks_pad_id": true,
            "pooler": pooler,
            "projection": projection,
            "lowercase": lowercase,
        },
    }))
}

/// The built-in architecture names, for messages and `imgsearch models`.
pub fn builtin_arch_names() -> Vec<String> {
    let archs: serde_json::Map<String, serde_json::Value> =
        serde_json::from_str(BUILTIN_ARCHS).expect("the built-in architectures parse");
    archs.keys().cloned().collect()
}

/// The longest built-in architecture name inside a file name (`RemoteCLIP-ViT-B-32.pt` →
/// `ViT-B-32`), so a checkpoint named after its architecture needs no `#ARCH`.
pub fn arch_from_file_name(file: &Path) -> Option<String> {
    let name = file.file_name()?.to_str()?;
    builtin_arch_names().into_iter().filter(|arch| name.contains(arch.as_str())).max_by_key(String::len)
}

/// Renames an OpenCLIP state dict to `CLIPModel`'s names (see the module docs). Training
/// wrappers' `module.` prefixes are dropped.
pub fn to_clip_names(tensors: Vec<(String, Tensor)>, path: &Path) -> Result<HashMap<String, Tensor>> {
    let bad = |reason: String| Error::BadCheckpoint { path: path.to_owned(), reason };
    let candle = |e: candle_core::Error| bad(e.to_string());
    let mut out = HashMap::with_capacity(tensors.len() + 64);
    for (name, tensor) in tensors {
        let name = name.strip_prefix("module.").unwrap_or(&name);
        // CoCa's captioning decoder plays no part in embeddings.
        if name.starts_with("text_decoder.") {
            continue;
        }
        // A text tower built from a Hugging Face model keeps that model's names, and its
        // projection is `text.proj`.
        if let Some(hf) = name.strip_prefix("text.transformer.").filter(|rest| !rest.starts_with("resblocks.")) {
            if let Some(renamed) = hf_encoder_name(hf).map_err(|reason| bad(format!("{reason}: {name}")))? {
                out.insert(format!("text_model.{renamed}"), tensor);
            }
            continue;
        }
        if let Some(part) = name.strip_prefix("text.proj.") {
            let renamed = match part {
                "weight" => "weight",
                "0.weight" => "fc1.weight",
                "2.weight" => "fc2.weight",
                _ => return Err(bad(format!("unsupported OpenCLIP tensor {name} (a projection with a bias?)"))),
            };
            out.insert(format!("text_projection.{renamed}"), tensor);
            continue;
        }
        let (tower, rest) = match name.strip_prefix("visual.") {
            Some(rest) => ("vision_model", rest),
            // `custom_text` models keep the text tower under `text.`.
            None => ("text_model", name.strip_prefix("text.").unwrap_or(name)),
        };
        if rest.starts_with("attn_pool.") {
            out.insert(format!("{tower}.{rest}"), tensor);
            continue;
        }
        let renamed = match rest {
            "attn_mask" | "logit_scale" | "logit_bias" => continue,
            "cls_emb" => format!("{tower}.embeddings.class_embedding"),
            "conv1.weight" => format!("{tower}.embeddings.patch_embedding.weight"),
            "class_embedding" => format!("{tower}.embeddings.class_embedding"),
            "positional_embedding" => format!("{tower}.embeddings.position_embedding.weight"),
            "token_embedding.weight" => format!("{tower}.embeddings.token_embedding.weight"),
            "ln_pre.weight" | "ln_pre.bias" => format!("{tower}.pre_layrnorm.{}", suffix(rest)),
            "ln_post.weight" | "ln_post.bias" => format!("{tower}.post_layernorm.{}", suffix(rest)),
            "ln_final.weight" | "ln_final.bias" => format!("{tower}.final_layer_norm.{}", suffix(rest)),
            "proj" => {
                out.insert("visual_projection.weight".into(), tensor.t().and_then(|t| t.contiguous()).map_err(candle)?);
                continue;
            }
            "text_projection" => {
                out.insert("text_projection.weight".into(), tensor.t().and_then(|t| t.contiguous()).map_err(candle)?);
                continue;
            }
            _ => match rest.strip_prefix("transformer.resblocks.") {
                Some(block) => {
                    let (layer, part) =
                        block.split_once('.').ok_or_else(|| bad(format!("unexpected tensor {name}")))?;
                    let prefix = format!("{tower}.encoder.layers.{layer}");
                    if let Some(kind) = part.strip_prefix("attn.in_proj_") {
                        // [q; k; v] stacked on the first axis.
                        let third = tensor.dim(0).map_err(candle)? / 3;
                        for (i, which) in ["q_proj", "k_proj", "v_proj"].iter().enumerate() {
                            let piece =
                                tensor.narrow(0, i * third, third).and_then(|t| t.contiguous()).map_err(candle)?;
                            out.insert(format!("{prefix}.self_attn.{which}.{kind}"), piece);
                        }
                        continue;
                    }
                    let hf = match part {
                        // `ls_init_value`'s LayerScale, folded into the layer it scales below.
                        "ls_1.gamma" => "attention_scale".into(),
                        "ls_2.gamma" => "mlp_scale".into(),
                        "ln_1.weight" | "ln_1.bias" => format!("layer_norm1.{}", suffix(part)),
                        "ln_2.weight" | "ln_2.bias" => format!("layer_norm2.{}", suffix(part)),
                        "attn.out_proj.weight" | "attn.out_proj.bias" => format!("self_attn.out_proj.{}", suffix(part)),
                        "mlp.c_fc.weight" | "mlp.c_fc.bias" => format!("mlp.fc1.{}", suffix(part)),
                        "mlp.c_proj.weight" | "mlp.c_proj.bias" => format!("mlp.fc2.{}", suffix(part)),
                        _ => return Err(bad(format!("unsupported OpenCLIP tensor {name}"))),
                    };
                    format!("{prefix}.{hf}")
                }
                None => {
                    return Err(bad(format!(
                        "unsupported OpenCLIP tensor {name} (is this an OpenCLIP ViT checkpoint?)"
                    )))
                }
            },
        };
        out.insert(renamed, tensor);
    }
    fold_layer_scales(&mut out).map_err(candle)?;
    Ok(out)
}

/// Whether a Hugging Face checkpoint's text tower is a BERT under `transformers`' names
/// (Chinese-CLIP's `text_model.encoder.layer.N…`).
pub fn has_bert_text_names<'a>(mut names: impl Iterator<Item = &'a String>) -> bool {
    names.any(|name| name.starts_with("text_model.encoder.layer."))
}

/// A Hugging Face checkpoint's tensors, its BERT text tower (if it has one) under the names the
/// towers load, as OpenCLIP's Hugging Face text towers are renamed.
pub fn with_bert_text_renamed(tensors: Vec<(String, Tensor)>, path: &Path) -> Result<HashMap<String, Tensor>> {
    if !has_bert_text_names(tensors.iter().map(|(name, _)| name)) {
        return Ok(tensors.into_iter().collect());
    }
    let mut out = HashMap::with_capacity(tensors.len());
    for (name, tensor) in tensors {
        let Some(text) = name.strip_prefix("text_model.") else {
            out.insert(name, tensor);
            continue;
        };
        let renamed = hf_encoder_name(text)
            .map_err(|reason| Error::BadCheckpoint { path: path.to_owned(), reason: format!("{reason}: {name}") })?;
        if let Some(renamed) = renamed {
            out.insert(format!("text_model.{renamed}"), tensor);
        }
    }
    Ok(out)
}

/// OpenCLIP's LayerScale (`ls_init_value`) multiplies the attention's and the MLP's output by a
/// learned vector before the residual add: the same as scaling the rows of the projection that
/// ends each (`out_proj`, `fc2`) and its bias, done here once, in f32.
fn fold_layer_scales(tensors: &mut HashMap<String, Tensor>) -> candle_core::Result<()> {
    let scales: Vec<String> = tensors
        .keys()
        .filter(|name| name.ends_with(".attention_scale") || name.ends_with(".mlp_scale"))
        .cloned()
        .collect();
    for name in scales {
        let gamma = tensors.remove(&name).expect("listed").to_dtype(candle_core::DType::F32)?;
        let (layer, scale) = name.rsplit_once('.').expect("a dotted name");
        let projection = if scale == "attention_scale" { "self_attn.out_proj" } else { "mlp.fc2" };
        for part in ["weight", "bias"] {
            let key = format!("{layer}.{projection}.{part}");
            let Some(tensor) = tensors.get(&key) else { continue };
            let scaled = match part {
                "weight" => tensor.to_dtype(candle_core::DType::F32)?.broadcast_mul(&gamma.unsqueeze(1)?)?,
                _ => (tensor.to_dtype(candle_core::DType::F32)? * &gamma)?,
            };
            tensors.insert(key, scaled);
        }
    }
    Ok(())
}

/// A Hugging Face encoder's tensor (`transformers`' names, after `text.transformer.`) under the
/// names the towers load (those of CLIP's encoder layers where the part is the same); `None`
/// for the buffers `transformers` saves with the weights.
fn hf_encoder_name(name: &str) -> std::result::Result<Option<String>, &'static str> {
    let renamed = match name {
        "embeddings.position_ids" | "embeddings.token_type_ids" => return Ok(None),
        "embeddings.word_embeddings.weight" => "embeddings.token_embedding.weight".into(),
        "embeddings.position_embeddings.weight" => "embeddings.position_embedding.weight".into(),
        "embeddings.token_type_embeddings.weight" => "embeddings.token_type_embedding.weight".into(),
        "embeddings.LayerNorm.weight" | "embeddings.LayerNorm.bias" => {
            format!("embeddings.layer_norm.{}", suffix(name))
        }
        "pooler.dense.weight" | "pooler.dense.bias" => name.into(),
        // NLLB's encoder, whose layers are named as CLIP's but for their norms; its
        // sinusoidal positions are computed, not loaded.
        "embed_positions.weights" => return Ok(None),
        "embed_tokens.weight" => "embeddings.token_embedding.weight".into(),
        "layer_norm.weight" | "layer_norm.bias" => format!("final_layer_norm.{}", suffix(name)),
        _ if name.starts_with("layers.") => {
            let (layer, part) = name["layers.".len()..].split_once('.').ok_or("unsupported tensor")?;
            let (module, kind) = part.rsplit_once('.').ok_or("unsupported tensor")?;
            let ours = match module {
                "self_attn.q_proj" | "self_attn.k_proj" | "self_attn.v_proj" | "self_attn.out_proj" | "fc1" | "fc2" => {
                    module.replace("fc", "mlp.fc")
                }
                "self_attn_layer_norm" => "layer_norm1".into(),
                "final_layer_norm" => "layer_norm2".into(),
                _ => return Err("unsupported tensor in the Hugging Face text model"),
            };
            format!("encoder.layers.{layer}.{ours}.{kind}")
        }
        _ => {
            let (layer, part) = name
                .strip_prefix("encoder.layer.")
                .and_then(|rest| rest.split_once('.'))
                .ok_or("unsupported tensor")?;
            let (module, kind) = part.rsplit_once('.').ok_or("unsupported tensor")?;
            let ours = match module {
                "attention.self.query" => "self_attn.q_proj",
                "attention.self.key" => "self_attn.k_proj",
                "attention.self.value" => "self_attn.v_proj",
                "attention.output.dense" => "self_attn.out_proj",
                "attention.output.LayerNorm" => "layer_norm1",
                "intermediate.dense" => "mlp.fc1",
                "output.dense" => "mlp.fc2",
                "output.LayerNorm" => "layer_norm2",
                _ => return Err("unsupported tensor in the Hugging Face text model"),
            };
            format!("encoder.layers.{layer}.{ours}.{kind}")
        }
    };
    Ok(Some(renamed))
}

fn suffix(name: &str) -> &str {
    name.rsplit('.').next().unwrap_or(name)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::config::{Activation, HfPooler, HfProjection};

    /// Every architecture a bare state dict may name runs here (none is refused for an option),
    /// CoCa's with its pooler and its class token after a 76-token context, the Hugging Face
    /// text towers with the poolings and projections their configs name (77 tokens).
    #[test]
    fn every_builtin_architecture_translates() {
        // The fields the towers read of xlm-roberta-base's and nllb-200-distilled-600M's config.json.
        let text_models = [
            (
                "xlm-roberta",
                r#"{"model_type": "xlm-roberta", "vocab_size": 250002, "hidden_size": 768,
                "num_hidden_layers": 12, "num_attention_heads": 12, "intermediate_size": 3072, "hidden_act": "gelu",
                "max_position_embeddings": 514, "type_vocab_size": 1, "layer_norm_eps": 1e-05, "pad_token_id": 1}"#,
            ),
            (
                "nllb",
                r#"{"model_type": "m2m_100", "vocab_size": 256206, "d_model": 1024, "encoder_layers": 12,
                "encoder_attention_heads": 16, "encoder_ffn_dim": 4096, "activation_function": "relu",
                "max_position_embeddings": 1024, "scale_embedding": true, "pad_token_id": 1}"#,
            ),
        ];
        let text_model = tempfile::NamedTempFile::new().unwrap();
        for arch in builtin_arch_names() {
            let openclip = OpenClipConfig::from_arch(&arch).unwrap();
            let hf_text = openclip.hf_text_names().is_some();
            let nllb = arch.starts_with("nllb");
            let (_, json) = text_models.iter().find(|(kind, _)| nllb == (*kind == "nllb")).unwrap();
            std::fs::write(text_model.path(), json).unwrap();
            let config = openclip.model_config(Path::new(&arch), hf_text.then(|| text_model.path())).unwrap();
            let (v, t) = (&config.vision_config, &config.text_config);
            let coca = arch.starts_with("coca_");
            assert_eq!(v.attentional_pool.is_some(), coca, "{arch}");
            assert_eq!(t.class_token, coca, "{arch}");
            assert_eq!(t.context_length(), if coca { 76 } else { 77 }, "{arch}");
            match &t.hf_encoder {
                Some(encoder) if nllb => {
                    assert_eq!((encoder.pooler, encoder.projection), (HfPooler::FirstToken, HfProjection::Linear));
                    assert_eq!((encoder.architecture, encoder.embed_scale), (HfArchitecture::M2m100, 32.0));
                    assert_eq!(t.hidden_act, Activation::Relu);
                    if arch == "nllb-clip-base" {
                        // sum(p.numel() for p in open_clip's model), nllb-200-distilled-600M's config built in.
                        assert_eq!(config.parameter_count(), 501_885_185);
                    }
                }
                Some(encoder) => {
                    assert!(hf_text, "{arch}");
                    assert_eq!((encoder.pooler, encoder.projection), (HfPooler::Mean, HfProjection::Mlp), "{arch}");
                    assert_eq!((t.max_position_embeddings, encoder.pad_token_id), (514, 1), "{arch}");
                    assert!(encoder.positions_after_pad && !encoder.lowercase, "{arch}");
                    if arch == "xlm-roberta-base-ViT-B-32" {
                        // sum(p.numel() for p in open_clip's model), xlm-roberta-base's config built in.
                        assert_eq!(config.parameter_count(), 366_121_473);
                    }
                }
                None => assert_eq!((hf_text, t.max_position_embeddings), (false, 77), "{arch}"),
            }
        }
    }
}
