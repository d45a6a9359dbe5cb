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
//! and runs in `hf_text.rs`, under the same layer names. OpenCLIP's SigLIP and SigLIP 2 pair
//! one of timm's SigLIP ViTs (`SiglipVisionModel` under timm's names) with open_clip's own text
//! transformer made bidirectional: they translate into a `SiglipModel` config the same way.
//! OpenAI's ResNets (`ModifiedResNet`: RN50, RN101, RN50x4 …) have no `transformers` class; they
//! keep open_clip's names and run in `resnet.rs`. Nor have timm's EVA towers (EVA-CLIP): they keep
//! timm's names and run in `eva.rs`, beside open_clip's own text transformer. Other timm towers,
//! other Hugging Face models, and the rarer ViT options are refused by name instead of running
//! wrong.

use std::collections::HashMap;
use std::path::Path;

use candle_core::Tensor;
use serde::Deserialize;

use super::clip::Towers;
use super::config::{
    read_json, Alpha, CropRounding, EvaShape, Family, HfArchitecture, ModelConfig, PreprocessConfig, Resample,
};
use super::text_cleaning::TextCleaning;
use crate::error::{Error, Result};

/// The architectures a bare state dict can name, copied verbatim from open-clip-torch 2.32's
/// `model_configs/` (the ViT, ResNet and EVA towers with OpenAI's text tower, CLIPA's, CoCa's,
/// and those with an XLM-RoBERTa, NLLB or RoBERTa text tower, whose config.json and tokenizer
/// come from the hub).
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

    /// The Hugging Face model a text tower is built from (`hf_model_name`), and the tokenizer it
    /// reads texts with (`hf_tokenizer_name`, which defaults to the model), as named: a folder
    /// or a hub repository. SigLIP's own text tower names only a tokenizer.
    pub fn hf_text_names(&self) -> (Option<String>, Option<String>) {
        let name = |key: &str| self.model.text_cfg.get(key).and_then(|v| v.as_str()).map(str::to_string);
        let model = name("hf_model_name");
        (model.clone(), name("hf_tokenizer_name").or(model))
    }

    /// The equivalent `CLIPModel` (or, with an image tower from timm, `SiglipModel`)
    /// configuration; options the towers do not implement are refused.
    ///
    /// `text_model`: the `config.json` of the Hugging Face model a text tower is built from
    /// (`hf_model_name`), where the config names one.
    pub fn model_config(&self, path: &Path, text_model: Option<&Path>) -> Result<ModelConfig> {
        let m = &self.model;
        let v = Options { cfg: &m.vision_cfg, part: "vision", path };
        let t = Options { cfg: &m.text_cfg, part: "text", path };
        // `custom_text` only keeps the text tower's weights under `text.` (see `to_clip_names`).
        Options { cfg: &m.other, part: "model", path }.refuse_unless("custom_text", |v| v.is_boolean())?;
        let hf_text = match t.get("hf_model_name") {
            None => None,
            Some(name) => {
                let text_model = text_model.ok_or_else(|| {
                    t.bad(format!("the text model {name} that hf_model_name names was not fetched with the checkpoint"))
                })?;
                Some(hf_text_config(&t, m.embed_dim, text_model)?)
            }
        };
        let config = match v.get("timm_model_name") {
            Some(name) => {
                let name = name.as_str().ok_or_else(|| v.bad(format!("timm_model_name {name} is not a name")))?;
                match (eva_vision(&v, name)?, convnext_vision(&v, name)?) {
                    (Some(vision), _) | (None, Some(vision)) => clip_config(m, &t, hf_text, vision)?,
                    (None, None) => siglip_config(m, &v, &t, name, hf_text)?,
                }
            }
            None => clip_config(m, &t, hf_text, own_vision(m, &v)?)?,
        };
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

/// One part of an OpenCLIP model config (`vision_cfg`, `text_cfg`, or the model's own keys),
/// read with open_clip's defaults for what it leaves out (or sets to null).
struct Options<'a> {
    cfg: &'a serde_json::Map<String, serde_json::Value>,
    part: &'static str,
    path: &'a Path,
}

impl Options<'_> {
    fn bad(&self, reason: String) -> Error {
        Error::BadCheckpoint { path: self.path.to_owned(), reason }
    }

    fn get(&self, key: &str) -> Option<&serde_json::Value> {
        self.cfg.get(key).filter(|v| !v.is_null())
    }

    fn str(&self, key: &str) -> Option<&str> {
        self.get(key).and_then(|v| v.as_str())
    }

    fn flag(&self, key: &str) -> bool {
        self.get(key).and_then(|v| v.as_bool()).unwrap_or(false)
    }

    fn num(&self, key: &str, default: f64) -> Result<f64> {
        match self.get(key) {
            None => Ok(default),
            Some(value) => self.number(key, value),
        }
    }

    fn number(&self, key: &str, value: &serde_json::Value) -> Result<f64> {
        value.as_f64().ok_or_else(|| self.bad(format!("OpenCLIP option {key}={value} is not a number")))
    }

    /// A size: a whole number, not one a cast would turn into another (-64 into 0, 1e30 into
    /// usize::MAX, 64.7 into 64).
    fn whole(&self, value: f64, key: &str) -> Result<usize> {
        match value >= 0.0 && value.fract() == 0.0 && value <= 1e9 {
            true => Ok(value as usize),
            false => Err(self.bad(format!("OpenCLIP option {key}={value} is not a size (a whole number)"))),
        }
    }

    fn size(&self, key: &str, default: f64) -> Result<usize> {
        self.whole(self.num(key, default)?, key)
    }

    fn square(&self, key: &str, default: f64) -> Result<usize> {
        match self.get(key) {
            None => self.whole(default, key),
            Some(value) => self.square_value(key, value),
        }
    }

    /// The vision `image_size`, which must be `img_size`, the size of the timm tower it names:
    /// open_clip resizes pictures to image_size, and timm's tower takes only its own size.
    fn check_timm_image_size(&self, img_size: usize) -> Result<()> {
        let image_size = self.square("image_size", 224.0)?;
        match image_size == img_size {
            true => Ok(()),
            false => {
                Err(self.bad(format!("vision image_size {image_size} is not the timm tower's img_size {img_size}")))
            }
        }
    }

    /// An image or patch size, which open_clip and timm take as one number or as (height, width).
    fn square_value(&self, key: &str, value: &serde_json::Value) -> Result<usize> {
        match value.as_array().map(Vec::as_slice) {
            None => self.whole(self.number(key, value)?, key),
            Some([h, w]) if h == w => self.whole(self.number(key, h)?, key),
            Some(_) => Err(self.bad(format!("OpenCLIP {} {key}={value}: only square sizes are supported", self.part))),
        }
    }

    /// Refuses `key` where it is set to anything `ok` does not accept, saying what runs instead.
    fn refuse_unless(&self, key: &str, ok: impl Fn(&serde_json::Value) -> bool) -> Result<()> {
        let instead = match key {
            "hf_tokenizer_name" => {
                "OpenCLIP's own causal text transformer with a Hugging Face tokenizer (hf_tokenizer_name without \
                 hf_model_name) is not implemented; for queries in many languages use an XLM-RoBERTa or NLLB OpenCLIP, \
                 or a SigLIP one (ViT-SO400M-16-SigLIP-i18n-256, SigLIP 2)"
            }
            _ => "imgsearch runs OpenCLIP's ViT towers as OpenAI's CLIP builds them, and this option changes that",
        };
        match self.get(key) {
            Some(v) if !ok(v) => Err(self.bad(format!(
                "OpenCLIP {} option {key}={v} is not supported: {instead}. `imgsearch models` lists what runs",
                self.part
            ))),
            _ => Ok(()),
        }
    }

    /// The transformer's own option `key` (`act_kwargs`, `norm_kwargs`): an object whose keys
    /// are all in `known`, if set.
    fn kwargs(&self, key: &str, known: &[&str]) -> Result<Option<&serde_json::Map<String, serde_json::Value>>> {
        let Some(value) = self.get(key) else { return Ok(None) };
        match value.as_object() {
            Some(kwargs) if kwargs.keys().all(|k| known.contains(&k.as_str())) => Ok(Some(kwargs)),
            _ => Err(self.bad(format!(
                "OpenCLIP {} option {key}={value} is not supported (only {} of it run)",
                self.part,
                known.join(", ")
            ))),
        }
    }
}

