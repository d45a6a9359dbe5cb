//! timm's EVA towers, the image towers of EVA-CLIP (OpenCLIP's EVA02-B-16, EVA02-L-14,
//! EVA02-L-14-336, EVA02-E-14(-plus), EVA01-g-14(-plus)), as open_clip builds them: pooled at
//! the class token and projected by timm's head. MobileCLIP-B's image tower (timm's
//! `vit_base_mci_224`) is pooled and projected the same way.
//!
//! A ViT (patches, class token, learned positions) with no norm before its blocks, q and v
//! biases but none on k, and blocks that may add (see [`EvaShape`]) EVA-02's rotary positions,
//! a SwiGLU MLP, layer norms inside the attention and the MLP, or norms after each branch
//! instead of before it; MobileCLIP-B's makes its patches with a stem of convs and gives the
//! class token no position. Weights keep timm's names under `vision_model.`.

use candle_core::Tensor;

use super::clip::{
    attend_from_one_query, conv_with_batch_norm, patch_rows, two_by_two_patches, LayerNorm, Linear, Weights,
};
use super::config::{Activation, EvaShape, ModelConfig, VisionConfig};
use super::kernels::{self, amx::Split, Epilogue, RotaryTable, WeightLayout};
use crate::error::Result;

const PREFIX: &str = "vision_model";

/// q, k and v as one linear layer, q scaled by 1/sqrt(head_dim) (turning q by its rotary angles
/// commutes with the scale), k's missing bias as zeros.
fn load_qkv(w: &Weights, prefix: &str, c: &VisionConfig, eva: EvaShape, layout: WeightLayout) -> Result<Linear> {
    let d = c.hidden_size;
    let scale = ((d / c.num_attention_heads) as f64).powf(-0.5);
    let (weights, q_bias, k_bias, v_bias) = if eva.fused_qkv {
        let weight = w.get(&format!("{prefix}.qkv.weight"), &[3 * d, d])?;
        let q_weight = (weight.narrow(0, 0, d)? * scale)?;
        let weight = Tensor::cat(&[&q_weight, &weight.narrow(0, d, 2 * d)?], 0)?;
        let (q_bias, k_bias, v_bias) = match eva.qkv_bias {
            true => {
                let bias = w.get(&format!("{prefix}.qkv.bias"), &[3 * d])?;
                (bias.narrow(0, 0, d)?, Some(bias.narrow(0, d, d)?), bias.narrow(0, 2 * d, d)?)
            }
            false => (w.get(&format!("{prefix}.q_bias"), &[d])?, None, w.get(&format!("{prefix}.v_bias"), &[d])?),
        };
        (weight, q_bias, k_bias, v_bias)
    } else {
        let part = |name: &str| w.get(&format!("{prefix}.{name}.weight"), &[d, d]);
        let q_weight = (part("q_proj")? * scale)?;
        let weight = Tensor::cat(&[q_weight, part("k_proj")?, part("v_proj")?], 0)?;
        (weight, w.get(&format!("{prefix}.q_proj.bias"), &[d])?, None, w.get(&format!("{prefix}.v_proj.bias"), &[d])?)
    };
    let k_bias = match k_bias {
        Some(bias) => bias,
        None => v_bias.zeros_like()?,
    };
    let bias = Tensor::cat(&[(q_bias * scale)?, k_bias, v_bias], 0)?;
    Linear::from_parts(&weights, Some(bias), layout)
}

/// timm's ConvStem (MobileCLIP-B): three convs, each strided by its size (4×4, then 2×2 twice),
/// as linear layers over unfolded patches; the first two with their batch norms folded in and
/// exact GELU after them.
struct ConvStem {
    convs: [Linear; 3],
    /// The first two convs' outputs.
    narrow: usize,
}

