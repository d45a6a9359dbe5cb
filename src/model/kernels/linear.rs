//! Linear layers `x W^T + b` on CPU, with the bias folded into the product (no separate
//! broadcast-add pass over the output) and the residual or the activation applied to each tile
//! of the output while it is in L1 ([`Epilogue`]), in one of these weight layouts chosen per
//! tower:
//!
//! - `Packed`, in f32 for both towers where there is no AMX: `W^T` is stored once at load as
//!   panels of output columns, each (in_dim × width) contiguous, as wide as the register-tiled
//!   kernel that runs over them (6 rows × 64 columns with AVX-512, 6 × 16 with AVX2 and NEON; the rows
//!   come interleaved). A short text query streams every panel exactly once
//!   (a general gemm packs its right-hand side on every call, which for a short query costs as
//!   much as the product: 16 → 8.5–9 ms per query here). More rows than one tile go through each
//!   panel in parts of the shared dimension that stay in L1, and in blocks of rows that stay in
//!   L2, which beat `gemm` at every batch of pictures (no-AMX Xeon, ViT-B/32: 19.2 / 29.2 / 31.7
//!   → 31.1 / 34.2 / 36.1 images/s at batch 1 / 8 / 32, benches/README.md); while a block of rows
//!   multiplies one part, its tiles ask for the next ([`Prefetch`]).
//! - `Transposed`: `W^T` (in_dim, out_dim) for candle's matmul, on other devices.
//!
//! - `AmxTiles`, bf16 tiles for the AMX tile multiply (`amx.rs`) on CPUs that have it: for
//!   either tower under `--dtype bf16` (`Split::Once`), and for the vision tower in f32
//!   (`Split::ThreeWay`: high and low bf16 parts, three tile products per layer, near-f32
//!   accuracy, 30-50% faster than `gemm` here). The text tower keeps `Packed` in f32: bound by
//!   reading weights, the three-way split would read 1.5× the bytes.
//!
//! - `Bf16Pairs`, for either tower under `--dtype bf16` on CPUs with AVX512_BF16 but no AMX
//!   (`bf16_pairs.rs`): the `Packed` panels in bf16, multiplied with `vdpbf16ps`.
//!
//! CUDA runs `Transposed` weights through cuBLASLt with the bias and residual in its epilogue
//! (`cuda.rs`); other devices (and the `Transposed` layout on the CPU) use candle's matmul.

use std::mem::MaybeUninit;
use std::ops::Range;

use candle_core::{CpuStorage, CustomOp3, DType, Device, Layout, Shape, Tensor};
use rayon::prelude::*;

use super::runs::Runs;
use super::{amx, bf16_pairs, contiguous_f32, SharedOut};
use crate::error::Result;
use crate::model::config::Activation;

/// Output columns per packed panel for the AVX-512 kernels (f32 and bf16) and the portable one:
/// four AVX-512 registers per row of the register tile.
pub(super) const PANEL: usize = 64;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WeightLayout {
    /// Panels for the tile kernel: best for few rows.
    Packed,
    /// `W^T` for gemm: best for many rows.
    Transposed,
    /// bf16 tiles for AMX, f32 values split as given (the caller checks `amx::available()`).
    AmxTiles(amx::Split),
    /// bf16 panels for `vdpbf16ps` (the caller checks `bf16_pairs::available()`).
    Bf16Pairs,
}

/// How `--dtype bf16` lays out weights on this CPU: AMX tiles, else AVX512_BF16 panels; `None`
/// where neither runs.
pub fn bf16_layout() -> Option<WeightLayout> {
    if amx::available() {
        Some(WeightLayout::AmxTiles(amx::Split::Once))
    } else if bf16_pairs::available() {
        Some(WeightLayout::Bf16Pairs)
    } else {
        None
    }
}

/// The weight of a linear layer, laid out once at load.
pub struct LinearWeight {
    /// Packed: (panels, in_dim, PANEL), zero-padded past `out_dim`. Transposed: (in_dim, out_dim).
    /// AmxTiles: flat bf16, see `amx.rs`. Bf16Pairs: (panels, panel_len), see `bf16_pairs.rs`.
    data: Tensor,
    out_dim: usize,
    layout: WeightLayout,
}

impl LinearWeight {
    /// Takes `weight` in Hugging Face layout (out_dim, in_dim). Off the CPU the layout is
    /// always `Transposed` (candle's matmul).
    pub fn new(weight: &Tensor, layout: WeightLayout) -> Result<Self> {
        let (out_dim, in_dim) = weight.dims2()?;
        if layout == WeightLayout::Transposed || !weight.device().is_cpu() {
            let data = weight.t()?.contiguous()?;
            return Ok(Self { data, out_dim, layout: WeightLayout::Transposed });
        }
        let w: Vec<f32> = weight.to_dtype(DType::F32)?.flatten_all()?.to_vec1()?;
        let data = match layout {
            WeightLayout::AmxTiles(split) => aligned_tensor(amx::packed_len(in_dim, out_dim, split), |packed| {
                amx::pack_weight(&w, (in_dim, out_dim), split, packed)
            })?,
            WeightLayout::Bf16Pairs => {
                let (panels, panel_len) = (out_dim.div_ceil(PANEL), bf16_pairs::panel_len(in_dim));
                aligned_tensor(panels * panel_len, |packed| bf16_pairs::pack_weight(&w, (in_dim, out_dim), packed))?
                    .reshape((panels, panel_len))?
            }
            _ => {
                let width = tile_kernel().panel;
                let (panels, panel_len) = (out_dim.div_ceil(width), in_dim * width);
                let packed = aligned_tensor(panels * panel_len, |packed: &mut [f32]| {
                    packed.par_chunks_mut(panel_len).enumerate().for_each(|(p, panel)| {
                        for col in 0..width.min(out_dim - p * width) {
                            for (k, &v) in w[(p * width + col) * in_dim..][..in_dim].iter().enumerate() {
                                panel[k * width + col] = v;
                            }
                        }
                    })
                })?;
                packed.reshape((panels, in_dim, width))?
            }
        };
        Ok(Self { data, out_dim, layout })
    }

    pub fn out_dim(&self) -> usize {
        self.out_dim
    }
}

/// A flat CPU tensor of `len` zeros filled in by `fill`, starting on a cache line (the buffer is
/// over-allocated by one line): the kernels' 64-byte loads then never straddle two lines.
fn aligned_tensor<T: candle_core::WithDType + Default>(len: usize, fill: impl FnOnce(&mut [T])) -> Result<Tensor> {
    // Zeroed on all cores: the first touch of fresh memory is a page fault, and zeroing these
    // buffers (up to 14 MB a layer) on one thread was a third of loading ViT-B/32.
    let total = len + 64 / std::mem::size_of::<T>();
    let mut buf = Vec::with_capacity(total);
    buf.spare_capacity_mut().par_chunks_mut(1 << 16).for_each(|chunk| {
        chunk.fill(std::mem::MaybeUninit::new(T::default()));
    });
    // SAFETY: every element of the first `total` was initialised just above.
    unsafe { buf.set_len(total) };
    let start = buf.as_ptr().align_offset(64);
    fill(&mut buf[start..start + len]);
    Ok(Tensor::from_vec(buf, total, &Device::Cpu)?.narrow(0, start, len)?)
}

/// What a linear layer does to its output `x W^T + b` before handing it back. On the CPU it is
/// done to each tile of the output while the tile is still in L1, rather than in a pass of its
/// own over memory; on CUDA the residual goes into cuBLASLt's epilogue.
#[derive(Clone, Copy)]
pub enum Epilogue<'a> {
    Nothing,
    /// Adds a (rows, out_dim) tensor: the residual stream.
    Residual(&'a Tensor),
    /// Applies the activation (the MLP's first layer).
    Activation(Activation),
}

