//! Model configuration, read from a checkpoint's `config.json` and `preprocessor_config.json`.
//!
//! Field names mirror Hugging Face's `CLIPConfig` / `SiglipConfig` and their image processors, so
//! any checkpoint saved by `transformers` loads without a translation table. Nothing about the
//! shape is hard-coded: a field missing from the file takes the value `transformers` gives it for
//! that model type (the two families' defaults differ, see [`Family::defaults`]). Chinese-CLIP
//! (`chinese_clip`) is read as CLIP with a BERT text tower ([`HfEncoder`]).

use serde::Deserialize;
use std::path::Path;

use super::text_cleaning::TextCleaning;
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
    /// `max(x, 0)`: NLLB's encoder (OpenCLIP's multilingual text towers).
    Relu,
}

/// The architectures the towers implement, by `config.json`'s `model_type`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Family {
    /// OpenAI CLIP (`CLIPModel`), MetaCLIP 2 (`MetaClip2Model`: CLIP with XLM-V's tokenizer),
    /// and OpenCLIP's ViT checkpoints, which are renamed into it.
    Clip,
    /// SigLIP, SigLIP 2 (`SiglipModel`) and SigLIP 2 NaFlex (`Siglip2Model`): no class token, an
    /// attention pooling head, a bidirectional text tower read at its last position, sigmoid scores.
    /// OpenCLIP's SigLIP checkpoints (timm's image towers) are renamed into it.
    Siglip,
}

impl Family {
    fn from_model_type(model_type: Option<&str>, path: &Path) -> Result<Self> {
        match model_type {
            // Chinese-CLIP is CLIP with a BERT text tower (see `chinese_clip_text`).
            // MetaCLIP 2 is CLIP read by a multilingual tokenizer (XLM-V's).
            None | Some("clip") | Some("chinese_clip") | Some("metaclip_2") => Ok(Self::Clip),
            // SigLIP 2 NaFlex is SigLIP whose pictures keep their aspect ratio
            // (`VisionConfig::naflex_position_grid`).
            Some("siglip") | Some("siglip2") => Ok(Self::Siglip),
            Some(other) => Err(Error::BadCheckpoint {
                path: path.to_owned(),
                reason: format!(
                    "model_type \"{other}\" is not supported: imgsearch runs \"clip\", \"chinese_clip\", \"metaclip_2\", \
                     \"siglip\" and \"siglip2\" checkpoints (and OpenCLIP's); `imgsearch models` lists them"
                ),
            }),
        }
    }

    /// What `transformers` assumes for every field a `config.json` of this family may leave out.
    fn defaults(self) -> serde_json::Value {
        match self {
            Self::Clip => serde_json::json!({
                "projection_dim": 512,
                "text_config": {
                    "vocab_size": 49408, "hidden_size": 512, "intermediate_size": 2048,
                    "num_hidden_layers": 12, "num_attention_heads": 8, "max_position_embeddings": 77,
                    "hidden_act": "quick_gelu", "layer_norm_eps": 1e-5,
                },
                "vision_config": {
                    "hidden_size": 768, "intermediate_size": 3072, "num_hidden_layers": 12,
                    "num_attention_heads": 12, "num_channels": 3, "image_size": 224, "patch_size": 32,
                    "hidden_act": "quick_gelu", "layer_norm_eps": 1e-5,
                },
            }),
            Self::Siglip => serde_json::json!({
                "text_config": {
                    "vocab_size": 32000, "hidden_size": 768, "intermediate_size": 3072,
                    "num_hidden_layers": 12, "num_attention_heads": 12, "max_position_embeddings": 64,
                    "hidden_act": "gelu_pytorch_tanh", "layer_norm_eps": 1e-6, "pad_token_id": 1,
                },
                "vision_config": {
                    "hidden_size": 768, "intermediate_size": 3072, "num_hidden_layers": 12,
                    "num_attention_heads": 12, "num_channels": 3, "image_size": 224, "patch_size": 16,
                    "hidden_act": "gelu_pytorch_tanh", "layer_norm_eps": 1e-6, "vision_use_head": true,
                },
            }),
        }
    }
}

#[derive(Debug, Clone, Deserialize, serde::Serialize)]
pub struct TextConfig {
    pub vocab_size: usize,
    pub hidden_size: usize,
    pub intermediate_size: usize,
    pub num_hidden_layers: usize,
    pub num_attention_heads: usize,
    pub max_position_embeddings: usize,
    pub hidden_act: Activation,
    pub layer_norm_eps: f64,
    /// SigLIP: the width of the text head's output (the embedding); `hidden_size` when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub projection_size: Option<usize>,
    /// SigLIP: what texts are padded with when the tokenizer files do not say.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pad_token_id: Option<u32>,
    /// OpenCLIP's `embed_cls` (CoCa): a learned class token after the context, at position
    /// `context_length`, which the tower is pooled at. It sees the text but not its padding
    /// (token 0, what open_clip's tokenizer pads with).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub class_token: bool,
    /// A text tower built from a Hugging Face encoder in place of CLIP's transformer: OpenCLIP's
    /// (`hf_model_name`: BERT, RoBERTa, XLM-RoBERTa, NLLB) and Chinese-CLIP's BERT; the fields
    /// above then describe that encoder.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hf_encoder: Option<HfEncoder>,
    /// OpenCLIP checkpoints whose tokenizer is a Hugging Face one (`hf_tokenizer_name`): how
    /// open_clip's `HFTokenizer` cleans each text before `tokenizer.json` sees it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub open_clip_cleaning: Option<TextCleaning>,
    /// SigLIP: no head after the pooled token (OpenCLIP's `proj_type: "none"`, as in
    /// ViT-SO400M-16-SigLIP-i18n-256): the tower is as wide as the embedding.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub without_head: bool,
    /// OpenCLIP's `no_causal_mask` with `pool_type: "last"` in a CLIP model (CLIPA): every
    /// position sees every other, and the tower is read at the last position of a text padded
    /// to the context, as SigLIP's is.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub bidirectional: bool,
    /// open_clip's `strip_sep_token` (CLIPA's BERT tokenizer): the `[SEP]` the tokenizer ends a
    /// text with becomes token 0.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub strip_sep_token: bool,
    /// SigLIP 2 NaFlex: texts are tokenized as `transformers`' `Siglip2Tokenizer` does, whatever
    /// class `tokenizer_config.json` names: lowercased before the tokenizer's own normalizer (as
    /// SigLIP 2 was trained), and padded on the left unless the tokenizer files say otherwise.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub siglip2_tokenizer: bool,
}