impl ConvStem {
    fn load(w: &Weights, c: &VisionConfig, layout: WeightLayout) -> Result<Self> {
        let (d, ch) = (c.hidden_size, c.num_channels);
        let narrow = d / 4;
        let stem = format!("{PREFIX}.patch_embed.backbone");
        let normed = |i: usize, inputs: usize, kernel: usize| -> Result<(Tensor, Tensor)> {
            let (conv, norm) = (format!("{stem}.{i}.conv"), format!("{stem}.{i}.bn"));
            conv_with_batch_norm(w, (&conv, &norm), (inputs, narrow), kernel)
        };
        // The first reads patches of the picture as `patch_rows` unfolds them, (channel, y, x)
        // like the weight; the next two channels-last 2×2 squares, (dy, dx, channel).
        let (first, first_bias) = normed(0, ch, 4)?;
        let first = first.reshape((narrow, ch * 16))?;
        let (second, second_bias) = normed(1, narrow, 2)?;
        let second = second.permute((0, 2, 3, 1))?.reshape((narrow, 4 * narrow))?;
        let last = w.get(&format!("{stem}.2.conv.weight"), &[d, narrow, 2, 2])?;
        let last = last.permute((0, 2, 3, 1))?.reshape((d, 4 * narrow))?;
        Ok(Self {
            convs: [
                Linear::from_parts(&first, Some(first_bias), layout)?,
                Linear::from_parts(&second, Some(second_bias), layout)?,
                Linear::from_parts(&last, Some(w.get(&format!("{stem}.2.conv.bias"), &[d])?), layout)?,
            ],
            narrow,
        })
    }

    /// `pixels`: (batch, channels, image_size, image_size) → (batch, patches, dim).
    fn forward(&self, pixels: &Tensor, c: &VisionConfig, dtype: candle_core::DType) -> Result<Tensor> {
        let batch = pixels.dim(0)?;
        let gelu = || Epilogue::Activation(Activation::Gelu);
        let grid = c.image_size / 4;
        let first = self.convs[0].forward_then(&patch_rows(pixels, c, 4, dtype)?, gelu())?;
        let first = first.reshape((batch, grid, grid, self.narrow))?;
        let second = self.convs[1].forward_then(&two_by_two_patches(&first)?, gelu())?;
        let patches = self.convs[2].forward(&two_by_two_patches(&second)?)?;
        Ok(patches.reshape((batch, c.num_patches(), c.hidden_size))?)
    }
}

/// How the tower makes its patch tokens.
enum PatchEmbedding {
    /// The stride-`patch` conv (with its bias) as a linear layer over unfolded patches.
    Conv(Linear),
    Stem(ConvStem),
}

/// The block's MLP: SwiGLU (`fc1_g`, `fc1_x`, made one layer here) or `fc1` with exact GELU,
/// then an optional layer norm and `fc2`.
struct Mlp {
    /// SwiGLU: gate and value side by side, `2 · hidden` wide.
    fc1: Linear,
    swiglu: bool,
    norm: Option<LayerNorm>,
    fc2: Linear,
}

impl Mlp {
    fn load(w: &Weights, prefix: &str, c: &VisionConfig, eva: EvaShape, layout: WeightLayout) -> Result<Self> {
        let (d, hidden) = (c.hidden_size, c.intermediate_size);
        let fc1 = if eva.swiglu {
            let part = |name: &str| -> Result<(Tensor, Tensor)> {
                Ok((
                    w.get(&format!("{prefix}.{name}.weight"), &[hidden, d])?,
                    w.get(&format!("{prefix}.{name}.bias"), &[hidden])?,
                ))
            };
            let ((gate_w, gate_b), (value_w, value_b)) = (part("fc1_g")?, part("fc1_x")?);
            Linear::from_parts(&Tensor::cat(&[gate_w, value_w], 0)?, Some(Tensor::cat(&[gate_b, value_b], 0)?), layout)?
        } else {
            Linear::load(w, &format!("{prefix}.fc1"), (d, hidden), true, layout)?
        };
        Ok(Self {
            fc1,
            swiglu: eva.swiglu,
            norm: eva
                .mlp_norm
                .then(|| LayerNorm::load(w, &format!("{prefix}.norm"), hidden, c.layer_norm_eps))
                .transpose()?,
            fc2: Linear::load(w, &format!("{prefix}.fc2"), (hidden, d), true, layout)?,
        })
    }

    /// The MLP's output, with `residual` added where one is given.
    fn forward(&self, x: &Tensor, residual: Option<&Tensor>) -> Result<Tensor> {
        let hidden = if self.swiglu {
            kernels::swiglu(&self.fc1.forward(x)?)?
        } else {
            self.fc1.forward_then(x, Epilogue::Activation(Activation::Gelu))?
        };
        let hidden = match &self.norm {
            Some(norm) => norm.forward(&hidden)?,
            None => hidden,
        };
        match residual {
            Some(residual) => self.fc2.forward_then(&hidden, Epilogue::Residual(residual)),
            None => self.fc2.forward(&hidden),
        }
    }
}

