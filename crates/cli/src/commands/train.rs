//! `huatu train intent`: trains the intent + slot model on CPU and writes a model folder;
//! dispatches `huatu train lora` and `huatu train instruct-pix2pix`.

use std::path::PathBuf;
use std::time::Instant;

use anyhow::Context;
use clap::{Args, Subcommand};
use huatu_agent::corpus::read_jsonl;
use huatu_agent::eval::evaluate;
use huatu_agent::train::{TrainOptions, Trainer};
use huatu_agent::tuning::tune_decoding;

#[derive(Subcommand, Debug)]
pub enum TrainCommand {
    /// The intent + slot model (INTENTS.md) from labelled JSON lines.
    Intent(TrainIntentArgs),
    /// A LoRA adapter for SDXL on a folder of captioned images (diffusers' trainer).
    Lora(Box<super::train_lora::TrainLoraArgs>),
    /// An InstructPix2Pix edit model from SDXL on a folder of edit pairs (diffusers' trainer).
    #[command(name = "instruct-pix2pix")]
    InstructPix2Pix(Box<super::train_instruct_pix2pix::TrainInstructPix2PixArgs>),
}

#[derive(Args, Debug)]
pub struct TrainIntentArgs {
    /// Training data: JSON lines with text, intent, slots. Repeat for several files;
    /// `FILE*N` counts a file N times (to weigh a small hand-written set up). Default: the
    /// committed model's recipe, the generated corpora plus the hand-written sets ×3.
    #[arg(long = "data", default_values = DEFAULT_DATA, value_parser = parse_weighted)]
    pub data: Vec<(PathBuf, usize)>,
    /// Labelled data scored after every epoch (not trained on). Repeat for several.
    #[arg(long)]
    pub dev: Vec<PathBuf>,
    /// Output model folder.
    #[arg(long, default_value = "models/intent")]
    pub out: PathBuf,
    #[arg(long, default_value_t = TrainOptions::default().epochs)]
    pub epochs: usize,
    #[arg(long, default_value_t = TrainOptions::default().batch_size)]
    pub batch_size: usize,
    #[arg(long, default_value_t = TrainOptions::default().learning_rate)]
    pub learning_rate: f64,
    #[arg(long, default_value_t = TrainOptions::default().seed)]
    pub seed: u64,
    #[arg(long, default_value_t = TrainOptions::default().hidden_size)]
    pub hidden_size: usize,
    #[arg(long, default_value_t = TrainOptions::default().layers)]
    pub layers: usize,
    #[arg(long, default_value_t = TrainOptions::default().heads)]
    pub heads: usize,
    #[arg(long, default_value_t = TrainOptions::default().intermediate_size)]
    pub intermediate_size: usize,
    #[arg(long, default_value_t = TrainOptions::default().max_len)]
    pub max_len: usize,
    #[arg(long, default_value_t = TrainOptions::default().dropout)]
    pub dropout: f64,
    /// Fine-tune a Hugging Face BERT folder (config.json, vocab.txt, model.safetensors),
    /// e.g. bert-base-chinese, instead of training an encoder from scratch.
    #[arg(long)]
    pub pretrained: Option<PathBuf>,
    /// Save f32 weights instead of f16.
    #[arg(long)]
    pub f32: bool,
    /// Leave out the word-boundary (segmentation) input features.
    #[arg(long)]
    pub no_word_boundaries: bool,
    /// Leave out the CRF over the tags (per-character cross-entropy only).
    #[arg(long)]
    pub no_crf: bool,
}

const DEFAULT_DATA: [&str; 10] = [
    "data/intents/train.jsonl",
    "data/intents/train_hard.jsonl",
    "data/intents/handwritten_a.jsonl*3",
    "data/intents/handwritten_b.jsonl*3",
    "data/intents/handwritten_c.jsonl*3",
    "data/intents/handwritten_d.jsonl*3",
    "data/intents/handwritten_e.jsonl*3",
    "data/intents/handwritten_f.jsonl*3",
    "data/intents/handwritten_g.jsonl*3",
    "data/intents/handwritten_h.jsonl*3",
];

/// Passes of the CRF's second stage over the frozen tagger logits.
const CRF_EPOCHS: usize = 3;

/// `FILE` or `FILE*N` (N ≥ 1).
fn parse_weighted(text: &str) -> Result<(PathBuf, usize), String> {
    match text.rsplit_once('*') {
        Some((path, times)) if !path.is_empty() => match times.parse::<usize>() {
            Ok(times) if times >= 1 => Ok((PathBuf::from(path), times)),
            _ => Err(format!(
                "`{text}`: the count after `*` must be a whole number ≥ 1"
            )),
        },
        _ => Ok((PathBuf::from(text), 1)),
    }
}