impl TextConfig {
    /// How many tokens a text may have: the positions bar the class token's.
    pub fn context_length(&self) -> usize {
        match &self.hf_encoder {
            Some(encoder) => encoder.context_length,
            None => self.max_position_embeddings - usize::from(self.class_token),
        }
    }
}

/// What a text tower built from a Hugging Face encoder needs beyond the encoder's shape.
#[derive(Debug, Clone, Deserialize, serde::Serialize)]
pub struct HfEncoder {
    pub architecture: HfArchitecture,
    /// What the token embeddings are multiplied by (NLLB: the square root of the width).
    pub embed_scale: f64,
    /// BERT's token types (every token is of type 0); none in NLLB's encoder.
    pub type_vocab_size: usize,
    /// Masked out of attention and of the pooling wherever it stands, typed or padding (where
    /// `masks_pad_id`).
    pub pad_token_id: u32,
    /// RoBERTa and NLLB number the positions of the tokens that are not padding from
    /// `pad_token_id + 1`; BERT numbers every position from 0.
    pub positions_after_pad: bool,
    /// The tokenizer's context (open_clip's `context_length`), not the position table's size.
    pub context_length: usize,
    /// open_clip masks every pad-id token out, typed ones too; `transformers`' Chinese-CLIP
    /// attends to every token its tokenizer gives (texts here are never padded).
    pub masks_pad_id: bool,
    pub pooler: HfPooler,
    pub projection: HfProjection,
}

/// The Hugging Face encoders the text towers implement (`model_type`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum HfArchitecture {
    /// BERT, RoBERTa, XLM-RoBERTa: learned positions and token types, a layer norm after the
    /// embeddings, post-norm layers.
    Bert,
    /// NLLB-200's encoder (`m2m_100`): sinusoidal positions, pre-norm layers, a layer norm at
    /// the end.
    M2m100,
}

/// open_clip's `hf_pooler_type`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum HfPooler {
    /// `mean_pooler`: the mean of the tokens that are not padding.
    Mean,
    /// `cls_last_hidden_state_pooler`: the first token.
    FirstToken,
    /// `cls_pooler`: the model's own pooler on the first token, `tanh(dense(x))`.
    FirstTokenDense,
}

/// open_clip's `hf_proj_type`, from the encoder's width to the embedding's (no biases), or
/// M-CLIP's `LinearTransformation`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum HfProjection {
    /// None: the encoder is as wide as the embedding.
    Identity,
    Linear,
    /// A linear layer with a bias (M-CLIP's).
    BiasedLinear,
    /// Linear to `(width + embedding) / 2`, exact GELU, linear.
    Mlp,
}

#[derive(Debug, Clone, Deserialize, serde::Serialize)]
pub struct VisionConfig {
    pub hidden_size: usize,
    pub intermediate_size: usize,
    pub num_hidden_layers: usize,
    pub num_attention_heads: usize,
    pub num_channels: usize,
    pub image_size: usize,
    pub patch_size: usize,
    pub hidden_act: Activation,
    pub layer_norm_eps: f64,
    /// SigLIP: whether the tower ends in its attention-pooling head (the only pooling it has).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vision_use_head: Option<bool>,
    /// OpenCLIP's `attentional_pool` (CoCa): learned queries attend over every token, and the
    /// first one's output, normalised, is projected.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub attentional_pool: Option<AttentionalPool>,
    /// OpenCLIP's `no_ln_pre` (CLIPA): no layer norm before the blocks.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub without_pre_norm: bool,
    /// OpenCLIP's `pool_type: "avg"` (CLIPA): the picture is the mean of its patch tokens (the
    /// class token left out), normalised after the mean where `norm_after_pool`
    /// (`final_ln_after_pool`), else each token before it.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub average_pool: bool,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub norm_after_pool: bool,
    /// OpenCLIP's `ModifiedResNet` (OpenAI's RN50, RN101, RN50x4 … and the CLIPs trained like
    /// them) in place of the ViT. `hidden_size` and `num_attention_heads` then describe its
    /// attention pool, `patch_size` is 32 (how much smaller than the picture the pooled grid is),
    /// and the transformer's other fields are unused.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resnet: Option<ResNetShape>,
    /// One of timm's EVA towers (EVA-CLIP's EVA02-B/L/E and EVA01-g) in place of CLIP's ViT:
    /// the same patches, class token and learned positions, but no norm before the blocks, blocks
    /// of their own (below), and timm's head, a linear layer with a bias, as the projection.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub eva: Option<EvaShape>,
    /// One of timm's ConvNeXts (LAION's ConvNeXt CLIPs) in place of the ViT: `hidden_size` is its
    /// last stage's width, `patch_size` how much smaller than the picture that stage's grid is
    /// (32), and the transformer's other fields are unused.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub convnext: Option<ConvNextShape>,
    /// SigLIP 2 NaFlex: a picture is a grid of patches in its own aspect ratio (as many as the
    /// processor's `max_num_patches` allows), and the learned positions, a square grid this many
    /// patches on a side, are resized to that grid. The patch embedding is a linear layer over
    /// (row, column, channel) patch pixels. `image_size` is then that square grid's size in
    /// pixels, and stands for no picture.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub naflex_position_grid: Option<usize>,
}

/// A timm ConvNeXt as open_clip builds it: a `stem_patch`-strided patch conv, four stages of
/// `depths[i]` blocks `dims[i]` wide (each later stage halving the grid), the grid's mean
/// normalised, then open_clip's projection.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, serde::Serialize)]
pub struct ConvNextShape {
    pub stem_patch: usize,
    pub dims: [usize; 4],
    pub depths: [usize; 4],
    pub projection: ConvNextProjection,
}

/// open_clip's `timm_proj` after a ConvNeXt: a linear layer, or (`mlp`) one twice the
/// embedding's width with a bias, exact GELU, and one without; no biases at the end.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ConvNextProjection {
    Linear,
    Mlp,
}

