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
    // Tiles start on a cache line: a tile row that straddles two lines costs two loads. Grown,
    // never shrunk: layers alternate in size, and `resize` down then up zeroed the buffer again
    // on every larger layer (2% of the f32 image tower).
    let needed = len + CACHE_LINE / std::mem::size_of::<bf16>();
    if xb.len() < needed {
        xb.resize(needed, bf16::ZERO);
    }
    let skip = xb.as_ptr().align_offset(CACHE_LINE);
    let xb = &mut xb[skip..skip + len];
    let convert = |(b, tiles): (usize, &mut [bf16])| {
        let first = (row_range.start + b * BLOCK_ROWS).min(rows);
        let src = &x[first * in_dim..(first + BLOCK_ROWS).min(rows) * in_dim];
        // SAFETY: `available()` (checked by every caller) includes AVX512-BF16; `tiles` holds
        // 32 rows of `steps`, `src` whole rows of `in_dim`.
        unsafe { isa::block_rows(src, in_dim, split.activation_parts(), segment(in_dim), steps.clone(), tiles) };
    };
    match parallel {
        true => xb.par_chunks_mut(block_len).enumerate().for_each(convert),
        false => xb.chunks_mut(block_len).enumerate().for_each(convert),
    }
    xb
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

    use super::{Part, Seed, Strip, TileConfig, BLOCK_ROWS, K_STEP, TILE_LEN, TILE_ROWS};

    /// Writes up to 32 rows of `src` (whole rows of `in_dim`; missing rows are zeros) into
    /// `tiles` (one block of rows over `steps` of the split's shared dimension, see
    /// `to_bf16_tiles`), each step as its segment's part, 32 values per instruction (rounding one
    /// value at a time took 23-31% of a layer).
    #[target_feature(enable = "avx512f,avx512bw,avx512bf16")]
    pub unsafe fn block_rows(
        src: &[f32],
        in_dim: usize,
        parts: &[Part],
        segment: usize,
        steps: std::ops::Range<usize>,
        tiles: &mut [bf16],
    ) {
        let live = src.len() / in_dim;
        let segment_steps = segment / K_STEP;
        debug_assert!(live <= BLOCK_ROWS && tiles.len() == BLOCK_ROWS * steps.len() * K_STEP);
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
                        let at = src.as_ptr().add(r * in_dim + k);
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

    pub unsafe fn block_rows(_: &[f32], _: usize, _: &[Part], _: usize, _: std::ops::Range<usize>, _: &mut [bf16]) {
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