fn is_false(v: &serde_json::Value) -> bool {
    v.as_bool() == Some(false)
}

fn is(expected: &'static str) -> impl Fn(&serde_json::Value) -> bool {
    move |v| v.as_str() == Some(expected)
}

/// An OpenCLIP model with open_clip's own text transformer (or a Hugging Face text tower) and
/// the CLIP loss, its image tower described by `vision`, as a `CLIPModel` config.
fn clip_config(
    m: &OpenClipModelConfig,
    t: &Options,
    hf_text: Option<serde_json::Value>,
    vision: serde_json::Value,
) -> Result<serde_json::Value> {
    // The text's `final_ln_after_pool` is not checked: with the poolings run here (one token),
    // normalising the pooled token or every token before picking it is the same arithmetic.
    let embed_cls = t.flag("embed_cls");
    // CLIPA's text tower: bidirectional, read at its last position, a BERT tokenizer.
    let bidirectional = hf_text.is_none() && t.flag("no_causal_mask");
    if bidirectional {
        if t.str("pool_type") != Some("last") || t.get("hf_tokenizer_name").is_none() {
            return Err(t.bad(
                "OpenCLIP text option no_causal_mask=true is not supported here: a CLIP text tower that sees every \
                 position runs as CLIPA's, read at its last position (pool_type \"last\") of a text tokenized by the \
                 Hugging Face tokenizer hf_tokenizer_name names"
                    .into(),
            ));
        }
        t.refuse_unless("embed_cls", is_false)?;
        t.refuse_unless("proj_bias", is_false)?;
        t.refuse_unless("proj_type", is("linear"))?;
        t.refuse_unless("norm_kwargs", |_| false)?;
        t.refuse_unless("act_kwargs", |_| false)?;
    } else if hf_text.is_none() {
        t.refuse_unless("hf_tokenizer_name", |_| false)?;
        t.refuse_unless("embed_cls", |v| v.is_boolean())?;
        t.refuse_unless("no_causal_mask", is_false)?;
        if embed_cls {
            // What the class token does not see: open_clip's tokenizer pads with 0. It is also
            // what the tower is pooled at, whatever pool_type says.
            t.refuse_unless("pad_id", |v| v.as_u64() == Some(0))?;
        } else {
            t.refuse_unless("pool_type", is("argmax"))?;
        }
        t.refuse_unless("proj_bias", is_false)?;
        t.refuse_unless("proj_type", is("linear"))?;
        t.refuse_unless("norm_kwargs", |_| false)?;
        t.refuse_unless("act_kwargs", |_| false)?;
        // The tokenizer cleans texts as open_clip's default ("lower": ftfy, entities, whitespace,
        // lowercase); "whitespace" and "canonicalize" would tokenize differently.
        let default_cleaning = |v: &serde_json::Value| {
            v.as_object().is_some_and(|kwargs| kwargs.iter().all(|(k, v)| k == "clean" && v.as_str() == Some("lower")))
        };
        t.refuse_unless("tokenizer_kwargs", default_cleaning)?;
    }
    let context_length = t.size("context_length", 77.0)?;
    // open_clip: LayerNorm's default epsilon, MLP width int(width * mlp_ratio).
    let clip_text = || -> Result<serde_json::Value> {
        let activation = if m.quick_gelu { "quick_gelu" } else { "gelu" };
        let mut text = own_text_shape(t, context_length + usize::from(embed_cls), activation, 1e-5)?;
        text["class_token"] = embed_cls.into();
        if bidirectional {
            let (cleaning, strip_sep_token) = hf_tokenizer_options(t)?;
            text["bidirectional"] = true.into();
            text["open_clip_cleaning"] = serde_json::to_value(cleaning).expect("a name");
            text["strip_sep_token"] = strip_sep_token.into();
        }
        Ok(text)
    };
    Ok(serde_json::json!({
        "model_type": "clip",
        "projection_dim": m.embed_dim,
        "text_config": match hf_text {
            Some(text) => text,
            None => clip_text()?,
        },
        "vision_config": vision,
    }))
}

