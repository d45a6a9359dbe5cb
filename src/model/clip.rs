//! The image and text towers of CLIP and SigLIP, written against candle's tensor ops.
//!
//! We own this code instead of using `candle_transformers::models::{clip, siglip}` because
//! those hard-code quick-GELU and a layer-norm epsilon of 1e-5 (a `gelu` checkpoint then drifts
//! to cosine 0.994 from the reference) and compute `x @ W^T` on the fly, repacking the weights
//! on every call (our kernels lay them out once, at load). Weight names mirror Hugging Face's
//! `CLIPModel` and `SiglipModel` one for one; the two share the encoder and differ at the ends of
//! each tower (see [`Family`]).

use std::collections::HashMap;

use candle_core::{DType, Device, Tensor};

use super::checkpoint::{CheckpointTensors, MappedTable};
use super::config::{Activation, AttentionalPool, Family, ModelConfig, TextConfig, VisionConfig};
use super::convnext::ConvNextTower;
use super::device::Precision;
use super::eva::EvaTower;
use super::hf_text::HfTextTower;
use super::kernels::amx::Split;
use super::kernels::{self, Epilogue, LinearWeight, WeightLayout};
use super::resnet::ResNetTower;
use crate::error::{Error, Result};

/// Hands out the checkpoint's tensors by their Hugging Face names, checking shapes.
pub enum Weights {
    Checkpoint {
        tensors: CheckpointTensors,
        device: Device,
        source: std::path::PathBuf,
        dtype: DType,
    },
    /// Normal(0, 0.02) tensors of whatever shape the model asks for: a model of any config
    /// without a checkpoint file, for benchmarks (speed does not depend on the values). Every
    /// tensor handed out is remembered, so the set can be saved as a checkpoint.
    Random {
        device: Device,
        handed_out: std::cell::RefCell<HashMap<String, Tensor>>,
        dtype: DType,
    },
}

impl Weights {
    pub fn new(tensors: CheckpointTensors, device: &Device, source: std::path::PathBuf) -> Self {
        Self::Checkpoint { tensors, device: device.clone(), source, dtype: DType::F32 }
    }

    pub fn random(device: &Device) -> Self {
        Self::Random { device: device.clone(), handed_out: Default::default(), dtype: DType::F32 }
    }

    /// Hands out every tensor in `to` (f16 or bf16 on a GPU; the CPU keeps f32 tensors and
    /// lays out bf16 weights itself, see `kernels::linear`).
    pub fn in_dtype(mut self, to: DType) -> Self {
        match &mut self {
            Self::Checkpoint { dtype, .. } | Self::Random { dtype, .. } => *dtype = to,
        }
        self
    }

    pub(super) fn device(&self) -> &Device {
        match self {
            Self::Checkpoint { device, .. } | Self::Random { device, .. } => device,
        }
    }

    /// Writes the random tensors handed out so far as `model.safetensors` with Hugging Face names.
    pub fn save_random(&self, path: &std::path::Path) -> Result<()> {
        if let Self::Random { handed_out, .. } = self {
            candle_core::safetensors::save(&handed_out.borrow(), path)?;
        }
        Ok(())
    }

    /// A table of `shape` (rows, width) looked up by row: read in place from a mapped checkpoint
    /// on the CPU (see [`MappedTable`]), else held as any weight is.
    pub(super) fn table(&self, name: &str, shape: [usize; 2]) -> Result<TokenTable> {
        if let Self::Checkpoint { tensors, device, source, dtype } = self {
            let mapped = tensors
                .mapped_table(name)
                .map_err(|e| Error::BadCheckpoint { path: source.clone(), reason: format!("tensor `{name}`: {e}") })?;
            match mapped {
                Some(table) if device.is_cpu() && *dtype == DType::F32 => {
                    let (rows, width) = table.dims();
                    if [rows, width] != shape {
                        return Err(wrong_shape(source, name, &[rows, width], &shape));
                    }
                    return Ok(TokenTable::Mapped(table));
                }
                _ => {}
            }
        }
        Ok(TokenTable::Held(self.get(name, &shape)?))
    }

    pub(super) fn get(&self, name: &str, shape: &[usize]) -> Result<Tensor> {
        let (tensors, device, source, dtype) = match self {
            Self::Random { device, handed_out, dtype } => {
                let t = Tensor::randn(0f32, 0.02, shape, device)?;
                handed_out.borrow_mut().insert(name.to_string(), t.clone());
                return Ok(t.to_dtype(*dtype)?);
            }
            Self::Checkpoint { tensors, device, source, dtype } => (tensors, device, source, *dtype),
        };
        let bad = |e: candle_core::Error| Error::BadCheckpoint { path: source.clone(), reason: e.to_string() };
        let t = tensors.get(name, device).map_err(bad)?.ok_or_else(|| Error::BadCheckpoint {
            path: source.clone(),
            reason: format!("tensor `{name}` is missing (does the model's config describe these weights?)"),
        })?;
        if t.dims() != shape {
            return Err(wrong_shape(source, name, t.dims(), shape));
        }
        Ok(t.to_dtype(dtype)?)
    }
}

fn wrong_shape(source: &std::path::Path, name: &str, found: &[usize], expected: &[usize]) -> Error {
    Error::BadCheckpoint {
        path: source.to_owned(),
        reason: format!("tensor `{name}` has shape {found:?}, the model's config implies {expected:?}"),
    }
}

/// The name every text tower loads its token table by (OpenCLIP's are renamed to it).
pub const TEXT_TOKEN_TABLE: &str = "text_model.embeddings.token_embedding.weight";

/// A text tower's token embeddings, looked up by token id.
pub(super) enum TokenTable {
    Held(Tensor),
    Mapped(MappedTable),
}

impl TokenTable {
    /// The rows of `ids` (u32, any shape, on the tower's device), as (number of ids, width).
    pub(super) fn rows(&self, ids: &Tensor) -> Result<Tensor> {
        let ids = ids.flatten_all()?;
        Ok(match self {
            Self::Held(table) => table.index_select(&ids, 0)?,
            Self::Mapped(table) => table.rows(&ids.to_vec1::<u32>()?)?,
        })
    }
}

/// `y = x W^T + b`, the weight laid out once at load for the kernel that will use it (see
/// `kernels::linear`).
pub(super) struct Linear {
    weight: LinearWeight,
    /// Zeros for the bias-free projections, so every layer takes the same kernel path.
    bias: Tensor,
}

impl Linear {
    pub(super) fn load(
        w: &Weights,
        prefix: &str,
        dims: (usize, usize),
        bias: bool,
        layout: WeightLayout,
    ) -> Result<Self> {
        let (in_dim, out_dim) = dims;
        let weight = w.get(&format!("{prefix}.weight"), &[out_dim, in_dim])?;
        let bias = bias.then(|| w.get(&format!("{prefix}.bias"), &[out_dim])).transpose()?;
        Self::from_parts(&weight, bias, layout)
    }

