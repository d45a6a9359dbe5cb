//! Multi-head self-attention on the CPU: each (sequence, head) pair is one task that reads its
//! q, k and v in place from the fused projection, does the softmax in cache and writes its slice
//! of the output directly; candle would copy q, k and v out into contiguous per-head tensors
//! first. The two products run on AMX's tile unit where the tower's linear layers do (in their
//! split of the f32 values), else through strided `gemm`. The same attention in candle's ops runs
//! on other devices.

use candle_core::{CpuStorage, CustomOp1, DType, Layout, Shape, Tensor};
use half::bf16;
use rayon::prelude::*;

use super::amx::{self, Split};
use super::{contiguous_f32, fast_exp, lane_sum, SharedOut};
use crate::error::Result;

/// Multi-head attention over a fused projection `qkv` of shape (batch, seq, 3 * dim) laid out
/// as [q | k | v], each `heads` blocks of `dim / heads`; q must already carry the 1/sqrt(d) scale.
/// `tiles`: the split for AMX's tile unit, where the tower's linear layers run there (ignored
/// where AMX is off). Returns the per-head contexts concatenated: (batch, seq, dim).
pub fn attention(qkv: &Tensor, heads: usize, causal: bool, tiles: Option<Split>) -> Result<Tensor> {
    if qkv.device().is_cpu() && qkv.dtype() == DType::F32 {
        let tiles = tiles.filter(|_| amx::available());
        return Ok(qkv.contiguous()?.apply_op1_no_bwd(&AttentionOp { heads, causal, tiles })?);
    }
    attention_generic(qkv, heads, causal)
}

/// The same attention with candle's own ops (any device).
pub fn attention_generic(qkv: &Tensor, heads: usize, causal: bool) -> Result<Tensor> {
    let seq = qkv.dim(1)?;
    let mask = causal.then(|| causal_mask(seq, qkv.dtype(), qkv.device())).transpose()?;
    attend(qkv, heads, mask.as_ref())
}

/// The same attention with an additive `mask` of (batch, 1, seq, seq) on the scores, in
/// candle's ops (rare: CoCa's text class token).
pub fn attention_masked(qkv: &Tensor, heads: usize, mask: &Tensor) -> Result<Tensor> {
    attend(qkv, heads, Some(mask))
}

fn attend(qkv: &Tensor, heads: usize, mask: Option<&Tensor>) -> Result<Tensor> {
    use candle_core::IndexOp;
    let (batch, seq, three_dim) = qkv.dims3()?;
    let dim = three_dim / 3;
    let head_dim = dim / heads;
    let qkv = qkv.reshape((batch, seq, 3, heads, head_dim))?;
    let q = qkv.i((.., .., 0))?.transpose(1, 2)?.contiguous()?; // (b, h, s, d)
    let k_t = qkv.i((.., .., 1))?.permute((0, 2, 3, 1))?.contiguous()?; // (b, h, d, s)
    let v = qkv.i((.., .., 2))?.transpose(1, 2)?.contiguous()?;
    let mut scores = q.matmul(&k_t)?;
    if let Some(mask) = mask {
        scores = scores.broadcast_add(mask)?;
    }
    let probs = candle_nn::ops::softmax_last_dim(&scores)?;
    Ok(probs.matmul(&v)?.transpose(1, 2)?.reshape((batch, seq, dim))?)
}