pub fn run(command: TrainCommand) -> anyhow::Result<()> {
    let args = match command {
        TrainCommand::Intent(args) => args,
        TrainCommand::Lora(args) => return super::train_lora::run(*args),
        TrainCommand::InstructPix2Pix(args) => return super::train_instruct_pix2pix::run(*args),
    };
    let mut examples = Vec::new();
    for (path, times) in &args.data {
        let read = read_jsonl(path)?;
        eprintln!(
            "{} instructions from {}{}",
            read.len(),
            path.display(),
            if *times > 1 {
                format!(", counted {times} times")
            } else {
                String::new()
            }
        );
        for _ in 0..*times {
            examples.extend(read.iter().cloned());
        }
    }
    let dev = args
        .dev
        .iter()
        .map(|path| Ok((path.display().to_string(), read_jsonl(path)?)))
        .collect::<anyhow::Result<Vec<_>>>()?;
    let options = TrainOptions {
        epochs: args.epochs,
        batch_size: args.batch_size,
        learning_rate: args.learning_rate,
        seed: args.seed,
        hidden_size: args.hidden_size,
        layers: args.layers,
        heads: args.heads,
        intermediate_size: args.intermediate_size,
        max_len: args.max_len,
        dropout: args.dropout,
        pretrained: args.pretrained,
        word_boundaries: !args.no_word_boundaries,
        crf: !args.no_crf,
        ..TrainOptions::default()
    };
    eprintln!("training on {} instructions", examples.len());
    let started = Instant::now();
    let mut trainer = Trainer::new(&examples, options)?;
    let mut failure = None;
    let half = !args.f32;
    trainer.train(&examples, &mut |report, trainer| {
        let model = &trainer.model;
        let mut line = format!(
            "epoch {:>2}: intent loss {:.4}, tag loss {:.4}, {:.1} s",
            report.epoch, report.intent_loss, report.tag_loss, report.seconds
        );
        for (name, dev) in &dev {
            let texts: Vec<&str> = dev.iter().map(|e| e.text.as_str()).collect();
            match texts
                .chunks(64)
                .map(|c| model.parse_batch(c))
                .collect::<Result<Vec<_>, _>>()
            {
                Ok(parses) => {
                    let parses: Vec<_> = parses.into_iter().flatten().collect();
                    let scores = evaluate(dev, &parses);
                    line += &format!(
                        "; {name}: intent accuracy {:.1}%, slot F1 {:.1}%",
                        100.0 * scores.intent_accuracy(),
                        100.0 * scores.slots.f1()
                    );
                }
                Err(error) => failure = Some(error),
            }
        }
        eprintln!("{line}");
        // Every epoch is a usable model; a long run can be stopped early.
        if let Err(error) = trainer.save(&args.out, half) {
            failure.get_or_insert(error);
        }
    })?;
    if let Some(error) = failure {
        return Err(error).context("scoring the dev set or saving");
    }
    // `--epochs 0` on one of our models only refits the decoding settings below.
    let crf_epochs = if args.epochs == 0 { 0 } else { CRF_EPOCHS };
    let crf_started = Instant::now();
    let crf_losses = trainer.fit_transitions(&examples, crf_epochs)?;
    if !crf_losses.is_empty() {
        let losses: Vec<String> = crf_losses.iter().map(|l| format!("{l:.4}")).collect();
        eprintln!(
            "CRF fitted on the frozen tagger: NLL per character by pass {}, {:.1} s",
            losses.join(", "),
            crf_started.elapsed().as_secs_f64()
        );
        trainer.save(&args.out, half)?;
    }
    // The intent temperature and the word-boundary cost of decoding, fitted on the dev
    // sets (never on held-out test sets).
    let dev_examples: Vec<_> = dev.iter().flat_map(|(_, e)| e.iter().cloned()).collect();
    if let Some(tuning) = tune_decoding(&mut trainer.model, &dev_examples)? {
        let tried: Vec<String> = tuning
            .slot_f1_by_penalty
            .iter()
            .map(|(penalty, f1)| format!("{penalty}: {:.1}%", 100.0 * f1))
            .collect();
        eprintln!(
            "decoding fitted on the dev sets: intent temperature {:.2}, word-boundary cost {} (dev slot F1 by cost: {})",
            tuning.intent_temperature,
            tuning.boundary_penalty,
            tried.join(", ")
        );
        trainer.save(&args.out, half)?;
    }
    eprintln!(
        "trained in {:.1} s; wrote {}",
        started.elapsed().as_secs_f64(),
        args.out.display()
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn weighted_files_parse_and_the_default_recipe_exists() {
        assert_eq!(
            parse_weighted("a.jsonl*3"),
            Ok((PathBuf::from("a.jsonl"), 3))
        );
        assert_eq!(parse_weighted("a.jsonl"), Ok((PathBuf::from("a.jsonl"), 1)));
        assert!(parse_weighted("a.jsonl*0").is_err() && parse_weighted("a.jsonl*x").is_err());
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
        for text in DEFAULT_DATA {
            let (path, _) = parse_weighted(text).unwrap_or_else(|e| panic!("{e}"));
            assert!(root.join(&path).is_file(), "{}", path.display());
        }
    }
}