/// `x W^T + b` for `x` of shape (rows, in_dim), then `epilogue`.
pub fn linear(x: &Tensor, weight: &LinearWeight, bias: &Tensor, epilogue: Epilogue) -> Result<Tensor> {
    #[cfg(feature = "cuda")]
    if x.device().is_cuda() {
        let residual = match epilogue {
            Epilogue::Residual(residual) => Some(residual),
            _ => None,
        };
        if let Some(y) = super::cuda::linear(x, &weight.data, bias, residual)? {
            return match epilogue {
                Epilogue::Activation(activation) => super::activate(y, activation),
                _ => Ok(y),
            };
        }
    }
    if x.device().is_cpu() && x.dtype() == DType::F32 && weight.layout != WeightLayout::Transposed {
        let op = LinearOp { out_dim: weight.out_dim, layout: weight.layout, epilogue };
        return Ok(x.contiguous()?.apply_op3_no_bwd(&weight.data, bias, &op)?);
    }
    let y = x.matmul(&weight.data)?.broadcast_add(bias)?;
    match epilogue {
        Epilogue::Nothing => Ok(y),
        Epilogue::Residual(residual) => Ok((y + residual)?),
        Epilogue::Activation(activation) => super::activate(y, activation),
    }
}

/// `x W^T + b` for `x` (rows, in_dim) with the output's `parts` column blocks each laid out whole,
/// (parts, rows, out_dim / parts), where one product can write them so (a GPU); `None` elsewhere.
pub fn linear_split(x: &Tensor, weight: &LinearWeight, bias: &Tensor, parts: usize) -> Result<Option<Tensor>> {
    #[cfg(feature = "cuda")]
    if x.device().is_cuda() {
        return Ok(super::cuda::linear_split(x, &weight.data, bias, parts)?);
    }
    let _ = (x, weight, bias, parts);
    Ok(None)
}

struct LinearOp<'a> {
    out_dim: usize,
    layout: WeightLayout,
    epilogue: Epilogue<'a>,
}

impl LinearOp<'_> {
    fn run(
        &self,
        x: (&CpuStorage, &Layout),
        w: (&CpuStorage, &Layout),
        bias: &[f32],
    ) -> candle_core::Result<(CpuStorage, Shape)> {
        let name = "clip-linear";
        let (rows, in_dim) = x.1.shape().dims2()?;
        let out_dim = self.out_dim;
        let fits = match (self.layout, w.1.dims()) {
            (WeightLayout::Packed, &[panels, w_in, width]) => {
                width == tile_kernel().panel && w_in == in_dim && panels == out_dim.div_ceil(width)
            }
            (WeightLayout::AmxTiles(split), &[len]) => len == amx::packed_len(in_dim, out_dim, split),
            (WeightLayout::Bf16Pairs, &[panels, len]) => {
                panels == out_dim.div_ceil(PANEL) && len == bf16_pairs::panel_len(in_dim)
            }
            _ => false,
        };
        if !fits || bias.len() != out_dim {
            candle_core::bail!("{name}: input ({rows}, {in_dim}) does not fit weight {:?}", w.1.dims());
        }
        let x = contiguous_f32(x.0, x.1, name)?;
        // The residual's storage stays locked for reading while the product runs.
        let residual = match self.epilogue {
            Epilogue::Residual(residual) => Some(residual.storage_and_layout()),
            _ => None,
        };
        let epilogue = match (&residual, self.epilogue) {
            (Some((storage, layout)), _) => {
                let candle_core::Storage::Cpu(storage) = &**storage else {
                    candle_core::bail!("{name}: the residual must be on the CPU")
                };
                if layout.dims() != [rows, out_dim] {
                    candle_core::bail!("{name}: residual {:?} for an output ({rows}, {out_dim})", layout.dims());
                }
                TileEpilogue::Residual(contiguous_f32(storage, layout, name)?, out_dim)
            }
            (None, Epilogue::Activation(activation)) => TileEpilogue::Activation(activation),
            (None, _) => TileEpilogue::Nothing,
        };
        let out = match self.layout {
            WeightLayout::Packed => {
                packed_product(x, contiguous_f32(w.0, w.1, name)?, bias, rows, (in_dim, out_dim), epilogue)
            }
            WeightLayout::Transposed => unreachable!("`linear` multiplies the transposed layout with candle"),
            WeightLayout::AmxTiles(split) => {
                amx::product(x, bf16_weights(w, name)?, bias, rows, (in_dim, out_dim), split, epilogue)
            }
            WeightLayout::Bf16Pairs => {
                bf16_pairs::product(x, bf16_weights(w, name)?, bias, rows, (in_dim, out_dim), epilogue)
            }
        };
        Ok((CpuStorage::F32(out), Shape::from((rows, out_dim))))
    }
}

/// The contiguous bf16 values of a weight tensor.
fn bf16_weights<'a>(w: (&'a CpuStorage, &Layout), name: &str) -> candle_core::Result<&'a [half::bf16]> {
    let CpuStorage::BF16(data) = w.0 else { candle_core::bail!("{name}: expected bf16 weights") };
    let Some((start, end)) = w.1.contiguous_offsets() else { candle_core::bail!("{name}: weights must be contiguous") };
    Ok(&data[start..end])
}

impl CustomOp3 for LinearOp<'_> {
    fn name(&self) -> &'static str {
        "clip-linear"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
        s3: &CpuStorage,
        l3: &Layout,
    ) -> candle_core::Result<(CpuStorage, Shape)> {
        self.run((s1, l1), (s2, l2), contiguous_f32(s3, l3, "clip-linear")?)
    }
}

/// The product on packed panels (see [`over_panels`] for the order of the work).
fn packed_product(
    x: &[f32],
    w: &[f32],
    bias: &[f32],
    rows: usize,
    (in_dim, out_dim): (usize, usize),
    epilogue: TileEpilogue,
) -> Vec<f32> {
    let tile = tile_kernel();
    // More rows than one tile: the panel is read once per tile of rows, so it goes in parts.
    let depth = part_depth(rows, tile.chunk_depth, tile.block_chunk_depth);
    let chunks = if rows > tile.max_rows { in_dim.div_ceil(depth) } else { 1 };
    let chunk_depth = in_dim.div_ceil(chunks);
    // Each tile's rows interleaved, so that a step down the shared dimension reads its inputs
    // from one cache line at fixed offsets, rather than one line per row at computed addresses.
    // `over_panels` starts every block at a multiple of `max_rows`, i.e. at a tile's start.
    let x = interleave_rows(x, in_dim, tile.max_rows);
    over_panels(bias, rows, out_dim, tile.panel, tile.max_rows, chunks, epilogue, |block| {
        let first = block.chunk * chunk_depth;
        let depth = chunk_depth.min(in_dim - first);
        let part = (block.panel * in_dim + first) * tile.panel;
        // SAFETY: every pointer stays inside x (interleaved, whole tiles × in_dim) and w (panels
        // × in_dim × panel width); `block`'s are valid (see `PanelBlock`).
        unsafe {
            (tile.run)(Tile {
                rows: block.rows,
                depth,
                x: x.as_ptr().add(block.row * in_dim + first * tile.max_rows),
                w: w.as_ptr().add(part),
                prefetch: Prefetch::for_tile(w, part..part + depth * tile.panel, depth, block.nth_of),
                add_to_out: block.chunk > 0,
                bias: block.bias,
                out: block.out,
                out_stride: out_dim,
                cols: block.cols,
            })
        }
    })
}

