//! `huatu parse` (INTENTS.md output, one instruction or JSON lines) and
//! `huatu eval intent` (intent accuracy, per-intent precision/recall, slot F1).

use std::io::{BufRead, Write};
use std::path::PathBuf;
use std::time::Instant;

use anyhow::{bail, Context};
use clap::{Args, Subcommand};
use huatu_agent::corpus::read_jsonl;
use huatu_agent::eval::evaluate;

use crate::intent_model_lookup::load_intent_model;

#[derive(Args, Debug)]
pub struct ParseArgs {
    /// The instruction to parse (omit with --jsonl).
    #[arg(required_unless_present = "jsonl", conflicts_with = "jsonl")]
    pub text: Option<String>,
    /// Read JSON lines with a `text` field from stdin; write one object per line.
    #[arg(long)]
    pub jsonl: bool,
    /// Intent model folder (config.json, vocab.txt, model.safetensors).
    /// Default: $HUATU_INTENT_MODEL, else the model built into huatu.
    #[arg(long, visible_alias = "intent-model")]
    pub model: Option<PathBuf>,
    /// Instructions run together through the model.
    #[arg(long, default_value_t = 64)]
    pub batch_size: usize,
}

pub fn run(args: ParseArgs) -> anyhow::Result<()> {
    let model = load_intent_model(args.model.as_deref())?;
    let stdout = std::io::stdout();
    let mut out = stdout.lock();
    if let Some(text) = args.text {
        let parse = model.parse(&text)?;
        writeln!(out, "{}", serde_json::to_string(&parse)?)?;
        return Ok(());
    }
    let batch_size = args.batch_size.max(1);
    let mut texts = Vec::new();
    for (number, line) in std::io::stdin().lock().lines().enumerate() {
        let line = line.context("reading standard input")?;
        if line.trim().is_empty() {
            continue;
        }
        let value: serde_json::Value = serde_json::from_str(&line)
            .with_context(|| format!("stdin line {}: not JSON", number + 1))?;
        let Some(text) = value.get("text").and_then(|t| t.as_str()) else {
            bail!("stdin line {}: no string field `text`", number + 1);
        };
        texts.push(text.to_string());
    }
    let started = Instant::now();
    for chunk in texts.chunks(batch_size) {
        let refs: Vec<&str> = chunk.iter().map(String::as_str).collect();
        for parse in model.parse_batch(&refs)? {
            writeln!(out, "{}", serde_json::to_string(&parse)?)?;
        }
    }
    let seconds = started.elapsed().as_secs_f64();
    tracing::info!(
        instructions = texts.len(),
        per_second = texts.len() as f64 / seconds.max(1e-9),
        "parsed"
    );
    Ok(())
}

#[derive(Subcommand, Debug)]
pub enum EvalCommand {
    /// Scores the intent model on labelled JSON lines (text, intent, slots).
    Intent(EvalIntentArgs),
    /// Scores the planned prompts on a concept set (coverage, forbidden words, negatives).
    Prompts(crate::commands::eval_prompts::EvalPromptsArgs),
}

#[derive(Args, Debug)]
pub struct EvalIntentArgs {
    /// Labelled JSON lines, e.g. data/intents/dev.jsonl.
    #[arg(long)]
    pub data: PathBuf,
    #[arg(long)]
    pub model: Option<PathBuf>,
    /// How many wrong instructions to list.
    #[arg(long, default_value_t = 0)]
    pub errors: usize,
    #[arg(long, default_value_t = 64)]
    pub batch_size: usize,
}

pub fn run_eval(command: EvalCommand) -> anyhow::Result<()> {
    let args = match command {
        EvalCommand::Intent(args) => args,
        EvalCommand::Prompts(args) => return crate::commands::eval_prompts::run(args),
    };
    let model = load_intent_model(args.model.as_deref())?;
    let gold = read_jsonl(&args.data)?;
    let started = Instant::now();
    let mut parses = Vec::with_capacity(gold.len());
    for chunk in gold.chunks(args.batch_size.max(1)) {
        let texts: Vec<&str> = chunk.iter().map(|e| e.text.as_str()).collect();
        parses.extend(model.parse_batch(&texts)?);
    }
    let seconds = started.elapsed().as_secs_f64();
    let report = evaluate(&gold, &parses);
    print!("{report}");
    println!(
        "speed: {:.0} instructions/second ({} in {:.2} s, batch {})",
        gold.len() as f64 / seconds.max(1e-9),
        gold.len(),
        seconds,
        args.batch_size
    );
    for (example, parse) in report.errors.iter().take(args.errors) {
        println!(
            "- {}\n  gold: {} {}\n  got:  {} {}",
            example.text,
            example.intent,
            serde_json::to_string(&example.slots)?,
            parse.intent,
            serde_json::to_string(&parse.slots)?
        );
    }
    Ok(())
}
