//! Device selection for the command-line tools: `cpu`, `cuda` or `auto`.

use tch::Device;

/// The `--device` flag's value.
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    Default,
    clap::ValueEnum,
    serde::Serialize,
    serde::Deserialize,
)]
#[serde(rename_all = "lowercase")]
pub enum DeviceChoice {
    Cpu,
    Cuda,
    /// CUDA when available, else the CPU (with a warning on stderr).
    #[default]
    Auto,
}

#[derive(Debug, thiserror::Error)]
pub enum DeviceError {
    #[error(
        "--device cuda: no CUDA device is available (libtorch sees none); use --device cpu or auto"
    )]
    NoCuda,
}

impl DeviceChoice {
    pub fn resolve(self) -> Result<Device, DeviceError> {
        match self {
            Self::Cpu => Ok(Device::Cpu),
            Self::Cuda if tch::Cuda::is_available() => Ok(Device::Cuda(0)),
            Self::Cuda => Err(DeviceError::NoCuda),
            Self::Auto if tch::Cuda::is_available() => Ok(Device::Cuda(0)),
            Self::Auto => {
                eprintln!("warning: no CUDA device available, running on the CPU");
                Ok(Device::Cpu)
            }
        }
    }
}