impl ConvNextShape {
    /// How many numbers the tower holds, projecting to `output`.
    fn parameter_count(&self, output: usize) -> usize {
        let d = self.dims;
        let mut count = 3 * self.stem_patch * self.stem_patch * d[0] + d[0] + 2 * d[0];
        for (i, (&dim, &depth)) in d.iter().zip(&self.depths).enumerate() {
            if i > 0 {
                count += 2 * d[i - 1] + 4 * d[i - 1] * dim + dim;
            }
            // depthwise 7×7 conv, norm, MLP 4× wide, layer scale
            count += depth * ((49 * dim + dim) + 2 * dim + (dim * 4 * dim + 4 * dim) + (4 * dim * dim + dim) + dim);
        }
        count += 2 * d[3];
        count
            + match self.projection {
                ConvNextProjection::Linear => d[3] * output,
                ConvNextProjection::Mlp => d[3] * 2 * output + 2 * output + 2 * output * output,
            }
    }
}

/// What sets an EVA tower's blocks apart from a CLIP ViT's. q and v have biases, k none (unless
/// `qkv_bias`). The same tower, without EVA's additions, is MobileCLIP-B's ViT.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, serde::Serialize)]
pub struct EvaShape {
    /// The MLP is SwiGLU, `silu(gate) * value`, each `intermediate_size` wide (else exact GELU).
    pub swiglu: bool,
    /// A layer norm on the MLP's hidden activations before its last layer (timm's `scale_mlp`).
    pub mlp_norm: bool,
    /// A layer norm on the attention's output before its projection (`scale_attn_inner`).
    pub attention_norm: bool,
    /// q, k and v in one weight (`attn.qkv`, biases `q_bias` and `v_bias`), not three.
    pub fused_qkv: bool,
    /// EVA-02's rotary positions on the patches' queries and keys (not the class token's): the
    /// grid's rows and columns counted as if it were this many patches wide (timm's
    /// `ref_feat_shape`).
    pub rope_reference_grid: Option<usize>,
    /// Each block normalises its branches' outputs (`x + norm(attn(x))`), as EVA02-E's do,
    /// instead of their inputs.
    pub post_norm: bool,
    /// `attn.qkv.bias` holds q's, k's and v's biases (timm's `VisionTransformer`), in place of
    /// `q_bias` and `v_bias`.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub qkv_bias: bool,
    /// timm's ConvStem (MobileCLIP-B's `vit_base_mci_224`) in place of the patch conv: a 4×4 conv
    /// to `hidden_size / 4` channels with a batch norm and exact GELU, a 2×2 conv the same, and a
    /// 2×2 conv with a bias to `hidden_size`, each strided by its size (16-pixel patches).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub conv_stem: bool,
    /// Learned positions for the patches alone; the class token takes none (`no_embed_class`).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub positions_without_class: bool,
}

impl EvaShape {
    /// How many numbers a tower `d` wide with `hidden`-wide MLPs holds per block.
    fn block_parameter_count(&self, d: usize, hidden: usize) -> usize {
        let qkv_biases = if self.qkv_bias { 3 * d } else { 2 * d };
        let attention = 3 * d * d + qkv_biases + (d * d + d) + if self.attention_norm { 2 * d } else { 0 };
        let inputs = if self.swiglu { 2 } else { 1 };
        let mlp = inputs * (d * hidden + hidden) + (hidden * d + d) + if self.mlp_norm { 2 * hidden } else { 0 };
        2 * 2 * d + attention + mlp
    }
}

/// The shape of a `ModifiedResNet`: a three-conv stem of `width / 2`, `width / 2` and `width`
/// channels, then four stages of `layers[i]` bottleneck blocks, the i-th `width << i` wide
/// inside and four times that at its output (so the attention pool sees `32 * width`).
#[derive(Debug, Clone, Copy, Deserialize, serde::Serialize)]
pub struct ResNetShape {
    pub layers: [usize; 4],
    pub width: usize,
}

impl ResNetShape {
    /// The side of the grid the attention pool sees for pictures `image_size` wide: the stem's
    /// stride-2 conv (padded by 1) and 2×2 average pool, then each later stage's 2×2 pool.
    pub fn pooled_grid(&self, image_size: usize) -> usize {
        image_size.div_ceil(2) / 2 / 8
    }

    /// How many numbers the tower holds (its batch norms' statistics are not parameters),
    /// ending in an attention pool over `image_size` pictures to `output` wide embeddings.
    fn parameter_count(&self, image_size: usize, output: usize) -> usize {
        let (w, half) = (self.width, self.width / 2);
        let conv_bn = |inputs: usize, outputs: usize, kernel: usize| inputs * outputs * kernel * kernel + 2 * outputs;
        let mut count = conv_bn(3, half, 3) + conv_bn(half, half, 3) + conv_bn(half, w, 3);
        let mut inputs = w;
        for (stage, &blocks) in self.layers.iter().enumerate() {
            let planes = w << stage;
            for block in 0..blocks {
                count += conv_bn(inputs, planes, 1) + conv_bn(planes, planes, 3) + conv_bn(planes, 4 * planes, 1);
                if block == 0 && (stage > 0 || inputs != 4 * planes) {
                    count += conv_bn(inputs, 4 * planes, 1);
                }
                inputs = 4 * planes;
            }
        }
        let (e, grid) = (32 * w, image_size / 32);
        count + (grid * grid + 1) * e + 3 * (e * e + e) + e * output + output
    }
}

/// The shape of OpenCLIP's `AttentionalPooler`: `queries` learned queries of the embedding's
/// width, `heads` heads, keys and values from the tower's width.
#[derive(Debug, Clone, Copy, Deserialize, serde::Serialize)]
pub struct AttentionalPool {
    pub queries: usize,
    pub heads: usize,
}

impl VisionConfig {
    /// How many learned positions the tower has (bar a class token's).
    pub fn num_patches(&self) -> usize {
        (self.image_size / self.patch_size).pow(2)
    }

    /// The (rows, columns) of `patch`-pixel patches a (height, width) picture makes, or `None`
    /// where the tower takes no picture of that size: a square of `image_size` (a "valid" conv
    /// leaves out the pixels past the last whole patch), or for NaFlex any whole number of patches.
    pub fn patch_grid(&self, height: usize, width: usize, patch: usize) -> Option<(usize, usize)> {
        match self.naflex_position_grid {
            Some(_)
                if height >= patch && width >= patch && height.is_multiple_of(patch) && width.is_multiple_of(patch) =>
            {
                Some((height / patch, width / patch))
            }
            None if height == self.image_size && width == self.image_size => {
                Some((self.image_size / patch, self.image_size / patch))
            }
            _ => None,
        }
    }
}

