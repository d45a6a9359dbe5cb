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
//! kind runs them at ~3.3 TFLOP/s from L1 (measured), seven times its f32 AVX-512 peak. The
//! kernel keeps four f32 accumulator tiles (32 rows × 32 columns of output) and feeds them two
//! tiles of activations and two of weights per step of 32 along the shared dimension.
//!
//! Layouts (bf16 = `u16` bits), both in the order the kernel reads them, so each is one
//! sequential stream of 2 KB per step:
//! - weights: per pair of panels of 16 output columns, per step, the two panels' tiles side by
//!   side, each 16 rows of 16 × (k, k+1) pairs (the "VNNI" order `tdpbf16ps` expects);
//!   zero-padded to a whole number of panel pairs and to `depth`: one (or three) segments of
//!   `in_dim` rounded up to a multiple of 32;
//! - activations: per block of 32 rows, per step, the tiles of rows 0-15 and 16-31 side by side;
//!   zero-padded, converted per call (or per row chunk and depth chunk, see `product`).
//!
//! Attention's two products (`attention.rs`) run on the same kernel, per (sequence, head): q,
//! then the softmax's probabilities, as activations; k, then v, as weights, read in place from
//! the fused projection (`weight_tiles`); the scores and the context in f32.

use std::ops::Range;

use half::bf16;
use rayon::prelude::*;

use super::linear::TileEpilogue;
use super::runs::Runs;
use super::SharedOut;

/// Output columns per weight panel (one accumulator tile is 16 × 16 f32).
const PANEL: usize = 16;
/// Rows of one tile (activations and accumulators).
const TILE_ROWS: usize = 16;
/// Shared-dimension step of one tile multiply: 32 bf16 = one 64-byte tile row.
const K_STEP: usize = 32;
/// bf16 values in one tile: 16 rows of 64 bytes.
const TILE_LEN: usize = TILE_ROWS * K_STEP;
const CACHE_LINE: usize = 64;
/// Output rows per accumulator block: two tiles of activation rows.
const BLOCK_ROWS: usize = 2 * TILE_ROWS;
/// Steps of the shared dimension per chunk (see `product`): 4096 bf16 values deep. Every block
/// of a chunk ends by draining the tile unit and storing its accumulators (~0.35 µs), so chunks
/// are kept long: 64 steps measured 2-3% slower on the image tower.
const MAX_CHUNK_STEPS: usize = 128;
/// Activation bytes per chunk of rows, kept in L2 while the weights pass over them.
const ROW_CHUNK_BYTES: usize = 1024 * 1024;
/// Weight bytes per group of panel pairs, kept in L2 while each block of a row chunk passes.
const WEIGHT_GROUP_BYTES: usize = 512 * 1024;

/// Whether this CPU and OS run AMX bf16 tile multiplies and [`super::isa`] picked them
/// (`IMGSEARCH_AMX=0` or `IMGSEARCH_ISA` below `amx` turn them off; then f32 runs on
/// AVX-512/AVX2 as on other CPUs).
pub fn available() -> bool {
    super::isa() == super::Isa::Amx
}

/// Whether the CPU has AMX bf16 and Linux lets this process use it: the call asks Linux for the
/// tile state (`ARCH_REQ_XCOMP_PERM`), which every process must do before its first tile
/// instruction (once, from [`super::isa`]).
#[cfg(all(target_arch = "x86_64", target_os = "linux"))]
pub(super) fn detect() -> bool {
    const ARCH_REQ_XCOMP_PERM: libc::c_long = 0x1023;
    const XFEATURE_XTILEDATA: libc::c_long = 18;
    // CPUID leaf 7: EDX bit 22 = AMX-BF16, bit 24 = AMX-TILE.
    let edx = std::arch::x86_64::__cpuid_count(7, 0).edx;
    if edx & (1 << 22) == 0 || edx & (1 << 24) == 0 {
        return false;
    }
    // Activations are rounded to bf16 with AVX512-BF16 (every AMX CPU has it; a hypervisor
    // could still hide it).
    if !std::is_x86_feature_detected!("avx512bf16") {
        return false;
    }
    // SAFETY: arch_prctl with these arguments only changes this process's permissions.
    unsafe { libc::syscall(libc::SYS_arch_prctl, ARCH_REQ_XCOMP_PERM, XFEATURE_XTILEDATA) == 0 }
}

