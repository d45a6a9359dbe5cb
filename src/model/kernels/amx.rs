//! Linear layers on Intel AMX's bf16 tile unit, in one of two splits of the f32 values:
//!
//! - `Split::Once` (`--dtype bf16`): weights and activations rounded to bf16 (8 bits of
//!   mantissa), products summed in f32.
//! - `Split::ThreeWay` (near-f32 accuracy): each value split into a high and a low bf16 part,
//!   `v ≈ hi + lo` to ~16 bits, and `x·w ≈ hi_x·hi_w + hi_x·lo_w + lo_x·hi_w` (the dropped
//!   `lo·lo` term is ~2^-16 of the product). The three products are one bf16 product over a
//!   three times deeper shared dimension: activations laid out `[hi, hi, lo]`, weights
//!   `[hi, lo, hi]`, so the same kernel runs both splits.
//!
//! One AMX tile multiply (`tdpbf16ps`) does 16×16×32 multiply-adds; one core of this machine
//! kind runs them at ~2.2 TFLOP/s, ten times its f32 AVX-512 peak. The kernel keeps four f32
//! accumulator tiles (32 rows × 32 columns of output) and feeds them two tiles of activations and
//! two of weights per step of 32 along the shared dimension.
//!
//! Layouts (bf16 = `u16` bits):
//! - weights: per panel of 16 output columns, `depth / 2` rows of 16 × (k, k+1) pairs (the
//!   "VNNI" order `tdpbf16ps` expects), zero-padded to a whole number of panel pairs; `depth` is
//!   one (or three) segments of `in_dim` rounded up to a multiple of 32;
//! - activations: (rows rounded up to 32) × `depth`, zero-padded, converted per call.

use std::sync::OnceLock;

use half::bf16;
use rayon::prelude::*;

use super::SharedOut;

/// Output columns per weight panel (one accumulator tile is 16 × 16 f32).
const PANEL: usize = 16;
/// Rows of one tile (activations and accumulators).
const TILE_ROWS: usize = 16;
/// Shared-dimension step of one tile multiply: 32 bf16 = one 64-byte tile row.
const K_STEP: usize = 32;
/// Output rows per accumulator block: two tiles of activation rows.
const BLOCK_ROWS: usize = 2 * TILE_ROWS;
/// Activation bytes a thread keeps in its L2 while it walks its panels: rows are processed in
/// chunks of this size (2 MB L2 per core here; weights need the rest).
const CHUNK_BYTES: usize = 512 * 1024;

/// Whether this CPU and OS run AMX bf16 tile multiplies, unless `IMGSEARCH_AMX=0` turns them
/// off (then f32 runs on AVX-512/AVX2 as on other CPUs). The first call asks Linux for the tile
/// state (`ARCH_REQ_XCOMP_PERM`), which every process must do before its first tile instruction.
pub fn available() -> bool {
    static AVAILABLE: OnceLock<bool> = OnceLock::new();
    *AVAILABLE.get_or_init(|| std::env::var_os("IMGSEARCH_AMX").is_none_or(|v| v != "0") && detect())
}

#[cfg(all(target_arch = "x86_64", target_os = "linux"))]
fn detect() -> bool {
    const ARCH_REQ_XCOMP_PERM: libc::c_long = 0x1023;
    const XFEATURE_XTILEDATA: libc::c_long = 18;
    // CPUID leaf 7: EDX bit 22 = AMX-BF16, bit 24 = AMX-TILE.
    let edx = std::arch::x86_64::__cpuid_count(7, 0).edx;
    if edx & (1 << 22) == 0 || edx & (1 << 24) == 0 {
        return false;
    }
    // SAFETY: arch_prctl with these arguments only changes this process's permissions.
    unsafe { libc::syscall(libc::SYS_arch_prctl, ARCH_REQ_XCOMP_PERM, XFEATURE_XTILEDATA) == 0 }
}

#[cfg(not(all(target_arch = "x86_64", target_os = "linux")))]
fn detect() -> bool {
    false
}

/// How f32 values become bf16 (see the module comment).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Split {
    Once,
    ThreeWay,
}