/// The top-level `config.json` of a `CLIPModel` or `SiglipModel` checkpoint.
#[derive(Debug, Clone, Deserialize, serde::Serialize)]
pub struct ModelConfig {
    #[serde(rename = "model_type")]
    pub family: Family,
    pub text_config: TextConfig,
    pub vision_config: VisionConfig,
    /// CLIP's `projection_dim`; for SigLIP the text head's width (which the picture side must equal).
    #[serde(default)]
    pub projection_dim: usize,
}

impl ModelConfig {
    pub fn from_file(path: &Path) -> Result<Self> {
        Self::from_json(read_json(path)?, path)
    }

    /// `raw`: a `config.json`'s content; `path` names it in errors.
    pub fn from_json(mut raw: serde_json::Value, path: &Path) -> Result<Self> {
        let bad = |reason: String| Error::BadCheckpoint { path: path.to_owned(), reason };
        let model_type = raw.get("model_type").filter(|v| !v.is_null());
        if model_type.is_some_and(|v| !v.is_string()) {
            return Err(bad(format!("model_type is {}, not a name such as \"clip\"", model_type.expect("checked"))));
        }
        let chinese_clip = model_type.and_then(|v| v.as_str()) == Some("chinese_clip");
        let naflex = model_type.and_then(|v| v.as_str()) == Some("siglip2");
        let family = Family::from_model_type(model_type.and_then(|v| v.as_str()), path)?;
        if !raw.is_object() {
            return Err(bad("config.json is not a JSON object".into()));
        }
        if chinese_clip {
            chinese_clip_text(&mut raw).map_err(bad)?;
        }
        if naflex {
            naflex_shape(&mut raw).map_err(bad)?;
        }
        fill_defaults(&mut raw, &family.defaults());
        raw["model_type"] = serde_json::to_value(family).expect("family serialises");
        let mut config: ModelConfig = serde_json::from_value(raw).map_err(|e| bad(e.to_string()))?;
        if family == Family::Siglip {
            config.projection_dim = config.text_config.projection_size.unwrap_or(config.text_config.hidden_size);
        }
        config.validate(path)?;
        Ok(config)
    }

    /// How many numbers the checkpoint holds, from its shape (what its f32 download weighs / 4).
    pub fn parameter_count(&self) -> u64 {
        let siglip = self.family == Family::Siglip;
        // One encoder layer: q, k, v and out projections with biases, two layer norms, the MLP.
        let layer = |d: usize, i: usize| 4 * (d * d + d) + 2 * 2 * d + (d * i + i) + (i * d + d);
        let v = &self.vision_config;
        let (d, i) = (v.hidden_size, v.intermediate_size);
        let vit = || {
            let patches = v.num_patches() + usize::from(!siglip);
            let body =
                d * v.num_channels * v.patch_size * v.patch_size + patches * d + v.num_hidden_layers * layer(d, i);
            let ends = if siglip {
                // bias of the patch conv; probe, in/out projections, norm and MLP of the pooling head
                d + d + (3 * d * d + 3 * d) + (d * d + d) + 2 * d + (d * i + i) + (i * d + d)
            } else {
                // class token, pre norm, projection
                d + if v.without_pre_norm { 0 } else { 2 * d } + d * self.projection_dim
            };
            body + 2 * d + ends // 2 * d: the post norm
        };
        let eva = |eva: &EvaShape| {
            let patches = v.num_patches() + usize::from(!eva.positions_without_class);
            let patch_embedding = match eva.conv_stem {
                // Three convs, the first two with a batch norm's scale and shift.
                true => (v.num_channels * 16 + 2) * (d / 4) + (4 * d / 4 + 2) * (d / 4) + (4 * d / 4 + 1) * d,
                false => d * v.num_channels * v.patch_size * v.patch_size + d,
            };
            let embeddings = patch_embedding + d + patches * d;
            // The final norm, then the head with its bias.
            let ends = 2 * d + d * self.projection_dim + self.projection_dim;
            embeddings + v.num_hidden_layers * eva.block_parameter_count(d, i) + ends
        };
        let vision = match (&v.resnet, &v.eva, &v.convnext) {
            (Some(resnet), _, _) => resnet.parameter_count(v.image_size, self.projection_dim),
            (None, Some(shape), _) => eva(shape),
            (None, None, Some(shape)) => shape.parameter_count(self.projection_dim),
            (None, None, None) => vit(),
        };
        let t = &self.text_config;
        let (d, i, width) = (t.hidden_size, t.intermediate_size, self.projection_dim);
        // Embeddings, layers, one layer norm (after the embeddings in a Hugging Face encoder,
        // after the layers in CLIP's), then the pooling and the projection.
        // NLLB's positions are computed, not learned.
        let learned_positions = match &t.hf_encoder {
            Some(encoder) if encoder.architecture == HfArchitecture::M2m100 => 0,
            _ => t.max_position_embeddings,
        };
        let mut text = (t.vocab_size + learned_positions) * d + t.num_hidden_layers * layer(d, i) + 2 * d;
        text += match &t.hf_encoder {
            None if t.without_head => 0,
            None => d * width + if siglip { width } else { 0 },
            Some(encoder) => {
                let pooler = if encoder.pooler == HfPooler::FirstTokenDense { d * d + d } else { 0 };
                let projection = match encoder.projection {
                    HfProjection::Identity => 0,
                    HfProjection::Linear => d * width,
                    HfProjection::BiasedLinear => d * width + width,
                    HfProjection::Mlp => d * (d + width) / 2 + (d + width) / 2 * width,
                };
                encoder.type_vocab_size * d + pooler + projection
            }
        };
        (vision + text) as u64 + if siglip { 2 } else { 1 } // logit scale (and bias)
    }

    /// The exact shape of `openai/clip-vit-base-patch32` (used by benchmarks with random weights).
    pub fn vit_base_patch32() -> Self {
        Self::from_json(serde_json::json!({}), Path::new("(built in)")).expect("defaults are the ViT-B/32 shape")
    }

