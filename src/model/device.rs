//! Which candle device runs the encoders (`--device auto|cpu|cuda|metal`), and in which number
//! format (`--dtype f32|bf16|f16`).

use candle_core::Device;

use crate::error::{Error, Result};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum DeviceChoice {
    /// The GPU this build supports when one is present, else the CPU.
    #[default]
    Auto,
    Cpu,
    Cuda,
    Metal,
}

impl DeviceChoice {
    pub fn open(self) -> Result<Device> {
        let unavailable = |name: &str, feature: &str, e: Option<candle_core::Error>| {
            Error::Device {
            requested: name.into(),
            reason: match e {
                Some(e) => format!("{e}. {GPU_HINT}"),
                None => format!("this binary was built without the `{feature}` cargo feature; rebuild with `cargo build --release --features {feature}` or use --device cpu"),
            },
        }
        };
        match self {
            Self::Cpu => Ok(Device::Cpu),
            Self::Cuda if !cfg!(feature = "cuda") => Err(unavailable("cuda", "cuda", None)),
            Self::Metal if !cfg!(feature = "metal") => Err(unavailable("metal", "metal", None)),
            Self::Cuda => Device::new_cuda(0).and_then(runs_kernels).map_err(|e| unavailable("cuda", "cuda", Some(e))),
            Self::Metal => {
                Device::new_metal(0).and_then(runs_kernels).map_err(|e| unavailable("metal", "metal", Some(e)))
            }
            Self::Auto => {
                let gpu = if cfg!(feature = "cuda") && candle_core::utils::cuda_is_available() {
                    Some(Device::new_cuda(0))
                } else if cfg!(feature = "metal") && candle_core::utils::metal_is_available() {
                    Some(Device::new_metal(0))
                } else {
                    None
                };
                match gpu.map(|opened| opened.and_then(runs_kernels)) {
                    Some(Ok(device)) => Ok(device),
                    Some(Err(e)) => {
                        eprintln!("warning: cannot use the GPU ({e}); using the CPU. {GPU_HINT}");
                        Ok(Device::Cpu)
                    }
                    None => Ok(Device::Cpu),
                }
            }
        }
    }
}

const GPU_HINT: &str = "Check the driver (a driver older than the CUDA toolkit the binary was built with \
     cannot load its kernels: CUDA_ERROR_UNSUPPORTED_PTX_VERSION; scripts/build-cuda.sh builds with \
     CUDA 13.0, which every CUDA 13 driver runs), or use --device cpu";

/// Opening a GPU succeeds before any kernel is loaded; candle compiles its kernels on first use,
/// where a driver/toolkit mismatch shows. One tiny op here turns that into a clear error at start
/// (or, for `auto`, a fall back to the CPU) instead of a failure in the middle of loading a model.
fn runs_kernels(device: Device) -> candle_core::Result<Device> {
    let probe = candle_core::Tensor::ones(4, candle_core::DType::F32, &device)?;
    (probe.exp()? + 1.0)?.sum_all()?.to_scalar::<f32>()?;
    Ok(device)
}

/// Why `--dtype bf16` cannot run on this CPU.
pub(crate) const BF16_MISSING: &str = "this CPU has neither AMX (Intel Xeon 4th generation or later, Linux 5.16+) nor AVX512_BF16 (AMD Zen 4 or later, Intel Cooper Lake), or IMGSEARCH_ISA turned them off; use --dtype f32";

/// Why `--dtype f16` cannot run on a CPU.
pub(crate) const F16_CPU: &str =
    "f16 runs on CUDA GPUs (tensor cores); on a CPU use --dtype bf16 (AMX or AVX512_BF16) or --dtype f32";

/// The number format of the encoders' linear layers (`--dtype`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum Precision {
    /// f32 accuracy, as the reference implementation computes. On CPUs with AMX the image
    /// tower's matrix products run as three bf16 tile products of split values (~16 bits of
    /// mantissa, 30-50% faster than f32 FMAs here; parity with the reference stays ≥ 0.9999).
    /// On CUDA, f32 products without TF32.
    #[default]
    F32,
    /// bf16 weights and layer inputs with f32 sums, everything else in f32: AMX tile multiplies
    /// on CPUs that have them (Intel Xeon 4th generation and later), `vdpbf16ps` on CPUs with
    /// AVX512_BF16 but no AMX (AMD Zen 4 and later: 1.6-1.9× f32's pictures/s, 2× faster short
    /// queries on a Zen 4). On CUDA the whole tower runs in bf16 on tensor cores, with f32 sums
    /// in its products. The test checkpoints' embeddings stay within cosine 0.999 of f32 (see
    /// benches/README.md).
    Bf16,
    /// CUDA only: the whole tower in f16 on tensor cores, with f32 sums in its products.
    F16,
}

impl Precision {
    /// Refuses a format this device cannot run fast, rather than silently running it slowly.
    pub fn check(self, device: &Device) -> Result<()> {
        let refuse = |reason| Err(Error::Precision { requested: self.name(), reason });
        match self {
            Self::F32 => Ok(()),
            Self::Bf16 | Self::F16 if device.is_cuda() => Ok(()),
            Self::Bf16 | Self::F16 if !device.is_cpu() => refuse("on this GPU only --dtype f32 is implemented"),
            Self::F16 => refuse(F16_CPU),
            Self::Bf16 if crate::model::kernels::bf16_layout().is_none() => refuse(BF16_MISSING),
            Self::Bf16 => Ok(()),
        }
    }

    fn name(self) -> &'static str {
        match self {
            Self::F32 => "f32",
            Self::Bf16 => "bf16",
            Self::F16 => "f16",
        }
    }

    /// The dtype the model's tensors are held in on `device`. The CPU keeps f32 tensors in
    /// every precision (its kernels lay bf16 weights out themselves); a GPU holds them in the
    /// precision asked for.
    pub fn tensor_dtype(self, device: &Device) -> candle_core::DType {
        match self {
            _ if device.is_cpu() => candle_core::DType::F32,
            Self::F32 => candle_core::DType::F32,
            Self::Bf16 => candle_core::DType::BF16,
            Self::F16 => candle_core::DType::F16,
        }
    }
}