/// The same attention from q, k and v already split by head: `parts` (3 × heads, batch × seq,
/// head_dim) as [`super::linear_split`] writes them. Every (head, picture) pair is then one
/// uniformly strided batch of the products, and only the heads' outputs are copied, side by
/// side, into the returned (batch, seq, heads × head_dim).
pub fn attention_from_parts(parts: &Tensor, batch: usize, causal: bool) -> Result<Tensor> {
    let (three_heads, rows, head_dim) = parts.dims3()?;
    let (heads, seq) = (three_heads / 3, rows / batch);
    let parts = parts.reshape((3, heads * batch, seq, head_dim))?;
    let (q, k, v) = (parts.get(0)?, parts.get(1)?, parts.get(2)?);
    let mut scores = q.matmul(&k.t()?)?;
    if causal {
        scores = scores.broadcast_add(&causal_mask(seq, scores.dtype(), scores.device())?)?;
    }
    let context = candle_nn::ops::softmax_last_dim(&scores)?.matmul(&v)?; // (heads × batch, seq, d)
    let per_head: Vec<Tensor> = (0..heads)
        .map(|h| context.narrow(0, h * batch, batch)?.reshape((rows, head_dim)))
        .collect::<candle_core::Result<_>>()?;
    Ok(Tensor::cat(&per_head, 1)?.reshape((batch, seq, heads * head_dim))?)
}

/// -inf above the diagonal: each position sees only itself and earlier ones.
fn causal_mask(seq: usize, dtype: DType, device: &candle_core::Device) -> Result<Tensor> {
    let mask: Vec<f32> =
        (0..seq).flat_map(|i| (0..seq).map(move |j| if j > i { f32::NEG_INFINITY } else { 0.0 })).collect();
    Ok(Tensor::from_vec(mask, (seq, seq), device)?.to_dtype(dtype)?)
}

struct AttentionOp {
    heads: usize,
    causal: bool,
    tiles: Option<Split>,
}

impl CustomOp1 for AttentionOp {
    fn name(&self) -> &'static str {
        "clip-attention"
    }

    fn cpu_fwd(&self, storage: &CpuStorage, layout: &Layout) -> candle_core::Result<(CpuStorage, Shape)> {
        let qkv = contiguous_f32(storage, layout, self.name())?;
        let (batch, seq, three_dim) = layout.shape().dims3()?;
        let dim = three_dim / 3;
        let heads = self.heads;
        if dim * 3 != three_dim || heads == 0 || dim % heads != 0 {
            candle_core::bail!("clip-attention: last dim {three_dim} is not 3 x heads {heads} x head_dim");
        }
        let head_dim = dim / heads;
        // Not zeroed: the (image, head) tasks below write every element (no read of the
        // destination), and zeroing measured ~1% of the image tower.
        let mut out: Vec<f32> = Vec::with_capacity(batch * seq * dim);
        let out_ptr = SharedOut(out.as_mut_ptr());
        let shape = (batch, seq, heads, head_dim);
        match self.tiles {
            Some(split) => self.on_tiles(qkv, shape, split, out_ptr),
            None => self.through_gemm(qkv, shape, out_ptr),
        }
        // SAFETY: every element was written above (each task its own rows x head columns).
        unsafe { out.set_len(batch * seq * dim) };
        Ok((CpuStorage::F32(out), Shape::from((batch, seq, dim))))
    }
}

impl AttentionOp {
    /// Each (sequence, head) task on the tile unit ([`TileHead`]).
    fn on_tiles(
        &self,
        qkv: &[f32],
        (batch, seq, heads, head_dim): (usize, usize, usize, usize),
        split: Split,
        out_ptr: SharedOut,
    ) {
        let dim = heads * head_dim;
        let three_dim = 3 * dim;
        (0..batch * heads).into_par_iter().for_each_init(
            // The tiles configured once per run of tasks on a thread (each run's tasks go one
            // after the other on its thread), not per task.
            amx::TileState::configure,
            |_, task| {
                let (b, h) = (task / heads, task % heads);
                let qkv = &qkv[b * seq * three_dim + h * head_dim..];
                // SAFETY: AMX is available (`attention`); the output block (rows of image b,
                // columns of head h) belongs to this task alone.
                let out = unsafe { out_ptr.get().add(b * seq * dim + h * head_dim) };
                let attend = |head: &mut TileHead| unsafe {
                    head.attend(qkv, (seq, head_dim, split), (three_dim, dim), self.causal, out, dim)
                };
                TILE_HEAD.with(|head| match head.try_borrow_mut() {
                    Ok(mut head) => attend(&mut head),
                    Err(_) => attend(&mut TileHead::default()),
                });
            },
        );
    }

