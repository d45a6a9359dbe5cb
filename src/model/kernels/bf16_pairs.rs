//! Linear layers in bf16 on CPUs with AVX512_BF16 but no AMX (AMD Zen 4 and 5, Intel Cooper
//! Lake): `vdpbf16ps` multiplies 16 pairs of bf16 and adds both products to 16 f32 sums, twice
//! the multiply-adds of an f32 FMA per instruction, from weights half the size.
//!
//! Weights are laid out once at load, like the f32 `Packed` panels: per panel of 64 output
//! columns, per pair (k, k+1) of the shared dimension, each column's two values side by side
//! (128 bf16, four registers), zero-padded past `out_dim` and to an even depth. Activations are
//! rounded to bf16 (to nearest, ties to even, as AMX's path does) once per call. A register tile
//! of up to 6 rows × 64 columns keeps 24 f32 accumulators, starting from the bias.

use half::bf16;
use rayon::prelude::*;

use super::linear::PANEL;
use super::linear::{over_panels, part_depth, Prefetch, TileEpilogue};

/// Whether this CPU runs `vdpbf16ps` and [`super::isa`] allows it.
pub fn available() -> bool {
    super::isa() >= super::Isa::Avx512Bf16
}

/// Pairs of the shared dimension (`in_dim` rounded up to even, halved).
pub fn pairs(in_dim: usize) -> usize {
    in_dim.div_ceil(2)
}

/// bf16 values of one panel.
pub fn panel_len(in_dim: usize) -> usize {
    pairs(in_dim) * PANEL * 2
}

/// Lays out `w` (out_dim × in_dim, row-major, as Hugging Face stores it) into `packed`
/// (`out_dim.div_ceil(PANEL)` panels of [`panel_len`], zeroed).
pub fn pack_weight(w: &[f32], (in_dim, out_dim): (usize, usize), packed: &mut [bf16]) {
    packed.par_chunks_mut(panel_len(in_dim)).enumerate().for_each(|(p, panel)| {
        for col in 0..PANEL.min(out_dim - p * PANEL) {
            for (k, &v) in w[(p * PANEL + col) * in_dim..][..in_dim].iter().enumerate() {
                panel[(k / 2) * PANEL * 2 + col * 2 + k % 2] = bf16::from_f32(v);
            }
        }
    });
}

/// `x W^T + b` for `x` (rows × in_dim) on weights packed by [`pack_weight`], then `epilogue`.
/// The caller checks [`available`].
pub(super) fn product(
    x: &[f32],
    w: &[bf16],
    bias: &[f32],
    rows: usize,
    (in_dim, out_dim): (usize, usize),
    epilogue: TileEpilogue,
) -> Vec<f32> {
    let stride = pairs(in_dim) * 2;
    // The activations in bf16, each row padded with a zero to an even length.
    let mut xb = vec![bf16::ZERO; rows * stride];
    xb.par_chunks_mut(stride).zip(x.par_chunks(in_dim)).for_each(|(dst, src)| {
        // SAFETY: the caller checked `available()`.
        #[cfg(target_arch = "x86_64")]
        unsafe {
            avx512::round_row(src, dst)
        };
        #[cfg(not(target_arch = "x86_64"))]
        unreachable!("bf16 pairs need AVX512_BF16 ({} values)", src.len() + dst.len());
    });
    let chunk_pairs = part_depth(rows, CHUNK_PAIRS, BLOCK_CHUNK_PAIRS);
    let chunks = pairs(in_dim).div_ceil(chunk_pairs);
    over_panels(bias, rows, out_dim, PANEL, MAX_ROWS, chunks, epilogue, |block| {
        let first = block.chunk * chunk_pairs;
        let depth = chunk_pairs.min(pairs(in_dim) - first);
        let (part, part_len) = (block.panel * panel_len(in_dim) + first * PANEL * 2, depth * PANEL * 2);
        let tile = Tile {
            rows: block.rows,
            pairs: depth,
            x: xb[block.row * stride + 2 * first..].as_ptr(),
            x_stride: stride,
            w: w[part..].as_ptr(),
            prefetch: Prefetch::for_tile(w, part..part + part_len, depth, block.nth_of),
            add_to_out: block.chunk > 0,
            bias: block.bias,
            out: block.out,
            out_stride: out_dim,
            cols: block.cols,
        };
        // SAFETY: the caller checked `available()`; x and w point into xb (rows × stride) and w
        // (panels × panel_len); `block`'s pointers are valid (see `PanelBlock`).
        #[cfg(target_arch = "x86_64")]
        unsafe {
            avx512::tile(tile)
        };
        #[cfg(not(target_arch = "x86_64"))]
        unreachable!("bf16 pairs need AVX512_BF16 ({tile:?})");
    })
}

/// Rows per register tile: 6 × 4 accumulators, leaving registers for the weights.
const MAX_ROWS: usize = 6;
/// Pairs of the shared dimension per pass over a batch's rows: 32 KB of a panel, which stays in
/// L1 while every tile of rows passes over it.
const CHUNK_PAIRS: usize = 128;
/// The same for a block of rows or more (pictures; see `part_depth`).
const BLOCK_CHUNK_PAIRS: usize = 384;

/// One register tile: `out[r][c] = bias[c] + Σ_k x[r][k] · w[c][k]` for r < rows, c < cols.
#[derive(Clone, Copy, Debug)]
#[cfg_attr(not(target_arch = "x86_64"), allow(dead_code))] // only x86 has a kernel to read it
struct Tile {
    rows: usize,
    pairs: usize,
    /// bf16 rows of `x_stride` (even) values.
    x: *const bf16,
    x_stride: usize,
    /// One panel: pairs × PANEL × 2.
    w: *const bf16,
    prefetch: Prefetch,
    /// Add to what `out` holds (a later part of the shared dimension) instead of to the bias.
    add_to_out: bool,
    /// PANEL values.
    bias: *const f32,
    out: *mut f32,
    out_stride: usize,
    cols: usize,
}