#[cfg(not(all(target_arch = "x86_64", target_os = "linux")))]
pub(super) fn detect() -> bool {
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
pub(crate) enum Part {
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
    let pair_len = 2 * padded_depth(in_dim, split) * PANEL;
    packed.par_chunks_mut(pair_len).enumerate().for_each(|(pair, packed)| {
        for (half, first) in [2 * pair * PANEL, (2 * pair + 1) * PANEL].into_iter().enumerate() {
            for col in 0..PANEL.min(out_dim.saturating_sub(first)) {
                for (s, part) in split.weight_parts().iter().enumerate() {
                    for (k, &v) in w[(first + col) * in_dim..][..in_dim].iter().enumerate() {
                        let k = s * segment + k;
                        let tile = 2 * (k / K_STEP) + half;
                        packed[tile * TILE_LEN + (k % K_STEP / 2) * 2 * PANEL + col * 2 + k % 2] = part.of(v);
                    }
                }
            }
        }
    });
}

/// `x W^T + b` with `w` packed by [`pack_weight`] with the same split, then `epilogue`.
///
/// Blocked for the caches (2 MB of L2 per core here; tile loads that miss it ran at a quarter of
/// the speed of those that hit it): the rows go in chunks whose activations fill
/// [`ROW_CHUNK_BYTES`], and each chunk stays in L2 while the weights pass over it in groups of
/// panel pairs ([`WEIGHT_GROUP_BYTES`]), each group over every block of the chunk. When the rows
/// do not fit one chunk, the shared dimension is cut into chunks of at most [`MAX_CHUNK_STEPS`]
/// so row chunks stay large (fc2 at batch 32 in the three-way split is 9216 deep: 32 rows would
/// fill a chunk), and between depth chunks the accumulators go through the output, which is laid
/// out in whole blocks for that.
///
/// With a row chunk for every thread, each thread converts its own chunks' activations into its
/// own buffer, one depth chunk at a time, so the tiles are written into its L2 rather than to
/// memory and read back, and passes every panel pair over them (the conversion stays ~7% of the
/// f32 image tower at batch 32, bound by reading the f32 input; the tower gained 7%). With fewer
/// rows, the input is converted once and the threads share out the panel pairs. Either way the
/// work goes in [`Runs`], so a product does not wait for a thread whose core is busy with
/// something else. Each block of rows passes over a group's panel pairs in one call (a strip, see
/// `isa::multiply`), and the epilogue follows the strip's last depth chunk, while it is in cache.
pub(super) fn product(
    x: &[f32],
    w: &[bf16],
    bias: &[f32],
    rows: usize,
    (in_dim, out_dim): (usize, usize),
    split: Split,
    epilogue: TileEpilogue,
) -> Vec<f32> {
    let depth = padded_depth(in_dim, split);
    let panels = panels(out_dim);
    let (padded_rows, padded_cols) = (rows.next_multiple_of(BLOCK_ROWS), panels * PANEL);
    debug_assert_eq!(w.len(), packed_len(in_dim, out_dim, split));
    let steps = depth / K_STEP;
    // Whole depth when every row fits one chunk: chunking the depth would only add trips of the
    // accumulators through memory.
    let chunk_steps = match padded_rows * depth * 2 <= ROW_CHUNK_BYTES {
        true => steps,
        false => steps.div_ceil(steps.div_ceil(MAX_CHUNK_STEPS)),
    };
    let depth_chunks: Vec<Range<usize>> =
        (0..steps).step_by(chunk_steps).map(|s| s..steps.min(s + chunk_steps)).collect();
    let chunk_rows = (ROW_CHUNK_BYTES / (chunk_steps * K_STEP * 2)) / BLOCK_ROWS * BLOCK_ROWS;
    let chunk_rows = chunk_rows.clamp(BLOCK_ROWS, padded_rows);
    let row_chunks = padded_rows.div_ceil(chunk_rows);
    let chunk = |c: usize| c * chunk_rows..padded_rows.min((c + 1) * chunk_rows);
    let pairs = panels / 2;
    let group = (WEIGHT_GROUP_BYTES / (chunk_steps * 2 * TILE_LEN * 2)).max(1);

    // Bias padded to whole panels: it seeds the accumulators (a tile load with row stride 0).
    let mut bias_padded = vec![0f32; padded_cols];
    bias_padded[..out_dim].copy_from_slice(bias);
    let mut out: Vec<f32> = Vec::with_capacity(padded_rows * padded_cols);
    let layer = Layer {
        w,
        depth,
        steps,
        bias: &bias_padded,
        out: SharedOut(out.as_mut_ptr()),
        padded_cols,
        rows,
        out_dim,
        epilogue,
    };
    let pool = rayon::current_num_threads().max(1);
    if pool > 1 && row_chunks >= pool {
        let runs = Runs::new(pool, |t| t * row_chunks / pool);
        (0..pool).into_par_iter().for_each(|t| {
            let _tiles = TileState::configure();
            with_activation_buffer(|buffer| {
                while let Some((_, c)) = runs.take_own(t).or_else(|| runs.take_left_over()) {
                    for range in &depth_chunks {
                        let xb = to_bf16_tiles(x, rows, (in_dim, split), chunk(c), range.clone(), buffer, false);
                        for first_pair in (0..pairs).step_by(group) {
                            for row in chunk(c).step_by(BLOCK_ROWS) {
                                let x = xb[(row - chunk(c).start) * range.len() * K_STEP..].as_ptr();
                                // SAFETY: the tiles are configured on this thread; `x` holds this
                                // block's activations over `range`.
                                unsafe {
                                    layer.strip(x, row, first_pair..pairs.min(first_pair + group), range.clone())
                                };
                            }
                        }
                    }
                }
            })
        });
    } else {
        with_activation_buffer(|buffer| {
            let xb = to_bf16_tiles(x, rows, (in_dim, split), 0..padded_rows, 0..steps, buffer, true);
            let threads = pool.min(pairs);
            // Thread t's own run: (row chunk, group of its pairs), the groups passing over each
            // row chunk in turn.
            let mine = |t: usize| t * pairs / threads..(t + 1) * pairs / threads;
            let groups = |t: usize| mine(t).len().div_ceil(group);
            let starts: Vec<usize> = (0..=threads).map(|t| (0..t).map(groups).sum::<usize>() * row_chunks).collect();
            for range in &depth_chunks {
                // One depth chunk after the other: a block's later chunks add to its sum.
                let runs = Runs::new(threads, |t| starts[t]);
                (0..threads).into_par_iter().for_each(|t| {
                    let _tiles = TileState::configure();
                    while let Some((run, unit)) = runs.take_own(t).or_else(|| runs.take_left_over()) {
                        let (c, g) = ((unit - starts[run]) / groups(run), (unit - starts[run]) % groups(run));
                        let first_pair = mine(run).start + g * group;
                        for row in chunk(c).step_by(BLOCK_ROWS) {
                            let x = xb[row * depth + range.start * BLOCK_ROWS * K_STEP..].as_ptr();
                            let strip = first_pair..mine(run).end.min(first_pair + group);
                            // SAFETY: the tiles are configured on this thread; `x` holds this
                            // block's activations from `range`'s first step.
                            unsafe { layer.strip(x, row, strip, range.clone()) };
                        }
                    }
                });
            }
        });
    }
    // SAFETY: the blocks above wrote every element of the padded output.
    unsafe { out.set_len(padded_rows * padded_cols) };
    if padded_cols != out_dim {
        // Drop the padding: rows move down in place, the first one stays.
        for r in 1..rows {
            out.copy_within(r * padded_cols..r * padded_cols + out_dim, r * out_dim);
        }
    }
    out.truncate(rows * out_dim);
    out
}

/// Length (in bf16 values) of [`activation_tiles`]'s output for `rows` rows of `in_dim`.
pub(super) fn activation_len(rows: usize, in_dim: usize, split: Split) -> usize {
    rows.next_multiple_of(BLOCK_ROWS) * padded_depth(in_dim, split)
}

/// `rows` rows of `src` (`in_dim` values each, rows `stride` apart) as the activation tiles of
/// a product (module comment) over the split's whole depth, into `tiles`
/// ([`activation_len`] long; the last block's missing rows are zeros).
pub(super) fn activation_tiles(
    src: &[f32],
    rows: usize,
    (in_dim, stride): (usize, usize),
    split: Split,
    tiles: &mut [bf16],
) {
    let steps = padded_depth(in_dim, split) / K_STEP;
    debug_assert_eq!(tiles.len(), activation_len(rows, in_dim, split));
    for (b, block) in tiles.chunks_exact_mut(BLOCK_ROWS * steps * K_STEP).enumerate() {
        let first = b * BLOCK_ROWS;
        let live = rows.saturating_sub(first).min(BLOCK_ROWS);
        let src = if live > 0 { &src[first * stride..] } else { &[] };
        let parts = split.activation_parts();
        // SAFETY: callers check `available()` (AVX512-BF16 with it); `block` holds 32 rows of
        // `steps`, `src` `live` rows `stride` apart.
        unsafe { isa::block_rows(src, live, (in_dim, stride), parts, segment(in_dim), 0..steps, block) };
    }
}

/// A weight of `in_dim` × `out_dim` whose value at (k, c) is `src[k * strides.0 + c * strides.1]`,
/// read in place into `tiles` ([`packed_len`] long) as [`pack_weight`] lays it out.
pub(super) fn weight_tiles(
    src: &[f32],
    (in_dim, out_dim): (usize, usize),
    strides: (usize, usize),
    split: Split,
    tiles: &mut [bf16],
) {
    debug_assert_eq!(tiles.len(), packed_len(in_dim, out_dim, split));
    // SAFETY: callers check `available()` (AVX512-BF16 with it); `isa::weight_tiles` asserts
    // that it reads inside `src`.
    unsafe { isa::weight_tiles(src, (in_dim, out_dim), strides, split.weight_parts(), segment(in_dim), tiles) }
}

/// The softmax of each of the first `rows` rows of `scores` (`width` apart, a multiple of 32)
/// over its first `keys` values (with `causal`, row r over those up to r), as the activation
/// tiles of its product with the values: [`activation_tiles`] of the probabilities, `width`
/// deep. `scores` is overwritten.
pub(super) fn softmax_tiles(
    scores: &mut [f32],
    rows: usize,
    (width, keys): (usize, usize),
    causal: bool,
    split: Split,
    tiles: &mut [bf16],
) {
    debug_assert_eq!(tiles.len(), activation_len(rows, width, split));
    for (b, block) in tiles.chunks_exact_mut(BLOCK_ROWS * padded_depth(width, split)).enumerate() {
        let first = b * BLOCK_ROWS;
        let live = rows.saturating_sub(first).min(BLOCK_ROWS);
        let scores = if live > 0 { &mut scores[first * width..] } else { &mut [] };
        let parts = split.activation_parts();
        // SAFETY: callers check `available()` (AVX512-BF16 with it); `isa::softmax_block`
        // asserts that it stays inside `scores` and `block`.
        unsafe { isa::softmax_block(scores, live, (width, keys), causal.then_some(first), parts, block) };
    }
}

/// `x w` into `out` for each block of 32 rows of `x` ([`activation_tiles`]) and every panel pair
/// of `w` ([`weight_tiles`]), summed from zero: 32 rows of `out` per block, `out_stride` apart,
/// each as wide as the panels.
///
/// # Safety
/// The tiles must be configured on this thread ([`TileState`]), and AMX available.
pub(super) unsafe fn multiply_blocks(
    x: &[bf16],
    w: &[bf16],
    (in_dim, out_dim): (usize, usize),
    split: Split,
    zeros: &[f32],
    out: &mut [f32],
    out_stride: usize,
) {
    let steps = padded_depth(in_dim, split) / K_STEP;
    let pairs = panels(out_dim) / 2;
    assert!(zeros.len() >= 2 * PANEL * pairs && out_stride >= 2 * PANEL * pairs);
    assert!(w.len() >= pairs * 2 * steps * TILE_LEN);
    for (b, block) in x.chunks_exact(BLOCK_ROWS * steps * K_STEP).enumerate() {
        assert!(out.len() >= (b * BLOCK_ROWS + BLOCK_ROWS - 1) * out_stride + 2 * PANEL * pairs);
        isa::multiply(&Strip {
            x: block.as_ptr(),
            w: w.as_ptr(),
            steps,
            pairs,
            pair_len: 2 * steps * TILE_LEN,
            seed: Seed::Bias(zeros.as_ptr()),
            out: out[b * BLOCK_ROWS * out_stride..].as_mut_ptr(),
            out_stride,
        });
    }
}

/// What every block of one product shares.
struct Layer<'a> {
    w: &'a [bf16],
    depth: usize,
    steps: usize,
    /// Padded to whole panel pairs.
    bias: &'a [f32],
    /// (padded rows × `padded_cols`), written block by block.
    out: SharedOut,
    padded_cols: usize,
    rows: usize,
    out_dim: usize,
    epilogue: TileEpilogue<'a>,
}