impl Split {
    /// The bf16 parts standing for `v` in each segment of the shared dimension: weights and
    /// activations pair up segment by segment.
    fn weight_parts(self) -> &'static [Part] {
        match self {
            Split::Once => &[Part::High],
            Split::ThreeWay => &[Part::High, Part::Low, Part::High],
        }
    }

    fn activation_parts(self) -> &'static [Part] {
        match self {
            Split::Once => &[Part::High],
            Split::ThreeWay => &[Part::High, Part::High, Part::Low],
        }
    }
}

#[derive(Clone, Copy)]
enum Part {
    /// `v` rounded to bf16 (nearest even).
    High,
    /// What `High` missed, rounded to bf16.
    Low,
}

impl Part {
    #[inline(always)]
    fn of(self, v: f32) -> bf16 {
        let high = bf16::from_f32(v);
        match self {
            Part::High => high,
            Part::Low => bf16::from_f32(v - high.to_f32()),
        }
    }
}

/// One segment of the shared dimension: `in_dim` rounded up to a whole tile step.
fn segment(in_dim: usize) -> usize {
    in_dim.next_multiple_of(K_STEP)
}

/// The packed shared dimension: one segment per part of the split.
fn padded_depth(in_dim: usize, split: Split) -> usize {
    segment(in_dim) * split.weight_parts().len()
}

/// Panels (of 16 output columns) in the packed weight: a whole number of pairs.
fn panels(out_dim: usize) -> usize {
    out_dim.div_ceil(2 * PANEL) * 2
}

/// Length (in bf16 values) of a packed weight.
pub fn packed_len(in_dim: usize, out_dim: usize, split: Split) -> usize {
    panels(out_dim) * padded_depth(in_dim, split) * PANEL
}

/// Packs `w` (out_dim × in_dim, row-major f32, Hugging Face layout) into `packed` (zeroed,
/// [`packed_len`] long; best 64-byte aligned so no tile row straddles two cache lines).
pub fn pack_weight(w: &[f32], (in_dim, out_dim): (usize, usize), split: Split, packed: &mut [bf16]) {
    let segment = segment(in_dim);
    let panel_len = padded_depth(in_dim, split) * PANEL;
    packed.par_chunks_mut(panel_len).enumerate().for_each(|(p, panel)| {
        for col in 0..PANEL.min(out_dim.saturating_sub(p * PANEL)) {
            for (s, part) in split.weight_parts().iter().enumerate() {
                for (k, &v) in w[(p * PANEL + col) * in_dim..][..in_dim].iter().enumerate() {
                    let k = s * segment + k;
                    panel[(k / 2) * 2 * PANEL + col * 2 + k % 2] = part.of(v);
                }
            }
        }
    });
}

/// `x W^T + b` with `w` packed by [`pack_weight`] with the same split.
pub fn product(
    x: &[f32],
    w: &[bf16],
    bias: &[f32],
    rows: usize,
    (in_dim, out_dim): (usize, usize),
    split: Split,
) -> Vec<f32> {
    let depth = padded_depth(in_dim, split);
    let panels = panels(out_dim);
    debug_assert_eq!(w.len(), packed_len(in_dim, out_dim, split));
    let run = |xb: &mut Vec<bf16>| {
        to_bf16_tiles(x, rows, in_dim, split, xb);
        // Bias padded to whole panels: it seeds the accumulators (a tile load with row stride 0).
        let mut bias_padded = vec![0f32; panels * PANEL];
        bias_padded[..out_dim].copy_from_slice(bias);

        let mut out: Vec<f32> = Vec::with_capacity(rows * out_dim);
        let out_ptr = SharedOut(out.as_mut_ptr());
        let pairs = panels / 2;
        let threads = rayon::current_num_threads().min(pairs).max(1);
        let chunk_rows = (CHUNK_BYTES / (depth * 2)).next_multiple_of(BLOCK_ROWS).max(BLOCK_ROWS);
        (0..threads).into_par_iter().for_each(|t| {
            let _tiles = TileState::configure();
            let mut scratch = Scratch([0f32; 4 * TILE_ROWS * PANEL]);
            for chunk in (0..rows).step_by(chunk_rows) {
                for pair in t * pairs / threads..(t + 1) * pairs / threads {
                    for row in (chunk..rows.min(chunk + chunk_rows)).step_by(BLOCK_ROWS) {
                        let block = Block {
                            x: xb[row * depth..].as_ptr(),
                            depth,
                            w: w[2 * pair * depth * PANEL..].as_ptr(),
                            bias: bias_padded[2 * pair * PANEL..].as_ptr(),
                            row,
                            col: 2 * pair * PANEL,
                        };
                        // SAFETY: the tiles are configured on this thread; x has BLOCK_ROWS
                        // rows of `depth` from `row` (padded to a whole block), w two panels of
                        // `depth` pairs from `pair`, bias two panels; the block writes only its
                        // own rows and columns (this thread's panels) of out.
                        unsafe { block.run(&mut scratch, out_ptr, rows, out_dim) };
                    }
                }
            }
        });
        // SAFETY: the blocks above wrote every (row, column) of the output exactly once.
        unsafe { out.set_len(rows * out_dim) };
        out
    };
    ACTIVATIONS.with(|buffer| match buffer.try_borrow_mut() {
        Ok(mut xb) => run(&mut xb),
        // Re-entered from a task this thread picked up while waiting for its own: its own buffer.
        Err(_) => run(&mut Vec::new()),
    })
}