/// Which weights a register tile asks for ahead of time, into L2, while it multiplies.
#[derive(Clone, Copy, Debug)]
#[cfg_attr(not(target_arch = "x86_64"), allow(dead_code))] // the NEON kernel does not ask ahead
pub(super) enum Prefetch {
    /// Its own part of the panel, a fixed distance ahead: with few rows, each part is read from
    /// memory by one tile or two, and the hardware prefetcher alone left them waiting.
    Ahead,
    /// `lines` cache lines from `from`, one every two steps (then none): the tile's share of the
    /// part of the weights that its block of rows multiplies next (the next part of the panel, or
    /// the next panel). The part it multiplies now is in L2 already, brought there by the tiles
    /// before it, so asking for it again only took load slots, while the block's first tile
    /// waited on memory for each part. In a C copy of the f32 loop on fc1's shapes (ViT-B/32,
    /// blocks of 96 rows, one Xeon core): 152-160 GFLOP/s with `Ahead`, 161-179 with this; the
    /// image tower without AMX there went from 25-27 / 32-34 / 32-33 to 30-32 / 35-38 / 35-38
    /// images/s at batch 1 / 8 / 32.
    Next { from: *const i8, lines: usize },
}

impl Prefetch {
    /// For the tile `nth_of.0` of `nth_of.1` in its block of rows, multiplying the part
    /// `w[part]` of the weights, `steps` steps deep; the next part starts where this one ends and
    /// is as long, or shorter (the last). Split among the block's tiles, the next part is asked
    /// for one line every two steps; with too few tiles for that, each streams its own part
    /// `Ahead`.
    pub(super) fn for_tile<T>(w: &[T], part: Range<usize>, steps: usize, (nth, of): (usize, usize)) -> Self {
        let line = 64 / std::mem::size_of::<T>();
        // After the last part, the next block of rows starts again at the first.
        let next = if part.end >= w.len() { 0 } else { part.end };
        let end = next + part.len().min(w.len() - next);
        let share = (end - next).div_ceil(line).div_ceil(of);
        if share > steps / 2 {
            return Prefetch::Ahead;
        }
        let from = (next + nth * share * line).min(end);
        Prefetch::Next { from: w[from..].as_ptr().cast(), lines: share.min((end - from).div_ceil(line)) }
    }
}

/// Runs a register tile's `steps` steps down the shared dimension (`step`), asking for weights
/// into L2 as `prefetch` says (`ahead(k)` asks for the `Ahead` ones before step k).
///
/// # Safety
/// `prefetch`'s lines must lie inside one allocation.
#[cfg(target_arch = "x86_64")]
#[inline(always)]
pub(super) unsafe fn steps_with_prefetch(
    steps: usize,
    prefetch: Prefetch,
    mut ahead: impl FnMut(usize),
    mut step: impl FnMut(),
) {
    use std::arch::x86_64::{_mm_prefetch, _MM_HINT_T1};
    match prefetch {
        Prefetch::Ahead => {
            for k in 0..steps {
                ahead(k);
                step();
            }
        }
        Prefetch::Next { from, lines } => {
            let asking = lines.min(steps / 2);
            for line in 0..asking {
                _mm_prefetch::<_MM_HINT_T1>(from.add(64 * line));
                step();
                step();
            }
            for _ in 2 * asking..steps {
                step();
            }
        }
    }
}

/// `x` (rows × in_dim) in tiles of `tile_rows` rows, each tile's values laid out step by step
/// down the shared dimension: `[tile][k][row in tile]`, the last tile padded with zeros. Tile t
/// starts at `t * tile_rows * in_dim`, where row `t * tile_rows` starts in `x`.
fn interleave_rows(x: &[f32], in_dim: usize, tile_rows: usize) -> Vec<f32> {
    let tile_len = in_dim * tile_rows;
    let len = x.len().div_ceil(tile_len) * tile_len;
    // Not zeroed first: every value is written below, the padding rows too (zeroing the whole
    // buffer was 0.6-0.8% of ViT-B/32's image tower).
    let mut out: Vec<f32> = Vec::with_capacity(len);
    out.spare_capacity_mut()[..len].par_chunks_mut(tile_len).zip(x.par_chunks(tile_len)).for_each(|(dst, src)| {
        let rows = src.len() / in_dim;
        let done = match super::isa() {
            _ if rows != 6 || tile_rows != 6 => 0,
            // SAFETY (both): the CPU has the instructions; `src` is 6 rows of `in_dim`, `dst` as long.
            #[cfg(target_arch = "x86_64")]
            isa if isa >= super::Isa::Avx512 => unsafe { avx512::interleave_six(src, dst, in_dim) },
            #[cfg(target_arch = "x86_64")]
            super::Isa::Avx2 => unsafe { avx2::interleave_six(src, dst, in_dim) },
            #[cfg(target_arch = "aarch64")]
            super::Isa::Neon => neon::interleave_six(src, dst, in_dim),
            _ => 0,
        };
        // The rest value by value, written in order, reading the tile's rows side by side:
        // written row by row, the stores strode over the whole tile once per row (3% of
        // SigLIP's image tower at two threads).
        for (k, step) in dst.chunks_exact_mut(tile_rows).enumerate().skip(done) {
            let (filled, padding) = step.split_at_mut(rows);
            for (r, slot) in filled.iter_mut().enumerate() {
                slot.write(src[r * in_dim + k]);
            }
            padding.fill(MaybeUninit::new(0.0));
        }
    });
    // SAFETY: the loop above wrote all `len` values.
    unsafe { out.set_len(len) };
    out
}

/// For the vector interleave of a whole 6-row tile, `W` steps at a time (`W` lanes a register):
/// the 6 × `W` outputs of a block are 6 registers, and lane l of register q is value j = q·W + l,
/// i.e. step j / 6 of row j % 6. Returns, for each lane of each register, (step, row).
#[cfg(target_arch = "x86_64")]
const fn six_row_lanes<const W: usize>() -> ([[i32; W]; 6], [[usize; W]; 6]) {
    let (mut steps, mut rows) = ([[0; W]; 6], [[0; W]; 6]);
    let mut j = 0;
    while j < 6 * W {
        (steps[j / W][j % W], rows[j / W][j % W]) = ((j / 6) as i32, j % 6);
        j += 1;
    }
    (steps, rows)
}

/// One block of output for a panel kernel: rows `row..row + rows` of panel `panel` (columns
/// `panel * width..` + `cols`, for panels `width` columns wide), for the `chunk`th part of the
/// shared dimension. `bias` points at `width` values (zero past `cols`), `out` at the block's
/// first value in the (rows × out_dim) output; no other block of the same chunk writes there, and
/// chunk 0 comes first.
#[derive(Clone, Copy)]
pub(super) struct PanelBlock {
    pub panel: usize,
    pub chunk: usize,
    pub row: usize,
    pub rows: usize,
    /// This tile of rows is the n-th of how many that pass over the same part of the panel, one
    /// after the other.
    pub nth_of: (usize, usize),
    pub cols: usize,
    pub bias: *const f32,
    pub out: *mut f32,
}

/// [`Epilogue`] on the CPU, for one tile of the output at a time.
#[derive(Clone, Copy)]
pub(super) enum TileEpilogue<'a> {
    Nothing,
    /// The (rows × out_dim) values to add, and out_dim.
    Residual(&'a [f32], usize),
    Activation(Activation),
}

impl TileEpilogue<'_> {
    /// Applies the epilogue to `rows` rows of `cols` values at `out` (rows `stride` apart), which
    /// hold the output's values from row `row` and column `col` on.
    ///
    /// # Safety
    /// `out` must point at `rows` such rows, valid for writes, that no one else touches meanwhile.
    pub(super) unsafe fn apply(
        self,
        out: *mut f32,
        stride: usize,
        (row, col): (usize, usize),
        rows: usize,
        cols: usize,
    ) {
        if let TileEpilogue::Nothing = self {
            return;
        }
        for r in 0..rows {
            let values = std::slice::from_raw_parts_mut(out.add(r * stride), cols);
            match self {
                TileEpilogue::Nothing => {}
                TileEpilogue::Residual(residual, width) => {
                    add_in_place(values, &residual[(row + r) * width + col..][..cols])
                }
                TileEpilogue::Activation(activation) => super::activate_slice(values, activation),
            }
        }
    }
}

vectorised_per_isa!(fn add_in_place(values: &mut [f32], addend: &[f32]) => add_in_place_in);

