//! EVA-02's rotary positions (timm's `RotaryEmbeddingCat`): each patch's query and key are
//! turned, pair of numbers by pair, by angles that grow with the patch's row (a head's first
//! half of pairs) and column (its second half). A product of a turned query and a turned key
//! then depends on how far apart the two patches are, not only on what they show.
//!
//! On the CPU the turn is one pass over the attention's fused q, k, v rows, in place; candle's
//! ops would take a dozen passes and copies (a quarter of a block's time, estimated from its
//! sizes).

use candle_core::{CpuStorage, DType, Device, InplaceOp1, Layout, Tensor};
use rayon::prelude::*;

use crate::error::Result;

/// timm's `temperature`: pair j of a quarter of a head turns by 10000^(-j / quarter) per step.
const TEMPERATURE: f32 = 10_000.0;

/// The cosines and sines that turn each position of a sequence: the class token first (not
/// turned), then the patches row by row.
pub struct RotaryTable {
    /// (seq, head_dim / 2) each, row-major, for the CPU pass.
    cos: Vec<f32>,
    sin: Vec<f32>,
    /// The same as tensors on the tower's device, for candle's ops elsewhere.
    cos_tensor: Tensor,
    sin_tensor: Tensor,
    head_dim: usize,
}

impl RotaryTable {
    /// The table of a `grid`×`grid` patch grid whose rows and columns count as if it were
    /// `reference_grid` patches wide (timm's `ref_feat_shape`: EVA-02's positions are those of
    /// the grid it was pretrained on), for heads `head_dim` wide (a multiple of 4).
    pub fn new(grid: usize, reference_grid: usize, head_dim: usize, device: &Device) -> Result<Self> {
        let quarter = head_dim / 4;
        // As timm computes them, in f32: 1 / temperature^(j / quarter), coordinate / grid · reference.
        let bands: Vec<f32> = (0..quarter).map(|j| 1.0 / TEMPERATURE.powf(j as f32 / quarter as f32)).collect();
        let coordinate = |i: usize| i as f32 / grid as f32 * reference_grid as f32;
        let pairs = head_dim / 2;
        let (mut cos, mut sin) = (vec![1.0f32; pairs], vec![0.0f32; pairs]);
        for row in 0..grid {
            for col in 0..grid {
                let angles = bands.iter().map(|b| coordinate(row) * b).chain(bands.iter().map(|b| coordinate(col) * b));
                for angle in angles {
                    cos.push(angle.cos());
                    sin.push(angle.sin());
                }
            }
        }
        let seq = grid * grid + 1;
        Ok(Self {
            cos_tensor: Tensor::from_slice(&cos, (seq, pairs), device)?,
            sin_tensor: Tensor::from_slice(&sin, (seq, pairs), device)?,
            cos,
            sin,
            head_dim,
        })
    }
}

/// Turns the queries and keys of `qkv` (batch, seq, 3 · dim: q, k and v side by side, each
/// in heads of the table's width) by their positions' angles. On the CPU it overwrites `qkv`'s
/// own storage, so `qkv` must be a fresh tensor nobody else holds a view of (a linear layer's
/// output).
pub fn rotate_queries_keys(qkv: Tensor, table: &RotaryTable) -> Result<Tensor> {
    if qkv.device().is_cpu() && qkv.dtype() == DType::F32 && qkv.is_contiguous() {
        qkv.inplace_op1(&RotateOp { table })?;
        return Ok(qkv);
    }
    rotate_queries_keys_generic(&qkv, table)
}

/// The same with candle's own ops (any device).
pub fn rotate_queries_keys_generic(qkv: &Tensor, table: &RotaryTable) -> Result<Tensor> {
    let (batch, seq, three_dim) = qkv.dims3()?;
    let dim = three_dim / 3;
    let pairs = table.head_dim / 2;
    let heads = dim / table.head_dim;
    // (seq, 1, pairs, 1): the same angles for every head, for both numbers of a pair.
    let cos = table.cos_tensor.to_dtype(qkv.dtype())?.reshape((seq, 1, pairs, 1))?;
    let sin = table.sin_tensor.to_dtype(qkv.dtype())?.reshape((seq, 1, pairs, 1))?;
    let turn = |part: Tensor| -> Result<Tensor> {
        let x = part.contiguous()?.reshape((batch, seq, heads, pairs, 2))?;
        let (first, second) = (x.narrow(4, 0, 1)?, x.narrow(4, 1, 1)?);
        let turned_first = (first.broadcast_mul(&cos)? - second.broadcast_mul(&sin)?)?;
        let turned_second = (second.broadcast_mul(&cos)? + first.broadcast_mul(&sin)?)?;
        Ok(Tensor::cat(&[turned_first, turned_second], 4)?.reshape((batch, seq, dim))?)
    };
    let q = turn(qkv.narrow(2, 0, dim)?)?;
    let k = turn(qkv.narrow(2, dim, dim)?)?;
    Ok(Tensor::cat(&[q, k, qkv.narrow(2, 2 * dim, dim)?], 2)?)
}

struct RotateOp<'a> {
    table: &'a RotaryTable,
}

impl InplaceOp1 for RotateOp<'_> {
    fn name(&self) -> &'static str {
        "clip-rotary"
    }

    fn cpu_fwd(&self, storage: &mut CpuStorage, layout: &Layout) -> candle_core::Result<()> {
        let CpuStorage::F32(data) = storage else { candle_core::bail!("clip-rotary: expected an f32 tensor") };
        let Some((start, end)) = layout.contiguous_offsets() else {
            candle_core::bail!("clip-rotary: input must be contiguous")
        };
        let (_, seq, three_dim) = layout.shape().dims3()?;
        let pairs = self.table.head_dim / 2;
        if seq * pairs != self.table.cos.len() || three_dim % (3 * self.table.head_dim) != 0 {
            candle_core::bail!("clip-rotary: rows of {three_dim} at {seq} positions do not fit the table");
        }
        let (cos, sin) = (&self.table.cos, &self.table.sin);
        let dim = three_dim / 3;
        // A row is a few KB: tasks of many rows amortise scheduling.
        data[start..end].par_chunks_mut(three_dim).enumerate().with_min_len(32).for_each(|(row, values)| {
            let position = row % seq;
            let (cos, sin) = (&cos[position * pairs..][..pairs], &sin[position * pairs..][..pairs]);
            // The queries and the keys; the values stay as they are.
            for head in values[..2 * dim].chunks_exact_mut(2 * pairs) {
                for ((pair, &c), &s) in head.chunks_exact_mut(2).zip(cos).zip(sin) {
                    let (first, second) = (pair[0], pair[1]);
                    pair[0] = first * c - second * s;
                    pair[1] = second * c + first * s;
                }
            }
        });
        Ok(())
    }
}