    /// `weight` in Hugging Face layout (out_dim, in_dim); no bias: zeros.
    pub(super) fn from_parts(weight: &Tensor, bias: Option<Tensor>, layout: WeightLayout) -> Result<Self> {
        let bias = match bias {
            Some(bias) => bias,
            None => Tensor::zeros(weight.dim(0)?, weight.dtype(), weight.device())?,
        };
        Ok(Self { weight: LinearWeight::new(weight, layout)?, bias })
    }

    /// Applies the layer to the last dimension of `x`, any leading dimensions.
    pub(super) fn forward(&self, x: &Tensor) -> Result<Tensor> {
        self.forward_then(x, Epilogue::Nothing)
    }

    /// `forward(x)` with the residual added or the activation applied inside the product (see
    /// [`Epilogue`]); a residual has `x`'s leading dimensions.
    pub(super) fn forward_then(&self, x: &Tensor, epilogue: Epilogue) -> Result<Tensor> {
        let dims = x.dims();
        let in_dim = dims[dims.len() - 1];
        let rows = x.elem_count() / in_dim;
        let out_dim = self.weight.out_dim();
        let residual;
        let epilogue = match epilogue {
            Epilogue::Residual(given) => {
                residual = given.reshape((rows, out_dim))?;
                Epilogue::Residual(&residual)
            }
            other => other,
        };
        let y = kernels::linear(&x.reshape((rows, in_dim))?, &self.weight, &self.bias, epilogue)?;
        let mut out_dims = dims.to_vec();
        *out_dims.last_mut().expect("tensor has dims") = out_dim;
        Ok(y.reshape(out_dims)?)
    }
}

/// A linear layer's weight (out_dim, in_dim) and bias, each multiplied by its scale: constants
/// folded into the product at load (attention's 1/sqrt(head_dim), quick-GELU's 1.702 on a GPU).
fn scaled_parts(w: &Weights, prefix: &str, dims: (usize, usize), scales: (f64, f64)) -> Result<(Tensor, Tensor)> {
    let (in_dim, out_dim) = dims;
    let weight = (w.get(&format!("{prefix}.weight"), &[out_dim, in_dim])? * scales.0)?;
    let bias = (w.get(&format!("{prefix}.bias"), &[out_dim])? * scales.1)?;
    Ok((weight, bias))
}

pub(super) struct LayerNorm {
    weight: Tensor,
    bias: Tensor,
    eps: f32,
}

impl LayerNorm {
    pub(super) fn load(w: &Weights, prefix: &str, dim: usize, eps: f64) -> Result<Self> {
        Ok(Self {
            weight: w.get(&format!("{prefix}.weight"), &[dim])?,
            bias: w.get(&format!("{prefix}.bias"), &[dim])?,
            eps: eps as f32,
        })
    }

    pub(super) fn forward(&self, x: &Tensor) -> Result<Tensor> {
        kernels::layer_norm(x, &self.weight, &self.bias, self.eps)
    }
}

/// Which positions each position of a sequence attends to.
#[derive(Clone, Copy)]
enum Visibility<'a> {
    /// Every position (the image towers, SigLIP's text).
    All,
    /// Itself and the ones before it (CLIP's text).
    Causal,
    /// An additive mask of (batch, 1, seq, seq): CoCa's class token, which sees the text but
    /// not its padding.
    Masked(&'a Tensor),
}

/// Multi-head self-attention with q, k and v fused into one matmul.
struct Attention {
    qkv: Linear,
    out: Linear,
    heads: usize,
    /// Whether its products run on AMX's tile unit, as the layers' own, and in which split.
    tiles: Option<Split>,
}

impl Attention {
    fn load(w: &Weights, prefix: &str, dim: usize, heads: usize, layout: WeightLayout) -> Result<Self> {
        let head_dim = dim / heads;
        // Fold the 1/sqrt(head_dim) softmax scale into q's weights and bias: one pass fewer.
        let scale = (head_dim as f64).powf(-0.5);
        let part = |name: &str, scale: f64| scaled_parts(w, &format!("{prefix}.{name}"), (dim, dim), (scale, scale));
        let (qw, qb) = part("q_proj", scale)?;
        let (kw, kb) = part("k_proj", 1.0)?;
        let (vw, vb) = part("v_proj", 1.0)?;
        let qkv = Linear::from_parts(&Tensor::cat(&[qw, kw, vw], 0)?, Some(Tensor::cat(&[qb, kb, vb], 0)?), layout)?;
        let out = Linear::load(w, &format!("{prefix}.out_proj"), (dim, dim), true, layout)?;
        let tiles = match layout {
            WeightLayout::AmxTiles(split) => Some(split),
            _ => None,
        };
        Ok(Self { qkv, out, heads, tiles })
    }

    /// `x`: (batch, seq, dim). Returns `residual` plus the attention's output.
    fn forward(&self, x: &Tensor, visibility: Visibility, residual: &Tensor) -> Result<Tensor> {
        let (batch, seq, dim) = x.dims3()?;
        let causal = match visibility {
            Visibility::All => false,
            Visibility::Causal => true,
            Visibility::Masked(mask) => {
                let context = kernels::attention_masked(&self.qkv.forward(x)?, self.heads, mask)?;
                return self.out.forward_then(&context, Epilogue::Residual(residual));
            }
        };
        let rows = x.reshape((batch * seq, dim))?;
        let context = match kernels::linear_split(&rows, &self.qkv.weight, &self.qkv.bias, 3 * self.heads)? {
            Some(parts) => kernels::attention_from_parts(&parts, batch, causal)?,
            None => kernels::attention(&self.qkv.forward(x)?, self.heads, causal, self.tiles)?,
        };
        self.out.forward_then(&context, Epilogue::Residual(residual))
    }
}

/// The transformer MLP (`mlp.fc1`, activation, `mlp.fc2`), in every encoder layer and SigLIP's head.
struct Mlp {
    fc1: Linear,
    fc2: Linear,
    activation: MlpActivation,
}

enum MlpActivation {
    AsConfigured(Activation),
    /// Quick-GELU off the CPU: `x sigmoid(1.702 x) = silu(1.702 x) / 1.702`, with the 1.702
    /// folded into fc1 and the 1 / 1.702 into fc2 at load, is one candle op (silu) on a GPU
    /// instead of three passes over fc1's output (scale, sigmoid, multiply: 7% of the ViT-B/32
    /// tower on an H200). The CPU has its own one-pass kernel.
    FoldedQuickGelu,
}