#[inline(always)]
fn add_in_place_in(values: &mut [f32], addend: &[f32]) {
    values.iter_mut().zip(addend).for_each(|(v, a)| *v += a);
}

/// The (rows × out_dim) output of a product on panels of `width` output columns, computed by
/// `block` for every block of up to `max_rows` rows of every panel, and for each of `chunks`
/// parts of the shared dimension in turn. The rows go in blocks of about [`ROW_BLOCK`]; the work
/// is one unit per (block of rows, panel), each a part at a time, so that a part of a panel stays
/// in L1 while the block's rows pass. Each thread has a run of units ([`Runs`]): with rows for a
/// block per thread, a range of blocks with every panel (a block's rows stay in L2 while the
/// panels pass), else a range of panels with every block, block by block (a short query streams
/// its share of the weights once, from memory, and a block's rows stay in L2 while the thread's
/// panels pass). `block` must write every value of its block in chunk 0 (and add to
/// it in later chunks). `epilogue` follows each block's last chunk, while the block is in L1.
#[allow(clippy::too_many_arguments)] // the shape of the work, each a plain number
pub(super) fn over_panels(
    bias: &[f32],
    rows: usize,
    out_dim: usize,
    width: usize,
    max_rows: usize,
    chunks: usize,
    epilogue: TileEpilogue,
    block: impl Fn(PanelBlock) + Sync,
) -> Vec<f32> {
    let panels = out_dim.div_ceil(width);
    // Bias padded to whole panels so the kernels always load full registers.
    let mut bias_padded = vec![0f32; panels * width];
    bias_padded[..out_dim].copy_from_slice(bias);
    let mut out: Vec<f32> = Vec::with_capacity(rows * out_dim);
    let out_ptr = SharedOut(out.as_mut_ptr());
    let tiles = rows.div_ceil(max_rows);
    let tiles_per_block = ROW_BLOCK.div_ceil(max_rows);
    // Blocks of equal size, about ROW_BLOCK rows each: a last block of a few rows would stream
    // every panel once more for little work.
    let blocks = ((tiles + tiles_per_block / 2) / tiles_per_block).max(1);
    let pool = rayon::current_num_threads().max(1);
    // Rows for a block each: every thread takes its own rows across all panels, so it reads only
    // its inputs and writes whole output rows. Two threads that split the panels instead each
    // read every input row and wrote half of every output row: at 400 rows (8 pictures of
    // ViT-B/32) that took 10-19% longer on two Zen 3 cores, at 196 (one SigLIP picture) 5-15%.
    let by_rows = pool > 1 && rows >= pool * tiles_per_block * max_rows;
    let threads = if by_rows { pool } else { pool.min(panels) };
    let first_panel = |t: usize| t * panels / threads;
    let units = blocks * panels;
    let runs = Runs::new(threads, |t| if by_rows { t * units / threads } else { blocks * first_panel(t) });
    (0..threads).into_par_iter().for_each(|t| {
        while let Some((run, unit)) = runs.take_own(t).or_else(|| runs.take_left_over()) {
            let (b, panel) = if by_rows {
                (unit / panels, unit % panels)
            } else {
                let (first, count) = (first_panel(run), first_panel(run + 1) - first_panel(run));
                let at = unit - blocks * first;
                (at / count, first + at % count)
            };
            let block_tiles = b * tiles / blocks..(b + 1) * tiles / blocks;
            for chunk in 0..chunks {
                for tile in block_tiles.clone() {
                    let row = tile * max_rows;
                    let (at, tile_rows, cols) =
                        (row * out_dim + panel * width, max_rows.min(rows - row), width.min(out_dim - panel * width));
                    block(PanelBlock {
                        panel,
                        chunk,
                        row,
                        rows: tile_rows,
                        nth_of: (tile - block_tiles.start, block_tiles.len()),
                        cols,
                        bias: bias_padded[panel * width..].as_ptr(),
                        out: out_ptr.get().wrapping_add(at),
                    });
                    if chunk == chunks - 1 {
                        // SAFETY: the block's values, all written, are this unit's alone.
                        unsafe {
                            epilogue.apply(out_ptr.get().add(at), out_dim, (row, panel * width), tile_rows, cols)
                        };
                    }
                }
            }
        }
    });
    // SAFETY: `block` wrote every (row, column) of the output exactly once.
    unsafe { out.set_len(rows * out_dim) };
    out
}

/// How deep each part of a panel goes for a product of `rows` rows: `few_rows` below a block of
/// rows (a text query: the part stays in L1 while the tiles pass over it), `block_of_rows` from a
/// block up (pictures: each part is one more pass that loads and stores every tile's sums, and a
/// block's many tiles keep a deep part hot in L2). Measured in `TileKernel`'s depths.
pub(super) fn part_depth(rows: usize, few_rows: usize, block_of_rows: usize) -> usize {
    if rows >= ROW_BLOCK {
        block_of_rows
    } else {
        few_rows
    }
}

/// Rows that pass over each part of a panel before the next block of rows: their inputs (96 ×
/// 768 f32s, 288 KB) stay in L2 while a thread's panels pass (measured at 96, 192 and 480 rows:
/// within 2% of each other, all 13-18% ahead of `gemm` at 400 and 1,600 rows).
pub(super) const ROW_BLOCK: usize = 96;

/// One register tile: `out[r][c] = bias[c] + Σ_k x[r][k] · w[k][c]` for r < rows, c < cols.
#[derive(Clone, Copy)]
struct Tile {
    rows: usize,
    depth: usize,
    /// The tile's inputs interleaved (see [`interleave_rows`]): row r's value at step k of the
    /// shared dimension is at `x + k * max_rows + r`.
    x: *const f32,
    /// One packed panel: depth × the kernel's panel width.
    w: *const f32,
    #[cfg_attr(not(target_arch = "x86_64"), allow(dead_code))] // the NEON kernel does not ask ahead
    prefetch: Prefetch,
    /// Add to what `out` holds (a later part of the shared dimension) instead of to the bias.
    add_to_out: bool,
    /// One value per column of the panel.
    bias: *const f32,
    out: *mut f32,
    out_stride: usize,
    cols: usize,
}

struct TileKernel {
    run: unsafe fn(Tile),
    /// Rows of one register tile.
    max_rows: usize,
    /// Output columns per packed panel: `LinearWeight` packs the weights for the kernel this CPU
    /// runs.
    panel: usize,
    /// Depth of one part of a panel when a product has more rows than a tile, fewer than a block
    /// ([`part_depth`]). A whole 64-column panel, 192 KB at 768 deep, came from L2 every time:
    /// 64-token texts ran at half the speed of `gemm`; 768-deep parts still cost 6-8% there.
    chunk_depth: usize,
    /// The same with a block of rows or more. On Zen 4, ViT-B/32 at batch 8 / 32, three rounds:
    /// 768 deep against 128 (AVX-512) +2 / +3% images/s, against 256 (AVX2) +3 / +2%; SigLIP B/16
    /// at batch 8 +3%.
    block_chunk_depth: usize,
}

/// The fastest tile kernel this CPU runs.
fn tile_kernel() -> TileKernel {
    match super::isa() {
        #[cfg(target_arch = "x86_64")]
        isa if isa >= super::Isa::Avx512 => avx512::KERNEL,
        #[cfg(target_arch = "x86_64")]
        super::Isa::Avx2 => avx2::KERNEL,
        #[cfg(target_arch = "aarch64")]
        super::Isa::Neon => neon::KERNEL,
        _ => portable::KERNEL,
    }
}

#[cfg(target_arch = "x86_64")]
pub(super) mod avx512 {
    use std::arch::x86_64::*;
    use std::mem::MaybeUninit;

    use super::{steps_with_prefetch, Tile, TileKernel, PANEL};