thread_local! {
    /// The caller's bf16 activations, reused across calls: a fresh buffer of up to 29 MB per
    /// layer (fc2 at batch 32, three-way split) cost page faults and zeroing, ~12% of the tower.
    static ACTIVATIONS: std::cell::RefCell<Vec<bf16>> = const { std::cell::RefCell::new(Vec::new()) };
}

/// Writes the rows of `x` into `xb` as the split's bf16 parts, one segment each, zero-padded
/// to whole blocks of rows and segments (every element is written: `xb` is reused).
fn to_bf16_tiles(x: &[f32], rows: usize, in_dim: usize, split: Split, xb: &mut Vec<bf16>) {
    let segment = segment(in_dim);
    let depth = padded_depth(in_dim, split);
    xb.resize(rows.next_multiple_of(BLOCK_ROWS) * depth, bf16::ZERO);
    let (real, padding) = xb.split_at_mut(rows * depth);
    real.par_chunks_mut(depth).zip(x.par_chunks(in_dim)).for_each(|(dst, src)| {
        for (part, dst) in split.activation_parts().iter().zip(dst.chunks_mut(segment)) {
            let (values, tail) = dst.split_at_mut(in_dim);
            for (d, &s) in values.iter_mut().zip(src) {
                *d = part.of(s);
            }
            tail.fill(bf16::ZERO);
        }
    });
    padding.fill(bf16::ZERO);
}

/// Holds this thread's tile configuration; releases the tile state when dropped so the OS need
/// not save 8 KB of tiles at every context switch.
struct TileState;

/// `ldtilecfg`'s 64-byte operand: palette 1, every tile 16 rows of 64 bytes.
#[repr(C, align(64))]
struct TileConfig {
    palette: u8,
    start_row: u8,
    reserved: [u8; 14],
    bytes_per_row: [u16; 16],
    rows: [u8; 16],
}

impl TileState {
    fn configure() -> Self {
        let mut config =
            TileConfig { palette: 1, start_row: 0, reserved: [0; 14], bytes_per_row: [0; 16], rows: [0; 16] };
        for tile in 0..8 {
            config.bytes_per_row[tile] = 64;
            config.rows[tile] = TILE_ROWS as u8;
        }
        // SAFETY: callers check `available()` first; the operand is a valid palette-1 config.
        unsafe { isa::load_config(&config) };
        TileState
    }
}

impl Drop for TileState {
    fn drop(&mut self) {
        // SAFETY: tiles were configured by `configure` on this thread.
        unsafe { isa::release() };
    }
}

#[repr(C, align(64))]
struct Scratch([f32; 4 * TILE_ROWS * PANEL]);

/// One 32 × 32 block of output: rows `row..row+32`, columns `col..col+32`.
#[cfg_attr(not(target_arch = "x86_64"), allow(dead_code))] // only the tile asm reads the pointers
struct Block {
    x: *const bf16,
    depth: usize,
    w: *const bf16,
    bias: *const f32,
    row: usize,
    col: usize,
}