/// open_clip's own image tower (OpenAI's ViT, with CoCa's additions, or `ModifiedResNet`) as a
/// vision config.
fn own_vision(m: &OpenClipModelConfig, v: &Options) -> Result<serde_json::Value> {
    // CoCa's pooler (a bool); the strings select pooler layouts open_clip marks untested.
    v.refuse_unless("attentional_pool", |v| v.is_boolean())?;
    v.refuse_unless("no_ln_pre", |v| v.is_boolean())?;
    // The class token, or (CLIPA) the mean of the patch tokens, without CoCa's pooler.
    let pools = |p: &serde_json::Value| p.as_str() == Some("tok") || p.as_str() == Some("avg");
    v.refuse_unless("pool_type", pools)?;
    let average_pool = v.str("pool_type") == Some("avg");
    if average_pool {
        v.refuse_unless("attentional_pool", is_false)?;
        v.refuse_unless("final_ln_after_pool", |v| v.is_boolean())?;
    }
    v.refuse_unless("pos_embed_type", is("learnable"))?;
    v.refuse_unless("norm_kwargs", |_| false)?;
    v.refuse_unless("act_kwargs", |_| false)?;
    let width = v.size("width", 768.0)?;
    let head_width = v.size("head_width", 64.0)?;
    if head_width == 0 {
        return Err(v.bad("vision head_width must be positive".into()));
    }
    if let Some(stages) = v.get("layers").and_then(|l| l.as_array()) {
        return resnet_vision(v, stages, width, head_width);
    }
    let attentional_pool = v.flag("attentional_pool").then(|| -> Result<serde_json::Value> {
        Ok(serde_json::json!({
            "queries": v.size("attn_pooler_queries", 256.0)?,
            "heads": v.size("attn_pooler_heads", 8.0)?,
        }))
    });
    // open_clip: LayerNorm's default epsilon, MLP width int(width * mlp_ratio), heads
    // width // head_width.
    Ok(serde_json::json!({
        "hidden_size": width,
        "intermediate_size": (width as f64 * v.num("mlp_ratio", 4.0)?) as usize,
        "num_hidden_layers": v.size("layers", 12.0)?,
        "num_attention_heads": width / head_width,
        "image_size": v.square("image_size", 224.0)?,
        "patch_size": v.square("patch_size", 16.0)?,
        "hidden_act": if m.quick_gelu { "quick_gelu" } else { "gelu" },
        "layer_norm_eps": 1e-5,
        "attentional_pool": attentional_pool.transpose()?,
        "without_pre_norm": v.flag("no_ln_pre"),
        "average_pool": average_pool,
        "norm_after_pool": average_pool && v.flag("final_ln_after_pool"),
    }))
}

/// OpenCLIP's `ModifiedResNet` image tower (`layers` a list of four block counts) as a vision
/// config: open_clip gives its attention pool `32 * width` channels in heads of `head_width`.
fn resnet_vision(
    v: &Options,
    stages: &[serde_json::Value],
    width: usize,
    head_width: usize,
) -> Result<serde_json::Value> {
    let layers: Vec<usize> = stages.iter().map(|n| v.whole(v.number("layers", n)?, "layers")).collect::<Result<_>>()?;
    let layers: [usize; 4] = layers.try_into().map_err(|_| {
        v.bad(format!("a ResNet image tower has four stages, not layers={}", serde_json::Value::from(stages)))
    })?;
    Ok(serde_json::json!({
        "hidden_size": 32 * width,
        "intermediate_size": 0,
        "num_hidden_layers": 0,
        "num_attention_heads": 32 * width / head_width,
        "image_size": v.square("image_size", 224.0)?,
        "patch_size": 32,
        "hidden_act": "relu",
        "layer_norm_eps": 1e-5,
        "resnet": {"layers": layers, "width": width},
    }))
}

/// The shapes of timm's SigLIP ViTs and EVA towers, from timm's registry (`scripts/timm_vits.py`).
const TIMM_VITS: &str = include_str!("timm_vits.json");

/// What every timm tower of [`TIMM_VITS`] names of its shape: the registry's, with
/// `timm_model_kwargs` over it (checked by name in [`timm_shape`]: serde's
/// `deny_unknown_fields` does not work beside `flatten`).
#[derive(Debug, Deserialize)]
struct TimmShape {
    img_size: usize,
    patch_size: usize,
    embed_dim: usize,
    depth: usize,
    num_heads: usize,
    mlp_ratio: f64,
}

/// One of timm's SigLIP ViTs (`models` in [`TIMM_VITS`]).
#[derive(Debug, Deserialize)]
struct TimmVit {
    #[serde(flatten)]
    shape: TimmShape,
    act_layer: String,
}

/// The shape of timm tower `name` from `section` of [`TIMM_VITS`] (`models`: SigLIP's ViTs,
/// `evas`: EVA-CLIP's towers, `convnexts`), with open_clip 3's `timm_model_kwargs`, which it hands to
/// `timm.create_model`, over the registry's; `None` where the section has no such tower.
fn timm_shape(v: &Options, section: &str, name: &str) -> Result<Option<serde_json::Map<String, serde_json::Value>>> {
    let table: serde_json::Value = serde_json::from_str(TIMM_VITS).expect("the timm table parses");
    let Some(shape) = table[section].get(name).and_then(|s| s.as_object()) else {
        return Ok(None);
    };
    let mut shape = shape.clone();
    let vit = ["img_size", "patch_size", "embed_dim", "depth", "num_heads", "mlp_ratio"];
    let known: Vec<&str> = match section {
        "models" => vit.iter().copied().chain(["act_layer"]).collect(),
        "convnexts" => vec!["dims", "depths"],
        _ => vit.to_vec(),
    };
    for (key, value) in v.kwargs("timm_model_kwargs", &known)?.into_iter().flatten() {
        let value = match key.as_str() {
            "img_size" | "patch_size" => v.square_value(key, value)?.into(),
            _ => value.clone(),
        };
        shape.insert(key.clone(), value);
    }
    Ok(Some(shape))
}

/// One of timm's EVA towers (`evas` in [`TIMM_VITS`]).
#[derive(Debug, Deserialize)]
struct TimmEva {
    #[serde(flatten)]
    shape: TimmShape,
    #[serde(flatten)]
    blocks: EvaShape,
}

/// An EVA-CLIP image tower (`timm/EVA02-B-16`'s `eva02_base_patch16_clip_224`, ...) or
/// MobileCLIP-B's (`vit_base_mci_224`) as a vision config, or `None` where `timm_name` is neither. open_clip pools it at the class token and
/// uses timm's head as the projection (`timm_pool` "token", no `timm_proj`).
fn eva_vision(v: &Options, timm_name: &str) -> Result<Option<serde_json::Value>> {
    let Some(shape) = timm_shape(v, "evas", timm_name)? else {
        return Ok(None);
    };
    let eva: TimmEva = serde_json::from_value(shape.into())
        .map_err(|e| v.bad(format!("timm_model_kwargs do not describe an EVA tower: {e}")))?;
    if v.str("timm_pool") != Some("token") || v.get("timm_proj").is_some() {
        return Err(v.bad(format!(
            "EVA towers (and MobileCLIP-B's) run pooled at their class token and projected by timm's head (timm_pool \
             \"token\" and no timm_proj, as open_clip's configs set them), not timm_pool {} and timm_proj {}",
            v.get("timm_pool").unwrap_or(&"\"avg\"".into()),
            v.get("timm_proj").unwrap_or(&serde_json::Value::Null)
        )));
    }
    v.check_timm_image_size(eva.shape.img_size)?;
    Ok(Some(serde_json::json!({
        "hidden_size": eva.shape.embed_dim,
        "intermediate_size": (eva.shape.embed_dim as f64 * eva.shape.mlp_ratio) as usize,
        "num_hidden_layers": eva.shape.depth,
        "num_attention_heads": eva.shape.num_heads,
        "image_size": eva.shape.img_size,
        "patch_size": eva.shape.patch_size,
        // The MLP's when it is not SwiGLU: nn.GELU.
        "hidden_act": "gelu",
        // timm's LayerNorm.
        "layer_norm_eps": 1e-6,
        "eva": eva.blocks,
    })))
}

