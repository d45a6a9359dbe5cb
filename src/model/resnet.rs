//! OpenCLIP's `ModifiedResNet`, the image tower of OpenAI's RN50, RN101, RN50x4, RN50x16 and
//! RN50x64 and of the CLIPs trained like them (RemoteCLIP-RN50, OpenCLIP's RN50 on YFCC / CC12M).
//!
//! A ResNet with three changes (open_clip's `modified_resnet.py`): a stem of three 3×3 convs and
//! an average pool; strided blocks that average-pool before their last conv (and on their
//! shortcut) instead of striding a conv; and, in place of the global average pool, one
//! multi-head attention whose query is the mean of the final grid.
//!
//! The convs run as the towers' linear layers over rows of pixels (channels last): a 1×1 conv is
//! exactly one, a 3×3 conv one over each pixel's 3×3 neighbourhood laid side by side. So every
//! conv takes the CPU kernels (and the bf16 and AMX layouts) the ViTs take, with the batch norm
//! folded into its weights and bias at load and the ReLU (or the shortcut) applied while each
//! tile of output is in cache.

use candle_core::Tensor;

use super::clip::{attend_from_one_query, conv_with_batch_norm, Linear, Weights};
use super::config::{Activation, ModelConfig, ResNetShape};
use super::kernels::{self, Epilogue, WeightLayout};
use crate::error::{Error, Result};

/// A bias-free conv followed by its (frozen) batch norm, as one linear layer over channels-last
/// pixel rows: `kernel` 1 or 3 (padded by 1).
struct ConvNorm {
    linear: Linear,
    kernel: usize,
    stride: usize,
}

impl ConvNorm {
    fn load(
        w: &Weights,
        (conv, norm): (&str, &str),
        (inputs, outputs): (usize, usize),
        kernel: usize,
        stride: usize,
        layout: WeightLayout,
    ) -> Result<Self> {
        let (weight, bias) = conv_with_batch_norm(w, (conv, norm), (inputs, outputs), kernel)?;
        // (out, in, ky, kx) → (out, ky, kx, in): the column order of `neighbourhoods`.
        let weight = weight.permute((0, 2, 3, 1))?.reshape((outputs, kernel * kernel * inputs))?;
        Ok(Self { linear: Linear::from_parts(&weight, Some(bias), layout)?, kernel, stride })
    }

    /// `x`: (batch, height, width, channels) → the conv's output, normalised, then `epilogue`.
    fn forward_then(&self, x: &Tensor, epilogue: Epilogue) -> Result<Tensor> {
        match self.kernel {
            1 => self.linear.forward_then(x, epilogue),
            _ => self.linear.forward_then(&kernels::neighbourhoods(x, self.stride)?, epilogue),
        }
    }
}

/// open_clip's `Bottleneck`: 1×1, 3×3 (then the stride's average pool), 1×1 to four times the
/// width, plus the shortcut (average-pooled and 1×1-projected where the shape changes), ReLU.
struct Bottleneck {
    reduce: ConvNorm,
    spatial: ConvNorm,
    expand: ConvNorm,
    stride: usize,
    shortcut: Option<ConvNorm>,
}

impl Bottleneck {
    fn load(
        w: &Weights,
        prefix: &str,
        inputs: usize,
        planes: usize,
        stride: usize,
        layout: WeightLayout,
    ) -> Result<Self> {
        let part = |conv: &str, norm: &str, channels, kernel| {
            ConvNorm::load(w, (&format!("{prefix}.{conv}"), &format!("{prefix}.{norm}")), channels, kernel, 1, layout)
        };
        Ok(Self {
            reduce: part("conv1", "bn1", (inputs, planes), 1)?,
            spatial: part("conv2", "bn2", (planes, planes), 3)?,
            expand: part("conv3", "bn3", (planes, 4 * planes), 1)?,
            stride,
            shortcut: (stride > 1 || inputs != 4 * planes)
                .then(|| part("downsample.0", "downsample.1", (inputs, 4 * planes), 1))
                .transpose()?,
        })
    }

    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let relu = Epilogue::Activation(Activation::Relu);
        let out = self.reduce.forward_then(x, relu)?;
        let out = kernels::average_pool(&self.spatial.forward_then(&out, relu)?, self.stride)?;
        let shortcut = match &self.shortcut {
            Some(projection) => projection.forward_then(&kernels::average_pool(x, self.stride)?, Epilogue::Nothing)?,
            None => x.clone(),
        };
        kernels::activate(self.expand.forward_then(&out, Epilogue::Residual(&shortcut))?, Activation::Relu)
    }
}

/// open_clip's `AttentionPool2d`: the final grid's mean, then its pixels, each with its learned
/// position, go through one multi-head attention; only the mean's output is the embedding, so
/// only its query is computed.
struct AttentionPool {
    positions: Tensor,
    /// q, scaled by 1/sqrt(head_dim) (folded in at load).
    query: Linear,
    /// k and v fused.
    key_value: Linear,
    out: Linear,
    heads: usize,
}

