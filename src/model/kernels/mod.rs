//! CPU kernels for the two places where candle's generic ops waste most time in CLIP
//! (measured with `perf` on ViT-B/32, batch 32 — see benches/README.md):
//!
//! - the MLP activation: candle runs quick-GELU as three single-threaded passes; here it is one
//!   pass over all cores, or none: the linear layers apply it to each tile of their output;
//! - attention (`attention.rs`): candle needs q, k and v copied out of the fused projection
//!   into contiguous per-head tensors, then one small threaded gemm per head. Here each (image,
//!   head) pair is one task that reads q, k, v in place (strided gemm, or AMX tiles where the
//!   layers run there), does the softmax in cache and writes its slice of the output directly.
//!
//! - layer norm: candle's zeroes its output and sums each row in one scalar chain; here the
//!   output is written once and the sums run in 16 lanes;
//! - linear layers (`linear.rs`): the bias folded into the product instead of a separate
//!   broadcast-add pass, and the residual or the activation applied to each tile of the output
//!   while it is in L1 (`Epilogue`); weights packed once at load and multiplied by a
//!   register-tiled kernel instead of a gemm that copies (packs) them on every call.
//!
//! Other devices keep candle's generic ops (on CUDA, linear layers go through cuBLASLt with the
//! bias in its epilogue: `cuda.rs`); `tests/it/kernels.rs` checks both paths give the same numbers.

use std::mem::MaybeUninit;

use candle_core::{CpuStorage, CustomOp1, CustomOp3, DType, InplaceOp1, Layout, Shape, Tensor};

use rayon::prelude::*;

/// `$kernel::<R>($tile)` for R = `$rows` (1 to 6): register-tile kernels are generic over their
/// row count, so that the accumulators stay in registers.
macro_rules! by_rows {
    ($rows:expr, $kernel:ident, $tile:expr) => {
        match $rows {
            1 => $kernel::<1>($tile),
            2 => $kernel::<2>($tile),
            3 => $kernel::<3>($tile),
            4 => $kernel::<4>($tile),
            5 => $kernel::<5>($tile),
            6 => $kernel::<6>($tile),
            rows => unreachable!("a register tile of {rows} rows"),
        }
    };
}

