//! The CPU kernels (fused activation, in-place attention, layer norm, linear layers, the ResNet's
//! neighbourhoods and pooling, EVA-02's rotary positions and SwiGLU gate, ConvNeXt's depthwise
//! conv) compute what candle's generic ops do.

use candle_core::{DType, Device, Tensor, D};
use imgsearch::model::config::Activation;
use imgsearch::model::kernels::{
    activate, activate_generic, amx, attention, attention_from_parts, attention_generic, average_pool,
    average_pool_generic, bf16_pairs, depthwise_conv, depthwise_conv_generic, layer_norm, layer_norm_generic, linear,
    neighbourhoods, neighbourhoods_generic, rotate_queries_keys, rotate_queries_keys_generic, swiglu, swiglu_generic,
    Epilogue, LinearWeight, RotaryTable, WeightLayout,
};

fn max_abs_diff(a: &Tensor, b: &Tensor) -> f32 {
    assert_eq!(a.dims(), b.dims());
    (a - b).unwrap().abs().unwrap().flatten_all().unwrap().max(0).unwrap().to_scalar::<f32>().unwrap()
}

#[test]
fn fused_activations_equal_candle_ops() {
    let x = Tensor::randn(0f32, 3.0, (7, 33, 129), &Device::Cpu).unwrap();
    for act in [Activation::QuickGelu, Activation::Gelu, Activation::GeluNew, Activation::Relu] {
        let expected = activate_generic(&x, act).unwrap();
        let fresh = x.copy().unwrap(); // activate overwrites its input on CPU
        let d = max_abs_diff(&activate(fresh, act).unwrap(), &expected);
        assert!(d < 1e-5, "{act:?}: max diff {d}");
    }
}

/// ConvNeXt's depthwise conv (each channel its own filter, padded to keep the size) in one pass
/// on channels-last pictures: as candle's grouped NCHW conv computes it, on pictures smaller
/// than the filter too.
#[test]
fn depthwise_conv_equals_candle_grouped_conv() {
    let cpu = Device::Cpu;
    for (k, (height, width)) in [(7, (9, 11)), (7, (3, 2)), (3, (5, 5)), (1, (4, 3))] {
        let x = Tensor::randn(0f32, 1.0, (2, height, width, 37), &cpu).unwrap();
        let taps = Tensor::randn(0f32, 0.3, (k * k, 37), &cpu).unwrap();
        let bias = Tensor::randn(0f32, 0.1, 37, &cpu).unwrap();
        let d = max_abs_diff(
            &depthwise_conv(&x, &taps, &bias, k).unwrap(),
            &depthwise_conv_generic(&x, &taps, &bias, k).unwrap(),
        );
        assert!(d < 1e-5, "k {k}, {height}×{width}: max diff {d}");
    }
}

/// SwiGLU's gate, silu(first half of a row) times its second half, one pass on the CPU: as
/// candle's ops compute it, rows of odd half-widths and a non-contiguous input included.
#[test]
fn swiglu_equals_candle_ops() {
    let x = Tensor::randn(0f32, 3.0, (5, 39, 2 * 171), &Device::Cpu).unwrap();
    let d = max_abs_diff(&swiglu(&x).unwrap(), &swiglu_generic(&x).unwrap());
    assert!(d < 1e-4, "max diff {d}");
    let t = x.transpose(0, 1).unwrap();
    let d = max_abs_diff(&swiglu(&t).unwrap(), &swiglu_generic(&t).unwrap());
    assert!(d < 1e-4, "transposed input: max diff {d}");
    assert!(swiglu(&Tensor::zeros((2, 3), DType::F32, &Device::Cpu).unwrap()).is_err(), "an odd row is refused");
}

