//! Which candle device runs the encoders (`--device auto|cpu|cuda|metal`).

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
                Some(e) => format!("{e}. Check the driver, or use --device cpu"),
                None => format!("this binary was built without the `{feature}` cargo feature; rebuild with `cargo build --release --features {feature}` or use --device cpu"),
            },
        }
        };
        match self {
            Self::Cpu => Ok(Device::Cpu),
            Self::Cuda if !cfg!(feature = "cuda") => Err(unavailable("cuda", "cuda", None)),
            Self::Metal if !cfg!(feature = "metal") => Err(unavailable("metal", "metal", None)),
            Self::Cuda => Device::new_cuda(0).map_err(|e| unavailable("cuda", "cuda", Some(e))),
            Self::Metal => Device::new_metal(0).map_err(|e| unavailable("metal", "metal", Some(e))),
            Self::Auto => {
                if cfg!(feature = "cuda") && candle_core::utils::cuda_is_available() {
                    if let Ok(device) = Device::new_cuda(0) {
                        return Ok(device);
                    }
                }
                if cfg!(feature = "metal") && candle_core::utils::metal_is_available() {
                    if let Ok(device) = Device::new_metal(0) {
                        return Ok(device);
                    }
                }
                Ok(Device::Cpu)
            }
        }
    }
}