    fn validate(&self, path: &Path) -> Result<()> {
        let bad = |why: String| Err(Error::BadCheckpoint { path: path.to_owned(), reason: why });
        let v = &self.vision_config;
        let t = &self.text_config;
        // Not always a multiple (SigLIP so400m: 384 / 14): the patch conv ("valid") leaves the rest out.
        if v.patch_size == 0 || v.patch_size > v.image_size {
            return bad(format!("vision patch_size {} does not fit image_size {}", v.patch_size, v.image_size));
        }
        for (tower, hidden, heads) in
            [("vision", v.hidden_size, v.num_attention_heads), ("text", t.hidden_size, t.num_attention_heads)]
        {
            if heads == 0 || hidden % heads != 0 {
                return bad(format!("{tower} hidden_size {hidden} is not divisible by num_attention_heads {heads}"));
            }
        }
        if let Some(resnet) = &v.resnet {
            let grid = resnet.pooled_grid(v.image_size);
            if resnet.width < 2 || resnet.width % 2 != 0 || resnet.layers.contains(&0) {
                return bad(format!(
                    "a ResNet image tower needs an even width (got {}) and at least one block per stage (layers {:?})",
                    resnet.width, resnet.layers
                ));
            }
            if grid == 0 || grid != v.image_size / 32 || v.patch_size != 32 || v.hidden_size != 32 * resnet.width {
                return bad(format!(
                    "a ResNet image tower of width {} pools a {grid}×{grid} grid of {}-wide features from {}-pixel \
                     pictures, which its attention pool (image_size / 32 = {}, {} wide) does not fit",
                    resnet.width,
                    32 * resnet.width,
                    v.image_size,
                    v.image_size / 32,
                    v.hidden_size
                ));
            }
        }
        if v.eva.is_some_and(|eva| eva.conv_stem) && (v.patch_size != 16 || !v.hidden_size.is_multiple_of(4)) {
            return bad(format!(
                "a ConvStem image tower makes 16-pixel patches {} wide from convs a quarter as wide (patch_size {}, \
                 hidden_size {})",
                v.hidden_size, v.patch_size, v.hidden_size
            ));
        }
        if let Some(reference) = v.eva.and_then(|eva| eva.rope_reference_grid) {
            let head_dim = v.hidden_size / v.num_attention_heads;
            // timm's rotary embedding turns each quarter of a head's width by a row or a column.
            if reference == 0 || !head_dim.is_multiple_of(4) {
                return bad(format!(
                    "an EVA tower's rotary positions need a reference grid of at least one patch and heads a multiple of 4 \
                     wide (rope_reference_grid {reference}, heads {head_dim} wide)"
                ));
            }
        }
        if let Some(convnext) = &v.convnext {
            if convnext.stem_patch == 0 || convnext.dims.contains(&0) || convnext.dims[3] != v.hidden_size {
                return bad(format!(
                    "a ConvNeXt image tower needs a stem patch and stages of some width (stem_patch {}, dims {:?})",
                    convnext.stem_patch, convnext.dims
                ));
            }
            if v.image_size / convnext.stem_patch / 8 == 0 {
                return bad(format!(
                    "a ConvNeXt image tower halves its grid three times after its stem: {}-pixel pictures leave no grid",
                    v.image_size
                ));
            }
        }
        let vit_mlp = if v.resnet.is_some() || v.convnext.is_some() {
            None
        } else {
            Some(("vision intermediate_size", v.intermediate_size))
        };
        let sizes = [
            ("vision hidden_size", v.hidden_size),
            ("text hidden_size", t.hidden_size),
            ("text intermediate_size", t.intermediate_size),
            ("text vocab_size", t.vocab_size),
            ("projection_dim", self.projection_dim),
        ];
        if let Some((name, _)) = sizes.iter().chain(&vit_mlp).find(|(_, size)| *size == 0) {
            return bad(format!("{name} is 0: a tower needs some width"));
        }
        if v.num_channels != 3 {
            return bad(format!("vision num_channels is {}: pictures are read as RGB (3 channels)", v.num_channels));
        }
        if t.context_length() < 2 {
            return bad("text max_position_embeddings must leave room for the start and end tokens".into());
        }
        // Positions count from the pad id: one past the vocabulary would be no token's.
        if let Some(encoder) = t.hf_encoder.as_ref().filter(|e| e.pad_token_id as usize >= t.vocab_size) {
            return bad(format!(
                "the text model's pad_token_id {} is not a token of its {} (vocab_size)",
                encoder.pad_token_id, t.vocab_size
            ));
        }
        if t.hf_encoder.as_ref().is_some_and(|e| e.architecture == HfArchitecture::M2m100) && t.hidden_size < 4 {
            return bad(format!("text d_model {} is too narrow for sinusoidal positions (at least 4)", t.hidden_size));
        }
        if let Some(encoder) = t.hf_encoder.as_ref().filter(|e| e.architecture == HfArchitecture::Bert) {
            let last_position = match encoder.positions_after_pad {
                true => encoder.pad_token_id as usize + encoder.context_length,
                false => encoder.context_length - 1,
            };
            if last_position >= t.max_position_embeddings || encoder.type_vocab_size == 0 {
                return bad(format!(
                    "the text model's {} positions (and {} token types) do not hold a context of {} tokens: lower \
                     text_cfg's context_length",
                    t.max_position_embeddings, encoder.type_vocab_size, encoder.context_length
                ));
            }
        }
        if let Some(pool) = v.attentional_pool {
            if pool.queries == 0 || pool.heads == 0 || !self.projection_dim.is_multiple_of(pool.heads) {
                return bad(format!(
                    "the attentional pooler's {} queries and {} heads do not fit the embedding width {}",
                    pool.queries, pool.heads, self.projection_dim
                ));
            }
        }
        if self.family == Family::Siglip {
            if v.vision_use_head == Some(false) {
                return bad("vision_use_head is false: the tower has no pooled output to embed pictures with".into());
            }
            if t.without_head && t.hidden_size != self.projection_dim {
                return bad(format!(
                    "the text tower has no head, so its width {} must be the embedding's, {}",
                    t.hidden_size, self.projection_dim
                ));
            }
            if self.projection_dim != v.hidden_size {
                return bad(format!(
                    "the text head's width {} differs from the vision hidden_size {}: texts and pictures would not \
                     share one space",
                    self.projection_dim, v.hidden_size
                ));
            }
        }
        Ok(())
    }
}