/// A 3×3 conv padded by 1 as a product over each pixel's neighbourhood (channels last), and
/// average pooling, equal candle's NCHW `conv2d` and `avg_pool2d`: on odd sizes, both strides.
#[test]
fn resnet_neighbourhoods_and_pooling_equal_candle_conv_and_pool() {
    let cpu = Device::Cpu;
    let x = Tensor::randn(0f32, 1.0, (2, 7, 9, 5), &cpu).unwrap(); // (batch, height, width, channels)
    let nchw = x.permute((0, 3, 1, 2)).unwrap().contiguous().unwrap();
    let w = Tensor::randn(0f32, 1.0, (6, 5, 3, 3), &cpu).unwrap();
    let w_rows = w.permute((0, 2, 3, 1)).unwrap().reshape((6, 45)).unwrap().t().unwrap();
    for stride in [1, 2] {
        let expected = nchw.conv2d(&w, 1, stride, 1, 1).unwrap().permute((0, 2, 3, 1)).unwrap();
        for (path, rows) in [("cpu", neighbourhoods(&x, stride)), ("generic", neighbourhoods_generic(&x, stride))] {
            let rows = rows.unwrap();
            let (b, h, wd, k) = rows.dims4().unwrap();
            let got = rows.reshape((b * h * wd, k)).unwrap().matmul(&w_rows).unwrap().reshape((b, h, wd, 6)).unwrap();
            let d = max_abs_diff(&got, &expected.contiguous().unwrap());
            assert!(d < 1e-4, "{path} stride {stride}: max diff {d}");
        }
    }
    for size in [1, 2, 3] {
        let expected = nchw.avg_pool2d(size).unwrap().permute((0, 2, 3, 1)).unwrap().contiguous().unwrap();
        for (path, got) in [("cpu", average_pool(&x, size)), ("generic", average_pool_generic(&x, size))] {
            let d = max_abs_diff(&got.unwrap(), &expected);
            assert!(d < 1e-5, "{path} pool {size}: max diff {d}");
        }
    }
}

/// EVA-02's rotary positions turn each pair of a patch's query and key numbers by its row's
/// (first half of a head's pairs) or column's angle, and leave the class token and the values
/// alone: the one-pass CPU kernel and candle's ops agree, and both turn by the angle timm's
/// `RotaryEmbeddingCat` gives (coordinate / grid · reference grid · band).
#[test]
fn rotary_positions_turn_queries_and_keys_by_their_row_and_column() {
    let (grid, reference, head_dim, heads, batch) = (3, 5, 8, 2, 2);
    let (seq, dim) = (grid * grid + 1, head_dim * heads);
    let table = RotaryTable::new(grid, reference, head_dim, &Device::Cpu).unwrap();
    let qkv = Tensor::randn(0f32, 1.0, (batch, seq, 3 * dim), &Device::Cpu).unwrap();
    let generic = rotate_queries_keys_generic(&qkv, &table).unwrap();
    let cpu = rotate_queries_keys(qkv.copy().unwrap(), &table).unwrap(); // turned in place on CPU
    let d = max_abs_diff(&cpu, &generic);
    assert!(d < 1e-6, "cpu vs generic: max diff {d}");
    let before: Vec<Vec<Vec<f32>>> = qkv.to_vec3().unwrap();
    let after: Vec<Vec<Vec<f32>>> = cpu.to_vec3().unwrap();
    for b in 0..batch {
        assert_eq!(before[b][0], after[b][0], "the class token is not turned");
        for position in 0..seq {
            assert_eq!(before[b][position][2 * dim..], after[b][position][2 * dim..], "values are not turned");
        }
    }
    // The patch at row 2, column 1 (position 1 + 2 · 3 + 1): the first pair of every head of q and
    // k turns by its row's angle at band 0 (1 rad per coordinate), the first pair of the head's
    // second half by its column's; the bands after it turn slower (10000^(-j / 2)).
    let position = 1 + 2 * grid + 1;
    let (row_angle, column_angle) = (2.0f32 / 3.0 * 5.0, 1.0f32 / 3.0 * 5.0);
    for start in (0..2 * dim).step_by(head_dim) {
        for (pair, angle) in [(0, row_angle), (2, column_angle), (1, row_angle / 100.0)] {
            let i = start + 2 * pair;
            let (x, y) = (before[1][position][i], before[1][position][i + 1]);
            let expected = [x * angle.cos() - y * angle.sin(), y * angle.cos() + x * angle.sin()];
            let got = [after[1][position][i], after[1][position][i + 1]];
            assert!(
                (got[0] - expected[0]).abs() < 1e-5 && (got[1] - expected[1]).abs() < 1e-5,
                "{got:?} vs {expected:?}"
            );
        }
    }
}

