//! huatu's side of the local-LLM benchmark (scripts/bench/qwen_torch.py is the reference):
//! loads a Qwen model (folder or GGUF), reads token ids 1..=PROMPT_TOKENS and writes
//! NEW_TOKENS greedily with the KV cache; prints one JSON line.
//!
//!     cargo run --release -p huatu-llm --example bench_qwen -- DIR [PROMPT_TOKENS] [NEW_TOKENS]

use std::path::PathBuf;

use candle_core::Device;
use huatu_llm::{LocalLlm, Sampling};

fn main() -> anyhow::Result<()> {
    let mut args = std::env::args().skip(1);
    let path =
        PathBuf::from(args.next().ok_or_else(|| {
            anyhow::anyhow!("usage: bench_qwen DIR [PROMPT_TOKENS] [NEW_TOKENS]")
        })?);
    let prompt_tokens: u32 = args.next().map_or(Ok(64), |a| a.parse())?;
    let new_tokens: usize = args.next().map_or(Ok(32), |a| a.parse())?;
    let llm = LocalLlm::load(&path, &Device::Cpu)?;
    let prompt: Vec<u32> = (1..=prompt_tokens).collect();
    let completion = llm.complete(&prompt, new_tokens, Sampling::Greedy, &[])?;
    // The first answer token comes from the prompt pass; the rest from cached steps.
    let steps = completion.tokens.len().saturating_sub(1);
    println!(
        "{}",
        serde_json::json!({
            "side": "huatu",
            "prompt_tokens": prompt_tokens,
            "new_tokens": completion.tokens.len(),
            "prompt_seconds": (completion.prompt_seconds * 1000.0).round() / 1000.0,
            "tokens_per_second": (steps as f64 / completion.answer_seconds.max(1e-9) * 1000.0).round() / 1000.0,
            "peak_rss_mb": peak_rss_mb(),
        })
    );
    Ok(())
}

/// The process's peak resident memory (Linux `VmHWM`), in MiB; 0 where unknown.
fn peak_rss_mb() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|status| {
            status
                .lines()
                .find_map(|line| line.strip_prefix("VmHWM:"))
                .and_then(|rest| {
                    rest.trim()
                        .trim_end_matches("kB")
                        .trim()
                        .parse::<u64>()
                        .ok()
                })
        })
        .map_or(0, |kb| kb / 1024)
}
