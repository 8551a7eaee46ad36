//! What a training run (LoRA or InstructPix2Pix) reports while it goes: one record per
//! optimizer step, messages, and the caller's chance to stop it or look at the weights.

use huatu_diffusion::loading::SdxlComponents;

use crate::lora_params::LoraParams;
use crate::Result;

/// One optimizer step, as `--log` writes it.
#[derive(Debug, Clone, serde::Serialize)]
pub struct StepRecord {
    pub step: usize,
    /// The mean loss over the accumulated batches.
    pub loss: f64,
    pub lr: f64,
    pub grad_norm: f64,
    pub seconds: f64,
    pub epoch: usize,
}

/// What a run reports while it goes.
pub trait TrainingObserver {
    fn message(&mut self, text: &str);
    fn step(&mut self, record: &StepRecord, total_steps: usize) -> Result<()>;
    /// Asked before every step: stop early (Ctrl-C), keeping what was trained.
    fn should_stop(&self) -> bool {
        false
    }
    /// After every optimizer step (and after the state is saved on a `save_every` step): the
    /// adapters as trained so far, attached to `components`' layers, for snapshots and
    /// sample images.
    fn after_step(
        &mut self,
        _step: usize,
        _params: &LoraParams,
        _components: &mut SdxlComponents,
    ) -> Result<()> {
        Ok(())
    }
}
