//! `--device auto|cpu|cuda|cuda:N`, parsed the same way by every binary.

use std::fmt;
use std::str::FromStr;

use candle_core::{Device, DeviceLocation};

use crate::{Error, Result};

/// A parsed device setting, before any device is opened.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeviceSpec {
    /// CUDA device 0 when this build and machine have one, else the CPU.
    Auto,
    Cpu,
    /// A CUDA device by ordinal; plain `cuda` is device 0.
    Cuda(usize),
}

impl FromStr for DeviceSpec {
    type Err = Error;

    fn from_str(spec: &str) -> Result<Self> {
        let unknown = || Error::UnknownDevice { spec: spec.to_owned() };
        match spec {
            "auto" => Ok(Self::Auto),
            "cpu" => Ok(Self::Cpu),
            "cuda" => Ok(Self::Cuda(0)),
            _ => {
                let n = spec.strip_prefix("cuda:").ok_or_else(unknown)?;
                // `usize::from_str` takes a leading `+`; a GPU index is plain digits.
                if n.is_empty() || !n.bytes().all(|b| b.is_ascii_digit()) {
                    return Err(unknown());
                }
                n.parse().map(Self::Cuda).map_err(|_| unknown())
            }
        }
    }
}

impl fmt::Display for DeviceSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Auto => f.write_str("auto"),
            Self::Cpu => f.write_str("cpu"),
            Self::Cuda(n) => write!(f, "cuda:{n}"),
        }
    }
}

impl DeviceSpec {
    /// Opens the device. `Auto` falls back to the CPU when CUDA is missing or cannot be opened;
    /// an explicit CUDA device that cannot be opened is an error.
    pub fn open(self) -> Result<Device> {
        match self {
            Self::Cpu => Ok(Device::Cpu),
            Self::Auto => {
                if candle_core::utils::cuda_is_available() {
                    if let Ok(d) = Device::new_cuda(0) {
                        return Ok(d);
                    }
                }
                Ok(Device::Cpu)
            }
            Self::Cuda(ordinal) => {
                if !candle_core::utils::cuda_is_available() {
                    return Err(Error::NoCuda { spec: self.to_string() });
                }
                Device::new_cuda(ordinal).map_err(|source| Error::OpenCuda { spec: self.to_string(), ordinal, source })
            }
        }
    }
}

/// Parses and opens a device setting: `auto`, `cpu`, `cuda` (= GPU 0) or `cuda:N`.
pub fn parse_device(spec: &str) -> Result<Device> {
    spec.parse::<DeviceSpec>()?.open()
}

/// The device's name as written in run metadata: `cpu`, `cuda:N` or `metal:N`.
pub fn describe_device(d: &Device) -> String {
    match d.location() {
        DeviceLocation::Cpu => "cpu".into(),
        DeviceLocation::Cuda { gpu_id } => format!("cuda:{gpu_id}"),
        DeviceLocation::Metal { gpu_id } => format!("metal:{gpu_id}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_every_form() {
        assert_eq!("auto".parse::<DeviceSpec>().unwrap(), DeviceSpec::Auto);
        assert_eq!("cpu".parse::<DeviceSpec>().unwrap(), DeviceSpec::Cpu);
        assert_eq!("cuda".parse::<DeviceSpec>().unwrap(), DeviceSpec::Cuda(0));
        assert_eq!("cuda:0".parse::<DeviceSpec>().unwrap(), DeviceSpec::Cuda(0));
        assert_eq!("cuda:7".parse::<DeviceSpec>().unwrap(), DeviceSpec::Cuda(7));
    }

    #[test]
    fn rejects_anything_else_naming_the_value() {
        for bad in ["", "gpu", "cuda7", "cuda:", "cuda:x", "cuda:-1", "cuda:+1", "CPU", " cpu", "cuda:1:2"] {
            let err = bad.parse::<DeviceSpec>().unwrap_err();
            assert!(matches!(err, Error::UnknownDevice { .. }), "{bad:?}");
            assert!(err.to_string().contains(&format!("`{bad}`")), "{err}");
        }
    }

    #[test]
    fn cpu_and_auto_open_and_describe() {
        assert_eq!(describe_device(&parse_device("cpu").unwrap()), "cpu");
        // Whatever `auto` picks, it opens.
        let d = parse_device("auto").unwrap();
        assert!(d.is_cpu() || d.is_cuda());
    }

    #[test]
    fn missing_cuda_is_a_clear_error() {
        if candle_core::utils::cuda_is_available() {
            return;
        }
        let err = parse_device("cuda:1").unwrap_err();
        assert!(matches!(err, Error::NoCuda { .. }));
        assert!(err.to_string().contains("`cuda:1`"), "{err}");
    }
}