#[test]
fn layer_norm_equals_candle_op() {
    // Rows not a multiple of the lane count or of a task's rows, and a non-contiguous input.
    let x = Tensor::randn(0f32, 2.0, (3, 37, 771), &Device::Cpu).unwrap();
    let weight = Tensor::randn(1f32, 0.5, 771, &Device::Cpu).unwrap();
    let bias = Tensor::randn(0f32, 0.5, 771, &Device::Cpu).unwrap();
    for eps in [1e-5, 1e-12] {
        let d = max_abs_diff(
            &layer_norm(&x, &weight, &bias, eps).unwrap(),
            &layer_norm_generic(&x, &weight, &bias, eps).unwrap(),
        );
        assert!(d < 1e-5, "eps {eps}: max diff {d}");
    }
    let t = Tensor::randn(0f32, 1.0, (40, 3, 20), &Device::Cpu).unwrap().transpose(0, 2).unwrap();
    let (w, b) =
        (Tensor::ones(40, DType::F32, &Device::Cpu).unwrap(), Tensor::zeros(40, DType::F32, &Device::Cpu).unwrap());
    let d = max_abs_diff(&layer_norm(&t, &w, &b, 1e-5).unwrap(), &layer_norm_generic(&t, &w, &b, 1e-5).unwrap());
    assert!(d < 1e-5, "transposed input: max diff {d}");
    // Rows far from zero mean: candle's one-pass variance (E[x²] - mean²) loses digits there in
    // f32 (0.003 here), the two-pass kernel does not; against the definition computed in f64.
    let offset = (&x + 40.0).unwrap();
    let f64_of = |t: &Tensor| t.to_dtype(DType::F64).unwrap();
    let centred = f64_of(&offset).broadcast_sub(&f64_of(&offset).mean_keepdim(D::Minus1).unwrap()).unwrap();
    let std = (centred.sqr().unwrap().mean_keepdim(D::Minus1).unwrap() + 1e-5).unwrap().sqrt().unwrap();
    let exact = centred.broadcast_div(&std).unwrap().broadcast_mul(&f64_of(&weight)).unwrap();
    let exact = exact.broadcast_add(&f64_of(&bias)).unwrap().to_dtype(DType::F32).unwrap();
    let d = max_abs_diff(&layer_norm(&offset, &weight, &bias, 1e-5).unwrap(), &exact);
    assert!(d < 1e-4, "offset rows: max diff {d} from f64");
}

#[test]
fn in_place_attention_equals_candle_ops_with_and_without_causal_mask() {
    // (sequences, tokens, heads, head width), odd on purpose: sequences short of a block of 32
    // queries and keys (the tile unit's) or longer than one with a ragged last, heads narrower
    // than a tile step (8, 20) or wider than two (SigLIP so400m's 72), one token alone.
    for (batch, seq, heads, head_dim) in [(3, 13, 4, 8), (2, 70, 3, 72), (1, 150, 2, 20), (2, 1, 2, 16), (1, 64, 1, 64)]
    {
        let qkv = Tensor::randn(0f32, 1.0, (batch, seq, 3 * heads * head_dim), &Device::Cpu).unwrap();
        for causal in [false, true] {
            let shape = format!("({batch}, {seq}, {heads} x {head_dim}), causal={causal}");
            let slow = attention_generic(&qkv, heads, causal).unwrap();
            let d = max_abs_diff(&attention(&qkv, heads, causal, None).unwrap(), &slow);
            assert!(d < 1e-5, "{shape}: max diff {d}");
            if amx::available() {
                // On the tile unit, in the linear layers' splits: near f32 in three bf16 parts,
                // bf16's rounding in one.
                let on_tiles = |split| max_abs_diff(&attention(&qkv, heads, causal, Some(split)).unwrap(), &slow);
                let (three, once) = (on_tiles(amx::Split::ThreeWay), on_tiles(amx::Split::Once));
                assert!(three < 1e-3 && once < 0.25 && once > 10.0 * three, "{shape}: three-way {three}, bf16 {once}");
            }
        }
    }
    // A non-contiguous input (a transposed view) is handled too.
    let t = Tensor::randn(0f32, 1.0, (13, 3, 96), &Device::Cpu).unwrap().transpose(0, 1).unwrap();
    assert!(max_abs_diff(&attention(&t, 4, false, None).unwrap(), &attention_generic(&t, 4, false).unwrap()) < 1e-5);
}

/// The GPU's attention takes q, k and v split by head ((3 × heads, rows, head_dim), as
/// `linear_split` writes them there); its assembly is device-independent and checked here.
#[test]
fn attention_from_head_major_parts_equals_the_fused_layout() {
    let (batch, seq, heads, head_dim) = (3, 13, 4, 8);
    let qkv = Tensor::randn(0f32, 1.0, (batch, seq, 3 * heads * head_dim), &Device::Cpu).unwrap();
    // Column block j of the projection's output is part j: q's heads, then k's, then v's.
    let parts = qkv.reshape((batch * seq, 3 * heads, head_dim)).unwrap().transpose(0, 1).unwrap().contiguous().unwrap();
    for causal in [false, true] {
        let d = max_abs_diff(
            &attention_from_parts(&parts, batch, causal).unwrap(),
            &attention_generic(&qkv, heads, causal).unwrap(),
        );
        assert!(d < 1e-5, "causal={causal}: max diff {d}");
    }
}