/// `ChineseCLIPModel`'s text tower (`ChineseCLIPTextConfig`: BERT's fields, with its defaults)
/// as a text config with its Hugging Face encoder: read at its first token, projected by
/// `text_projection`, over every token the tokenizer gives it (its attention mask hides only
/// the padding it adds, never a typed `[PAD]`).
fn naflex_shape(raw: &mut serde_json::Value) -> std::result::Result<(), String> {
    for tower in ["vision_config", "text_config"] {
        if raw.get(tower).is_none_or(|v| v.is_null()) {
            raw[tower] = serde_json::json!({});
        }
    }
    let Some(vision) = raw["vision_config"].as_object_mut() else {
        return Err("vision_config is not a JSON object".into());
    };
    // `Siglip2VisionConfig`'s defaults.
    let positions = vision.get("num_patches").map_or(Some(256), |v| v.as_u64());
    let patch = vision.get("patch_size").map_or(Some(16), |v| v.as_u64());
    let (Some(positions), Some(patch)) = (positions, patch) else {
        return Err("vision num_patches and patch_size must be whole numbers".into());
    };
    // `Siglip2VisionEmbeddings` lays its positions out as a square grid.
    let side = positions.isqrt();
    if side == 0 || side * side != positions {
        return Err(format!("vision num_patches {positions} is not a square grid of learned positions"));
    }
    vision.insert("naflex_position_grid".into(), side.into());
    vision.insert("image_size".into(), (side * patch).into());
    vision.insert("patch_size".into(), patch.into());
    let Some(text) = raw["text_config"].as_object_mut() else {
        return Err("text_config is not a JSON object".into());
    };
    text.insert("siglip2_tokenizer".into(), true.into());
    Ok(())
}

fn chinese_clip_text(raw: &mut serde_json::Value) -> std::result::Result<(), String> {
    let text = &mut raw["text_config"];
    if text.is_null() {
        *text = serde_json::json!({});
    }
    if !text.is_object() {
        return Err("text_config is not a JSON object".into());
    }
    fill_defaults(
        text,
        &serde_json::json!({
            "vocab_size": 30522, "hidden_size": 768, "intermediate_size": 3072, "num_hidden_layers": 12,
            "num_attention_heads": 12, "max_position_embeddings": 512, "hidden_act": "gelu",
            "layer_norm_eps": 1e-12, "pad_token_id": 0, "type_vocab_size": 2,
        }),
    );
    if let Some(kind) = text.get("position_embedding_type").and_then(|v| v.as_str()).filter(|k| *k != "absolute") {
        return Err(format!("text position_embedding_type \"{kind}\" is not supported, only \"absolute\""));
    }
    if text.get("hf_encoder").is_none() {
        text["hf_encoder"] = serde_json::json!({
            "architecture": "bert", "embed_scale": 1.0, "type_vocab_size": text["type_vocab_size"],
            "pad_token_id": text["pad_token_id"], "positions_after_pad": false,
            "context_length": text["max_position_embeddings"], "pooler": "first_token", "projection": "linear",
            "masks_pad_id": false,
        });
    }
    Ok(())
}

/// Adds every key of `defaults` that `value` lacks (or holds as null), recursing into objects.
fn fill_defaults(value: &mut serde_json::Value, defaults: &serde_json::Value) {
    let (Some(target), Some(defaults)) = (value.as_object_mut(), defaults.as_object()) else { return };
    for (key, default) in defaults {
        match target.get_mut(key) {
            Some(existing) if !existing.is_null() => fill_defaults(existing, default),
            _ => {
                target.insert(key.clone(), default.clone());
            }
        }
    }
}

/// How a checkpoint's image processor turns a picture into the model's input, from
/// `preprocessor_config.json` (`CLIPImageProcessor`, `SiglipImageProcessor`) or OpenCLIP's
/// `preprocess_cfg`.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct PreprocessConfig {
    pub do_resize: bool,
    /// Length the shortest side is resized to (when `exact_size` is not set).
    pub shortest_edge: u32,
    /// Resize straight to (height, width), whatever the aspect ratio: SigLIP's processor and
    /// OpenCLIP's `squash` mode. Absent for CLIP, so the description recorded with an existing
    /// index does not change.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub exact_size: Option<(u32, u32)>,
    pub do_center_crop: bool,
    pub crop_height: u32,
    pub crop_width: u32,
    /// How the crop's top-left corner is rounded (absent when `transformers`' floor).
    #[serde(skip_serializing_if = "CropRounding::is_floor")]
    pub crop_rounding: CropRounding,
    pub do_rescale: bool,
    pub rescale_factor: f32,
    pub do_normalize: bool,
    pub image_mean: [f32; 3],
    pub image_std: [f32; 3],
    pub resample: Resample,
    /// What becomes of transparency (absent when composited onto white, `transformers`' way).
    #[serde(skip_serializing_if = "is_over_white")]
    pub alpha: Alpha,
    /// SigLIP 2 NaFlex's processor: straight to the largest grid of whole patches that keeps
    /// the picture's aspect ratio within a number of patches (`size` and the crop unused).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub patch_budget: Option<PatchBudget>,
}

/// `Siglip2ImageProcessor`'s `patch_size` and `max_num_patches`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct PatchBudget {
    pub patch_size: u32,
    pub max_patches: u32,
}

impl PatchBudget {
    /// The (height, width) a `height` × `width` picture is resized to, found as
    /// `get_image_size_for_max_num_patches` finds it (a binary search over the scale, in f64 as
    /// Python's floats are), so that the grid is exactly the reference's.
    pub fn resized_size(self, height: u32, width: u32) -> (u32, u32) {
        let patch = f64::from(self.patch_size);
        let scaled = |scale: f64, size: u32| ((f64::from(size) * scale / patch).ceil() * patch).max(patch);
        let (eps, mut low, mut high) = (1e-5, 1e-6, 100.0);
        while high - low >= eps {
            let scale = (low + high) / 2.0;
            let patches = scaled(scale, height) / patch * (scaled(scale, width) / patch);
            if patches <= f64::from(self.max_patches) {
                low = scale;
            } else {
                high = scale;
            }
        }
        (scaled(low, height) as u32, scaled(low, width) as u32)
    }
}