impl Layer<'_> {
    /// The 32-row strip of output at `row` over the panel pairs `pairs`, over the steps `range`
    /// of the shared dimension, seeded with the bias in the first range; after the last, the
    /// epilogue.
    ///
    /// # Safety
    /// The tiles must be configured on this thread; `x` must hold the block's activation tiles
    /// for `range`, one step after the other; no other thread may touch this strip meanwhile.
    unsafe fn strip(&self, x: *const bf16, row: usize, pairs: Range<usize>, range: Range<usize>) {
        let col = 2 * pairs.start * PANEL;
        let out = self.out.get().wrapping_add(row * self.padded_cols + col);
        isa::multiply(&Strip {
            x,
            w: self.w[2 * pairs.start * self.depth * PANEL + range.start * 2 * TILE_LEN..].as_ptr(),
            steps: range.len(),
            pairs: pairs.len(),
            pair_len: 2 * self.depth * PANEL,
            seed: if range.start == 0 { Seed::Bias(self.bias[col..].as_ptr()) } else { Seed::Sum },
            out,
            out_stride: self.padded_cols,
        });
        if range.end == self.steps && row < self.rows {
            let (rows, cols) = (BLOCK_ROWS.min(self.rows - row), (2 * PANEL * pairs.len()).min(self.out_dim - col));
            self.epilogue.apply(out, self.padded_cols, (row, col), rows, cols);
        }
    }
}