/// Declares `fn $name(args)` that runs the `#[inline(always)]` loop `$body(args)` compiled for
/// the widest vectors `isa()` allows: the baseline x86-64 build vectorises such loops only 4 wide
/// (SSE2). The AVX-512 copies made the ViT-B/32 image tower 3-5% faster on a Xeon; the AVX2 ones
/// 8-15% at batch 1 and 8 on an AVX2-only AMD EPYC (Zen 3). One generic wrapper taking a closure
/// was tried before, but the closures were not inlined into it and ran as baseline code (seen in
/// objdump), hence a copy of each loop per instruction set, made here.
macro_rules! vectorised_per_isa {
    ($(#[$meta:meta])* fn $name:ident $([$($generics:tt)*])? ($($arg:ident: $ty:ty),* $(,)?) => $body:ident) => {
        $(#[$meta])*
        fn $name $(<$($generics)*>)? ($($arg: $ty),*) {
            #[cfg(target_arch = "x86_64")]
            {
                #[target_feature(enable = "avx512f")]
                unsafe fn avx512 $(<$($generics)*>)? ($($arg: $ty),*) {
                    $body($($arg),*)
                }
                #[target_feature(enable = "avx2,fma")]
                unsafe fn avx2 $(<$($generics)*>)? ($($arg: $ty),*) {
                    $body($($arg),*)
                }
                use $crate::model::kernels::{isa, Isa};
                match isa() {
                    Isa::Portable => {}
                    // SAFETY: `isa()` names only instruction sets this CPU has.
                    Isa::Avx2 => return unsafe { avx2($($arg),*) },
                    _ => return unsafe { avx512($($arg),*) },
                }
            }
            $body($($arg),*)
        }
    };
}

pub mod amx;
mod attention;
pub mod bf16_pairs;
#[cfg(feature = "cuda")]
pub mod cuda;
mod grid;
mod linear;
mod rotary;
mod runs;
pub use attention::{attention, attention_from_parts, attention_generic, attention_masked};
pub use grid::{
    average_pool, average_pool_generic, depthwise_conv, depthwise_conv_generic, neighbourhoods, neighbourhoods_generic,
};
pub use linear::{bf16_layout, linear, linear_split, Epilogue, LinearWeight, WeightLayout};
pub use rotary::{rotate_queries_keys, rotate_queries_keys_generic, RotaryTable};

use super::config::Activation;
use crate::error::Result;

/// The instruction sets the CPU kernels use, lowest first. Chosen once per process from the
/// CPU's features; `IMGSEARCH_ISA` caps it (e.g. `avx2` on an AVX-512 machine runs, and so
/// tests, the AVX2 kernels), and `IMGSEARCH_AMX=0` caps it below AMX.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Isa {
    /// Plain Rust, vectorised by the compiler for the target (SSE2 on x86).
    Portable,
    /// ARM's vectors (every aarch64 CPU has them).
    Neon,
    Avx2,
    Avx512,
    /// AVX-512 with `vdpbf16ps`: `--dtype bf16` without AMX.
    Avx512Bf16,
    /// Intel AMX bf16 tiles.
    Amx,
}

impl Isa {
    const NAMES: [(&'static str, Isa); 6] = [
        ("portable", Isa::Portable),
        ("neon", Isa::Neon),
        ("avx2", Isa::Avx2),
        ("avx512", Isa::Avx512),
        ("avx512bf16", Isa::Avx512Bf16),
        ("amx", Isa::Amx),
    ];

    pub fn name(self) -> &'static str {
        Self::NAMES.iter().find(|(_, isa)| *isa == self).map_or("?", |(name, _)| name)
    }

    /// What this CPU has, highest first.
    fn detect() -> Isa {
        #[cfg(target_arch = "x86_64")]
        {
            let has = |feature: &str| match feature {
                "avx512bf16" => std::is_x86_feature_detected!("avx512bf16"),
                "avx512f" => std::is_x86_feature_detected!("avx512f"),
                _ => std::is_x86_feature_detected!("avx2") && std::is_x86_feature_detected!("fma"),
            };
            if has("avx512f") && has("avx512bf16") {
                return Isa::Avx512Bf16; // AMX, which needs the OS's consent, is asked for apart
            }
            if has("avx512f") {
                return Isa::Avx512;
            }
            if has("avx2") {
                return Isa::Avx2;
            }
        }
        if cfg!(target_arch = "aarch64") {
            return Isa::Neon;
        }
        Isa::Portable
    }

    /// Whether this architecture has the instruction set at all: the order of `Isa` ranks the
    /// x86 ones among themselves, so a CPU's best bounds only those of its own architecture.
    fn of_this_architecture(self) -> bool {
        let (arm, x86) = (cfg!(target_arch = "aarch64"), cfg!(target_arch = "x86_64"));
        match self {
            Isa::Portable => true,
            Isa::Neon => arm,
            Isa::Avx2 | Isa::Avx512 | Isa::Avx512Bf16 | Isa::Amx => x86,
        }
    }

    /// `wanted` (the name `IMGSEARCH_ISA` gives) where this CPU runs it, else `detected` with a
    /// warning that lists the names it could have given.
    fn chosen(detected: Isa, wanted: Option<&str>) -> Isa {
        let runs_here = |isa: Isa| isa <= detected && isa.of_this_architecture();
        let Some(wanted) = wanted else { return detected };
        match Isa::NAMES.iter().find(|(name, _)| name.eq_ignore_ascii_case(wanted.trim())) {
            Some(&(_, isa)) if runs_here(isa) => isa,
            _ => {
                let choices: Vec<&str> =
                    Isa::NAMES.iter().filter(|(_, isa)| runs_here(*isa)).map(|(name, _)| *name).collect();
                tracing::warn!(
                    "IMGSEARCH_ISA={wanted:?} ignored: this CPU runs up to {}; the choices here are {}",
                    detected.name(),
                    choices.join(", ")
                );
                detected
            }
        }
    }
}

/// The instruction set the kernels use (see [`Isa`]). Set `IMGSEARCH_ISA` to a name below the
/// CPU's best to force a lower path; an unknown name, or one above what the CPU has, is ignored
/// with a warning.
pub fn isa() -> Isa {
    static ISA: std::sync::OnceLock<Isa> = std::sync::OnceLock::new();
    *ISA.get_or_init(|| {
        let detected = if amx::detect() { Isa::Amx } else { Isa::detect() };
        let amx_off = std::env::var("IMGSEARCH_AMX").ok().is_some_and(|v| amx_turned_off(&v));
        let detected = if amx_off { detected.min(Isa::Avx512Bf16) } else { detected };
        Isa::chosen(detected, std::env::var("IMGSEARCH_ISA").ok().as_deref())
    })
}

/// Whether `IMGSEARCH_AMX`'s value turns AMX off (`0`, `off`, `false`, `no`); a value that is
/// neither that nor on (`1`, `on`, `true`, `yes`) is ignored with a warning.
fn amx_turned_off(value: &str) -> bool {
    match value.trim().to_ascii_lowercase().as_str() {
        "0" | "off" | "false" | "no" => true,
        "1" | "on" | "true" | "yes" | "" => false,
        _ => {
            tracing::warn!("IMGSEARCH_AMX={value:?} ignored: 0 (or off) turns AMX off, 1 (or on) leaves it on");
            false
        }
    }
}

/// Elements per parallel task of the activation: large enough to amortise scheduling.
const ACTIVATION_CHUNK: usize = 16 * 1024;

/// Applies the activation to `x`. On CPU it overwrites `x`'s own storage (no allocation), so
/// `x` must be a fresh tensor nobody else holds a view of (the encoder's fc1 output).
pub fn activate(x: Tensor, act: Activation) -> Result<Tensor> {
    if x.device().is_cpu() && x.dtype() == DType::F32 && x.is_contiguous() {
        x.inplace_op1(&ActivationOp(act))?;
        return Ok(x);
    }
    activate_generic(&x, act)
}

/// The same activation with candle's own ops (any device).
pub fn activate_generic(x: &Tensor, act: Activation) -> Result<Tensor> {
    Ok(match act {
        Activation::QuickGelu => (x * candle_nn::ops::sigmoid(&(x * 1.702)?)?)?,
        Activation::Gelu => x.gelu_erf()?,
        Activation::GeluNew => x.gelu()?,
        Activation::Relu => x.relu()?,
    })
}

struct ActivationOp(Activation);

impl InplaceOp1 for ActivationOp {
    fn name(&self) -> &'static str {
        "clip-activation"
    }

    fn cpu_fwd(&self, storage: &mut CpuStorage, layout: &Layout) -> candle_core::Result<()> {
        let CpuStorage::F32(data) = storage else { candle_core::bail!("clip-activation: expected an f32 tensor") };
        let Some((start, end)) = layout.contiguous_offsets() else {
            candle_core::bail!("clip-activation: input must be contiguous")
        };
        let act = self.0;
        data[start..end].par_chunks_mut(ACTIVATION_CHUNK).for_each(|chunk| activate_slice(chunk, act));
        Ok(())
    }
}

