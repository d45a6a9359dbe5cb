//! Moving channels-last pictures (batch, height, width, channels) around for the ResNet tower's
//! convs: each pixel's 3×3 neighbourhood as one row (a 3×3 conv is then a linear layer), and
//! average pooling; and the ConvNeXt tower's depthwise convs (each channel its own filter).
//!
//! candle can express both as views and copies, but a copy of a 6-dimensional strided view goes
//! element by element: that took half of RN50's time at batch 8, four times its convs. On the
//! CPU each is one pass here, a pixel's channels copied (or summed) as one run.

use std::mem::MaybeUninit;

use candle_core::{CpuStorage, CustomOp1, DType, Layout, Shape, Tensor};
use rayon::prelude::*;

use super::contiguous_f32;
use crate::error::Result;

/// Each output pixel's 3×3 neighbourhood (zero outside the picture) as one row, in (dy, dx,
/// channel) order: (batch, height, width, channels) → (batch, ⌈height / stride⌉, ⌈width /
/// stride⌉, 9 · channels), what a 3×3 conv padded by 1 with that stride reads.
pub fn neighbourhoods(x: &Tensor, stride: usize) -> Result<Tensor> {
    if x.device().is_cpu() && x.dtype() == DType::F32 {
        return Ok(x.contiguous()?.apply_op1_no_bwd(&NeighbourhoodsOp { stride })?);
    }
    neighbourhoods_generic(x, stride)
}

/// The same with candle's own ops (any device).
pub fn neighbourhoods_generic(x: &Tensor, stride: usize) -> Result<Tensor> {
    let (batch, height, width, channels) = x.dims4()?;
    let (out_h, out_w) = (height.div_ceil(stride), width.div_ceil(stride));
    // One pixel of zeros on each side, and on the far sides as many more as the last strided
    // window's view (stride · out rows from its offset) reaches past them.
    let x = x.pad_with_zeros(1, 1, 1 + (out_h * stride).saturating_sub(height))?.pad_with_zeros(
        2,
        1,
        1 + (out_w * stride).saturating_sub(width),
    )?;
    let mut shifted = Vec::with_capacity(9);
    for dy in 0..3 {
        for dx in 0..3 {
            let view = x.narrow(1, dy, out_h * stride)?.narrow(2, dx, out_w * stride)?;
            shifted.push(match stride {
                1 => view,
                _ => view
                    .contiguous()?
                    .reshape((batch, out_h, stride, out_w, stride, channels))?
                    .narrow(2, 0, 1)?
                    .narrow(4, 0, 1)?
                    .reshape((batch, out_h, out_w, channels))?,
            });
        }
    }
    Ok(Tensor::cat(&shifted, 3)?)
}

struct NeighbourhoodsOp {
    stride: usize,
}

impl CustomOp1 for NeighbourhoodsOp {
    fn name(&self) -> &'static str {
        "clip-neighbourhoods"
    }

    fn cpu_fwd(&self, storage: &CpuStorage, layout: &Layout) -> candle_core::Result<(CpuStorage, Shape)> {
        let src = contiguous_f32(storage, layout, self.name())?;
        let (batch, height, width, channels) = layout.shape().dims4()?;
        let stride = self.stride;
        let (out_h, out_w) = (height.div_ceil(stride), width.div_ceil(stride));
        let row = 9 * channels;
        let len = batch * out_h * out_w * row;
        let shape = Shape::from((batch, out_h, out_w, row));
        if len == 0 {
            return Ok((CpuStorage::F32(Vec::new()), shape));
        }
        let mut out: Vec<f32> = Vec::with_capacity(len);
        let spare = &mut out.spare_capacity_mut()[..len];
        // One task per output row of pixels.
        spare.par_chunks_mut(out_w * row).enumerate().for_each(|(task, dst)| {
            let (b, oy) = (task / out_h, task % out_h);
            let picture = &src[b * height * width * channels..][..height * width * channels];
            for (ox, pixel) in dst.chunks_exact_mut(row).enumerate() {
                for (k, part) in pixel.chunks_exact_mut(channels).enumerate() {
                    // The padded picture's (oy · stride + dy, ox · stride + dx) is the
                    // picture's one up and one left of it.
                    let (y, x) = ((oy * stride + k / 3).checked_sub(1), (ox * stride + k % 3).checked_sub(1));
                    match (y, x) {
                        (Some(y), Some(x)) if y < height && x < width => {
                            let from = &picture[(y * width + x) * channels..][..channels];
                            for (d, &s) in part.iter_mut().zip(from) {
                                d.write(s);
                            }
                        }
                        _ => part.fill(MaybeUninit::new(0.0)),
                    }
                }
            }
        });
        // SAFETY: every element of the first `len` was written above.
        unsafe { out.set_len(len) };
        Ok((CpuStorage::F32(out), shape))
    }
}

/// `torch.nn.AvgPool2d(size)` on channels-last pictures: the mean of each `size`×`size` square,
/// the rows and columns past the last whole square left out.
pub fn average_pool(x: &Tensor, size: usize) -> Result<Tensor> {
    if size == 1 {
        return Ok(x.clone());
    }
    if x.device().is_cpu() && x.dtype() == DType::F32 {
        return Ok(x.contiguous()?.apply_op1_no_bwd(&AveragePoolOp { size })?);
    }
    average_pool_generic(x, size)
}

/// The same with candle's own ops (any device).
pub fn average_pool_generic(x: &Tensor, size: usize) -> Result<Tensor> {
    let (batch, height, width, channels) = x.dims4()?;
    let (out_h, out_w) = (height / size, width / size);
    let x = x.narrow(1, 0, out_h * size)?.narrow(2, 0, out_w * size)?.contiguous()?;
    let summed = x.reshape((batch, out_h, size, out_w, size, channels))?.sum(4)?.sum(2)?;
    Ok((summed / (size * size) as f64)?)
}

