//! timm's ConvNeXt, the image tower of LAION's ConvNeXt CLIPs (OpenCLIP's convnext_base_w,
//! convnext_large_d_320, convnext_xxlarge …), as open_clip builds it: timm's average pool and head
//! norm, then open_clip's projection.
//!
//! A stem that is a patch conv, then four stages of blocks on a channels-last grid (each later
//! stage halving it with a normalised 2×2 conv): a 7×7 depthwise conv, a layer norm, an MLP four
//! times as wide, a layer scale, the block's input added. The patch and 2×2 convs are linear
//! layers over unfolded patches, the MLP's on the towers' kernels as any ViT's (layer scale folded
//! into the last layer at load); the depthwise conv is one pass (`kernels::depthwise_conv`).
//! Weights keep open_clip's (timm's) names under `vision_model.`.

use candle_core::{DType, Tensor};

use super::clip::{patch_rows, two_by_two_patches, LayerNorm, Linear, Weights};
use super::config::{Activation, ConvNextProjection, ConvNextShape, ModelConfig, VisionConfig};
use super::kernels::{self, Epilogue, WeightLayout};
use crate::error::Result;

const PREFIX: &str = "vision_model";
/// timm's ConvNeXt blocks' depthwise filters.
const KERNEL: usize = 7;

struct Block {
    /// (7 · 7, channels): each channel's filter, tap by tap.
    taps: Tensor,
    bias: Tensor,
    norm: LayerNorm,
    fc1: Linear,
    /// With the layer scale (`gamma`) folded into its weight and bias.
    fc2: Linear,
}

impl Block {
    fn load(w: &Weights, prefix: &str, dim: usize, eps: f64, layout: WeightLayout) -> Result<Self> {
        let filters = w.get(&format!("{prefix}.conv_dw.weight"), &[dim, 1, KERNEL, KERNEL])?;
        let gamma = w.get(&format!("{prefix}.gamma"), &[dim])?;
        let fc2_weight = w.get(&format!("{prefix}.mlp.fc2.weight"), &[dim, 4 * dim])?;
        let fc2_bias = w.get(&format!("{prefix}.mlp.fc2.bias"), &[dim])?;
        Ok(Self {
            taps: filters.reshape((dim, KERNEL * KERNEL))?.t()?.contiguous()?,
            bias: w.get(&format!("{prefix}.conv_dw.bias"), &[dim])?,
            norm: LayerNorm::load(w, &format!("{prefix}.norm"), dim, eps)?,
            fc1: Linear::load(w, &format!("{prefix}.mlp.fc1"), (dim, 4 * dim), true, layout)?,
            fc2: Linear::from_parts(
                &fc2_weight.broadcast_mul(&gamma.reshape((dim, 1))?)?,
                Some((fc2_bias * &gamma)?),
                layout,
            )?,
        })
    }

    /// `x`: (batch, height, width, dim) → the same.
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let y = kernels::depthwise_conv(x, &self.taps, &self.bias, KERNEL)?;
        let hidden = self.fc1.forward_then(&self.norm.forward(&y)?, Epilogue::Activation(Activation::Gelu))?;
        self.fc2.forward_then(&hidden, Epilogue::Residual(x))
    }
}

struct Stage {
    /// A layer norm per pixel, then a 2×2 stride-2 conv (as a linear layer over 2×2 patches in
    /// (dy, dx, channel) order); none in the first stage.
    downsample: Option<(LayerNorm, Linear)>,
    blocks: Vec<Block>,
}

enum Projection {
    Linear(Linear),
    /// Linear with a bias, exact GELU, linear.
    Mlp(Linear, Linear),
}

/// The whole tower: `forward(pixels)` → (batch, embedding dim), not normalised.
pub struct ConvNextTower {
    /// The stem's patch conv as a linear layer over unfolded patches, then its layer norm.
    stem: Linear,
    stem_norm: LayerNorm,
    stages: Vec<Stage>,
    head_norm: LayerNorm,
    projection: Projection,
    shape: ConvNextShape,
    config: VisionConfig,
    /// What the tower's tensors are in (f32, or f16 / bf16 on a GPU).
    dtype: DType,
}