    /// 6 rows × 4 registers = 24 accumulators, leaving room for the 4 weight registers; parts of
    /// 128 × 64 f32s, 32 KB of L1 (768 deep for blocks of rows).
    pub(super) const KERNEL: TileKernel =
        TileKernel { run: tile, max_rows: MAX_ROWS, panel: PANEL, chunk_depth: 128, block_chunk_depth: 768 };
    const MAX_ROWS: usize = 6;
    /// AVX-512 registers per row of a panel.
    pub(in super::super) const REGS: usize = PANEL / 16;
    /// How far ahead (in rows of the panel, 32 KB) to ask for weights, into L2: the hardware
    /// prefetcher alone left the kernel waiting on memory when a short text query streams the
    /// whole tower (8-token query: 13.1 ms without, 9.2 with L1 prefetch 8 KB ahead, 8.4–8.9 ms
    /// with this; L2 has more outstanding-miss slots than L1, so one core streams faster).
    const PREFETCH_STEPS: usize = 128;

    /// # Safety
    /// The CPU must have AVX-512F; `t` must describe valid memory (see `Tile`).
    #[target_feature(enable = "avx512f")]
    unsafe fn tile(t: Tile) {
        by_rows!(t.rows, tile_rows, t)
    }

    #[target_feature(enable = "avx512f")]
    unsafe fn tile_rows<const R: usize>(t: Tile) {
        let mut acc = starting_sums::<R>(t.add_to_out, t.bias, t.out, t.out_stride, t.cols);
        let (mut x, mut w) = (t.x, t.w);
        steps_with_prefetch(
            t.depth,
            t.prefetch,
            |k| {
                for j in 0..REGS {
                    _mm_prefetch::<_MM_HINT_T1>(t.w.wrapping_add((k + PREFETCH_STEPS) * PANEL + 16 * j) as *const i8);
                }
            },
            || {
                let wv: [__m512; REGS] = std::array::from_fn(|j| _mm512_loadu_ps(w.add(16 * j)));
                for (r, row) in acc.iter_mut().enumerate() {
                    let xv = _mm512_set1_ps(*x.add(r));
                    for j in 0..REGS {
                        row[j] = _mm512_fmadd_ps(xv, wv[j], row[j]);
                    }
                }
                x = x.add(MAX_ROWS);
                w = w.add(PANEL);
            },
        );
        store(&acc, t.out, t.out_stride, t.cols);
    }

    /// For each output register of `interleave_six`: the step each lane takes from its row.
    const SIX_ROW_STEPS: [[i32; 16]; 6] = super::six_row_lanes::<16>().0;
    /// For each output register and row: the lanes that come from that row.
    const SIX_ROW_MASKS: [[__mmask16; 6]; 6] = {
        let rows = super::six_row_lanes::<16>().1;
        let mut masks = [[0; 6]; 6];
        let mut i = 0;
        while i < 6 * 16 {
            masks[i / 16][rows[i / 16][i % 16]] |= 1 << (i % 16);
            i += 1;
        }
        masks
    };

    /// Interleaves a whole tile of 6 rows (`src`: 6 × `in_dim`) into `dst` (`in_dim` × 6), 16
    /// steps of the shared dimension at a time: from each row's 16 values, the 96 outputs are 6
    /// registers, each gathered from the rows with one permute per row (value j of a block is
    /// step j / 6 of row j % 6). One value at a time this was 2.5–4% of ViT-B/32's image tower.
    /// Returns how many steps it did (the rest, under 16, are left to the caller).
    ///
    /// # Safety
    /// The CPU must have AVX-512F; `src` and `dst` must hold 6 × `in_dim` values.
    #[target_feature(enable = "avx512f")]
    pub(super) unsafe fn interleave_six(src: &[f32], dst: &mut [MaybeUninit<f32>], in_dim: usize) -> usize {
        debug_assert!(src.len() >= 6 * in_dim && dst.len() >= 6 * in_dim);
        let steps: [__m512i; 6] = std::array::from_fn(|q| _mm512_loadu_si512(SIX_ROW_STEPS[q].as_ptr().cast()));
        let blocks = in_dim / 16;
        for b in 0..blocks {
            let rows: [__m512; 6] = std::array::from_fn(|r| _mm512_loadu_ps(src.as_ptr().add(r * in_dim + 16 * b)));
            for q in 0..6 {
                let mut v = _mm512_permutexvar_ps(steps[q], rows[0]);
                for r in 1..6 {
                    v = _mm512_mask_permutexvar_ps(v, SIX_ROW_MASKS[q][r], steps[q], rows[r]);
                }
                _mm512_storeu_ps(dst.as_mut_ptr().cast::<f32>().add(96 * b + 16 * q), v);
            }
        }
        blocks * 16
    }

    /// The accumulators of an R-row register tile of a panel: each row starting at the bias
    /// (PANEL values), or with `add_to_out` at the first `cols` values of its row of `out` (rows
    /// `stride` apart).
    #[inline]
    #[target_feature(enable = "avx512f")]
    pub(in super::super) unsafe fn starting_sums<const R: usize>(
        add_to_out: bool,
        bias: *const f32,
        out: *const f32,
        stride: usize,
        cols: usize,
    ) -> [[__m512; REGS]; R] {
        if add_to_out {
            let live = |j: usize| ((1u32 << cols.saturating_sub(16 * j).min(16)) - 1) as __mmask16;
            std::array::from_fn(|r| {
                std::array::from_fn(|j| _mm512_maskz_loadu_ps(live(j), out.add(r * stride + 16 * j)))
            })
        } else {
            let b: [__m512; REGS] = std::array::from_fn(|j| _mm512_loadu_ps(bias.add(16 * j)));
            [b; R]
        }
    }

    /// Stores an R-row register tile at `out` (rows `stride` apart), only the lanes of the first
    /// `cols` columns: the last panel of a layer may be narrow.
    #[inline]
    #[target_feature(enable = "avx512f")]
    pub(in super::super) unsafe fn store<const R: usize>(
        acc: &[[__m512; REGS]; R],
        out: *mut f32,
        stride: usize,
        cols: usize,
    ) {
        for (r, row) in acc.iter().enumerate() {
            for (j, &v) in row.iter().enumerate() {
                let live = cols.saturating_sub(16 * j).min(16);
                _mm512_mask_storeu_ps(out.add(r * stride + 16 * j), ((1u32 << live) - 1) as __mmask16, v);
            }
        }
    }
}

/// For x86 CPUs with AVX2 and FMA but no AVX-512 (most home servers, Intel's N100 among them):
/// 16 registers of 8 floats. A tile is 6 rows × 16 columns: 12 accumulators, 2 registers for the
/// weights, 1 for the input (a 3 × 32 tile needed 17 registers, one more than there are, and ran
/// at half the speed). Its panels are 16 columns wide, so that a step down the shared dimension
/// reads one whole cache line and a part of a panel is one contiguous block of L1.
#[cfg(target_arch = "x86_64")]
mod avx2 {
    use std::arch::x86_64::*;
    use std::mem::MaybeUninit;

    use super::{steps_with_prefetch, Tile, TileKernel};

    /// Parts of 256 × 16 f32s, 16 KB of L1 (768 deep for blocks of rows).
    pub const KERNEL: TileKernel =
        TileKernel { run: tile, max_rows: MAX_ROWS, panel: COLS, chunk_depth: 256, block_chunk_depth: 768 };
    const MAX_ROWS: usize = 6;
    const COLS: usize = 16;
    const REGS: usize = COLS / 8;
    /// How far ahead (in bytes of the panel) to ask for weights, into L2, as the AVX-512 kernel
    /// does: a short text query streams every panel once.
    const PREFETCH_BYTES: usize = 32 * 1024;

    /// # Safety
    /// The CPU must have AVX2 and FMA; `t` must describe valid memory (see `Tile`).
    #[target_feature(enable = "avx2,fma")]
    unsafe fn tile(t: Tile) {
        by_rows!(t.rows, tile_rows, t)
    }