impl Block {
    /// # Safety
    /// See `product`: tiles configured, every pointer valid for one whole block.
    unsafe fn run(&self, scratch: &mut Scratch, out: SharedOut, rows: usize, out_dim: usize) {
        isa::multiply(self, scratch);
        // Scratch holds 32 rows × 32 columns; copy the live part into the output.
        let live_rows = BLOCK_ROWS.min(rows - self.row);
        let live_cols = (2 * PANEL).min(out_dim - self.col);
        for r in 0..live_rows {
            let src = &scratch.0[r * 2 * PANEL..][..live_cols];
            let dst = out.get().add((self.row + r) * out_dim + self.col);
            std::ptr::copy_nonoverlapping(src.as_ptr(), dst, live_cols);
        }
    }
}

/// The tile instructions, in `asm!` (Rust's AMX intrinsics are not stable).
#[cfg(target_arch = "x86_64")]
mod isa {
    use std::arch::asm;

    use super::{Block, Scratch, TileConfig, K_STEP, PANEL, TILE_ROWS};

    pub unsafe fn load_config(config: &TileConfig) {
        asm!("ldtilecfg [{}]", in(reg) config, options(nostack, readonly));
    }

    pub unsafe fn release() {
        asm!("tilerelease", options(nostack, nomem));
    }

    /// `scratch` (32 × 32, row-major) = bias + the block's product over the whole depth.
    pub unsafe fn multiply(block: &Block, scratch: &mut Scratch) {
        let c = scratch.0.as_mut_ptr();
        // Accumulators: tmm0 = rows 0-15 × panel 0, tmm1 = rows 0-15 × panel 1, tmm2/tmm3 the
        // same for rows 16-31. Activations in tmm4/tmm5, weights in tmm6/tmm7.
        asm!(
            "tileloadd tmm0, [{bias} + {zero}*1]",
            "tileloadd tmm1, [{bias} + {zero}*1 + 64]",
            "tileloadd tmm2, [{bias} + {zero}*1]",
            "tileloadd tmm3, [{bias} + {zero}*1 + 64]",
            "2:",
            // Ask for the weights 8 steps ahead (8 KB per panel, 16 lines each): streamed from
            // memory for a short text query, tile loads alone wait on every miss (8-token
            // query 7.7 -> 6.4-7.0 ms; no change for batches, whose weights sit in L2).
            ".irp line, 0, 64, 128, 192, 256, 320, 384, 448, 512, 576, 640, 704, 768, 832, 896, 960",
            "prefetcht0 [{w0} + 8192 + \\line]",
            "prefetcht0 [{w1} + 8192 + \\line]",
            ".endr",
            "tileloadd tmm4, [{x0} + {xs}*1]",
            "tileloadd tmm6, [{w0} + {ws}*1]",
            "tileloadd tmm7, [{w1} + {ws}*1]",
            "tdpbf16ps tmm0, tmm4, tmm6",
            "tileloadd tmm5, [{x1} + {xs}*1]",
            "tdpbf16ps tmm1, tmm4, tmm7",
            "tdpbf16ps tmm2, tmm5, tmm6",
            "tdpbf16ps tmm3, tmm5, tmm7",
            "add {x0}, 64",
            "add {x1}, 64",
            "add {w0}, 1024",
            "add {w1}, 1024",
            "dec {steps}",
            "jnz 2b",
            "tilestored [{c} + {cs}*1], tmm0",
            "tilestored [{c} + {cs}*1 + 64], tmm1",
            "tilestored [{c2} + {cs}*1], tmm2",
            "tilestored [{c2} + {cs}*1 + 64], tmm3",
            bias = in(reg) block.bias,
            zero = in(reg) 0usize,
            x0 = inout(reg) block.x => _,
            x1 = inout(reg) block.x.add(TILE_ROWS * block.depth) => _,
            xs = in(reg) block.depth * 2,
            w0 = inout(reg) block.w => _,
            w1 = inout(reg) block.w.add(block.depth * PANEL) => _,
            ws = in(reg) 64usize,
            steps = inout(reg) block.depth / K_STEP => _,
            c = in(reg) c,
            c2 = in(reg) c.add(TILE_ROWS * 2 * PANEL),
            cs = in(reg) 2 * PANEL * 4,
            options(nostack),
        );
    }
}

/// No tile unit off x86-64: `available()` is false there, so none of these is ever called.
#[cfg(not(target_arch = "x86_64"))]
mod isa {
    use super::{Block, Scratch, TileConfig};

    pub unsafe fn load_config(_: &TileConfig) {
        unreachable!("AMX exists only on x86-64")
    }