/// One of timm's ConvNeXts (`convnexts` in [`TIMM_VITS`]).
#[derive(Debug, Deserialize)]
struct TimmConvNext {
    stem_patch: usize,
    dims: [usize; 4],
    depths: [usize; 4],
    norm_eps: f64,
}

/// A ConvNeXt image tower (LAION's `laion/CLIP-convnext_base_w-laion2B-s13B-b82K`, ...) as a
/// vision config, or `None` where `timm_name` is no ConvNeXt. open_clip keeps timm's average
/// pool and head norm and projects after them (`timm_pool` "", `timm_proj` "linear" or "mlp").
fn convnext_vision(v: &Options, timm_name: &str) -> Result<Option<serde_json::Value>> {
    let Some(shape) = timm_shape(v, "convnexts", timm_name)? else {
        return Ok(None);
    };
    let convnext: TimmConvNext = serde_json::from_value(shape.into())
        .map_err(|e| v.bad(format!("timm_model_kwargs do not describe a ConvNeXt: {e}")))?;
    let projection = match (v.str("timm_pool"), v.str("timm_proj")) {
        (Some(""), Some(projection @ ("linear" | "mlp"))) if !v.flag("timm_proj_bias") => projection,
        _ => {
            return Err(v.bad(format!(
                "ConvNeXt towers run with timm's average pool and open_clip's projection after it (timm_pool \"\", \
                 timm_proj \"linear\" or \"mlp\" without a bias, as open_clip's ConvNeXt configs set them), not \
                 timm_pool {} and timm_proj {}",
                v.get("timm_pool").unwrap_or(&"\"avg\"".into()),
                v.get("timm_proj").unwrap_or(&"\"linear\"".into())
            )))
        }
    };
    Ok(Some(serde_json::json!({
        "hidden_size": convnext.dims[3],
        "intermediate_size": 0,
        "num_hidden_layers": 0,
        "num_attention_heads": 1,
        "image_size": v.square("image_size", 224.0)?,
        "patch_size": convnext.stem_patch * 8,
        "hidden_act": "gelu",
        "layer_norm_eps": convnext.norm_eps,
        "convnext": {"stem_patch": convnext.stem_patch, "dims": convnext.dims, "depths": convnext.depths,
                     "projection": projection},
    })))
}

/// An OpenCLIP SigLIP or SigLIP 2 (`timm/ViT-SO400M-14-SigLIP-384`, ...) as a `SiglipModel`
/// config: its image tower is one of timm's SigLIP ViTs, which `SiglipVisionModel` is under
/// other names (patches without a class token, an attention-pooling head); its text tower is
/// open_clip's own transformer made bidirectional and read at its last position, or a Hugging
/// Face model's (NLLB-CLIP's SigLIP variants).
fn siglip_config(
    m: &OpenClipModelConfig,
    v: &Options,
    t: &Options,
    timm_name: &str,
    hf_text: Option<serde_json::Value>,
) -> Result<serde_json::Value> {
    let Some(shape) = timm_shape(v, "models", timm_name)? else {
        let table: serde_json::Value = serde_json::from_str(TIMM_VITS).expect("the timm table parses");
        let names = |section: &str| table[section].as_object().expect("a table").keys().cloned().collect::<Vec<_>>();
        return Err(v.bad(format!(
            "OpenCLIP vision option timm_model_name=\"{timm_name}\" is not supported: image towers from timm run for \
             SigLIP's ViTs ({}), EVA-CLIP's and MobileCLIP-B's ({}) and ConvNeXts ({}), not MobileCLIP-S1/S2 \
             (FastViT), ViTamin or other timm towers. \
             SigLIP and SigLIP 2 are also on the hub in Hugging Face's format as google/siglip-*, google/siglip2-*",
            names("models").join(", "),
            names("evas").join(", "),
            names("convnexts").join(", ")
        )));
    };
    let vit: TimmVit = serde_json::from_value(shape.into())
        .map_err(|e| v.bad(format!("timm_model_kwargs do not describe a ViT: {e}")))?;
    let vision_act = match vit.act_layer.as_str() {
        "gelu" => "gelu",
        "gelu_tanh" => "gelu_pytorch_tanh",
        "quick_gelu" => "quick_gelu",
        other => {
            return Err(v.bad(format!("timm act_layer \"{other}\" is not supported (gelu, gelu_tanh, quick_gelu)")))
        }
    };
    // open_clip's defaults are another pooling and a linear projection after it.
    if v.str("timm_pool") != Some("map") || v.str("timm_proj") != Some("none") {
        return Err(v.bad(format!(
            "timm towers run with SigLIP's attention pooling and no projection after it (timm_pool \"map\", timm_proj \
             \"none\", as open_clip's SigLIP configs set them), not timm_pool {} and timm_proj {}",
            v.get("timm_pool").unwrap_or(&"\"avg\"".into()),
            v.get("timm_proj").unwrap_or(&"\"linear\"".into())
        )));
    }
    v.check_timm_image_size(vit.shape.img_size)?;
    let mut text = match hf_text {
        Some(text) => text,
        None => siglip_text(m, t)?,
    };
    text["projection_size"] = m.embed_dim.into();
    Ok(serde_json::json!({
        "model_type": "siglip",
        "text_config": text,
        "vision_config": {
            "hidden_size": vit.shape.embed_dim,
            "intermediate_size": (vit.shape.embed_dim as f64 * vit.shape.mlp_ratio) as usize,
            "num_hidden_layers": vit.shape.depth,
            "num_attention_heads": vit.shape.num_heads,
            "image_size": vit.shape.img_size,
            "patch_size": vit.shape.patch_size,
            "hidden_act": vision_act,
            // timm's ViTs: nn.LayerNorm with eps 1e-6.
            "layer_norm_eps": 1e-6,
            "vision_use_head": true,
        },
    }))
}