#[cfg(target_arch = "x86_64")]
mod avx512 {
    use std::arch::x86_64::*;

    use half::bf16;

    use super::super::linear::avx512::{starting_sums, store, REGS};
    use super::super::linear::steps_with_prefetch;
    use super::{Tile, PANEL};

    /// How many pairs ahead to ask for weights, into L2 (as the f32 text kernel does).
    const PREFETCH_PAIRS: usize = 64;

    /// # Safety
    /// The CPU must have AVX-512F and AVX512_BF16; `t` must describe valid memory.
    #[target_feature(enable = "avx512f,avx512bf16")]
    pub unsafe fn tile(t: Tile) {
        by_rows!(t.rows, tile_rows, t)
    }

    /// `src` rounded to bf16 (nearest even) into the start of `dst`, 32 values per instruction
    /// (one at a time it was ~2% of a batch of pictures).
    ///
    /// # Safety
    /// The CPU must have AVX-512F and AVX512_BF16.
    #[target_feature(enable = "avx512f,avx512bf16")]
    pub unsafe fn round_row(src: &[f32], dst: &mut [bf16]) {
        let whole = src.len() / 32 * 32;
        for (from, to) in src[..whole].chunks_exact(32).zip(dst.chunks_exact_mut(32)) {
            let (low, high) = (_mm512_loadu_ps(from.as_ptr()), _mm512_loadu_ps(from.as_ptr().add(16)));
            let rounded: __m512i = std::mem::transmute(_mm512_cvtne2ps_pbh(high, low));
            _mm512_storeu_si512(to.as_mut_ptr().cast(), rounded);
        }
        for (to, &from) in dst[whole..].iter_mut().zip(&src[whole..]) {
            *to = bf16::from_f32(from);
        }
    }

    #[target_feature(enable = "avx512f,avx512bf16")]
    unsafe fn tile_rows<const R: usize>(t: Tile) {
        let mut acc = starting_sums::<R>(t.add_to_out, t.bias, t.out, t.out_stride, t.cols);
        let (mut x, mut w) = (t.x as *const u16, t.w as *const u16);
        steps_with_prefetch(
            t.pairs,
            t.prefetch,
            |k| {
                for j in 0..REGS {
                    let ahead = (k + PREFETCH_PAIRS) * PANEL * 2 + 32 * j;
                    _mm_prefetch::<_MM_HINT_T1>(t.w.wrapping_add(ahead) as *const i8);
                }
            },
            || {
                // Register j: columns 16j..16j+16, each lane one column's pair.
                let wv: [__m512bh; REGS] =
                    std::array::from_fn(|j| std::mem::transmute(_mm512_loadu_si512(w.add(32 * j) as *const _)));
                for (r, row) in acc.iter_mut().enumerate() {
                    // The row's pair (k, k+1) in every lane.
                    let pair = (x.add(r * t.x_stride) as *const i32).read_unaligned();
                    let xv: __m512bh = std::mem::transmute(_mm512_set1_epi32(pair));
                    for j in 0..REGS {
                        row[j] = _mm512_dpbf16_ps(row[j], xv, wv[j]);
                    }
                }
                x = x.add(2);
                w = w.add(PANEL * 2);
            },
        );
        store(&acc, t.out, t.out_stride, t.cols);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Against the same sums in f64 over the same bf16-rounded values, on ragged shapes: an odd
    /// depth in parts (`CHUNK_PAIRS`, and `BLOCK_CHUNK_PAIRS` for a block of rows), rows that are
    /// not a multiple of the tile height, a last panel cut short.
    #[test]
    fn the_product_equals_the_sums_of_the_rounded_values() {
        if !available() {
            eprintln!("skipped: this CPU has no AVX512_BF16");
            return;
        }
        for (rows, in_dim) in [(13, 301), (super::super::linear::ROW_BLOCK + 5, 4 * BLOCK_CHUNK_PAIRS + 45)] {
            check_product(rows, in_dim, 150);
        }
    }

    fn check_product(rows: usize, in_dim: usize, out_dim: usize) {
        let x: Vec<f32> = (0..rows * in_dim).map(|i| ((i * 37) % 101) as f32 / 50.0 - 1.0).collect();
        let w: Vec<f32> = (0..out_dim * in_dim).map(|i| ((i * 13) % 97) as f32 / 40.0 - 1.2).collect();
        let bias: Vec<f32> = (0..out_dim).map(|i| i as f32 * 0.01).collect();
        let mut packed = vec![bf16::ZERO; out_dim.div_ceil(PANEL) * panel_len(in_dim)];
        pack_weight(&w, (in_dim, out_dim), &mut packed);
        let got = product(&x, &packed, &bias, rows, (in_dim, out_dim), TileEpilogue::Nothing);
        let round = |v: f32| f64::from(bf16::from_f32(v).to_f32());
        for r in 0..rows {
            for c in 0..out_dim {
                let want = f64::from(bias[c])
                    + (0..in_dim).map(|k| round(x[r * in_dim + k]) * round(w[c * in_dim + k])).sum::<f64>();
                let diff = (f64::from(got[r * out_dim + c]) - want).abs();
                assert!(diff < 1e-4 * (1.0 + want.abs()), "({r},{c}): {} vs {want}", got[r * out_dim + c]);
            }
        }
    }
}