impl AttentionPool {
    fn load(
        w: &Weights,
        prefix: &str,
        grid: usize,
        (dim, heads, output): (usize, usize, usize),
        layout: WeightLayout,
    ) -> Result<Self> {
        let scale = ((dim / heads) as f64).powf(-0.5);
        let part = |name: &str| -> Result<(Tensor, Tensor)> {
            Ok((
                w.get(&format!("{prefix}.{name}.weight"), &[dim, dim])?,
                w.get(&format!("{prefix}.{name}.bias"), &[dim])?,
            ))
        };
        let (qw, qb) = part("q_proj")?;
        let (kw, kb) = part("k_proj")?;
        let (vw, vb) = part("v_proj")?;
        Ok(Self {
            positions: w.get(&format!("{prefix}.positional_embedding"), &[grid * grid + 1, dim])?,
            query: Linear::from_parts(&(qw * scale)?, Some((qb * scale)?), layout)?,
            key_value: Linear::from_parts(&Tensor::cat(&[kw, vw], 0)?, Some(Tensor::cat(&[kb, vb], 0)?), layout)?,
            out: Linear::load(w, &format!("{prefix}.c_proj"), (dim, output), true, layout)?,
            heads,
        })
    }

    /// `x`: (batch, grid, grid, dim) → (batch, output).
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let (batch, grid_h, grid_w, dim) = x.dims4()?;
        let pixels = x.reshape((batch, grid_h * grid_w, dim))?;
        let tokens = Tensor::cat(&[&pixels.mean_keepdim(1)?, &pixels], 1)?.broadcast_add(&self.positions)?;
        let kv = self.key_value.forward(&tokens)?;
        let query = self.query.forward(&tokens.narrow(1, 0, 1)?.squeeze(1)?)?;
        let context =
            attend_from_one_query(&query, &kv.narrow(2, 0, dim)?, &kv.narrow(2, dim, dim)?, self.heads, None)?;
        self.out.forward(&context)
    }
}

/// The whole tower: `forward(pixels)` → (batch, embedding dim), not normalised.
pub struct ResNetTower {
    stem: [ConvNorm; 3],
    blocks: Vec<Bottleneck>,
    pool: AttentionPool,
    image_size: usize,
}

impl ResNetTower {
    pub(super) fn load(w: &Weights, config: &ModelConfig, shape: ResNetShape, layout: WeightLayout) -> Result<Self> {
        let v = &config.vision_config;
        let p = "vision_model";
        let (width, half) = (shape.width, shape.width / 2);
        let stem_conv = |i: usize, channels, stride| {
            ConvNorm::load(w, (&format!("{p}.conv{i}"), &format!("{p}.bn{i}")), channels, 3, stride, layout)
        };
        let stem = [stem_conv(1, (3, half), 2)?, stem_conv(2, (half, half), 1)?, stem_conv(3, (half, width), 1)?];
        // Not reserved ahead: the counts are the config's, and a block without its tensors stops the load.
        let mut blocks = Vec::new();
        let mut inputs = width;
        for (stage, &count) in shape.layers.iter().enumerate() {
            let planes = width << stage;
            for block in 0..count {
                let stride = if stage > 0 && block == 0 { 2 } else { 1 };
                let prefix = format!("{p}.layer{}.{block}", stage + 1);
                blocks.push(Bottleneck::load(w, &prefix, inputs, planes, stride, layout)?);
                inputs = 4 * planes;
            }
        }
        let grid = shape.pooled_grid(v.image_size);
        let pool_shape = (v.hidden_size, v.num_attention_heads, config.projection_dim);
        let pool = AttentionPool::load(w, &format!("{p}.attnpool"), grid, pool_shape, layout)?;
        Ok(Self { stem, blocks, pool, image_size: v.image_size })
    }

    /// `pixels`: (batch, 3, image_size, image_size) → (batch, embedding dim).
    pub fn forward(&self, pixels: &Tensor) -> Result<Tensor> {
        let (_, channels, height, width) = pixels.dims4()?;
        if channels != 3 || height != self.image_size || width != self.image_size {
            return Err(Error::Candle(candle_core::Error::Msg(format!(
                "the ResNet image tower expects (3, {0}, {0}) pixels, got ({channels}, {height}, {width})",
                self.image_size
            ))));
        }
        if !pixels.device().is_cpu() {
            return self.pool.forward(&self.features(pixels)?);
        }
        // On a CPU a picture alone has thousands of rows per conv, enough for every kernel: one
        // at a time, its activations stay in cache (RN50 at batch 8 ran 22% slower as a batch).
        let grids = (0..pixels.dim(0)?).map(|i| self.features(&pixels.narrow(0, i, 1)?)).collect::<Result<Vec<_>>>()?;
        self.pool.forward(&Tensor::cat(&grids, 0)?)
    }

    /// `pixels` (batch, 3, size, size) → the last stage's grid, channels last.
    fn features(&self, pixels: &Tensor) -> Result<Tensor> {
        let relu = Epilogue::Activation(Activation::Relu);
        // Channels last from here on: each pixel's channels are one row of a linear layer.
        let mut x = pixels.to_dtype(self.pool.positions.dtype())?.permute((0, 2, 3, 1))?.contiguous()?;
        for conv in &self.stem {
            x = conv.forward_then(&x, relu)?;
        }
        x = kernels::average_pool(&x, 2)?;
        for block in &self.blocks {
            x = block.forward(&x)?;
        }
        Ok(x)
    }
}