/// open_clip's own text transformer as its SigLIP configs build it: bidirectional, read at the
/// last position of a text padded to the context, its head a linear layer with a bias (or
/// none), texts tokenized by a Hugging Face tokenizer (`hf_tokenizer_name`).
fn siglip_text(m: &OpenClipModelConfig, t: &Options) -> Result<serde_json::Value> {
    if !t.flag("no_causal_mask") || t.str("pool_type") != Some("last") {
        return Err(t.bad(
            "a text tower beside a timm image tower runs as SigLIP's: bidirectional and read at its last position \
             (no_causal_mask true, pool_type \"last\", as open_clip's SigLIP configs set them)"
                .into(),
        ));
    }
    if t.get("hf_tokenizer_name").is_none() {
        return Err(t.bad(
            "a SigLIP text tower needs its tokenizer (hf_tokenizer_name); open_clip's CLIP tokenizer would pad its \
             texts with a token it was not trained on"
                .into(),
        ));
    }
    t.refuse_unless("embed_cls", is_false)?;
    let without_head = match t.str("proj_type") {
        Some("none") => true,
        None | Some("linear") if t.flag("proj_bias") => false,
        _ => {
            return Err(t.bad(format!(
                "text proj_type {} with proj_bias {}: a SigLIP text head is a linear layer with a bias (proj_bias \
                 true) or none (proj_type \"none\")",
                t.get("proj_type").unwrap_or(&"\"linear\"".into()),
                t.flag("proj_bias")
            )))
        }
    };
    // open_clip's TextTransformer: nn.GELU (or QuickGELU) with `act_kwargs`, nn.LayerNorm with `norm_kwargs`.
    let approximate = t.kwargs("act_kwargs", &["approximate"])?.and_then(|kwargs| kwargs.get("approximate"));
    let hidden_act = match (m.quick_gelu, approximate.map(|a| a.as_str())) {
        (true, None) => "quick_gelu",
        (false, None | Some(Some("none"))) => "gelu",
        (false, Some(Some("tanh"))) => "gelu_pytorch_tanh",
        _ => {
            let kwargs = t.get("act_kwargs").map(|v| v.to_string()).unwrap_or_default();
            return Err(t.bad(format!(
                "text act_kwargs {kwargs} with quick_gelu {} are not supported (approximate \"none\" or \"tanh\" \
                 with GELU)",
                m.quick_gelu
            )));
        }
    };
    let layer_norm_eps = match t.kwargs("norm_kwargs", &["eps"])?.and_then(|kwargs| kwargs.get("eps")) {
        None => 1e-5,
        Some(eps) => eps.as_f64().ok_or_else(|| t.bad(format!("text norm_kwargs eps={eps} is not a number")))?,
    };
    let mut text = own_text_shape(t, t.size("context_length", 77.0)?, hidden_act, layer_norm_eps)?;
    let (cleaning, strip_sep_token) = hf_tokenizer_options(t)?;
    text["open_clip_cleaning"] = serde_json::to_value(cleaning).expect("a name");
    text["strip_sep_token"] = strip_sep_token.into();
    text["without_head"] = without_head.into();
    Ok(text)
}

/// The shape of open_clip's own text transformer (`TextTransformer`) with `positions` learned
/// positions: MLP width int(width * mlp_ratio), open_clip's defaults for what `t` leaves out.
fn own_text_shape(t: &Options, positions: usize, hidden_act: &str, layer_norm_eps: f64) -> Result<serde_json::Value> {
    let width = t.size("width", 512.0)?;
    Ok(serde_json::json!({
        "vocab_size": t.size("vocab_size", 49408.0)?,
        "hidden_size": width,
        "intermediate_size": (width as f64 * t.num("mlp_ratio", 4.0)?) as usize,
        "num_hidden_layers": t.size("layers", 12.0)?,
        "num_attention_heads": t.size("heads", 8.0)?,
        "max_position_embeddings": positions,
        "hidden_act": hidden_act,
        "layer_norm_eps": layer_norm_eps,
    }))
}

/// How open_clip's `HFTokenizer` cleans texts (`tokenizer_kwargs`): "whitespace" unless the
/// config names another; and whether it strips the separator token (`strip_sep_token`).
fn hf_tokenizer_options(t: &Options) -> Result<(TextCleaning, bool)> {
    let (mut cleaning, mut strip_sep_token) = (TextCleaning::Whitespace, false);
    for (key, value) in t.kwargs("tokenizer_kwargs", &["clean", "strip_sep_token"])?.into_iter().flatten() {
        match (key.as_str(), value) {
            ("clean", v) if v.as_str().and_then(TextCleaning::from_name).is_some() => {
                cleaning = v.as_str().and_then(TextCleaning::from_name).expect("checked");
            }
            ("strip_sep_token", serde_json::Value::Bool(strip)) => strip_sep_token = *strip,
            _ => {
                return Err(t.bad(format!(
                    "OpenCLIP text option tokenizer_kwargs.{key}={value} is not supported (clean \"whitespace\", \
                     \"lower\" or \"canonicalize\", and strip_sep_token, run)"
                )))
            }
        }
    }
    Ok((cleaning, strip_sep_token))
}

/// [`hf_tokenizer_options`] for a tower that masks its padding out, where a stripped separator
/// would be read as padding.
fn hf_tokenizer_cleaning(t: &Options) -> Result<TextCleaning> {
    match hf_tokenizer_options(t)? {
        (cleaning, false) => Ok(cleaning),
        (_, true) => Err(t.bad(
            "OpenCLIP text option tokenizer_kwargs.strip_sep_token=true is not supported with a Hugging Face text \
             tower (it runs with open_clip's own text transformer, as CLIPA's)"
                .into(),
        )),
    }
}

/// The text config of the Hugging Face encoder `text_model` (its `config.json`) pooled and
/// projected to `embed_dim` as open_clip's `text_cfg` options in `options` say
/// (`hf_pooler_type`, `hf_proj_type`, `context_length`): how M-CLIP's tower is described too.
pub(super) fn hf_encoder_text_config(
    options: &serde_json::Map<String, serde_json::Value>,
    embed_dim: usize,
    text_model: &Path,
    path: &Path,
) -> Result<serde_json::Value> {
    hf_text_config(&Options { cfg: options, part: "text", path }, embed_dim, text_model)
}