    /// Each (sequence, head) task as two strided `gemm` products around the softmax.
    fn through_gemm(
        &self,
        qkv: &[f32],
        (batch, seq, heads, head_dim): (usize, usize, usize, usize),
        out_ptr: SharedOut,
    ) {
        let dim = heads * head_dim;
        let three_dim = 3 * dim;
        let row = three_dim as isize;
        (0..batch * heads).into_par_iter().for_each_init(
            || vec![0f32; seq * seq],
            |scores, task| {
                let (b, h) = (task / heads, task % heads);
                let base = b * seq * three_dim + h * head_dim;
                let (q, k, v) = (qkv[base..].as_ptr(), qkv[base + dim..].as_ptr(), qkv[base + 2 * dim..].as_ptr());
                // SAFETY: all pointers stay inside `qkv` (rows of `three_dim`, this head's
                // `head_dim` columns) or `scores`; the output block (rows of image b, columns of
                // head h) belongs to this task alone.
                unsafe {
                    // scores = q k^T: (seq x head_dim) times (head_dim x seq), k read transposed in place.
                    strided_product((seq, seq, head_dim), scores.as_mut_ptr(), seq as isize, (q, 1, row), (k, row, 1));
                    softmax_rows(scores, seq, self.causal);
                    let dst = out_ptr.get().add(b * seq * dim + h * head_dim);
                    let probabilities = (scores.as_ptr(), 1, seq as isize);
                    strided_product((seq, head_dim, seq), dst, dim as isize, probabilities, (v, 1, row));
                }
            },
        );
    }
}

/// A matrix as `gemm` reads it in place: its first value, then the steps (in values) from one
/// column to the next and from one row to the next.
type Strided = (*const f32, isize, isize);

/// `dst` (m × n, rows `dst_row` apart) = `lhs` (m × k) times `rhs` (k × n), on this thread.
///
/// # Safety
/// Each pointer must cover its matrix with its strides.
unsafe fn strided_product((m, n, k): (usize, usize, usize), dst: *mut f32, dst_row: isize, lhs: Strided, rhs: Strided) {
    let ((lhs, lhs_col, lhs_row), (rhs, rhs_col, rhs_row)) = (lhs, rhs);
    gemm::gemm(
        m,
        n,
        k,
        dst,
        1,
        dst_row,
        false,
        lhs,
        lhs_col,
        lhs_row,
        rhs,
        rhs_col,
        rhs_row,
        0.0,
        1.0,
        false,
        false,
        false,
        gemm::Parallelism::None,
    );
}

/// One head's attention on the tile unit, with the buffers a thread reuses: q as activation
/// tiles, k as the weight of `q k^T`; the scores in f32 for the softmax; the probabilities as
/// activation tiles, v as the weight of `p v`; the context in f32, then copied into the head's
/// columns of the output. Each product runs over the split's parts as the linear layers do (bf16
/// once, or three bf16 products to near-f32 accuracy), the scores and the context summed in
/// f32. Every buffer starts on a cache line ([`amx::on_cache_lines`]), and each step writes all
/// of its part before the next reads it.
#[derive(Default)]
struct TileHead {
    queries: Vec<bf16>,
    keys: Vec<bf16>,
    scores: Vec<f32>,
    probabilities: Vec<bf16>,
    values: Vec<bf16>,
    context: Vec<f32>,
    /// The products' seed, one per column (only ever zeros).
    zeros: Vec<f32>,
}

thread_local! {
    /// Each thread's head buffers, kept across tasks, layers and calls: fresh buffers per run
    /// of tasks cost page faults and zeroing (SigLIP so400m/384's scores are 2 MB a head).
    static TILE_HEAD: std::cell::RefCell<TileHead> = std::cell::RefCell::new(TileHead::default());
}