impl Mlp {
    fn load(w: &Weights, prefix: &str, shape: &TowerShape) -> Result<Self> {
        let (d, hidden) = (shape.hidden, shape.intermediate);
        if shape.activation == Activation::QuickGelu && !w.device().is_cpu() {
            let (w1, b1) = scaled_parts(w, &format!("{prefix}.fc1"), (d, hidden), (1.702, 1.702))?;
            let (w2, b2) = scaled_parts(w, &format!("{prefix}.fc2"), (hidden, d), (1.0 / 1.702, 1.0))?;
            let fc1 = Linear::from_parts(&w1, Some(b1), shape.layout)?;
            let fc2 = Linear::from_parts(&w2, Some(b2), shape.layout)?;
            return Ok(Self { fc1, fc2, activation: MlpActivation::FoldedQuickGelu });
        }
        Ok(Self {
            fc1: Linear::load(w, &format!("{prefix}.fc1"), (d, hidden), true, shape.layout)?,
            fc2: Linear::load(w, &format!("{prefix}.fc2"), (hidden, d), true, shape.layout)?,
            activation: MlpActivation::AsConfigured(shape.activation),
        })
    }

    /// `residual` plus the MLP's output.
    fn forward(&self, x: &Tensor, residual: &Tensor) -> Result<Tensor> {
        let hidden = match self.activation {
            MlpActivation::AsConfigured(activation) => self.fc1.forward_then(x, Epilogue::Activation(activation))?,
            MlpActivation::FoldedQuickGelu => self.fc1.forward(x)?.silu()?,
        };
        self.fc2.forward_then(&hidden, Epilogue::Residual(residual))
    }
}

pub(super) struct EncoderLayer {
    norm1: LayerNorm,
    attention: Attention,
    norm2: LayerNorm,
    mlp: Mlp,
}

impl EncoderLayer {
    pub(super) fn load(w: &Weights, prefix: &str, shape: &TowerShape) -> Result<Self> {
        let d = shape.hidden;
        Ok(Self {
            norm1: LayerNorm::load(w, &format!("{prefix}.layer_norm1"), d, shape.eps)?,
            attention: Attention::load(w, &format!("{prefix}.self_attn"), d, shape.heads, shape.layout)?,
            norm2: LayerNorm::load(w, &format!("{prefix}.layer_norm2"), d, shape.eps)?,
            mlp: Mlp::load(w, &format!("{prefix}.mlp"), shape)?,
        })
    }

    fn forward(&self, x: &Tensor, visibility: Visibility) -> Result<Tensor> {
        let x = self.attention.forward(&self.norm1.forward(x)?, visibility, x)?;
        self.mlp.forward(&self.norm2.forward(&x)?, &x)
    }

    /// The layer as it is (pre-norm), every position seeing every other.
    pub(super) fn forward_pre_norm(&self, x: &Tensor) -> Result<Tensor> {
        self.forward(x, Visibility::All)
    }

    /// The layer in BERT's order (post-norm), every position seeing every other:
    /// `norm1(x + attention(x))`, then `norm2(h + mlp(h))`.
    pub(super) fn forward_post_norm(&self, x: &Tensor) -> Result<Tensor> {
        let h = self.norm1.forward(&self.attention.forward(x, Visibility::All, x)?)?;
        self.norm2.forward(&self.mlp.forward(&h, &h)?)
    }

    /// The layer's output at one position of each sequence only, where that is all a tower
    /// keeps (its pooled token). Every position's keys and values are still needed, but the
    /// output projection and the MLP run on those rows alone: three quarters of the layer's
    /// products saved, bar one row a sequence. `pooled`: the (batch × seq) row of each
    /// sequence's position; `mask`: (batch, 1, 1, seq), added to the scores. Returns (batch, dim).
    fn forward_at(&self, x: &Tensor, pooled: &Tensor, mask: Option<&Tensor>) -> Result<Tensor> {
        let (batch, seq, d) = x.dims3()?;
        let qkv = self.attention.qkv.forward(&self.norm1.forward(x)?)?.reshape((batch * seq, 3 * d))?;
        let query = qkv.index_select(pooled, 0)?.narrow(1, 0, d)?;
        let qkv = qkv.reshape((batch, seq, 3 * d))?;
        let (keys, values) = (qkv.narrow(2, d, d)?, qkv.narrow(2, 2 * d, d)?);
        let context = attend_from_one_query(&query, &keys, &values, self.attention.heads, mask)?;
        let residual = x.reshape((batch * seq, d))?.index_select(pooled, 0)?;
        let x = self.attention.out.forward_then(&context, Epilogue::Residual(&residual))?;
        self.mlp.forward(&self.norm2.forward(&x)?, &x)
    }
}

/// One (already scaled) query per sequence, `query` (batch, dim), attending over `keys` and
/// `values` (batch, seq, dim); `mask` (batch, 1, 1, seq) is added to the scores. → (batch, dim).
pub(super) fn attend_from_one_query(
    query: &Tensor,
    keys: &Tensor,
    values: &Tensor,
    heads: usize,
    mask: Option<&Tensor>,
) -> Result<Tensor> {
    let (batch, seq, d) = keys.dims3()?;
    let head_dim = d / heads;
    let query = query.reshape((batch, heads, 1, head_dim))?;
    let keys_t = keys.reshape((batch, seq, heads, head_dim))?.permute((0, 2, 3, 1))?.contiguous()?;
    let values = values.reshape((batch, seq, heads, head_dim))?.transpose(1, 2)?.contiguous()?;
    let mut scores = query.matmul(&keys_t)?;
    if let Some(mask) = mask {
        scores = scores.broadcast_add(mask)?;
    }
    let weights = candle_nn::ops::softmax_last_dim(&scores)?;
    Ok(weights.matmul(&values)?.reshape((batch, d))?)
}

/// What the encoder stack of either tower needs to know.
pub(super) struct TowerShape {
    pub(super) hidden: usize,
    pub(super) intermediate: usize,
    pub(super) heads: usize,
    pub(super) layers: usize,
    pub(super) eps: f64,
    pub(super) activation: Activation,
    /// How the tower's linear weights are laid out: for the rows it mostly sees.
    pub(super) layout: WeightLayout,
}

/// The encoder shape of either tower's config (both name the fields as Hugging Face does).
macro_rules! tower_shape {
    ($config:expr, $layout:expr) => {
        TowerShape {
            hidden: $config.hidden_size,
            intermediate: $config.intermediate_size,
            heads: $config.num_attention_heads,
            layers: $config.num_hidden_layers,
            eps: $config.layer_norm_eps,
            activation: $config.hidden_act,
            layout: $layout,
        }
    };
}
pub(super) use tower_shape;

struct Encoder {
    layers: Vec<EncoderLayer>,
}

impl Encoder {
    fn load(w: &Weights, prefix: &str, shape: &TowerShape) -> Result<Self> {
        let layers = (0..shape.layers)
            .map(|i| EncoderLayer::load(w, &format!("{prefix}.layers.{i}"), shape))
            .collect::<Result<_>>()?;
        Ok(Self { layers })
    }

    fn forward(&self, x: &Tensor, visibility: Visibility) -> Result<Tensor> {
        self.layers.iter().try_fold(x.clone(), |x, layer| layer.forward(&x, visibility))
    }

