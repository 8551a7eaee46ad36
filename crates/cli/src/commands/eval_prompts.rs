//! `huatu eval prompts --data FILE`: plans every instruction of a concept set (as `huatu
//! plan` does) and scores its prompts: concept coverage, forbidden words in the positive
//! prompt, negatives found in the negative prompt, and the planning time.

use std::io::Write;
use std::path::PathBuf;
use std::time::Instant;

use clap::Args;
use huatu_agent::prompt_eval::{read_cases, score_case, ConceptReport};
use huatu_agent::{Intent, Plan};

use crate::commands::plan::{PlanSetup, Planner};

#[derive(Args, Debug)]
pub struct EvalPromptsArgs {
    /// Concept set: JSON lines {"text", "intent", "concepts", "forbidden", "negatives"}.
    #[arg(long)]
    pub data: PathBuf,
    /// Plan with the labelled intent instead of the recognised one (and with full
    /// confidence, so no clarifying question is asked).
    #[arg(long)]
    pub gold_intent: bool,
    /// How many instructions with misses to list.
    #[arg(long, default_value_t = 0)]
    pub errors: usize,
    #[command(flatten)]
    pub setup: PlanSetup,
}

pub fn run(args: EvalPromptsArgs) -> anyhow::Result<()> {
    let planner = Planner::load(&args.setup)?;
    let cases = read_cases(&args.data)?;
    let stdout = std::io::stdout();
    let mut out = stdout.lock();
    let mut report = ConceptReport::default();
    let mut listed = 0;
    let mut planning = std::time::Duration::ZERO;
    for case in &cases {
        let started = Instant::now();
        let mut parse = planner.parse(&case.text)?;
        let gold: Option<Intent> = case.intent.as_deref().and_then(|i| i.parse().ok());
        if gold.is_some_and(|gold| gold != parse.intent) {
            report.intent_mismatches += 1;
            if args.gold_intent {
                parse.intent = gold.unwrap_or(parse.intent);
            }
        }
        if args.gold_intent && gold.is_some() {
            // The label is certain: no clarifying question for a low model confidence.
            parse.confidence = 1.0;
        }
        let plan = planner.plan_parse(&parse);
        planning += started.elapsed();
        let (prompt, negative) = match &plan {
            Plan::Task(task) => (task.prompt.as_str(), task.negative_prompt.as_str()),
            _ => {
                report.unplanned += 1;
                ("", "")
            }
        };
        let score = score_case(case, prompt, negative);
        report.add(&score);
        let failed = !score.missed.is_empty()
            || !score.forbidden_hits.is_empty()
            || !score.negatives_missed.is_empty();
        if failed && listed < args.errors {
            listed += 1;
            writeln!(out, "- {} ({})", case.text, parse.intent)?;
            writeln!(out, "  prompt: {prompt}")?;
            writeln!(out, "  negative: {negative}")?;
            if !score.missed.is_empty() {
                writeln!(out, "  missed: {}", score.missed.join("; "))?;
            }
            if !score.forbidden_hits.is_empty() {
                writeln!(out, "  forbidden: {}", score.forbidden_hits.join("; "))?;
            }
            if !score.negatives_missed.is_empty() {
                writeln!(
                    out,
                    "  negatives missed: {}",
                    score.negatives_missed.join("; ")
                )?;
            }
        }
    }
    write!(out, "{report}")?;
    writeln!(
        out,
        "planning time: {:.2} ms per instruction (intent model and prompt writer)",
        1000.0 * planning.as_secs_f64() / cases.len().max(1) as f64
    )?;
    Ok(())
}