/// Runs `f` with this thread's activation buffer (a fresh one if a task this thread picked up
/// while waiting for its own holds it).
fn with_activation_buffer<T>(f: impl FnOnce(&mut Vec<bf16>) -> T) -> T {
    ACTIVATIONS.with(|buffer| match buffer.try_borrow_mut() {
        Ok(mut xb) => f(&mut xb),
        Err(_) => f(&mut Vec::new()),
    })
}

thread_local! {
    /// Activations in bf16 tiles, reused across calls: a fresh buffer of up to 29 MB per layer
    /// (fc2 at batch 32, three-way split) cost page faults and zeroing, ~12% of the tower.
    static ACTIVATIONS: std::cell::RefCell<Vec<bf16>> = const { std::cell::RefCell::new(Vec::new()) };
}

/// Writes rows `row_range` of `x` (a whole number of blocks; rows past `rows` are zeros) over
/// the steps `steps` of the split's shared dimension (one segment per part) into `xb`, in the
/// tile order of the module comment: a tile load reads 16 consecutive lines, not 16 rows a
/// whole depth apart. Every element is written (`xb` is reused). Returns the tiles, which start
/// on a cache line; `parallel` converts the blocks on the rayon pool.
fn to_bf16_tiles<'a>(
    x: &[f32],
    rows: usize,
    (in_dim, split): (usize, Split),
    row_range: Range<usize>,
    steps: Range<usize>,
    xb: &'a mut Vec<bf16>,
    parallel: bool,
) -> &'a [bf16] {
    let block_len = BLOCK_ROWS * steps.len() * K_STEP;
    let len = row_range.len() / BLOCK_ROWS * block_len;
    let xb = on_cache_lines(xb, len);
    let convert = |(b, tiles): (usize, &mut [bf16])| {
        let first = (row_range.start + b * BLOCK_ROWS).min(rows);
        let live = (first + BLOCK_ROWS).min(rows) - first;
        let (src, parts) = (&x[first * in_dim..(first + live) * in_dim], split.activation_parts());
        // SAFETY: `available()` (checked by every caller) includes AVX512-BF16; `tiles` holds
        // 32 rows of `steps`, `src` whole rows of `in_dim`.
        unsafe { isa::block_rows(src, live, (in_dim, in_dim), parts, segment(in_dim), steps.clone(), tiles) };
    };
    match parallel {
        true => xb.par_chunks_mut(block_len).enumerate().for_each(convert),
        false => xb.chunks_mut(block_len).enumerate().for_each(convert),
    }
    xb
}

/// `len` values of `buffer` from its first cache line on, the buffer grown (with zeros) to fit:
/// a tile row that straddles two lines costs two loads. Grown, never shrunk: layers alternate in
/// size, and `resize` down then up zeroed the buffer again on every larger layer (2% of the f32
/// image tower).
pub(super) fn on_cache_lines<T: Clone + Default>(buffer: &mut Vec<T>, len: usize) -> &mut [T] {
    let needed = len + CACHE_LINE / std::mem::size_of::<T>();
    if buffer.len() < needed {
        buffer.resize(needed, T::default());
    }
    let skip = buffer.as_ptr().align_offset(CACHE_LINE);
    &mut buffer[skip..skip + len]
}