    /// `x`: (batch, seq, dim) → the last layer's output at `positions[b]` of each sequence
    /// `b`: (batch, dim). Only those rows leave the tower, so the last layer computes only them.
    fn forward_pooled(&self, x: &Tensor, visibility: Visibility, positions: &[usize]) -> Result<Tensor> {
        let (batch, seq, d) = x.dims3()?;
        let rows: Vec<u32> = positions.iter().enumerate().map(|(b, &p)| (b * seq + p) as u32).collect();
        let rows = Tensor::new(rows.as_slice(), x.device())?;
        let Some((last, layers)) = self.layers.split_last() else {
            return Ok(x.reshape((batch * seq, d))?.index_select(&rows, 0)?);
        };
        let x = layers.iter().try_fold(x.clone(), |x, layer| layer.forward(&x, visibility))?;
        // The pooled position's own row of what it may see.
        let mask = match visibility {
            Visibility::All => None,
            // A causal pooled position sees itself and what comes before it.
            Visibility::Causal => Some(Self::hide_after(positions, seq, x.dtype(), x.device())?),
            Visibility::Masked(mask) => {
                let own_rows = positions
                    .iter()
                    .enumerate()
                    .map(|(b, &p)| mask.narrow(0, b, 1)?.narrow(2, p, 1))
                    .collect::<candle_core::Result<Vec<_>>>()?;
                Some(Tensor::cat(&own_rows, 0)?)
            }
        };
        last.forward_at(&x, &rows, mask.as_ref())
    }

    /// (batch, 1, 1, seq): 0 up to and at each sequence's position, −∞ after it.
    fn hide_after(positions: &[usize], seq: usize, dtype: DType, device: &Device) -> Result<Tensor> {
        let mask: Vec<f32> = positions
            .iter()
            .flat_map(|&p| (0..seq).map(move |j| if j <= p { 0.0 } else { f32::NEG_INFINITY }))
            .collect();
        Ok(Tensor::from_vec(mask, (positions.len(), 1, 1, seq), device)?.to_dtype(dtype)?)
    }
}

/// SigLIP's multi-head attention pooling ("MAP") head: one learned query (`probe`) attends over
/// every patch, then a residual MLP. `transformers`' `SiglipMultiheadAttentionPoolingHead`.
struct AttentionPoolingHead {
    /// The probe's query projection, already scaled by 1/sqrt(head_dim): (1, dim).
    query: Tensor,
    /// k and v fused: (dim → 2 * dim).
    key_value: Linear,
    out: Linear,
    norm: LayerNorm,
    mlp: Mlp,
    heads: usize,
}

impl AttentionPoolingHead {
    fn load(w: &Weights, prefix: &str, shape: &TowerShape) -> Result<Self> {
        let d = shape.hidden;
        let probe = w.get(&format!("{prefix}.probe"), &[1, 1, d])?.reshape((1, d))?;
        // torch's MultiheadAttention keeps q, k and v in one in_proj of (3 * dim, dim).
        let in_weight = w.get(&format!("{prefix}.attention.in_proj_weight"), &[3 * d, d])?;
        let in_bias = w.get(&format!("{prefix}.attention.in_proj_bias"), &[3 * d])?;
        // The probe is fixed, so its query is computed once here instead of per batch.
        let scale = ((d / shape.heads) as f64).powf(-0.5);
        let query =
            ((probe.matmul(&in_weight.narrow(0, 0, d)?.t()?)?.broadcast_add(&in_bias.narrow(0, 0, d)?))? * scale)?;
        Ok(Self {
            query,
            key_value: Linear::from_parts(
                &in_weight.narrow(0, d, 2 * d)?,
                Some(in_bias.narrow(0, d, 2 * d)?),
                shape.layout,
            )?,
            out: Linear::load(w, &format!("{prefix}.attention.out_proj"), (d, d), true, shape.layout)?,
            norm: LayerNorm::load(w, &format!("{prefix}.layernorm"), d, shape.eps)?,
            mlp: Mlp::load(w, &format!("{prefix}.mlp"), shape)?,
            heads: shape.heads,
        })
    }

    /// `x`: (batch, seq, dim) → (batch, dim).
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let (batch, _, d) = x.dims3()?;
        let kv = self.key_value.forward(x)?;
        let query = self.query.broadcast_as((batch, d))?;
        let context = attend_from_one_query(&query, &kv.narrow(2, 0, d)?, &kv.narrow(2, d, d)?, self.heads, None)?;
        let pooled = self.out.forward(&context)?;
        self.mlp.forward(&self.norm.forward(&pooled)?, &pooled)
    }
}

/// OpenCLIP's `AttentionalPooler` (CoCa): learned queries, layer-normed, attend over every token
/// of the tower (layer-normed as keys); only the first query's output goes on to the embedding,
/// so only it is computed. Its width is the embedding's; keys and values come from the tower's.
struct AttentionalPooler {
    /// The first query through `ln_q` and its projection, scaled by 1/sqrt(head_dim): (1, width).
    query: Tensor,
    key_norm: LayerNorm,
    /// k and v fused: (tower width → 2 * width).
    key_value: Linear,
    out: Linear,
    heads: usize,
}

impl AttentionalPooler {
    fn load(
        w: &Weights,
        prefix: &str,
        tower_width: usize,
        width: usize,
        pool: AttentionalPool,
        shape: &TowerShape,
    ) -> Result<Self> {
        let queries = w.get(&format!("{prefix}.query"), &[pool.queries, width])?;
        let query_norm = LayerNorm::load(w, &format!("{prefix}.ln_q"), width, shape.eps)?;
        // torch's MultiheadAttention packs q, k and v into one in_proj when all three have the
        // attention's width, and keeps them apart otherwise.
        let a = format!("{prefix}.attn");
        let (q_weight, kv_weight) = if tower_width == width {
            let packed = w.get(&format!("{a}.in_proj_weight"), &[3 * width, width])?;
            (packed.narrow(0, 0, width)?, packed.narrow(0, width, 2 * width)?)
        } else {
            let part = |name: &str, input: usize| w.get(&format!("{a}.{name}_proj_weight"), &[width, input]);
            (part("q", width)?, Tensor::cat(&[part("k", tower_width)?, part("v", tower_width)?], 0)?)
        };
        let in_bias = w.get(&format!("{a}.in_proj_bias"), &[3 * width])?;
        let scale = ((width / pool.heads) as f64).powf(-0.5);
        let first = query_norm.forward(&queries.narrow(0, 0, 1)?)?;
        let query = ((first.matmul(&q_weight.t()?)?.broadcast_add(&in_bias.narrow(0, 0, width)?))? * scale)?;
        Ok(Self {
            query,
            key_norm: LayerNorm::load(w, &format!("{prefix}.ln_k"), tower_width, shape.eps)?,
            key_value: Linear::from_parts(&kv_weight, Some(in_bias.narrow(0, width, 2 * width)?), shape.layout)?,
            out: Linear::load(w, &format!("{a}.out_proj"), (width, width), true, shape.layout)?,
            heads: pool.heads,
        })
    }