/// `linear` with each epilogue against candle's ops on `expected` (the plain product plus bias).
fn check_epilogues(x: &Tensor, weight: &LinearWeight, b: &Tensor, expected: &Tensor, tolerance: f32, what: &str) {
    let d = max_abs_diff(&linear(x, weight, b, Epilogue::Nothing).unwrap(), expected);
    assert!(d < tolerance, "{what}: max diff {d}");
    let residual = Tensor::randn(0f32, 1.0, expected.dims(), &Device::Cpu).unwrap();
    let with_residual = linear(x, weight, b, Epilogue::Residual(&residual)).unwrap();
    let d = max_abs_diff(&with_residual, &(expected + &residual).unwrap());
    assert!(d < tolerance, "{what} plus residual: max diff {d}");
    for act in [Activation::QuickGelu, Activation::Gelu, Activation::GeluNew, Activation::Relu] {
        let activated = linear(x, weight, b, Epilogue::Activation(act)).unwrap();
        let d = max_abs_diff(&activated, &activate_generic(expected, act).unwrap());
        assert!(d < tolerance, "{what} then {act:?}: max diff {d}");
    }
}

#[test]
fn linear_layers_in_every_layout_equal_candle_matmul_on_ragged_shapes() {
    // Rows around the tile heights, output widths inside, at and past a panel (16 columns for
    // the AVX2 and NEON kernels, 64 for the others).
    for (rows, in_dim, out_dim) in [(1, 24, 19), (8, 33, 64), (13, 70, 65), (50, 96, 130), (37, 24, 1), (7, 40, 45)] {
        let x = Tensor::randn(0f32, 1.0, (rows, in_dim), &Device::Cpu).unwrap();
        let w = Tensor::randn(0f32, 1.0, (out_dim, in_dim), &Device::Cpu).unwrap();
        let b = Tensor::randn(0f32, 1.0, out_dim, &Device::Cpu).unwrap();
        let expected = x.matmul(&w.t().unwrap()).unwrap().broadcast_add(&b).unwrap();
        for layout in [WeightLayout::Packed, WeightLayout::Transposed] {
            let weight = LinearWeight::new(&w, layout).unwrap();
            check_epilogues(&x, &weight, &b, &expected, 1e-4, &format!("{layout:?} {rows}x{in_dim}x{out_dim}"));
        }
        // bf16 weights (AMX tiles, or pairs for `vdpbf16ps`) round x and w to bf16: compare with
        // the f32 product of the rounded inputs.
        let round = |t: &Tensor| t.to_dtype(DType::BF16).unwrap().to_dtype(DType::F32).unwrap();
        let expected = round(&x).matmul(&round(&w).t().unwrap()).unwrap().broadcast_add(&b).unwrap();
        let bf16_layouts = [
            (amx::available(), WeightLayout::AmxTiles(amx::Split::Once)),
            (bf16_pairs::available(), WeightLayout::Bf16Pairs),
        ];
        for (_, layout) in bf16_layouts.into_iter().filter(|(runs_here, _)| *runs_here) {
            let weight = LinearWeight::new(&w, layout).unwrap();
            check_epilogues(&x, &weight, &b, &expected, 1e-3, &format!("{layout:?} {rows}x{in_dim}x{out_dim}"));
        }
    }
    // A non-contiguous input (a transposed view) works too.
    let x = Tensor::randn(0f32, 1.0, (24, 9), &Device::Cpu).unwrap().t().unwrap();
    let w = Tensor::randn(0f32, 1.0, (19, 24), &Device::Cpu).unwrap();
    let zero_bias = Tensor::zeros(19, candle_core::DType::F32, &Device::Cpu).unwrap();
    let d = max_abs_diff(
        &linear(&x, &LinearWeight::new(&w, WeightLayout::Packed).unwrap(), &zero_bias, Epilogue::Nothing).unwrap(),
        &x.matmul(&w.t().unwrap()).unwrap(),
    );
    assert!(d < 1e-4, "transposed input: max diff {d}");
}