/// Holds this thread's tile configuration; releases the tile state when dropped so the OS need
/// not save 8 KB of tiles at every context switch.
pub(super) struct TileState;

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
    pub(super) fn configure() -> Self {
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

/// Where a block's accumulators start.
#[cfg_attr(not(target_arch = "x86_64"), allow(dead_code))]
enum Seed {
    /// From the bias (first chunk of the shared dimension).
    Bias(*const f32),
    /// From the block's output, the sum over the chunks before.
    Sum,
}

/// One strip of output, 32 rows by a run of panel pairs, over one chunk of the shared dimension:
/// a 32 × 32 block per pair, each over the same activations.
#[cfg_attr(not(target_arch = "x86_64"), allow(dead_code))] // only the tile asm reads the pointers
struct Strip {
    x: *const bf16,
    /// The first pair's weights at the chunk's first step.
    w: *const bf16,
    steps: usize,
    pairs: usize,
    /// bf16 values from one pair's weights to the next's.
    pair_len: usize,
    seed: Seed,
    /// The strip's first element, and the output's row length (in f32).
    out: *mut f32,
    out_stride: usize,
}

/// The tile instructions, in `asm!` (Rust's AMX intrinsics are not stable).
#[cfg(target_arch = "x86_64")]
mod isa {
    use std::arch::asm;

    use std::arch::x86_64::*;

    use half::bf16;

    use super::{Part, Seed, Strip, TileConfig, BLOCK_ROWS, K_STEP, PANEL, TILE_LEN, TILE_ROWS};

    /// Writes `live` rows of `src` (up to 32, `in_dim` values each, rows `stride` apart; missing
    /// rows are zeros) into `tiles` (one block of rows over `steps` of the split's shared
    /// dimension, see `to_bf16_tiles`), each step as its segment's part, 32 values per
    /// instruction (rounding one value at a time took 23-31% of a layer).
    #[target_feature(enable = "avx512f,avx512bw,avx512bf16")]
    pub unsafe fn block_rows(
        src: &[f32],
        live: usize,
        (in_dim, stride): (usize, usize),
        parts: &[Part],
        segment: usize,
        steps: std::ops::Range<usize>,
        tiles: &mut [bf16],
    ) {
        let segment_steps = segment / K_STEP;
        assert!(live <= BLOCK_ROWS && tiles.len() == BLOCK_ROWS * steps.len() * K_STEP);
        assert!(live == 0 || src.len() >= (live - 1) * stride + in_dim);
        let out = tiles.as_mut_ptr();
        let zero = std::mem::transmute::<__m512i, __m512bh>(_mm512_setzero_si512());
        let store = |i: usize, r: usize, values: __m512bh| {
            let at = out.add((2 * i + r / TILE_ROWS) * TILE_LEN + r % TILE_ROWS * K_STEP);
            _mm512_storeu_si512(at.cast(), std::mem::transmute::<__m512bh, __m512i>(values));
        };
        for r in 0..BLOCK_ROWS {
            if r >= live {
                (0..steps.len()).for_each(|i| store(i, r, zero));
                continue;
            }
            // Segment by segment (a division per step was a fifth of this loop).
            let mut step = steps.start;
            while step < steps.end {
                let segment_start = step / segment_steps * segment_steps;
                let end = steps.end.min(segment_start + segment_steps);
                let part = parts[step / segment_steps];
                for step in step..end {
                    let k = (step - segment_start) * K_STEP;
                    let values = if k < in_dim {
                        let n = (in_dim - k).min(K_STEP);
                        let at = src.as_ptr().add(r * stride + k);
                        // Masked loads: past `in_dim` read as zero (and never touch memory).
                        let a = _mm512_maskz_loadu_ps(((1u32 << n.min(16)) - 1) as u16, at);
                        let b = _mm512_maskz_loadu_ps(((1u64 << n.saturating_sub(16)) - 1) as u16, at.add(16));
                        match part {
                            Part::High => _mm512_cvtne2ps_pbh(b, a),
                            Part::Low => _mm512_cvtne2ps_pbh(_mm512_sub_ps(b, high(b)), _mm512_sub_ps(a, high(a))),
                        }
                    } else {
                        zero
                    };
                    store(step - steps.start, r, values);
                }
                step = end;
            }
        }
    }

    /// Writes a "weight" whose value at (shared index k, column c) is
    /// `src[k * k_stride + c * c_stride]` for k < `depth` and c < `cols` (zero elsewhere) into
    /// `tiles` in `pack_weight`'s layout: pairs of 16-column panels, each over the split's
    /// segments (`parts`, each `segment` deep). One of the strides must be 1: attention's values
    /// (a column's values side by side, c_stride 1), whose tile rows are two rows of the source
    /// interleaved, and its keys (k_stride 1), whose tiles are 16 rows of the source transposed.
    #[target_feature(enable = "avx512f,avx512bw,avx512bf16")]
    pub unsafe fn weight_tiles(
        src: &[f32],
        (depth, cols): (usize, usize),
        (k_stride, c_stride): (usize, usize),
        parts: &[Part],
        segment: usize,
        tiles: &mut [bf16],
    ) {
        let (segment_steps, steps) = (segment / K_STEP, parts.len() * segment / K_STEP);
        let pairs = tiles.len() / (2 * steps * TILE_LEN);
        assert!(pairs * 2 * TILE_LEN * steps == tiles.len() && 2 * PANEL * pairs >= cols);
        assert!(k_stride == 1 || c_stride == 1, "weight_tiles: neither stride is 1");
        let last = (depth.max(1) - 1) * k_stride + (cols.max(1) - 1) * c_stride;
        assert!(depth == 0 || cols == 0 || src.len() > last, "weight_tiles: {depth} x {cols} beyond the source");
        // 16 values from (k, c) on along the stride that is 1, those past `depth` or `cols` 0.
        let load = |k: usize, c: usize| {
            let (along, end) = if c_stride == 1 { (c, cols) } else { (k, depth) };
            match k < depth && c < cols {
                true => _mm512_maskz_loadu_ps(
                    ((1u32 << (end - along).min(16)) - 1) as u16,
                    src.as_ptr().add(k * k_stride + c * c_stride),
                ),
                false => _mm512_setzero_ps(),
            }
        };
        // `a` then `b` rounded to bf16 (as the part), as 32 values.
        let round = |part: Part, a: __m512, b: __m512| {
            std::mem::transmute::<__m512bh, __m512i>(match part {
                Part::High => _mm512_cvtne2ps_pbh(b, a),
                Part::Low => _mm512_cvtne2ps_pbh(_mm512_sub_ps(b, high(b)), _mm512_sub_ps(a, high(a))),
            })
        };
        let pair_order: [u16; 32] = std::array::from_fn(|i| (i / 2 + 16 * (i % 2)) as u16);
        let pair_order = _mm512_loadu_si512(pair_order.as_ptr().cast());
        let out = tiles.as_mut_ptr();
        for pair in 0..pairs {
            for step in 0..steps {
                let part = parts[step / segment_steps];
                let k = (step % segment_steps) * K_STEP;
                for half in 0..2 {
                    let c = (2 * pair + half) * PANEL;
                    // Loops, not `array::from_fn`: its closures are compiled without AVX-512 and
                    // so cannot take these inlined.
                    let mut rows = [_mm512_setzero_si512(); TILE_ROWS];
                    if c_stride == 1 {
                        // Row r: steps k + 2r and k + 2r + 1 of the 16 columns, value by value.
                        for (r, row) in rows.iter_mut().enumerate() {
                            let pairs = round(part, load(k + 2 * r, c), load(k + 2 * r + 1, c));
                            *row = _mm512_permutexvar_epi16(pair_order, pairs);
                        }
                    } else {
                        // Column j's 32 steps are its 16 pairs; row r is pair r of every column.
                        for (j, column) in rows.iter_mut().enumerate() {
                            *column = round(part, load(k, c + j), load(k + 16, c + j));
                        }
                        rows = transpose_16x16(rows);
                    }
                    let tile = out.add(pair * 2 * steps * TILE_LEN + (2 * step + half) * TILE_LEN);
                    for (r, &values) in rows.iter().enumerate() {
                        _mm512_storeu_si512(tile.add(r * K_STEP).cast(), values);
                    }
                }
            }
        }
    }

    /// A 16 × 16 matrix of 32-bit values, one row per register, transposed: pairs of values
    /// within 128-bit lanes, then pairs of pairs, then lanes across registers, twice.
    #[inline]
    #[target_feature(enable = "avx512f")]
    unsafe fn transpose_16x16(rows: [__m512i; 16]) -> [__m512i; 16] {
        let (mut t, mut u, mut v, mut out) = (
            [_mm512_setzero_si512(); 16],
            [_mm512_setzero_si512(); 16],
            [_mm512_setzero_si512(); 16],
            [_mm512_setzero_si512(); 16],
        );
        // Lane L of t[2i] / t[2i + 1]: rows 2i and 2i + 1 at columns 4L, 4L + 1 / 4L + 2, 4L + 3.
        for i in (0..16).step_by(2) {
            t[i] = _mm512_unpacklo_epi32(rows[i], rows[i + 1]);
            t[i + 1] = _mm512_unpackhi_epi32(rows[i], rows[i + 1]);
        }
        // Lane L of u[4q + c]: rows 4q..4q + 4 at column 4L + c.
        for q in 0..4 {
            for half in 0..2 {
                let (a, b) = (t[4 * q + half], t[4 * q + 2 + half]);
                u[4 * q + 2 * half] = _mm512_unpacklo_epi64(a, b);
                u[4 * q + 2 * half + 1] = _mm512_unpackhi_epi64(a, b);
            }
        }
        // v[c] / v[4 + c]: rows 0-3 and 4-7 at columns c, 8 + c / 4 + c, 12 + c; v[8..] the same
        // for rows 8-15.
        for rows in [0, 8] {
            for c in 0..4 {
                let (a, b) = (u[rows + c], u[rows + 4 + c]);
                v[rows + c] = _mm512_shuffle_i32x4::<0x88>(a, b);
                v[rows + 4 + c] = _mm512_shuffle_i32x4::<0xdd>(a, b);
            }
        }
        // Column j: lanes from rows 0-7 (v[..8]) then 8-15 (v[8..]).
        for j in 0..8 {
            out[j] = _mm512_shuffle_i32x4::<0x88>(v[j], v[8 + j]);
            out[8 + j] = _mm512_shuffle_i32x4::<0xdd>(v[j], v[8 + j]);
        }
        out
    }

    /// The softmax of each of the `live` rows of `scores` (up to 32, `width` apart) over its
    /// first `keys` values (with `causal_from`, row r over those up to `causal_from + r`), the
    /// rest 0, written into `tiles` as `block_rows` writes a block of rows `width` deep per part;
    /// `scores` keeps the exponentials. One pass for the max, one for the exponentials and their
    /// sum, one that scales and rounds them into the tiles: the generic softmax, then the
    /// rounding, took three passes of their own, and that softmax's exponential, without FMA
    /// or `vscalefps`, ran at half the speed.
    #[target_feature(enable = "avx512f,avx512bw,avx512bf16")]
    pub unsafe fn softmax_block(
        scores: &mut [f32],
        live: usize,
        (width, keys): (usize, usize),
        causal_from: Option<usize>,
        parts: &[Part],
        tiles: &mut [bf16],
    ) {
        let segment_steps = width / K_STEP;
        assert!(width % K_STEP == 0 && keys <= width && live <= BLOCK_ROWS && scores.len() >= live * width);
        assert_eq!(tiles.len(), BLOCK_ROWS * parts.len() * width);
        let out = tiles.as_mut_ptr();
        let zero = _mm512_setzero_si512();
        let store = |i: usize, r: usize, values: __m512i| {
            _mm512_storeu_si512(out.add((2 * i + r / TILE_ROWS) * TILE_LEN + r % TILE_ROWS * K_STEP).cast(), values);
        };
        for r in 0..BLOCK_ROWS {
            if r >= live {
                for i in 0..parts.len() * segment_steps {
                    store(i, r, zero);
                }
                continue;
            }
            let row = scores.as_mut_ptr().add(r * width);
            let visible = causal_from.map_or(keys, |first| (first + r + 1).min(keys));
            let lanes = |k: usize| ((1u32 << visible.saturating_sub(k).min(16)) - 1) as __mmask16;
            let mut max = _mm512_set1_ps(f32::NEG_INFINITY);
            for k in (0..visible).step_by(16) {
                max = _mm512_max_ps(max, _mm512_mask_loadu_ps(max, lanes(k), row.add(k)));
            }
            let max = _mm512_set1_ps(_mm512_reduce_max_ps(max));
            let mut sum = _mm512_setzero_ps();
            for k in (0..visible).step_by(16) {
                let x = _mm512_sub_ps(_mm512_maskz_loadu_ps(lanes(k), row.add(k)), max);
                let e = _mm512_maskz_mov_ps(lanes(k), exp_of_non_positive(x));
                sum = _mm512_add_ps(sum, e);
                _mm512_storeu_ps(row.add(k), e);
            }
            let inv = _mm512_set1_ps(1.0 / _mm512_reduce_add_ps(sum));
            for (s, &part) in parts.iter().enumerate() {
                for i in 0..segment_steps {
                    let k = i * K_STEP;
                    let values = match k < visible {
                        true => {
                            let a = _mm512_mul_ps(_mm512_maskz_loadu_ps(lanes(k), row.add(k)), inv);
                            let b = _mm512_mul_ps(_mm512_maskz_loadu_ps(lanes(k + 16), row.add(k + 16)), inv);
                            std::mem::transmute::<__m512bh, __m512i>(match part {
                                Part::High => _mm512_cvtne2ps_pbh(b, a),
                                Part::Low => _mm512_cvtne2ps_pbh(_mm512_sub_ps(b, high(b)), _mm512_sub_ps(a, high(a))),
                            })
                        }
                        false => zero,
                    };
                    store(s * segment_steps + i, r, values);
                }
            }
        }
    }

    /// e^x for x ≤ 0, 16 at a time, as `fast_exp` computes it (the same polynomial, within ~2
    /// ulp), with FMA, and `vscalefps` for the power of two; below -87 (about the least normal
    /// f32) as e^-87.
    #[inline]
    #[target_feature(enable = "avx512f")]
    unsafe fn exp_of_non_positive(x: __m512) -> __m512 {
        use super::super::{EXP_POLYNOMIAL, LN2_HI, LN2_LO};
        let x = _mm512_max_ps(x, _mm512_set1_ps(-87.0));
        let n = _mm512_roundscale_ps::<{ _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC }>(_mm512_mul_ps(
            x,
            _mm512_set1_ps(std::f32::consts::LOG2_E),
        ));
        let r = _mm512_fnmadd_ps(n, _mm512_set1_ps(LN2_HI), x);
        let r = _mm512_fnmadd_ps(n, _mm512_set1_ps(LN2_LO), r);
        let mut p = _mm512_set1_ps(EXP_POLYNOMIAL[0]);
        for &c in &EXP_POLYNOMIAL[1..] {
            p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(c));
        }
        let e_r = _mm512_add_ps(_mm512_fmadd_ps(p, _mm512_mul_ps(r, r), r), _mm512_set1_ps(1.0));
        _mm512_scalef_ps(e_r, n)
    }

    /// `v` rounded to bf16 (nearest even), as f32.
    #[target_feature(enable = "avx512f,avx512bw,avx512bf16")]
    unsafe fn high(v: __m512) -> __m512 {
        let bits = std::mem::transmute::<__m256bh, __m256i>(_mm512_cvtneps_pbh(v));
        _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(bits), 16))
    }

    pub unsafe fn load_config(config: &TileConfig) {
        asm!("ldtilecfg [{}]", in(reg) config, options(nostack, readonly));
    }

    pub unsafe fn release() {
        asm!("tilerelease", options(nostack, nomem));
    }

    /// Each block of the strip = its seed + its product over the chunk of the shared dimension.
    ///
    /// Storing a block's accumulators waits for its last multiplies, and the next block's tile
    /// loads wait for the stores: a C copy of this loop ran blocks of 24 steps (a ViT-B layer,
    /// 768 deep, in bf16) at 1.45 TFLOP/s a core, and at 2.0 without the stores. So the blocks
    /// of a strip run in one loop, and each block's stores are interleaved with the next
    /// block's first step: each accumulator is stored, seeded again and multiplied while the
    /// others are still busy (ViT-B/32 in bf16 4-5% faster at batch 8 and 32, f32 4% at 32).
    pub unsafe fn multiply(strip: &Strip) {
        debug_assert!(strip.steps > 0 && strip.pairs > 0);
        let out_stride = strip.out_stride * 4;
        // Seeds: the bias row for every accumulator row (stride 0), or the output block itself;
        // either way the next block's seed is 32 f32 further on, and its lower half 16 strides
        // down (the bias's stride is 0, so that is the same row).
        let (seed, seed_stride) = match strip.seed {
            Seed::Bias(bias) => (bias, 0),
            Seed::Sum => (strip.out.cast_const(), out_stride),
        };
        // Each step reads 2 KB of either operand (two tiles side by side): `add 2048`, `shl 11`.
        const _: () = assert!(2 * TILE_LEN * std::mem::size_of::<bf16>() == 2048);
        // From the end of one pair's steps to the start of the next pair's.
        let w_skip = (strip.pair_len - strip.steps * 2 * TILE_LEN) * std::mem::size_of::<bf16>();
        // Accumulators: tmm0 = rows 0-15 × panel 0, tmm1 = rows 0-15 × panel 1, tmm2/tmm3 the
        // same for rows 16-31. Activations in tmm4/tmm5, weights in tmm6/tmm7; each step's two
        // tiles of either operand lie side by side (1 KB apart), so one pointer walks each.
        // `{t}` is scratch: a step count, or the lower half's address (16 strides down).
        asm!(
            "tileloadd tmm0, [{seed} + {ss}*1]",
            "tileloadd tmm1, [{seed} + {ss}*1 + 64]",
            "mov {t}, {ss}",
            "shl {t}, 4",
            "add {t}, {seed}",
            "tileloadd tmm2, [{t} + {ss}*1]",
            "tileloadd tmm3, [{t} + {ss}*1 + 64]",
            "mov {t}, {steps}",
            "2:",
            "test {t}, {t}",
            "jz 5f",
            "3:",
            // Ask for the weights 8 steps ahead (16 KB; the 32 lines of one step): streamed from
            // memory for a short text query, tile loads alone wait on every miss (8-token
            // query 7.7 -> 6.4-7.0 ms; no change for batches, whose weights sit in L2).
            ".irp line, 0, 64, 128, 192, 256, 320, 384, 448, 512, 576, 640, 704, 768, 832, 896, 960",
            "prefetcht0 [{w} + 16384 + \\line]",
            "prefetcht0 [{w} + 17408 + \\line]",
            ".endr",
            "tileloadd tmm4, [{x} + {ts}*1]",
            "tileloadd tmm6, [{w} + {ts}*1]",
            "tileloadd tmm7, [{w} + {ts}*1 + 1024]",
            "tdpbf16ps tmm0, tmm4, tmm6",
            "tileloadd tmm5, [{x} + {ts}*1 + 1024]",
            "tdpbf16ps tmm1, tmm4, tmm7",
            "tdpbf16ps tmm2, tmm5, tmm6",
            "tdpbf16ps tmm3, tmm5, tmm7",
            "add {x}, 2048",
            "add {w}, 2048",
            "dec {t}",
            "jnz 3b",
            "5:",
            "dec {pairs}",
            "jz 4f",
            // The next block: the same activations from the first step, the next pair's
            // weights, seeds and output 32 columns on; its first step goes with these stores.
            "mov {t}, {steps}",
            "shl {t}, 11",
            "sub {x}, {t}",
            "add {w}, {skip}",
            "add {seed}, 128",
            "tileloadd tmm4, [{x} + {ts}*1]",
            "tileloadd tmm6, [{w} + {ts}*1]",
            "tilestored [{c} + {cs}*1], tmm0",
            "tileloadd tmm0, [{seed} + {ss}*1]",
            "tdpbf16ps tmm0, tmm4, tmm6",
            "tileloadd tmm7, [{w} + {ts}*1 + 1024]",
            "tilestored [{c} + {cs}*1 + 64], tmm1",
            "tileloadd tmm1, [{seed} + {ss}*1 + 64]",
            "tdpbf16ps tmm1, tmm4, tmm7",
            "tileloadd tmm5, [{x} + {ts}*1 + 1024]",
            "mov {t}, {cs}",
            "shl {t}, 4",
            "add {t}, {c}",
            "tilestored [{t} + {cs}*1], tmm2",
            "tilestored [{t} + {cs}*1 + 64], tmm3",
            "mov {t}, {ss}",
            "shl {t}, 4",
            "add {t}, {seed}",
            "tileloadd tmm2, [{t} + {ss}*1]",
            "tdpbf16ps tmm2, tmm5, tmm6",
            "tileloadd tmm3, [{t} + {ss}*1 + 64]",
            "tdpbf16ps tmm3, tmm5, tmm7",
            "add {c}, 128",
            "add {x}, 2048",
            "add {w}, 2048",
            "mov {t}, {steps}",
            "dec {t}",
            "jmp 2b",
            "4:",
            "tilestored [{c} + {cs}*1], tmm0",
            "tilestored [{c} + {cs}*1 + 64], tmm1",
            "mov {t}, {cs}",
            "shl {t}, 4",
            "add {t}, {c}",
            "tilestored [{t} + {cs}*1], tmm2",
            "tilestored [{t} + {cs}*1 + 64], tmm3",
            seed = inout(reg) seed => _,
            ss = in(reg) seed_stride,
            x = inout(reg) strip.x => _,
            w = inout(reg) strip.w => _,
            skip = in(reg) w_skip,
            ts = in(reg) 64usize,
            steps = in(reg) strip.steps,
            pairs = inout(reg) strip.pairs => _,
            t = out(reg) _,
            c = inout(reg) strip.out => _,
            cs = in(reg) out_stride,
            options(nostack),
        );
    }
}