/// Applies the activation to `values` on this thread: a whole tensor in parallel chunks
/// (`ActivationOp`), or one tile of a linear layer's output while it is in L1 (`Epilogue`).
fn activate_slice(values: &mut [f32], act: Activation) {
    // One monomorphised loop per activation, so the function inlines (a fn pointer per
    // element measured 8% of the whole image tower).
    match act {
        Activation::QuickGelu => map_chunk(values, &|x| x / (1.0 + fast_exp(-1.702 * x))),
        Activation::Gelu => map_chunk(values, &|x| 0.5 * x * (1.0 + fast_erf(x * std::f32::consts::FRAC_1_SQRT_2))),
        // 0.5·x·(1 + tanh(u)) is x·sigmoid(2u): one `fast_exp` instead of libm's scalar
        // `tanhf` (which took 9% of SigLIP's image tower).
        Activation::GeluNew => map_chunk(values, &|x| {
            const SQRT_2_OVER_PI: f32 = 0.797_884_6;
            x / (1.0 + fast_exp(-2.0 * SQRT_2_OVER_PI * (x + 0.044_715 * x * x * x)))
        }),
        // NaN stays NaN, as in torch (a broken checkpoint is then caught, not hidden).
        Activation::Relu => map_chunk(values, &|x| if x < 0.0 { 0.0 } else { x }),
    }
}

/// SwiGLU's gating (EVA-02's MLP): `x` (…, 2 · h), each row its gate then its value, →
/// (…, h): `silu(gate) · value`. One pass on the CPU where candle's ops take three (and libm's
/// scalar `expf`), 5% of EVA02-B/16's image tower.
pub fn swiglu(x: &Tensor) -> Result<Tensor> {
    if x.device().is_cpu() && x.dtype() == DType::F32 {
        return Ok(x.contiguous()?.apply_op1_no_bwd(&SwigluOp)?);
    }
    swiglu_generic(x)
}

