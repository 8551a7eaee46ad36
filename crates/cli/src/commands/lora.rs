//! `huatu lora info FILE`: what a LoRA file changes and the training metadata in its header.

use std::path::PathBuf;

use anyhow::Context;
use clap::{Args, Subcommand};
use huatu_diffusion::lora::{LoraFile, LoraInfo};

#[derive(Args, Debug)]
pub struct LoraArgs {
    #[command(subcommand)]
    pub command: LoraCommand,
}

#[derive(Subcommand, Debug)]
pub enum LoraCommand {
    /// Format, modules per component, ranks, alphas, trigger word and training metadata.
    Info {
        file: PathBuf,
        /// Print JSON instead of text.
        #[arg(long)]
        json: bool,
    },
}

pub fn run(args: LoraArgs) -> anyhow::Result<()> {
    match args.command {
        LoraCommand::Info { file, json } => {
            let lora = LoraFile::read(&file)
                .with_context(|| format!("cannot read LoRA {}", file.display()))?;
            let info = LoraInfo::of(&lora);
            if json {
                println!("{}", serde_json::to_string_pretty(&info)?);
            } else {
                print!("{}", render(&file, &info));
            }
            Ok(())
        }
    }
}

fn join<T: ToString>(values: &[T]) -> String {
    values
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join(", ")
}

fn render(file: &std::path::Path, info: &LoraInfo) -> String {
    let mut text = format!("file: {}\nformat: {}\n", file.display(), info.format);
    let modules: Vec<String> = info
        .modules
        .iter()
        .map(|(component, count)| format!("{component} {count}"))
        .collect();
    text.push_str(&format!(
        "modules: {} (convolution: {})\n",
        modules.join(", "),
        info.convolution_modules
    ));
    text.push_str(&format!(
        "ranks: {}\nalphas: {}\n",
        join(&info.ranks),
        join(&info.alphas)
    ));
    text.push_str(&format!(
        "trigger word: {}\n",
        info.trigger_word.as_deref().unwrap_or("(none)")
    ));
    if !info.top_tags.is_empty() {
        let tags: Vec<String> = info
            .top_tags
            .iter()
            .map(|(tag, count)| format!("{tag} ({count})"))
            .collect();
        text.push_str(&format!("training tags: {}\n", tags.join(", ")));
    }
    if !info.metadata.is_empty() {
        text.push_str("metadata:\n");
        for (key, value) in &info.metadata {
            text.push_str(&format!("  {key}: {value}\n"));
        }
    }
    text
}