/// What becomes of a transparent picture's alpha channel: the model's own processor decides.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub enum Alpha {
    /// Composited onto white, as `transformers`' `convert_to_rgb` does.
    #[default]
    OverWhite,
    /// Dropped, keeping the colours stored under it, as Pillow's `convert("RGB")` (OpenCLIP).
    Discard,
}

fn is_over_white(alpha: &Alpha) -> bool {
    *alpha == Alpha::OverWhite
}

/// Where a centre crop starts when the margin is odd: `transformers` floors half the margin,
/// torchvision's `CenterCrop` (OpenCLIP) rounds it half to even, as Python's `round` does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub enum CropRounding {
    Floor,
    HalfToEven,
}

impl CropRounding {
    fn is_floor(&self) -> bool {
        *self == Self::Floor
    }

    /// The offset of a `crop`-long window centred in `orig`; negative when the crop is larger
    /// (the picture is then padded, landing at ceil(margin / 2) as `transformers` places it).
    pub fn offset(self, orig: i64, crop: i64) -> i64 {
        if crop > orig {
            return -((crop - orig + 1) / 2);
        }
        let margin = orig - crop;
        match self {
            Self::Floor => margin / 2,
            // margin / 2 is exact or .5; .5 goes to the even neighbour.
            Self::HalfToEven if margin % 2 == 1 && (margin / 2) % 2 == 1 => margin / 2 + 1,
            Self::HalfToEven => margin / 2,
        }
    }
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
    pub fn from_pil_code(code: u64) -> Option<Self> {
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
            exact_size: None,
            do_center_crop: true,
            crop_height: image_size,
            crop_width: image_size,
            crop_rounding: CropRounding::Floor,
            do_rescale: true,
            rescale_factor: 1.0 / 255.0,
            do_normalize: true,
            image_mean: OPENAI_CLIP_MEAN,
            image_std: OPENAI_CLIP_STD,
            resample: Resample::Bicubic,
            alpha: Alpha::OverWhite,
            patch_budget: None,
        }
    }

    /// `SiglipImageProcessor`'s defaults: straight to the square input, no crop, mean and std 0.5.
    pub fn siglip_default(image_size: u32) -> Self {
        Self {
            exact_size: Some((image_size, image_size)),
            do_center_crop: false,
            image_mean: [0.5; 3],
            image_std: [0.5; 3],
            ..Self::clip_default(image_size)
        }
    }

    /// `Siglip2ImageProcessor`'s defaults for SigLIP 2 NaFlex: bilinear, mean and std 0.5, as
    /// many patches as the tower has learned positions.
    pub fn naflex_default(patch_size: u32, max_patches: u32) -> Self {
        Self {
            exact_size: None,
            resample: Resample::Bilinear,
            patch_budget: Some(PatchBudget { patch_size, max_patches }),
            ..Self::siglip_default(patch_size)
        }
    }

    pub fn family_default(family: Family, image_size: u32) -> Self {
        match family {
            Family::Clip => Self::clip_default(image_size),
            Family::Siglip => Self::siglip_default(image_size),
        }
    }

    /// What the image processor of a model of this shape does when its checkpoint has no
    /// `preprocessor_config.json`.
    pub fn model_default(config: &ModelConfig) -> Self {
        let v = &config.vision_config;
        match v.naflex_position_grid {
            Some(grid) => Self::naflex_default(v.patch_size as u32, (grid * grid) as u32),
            None => Self::family_default(config.family, v.image_size as u32),
        }
    }

    /// The (height, width) of the tensor this pipeline produces, the same for every picture
    /// (`(0, 0)` where it depends on the picture).
    pub fn output_size(&self) -> (u32, u32) {
        match (self.do_center_crop, self.exact_size) {
            _ if self.patch_budget.is_some() => (0, 0),
            (true, _) => (self.crop_height, self.crop_width),
            (false, Some(size)) if self.do_resize => size,
            _ => (0, 0),
        }
    }

    /// Reads `preprocessor_config.json` of a model of this shape; fields it lacks keep the
    /// defaults of the model's processor.
    pub fn from_file(path: &Path, model: &ModelConfig) -> Result<Self> {
        let raw: serde_json::Value = read_json(path)?;
        let bad = |why: String| Error::BadCheckpoint { path: path.to_owned(), reason: why };
        let mut cfg = Self::model_default(model);
        let get = |key: &str| raw.get(key).filter(|v| !v.is_null());
        if let Some(budget) = &mut cfg.patch_budget {
            for (key, target) in [("patch_size", &mut budget.patch_size), ("max_num_patches", &mut budget.max_patches)]
            {
                if let Some(v) = get(key) {
                    *target = v
                        .as_u64()
                        .and_then(|n| u32::try_from(n).ok())
                        .filter(|&n| n > 0)
                        .ok_or_else(|| bad(format!("`{key}` must be a positive whole number, got {v}")))?;
                }
            }
        }
        if let Some(v) = get("do_resize").and_then(|v| v.as_bool()) {
            cfg.do_resize = v;
        }
        if let Some(size) = get("size").filter(|_| cfg.patch_budget.is_none()) {
            // A plain integer (older CLIP files), {"shortest_edge": n}, or {"height", "width"}: a
            // resize to exactly that size (SigLIP).
            let field = |key: &str| size.get(key).and_then(|v| v.as_u64()).map(|n| n as u32);
            if let Some(n) = size.as_u64().map(|n| n as u32).or_else(|| field("shortest_edge")) {
                cfg.shortest_edge = n;
                cfg.exact_size = None;
            } else if let (Some(h), Some(w)) = (field("height"), field("width")) {
                cfg.exact_size = Some((h, w));
            } else {
                return Err(bad(format!(
                    "unsupported `size` {size}: expected an integer, {{\"shortest_edge\": n}} or {{\"height\": h, \"width\": w}}"
                )));
            }
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
        cfg.check_sizes().map_err(bad)?;
        Ok(cfg)
    }

    /// Rejects sizes and statistics no picture can be prepared with.
    pub fn check_sizes(&self) -> std::result::Result<(), String> {
        let exact_zero = self.exact_size.is_some_and(|(h, w)| h == 0 || w == 0);
        if self.shortest_edge == 0 || self.crop_height == 0 || self.crop_width == 0 || exact_zero {
            return Err("image sizes must be positive".into());
        }
        if self.image_std.contains(&0.0) {
            return Err("image_std must not contain 0".into());
        }
        // A picture of that many patches is already 64 times the 256 SigLIP 2 was trained on.
        const MOST_PATCHES: u32 = 16_384;
        if self.patch_budget.is_some_and(|budget| budget.max_patches > MOST_PATCHES) {
            return Err(format!("max_num_patches is over {MOST_PATCHES}"));
        }
        Ok(())
    }

    /// Checks that this pipeline produces exactly the input the vision tower expects: its square,
    /// or for NaFlex whole patches of its size.
    pub fn check_matches_model(&self, vision: &VisionConfig, path: &Path) -> Result<()> {
        let image_size = vision.image_size as u32;
        let matches = match (self.patch_budget, vision.naflex_position_grid) {
            (Some(budget), Some(_)) => budget.patch_size as usize == vision.patch_size,
            (None, None) => self.output_size() == (image_size, image_size),
            _ => false,
        };
        if self.do_resize && matches {
            return Ok(());
        }
        if let Some(budget) = self.patch_budget {
            return Err(Error::BadCheckpoint {
                path: path.to_owned(),
                reason: format!(
                    "preprocessing must resize to whole {}-pixel patches, the model's patch_size (do_resize={}, \
                     patch_size {})",
                    vision.patch_size, self.do_resize, budget.patch_size
                ),
            });
        }
        Err(Error::BadCheckpoint {
            path: path.to_owned(),
            reason: format!(
                "preprocessing must resize (and crop) to the model's {image_size}x{image_size} input \
                 (do_resize={}, size {:?}, do_center_crop={}, crop {}x{})",
                self.do_resize, self.exact_size, self.do_center_crop, self.crop_height, self.crop_width
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

pub(super) fn read_json<T: serde::de::DeserializeOwned>(path: &Path) -> Result<T> {
    // A model's configuration takes a few kilobytes; a file far past that is not one.
    const LARGEST: u64 = 16 << 20;
    let io = |source| Error::Io { path: path.to_owned(), source };
    let size = std::fs::metadata(path).map_err(io)?.len();
    if size > LARGEST {
        let reason = format!("{size} bytes: no model configuration is over {LARGEST}");
        return Err(Error::BadCheckpoint { path: path.to_owned(), reason });
    }
    let text = std::fs::read_to_string(path).map_err(io)?;
    serde_json::from_str(&text).map_err(|e| Error::BadCheckpoint { path: path.to_owned(), reason: e.to_string() })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_of_zero_and_other_channel_counts_are_refused_at_load() {
        let refused = |config: serde_json::Value| {
            ModelConfig::from_json(config, Path::new("config.json")).unwrap_err().to_string()
        };
        let resnet = |image_size: usize, width: usize, layers: [usize; 4]| {
            serde_json::json!({"vision_config": {"image_size": image_size, "patch_size": 32,
                "hidden_size": 32 * width, "num_attention_heads": 32, "intermediate_size": 0,
                "resnet": {"layers": layers, "width": width}}})
        };
        for (config, said) in [
            (serde_json::json!({"vision_config": {"intermediate_size": 0}}), "vision intermediate_size is 0"),
            (serde_json::json!({"text_config": {"hidden_size": 0, "num_attention_heads": 1}}), "text hidden_size is 0"),
            (serde_json::json!({"projection_dim": 0}), "projection_dim is 0"),
            (serde_json::json!({"vision_config": {"num_channels": 1}}), "num_channels is 1"),
            (serde_json::json!({"model_type": 7}), "model_type is 7"),
            // ResNets: a picture too small for the attention pool's grid, an odd width, an empty stage.
            (resnet(63, 64, [3, 4, 6, 3]), "a 2×2 grid of 2048-wide features from 63-pixel pictures, which its"),
            (resnet(224, 63, [3, 4, 6, 3]), "needs an even width (got 63)"),
            (resnet(224, 64, [3, 0, 6, 3]), "at least one block per stage (layers [3, 0, 6, 3])"),
        ] {
            assert!(refused(config.clone()).contains(said), "{config}: {}", refused(config.clone()));
        }
    }

    #[test]
    fn parameter_counts_equal_transformers_for_each_familys_default_shape() {
        // sum(p.numel() for p in CLIPModel(CLIPConfig()).parameters()), and SiglipModel's.
        assert_eq!(ModelConfig::vit_base_patch32().parameter_count(), 151_277_313);
        let siglip = ModelConfig::from_json(serde_json::json!({"model_type": "siglip"}), Path::new("x")).unwrap();
        assert_eq!(siglip.parameter_count(), 203_155_970);
        // Siglip2Model(Siglip2Config()): 256 learned positions in place of 196.
        let naflex = ModelConfig::from_json(serde_json::json!({"model_type": "siglip2"}), Path::new("x")).unwrap();
        assert_eq!(naflex.parameter_count(), 203_202_050);
        assert_eq!(naflex.vision_config.naflex_position_grid, Some(16));
    }

    #[test]
    fn naflex_grids_are_those_of_get_image_size_for_max_num_patches() {
        // transformers' function on the same (height, width, patch_size, max_num_patches).
        for ((height, width, patch_size, max_patches), expected) in [
            ((3000, 4000, 16, 256), (224, 288)),
            ((4000, 3000, 16, 256), (288, 224)),
            ((1, 100_000, 16, 256), (16, 4096)),
            ((1, 1, 16, 256), (112, 112)),
            ((427, 640, 8, 24), (32, 48)),
            ((2000, 8000, 14, 729), (182, 728)),
            ((224, 224, 16, 256), (256, 256)),
            ((17, 10, 16, 1024), (656, 384)),
        ] {
            let budget = PatchBudget { patch_size, max_patches };
            assert_eq!(budget.resized_size(height, width), expected, "{height}x{width}, {patch_size}, {max_patches}");
        }
    }

    #[test]
    fn naflex_configs_that_cannot_hold_a_square_of_positions_are_refused() {
        let config = serde_json::json!({"model_type": "siglip2", "vision_config": {"num_patches": 200}});
        let said = ModelConfig::from_json(config, Path::new("config.json")).unwrap_err().to_string();
        assert!(said.contains("num_patches 200 is not a square grid"), "{said}");
    }
}
