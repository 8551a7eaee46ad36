//! `--device` and `--dtype`, shared by every command that loads a model.

use candle_core::Device;
use clap::Args;
use huatu_diffusion::device::{device_name, DeviceChoice};

#[derive(Args, Debug, Clone, Default)]
pub struct DeviceArgs {
    /// Where to compute: auto (a CUDA GPU when this binary was built with CUDA and one
    /// answers, else the CPU), cpu, cuda or cuda:N. Default: $HUATU_DEVICE, else auto.
    #[arg(long)]
    pub device: Option<DeviceChoice>,
}

impl DeviceArgs {
    /// Opens the chosen device; says on stderr when it is not the CPU.
    pub fn open(&self) -> anyhow::Result<Device> {
        let device = DeviceChoice::from_flag_or_env(self.device)?.open()?;
        if !device.is_cpu() {
            eprintln!("computing on {}", device_name(&device));
        }
        Ok(device)
    }
}