/// The same with candle's own ops (any device).
pub fn swiglu_generic(x: &Tensor) -> Result<Tensor> {
    let half = x.dim(candle_core::D::Minus1)? / 2;
    let gate = x.narrow(candle_core::D::Minus1, 0, half)?;
    Ok((gate.silu()? * x.narrow(candle_core::D::Minus1, half, half)?)?)
}

struct SwigluOp;

impl CustomOp1 for SwigluOp {
    fn name(&self) -> &'static str {
        "clip-swiglu"
    }

    fn cpu_fwd(&self, storage: &CpuStorage, layout: &Layout) -> candle_core::Result<(CpuStorage, Shape)> {
        let src = contiguous_f32(storage, layout, self.name())?;
        let mut dims = layout.shape().dims().to_vec();
        let width = dims.last().copied().unwrap_or(0);
        if width % 2 != 0 {
            candle_core::bail!("clip-swiglu: rows of {width} are not a gate and a value of one width");
        }
        let half = width / 2;
        *dims.last_mut().expect("checked above") = half;
        let mut out = vec![0f32; src.len() / 2];
        if half > 0 {
            // A row is a few KB: tasks of many rows amortise scheduling.
            out.par_chunks_mut(half).zip(src.par_chunks(width)).with_min_len(16).for_each(|(out, row)| {
                let (gate, value) = row.split_at(half);
                gate_rows(out, gate, value);
            });
        }
        Ok((CpuStorage::F32(out), Shape::from(dims)))
    }
}

vectorised_per_isa!(fn gate_rows(out: &mut [f32], gate: &[f32], value: &[f32]) => gate_rows_in);

#[inline(always)]
fn gate_rows_in(out: &mut [f32], gate: &[f32], value: &[f32]) {
    for ((o, &g), &v) in out.iter_mut().zip(gate).zip(value) {
        *o = g / (1.0 + fast_exp(-g)) * v;
    }
}

/// erf(x) to within 1e-6 (Abramowitz and Stegun 7.1.26 in f32), written branch-free so the compiler
/// vectorises it: libm's `erff` is a scalar call per element, and exact GELU's took a fifth of a
/// ConvNeXt tower (its MLPs are four times as wide as its many pixels' rows).
#[inline(always)]
fn fast_erf(x: f32) -> f32 {
    const P: f32 = 0.327_591_1;
    const A: [f32; 5] = [0.254_829_6, -0.284_496_74, 1.421_413_7, -1.453_152_1, 1.061_405_4];
    let a = x.abs();
    let t = 1.0 / (1.0 + P * a);
    let poly = t * (A[0] + t * (A[1] + t * (A[2] + t * (A[3] + t * A[4]))));
    let y = 1.0 - poly * fast_exp(-a * a);
    y.copysign(x)
}

/// ln 2 as a high part with few bits (so `n · LN2_HI` is exact) and the rest: e^x = 2^n e^r with
/// r = x − n ln 2 computed without losing digits.
const LN2_HI: f32 = 0.693_359_4;
const LN2_LO: f32 = -2.121_944_4e-4;
/// Cephes' minimax polynomial p for e^r ≈ 1 + r + r² p(r) on [-ln2/2, ln2/2], highest power
/// first (`fast_exp`, and the AVX-512 softmax in `amx.rs`).
const EXP_POLYNOMIAL: [f32; 6] = [1.987_569_1e-4, 1.398_199_9e-3, 8.333_452e-3, 4.166_579_6e-2, 1.666_666_5e-1, 0.5];

/// e^x to within ~2 ulp for x in [-87, 88] (clamped outside), written branch-free so the
/// compiler vectorises it; libm's `expf` is a scalar call per element (3% of the image tower).
#[inline(always)]
fn fast_exp(x: f32) -> f32 {
    const LOG2E: f32 = std::f32::consts::LOG2_E;
    let x = x.clamp(-87.0, 88.0);
    // Round to nearest with the 1.5 * 2^23 trick: `f32::round` is a libm call on baseline x86-64.
    const ROUNDER: f32 = 12_582_912.0;
    let n = (x * LOG2E + ROUNDER) - ROUNDER;
    let r = x - n * LN2_HI - n * LN2_LO;
    let p = EXP_POLYNOMIAL[1..].iter().fold(EXP_POLYNOMIAL[0], |p, &c| p * r + c);
    let e_r = p * r * r + r + 1.0;
    // SAFETY: |n| <= 127 after the clamp, so the conversion is exact (`as i32` would add a
    // saturation check that stops the loop from vectorising).
    let n = unsafe { n.to_int_unchecked::<i32>() };
    e_r * f32::from_bits(((n + 127) as u32) << 23)
}