struct Block {
    norm1: LayerNorm,
    qkv: Linear,
    /// A layer norm on the attention's output before `proj` (timm's `attn.norm`).
    attention_norm: Option<LayerNorm>,
    proj: Linear,
    norm2: LayerNorm,
    mlp: Mlp,
    heads: usize,
    post_norm: bool,
    /// Whether attention's products run on AMX's tile unit, as the layers' own, and in which split.
    tiles: Option<Split>,
}

impl Block {
    fn load(w: &Weights, prefix: &str, c: &VisionConfig, eva: EvaShape, layout: WeightLayout) -> Result<Self> {
        let d = c.hidden_size;
        let norm = |name: &str, width: usize| LayerNorm::load(w, &format!("{prefix}.{name}"), width, c.layer_norm_eps);
        Ok(Self {
            norm1: norm("norm1", d)?,
            qkv: load_qkv(w, &format!("{prefix}.attn"), c, eva, layout)?,
            attention_norm: eva.attention_norm.then(|| norm("attn.norm", d)).transpose()?,
            proj: Linear::load(w, &format!("{prefix}.attn.proj"), (d, d), true, layout)?,
            norm2: norm("norm2", d)?,
            mlp: Mlp::load(w, &format!("{prefix}.mlp"), c, eva, layout)?,
            heads: c.num_attention_heads,
            post_norm: eva.post_norm,
            tiles: match layout {
                WeightLayout::AmxTiles(split) => Some(split),
                _ => None,
            },
        })
    }

    /// q, k and v of every position of `x` (batch, seq, dim), q and k turned by their positions.
    fn queries_keys_values(&self, x: &Tensor, rotary: Option<&RotaryTable>) -> Result<Tensor> {
        let input = if self.post_norm { x.clone() } else { self.norm1.forward(x)? };
        let qkv = self.qkv.forward(&input)?;
        match rotary {
            Some(table) => kernels::rotate_queries_keys(qkv, table),
            None => Ok(qkv),
        }
    }

    /// `x` plus the attention branch, given the attention's output `context` at `x`'s rows.
    fn add_attention(&self, x: &Tensor, context: &Tensor) -> Result<Tensor> {
        let context = match &self.attention_norm {
            Some(norm) => norm.forward(context)?,
            None => context.clone(),
        };
        if self.post_norm {
            return Ok((x + self.norm1.forward(&self.proj.forward(&context)?)?)?);
        }
        self.proj.forward_then(&context, Epilogue::Residual(x))
    }

    /// `x` plus the MLP branch.
    fn add_mlp(&self, x: &Tensor) -> Result<Tensor> {
        if self.post_norm {
            return Ok((x + self.norm2.forward(&self.mlp.forward(x, None)?)?)?);
        }
        self.mlp.forward(&self.norm2.forward(x)?, Some(x))
    }

    /// `x`: (batch, seq, dim) → the same.
    fn forward(&self, x: &Tensor, rotary: Option<&RotaryTable>) -> Result<Tensor> {
        let qkv = self.queries_keys_values(x, rotary)?;
        let context = kernels::attention(&qkv, self.heads, false, self.tiles)?;
        self.add_mlp(&self.add_attention(x, &context)?)
    }

    /// The block's output at the class token only, which is all the tower keeps: every
    /// position's keys and values are still needed, but the projection and the MLP run on one
    /// row a picture. `x`: (batch, seq, dim) → (batch, dim).
    fn forward_class_token(&self, x: &Tensor, rotary: Option<&RotaryTable>) -> Result<Tensor> {
        let (_, _, d) = x.dims3()?;
        let qkv = self.queries_keys_values(x, rotary)?;
        let query = qkv.narrow(1, 0, 1)?.squeeze(1)?.narrow(1, 0, d)?;
        let context =
            attend_from_one_query(&query, &qkv.narrow(2, d, d)?, &qkv.narrow(2, 2 * d, d)?, self.heads, None)?;
        let class_token = x.narrow(1, 0, 1)?.squeeze(1)?;
        self.add_mlp(&self.add_attention(&class_token, &context)?)
    }
}

