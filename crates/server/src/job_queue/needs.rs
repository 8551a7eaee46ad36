//! What a job needs of the worker that runs it, and what a worker offers: plain labels
//! (`instruct`, `controlnet`, `upscaler`, `lora:<name>`). A shared queue stores a job's
//! needs beside it and a worker claims only jobs whose needs it covers, so a job that
//! uses ControlNet never lands on a machine without it.

use std::path::Path;

use huatu_agent::planner::PipelineKind;
use huatu_imaging::enhancer_upscales;

use crate::job_queue::store::WorkerIdentity;
use crate::job_runner::Capabilities;
use crate::jobs::{JobSpec, LoraSpec};

/// A worker with `capabilities` and the LoRA files found in `lora_dir` now.
pub fn worker_identity(
    name: String,
    capabilities: Capabilities,
    lora_dir: &Path,
) -> WorkerIdentity {
    let mut labels = Vec::new();
    for (label, present) in [
        ("instruct", capabilities.instruct),
        ("controlnet", capabilities.controlnet),
        ("upscaler", capabilities.upscaler),
    ] {
        if present {
            labels.push(label.to_string());
        }
    }
    if let Ok(entries) = std::fs::read_dir(lora_dir) {
        for entry in entries.flatten() {
            let name = entry.file_name();
            let Some(name) = name.to_str() else { continue };
            if let Some(stem) = name.strip_suffix(".safetensors") {
                labels.push(format!("lora:{stem}"));
            }
        }
    }
    labels.sort();
    WorkerIdentity {
        name,
        capabilities: labels,
    }
}

/// A default worker name: `<host>-<pid>-<index>`, unique across machines and restarts.
pub fn default_worker_name(index: usize) -> String {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .or_else(|| std::env::var("HOSTNAME").ok())
        .map(|host| host.trim().to_string())
        .filter(|host| !host.is_empty())
        .unwrap_or_else(|| "host".into());
    format!("{host}-{}-{index}", std::process::id())
}

/// The labels a worker needs to run `spec`, sorted.
pub fn job_needs(spec: &JobSpec) -> Vec<String> {
    let mut needs = Vec::new();
    let mut loras = |loras: &[LoraSpec]| {
        for lora in loras {
            needs.push(format!("lora:{}", lora.name));
        }
    };
    match spec {
        JobSpec::Generation(spec) => loras(&spec.sampling.loras),
        JobSpec::Edit(spec) => loras(&spec.sampling.loras),
        JobSpec::Agent(spec) => {
            loras(&spec.loras);
            match spec.plan.pipeline {
                PipelineKind::InstructPix2Pix => needs.push("instruct".into()),
                PipelineKind::ControlNetInpaint => needs.push("controlnet".into()),
                PipelineKind::TextToImage => {}
            }
            if spec.plan.enhancer.as_deref().is_some_and(enhancer_upscales) {
                needs.push("upscaler".into());
            }
        }
        JobSpec::Unreadable { .. } => {}
    }
    needs.sort();
    needs.dedup();
    needs
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_worker_covers_exactly_the_jobs_whose_needs_it_has() -> anyhow::Result<()> {
        let dir = tempfile::tempdir()?;
        std::fs::write(dir.path().join("poster.safetensors"), b"")?;
        std::fs::write(dir.path().join("notes.txt"), b"")?;
        let capabilities = Capabilities {
            instruct: false,
            controlnet: true,
            upscaler: false,
        };
        let worker = worker_identity("w".into(), capabilities, dir.path());
        assert_eq!(worker.capabilities, vec!["controlnet", "lora:poster"]);
        assert!(worker.covers(&[]));
        assert!(worker.covers(&["lora:poster".into(), "controlnet".into()]));
        assert!(!worker.covers(&["instruct".into()]));
        assert!(!worker.covers(&["lora:portrait".into()]));
        Ok(())
    }
}
