//! What both training commands (`huatu train lora`, `huatu train instruct-pix2pix`) show
//! and keep while a run goes: the progress bar, the `--log` lines (one JSON object per
//! optimizer step) and Ctrl-C (finish the step and save; twice: quit now).

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use anyhow::Context;
use huatu_train::trainer::{StepRecord, TrainingObserver};

/// Progress bar, `--log` lines and Ctrl-C.
pub(crate) struct RunProgress {
    bar: Option<indicatif::ProgressBar>,
    log: Option<(PathBuf, std::io::BufWriter<std::fs::File>)>,
    interrupted: Arc<AtomicBool>,
}

impl RunProgress {
    /// Creates the `--log` file (when given) and takes over Ctrl-C.
    pub fn start(log: Option<&Path>) -> anyhow::Result<Self> {
        let log = match log {
            Some(path) => {
                let file = std::fs::File::create(path)
                    .with_context(|| format!("cannot write the log {}", path.display()))?;
                Some((path.to_path_buf(), std::io::BufWriter::new(file)))
            }
            None => None,
        };
        let interrupted = Arc::new(AtomicBool::new(false));
        {
            let interrupted = interrupted.clone();
            // A second Ctrl-C ends the process at once.
            let _ = ctrlc::set_handler(move || {
                if interrupted.swap(true, Ordering::SeqCst) {
                    std::process::exit(130);
                }
                eprintln!("\ninterrupted: finishing this step and saving what is trained (Ctrl-C again to quit now)");
            });
        }
        Ok(Self {
            bar: None,
            log,
            interrupted,
        })
    }

    /// Clears the progress bar once the run is over.
    pub fn finish(&mut self) {
        if let Some(bar) = self.bar.take() {
            bar.finish_and_clear();
        }
    }
}

impl TrainingObserver for RunProgress {
    fn message(&mut self, text: &str) {
        match &self.bar {
            Some(bar) if !bar.is_hidden() => bar.println(text),
            _ => eprintln!("{text}"),
        }
    }

    fn step(&mut self, record: &StepRecord, total_steps: usize) -> huatu_train::Result<()> {
        if let Some((path, log)) = &mut self.log {
            let line = serde_json::to_string(record).unwrap_or_default();
            writeln!(log, "{line}")
                .and_then(|()| log.flush())
                .map_err(|source| huatu_train::Error::Write {
                    path: path.clone(),
                    source,
                })?;
        }
        let bar = self.bar.get_or_insert_with(|| {
            let bar = indicatif::ProgressBar::with_draw_target(
                Some(total_steps as u64),
                indicatif::ProgressDrawTarget::stderr(),
            );
            let style = indicatif::ProgressStyle::with_template(
                "{msg} [{bar:30}] {pos}/{len} {per_sec} eta {eta}",
            )
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar());
            bar.set_style(style.progress_chars("=> "));
            bar
        });
        bar.set_message(format!("loss {:.4} lr {:.2e}", record.loss, record.lr));
        bar.set_position(record.step as u64);
        Ok(())
    }

    fn should_stop(&self) -> bool {
        self.interrupted.load(Ordering::SeqCst)
    }
}