    pub unsafe fn release() {}

    pub unsafe fn multiply(_: &Block, _: &mut Scratch) {
        unreachable!("AMX exists only on x86-64")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn packed(w: &[f32], (in_dim, out_dim): (usize, usize), split: Split) -> Vec<bf16> {
        let mut packed = vec![bf16::ZERO; packed_len(in_dim, out_dim, split)];
        pack_weight(w, (in_dim, out_dim), split, &mut packed);
        packed
    }

    /// The three-way split against a plain f32 loop: near-f32 accuracy (2^-16 relative per
    /// product, where one bf16 rounding is 2^-8), on values with more bits than bf16 holds.
    #[test]
    fn three_way_split_is_accurate_to_about_16_bits() {
        if !available() {
            eprintln!("skipped: this CPU has no AMX-BF16");
            return;
        }
        let (rows, in_dim, out_dim) = (37, 300, 70);
        let x: Vec<f32> = (0..rows * in_dim).map(|i| ((i * 7919) % 1013) as f32 / 1013.0 - 0.5).collect();
        let w: Vec<f32> = (0..out_dim * in_dim).map(|i| ((i * 104_729) % 997) as f32 / 997.0 - 0.5).collect();
        let bias = vec![0.5f32; out_dim];
        let run = |split| product(&x, &packed(&w, (in_dim, out_dim), split), &bias, rows, (in_dim, out_dim), split);
        let (three, once) = (run(Split::ThreeWay), run(Split::Once));
        let (mut worst_three, mut worst_once) = (0f64, 0f64);
        for r in 0..rows {
            for c in 0..out_dim {
                // Scale of the error: the sum of |terms|, as cancellation leaves no relative bound.
                let terms = (0..in_dim).map(|k| x[r * in_dim + k] as f64 * w[c * in_dim + k] as f64);
                let (want, scale) = terms.fold((bias[c] as f64, 0.0), |(s, a), t| (s + t, a + t.abs()));
                worst_three = worst_three.max((three[r * out_dim + c] as f64 - want).abs() / scale);
                worst_once = worst_once.max((once[r * out_dim + c] as f64 - want).abs() / scale);
            }
        }
        assert!(worst_three < 2e-5, "three-way split error {worst_three:e}");
        assert!(worst_once > 10.0 * worst_three, "one rounding {worst_once:e} vs three-way {worst_three:e}");
    }

    /// The AMX product against a plain loop over the same bf16-rounded inputs, on ragged shapes
    /// (rows, depth and columns that are not whole tiles), at a size with several row chunks,
    /// and in an order that reuses the activation buffer at smaller sizes.
    #[test]
    fn amx_product_matches_a_plain_matmul_of_bf16_inputs() {
        if !available() {
            eprintln!("skipped: this CPU has no AMX-BF16");
            return;
        }
        let shapes = [(1, 32, 32), (7, 45, 53), (33, 64, 17), (70, 100, 96), (300, 1000, 40)];
        // Largest last, then smallest again: the reused activation buffer must not leak stale
        // values into the padding of a smaller call.
        for &(rows, in_dim, out_dim) in shapes.iter().chain(shapes.iter().rev()) {
            let x: Vec<f32> = (0..rows * in_dim).map(|i| ((i * 37) % 23) as f32 / 7.0 - 1.5).collect();
            let w: Vec<f32> = (0..out_dim * in_dim).map(|i| ((i * 13) % 19) as f32 / 9.0 - 1.0).collect();
            let bias: Vec<f32> = (0..out_dim).map(|i| i as f32 * 0.25 - 2.0).collect();
            let weight = packed(&w, (in_dim, out_dim), Split::Once);
            let got = product(&x, &weight, &bias, rows, (in_dim, out_dim), Split::Once);
            let round = |v: f32| bf16::from_f32(v).to_f32();
            for r in 0..rows {
                for c in 0..out_dim {
                    let want =
                        bias[c] + (0..in_dim).map(|k| round(x[r * in_dim + k]) * round(w[c * in_dim + k])).sum::<f32>();
                    let got = got[r * out_dim + c];
                    assert!(
                        (got - want).abs() <= 1e-3 * want.abs().max(1.0),
                        "({rows},{in_dim},{out_dim}) at ({r},{c}): {got} vs {want}"
                    );
                }
            }
        }
    }
}