    /// `x`: (batch, seq, tower width) → the first query's output: (batch, width).
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let batch = x.dim(0)?;
        let width = self.query.dim(1)?;
        let kv = self.key_value.forward(&self.key_norm.forward(x)?)?;
        let query = self.query.broadcast_as((batch, width))?;
        let context =
            attend_from_one_query(&query, &kv.narrow(2, 0, width)?, &kv.narrow(2, width, width)?, self.heads, None)?;
        self.out.forward(&context)
    }
}

/// How the image tower turns its patch tokens into one vector.
enum VisionPooling {
    /// CLIP: the class token, layer-normed, then `visual_projection`.
    ClassToken { projection: Linear },
    /// SigLIP: every token layer-normed, then the attention-pooling head (no projection).
    AttentionHead(AttentionPoolingHead),
    /// OpenCLIP's average pool (CLIPA): the mean of the patch tokens, normalised (after the
    /// mean where `norm_after`, else each token before it), then `visual_projection`.
    Average { projection: Linear, norm_after: bool },
    /// OpenCLIP's CoCa: the attentional pooler over every token, then layer-normed (at the
    /// embedding's width) and `visual_projection`.
    Attentional { pooler: AttentionalPooler, projection: Linear },
}

/// The ViT image tower with its pooling.
pub struct VitTower {
    /// The stride-`patch` conv as a linear layer over unfolded patches (channels * patch * patch → hidden).
    patch_embedding: Linear,
    /// CLIP's class token, prepended to the patches; SigLIP has none.
    class_embedding: Option<Tensor>,
    position_embedding: Tensor,
    /// CLIP's `pre_layrnorm` (sic); SigLIP has none.
    pre_norm: Option<LayerNorm>,
    encoder: Encoder,
    post_norm: LayerNorm,
    pooling: VisionPooling,
    config: VisionConfig,
}

/// The layout `--dtype bf16` runs on this CPU, or why it cannot.
fn bf16_layout() -> Result<WeightLayout> {
    kernels::bf16_layout().ok_or(Error::Precision { requested: "bf16", reason: crate::model::device::BF16_MISSING })
}

fn f16_off_gpu() -> Error {
    Error::Precision { requested: "f16", reason: crate::model::device::F16_CPU }
}

/// An image tower: `forward(pixels)` → (batch, embedding dim), not normalised.
pub enum VisionTower {
    /// CLIP's, SigLIP's and OpenCLIP's ViTs.
    Vit(VitTower),
    /// OpenCLIP's `ModifiedResNet` (OpenAI's RN50 and its kin).
    ResNet(ResNetTower),
    /// timm's EVA towers (EVA-CLIP).
    Eva(EvaTower),
    /// timm's ConvNeXts (LAION's ConvNeXt CLIPs).
    ConvNext(ConvNextTower),
}

impl VisionTower {
    fn load(w: &Weights, config: &ModelConfig, precision: Precision) -> Result<Self> {
        // Pictures come in batches (hundreds of rows per layer). In f32, on AMX the three-way
        // bf16 split (near-f32 accuracy, faster than f32 FMAs); on other CPUs the f32 panels of
        // our AVX-512 / AVX2 / NEON kernels (on x86 ahead of candle's `gemm` at every batch,
        // benches/README.md); with only the portable kernel, candle's matmul, whose `gemm` is
        // vectorised where that kernel is plain Rust.
        let f32_panels = || {
            if kernels::isa() > kernels::Isa::Portable {
                WeightLayout::Packed
            } else {
                WeightLayout::Transposed
            }
        };
        let layout = match precision {
            _ if !w.device().is_cpu() => WeightLayout::Transposed,
            Precision::F32 if kernels::amx::available() => WeightLayout::AmxTiles(Split::ThreeWay),
            Precision::F32 => f32_panels(),
            Precision::Bf16 => bf16_layout()?,
            Precision::F16 => return Err(f16_off_gpu()),
        };
        let v = &config.vision_config;
        Ok(match (v.resnet, v.eva, v.convnext) {
            (Some(shape), _, _) => Self::ResNet(ResNetTower::load(w, config, shape, layout)?),
            (None, Some(shape), _) => Self::Eva(EvaTower::load(w, config, shape, layout)?),
            (None, None, Some(shape)) => Self::ConvNext(ConvNextTower::load(w, config, shape, layout)?),
            (None, None, None) => Self::Vit(VitTower::load(w, config, layout)?),
        })
    }

    /// `pixels`: (batch, channels, image_size, image_size) → (batch, embedding dim), not normalised.
    pub fn forward(&self, pixels: &Tensor) -> Result<Tensor> {
        match self {
            Self::Vit(tower) => tower.forward(pixels),
            Self::ResNet(tower) => tower.forward(pixels),
            Self::Eva(tower) => tower.forward(pixels),
            Self::ConvNext(tower) => tower.forward(pixels),
        }
    }
}

impl VitTower {
    fn load(w: &Weights, config: &ModelConfig, layout: WeightLayout) -> Result<Self> {
        let c = &config.vision_config;
        let p = "vision_model";
        let (d, ps, ch) = (c.hidden_size, c.patch_size, c.num_channels);
        let conv = match c.naflex_position_grid {
            // NaFlex's linear layer reads each patch's pixels by (row, column, channel): laid out
            // here as the conv's (channel, row, column), it runs on the same patch rows.
            Some(_) => w
                .get(&format!("{p}.embeddings.patch_embedding.weight"), &[d, ps * ps * ch])?
                .reshape((d, ps, ps, ch))?
                .permute((0, 3, 1, 2))?
                .contiguous()?,
            None => w.get(&format!("{p}.embeddings.patch_embedding.weight"), &[d, ch, ps, ps])?,
        };
        let shape = tower_shape!(c, layout);
        let siglip = config.family == Family::Siglip;
        let patch_bias = siglip.then(|| w.get(&format!("{p}.embeddings.patch_embedding.bias"), &[d])).transpose()?;
        let positions = if siglip { c.num_patches() } else { c.num_patches() + 1 };
        let width = config.projection_dim;
        let pooling = match c.attentional_pool {
            _ if siglip => VisionPooling::AttentionHead(AttentionPoolingHead::load(w, &format!("{p}.head"), &shape)?),
            Some(pool) => VisionPooling::Attentional {
                pooler: AttentionalPooler::load(w, &format!("{p}.attn_pool"), d, width, pool, &shape)?,
                projection: Linear::load(w, "visual_projection", (width, width), false, shape.layout)?,
            },
            None if c.average_pool => VisionPooling::Average {
                projection: Linear::load(w, "visual_projection", (d, width), false, shape.layout)?,
                norm_after: c.norm_after_pool,
            },
            None => VisionPooling::ClassToken {
                projection: Linear::load(w, "visual_projection", (d, width), false, shape.layout)?,
            },
        };
        // Normalises what the pooling puts out: the attentional pooler's is the embedding's width.
        let post_norm_width = if c.attentional_pool.is_some() && !siglip { width } else { d };
        Ok(Self {
            // On the tower's kernel (the AMX split in f32 where it exists) instead of a plain
            // gemm, which took 5% of the f32 tower at batch 16.
            patch_embedding: Linear::from_parts(&conv.reshape((d, ch * ps * ps))?, patch_bias, layout)?,
            class_embedding: (!siglip).then(|| w.get(&format!("{p}.embeddings.class_embedding"), &[d])).transpose()?,
            position_embedding: w.get(&format!("{p}.embeddings.position_embedding.weight"), &[positions, d])?,
            pre_norm: (!siglip && !c.without_pre_norm)
                .then(|| LayerNorm::load(w, &format!("{p}.pre_layrnorm"), d, c.layer_norm_eps))
                .transpose()?,
            encoder: Encoder::load(w, &format!("{p}.encoder"), &shape)?,
            post_norm: LayerNorm::load(w, &format!("{p}.post_layernorm"), post_norm_width, c.layer_norm_eps)?,
            pooling,
            config: c.clone(),
        })
    }

