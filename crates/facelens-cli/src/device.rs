//! `--device auto|cpu|cuda[:N]`.

use anyhow::{bail, Context, Result};
use candle_core::{Device, DeviceLocation};

// TODO(merge): facelens_core::device
pub fn select(spec: &str) -> Result<Device> {
    match spec {
        "cpu" => Ok(Device::Cpu),
        "auto" => {
            if candle_core::utils::cuda_is_available() {
                if let Ok(d) = Device::new_cuda(0) {
                    return Ok(d);
                }
            }
            if cfg!(feature = "cuda") {
                eprintln!("note: no usable CUDA device found, running on CPU");
            }
            Ok(Device::Cpu)
        }
        s if s == "cuda" || s.starts_with("cuda:") => {
            if !candle_core::utils::cuda_is_available() {
                bail!("--device {s}: this facelens binary was built without CUDA; rebuild with `cargo build --release -p facelens-cli --features cuda` (needs nvcc)");
            }
            let ordinal = match s.strip_prefix("cuda:") {
                Some(n) => n.parse::<usize>().with_context(|| format!("--device {s}: `{n}` is not a GPU index"))?,
                None => 0,
            };
            Device::new_cuda(ordinal).with_context(|| format!("--device {s}: cannot open CUDA device {ordinal}"))
        }
        other => bail!("--device `{other}`: expected auto, cpu, cuda or cuda:N"),
    }
}

// TODO(merge): facelens_core::device
/// `cpu`, `cuda:N` or `metal:N`, as run directories record it.
pub fn describe(d: &Device) -> String {
    match d.location() {
        DeviceLocation::Cpu => "cpu".into(),
        DeviceLocation::Cuda { gpu_id } => format!("cuda:{gpu_id}"),
        DeviceLocation::Metal { gpu_id } => format!("metal:{gpu_id}"),
    }
}