vectorised_per_isa!(fn map_chunk[F: Fn(f32) -> f32](chunk: &mut [f32], f: &F) => map_chunk_in);

#[inline(always)]
fn map_chunk_in<F: Fn(f32) -> f32>(chunk: &mut [f32], f: &F) {
    chunk.iter_mut().for_each(|v| *v = f(*v));
}

/// Rows per parallel task of the layer norm (a row is a few KB).
const NORM_ROWS: usize = 16;

/// Layer norm over the last dimension of `x`: (x - mean) / sqrt(var + eps) * weight + bias.
pub fn layer_norm(x: &Tensor, weight: &Tensor, bias: &Tensor, eps: f32) -> Result<Tensor> {
    if x.device().is_cpu() && x.dtype() == DType::F32 {
        return Ok(x.contiguous()?.apply_op3_no_bwd(weight, bias, &LayerNormOp { eps })?);
    }
    layer_norm_generic(x, weight, bias, eps)
}

/// The same layer norm with candle's own op (any device).
pub fn layer_norm_generic(x: &Tensor, weight: &Tensor, bias: &Tensor, eps: f32) -> Result<Tensor> {
    Ok(candle_nn::ops::layer_norm(&x.contiguous()?, weight, bias, eps)?)
}

struct LayerNormOp {
    eps: f32,
}

impl CustomOp3 for LayerNormOp {
    fn name(&self) -> &'static str {
        "clip-layer-norm"
    }

    fn cpu_fwd(
        &self,
        x: &CpuStorage,
        x_layout: &Layout,
        weight: &CpuStorage,
        weight_layout: &Layout,
        bias: &CpuStorage,
        bias_layout: &Layout,
    ) -> candle_core::Result<(CpuStorage, Shape)> {
        let name = self.name();
        let x = contiguous_f32(x, x_layout, name)?;
        let (weight, bias) = (contiguous_f32(weight, weight_layout, name)?, contiguous_f32(bias, bias_layout, name)?);
        let dim = x_layout.shape().dims().last().copied().unwrap_or(0);
        if dim == 0 || weight.len() != dim || bias.len() != dim {
            candle_core::bail!("{name}: last dim {dim} does not match weight {} / bias {}", weight.len(), bias.len());
        }
        // Written once, not zeroed first (candle's zeroing cost as much as the norm).
        let mut out: Vec<f32> = Vec::with_capacity(x.len());
        let spare = &mut out.spare_capacity_mut()[..x.len()];
        spare
            .par_chunks_mut(NORM_ROWS * dim)
            .zip(x.par_chunks(NORM_ROWS * dim))
            .for_each(|(dst, src)| norm_rows(src, dst, weight, bias, self.eps));
        // SAFETY: `norm_rows` wrote every element of the first `x.len()`.
        unsafe { out.set_len(x.len()) };
        Ok((CpuStorage::F32(out), x_layout.shape().clone()))
    }
}

vectorised_per_isa!(
    /// Normalises each row of `src` (rows of `weight.len()`) into `dst`.
    fn norm_rows(src: &[f32], dst: &mut [MaybeUninit<f32>], weight: &[f32], bias: &[f32], eps: f32) => norm_rows_in
);

/// Two passes (mean, then the squared deviations) rather than E[x²] - mean², which loses digits
/// when the mean is large.
#[inline(always)]
fn norm_rows_in(src: &[f32], dst: &mut [MaybeUninit<f32>], weight: &[f32], bias: &[f32], eps: f32) {
    let dim = weight.len();
    for (row, out) in src.chunks_exact(dim).zip(dst.chunks_exact_mut(dim)) {
        let mean = lane_sum(row, |v| v) / dim as f32;
        let var = lane_sum(row, |v| (v - mean) * (v - mean)) / dim as f32;
        let inv_std = 1.0 / (var + eps).sqrt();
        for (((o, &v), &w), &b) in out.iter_mut().zip(row).zip(weight).zip(bias) {
            o.write((v - mean) * inv_std * w + b);
        }
    }
}