    /// `pixels`: (batch, channels, image_size, image_size), or for NaFlex (batch, channels, height,
    /// width) in whole patches → (batch, embedding dim), not normalised.
    fn forward(&self, pixels: &Tensor) -> Result<Tensor> {
        let c = &self.config;
        let (batch, _, height, width) = pixels.dims4()?;
        let patches = patch_rows(pixels, c, c.patch_size, self.position_embedding.dtype())?;
        let (rows, columns) = c.patch_grid(height, width, c.patch_size).expect("patch_rows checked the size");
        let d = c.hidden_size;
        let embedded = self.patch_embedding.forward(&patches)?.reshape((batch, rows * columns, d))?;
        let x = match &self.class_embedding {
            Some(class) => {
                let class = class.reshape((1, 1, d))?.broadcast_as((batch, 1, d))?;
                Tensor::cat(&[&class, &embedded], 1)?
            }
            None => embedded,
        };
        let x = match c.naflex_position_grid {
            Some(grid) => x.broadcast_add(&resized_positions(&self.position_embedding, grid, (rows, columns))?)?,
            None => x.broadcast_add(&self.position_embedding)?,
        };
        let x = match &self.pre_norm {
            Some(norm) => norm.forward(&x)?,
            None => x,
        };
        match &self.pooling {
            // Layer norm is per token, so pool first and normalise only the class token.
            VisionPooling::ClassToken { projection } => {
                let class_token = self.encoder.forward_pooled(&x, Visibility::All, &vec![0; batch])?;
                projection.forward(&self.post_norm.forward(&class_token)?)
            }
            VisionPooling::AttentionHead(head) => {
                head.forward(&self.post_norm.forward(&self.encoder.forward(&x, Visibility::All)?)?)
            }
            VisionPooling::Average { projection, norm_after } => {
                let x = self.encoder.forward(&x, Visibility::All)?;
                let patches = x.narrow(1, 1, rows * columns)?;
                let mean = match norm_after {
                    true => self.post_norm.forward(&patches.mean(1)?)?,
                    false => self.post_norm.forward(&patches)?.mean(1)?,
                };
                projection.forward(&mean)
            }
            VisionPooling::Attentional { pooler, projection } => {
                let pooled = pooler.forward(&self.encoder.forward(&x, Visibility::All)?)?;
                projection.forward(&self.post_norm.forward(&pooled)?)
            }
        }
    }
}

/// `pixels` (batch, channels, height, width), checked against the tower's config
/// ([`VisionConfig::patch_grid`]), as the rows a stride-`patch` conv reads: the non-overlapping
/// patches in (row, col) order, each flattened as (channel, y, x) like the conv's weight, in
/// `dtype` (pixels come in f32; a tower may run in f16 or bf16 on a GPU).
/// → (batch · rows · columns, channels · patch²).
pub(super) fn patch_rows(pixels: &Tensor, c: &VisionConfig, patch: usize, dtype: DType) -> Result<Tensor> {
    let (batch, ch, h, w) = pixels.dims4()?;
    let grid = c.patch_grid(h, w, patch).filter(|_| ch == c.num_channels);
    let Some((rows, columns)) = grid else {
        let expected = match c.naflex_position_grid {
            Some(_) => format!("whole {patch}-pixel patches"),
            None => format!("{0}x{0}", c.image_size),
        };
        return Err(Error::Candle(candle_core::Error::Msg(format!(
            "vision tower expects {} channels of {expected} pixels, got ({ch}, {h}, {w})",
            c.num_channels
        ))));
    };
    let ps = patch;
    let pixels = pixels.to_dtype(dtype)?;
    // A "valid" conv leaves out the pixels past the last whole patch.
    let pixels = match (rows * ps, columns * ps) {
        (covered_h, covered_w) if (covered_h, covered_w) == (h, w) => pixels,
        (covered_h, covered_w) => pixels.narrow(2, 0, covered_h)?.narrow(3, 0, covered_w)?,
    };
    Ok(pixels
        .reshape((batch, ch, rows, ps, columns, ps))?
        .permute((0, 2, 4, 1, 3, 5))?
        .contiguous()?
        .reshape((batch * rows * columns, ch * ps * ps))?)
}

/// (batch, height, width, channels) → (batch, height / 2, width / 2, 4 · channels): each 2×2
/// square of pixels as one row in (dy, dx, channel) order, a stride-2 "valid" conv's input (an
/// odd last row or column left out).
pub(super) fn two_by_two_patches(x: &Tensor) -> Result<Tensor> {
    let (batch, height, width, channels) = x.dims4()?;
    let (h, w) = (height / 2, width / 2);
    let x = match (2 * h, 2 * w) == (height, width) {
        true => x.clone(),
        false => x.narrow(1, 0, 2 * h)?.narrow(2, 0, 2 * w)?.contiguous()?,
    };
    Ok(x.reshape((batch, h, 2, w, 2, channels))?.permute((0, 1, 3, 2, 4, 5))?.contiguous()?.reshape((
        batch,
        h,
        w,
        4 * channels,
    ))?)
}

/// `torch.nn.BatchNorm2d`'s default epsilon, which open_clip's ResNet and timm's ConvStem keep.
const BATCH_NORM_EPS: f64 = 1e-5;