struct AveragePoolOp {
    size: usize,
}

impl CustomOp1 for AveragePoolOp {
    fn name(&self) -> &'static str {
        "clip-average-pool"
    }

    fn cpu_fwd(&self, storage: &CpuStorage, layout: &Layout) -> candle_core::Result<(CpuStorage, Shape)> {
        let src = contiguous_f32(storage, layout, self.name())?;
        let (batch, height, width, channels) = layout.shape().dims4()?;
        let size = self.size;
        let (out_h, out_w) = (height / size, width / size);
        let scale = 1.0 / (size * size) as f32;
        let mut out = vec![0f32; batch * out_h * out_w * channels];
        let shape = Shape::from((batch, out_h, out_w, channels));
        if out.is_empty() {
            return Ok((CpuStorage::F32(out), shape));
        }
        out.par_chunks_mut(out_w * channels).enumerate().for_each(|(task, dst)| {
            let (b, oy) = (task / out_h, task % out_h);
            for dy in 0..size {
                let src_row = &src[((b * height + oy * size + dy) * width) * channels..][..width * channels];
                for (ox, pixel) in dst.chunks_exact_mut(channels).enumerate() {
                    for dx in 0..size {
                        let from = &src_row[(ox * size + dx) * channels..][..channels];
                        pixel.iter_mut().zip(from).for_each(|(d, &s)| *d += s);
                    }
                }
            }
            dst.iter_mut().for_each(|d| *d *= scale);
        });
        Ok((CpuStorage::F32(out), shape))
    }
}

/// A depthwise conv (each channel convolved with its own `k`×`k` filter, padded by `k / 2`, at
/// stride one) on channels-last pictures: `x` (batch, height, width, channels), `taps` (k · k,
/// channels) in (dy, dx) order, `bias` (channels) → `x`'s shape. ConvNeXt's 7×7 `conv_dw`.
pub fn depthwise_conv(x: &Tensor, taps: &Tensor, bias: &Tensor, k: usize) -> Result<Tensor> {
    if x.device().is_cpu() && x.dtype() == DType::F32 {
        let (taps, bias) = (taps.contiguous()?.to_vec2::<f32>()?, bias.to_vec1::<f32>()?);
        return Ok(x.contiguous()?.apply_op1_no_bwd(&DepthwiseConvOp { taps, bias, k })?);
    }
    depthwise_conv_generic(x, taps, bias, k)
}

/// The same with candle's own grouped conv (any device).
pub fn depthwise_conv_generic(x: &Tensor, taps: &Tensor, bias: &Tensor, k: usize) -> Result<Tensor> {
    let channels = x.dim(3)?;
    let weight = taps.t()?.reshape((channels, 1, k, k))?;
    let nchw = x.permute((0, 3, 1, 2))?.contiguous()?;
    let y = nchw.conv2d(&weight, k / 2, 1, 1, channels)?.broadcast_add(&bias.reshape((1, channels, 1, 1))?)?;
    Ok(y.permute((0, 2, 3, 1))?.contiguous()?)
}

struct DepthwiseConvOp {
    /// (k · k) rows of `channels`.
    taps: Vec<Vec<f32>>,
    bias: Vec<f32>,
    k: usize,
}

impl CustomOp1 for DepthwiseConvOp {
    fn name(&self) -> &'static str {
        "clip-depthwise-conv"
    }

    fn cpu_fwd(&self, storage: &CpuStorage, layout: &Layout) -> candle_core::Result<(CpuStorage, Shape)> {
        let src = contiguous_f32(storage, layout, self.name())?;
        let (batch, height, width, channels) = layout.shape().dims4()?;
        let (k, pad) = (self.k, self.k / 2);
        if self.bias.len() != channels || self.taps.len() != k * k || self.taps.iter().any(|t| t.len() != channels) {
            candle_core::bail!(
                "clip-depthwise-conv: filters of {} channels for pictures of {channels}",
                self.bias.len()
            );
        }
        let mut out = vec![0f32; batch * height * width * channels];
        let shape = Shape::from((batch, height, width, channels));
        if out.is_empty() {
            return Ok((CpuStorage::F32(out), shape));
        }
        // One task per output row of pixels: each pixel starts at the bias and adds each tap's
        // channels times the input pixel under it, a run of channels at a time.
        out.par_chunks_mut(width * channels).enumerate().for_each(|(task, dst)| {
            let (b, y) = (task / height, task % height);
            let picture = &src[b * height * width * channels..][..height * width * channels];
            for (x, pixel) in dst.chunks_exact_mut(channels).enumerate() {
                pixel.copy_from_slice(&self.bias);
                for dy in 0..k {
                    let Some(sy) = (y + dy).checked_sub(pad).filter(|&sy| sy < height) else { continue };
                    for dx in 0..k {
                        let Some(sx) = (x + dx).checked_sub(pad).filter(|&sx| sx < width) else { continue };
                        let from = &picture[(sy * width + sx) * channels..][..channels];
                        multiply_add(pixel, from, &self.taps[dy * k + dx]);
                    }
                }
            }
        });
        Ok((CpuStorage::F32(out), shape))
    }
}

vectorised_per_isa!(fn multiply_add(sums: &mut [f32], values: &[f32], weights: &[f32]) => multiply_add_in);

#[inline(always)]
fn multiply_add_in(sums: &mut [f32], values: &[f32], weights: &[f32]) {
    for ((s, &v), &w) in sums.iter_mut().zip(values).zip(weights) {
        *s += v * w;
    }
}