/// The sum of `f(v)` over `values` in 16 independent lanes, so the compiler can vectorise it
/// (one running sum is a chain of dependent adds).
#[inline(always)]
fn lane_sum(values: &[f32], f: impl Fn(f32) -> f32) -> f32 {
    let mut lanes = [0f32; 16];
    let mut chunks = values.chunks_exact(16);
    for chunk in &mut chunks {
        for (lane, &v) in lanes.iter_mut().zip(chunk) {
            *lane += f(v);
        }
    }
    chunks.remainder().iter().map(|&v| f(v)).sum::<f32>() + lanes.iter().sum::<f32>()
}

/// A raw pointer that may cross threads: every task writes a disjoint block of the output.
#[derive(Clone, Copy)]
struct SharedOut(*mut f32);
unsafe impl Send for SharedOut {}
unsafe impl Sync for SharedOut {}

impl SharedOut {
    /// A method (not field access) so closures capture the whole `Sync` wrapper.
    fn get(self) -> *mut f32 {
        self.0
    }
}

fn contiguous_f32<'a>(storage: &'a CpuStorage, layout: &Layout, op: &str) -> candle_core::Result<&'a [f32]> {
    let CpuStorage::F32(data) = storage else { candle_core::bail!("{op}: expected an f32 tensor") };
    match layout.contiguous_offsets() {
        Some((start, end)) => Ok(&data[start..end]),
        None => candle_core::bail!("{op}: input must be contiguous"),
    }
}

#[cfg(test)]
mod tests {
    use super::{amx_turned_off, fast_exp, Isa};

    #[test]
    fn a_forced_instruction_set_must_be_below_the_best_and_of_this_architecture() {
        let best = if cfg!(target_arch = "aarch64") { Isa::Neon } else { Isa::Avx512 };
        assert_eq!(Isa::chosen(best, None), best);
        assert_eq!(Isa::chosen(best, Some("portable")), Isa::Portable);
        assert_eq!(Isa::chosen(best, Some(" Portable ")), Isa::Portable, "any case, spaces around");
        assert_eq!(Isa::chosen(best, Some("sse9")), best, "an unknown name");
        assert_eq!(Isa::chosen(best, Some("amx")), best, "one above the best");
        let (own, foreign) = if cfg!(target_arch = "aarch64") { ("neon", "avx2") } else { ("avx2", "neon") };
        assert_eq!(Isa::chosen(best, Some(own)).name(), own);
        assert_eq!(Isa::chosen(best, Some(foreign)), best, "another architecture's");
    }

    #[test]
    fn amx_is_turned_off_by_the_usual_words_for_off_and_nothing_else() {
        for off in ["0", "off", "OFF", " false ", "No"] {
            assert!(amx_turned_off(off), "{off:?}");
        }
        for not_off in ["1", "on", "True", "", "maybe", "00"] {
            assert!(!amx_turned_off(not_off), "{not_off:?}");
        }
    }

    #[test]
    fn fast_exp_is_accurate_over_the_range_softmax_and_gelu_use() {
        let mut worst = 0f32;
        let mut x = -87.0f32;
        while x < 88.0 {
            let rel = ((fast_exp(x) - x.exp()) / x.exp()).abs();
            worst = worst.max(rel);
            x += 0.013;
        }
        assert!(worst < 5e-7, "worst relative error {worst}");
        assert_eq!(fast_exp(-1000.0), fast_exp(-87.0));
        assert!(fast_exp(1000.0).is_finite());
    }

    /// Exact GELU's erf, against libm's: within 1e-6 everywhere (saturated at ±1 far out), odd,
    /// and NaN stays NaN.
    #[test]
    fn fast_erf_is_accurate_everywhere() {
        let mut worst = 0f32;
        let mut x = -12.0f32;
        while x < 12.0 {
            worst = worst.max((super::fast_erf(x) - candle_core::cpu::erf::erf_f32(x)).abs());
            assert_eq!(super::fast_erf(-x), -super::fast_erf(x), "{x}");
            x += 0.0007;
        }
        assert!(worst < 1e-6, "worst absolute error {worst}");
        assert!(super::fast_erf(f32::NAN).is_nan());
        assert_eq!((super::fast_erf(1e30), super::fast_erf(-f32::INFINITY)), (1.0, -1.0));
    }
}