/// A bias-free conv's (out, in, ky, kx) weight at `conv` with the (frozen) batch norm at `norm`
/// after it folded in: at inference `(y - mean) / sqrt(var + eps) * gamma + beta`, per output
/// channel, is a scale of the weights and a bias. Folded in f32, returned in the checkpoint's
/// number format. → (weight, bias).
pub(super) fn conv_with_batch_norm(
    w: &Weights,
    (conv, norm): (&str, &str),
    (inputs, outputs): (usize, usize),
    kernel: usize,
) -> Result<(Tensor, Tensor)> {
    let weight = w.get(&format!("{conv}.weight"), &[outputs, inputs, kernel, kernel])?;
    let dtype = weight.dtype();
    let part =
        |name: &str| -> Result<Tensor> { Ok(w.get(&format!("{norm}.{name}"), &[outputs])?.to_dtype(DType::F32)?) };
    let scale = (part("weight")? / (part("running_var")? + BATCH_NORM_EPS)?.sqrt()?)?;
    let bias = (part("bias")? - (part("running_mean")? * &scale)?)?;
    let weight = weight.to_dtype(DType::F32)?.broadcast_mul(&scale.reshape((outputs, 1, 1, 1))?)?;
    Ok((weight.to_dtype(dtype)?, bias.to_dtype(dtype)?))
}

/// SigLIP 2 NaFlex's learned positions, a `grid` × `grid` table (grid², dim), resized to
/// (rows, columns) → (rows · columns, dim): `F.interpolate(mode="bilinear", align_corners=False,
/// antialias=True)`, whose weights `Siglip2VisionEmbeddings` writes out along each axis (a
/// triangle as wide as the scale where it shrinks). Resizing is linear and separable: the rows'
/// weights, then the columns'.
fn resized_positions(table: &Tensor, grid: usize, (rows, columns): (usize, usize)) -> Result<Tensor> {
    let (d, dtype, device) = (table.dim(1)?, table.dtype(), table.device());
    let weights = |size: usize| -> Result<Tensor> {
        let scale = grid as f32 / size as f32;
        let support = scale.max(1.0);
        let mut weights = vec![0f32; size * grid];
        for (out, row) in weights.chunks_mut(grid).enumerate() {
            let center = (out as f32 + 0.5) * scale - 0.5;
            for (source, w) in row.iter_mut().enumerate() {
                *w = (1.0 - (source as f32 - center).abs() / support).max(0.0);
            }
            let sum: f32 = row.iter().sum();
            row.iter_mut().for_each(|w| *w /= sum);
        }
        Ok(Tensor::from_vec(weights, (size, grid), device)?)
    };
    let table = table.to_dtype(DType::F32)?;
    // (rows, grid) · (grid, grid · dim): each output row of the table, every column still whole.
    let by_rows = weights(rows)?.matmul(&table.reshape((grid, grid * d))?)?.reshape((rows, grid, d))?;
    // (rows, columns, grid) · (rows, grid, dim): each row's columns.
    let by_columns = weights(columns)?.unsqueeze(0)?.broadcast_as((rows, columns, grid))?.contiguous()?;
    Ok(by_columns.matmul(&by_rows)?.reshape((rows * columns, d))?.to_dtype(dtype)?)
}

/// A text tower: `forward(ids, end_positions)` → (batch, embedding dim), not normalised.
pub enum TextTower {
    /// CLIP's, SigLIP's and OpenCLIP's own transformer.
    Transformer(TransformerTextTower),
    /// Hugging Face encoders: OpenCLIP's (XLM-RoBERTa, NLLB, BERT) and Chinese-CLIP's BERT.
    HfEncoder(HfTextTower),
}

impl TextTower {
    fn load(w: &Weights, config: &ModelConfig, precision: Precision) -> Result<Self> {
        let layout = match precision {
            _ if !w.device().is_cpu() => WeightLayout::Transposed,
            // Texts come one short query at a time (8 to 77 rows): in f32, the panels.
            Precision::F32 => WeightLayout::Packed,
            // A short query is bound by reading the weights: half the bytes in bf16.
            Precision::Bf16 => bf16_layout()?,
            Precision::F16 => return Err(f16_off_gpu()),
        };
        Ok(match &config.text_config.hf_encoder {
            Some(_) => Self::HfEncoder(HfTextTower::load(w, config, layout)?),
            None => Self::Transformer(TransformerTextTower::load(w, config, layout)?),
        })
    }

    /// `ids`: (batch, seq) u32 token ids, each row's text ending at `end_positions[row]`
    /// (see each tower's `forward`).
    pub fn forward(&self, ids: &Tensor, end_positions: &[usize]) -> Result<Tensor> {
        match self {
            Self::Transformer(tower) => tower.forward(ids, end_positions),
            Self::HfEncoder(tower) => tower.forward(ids, end_positions),
        }
    }
}

/// The text transformer plus its projection: CLIP's causal one with `text_projection`, or
/// SigLIP's bidirectional one with `head` (which has a bias).
pub struct TransformerTextTower {
    token_embedding: TokenTable,
    position_embedding: Tensor,
    /// CoCa's class token, appended after the text (see [`TextConfig::class_token`]): (1, dim).
    class_token: Option<Tensor>,
    encoder: Encoder,
    final_norm: LayerNorm,
    /// None where the tower is as wide as the embedding and has no head (`without_head`).
    projection: Option<Linear>,
    causal: bool,
    config: TextConfig,
}

impl TransformerTextTower {
    fn load(w: &Weights, config: &ModelConfig, layout: WeightLayout) -> Result<Self> {
        let c = &config.text_config;
        let p = "text_model";
        let d = c.hidden_size;
        let shape = tower_shape!(c, layout);
        Ok(Self {
            token_embedding: w.table(TEXT_TOKEN_TABLE, [c.vocab_size, d])?,
            position_embedding: w
                .get(&format!("{p}.embeddings.position_embedding.weight"), &[c.max_position_embeddings, d])?,
            class_token: c
                .class_token
                .then(|| -> Result<Tensor> {
                    Ok(w.get(&format!("{p}.embeddings.class_embedding"), &[d])?.reshape((1, d))?)
                })
                .transpose()?,
            encoder: Encoder::load(w, &format!("{p}.encoder"), &shape)?,
            final_norm: LayerNorm::load(w, &format!("{p}.final_layer_norm"), d, c.layer_norm_eps)?,
            projection: match config.family {
                _ if c.without_head => None,
                Family::Clip => {
                    Some(Linear::load(w, "text_projection", (d, config.projection_dim), false, shape.layout)?)
                }
                Family::Siglip => {
                    Some(Linear::load(w, &format!("{p}.head"), (d, config.projection_dim), true, shape.layout)?)
                }
            },
            causal: config.family == Family::Clip && !c.bidirectional,
            config: c.clone(),
        })
    }