/// No tile unit off x86-64: `available()` is false there, so none of these is ever called.
#[cfg(not(target_arch = "x86_64"))]
mod isa {
    use half::bf16;

    use super::{Part, Strip, TileConfig};

    pub unsafe fn block_rows(
        _: &[f32],
        _: usize,
        _: (usize, usize),
        _: &[Part],
        _: usize,
        _: std::ops::Range<usize>,
        _: &mut [bf16],
    ) {
        unreachable!("AMX exists only on x86-64")
    }

    pub unsafe fn weight_tiles(_: &[f32], _: (usize, usize), _: (usize, usize), _: &[Part], _: usize, _: &mut [bf16]) {
        unreachable!("AMX exists only on x86-64")
    }

    pub unsafe fn softmax_block(
        _: &mut [f32],
        _: usize,
        _: (usize, usize),
        _: Option<usize>,
        _: &[Part],
        _: &mut [bf16],
    ) {
        unreachable!("AMX exists only on x86-64")
    }

    pub unsafe fn load_config(_: &TileConfig) {
        unreachable!("AMX exists only on x86-64")
    }

    pub unsafe fn release() {}

    pub unsafe fn multiply(_: &Strip) {
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
    /// product, where one bf16 rounding is 2^-8), on values with more bits than bf16 holds; the
    /// second shape has several row chunks and depth chunks that cut across the split's segments.
    #[test]
    fn three_way_split_is_accurate_to_about_16_bits() {
        if !available() {
            eprintln!("skipped: this CPU has no AMX-BF16");
            return;
        }
        for (rows, in_dim, out_dim) in [(37, 300, 70), (300, 2000, 40)] {
            let x: Vec<f32> = (0..rows * in_dim).map(|i| ((i * 7919) % 1013) as f32 / 1013.0 - 0.5).collect();
            let w: Vec<f32> = (0..out_dim * in_dim).map(|i| ((i * 104_729) % 997) as f32 / 997.0 - 0.5).collect();
            let bias = vec![0.5f32; out_dim];
            let run = |split| {
                let weight = packed(&w, (in_dim, out_dim), split);
                product(&x, &weight, &bias, rows, (in_dim, out_dim), split, TileEpilogue::Nothing)
            };
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
            assert!(worst_three < 2e-5, "({rows},{in_dim},{out_dim}): three-way split error {worst_three:e}");
            assert!(worst_once > 10.0 * worst_three, "one rounding {worst_once:e} vs three-way {worst_three:e}");
        }
    }

    /// The AMX product plus a residual against a plain loop over the same bf16-rounded inputs,
    /// on ragged shapes (rows, depth and columns that are not whole tiles), at sizes with several
    /// groups of panel pairs (strips of several pairs), with several row and depth chunks (where
    /// two threads each take their own rows, and later chunks start from the sums), and in an
    /// order that reuses the activation buffer at smaller sizes.
    #[test]
    fn amx_product_matches_a_plain_matmul_of_bf16_inputs() {
        if !available() {
            eprintln!("skipped: this CPU has no AMX-BF16");
            return;
        }
        let shapes = [
            (1, 32, 32),
            (7, 45, 53),
            (33, 64, 17),
            (70, 100, 96),
            (40, 2000, 300),
            (300, 1000, 40),
            (700, 1000, 70),
            (300, 4200, 40),
        ];
        // Largest last, then smallest again: the reused activation buffer must not leak stale
        // values into the padding of a smaller call.
        for &(rows, in_dim, out_dim) in shapes.iter().chain(shapes.iter().rev()) {
            let round = |v: f32| bf16::from_f32(v).to_f32();
            let x: Vec<f32> = (0..rows * in_dim).map(|i| ((i * 37) % 23) as f32 / 7.0 - 1.5).collect();
            let w: Vec<f32> = (0..out_dim * in_dim).map(|i| ((i * 13) % 19) as f32 / 9.0 - 1.0).collect();
            let bias: Vec<f32> = (0..out_dim).map(|i| i as f32 * 0.25 - 2.0).collect();
            let residual: Vec<f32> = (0..rows * out_dim).map(|i| (i % 11) as f32 * 0.5).collect();
            let weight = packed(&w, (in_dim, out_dim), Split::Once);
            let epilogue = TileEpilogue::Residual(&residual, out_dim);
            let got = product(&x, &weight, &bias, rows, (in_dim, out_dim), Split::Once, epilogue);
            let (x, w): (Vec<f32>, Vec<f32>) = (x.into_iter().map(round).collect(), w.into_iter().map(round).collect());
            for r in 0..rows {
                for c in 0..out_dim {
                    let dot = (0..in_dim).map(|k| x[r * in_dim + k] * w[c * in_dim + k]).sum::<f32>();
                    let want = bias[c] + dot + residual[r * out_dim + c];
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