    /// For each output register of `interleave_six`: the step each lane takes from its row.
    const SIX_ROW_STEPS: [[i32; 8]; 6] = super::six_row_lanes::<8>().0;
    /// For each output register and row: all bits set in the lanes that come from that row
    /// (`blendv` reads the sign bit).
    const SIX_ROW_BLENDS: [[[i32; 8]; 6]; 6] = {
        let rows = super::six_row_lanes::<8>().1;
        let mut blends = [[[0; 8]; 6]; 6];
        let mut i = 0;
        while i < 6 * 8 {
            blends[i / 8][rows[i / 8][i % 8]][i % 8] = -1;
            i += 1;
        }
        blends
    };

    /// [`super::avx512::interleave_six`] on 8-value registers: 8 steps at a time, each of the
    /// 6 output registers gathered with one permute per row and blended by row.
    ///
    /// # Safety
    /// The CPU must have AVX2; `src` and `dst` must hold 6 × `in_dim` values.
    #[target_feature(enable = "avx2")]
    pub(super) unsafe fn interleave_six(src: &[f32], dst: &mut [MaybeUninit<f32>], in_dim: usize) -> usize {
        debug_assert!(src.len() >= 6 * in_dim && dst.len() >= 6 * in_dim);
        let steps: [__m256i; 6] = std::array::from_fn(|q| _mm256_loadu_si256(SIX_ROW_STEPS[q].as_ptr().cast()));
        let masks: [[__m256; 6]; 6] = std::array::from_fn(|q| {
            std::array::from_fn(|r| _mm256_castsi256_ps(_mm256_loadu_si256(SIX_ROW_BLENDS[q][r].as_ptr().cast())))
        });
        let blocks = in_dim / 8;
        for b in 0..blocks {
            let rows: [__m256; 6] = std::array::from_fn(|r| _mm256_loadu_ps(src.as_ptr().add(r * in_dim + 8 * b)));
            for q in 0..6 {
                let mut v = _mm256_permutevar8x32_ps(rows[0], steps[q]);
                for r in 1..6 {
                    v = _mm256_blendv_ps(v, _mm256_permutevar8x32_ps(rows[r], steps[q]), masks[q][r]);
                }
                _mm256_storeu_ps(dst.as_mut_ptr().cast::<f32>().add(48 * b + 8 * q), v);
            }
        }
        blocks * 8
    }

    #[target_feature(enable = "avx2,fma")]
    unsafe fn tile_rows<const R: usize>(t: Tile) {
        // Whole panels (all but perhaps a layer's last) load and store plainly: a masked store
        // is many micro-ops on AMD's cores.
        let whole = t.cols == COLS;
        let mut acc: [[__m256; REGS]; R] = if t.add_to_out {
            std::array::from_fn(|r| {
                std::array::from_fn(|j| {
                    let at = t.out.add(r * t.out_stride + 8 * j);
                    if whole {
                        _mm256_loadu_ps(at)
                    } else {
                        _mm256_maskload_ps(at, live(t.cols, j))
                    }
                })
            })
        } else {
            [std::array::from_fn(|j| _mm256_loadu_ps(t.bias.add(8 * j))); R]
        };
        let (mut x, mut w) = (t.x, t.w);
        steps_with_prefetch(
            t.depth,
            t.prefetch,
            |k| _mm_prefetch::<_MM_HINT_T1>((t.w.wrapping_add(k * COLS) as *const i8).wrapping_add(PREFETCH_BYTES)),
            || {
                let wv: [__m256; REGS] = std::array::from_fn(|j| _mm256_loadu_ps(w.add(8 * j)));
                for (r, row) in acc.iter_mut().enumerate() {
                    let xv = _mm256_broadcast_ss(&*x.add(r));
                    for j in 0..REGS {
                        row[j] = _mm256_fmadd_ps(xv, wv[j], row[j]);
                    }
                }
                x = x.add(MAX_ROWS);
                w = w.add(COLS);
            },
        );
        for (r, row) in acc.iter().enumerate() {
            for (j, &v) in row.iter().enumerate() {
                let at = t.out.add(r * t.out_stride + 8 * j);
                if whole {
                    _mm256_storeu_ps(at, v);
                } else {
                    _mm256_maskstore_ps(at, live(t.cols, j), v);
                }
            }
        }
    }

    /// The lanes of register `j` that fall within the first `cols` columns.
    #[inline]
    #[target_feature(enable = "avx2")]
    unsafe fn live(cols: usize, j: usize) -> __m256i {
        let n = cols.saturating_sub(8 * j).min(8) as i32;
        _mm256_cmpgt_epi32(_mm256_set1_epi32(n), _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7))
    }
}

/// For ARM (every aarch64 CPU has NEON: Apple Silicon, Raspberry Pi 4 and 5, Graviton, Ampere):
/// 32 registers of 4 floats. A tile is 6 rows × 16 columns: 24 accumulators, 4 registers for a
/// step's weights and 2 for its 6 inputs, each multiplied in by lane (`fmla v.4s, w.4s, x.s[r]`,
/// no broadcast needed). The portable kernel, which ARM ran before, compiles there to a separate
/// multiply and add for every product (Rust does not fuse `a + x * w` by itself) with its 64-wide
/// accumulator rows kept in memory (seen in its aarch64 assembly).
#[cfg(target_arch = "aarch64")]
mod neon {
    use std::arch::aarch64::*;
    use std::mem::MaybeUninit;

    use super::{Tile, TileKernel};

    /// Parts of 256 × 16 f32s, 16 KB of L1, as on AVX2.
    // Deep parts for blocks of rows are measured on x86 only: ARM keeps one depth until timed.
    pub const KERNEL: TileKernel =
        TileKernel { run: tile, max_rows: MAX_ROWS, panel: COLS, chunk_depth: 256, block_chunk_depth: 256 };
    const MAX_ROWS: usize = 6;
    const COLS: usize = 16;
    const REGS: usize = COLS / 4;

    /// # Safety
    /// `t` must describe valid memory (see `Tile`).
    unsafe fn tile(t: Tile) {
        by_rows!(t.rows, tile_rows, t)
    }

    /// [`super::avx2::interleave_six`] on 4-value registers, 4 steps at a time: a 4 × 4 transpose
    /// of rows 0-3 and the zips of rows 4 and 5, recombined by halves into the 6 registers of the
    /// 24 interleaved values. Returns how many steps it did.
    pub(super) fn interleave_six(src: &[f32], dst: &mut [MaybeUninit<f32>], in_dim: usize) -> usize {
        assert!(src.len() >= 6 * in_dim && dst.len() >= 6 * in_dim);
        let blocks = in_dim / 4;
        for b in 0..blocks {
            // SAFETY: step 4b + 3 < in_dim, so each load stays in its row of `src`; the stores
            // fill dst[24b..24b + 24], inside its 6 × in_dim values.
            unsafe {
                let row = |r: usize| vld1q_f32(src.as_ptr().add(r * in_dim + 4 * b));
                let (r0, r1, r2, r3, r4, r5) = (row(0), row(1), row(2), row(3), row(4), row(5));
                // Pairs of rows 0-3 by step ([r0[0], r1[0], r0[2], r1[2]] …), then pairs of pairs:
                // `step[k]` = step k of rows 0-3.
                let (even01, odd01) = (vtrn1q_f32(r0, r1), vtrn2q_f32(r0, r1));
                let (even23, odd23) = (vtrn1q_f32(r2, r3), vtrn2q_f32(r2, r3));
                let pairs = |a: float32x4_t, b: float32x4_t, high: bool| {
                    let (a, b) = (vreinterpretq_f64_f32(a), vreinterpretq_f64_f32(b));
                    vreinterpretq_f32_f64(if high { vtrn2q_f64(a, b) } else { vtrn1q_f64(a, b) })
                };
                let step = [
                    pairs(even01, even23, false),
                    pairs(odd01, odd23, false),
                    pairs(even01, even23, true),
                    pairs(odd01, odd23, true),
                ];
                // Rows 4 and 5 side by side: steps 0 and 1, then 2 and 3.
                let (tail01, tail23) = (vzip1q_f32(r4, r5), vzip2q_f32(r4, r5));
                let out = [
                    step[0],
                    vcombine_f32(vget_low_f32(tail01), vget_low_f32(step[1])),
                    vcombine_f32(vget_high_f32(step[1]), vget_high_f32(tail01)),
                    step[2],
                    vcombine_f32(vget_low_f32(tail23), vget_low_f32(step[3])),
                    vcombine_f32(vget_high_f32(step[3]), vget_high_f32(tail23)),
                ];
                for (q, v) in out.into_iter().enumerate() {
                    vst1q_f32(dst.as_mut_ptr().cast::<f32>().add(24 * b + 4 * q), v);
                }
            }
        }
        blocks * 4
    }

