//! The CPU kernels (fused activation, in-place attention, linear layers) compute what candle's generic ops do.

use candle_core::{DType, Device, Tensor};
use imgsearch::model::config::Activation;
use imgsearch::model::kernels::{
    activate, activate_generic, amx, attention, attention_generic, linear, LinearWeight, WeightLayout,
};

fn max_abs_diff(a: &Tensor, b: &Tensor) -> f32 {
    assert_eq!(a.dims(), b.dims());
    (a - b).unwrap().abs().unwrap().flatten_all().unwrap().max(0).unwrap().to_scalar::<f32>().unwrap()
}

#[test]
fn fused_activations_equal_candle_ops() {
    let x = Tensor::randn(0f32, 3.0, (7, 33, 129), &Device::Cpu).unwrap();
    for act in [Activation::QuickGelu, Activation::Gelu, Activation::GeluNew] {
        let expected = activate_generic(&x, act).unwrap();
        let fresh = x.copy().unwrap(); // activate overwrites its input on CPU
        let d = max_abs_diff(&activate(fresh, act).unwrap(), &expected);
        assert!(d < 1e-5, "{act:?}: max diff {d}");
    }
}

#[test]
fn in_place_attention_equals_candle_ops_with_and_without_causal_mask() {
    // Odd sizes on purpose: 3 images, 13 tokens, 4 heads of 8.
    let qkv = Tensor::randn(0f32, 1.0, (3, 13, 3 * 32), &Device::Cpu).unwrap();
    for causal in [false, true] {
        let fast = attention(&qkv, 4, causal).unwrap();
        let slow = attention_generic(&qkv, 4, causal).unwrap();
        let d = max_abs_diff(&fast, &slow);
        assert!(d < 1e-5, "causal={causal}: max diff {d}");
    }
    // A non-contiguous input (a transposed view) is handled too.
    let t = Tensor::randn(0f32, 1.0, (13, 3, 96), &Device::Cpu).unwrap().transpose(0, 1).unwrap();
    assert!(max_abs_diff(&attention(&t, 4, false).unwrap(), &attention_generic(&t, 4, false).unwrap()) < 1e-5);
}

#[test]
fn linear_layers_in_every_layout_equal_candle_matmul_on_ragged_shapes() {
    // Rows around the tile heights, output widths inside, at and past a 64-column panel.
    for (rows, in_dim, out_dim) in [(1, 24, 19), (8, 33, 64), (13, 70, 65), (50, 96, 130), (37, 24, 1)] {
        let x = Tensor::randn(0f32, 1.0, (rows, in_dim), &Device::Cpu).unwrap();
        let w = Tensor::randn(0f32, 1.0, (out_dim, in_dim), &Device::Cpu).unwrap();
        let b = Tensor::randn(0f32, 1.0, out_dim, &Device::Cpu).unwrap();
        let expected = x.matmul(&w.t().unwrap()).unwrap().broadcast_add(&b).unwrap();
        for layout in [WeightLayout::Packed, WeightLayout::Transposed] {
            let weight = LinearWeight::new(&w, layout).unwrap();
            let d = max_abs_diff(&linear(&x, &weight, &b).unwrap(), &expected);
            assert!(d < 1e-4, "{layout:?} {rows}x{in_dim}x{out_dim}: max diff {d}");
        }
        if amx::available() {
            // bf16 tiles round x and w to bf16: compare with the f32 product of the rounded inputs.
            let round = |t: &Tensor| t.to_dtype(DType::BF16).unwrap().to_dtype(DType::F32).unwrap();
            let expected = round(&x).matmul(&round(&w).t().unwrap()).unwrap().broadcast_add(&b).unwrap();
            let weight = LinearWeight::new(&w, WeightLayout::AmxTiles(amx::Split::Once)).unwrap();
            let d = max_abs_diff(&linear(&x, &weight, &b).unwrap(), &expected);
            assert!(d < 1e-3, "bf16 tiles {rows}x{in_dim}x{out_dim}: max diff {d}");
        }
    }
    // A non-contiguous input (a transposed view) works too.
    let x = Tensor::randn(0f32, 1.0, (24, 9), &Device::Cpu).unwrap().t().unwrap();
    let w = Tensor::randn(0f32, 1.0, (19, 24), &Device::Cpu).unwrap();
    let zero_bias = Tensor::zeros(19, candle_core::DType::F32, &Device::Cpu).unwrap();
    let d = max_abs_diff(
        &linear(&x, &LinearWeight::new(&w, WeightLayout::Packed).unwrap(), &zero_bias).unwrap(),
        &x.matmul(&w.t().unwrap()).unwrap(),
    );
    assert!(d < 1e-4, "transposed input: max diff {d}");
}