    /// `ids`: (batch, seq) u32 token ids, each row ending at or before `seq` with its end token at
    /// `end_positions[row]`; anything after it is padding. Returns (batch, projection_dim).
    ///
    /// CLIP's tower is causal, so positions after the end token never influence it: callers pass
    /// only as many columns as the longest text needs instead of padding to 77. SigLIP's sees
    /// every position, and its texts come padded to the full context.
    pub fn forward(&self, ids: &Tensor, end_positions: &[usize]) -> Result<Tensor> {
        let (batch, seq) = ids.dims2()?;
        let d = self.config.hidden_size;
        if seq > self.config.max_position_embeddings
            || end_positions.len() != batch
            || end_positions.iter().any(|&e| e >= seq)
        {
            return Err(Error::Candle(candle_core::Error::Msg(format!(
                "bad text batch: {batch}x{seq}, ends {end_positions:?}"
            ))));
        }
        let pooled = match &self.class_token {
            Some(class_token) => {
                let rows = (0..batch)
                    .map(|b| self.pooled_at_class_token(&ids.get(b)?.narrow(0, 0, end_positions[b] + 1)?, class_token))
                    .collect::<Result<Vec<_>>>()?;
                Tensor::cat(&rows, 0)?
            }
            None => {
                let x = self.token_embedding.rows(ids)?.reshape((batch, seq, d))?;
                let x = x.broadcast_add(&self.position_embedding.narrow(0, 0, seq)?)?;
                let visibility = if self.causal { Visibility::Causal } else { Visibility::All };
                self.encoder.forward_pooled(&x, visibility, end_positions)?
            }
        };
        // Layer norm is per token, so pool first and normalise only the pooled rows.
        let pooled = self.final_norm.forward(&pooled)?;
        match &self.projection {
            Some(projection) => projection.forward(&pooled),
            None => Ok(pooled),
        }
    }

    /// CoCa's tower on one text (`ids` up to its end token): the class token's output, (1, dim).
    ///
    /// In open_clip the class token comes after the whole padded context and sees position 0 and
    /// each position whose *preceding* token is not padding (its mask is shifted by one): the
    /// text's tokens, the first padding token, and itself only when the text fills the context.
    /// The padding after that first one is seen by nothing that reaches the class token, so it
    /// is left out; the text's own positions stay causal.
    fn pooled_at_class_token(&self, ids: &Tensor, class_token: &Tensor) -> Result<Tensor> {
        const PAD: u32 = 0; // open_clip's tokenizer pads with 0
        let context = self.config.context_length();
        let mut tokens: Vec<u32> = ids.to_vec1()?;
        let fills_context = tokens.len() == context;
        if !fills_context {
            tokens.push(PAD);
        }
        let seq = tokens.len() + 1;
        let device = ids.device();
        let text = self.token_embedding.rows(&Tensor::new(tokens.as_slice(), device)?)?;
        let text = text.broadcast_add(&self.position_embedding.narrow(0, 0, tokens.len())?)?;
        let class = class_token.broadcast_add(&self.position_embedding.narrow(0, context, 1)?)?;
        let x = Tensor::cat(&[&text, &class], 0)?.unsqueeze(0)?;
        let class_row = seq - 1;
        let sees = |i: usize, j: usize| match i {
            _ if i < class_row => j <= i,
            _ if j == class_row => fills_context && tokens[context - 1] != PAD,
            _ => j == 0 || tokens[j - 1] != PAD,
        };
        let mask: Vec<f32> =
            (0..seq).flat_map(|i| (0..seq).map(move |j| if sees(i, j) { 0.0 } else { f32::NEG_INFINITY })).collect();
        let mask = Tensor::from_vec(mask, (1, 1, seq, seq), device)?.to_dtype(x.dtype())?;
        self.encoder.forward_pooled(&x, Visibility::Masked(&mask), &[class_row])
    }
}

/// Which towers of a checkpoint to load: a text search needs only the text tower (a quarter of
/// ViT-B/32's weights), indexing only the image tower.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Towers {
    Image,
    Text,
    Both,
}

impl Towers {
    pub fn has_image(self) -> bool {
        matches!(self, Self::Image | Self::Both)
    }

    pub fn has_text(self) -> bool {
        matches!(self, Self::Text | Self::Both)
    }
}

/// SigLIP's calibration of a text–picture cosine into a match probability:
/// `sigmoid(cosine * exp(logit_scale) + logit_bias)`, as `SiglipModel` scores pairs.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SigmoidScore {
    pub logit_scale: f32,
    pub logit_bias: f32,
}

impl SigmoidScore {
    pub fn probability(&self, cosine: f32) -> f32 {
        let logit = cosine * self.logit_scale.exp() + self.logit_bias;
        1.0 / (1.0 + (-logit).exp())
    }
}

/// The towers of one checkpoint that were asked for.
pub struct ClipModel {
    pub vision: Option<VisionTower>,
    pub text: Option<TextTower>,
    /// SigLIP's probability calibration; CLIP-family models have none (their scores stay cosines).
    pub sigmoid_score: Option<SigmoidScore>,
    pub config: ModelConfig,
}

impl ClipModel {
    /// `precision` must have passed `Precision::check` for the weights' device.
    pub fn load(weights: &Weights, config: &ModelConfig, towers: Towers, precision: Precision) -> Result<Self> {
        let vision = towers.has_image().then_some(weights);
        let text = towers.has_text().then_some(weights);
        Self::load_towers(vision, text, config, precision)
    }

    /// The towers whose weights are given, each from its own (M-CLIP's image tower is another
    /// checkpoint's).
    pub fn load_towers(
        vision: Option<&Weights>,
        text: Option<&Weights>,
        config: &ModelConfig,
        precision: Precision,
    ) -> Result<Self> {
        // SigLIP's logit scale and bias are in either tower's checkpoint (they are one).
        let weights =
            vision.or(text).ok_or_else(|| Error::Candle(candle_core::Error::Msg("no tower to load".into())))?;
        let vision = vision.map(|weights| VisionTower::load(weights, config, precision)).transpose()?;
        let text = text.map(|weights| TextTower::load(weights, config, precision)).transpose()?;
        let sigmoid_score = match config.family {
            Family::Clip => None,
            Family::Siglip => {
                let scalar = |name: &str| -> Result<f32> {
                    Ok(weights.get(name, &[1])?.to_dtype(DType::F32)?.to_vec1::<f32>()?[0])
                };
                Some(SigmoidScore { logit_scale: scalar("logit_scale")?, logit_bias: scalar("logit_bias")? })
            }
        };
        Ok(Self { vision, text, sigmoid_score, config: config.clone() })
    }
}

/// Divides each row by its L2 norm (a zero row stays zero rather than becoming NaN).
/// Each row divided by its length. A row that is not a direction (NaN or infinite values, or
/// all zeros) is an error: stored, it would match nothing, or everything, for good.
pub fn l2_normalize_rows(x: &Tensor) -> Result<Vec<Vec<f32>>> {
    let rows = x.to_dtype(DType::F32)?.to_vec2::<f32>()?;
    rows.into_iter()
        .map(|mut row| {
            let norm = row.iter().map(|v| v * v).sum::<f32>().sqrt();
            if !norm.is_finite() || norm == 0.0 {
                return Err(crate::error::Error::Candle(candle_core::Error::Msg(format!(
                    "the model computed an embedding of length {norm} (NaN, infinite or zero values): its weights or \
                     configuration are broken (NaN weights, layer_norm_eps, image_std, rescale_factor)"
                ))));
            }
            row.iter_mut().for_each(|v| *v /= norm);
            Ok(row)
        })
        .collect()
}