/// The whole tower: `forward(pixels)` → (batch, embedding dim), not normalised.
pub struct EvaTower {
    patch_embedding: PatchEmbedding,
    class_token: Tensor,
    /// (seq, dim): the class token's, then the patches' (the patches' alone where
    /// `positions_without_class`).
    position_embedding: Tensor,
    positions_without_class: bool,
    rotary: Option<RotaryTable>,
    blocks: Vec<Block>,
    norm: LayerNorm,
    /// timm's classifier head, open_clip's projection: a linear layer with a bias.
    head: Linear,
    config: VisionConfig,
}

impl EvaTower {
    pub(super) fn load(w: &Weights, config: &ModelConfig, eva: EvaShape, layout: WeightLayout) -> Result<Self> {
        let c = &config.vision_config;
        let (d, ps, ch) = (c.hidden_size, c.patch_size, c.num_channels);
        let patch_embedding = match eva.conv_stem {
            true => PatchEmbedding::Stem(ConvStem::load(w, c, layout)?),
            false => {
                let conv = w.get(&format!("{PREFIX}.patch_embed.proj.weight"), &[d, ch, ps, ps])?;
                let conv_bias = w.get(&format!("{PREFIX}.patch_embed.proj.bias"), &[d])?;
                PatchEmbedding::Conv(Linear::from_parts(&conv.reshape((d, ch * ps * ps))?, Some(conv_bias), layout)?)
            }
        };
        let seq = c.num_patches() + usize::from(!eva.positions_without_class);
        let grid = c.image_size / ps;
        let head_dim = d / c.num_attention_heads;
        Ok(Self {
            patch_embedding,
            class_token: w.get(&format!("{PREFIX}.cls_token"), &[1, 1, d])?,
            position_embedding: w.get(&format!("{PREFIX}.pos_embed"), &[1, seq, d])?.reshape((seq, d))?,
            positions_without_class: eva.positions_without_class,
            rotary: eva
                .rope_reference_grid
                .map(|reference| RotaryTable::new(grid, reference, head_dim, w.device()))
                .transpose()?,
            // Not reserved ahead from the config's count: a hostile config ends at the first missing block.
            blocks: (0..c.num_hidden_layers)
                .map(|i| Block::load(w, &format!("{PREFIX}.blocks.{i}"), c, eva, layout))
                .collect::<Result<_>>()?,
            norm: LayerNorm::load(w, &format!("{PREFIX}.norm"), d, c.layer_norm_eps)?,
            head: Linear::load(w, &format!("{PREFIX}.head"), (d, config.projection_dim), true, layout)?,
            config: c.clone(),
        })
    }

    /// `pixels`: (batch, channels, image_size, image_size) → (batch, embedding dim), not normalised.
    pub fn forward(&self, pixels: &Tensor) -> Result<Tensor> {
        let c = &self.config;
        let (batch, d) = (pixels.dim(0)?, c.hidden_size);
        let dtype = self.position_embedding.dtype();
        let embedded = match &self.patch_embedding {
            PatchEmbedding::Conv(conv) => {
                conv.forward(&patch_rows(pixels, c, c.patch_size, dtype)?)?.reshape((batch, c.num_patches(), d))?
            }
            PatchEmbedding::Stem(stem) => stem.forward(pixels, c, dtype)?,
        };
        let class_token = self.class_token.broadcast_as((batch, 1, d))?;
        let x = match self.positions_without_class {
            true => Tensor::cat(&[&class_token, &embedded.broadcast_add(&self.position_embedding)?], 1)?,
            false => Tensor::cat(&[&class_token, &embedded], 1)?.broadcast_add(&self.position_embedding)?,
        };
        let rotary = self.rotary.as_ref();
        let Some((last, blocks)) = self.blocks.split_last() else {
            return self.head.forward(&self.norm.forward(&x.narrow(1, 0, 1)?.squeeze(1)?)?);
        };
        let x = blocks.iter().try_fold(x, |x, block| block.forward(&x, rotary))?;
        // Layer norm is per token, so the class token alone is normalised.
        self.head.forward(&self.norm.forward(&last.forward_class_token(&x, rotary)?)?)
    }
}