impl TileHead {
    /// Attention over `seq` tokens of a head `d` wide: `qkv` starts at the head's query in the
    /// first row (rows of `row` values, keys `dim` and values `2 * dim` further on); `out` at its
    /// first context value, rows `out_stride` apart.
    ///
    /// # Safety
    /// AMX must be available; `out` must hold `seq` rows of `d` values for this call alone.
    #[allow(clippy::too_many_arguments)] // the head's shape and where it lies, each a plain number
    unsafe fn attend(
        &mut self,
        qkv: &[f32],
        (seq, d, split): (usize, usize, Split),
        (row, dim): (usize, usize),
        causal: bool,
        out: *mut f32,
        out_stride: usize,
    ) {
        // Scores: (seq rounded up to 32) rows and columns; context: as many rows of the head's
        // width rounded up to 32.
        let (width, context_width) = (seq.next_multiple_of(32), d.next_multiple_of(32));
        let zeros = amx::on_cache_lines(&mut self.zeros, width.max(context_width));
        let queries = amx::on_cache_lines(&mut self.queries, amx::activation_len(seq, d, split));
        let keys = amx::on_cache_lines(&mut self.keys, amx::packed_len(d, seq, split));
        let scores = amx::on_cache_lines(&mut self.scores, width * width);
        let probabilities = amx::on_cache_lines(&mut self.probabilities, amx::activation_len(seq, width, split));
        let values = amx::on_cache_lines(&mut self.values, amx::packed_len(seq, d, split));
        let context = amx::on_cache_lines(&mut self.context, width * context_width);
        amx::activation_tiles(qkv, seq, (d, row), split, queries);
        // k^T: key j's value i at (i, j).
        amx::weight_tiles(&qkv[dim..], (d, seq), (1, row), split, keys);
        amx::multiply_blocks(queries, keys, (d, seq), split, zeros, scores, width);
        amx::softmax_tiles(scores, seq, (width, seq), causal, split, probabilities);
        // v: key j's value i at (j, i).
        amx::weight_tiles(&qkv[2 * dim..], (seq, d), (row, 1), split, values);
        amx::multiply_blocks(probabilities, values, (seq, d), split, zeros, context, context_width);
        for (r, values) in context.chunks_exact(context_width).take(seq).enumerate() {
            std::ptr::copy_nonoverlapping(values.as_ptr(), out.add(r * out_stride), d);
        }
    }
}

vectorised_per_isa!(
    /// In-place row softmax of a (seq x seq) score matrix; with `causal`, row i sees columns 0..=i.
    fn softmax_rows(scores: &mut [f32], seq: usize, causal: bool) => softmax_rows_in
);

/// The max, the exponentials and the sum as separate passes, each in lanes: written as one loop
/// with a running max and sum, none of it vectorised (a chain of dependent operations).
#[inline(always)]
fn softmax_rows_in(scores: &mut [f32], seq: usize, causal: bool) {
    for (i, row) in scores.chunks_exact_mut(seq).enumerate() {
        let visible = if causal { i + 1 } else { seq };
        let (live, masked) = row.split_at_mut(visible);
        let max = lane_max(live);
        live.iter_mut().for_each(|x| *x = fast_exp(*x - max));
        let inv = 1.0 / lane_sum(live, |x| x);
        live.iter_mut().for_each(|x| *x *= inv);
        masked.fill(0.0);
    }
}

/// The largest of `values` (at least one), in 16 independent lanes as `lane_sum`.
#[inline(always)]
fn lane_max(values: &[f32]) -> f32 {
    let mut lanes = [f32::NEG_INFINITY; 16];
    let mut chunks = values.chunks_exact(16);
    for chunk in &mut chunks {
        for (lane, &v) in lanes.iter_mut().zip(chunk) {
            *lane = lane.max(v);
        }
    }
    chunks.remainder().iter().chain(&lanes).copied().fold(f32::NEG_INFINITY, f32::max)
}