/// The text tower of an OpenCLIP model built from a Hugging Face model (`hf_model_name`): the
/// encoder's shape from that model's `config.json` (`text_model`), with `transformers`' class
/// defaults for what it leaves out, and open_clip's pooling, projection and text cleaning.
fn hf_text_config(t: &Options, embed_dim: usize, text_model: &Path) -> Result<serde_json::Value> {
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
    let option = |key: &str| t.cfg.get(key).map(|v| v.as_str().ok_or(v));
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
    let context_length = match t.get("context_length") {
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
        },
        "open_clip_cleaning": hf_tokenizer_cleaning(t)?,
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
    let resnet = tensors.iter().any(|(name, _)| is_resnet_tensor(name) || is_convnext_tensor(name));
    let eva = tensors.iter().any(|(name, _)| is_eva_tensor(name));
    for (name, tensor) in tensors {
        let name = name.strip_prefix("module.").unwrap_or(&name);
        // ResNet, ConvNeXt and EVA image towers have no counterpart in `transformers`: they
        // keep open_clip's names (timm's, for EVA), less the batch norms' counters.
        if let Some(rest) = name.strip_prefix("visual.").filter(|_| resnet) {
            if !rest.ends_with(".num_batches_tracked") {
                out.insert(format!("vision_model.{rest}"), tensor);
            }
            continue;
        }
        if let Some(rest) = name.strip_prefix("visual.trunk.").filter(|_| eva) {
            out.insert(format!("vision_model.{rest}"), tensor);
            continue;
        }
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
        if let Some(timm) = name.strip_prefix("visual.trunk.") {
            insert_timm_vit_tensor(&mut out, timm, tensor).map_err(|reason| bad(format!("{reason}: {name}")))?;
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
            "attn_mask" => continue,
            // Scalars in open_clip, (1,) in `SiglipModel`; CLIP-family models do not read them.
            "logit_scale" | "logit_bias" => {
                out.insert(rest.into(), tensor.reshape(1).map_err(candle)?);
                continue;
            }
            // SigLIP's text head, a linear layer with a bias (`proj_bias`).
            "text_projection.weight" | "text_projection.bias" => format!("{tower}.head.{}", suffix(rest)),
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
                        insert_split_qkv(&mut out, &prefix, kind, &tensor).map_err(candle)?;
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
    fuse_timm_attention_pool(&mut out).map_err(candle)?;
    Ok(out)
}

/// Whether a tensor is one of a `ModifiedResNet` image tower's (its attention pool's, which no
/// ViT has).
fn is_resnet_tensor(name: &str) -> bool {
    name.strip_prefix("module.").unwrap_or(name).starts_with("visual.attnpool.")
}

/// Whether a tensor is one of a timm ConvNeXt's (its stem's conv, which no ViT has).
fn is_convnext_tensor(name: &str) -> bool {
    name.strip_prefix("module.").unwrap_or(name) == "visual.trunk.stem.0.weight"
}

/// Whether a tensor is one of an EVA image tower's (its class token: timm's SigLIP ViTs have none).
fn is_eva_tensor(name: &str) -> bool {
    name.strip_prefix("module.").unwrap_or(name) == "visual.trunk.cls_token"
}

/// A fused attention projection, [q; k; v] stacked on the first axis, as the three of
/// `transformers`' layer at `prefix`.
fn insert_split_qkv(
    out: &mut HashMap<String, Tensor>,
    prefix: &str,
    kind: &str,
    tensor: &Tensor,
) -> candle_core::Result<()> {
    let third = tensor.dim(0)? / 3;
    for (i, which) in ["q_proj", "k_proj", "v_proj"].iter().enumerate() {
        out.insert(format!("{prefix}.self_attn.{which}.{kind}"), tensor.narrow(0, i * third, third)?.contiguous()?);
    }
    Ok(())
}

/// One tensor of a timm SigLIP ViT (after `visual.trunk.`) under `SiglipVisionModel`'s names.
/// The attention pool's query and its fused key-value projection are kept apart here and made
/// one `in_proj`, as torch's MultiheadAttention keeps them, by [`fuse_timm_attention_pool`].
fn insert_timm_vit_tensor(
    out: &mut HashMap<String, Tensor>,
    name: &str,
    tensor: Tensor,
) -> std::result::Result<(), String> {
    let p = "vision_model";
    let renamed = match name {
        "patch_embed.proj.weight" | "patch_embed.proj.bias" => {
            format!("{p}.embeddings.patch_embedding.{}", suffix(name))
        }
        // (1, patches, width) in timm.
        "pos_embed" => {
            let positions = tensor.squeeze(0).map_err(|e| e.to_string())?;
            out.insert(format!("{p}.embeddings.position_embedding.weight"), positions);
            return Ok(());
        }
        "norm.weight" | "norm.bias" => format!("{p}.post_layernorm.{}", suffix(name)),
        "attn_pool.latent" => format!("{p}.head.probe"),
        "attn_pool.q.weight" | "attn_pool.q.bias" | "attn_pool.kv.weight" | "attn_pool.kv.bias" => {
            format!("{p}.head.attention.{}", name["attn_pool.".len()..].replace('.', "_"))
        }
        "attn_pool.proj.weight" | "attn_pool.proj.bias" => format!("{p}.head.attention.out_proj.{}", suffix(name)),
        "attn_pool.norm.weight" | "attn_pool.norm.bias" => format!("{p}.head.layernorm.{}", suffix(name)),
        "attn_pool.mlp.fc1.weight"
        | "attn_pool.mlp.fc1.bias"
        | "attn_pool.mlp.fc2.weight"
        | "attn_pool.mlp.fc2.bias" => {
            format!("{p}.head.{}", &name["attn_pool.".len()..])
        }
        _ => {
            let (layer, part) = name
                .strip_prefix("blocks.")
                .and_then(|rest| rest.split_once('.'))
                .ok_or("unsupported tensor of a timm ViT (is this one of SigLIP's?)")?;
            let prefix = format!("{p}.encoder.layers.{layer}");
            if let Some(kind) = part.strip_prefix("attn.qkv.") {
                return insert_split_qkv(out, &prefix, kind, &tensor).map_err(|e| e.to_string());
            }
            let ours = match part {
                "norm1.weight" | "norm1.bias" => format!("layer_norm1.{}", suffix(part)),
                "norm2.weight" | "norm2.bias" => format!("layer_norm2.{}", suffix(part)),
                "attn.proj.weight" | "attn.proj.bias" => format!("self_attn.out_proj.{}", suffix(part)),
                "mlp.fc1.weight" | "mlp.fc1.bias" | "mlp.fc2.weight" | "mlp.fc2.bias" => part.to_string(),
                // LayerScale (`init_values`), folded as OpenCLIP's own is.
                "ls1.gamma" => "attention_scale".into(),
                "ls2.gamma" => "mlp_scale".into(),
                _ => return Err("unsupported tensor of a timm ViT block".into()),
            };
            format!("{prefix}.{ours}")
        }
    };
    out.insert(renamed, tensor);
    Ok(())
}

/// The attention pool's `q` and `kv` (timm's names, kept by [`insert_timm_vit_tensor`]) as the
/// one `in_proj` of `SiglipMultiheadAttentionPoolingHead`: [q; k; v].
fn fuse_timm_attention_pool(tensors: &mut HashMap<String, Tensor>) -> candle_core::Result<()> {
    for kind in ["weight", "bias"] {
        let part = |half: &str| format!("vision_model.head.attention.{half}_{kind}");
        if let (Some(q), Some(kv)) = (tensors.get(&part("q")), tensors.get(&part("kv"))) {
            let fused = Tensor::cat(&[q, kv], 0)?;
            tensors.remove(&part("q"));
            tensors.remove(&part("kv"));
            tensors.insert(format!("vision_model.head.attention.in_proj_{kind}"), fused);
        }
    }
    Ok(())
}

/// Whether an OpenCLIP tensor is needed for `towers`: the image tower's are under `visual.`,
/// the text tower's are the others, and the logit scale and bias go with either.
pub fn is_of(name: &str, towers: Towers) -> bool {
    let name = name.strip_prefix("module.").unwrap_or(name);
    let image = name.starts_with("visual.");
    match towers {
        Towers::Both => true,
        Towers::Image => image || name.starts_with("logit_"),
        Towers::Text => !image,
    }
}

/// Whether an OpenCLIP tensor is the text tower's token table (which [`to_clip_names`] renames
/// to `TEXT_TOKEN_TABLE`): open_clip's own tower's, or a Hugging Face tower's (BERT's
/// `word_embeddings`, NLLB's `embed_tokens`).
pub fn is_token_table(name: &str) -> bool {
    matches!(
        name.strip_prefix("module.").unwrap_or(name),
        "token_embedding.weight"
            | "text.token_embedding.weight"
            | "text.transformer.embeddings.word_embeddings.weight"
            | "text.transformer.embed_tokens.weight"
    )
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
pub(super) fn hf_encoder_name(name: &str) -> std::result::Result<Option<String>, &'static str> {
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

    /// The fields the towers read of nllb-200-distilled-600M's config.json.
    const NLLB_600M_CONFIG: &str = r#"{"model_type": "m2m_100", "vocab_size": 256206, "d_model": 1024,
        "encoder_layers": 12, "encoder_attention_heads": 16, "encoder_ffn_dim": 4096, "activation_function": "relu",
        "max_position_embeddings": 1024, "scale_embedding": true, "pad_token_id": 1}"#;

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
            ("nllb", NLLB_600M_CONFIG),
        ];
        let text_model = tempfile::NamedTempFile::new().unwrap();
        for arch in builtin_arch_names() {
            let openclip = OpenClipConfig::from_arch(&arch).unwrap();
            let hf_text = openclip.hf_text_names().0.is_some();
            let nllb = arch.starts_with("nllb");
            let (_, json) = text_models.iter().find(|(kind, _)| nllb == (*kind == "nllb")).unwrap();
            std::fs::write(text_model.path(), json).unwrap();
            let config = openclip.model_config(Path::new(&arch), hf_text.then(|| text_model.path())).unwrap();
            let (v, t) = (&config.vision_config, &config.text_config);
            let coca = arch.starts_with("coca_");
            assert_eq!(v.attentional_pool.is_some(), coca, "{arch}");
            assert_eq!(t.class_token, coca, "{arch}");
            let clipa = arch.contains("CLIPA");
            let context = if coca {
                76
            } else if clipa {
                32
            } else {
                77
            };
            assert_eq!(t.context_length(), context, "{arch}");
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
                    assert!(encoder.positions_after_pad, "{arch}");
                    assert_eq!(t.open_clip_cleaning, Some(TextCleaning::Whitespace), "{arch}");
                    if arch == "xlm-roberta-base-ViT-B-32" {
                        // sum(p.numel() for p in open_clip's model), xlm-roberta-base's config built in.
                        assert_eq!(config.parameter_count(), 366_121_473);
                    }
                }
                None => {
                    assert_eq!((hf_text, t.max_position_embeddings), (false, if clipa { 32 } else { 77 }), "{arch}")
                }
            }
            assert_eq!(v.resnet.is_some(), arch.starts_with("RN"), "{arch}");
            assert_eq!(v.eva.is_some(), arch.starts_with("EVA") || arch == "MobileCLIP-B", "{arch}");
            assert_eq!(v.convnext.is_some(), arch.starts_with("convnext"), "{arch}");
            assert_eq!(
                (v.average_pool, v.without_pre_norm, t.bidirectional, t.strip_sep_token),
                (clipa, clipa, clipa, clipa)
            );
            // sum(p.numel() for p in open_clip.create_model(arch).parameters()), open-clip-torch 2.32.
            let open_clips_count = match arch.trim_end_matches("-quickgelu") {
                "RN50" => 102_007_137,
                "RN101" => 119_688_033,
                "RN50x4" => 178_300_601,
                "RN50x16" => 290_979_217,
                "RN50x64" => 623_258_305,
                "EVA01-g-14" => 1_136_435_841,
                "EVA01-g-14-plus" => 1_366_621_569,
                "EVA02-B-16" => 149_691_137,
                "EVA02-L-14" => 427_755_457,
                "EVA02-L-14-336" => 428_083_137,
                "EVA02-E-14" => 4_704_589_569,
                "EVA02-E-14-plus" => 5_044_889_089,
                "MobileCLIP-B" => 149_777_153,
                "ViT-L-14-CLIPA" => 414_210_561,
                "ViT-L-14-CLIPA-336" => 414_538_241,
                "ViT-H-14-CLIPA" => 968_235_009,
                "ViT-H-14-CLIPA-336" => 968_644_609,
                "ViT-bigG-14-CLIPA" => 2_517_223_937,
                "ViT-bigG-14-CLIPA-336" => 2_517_756_417,
                "convnext_base" => 151_518_849,
                "convnext_base_w" | "convnext_base_w_320" => 179_385_345,
                "convnext_large" => 321_060_289,
                "convnext_large_d" | "convnext_large_d_320" => 351_772_609,
                "convnext_small" => 113_276_001,
                "convnext_tiny" => 92_296_801,
                "convnext_xlarge" => 653_892_865,
                "convnext_xxlarge" | "convnext_xxlarge_320" => 1_200_576_385,
                _ => continue,
            };
            assert_eq!(config.parameter_count(), open_clips_count, "{arch}");
        }
    }

    /// EVA towers run only as open_clip's EVA configs build them (class-token pooling, timm's head as
    /// the projection, the tower's own picture size), with `timm_model_kwargs` limited to the
    /// shape, and rotary positions only on heads a multiple of 4 wide; each refusal says why.
    #[test]
    fn eva_configs_refuse_what_does_not_run() {
        let eva = |vision: &str| {
            let json = format!(
                r#"{{"embed_dim":512,"custom_text":true,"vision_cfg":{{"image_size":224,"timm_model_name":"eva02_base_patch16_clip_224",{vision}}},"text_cfg":{{"width":512,"heads":8,"layers":12}}}}"#
            );
            let openclip =
                OpenClipConfig { model: serde_json::from_str(&json).unwrap(), preprocess: Default::default() };
            openclip.model_config(Path::new("EVA02-B-16"), None)
        };
        let config = eva(r#""timm_pool":"token","timm_proj":null"#).unwrap();
        let shape = config.vision_config.eva.unwrap();
        assert!(shape.swiglu && shape.mlp_norm && shape.attention_norm && !shape.fused_qkv && !shape.post_norm);
        assert_eq!((shape.rope_reference_grid, config.vision_config.intermediate_size), (Some(16), 2048));
        for (vision, why) in [
            (r#""timm_pool":"avg","timm_proj":null"#, "not timm_pool \"avg\""),
            (r#""timm_pool":"token","timm_proj":"linear""#, "and timm_proj \"linear\""),
            (r#""timm_pool":"token","timm_model_kwargs":{"qkv_fused":true}"#, "only img_size, patch_size"),
            (
                r#""timm_pool":"token","timm_model_kwargs":{"img_size":336}"#,
                "image_size 224 is not the timm tower's img_size 336",
            ),
            (r#""timm_pool":"token","timm_model_kwargs":{"embed_dim":72,"num_heads":4}"#, "heads 18 wide"),
        ] {
            let error = eva(vision).unwrap_err().to_string();
            assert!(error.contains(why), "{vision}: {error}");
        }
    }

    /// OpenCLIP's SigLIP and SigLIP 2 configs (copied from open-clip-torch 2.32's `model_configs/`)
    /// translate to the shapes open_clip builds: `sum(p.numel() for p in model.parameters())`.
    #[test]
    fn siglip_configs_translate_to_open_clips_shapes() {
        let configs = [
            (
                "ViT-SO400M-14-SigLIP-384",
                877960498,
                r#"{"embed_dim":1152,"init_logit_bias":-10,"custom_text":true,"vision_cfg":{"image_size":384,"timm_model_name":"vit_so400m_patch14_siglip_384","timm_model_pretrained":false,"timm_pool":"map","timm_proj":"none"},"text_cfg":{"context_length":64,"vocab_size":32000,"hf_tokenizer_name":"timm/ViT-B-16-SigLIP","tokenizer_kwargs":{"clean":"canonicalize"},"width":1152,"heads":16,"layers":27,"mlp_ratio":3.7362,"no_causal_mask":true,"proj_bias":true,"pool_type":"last","norm_kwargs":{"eps":1e-06}}}"#,
            ),
            (
                "ViT-B-16-SigLIP2",
                375187970,
                r#"{"embed_dim":768,"init_logit_bias":-10,"custom_text":true,"vision_cfg":{"image_size":224,"timm_model_name":"vit_base_patch16_siglip_224","timm_model_pretrained":false,"timm_pool":"map","timm_proj":"none"},"text_cfg":{"context_length":64,"vocab_size":256000,"hf_tokenizer_name":"timm/ViT-B-16-SigLIP2","tokenizer_kwargs":{"clean":"canonicalize"},"width":768,"heads":12,"layers":12,"no_causal_mask":true,"proj_bias":true,"pool_type":"last","norm_kwargs":{"eps":1e-06},"act_kwargs":{"approximate":"tanh"}}}"#,
            ),
            (
                "ViT-SO400M-16-SigLIP-i18n-256",
                1127430706,
                r#"{"embed_dim":1152,"init_logit_bias":-10,"custom_text":true,"vision_cfg":{"image_size":256,"timm_model_name":"vit_so400m_patch16_siglip_256","timm_model_pretrained":false,"timm_pool":"map","timm_proj":"none"},"text_cfg":{"context_length":64,"vocab_size":250000,"hf_tokenizer_name":"timm/ViT-B-16-SigLIP-i18n-256","tokenizer_kwargs":{"clean":"canonicalize"},"width":1152,"heads":16,"layers":27,"mlp_ratio":3.7362,"no_causal_mask":true,"pool_type":"last","proj_type":"none","norm_kwargs":{"eps":1e-06}}}"#,
            ),
            (
                "ViT-gopt-16-SigLIP2-384",
                1871885426,
                r#"{"embed_dim":1536,"init_logit_bias":-10,"custom_text":true,"vision_cfg":{"image_size":384,"timm_model_name":"vit_giantopt_patch16_siglip_384","timm_model_pretrained":false,"timm_pool":"map","timm_proj":"none"},"text_cfg":{"context_length":64,"vocab_size":256000,"hf_tokenizer_name":"timm/ViT-gopt-16-SigLIP2-384","tokenizer_kwargs":{"clean":"canonicalize"},"width":1152,"heads":16,"layers":27,"mlp_ratio":3.7362,"no_causal_mask":true,"proj_bias":true,"pool_type":"last","norm_kwargs":{"eps":1e-06},"act_kwargs":{"approximate":"tanh"}}}"#,
            ),
            (
                "ViT-B-16-SigLIP",
                203155970,
                r#"{"embed_dim":768,"init_logit_bias":-10,"custom_text":true,"vision_cfg":{"image_size":224,"timm_model_name":"vit_base_patch16_siglip_224","timm_model_pretrained":false,"timm_pool":"map","timm_proj":"none"},"text_cfg":{"context_length":64,"vocab_size":32000,"hf_tokenizer_name":"timm/ViT-B-16-SigLIP","tokenizer_kwargs":{"clean":"canonicalize"},"width":768,"heads":12,"layers":12,"no_causal_mask":true,"proj_bias":true,"pool_type":"last","norm_kwargs":{"eps":1e-06}}}"#,
            ),
        ];
        for (arch, parameters, json) in configs {
            let model: OpenClipModelConfig = serde_json::from_str(json).unwrap();
            let openclip = OpenClipConfig { model, preprocess: OpenClipPreprocess::default() };
            let config = openclip.model_config(Path::new(arch), None).unwrap();
            assert_eq!(config.family, crate::model::config::Family::Siglip, "{arch}");
            assert_eq!(config.text_config.open_clip_cleaning, Some(TextCleaning::Canonicalize), "{arch}");
            assert_eq!(config.parameter_count(), parameters, "{arch}");
        }
        // nllb-clip-base-siglip: the B/16 at 384 beside nllb-200-distilled-600M's encoder.
        let text_model = tempfile::NamedTempFile::new().unwrap();
        std::fs::write(text_model.path(), NLLB_600M_CONFIG).unwrap();
        let json = r#"{"embed_dim":768,"custom_text":true,"init_logit_bias":-10,"vision_cfg":{"image_size":384,"timm_model_name":"vit_base_patch16_siglip_384","timm_model_pretrained":false,"timm_pool":"map","timm_proj":"none"},"text_cfg":{"hf_model_name":"facebook/nllb-200-distilled-600M","hf_tokenizer_name":"facebook/nllb-200-distilled-600M","hf_proj_type":"linear","hf_pooler_type":"cls_pooler"}}"#;
        let openclip = OpenClipConfig { model: serde_json::from_str(json).unwrap(), preprocess: Default::default() };
        let config = openclip.model_config(Path::new("nllb-clip-base-siglip"), Some(text_model.path())).unwrap();
        assert_eq!(config.family, crate::model::config::Family::Siglip);
        assert_eq!(config.parameter_count(), 507_474_178);
    }
}
