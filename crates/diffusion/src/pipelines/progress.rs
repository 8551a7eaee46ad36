//! Progress reports from a running pipeline; a sink may cancel the run by returning an error.

use crate::Result;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Progress {
    EncodingPrompt,
    /// Denoising step `step` of `total` has finished.
    Step {
        step: usize,
        total: usize,
    },
    Decoding,
}

pub trait ProgressSink {
    /// Returning `Err(Error::Cancelled)` stops the pipeline.
    fn report(&mut self, progress: Progress) -> Result<()>;
}

/// Ignores every report.
pub struct NoProgress;

impl ProgressSink for NoProgress {
    fn report(&mut self, _progress: Progress) -> Result<()> {
        Ok(())
    }
}

impl<F: FnMut(Progress) -> Result<()>> ProgressSink for F {
    fn report(&mut self, progress: Progress) -> Result<()> {
        self(progress)
    }
}