impl ConvNextTower {
    pub(super) fn load(w: &Weights, config: &ModelConfig, shape: ConvNextShape, layout: WeightLayout) -> Result<Self> {
        let c = &config.vision_config;
        let (eps, dims, p) = (c.layer_norm_eps, shape.dims, shape.stem_patch);
        let trunk = format!("{PREFIX}.trunk");
        let stem = w.get(&format!("{trunk}.stem.0.weight"), &[dims[0], 3, p, p])?;
        let mut stages = Vec::new();
        for (i, (&dim, &depth)) in dims.iter().zip(&shape.depths).enumerate() {
            let prefix = format!("{trunk}.stages.{i}");
            let downsample = match i {
                0 => None,
                _ => {
                    let inputs = dims[i - 1];
                    let conv = w.get(&format!("{prefix}.downsample.1.weight"), &[dim, inputs, 2, 2])?;
                    // (out, in, dy, dx) → (out, dy, dx, in): the order channels-last patches unfold in.
                    let conv = conv.permute((0, 2, 3, 1))?.reshape((dim, 4 * inputs))?;
                    let bias = w.get(&format!("{prefix}.downsample.1.bias"), &[dim])?;
                    Some((
                        LayerNorm::load(w, &format!("{prefix}.downsample.0"), inputs, eps)?,
                        Linear::from_parts(&conv, Some(bias), layout)?,
                    ))
                }
            };
            // Not reserved ahead from the config's count: a hostile config ends at the first missing block.
            let blocks = (0..depth)
                .map(|j| Block::load(w, &format!("{prefix}.blocks.{j}"), dim, eps, layout))
                .collect::<Result<_>>()?;
            stages.push(Stage { downsample, blocks });
        }
        let (width, output) = (dims[3], config.projection_dim);
        let projection = match shape.projection {
            ConvNextProjection::Linear => {
                Projection::Linear(Linear::load(w, &format!("{PREFIX}.head.proj"), (width, output), false, layout)?)
            }
            ConvNextProjection::Mlp => Projection::Mlp(
                Linear::load(w, &format!("{PREFIX}.head.mlp.fc1"), (width, 2 * output), true, layout)?,
                Linear::load(w, &format!("{PREFIX}.head.mlp.fc2"), (2 * output, output), false, layout)?,
            ),
        };
        Ok(Self {
            stem: Linear::from_parts(
                &stem.reshape((dims[0], 3 * p * p))?,
                Some(w.get(&format!("{trunk}.stem.0.bias"), &[dims[0]])?),
                layout,
            )?,
            stem_norm: LayerNorm::load(w, &format!("{trunk}.stem.1"), dims[0], eps)?,
            stages,
            head_norm: LayerNorm::load(w, &format!("{trunk}.head.norm"), width, eps)?,
            projection,
            shape,
            config: c.clone(),
            dtype: stem.dtype(),
        })
    }

    /// `pixels`: (batch, channels, image_size, image_size) → (batch, embedding dim), not normalised.
    pub fn forward(&self, pixels: &Tensor) -> Result<Tensor> {
        let batch = pixels.dim(0)?;
        let p = self.shape.stem_patch;
        let grid = self.config.image_size / p;
        let rows = patch_rows(pixels, &self.config, p, self.dtype)?;
        let stem = self.stem_norm.forward(&self.stem.forward(&rows)?)?;
        let mut x = stem.reshape((batch, grid, grid, self.shape.dims[0]))?;
        for stage in &self.stages {
            if let Some((norm, conv)) = &stage.downsample {
                x = conv.forward(&two_by_two_patches(&norm.forward(&x)?)?)?;
            }
            for block in &stage.blocks {
                x = block.forward(&x)?;
            }
        }
        let pooled = self.head_norm.forward(&x.mean(1)?.mean(1)?)?;
        match &self.projection {
            Projection::Linear(linear) => linear.forward(&pooled),
            Projection::Mlp(fc1, fc2) => {
                fc2.forward(&fc1.forward_then(&pooled, Epilogue::Activation(Activation::Gelu))?)
            }
        }
    }
}