    /// `acc + w × (row r's input)`, the input taken by lane from `x0` (rows 0 to 3) or `x1` (4, 5).
    #[inline(always)]
    fn fma_row(acc: float32x4_t, w: float32x4_t, x0: float32x4_t, x1: float32x2_t, r: usize) -> float32x4_t {
        // SAFETY: NEON is part of every aarch64 target.
        unsafe {
            match r {
                0 => vfmaq_laneq_f32::<0>(acc, w, x0),
                1 => vfmaq_laneq_f32::<1>(acc, w, x0),
                2 => vfmaq_laneq_f32::<2>(acc, w, x0),
                3 => vfmaq_laneq_f32::<3>(acc, w, x0),
                4 => vfmaq_lane_f32::<0>(acc, w, x1),
                _ => vfmaq_lane_f32::<1>(acc, w, x1),
            }
        }
    }

    #[inline(always)]
    unsafe fn tile_rows<const R: usize>(t: Tile) {
        // A layer's narrow last panel goes through whole rows of a buffer: NEON has no masked
        // loads or stores.
        let whole = t.cols == COLS;
        let mut edge = [[0f32; COLS]; R];
        let mut acc: [[float32x4_t; REGS]; R] = if t.add_to_out {
            std::array::from_fn(|r| {
                let row = t.out.add(r * t.out_stride);
                if !whole {
                    std::ptr::copy_nonoverlapping(row, edge[r].as_mut_ptr(), t.cols);
                }
                let from = if whole { row.cast_const() } else { edge[r].as_ptr() };
                std::array::from_fn(|j| vld1q_f32(from.add(4 * j)))
            })
        } else {
            [std::array::from_fn(|j| vld1q_f32(t.bias.add(4 * j))); R]
        };
        let (mut x, mut w) = (t.x, t.w);
        for _ in 0..t.depth {
            let wv: [float32x4_t; REGS] = std::array::from_fn(|j| vld1q_f32(w.add(4 * j)));
            // The step's inputs of all 6 rows (a partial tile's are zeros): rows 0-3, then 4-5.
            let (x0, x1) = (vld1q_f32(x), vld1_f32(x.add(4)));
            for (r, row) in acc.iter_mut().enumerate() {
                for j in 0..REGS {
                    row[j] = fma_row(row[j], wv[j], x0, x1, r);
                }
            }
            x = x.add(MAX_ROWS);
            w = w.add(COLS);
        }
        for (r, row) in acc.iter().enumerate() {
            let at = t.out.add(r * t.out_stride);
            let to = if whole { at } else { edge[r].as_mut_ptr() };
            for (j, &v) in row.iter().enumerate() {
                vst1q_f32(to.add(4 * j), v);
            }
            if !whole {
                std::ptr::copy_nonoverlapping(edge[r].as_ptr(), at, t.cols);
            }
        }
    }
}

/// Plain Rust that the compiler vectorises for whatever the target has (SSE2 on x86 without
/// AVX2, other architectures): `IMGSEARCH_ISA=portable` runs it anywhere.
mod portable {
    use super::{Tile, TileKernel, PANEL};

    /// 4 rows × 64 columns: fewer rows than AVX-512 has registers for, to limit spills.
    pub const KERNEL: TileKernel =
        TileKernel { run: tile, max_rows: MAX_ROWS, panel: PANEL, chunk_depth: 128, block_chunk_depth: 128 };
    const MAX_ROWS: usize = 4;

    /// # Safety
    /// `t` must describe valid memory (see `Tile`).
    unsafe fn tile(t: Tile) {
        by_rows!(t.rows, tile_rows, t)
    }

