//! The CPU kernels (fused activation, in-place attention) compute what candle's generic ops do.

use candle_core::{Device, Tensor};
use imgsearch::model::config::Activation;
use imgsearch::model::kernels::{activate, activate_generic, attention, attention_generic, linear, linear_generic};

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
fn linear_with_and_without_bias_equals_candle_matmul() {
    let x = Tensor::randn(0f32, 1.0, (37, 24), &Device::Cpu).unwrap();
    let w_t = Tensor::randn(0f32, 1.0, (24, 19), &Device::Cpu).unwrap();
    let b = Tensor::randn(0f32, 1.0, 19, &Device::Cpu).unwrap();
    for bias in [None, Some(&b)] {
        let d = max_abs_diff(&linear(&x, &w_t, bias).unwrap(), &linear_generic(&x, &w_t, bias).unwrap());
        assert!(d < 1e-4, "bias={}: max diff {d}", bias.is_some());
    }
}