    #[inline(always)]
    unsafe fn tile_rows<const R: usize>(t: Tile) {
        let mut acc = [[0f32; PANEL]; R];
        for (r, row) in acc.iter_mut().enumerate() {
            if t.add_to_out {
                row[..t.cols].copy_from_slice(std::slice::from_raw_parts(t.out.add(r * t.out_stride), t.cols));
            } else {
                row.copy_from_slice(std::slice::from_raw_parts(t.bias, PANEL));
            }
        }
        for k in 0..t.depth {
            let w = std::slice::from_raw_parts(t.w.add(k * PANEL), PANEL);
            for (r, row) in acc.iter_mut().enumerate() {
                let xv = *t.x.add(k * MAX_ROWS + r);
                for (a, &wv) in row.iter_mut().zip(w) {
                    *a += xv * wv;
                }
            }
        }
        for (r, row) in acc.iter().enumerate() {
            std::ptr::copy_nonoverlapping(row.as_ptr(), t.out.add(r * t.out_stride), t.cols);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The interleaved layout, value by value, for tiles whole and partial and shared
    /// dimensions that do and do not end on a whole vector (the AVX-512, AVX2 and NEON paths do
    /// whole tiles of 6 rows 16, 8 or 4 steps at a time where they run, the rest goes value by
    /// value; `IMGSEARCH_ISA` picks which).
    #[test]
    fn interleaved_rows_hold_each_value_at_its_step_and_row() {
        for tile_rows in [4, 6] {
            for in_dim in [1, 15, 16, 17, 37, 768] {
                for rows in [1, 5, 6, 7, 13] {
                    let x: Vec<f32> = (0..rows * in_dim).map(|i| i as f32).collect();
                    let got = interleave_rows(&x, in_dim, tile_rows);
                    assert_eq!(got.len(), rows.div_ceil(tile_rows) * tile_rows * in_dim);
                    for (i, &v) in got.iter().enumerate() {
                        let (tile, within) = (i / (tile_rows * in_dim), i % (tile_rows * in_dim));
                        let (k, r) = (within / tile_rows, within % tile_rows);
                        let row = tile * tile_rows + r;
                        let expected = if row < rows { x[row * in_dim + k] } else { 0.0 };
                        assert_eq!(v, expected, "tile_rows {tile_rows}, in_dim {in_dim}, rows {rows}, at {i}");
                    }
                }
            }
        }
    }

    /// Every tile kernel this CPU can run, against a plain triple loop, on ragged shapes: rows
    /// that are not a multiple of the tile height, columns that end inside a panel.
    #[test]
    fn every_tile_kernel_matches_a_plain_matmul() {
        #[cfg_attr(not(any(target_arch = "x86_64", target_arch = "aarch64")), allow(unused_mut))]
        let mut kernels = vec![("portable", portable::KERNEL)];
        #[cfg(target_arch = "aarch64")]
        kernels.push(("neon", neon::KERNEL));
        #[cfg(target_arch = "x86_64")]
        {
            if std::is_x86_feature_detected!("avx2") && std::is_x86_feature_detected!("fma") {
                kernels.push(("avx2", avx2::KERNEL));
            }
            if std::is_x86_feature_detected!("avx512f") {
                kernels.push(("avx512", avx512::KERNEL));
            }
        }
        let depth = 37;
        let x: Vec<f32> = (0..7 * depth).map(|i| ((i * 37) % 11) as f32 - 5.0).collect();
        for (name, kernel) in kernels {
            let interleaved = interleave_rows(&x, depth, kernel.max_rows);
            let width = kernel.panel;
            // Ends inside the last register of the panel: 53 of 64 columns, 13 of 16.
            let cols = width * 53 / 64;
            let w: Vec<f32> = (0..depth * width).map(|i| ((i * 13) % 7) as f32 * 0.5 - 1.5).collect();
            let bias: Vec<f32> = (0..width).map(|i| i as f32 * 0.25).collect();
            // Asking for weights ahead, or for the next part's lines for some steps (in pairs,
            // then one by one) or for all of them (the odd depth leaves a last step alone).
            let next_part = |lines| Prefetch::Next { from: w.as_ptr().cast(), lines };
            let prefetches = [Prefetch::Ahead, next_part(5), next_part(depth)];
            let cases = (1..=kernel.max_rows).flat_map(|rows| [(rows, false), (rows, true)]);
            for ((rows, add_to_out), prefetch) in cases.flat_map(|case| prefetches.map(|p| (case, p))) {
                let stride = cols + 3;
                // What a tile adding to the output finds there: an earlier part's sums.
                let earlier = |r: usize, c: usize| (r * 7 + c) as f32 * 0.125 - 3.0;
                let mut out: Vec<f32> = (0..rows * stride)
                    .map(|i| if add_to_out && i % stride < cols { earlier(i / stride, i % stride) } else { f32::NAN })
                    .collect();
                let tile = Tile {
                    rows,
                    depth,
                    x: interleaved.as_ptr(),
                    w: w.as_ptr(),
                    prefetch,
                    add_to_out,
                    bias: bias.as_ptr(),
                    out: out.as_mut_ptr(),
                    out_stride: stride,
                    cols,
                };
                unsafe { (kernel.run)(tile) };
                for r in 0..rows {
                    for c in 0..stride {
                        let got = out[r * stride + c];
                        if c >= cols {
                            assert!(got.is_nan(), "{name}: wrote past the last column");
                            continue;
                        }
                        let start = if add_to_out { earlier(r, c) } else { bias[c] };
                        let want = start + (0..depth).map(|k| x[r * depth + k] * w[k * width + c]).sum::<f32>();
                        assert!(
                            (got - want).abs() < 1e-3,
                            "{name} rows={rows} add_to_out={add_to_out} {prefetch:?} ({r},{c}): {got} vs {want}"
                        );
                    }
                }
            }
        }
    }

    /// The packed product over many rows, which goes through the panels in parts of the shared
    /// dimension, equals a plain matmul (ragged depth, rows and last panel).
    #[test]
    fn a_packed_product_in_parts_matches_a_plain_matmul() {
        // Threads splitting the panels (few rows), one thread in several blocks, and threads
        // splitting the rows (one block each and more; rows not a whole number of tiles). Three
        // threads on 2 blocks of rows split the panels, each going through its own block by block.
        let cases = [(1, 13), (3, 13), (1, 3 * ROW_BLOCK + 4), (2, 2 * ROW_BLOCK + 4), (3, 2 * ROW_BLOCK + 4)];
        for (threads, rows) in cases {
            let pool = rayon::ThreadPoolBuilder::new().num_threads(threads).build().unwrap();
            pool.install(|| check_packed_product(rows));
        }
    }

    /// The tiles of a block of rows ask, between them, for every line of the next part of the
    /// weights and for nothing outside them; after the last part, for the first; with too few
    /// tiles for one line every two steps, each streams its own part instead.
    #[test]
    fn a_block_of_tiles_asks_for_the_whole_next_part() {
        let w = vec![0f32; 5 * 1024 + 48];
        let line_of = |p: *const i8| (p as usize - w.as_ptr() as usize) / 64;
        // Parts of 1,024 values (64 lines, 64 steps of a 16-wide panel); the last part is short.
        for (part, tiles, want) in
            [(0, 16, 1024..2048), (0, 3, 1024..2048), (4 * 1024, 7, 5 * 1024..w.len()), (4 * 1024 + 48, 16, 0..1024)]
        {
            let mut asked = Vec::new();
            for nth in 0..tiles {
                let Prefetch::Next { from, lines } = Prefetch::for_tile(&w, part..part + 1024, 64, (nth, tiles)) else {
                    panic!("{tiles} tiles ask for the next part")
                };
                asked.extend(line_of(from)..line_of(from) + lines);
            }
            asked.sort_unstable();
            asked.dedup();
            assert_eq!(asked, (want.start / 16..want.end.div_ceil(16)).collect::<Vec<_>>(), "after the part at {part}");
        }
        assert!(matches!(Prefetch::for_tile(&w, 0..1024, 64, (0, 1)), Prefetch::Ahead));
    }

    /// A thread that never starts (a descheduled core) leaves its run to the others, and
    /// threads taking units at once take each exactly once.
    #[test]
    fn every_unit_of_the_runs_is_taken_once_even_when_a_thread_never_starts() {
        let runs = Runs::new(4, |t| [0, 25, 40, 90, 103][t]);
        let taken: Vec<(usize, usize)> =
            std::iter::from_fn(|| runs.take_own(0).or_else(|| runs.take_left_over())).collect();
        assert_eq!(&taken[..25], &(0..25).map(|u| (0, u)).collect::<Vec<_>>()[..], "its own run first, in order");
        assert_eq!(taken[25], (2, 89), "then the back of the fullest run");
        let run_of = |u: usize| [0, 25, 40, 90, 103].iter().rposition(|&start| start <= u).unwrap();
        assert!(taken.iter().all(|&(run, u)| run == run_of(u)), "each unit with its run");
        let mut units: Vec<usize> = taken.into_iter().map(|(_, u)| u).collect();
        units.sort_unstable();
        assert_eq!(units, (0..103).collect::<Vec<_>>());

        let runs = Runs::new(3, |t| t * 10_000 / 3);
        let mut taken: Vec<usize> = std::thread::scope(|s| {
            let runs = &runs;
            let threads: Vec<_> = (0..3)
                .map(|t| {
                    s.spawn(move || {
                        std::iter::from_fn(|| runs.take_own(t).or_else(|| runs.take_left_over())).collect::<Vec<_>>()
                    })
                })
                .collect();
            threads.into_iter().flat_map(|t| t.join().unwrap()).map(|(_, u)| u).collect()
        });
        taken.sort_unstable();
        assert_eq!(taken, (0..10_000).collect::<Vec<_>>());
    }

    fn check_packed_product(rows: usize) {
        // Parts of the shared dimension for few rows and for blocks of rows, the last one ragged.
        let (in_dim, out_dim) = (2 * tile_kernel().block_chunk_depth.max(tile_kernel().chunk_depth) + 45, 150);
        let x: Vec<f32> = (0..rows * in_dim).map(|i| ((i * 37) % 101) as f32 / 50.0 - 1.0).collect();
        let w: Vec<f32> = (0..out_dim * in_dim).map(|i| ((i * 13) % 97) as f32 / 40.0 - 1.2).collect();
        let bias: Vec<f32> = (0..out_dim).map(|i| i as f32 * 0.01).collect();
        let weight = Tensor::from_vec(w.clone(), (out_dim, in_dim), &Device::Cpu).unwrap();
        let packed = LinearWeight::new(&weight, WeightLayout::Packed).unwrap();
        let packed: Vec<f32> = packed.data.flatten_all().unwrap().to_vec1().unwrap();
        let got = packed_product(&x, &packed, &bias, rows, (in_dim, out_dim), TileEpilogue::Nothing);
        for r in 0..rows {
            for c in 0..out_dim {
                let want = f64::from(bias[c])
                    + (0..in_dim).map(|k| f64::from(x[r * in_dim + k]) * f64::from(w[c * in_dim + k])).sum::<f64>();
                let diff = (f64::from(got[r * out_dim + c]) - want).abs();
                assert!(diff < 1e-4 * (1.0 + want.abs()), "({r},{c}): {} vs {want}", got[r * out_dim + c]);
            }
        }
    }
}
