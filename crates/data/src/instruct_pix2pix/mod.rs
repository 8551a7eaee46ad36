//! `huatu dataset instruct-pix2pix`: captions → edit instructions → Prompt-to-Prompt pairs
//! over several seeds → InstructPix2Pix's CLIP filter → the 5-tuple dataset (original
//! caption, edited caption, instruction, original image, edited image), as
//! timothybrooks/instruct-pix2pix's generate_img_dataset.py makes it: per caption, `n`
//! seeds, each with its own p (shared self-attention fraction) and guidance scale drawn in
//! their ranges; pairs failing a threshold are dropped; the best `keep` by directional
//! similarity are written.
//!
//! The folder: `NNNNN_SEED_0.png` / `NNNNN_SEED_1.png` per kept pair and `metadata.jsonl`
//! with diffusers' train_instruct_pix2pix_sdxl.py columns (`input_image`, `edit_prompt`,
//! `edited_image`, as file names) plus `original_caption`, `edited_caption`,
//! `edit_prompt_zh`, `seed`, `p`, `guidance_scale` and the CLIP numbers; `progress.jsonl`
//! records each finished caption (so a re-run skips it: resumable), `settings.json` the
//! run's settings (a re-run with other settings is refused) and `report.json` the totals
//! and why pairs were dropped. Images are written to temporary names and renamed.

pub mod similarity;

use std::collections::{BTreeMap, HashSet};
use std::io::Write;
use std::path::{Path, PathBuf};

use huatu_diffusion::loading::SdxlComponents;
use huatu_diffusion::pipelines::{edit_pair, EditPairRequest, NoProgress, Text2ImageRequest};
use huatu_diffusion::schedulers::SchedulerKind;
use image::DynamicImage;
use serde::Serialize;

use crate::clip::ClipModel;
use crate::error::{DataError, Result};
use similarity::{ClipSimilarity, ClipThresholds};

/// An edit of a caption.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CaptionEdit {
    pub instruction: String,
    pub instruction_zh: String,
    pub edited_caption: String,
}

/// Writes the edit of a caption (an LLM, or templates); `seed` picks among choices.
pub trait EditWriter {
    fn name(&self) -> String;
    fn write(&self, caption: &str, seed: u64) -> std::result::Result<CaptionEdit, String>;
}

/// What to generate.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PairDatasetRequest {
    pub captions: Vec<String>,
    /// Pairs tried per caption (the reference's `--n-samples`).
    pub samples: usize,
    /// Pairs kept per caption at most (`--max-out-samples`).
    pub keep: usize,
    pub p_range: (f64, f64),
    pub guidance_range: (f64, f64),
    pub thresholds: ClipThresholds,
    pub width: usize,
    pub height: usize,
    pub steps: usize,
    pub scheduler: SchedulerKind,
    pub seed: u64,
    pub negative_prompt: Option<String>,
}

impl PairDatasetRequest {
    pub fn validate(&self) -> Result<()> {
        let invalid = |message: String| Err(DataError::InvalidRequest(message));
        if self.captions.is_empty() {
            return invalid("no captions".into());
        }
        if self.samples == 0 || self.keep == 0 {
            return invalid("--samples and --keep must be at least 1".into());
        }
        let (p_min, p_max) = self.p_range;
        if !(0.0..=1.0).contains(&p_min) || !(0.0..=1.0).contains(&p_max) || p_min > p_max {
            return invalid(format!(
                "the p range must lie within [0, 1], got {p_min}..{p_max}"
            ));
        }
        let (g_min, g_max) = self.guidance_range;
        if !(g_min.is_finite() && g_max.is_finite()) || g_min < 0.0 || g_min > g_max {
            return invalid(format!(
                "the guidance range must be ascending and ≥ 0, got {g_min}..{g_max}"
            ));
        }
        Ok(())
    }
}

/// One tried pair's numbers, for the report.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct TriedPair {
    pub seed: u64,
    pub p: f64,
    pub guidance_scale: f64,
    pub similarity: ClipSimilarity,
    /// Why the filter dropped it (`None`: it passed).
    pub rejected: Option<String>,
    /// Written to the dataset (passed and among the best `keep`).
    pub kept: bool,
}

/// One caption's outcome (a `progress.jsonl` line).
#[derive(Debug, Clone, PartialEq, Serialize, serde::Deserialize)]
pub struct CaptionOutcome {
    pub index: usize,
    pub caption: String,
    pub edit: Option<CaptionEditRecord>,
    pub tried: usize,
    pub passed: usize,
    pub kept: usize,
    /// Why no pair could be tried (the writer failed, an empty caption).
    pub skipped: Option<String>,
}

/// The edit as recorded.
#[derive(Debug, Clone, PartialEq, Serialize, serde::Deserialize)]
pub struct CaptionEditRecord {
    pub instruction: String,
    pub instruction_zh: String,
    pub edited_caption: String,
}

/// Totals of a run (`report.json`).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PairDatasetReport {
    pub out: PathBuf,
    pub captions: usize,
    /// Captions finished by an earlier run and skipped now.
    pub resumed: usize,
    pub pairs_tried: usize,
    pub pairs_passed: usize,
    pub pairs_kept: usize,
    /// How often each threshold rejected a pair.
    pub rejections: BTreeMap<String, usize>,
    pub edit_writer: String,
    pub outcomes: Vec<CaptionOutcome>,
}

/// SplitMix64 of a few numbers: the per-caption and per-sample seeds and draws.
fn mix(values: &[u64]) -> u64 {
    let mut state = 0x243F_6A88_85A3_08D3_u64;
    for value in values {
        state ^= value
            .wrapping_add(0x9E37_79B9_7F4A_7C15)
            .wrapping_add(state << 6);
        let mut z = state;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        state = z ^ (z >> 31);
    }
    state
}

fn uniform(seed: u64, salt: u64, (low, high): (f64, f64)) -> f64 {
    let unit = (mix(&[seed, salt]) >> 11) as f64 / (1u64 << 53) as f64;
    low + unit * (high - low)
}

fn io_error(path: &Path) -> impl FnOnce(std::io::Error) -> DataError + '_ {
    move |source| DataError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// Writes `image` as PNG through a temporary name.
fn save_png(image: &DynamicImage, path: &Path) -> Result<()> {
    let temporary = path.with_extension("png.partial");
    image
        .save_with_format(&temporary, image::ImageFormat::Png)
        .map_err(|error| {
            DataError::InvalidRequest(format!("cannot write {}: {error}", temporary.display()))
        })?;
    std::fs::rename(&temporary, path).map_err(io_error(path))
}

fn append_line(path: &Path, value: &impl Serialize) -> Result<()> {
    let line = serde_json::to_string(value).map_err(|error| {
        DataError::InvalidRequest(format!("cannot serialise a record: {error}"))
    })?;
    let mut file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .map_err(io_error(path))?;
    writeln!(file, "{line}").map_err(io_error(path))?;
    file.sync_data().map_err(io_error(path))
}

/// Checks `out`'s settings against this run's (writing them on the first run) and returns
/// the captions finished before.
fn resume_state(
    out: &Path,
    request: &PairDatasetRequest,
    writer: &str,
) -> Result<Vec<CaptionOutcome>> {
    std::fs::create_dir_all(out).map_err(io_error(out))?;
    let settings_path = out.join("settings.json");
    let settings = serde_json::json!({"request": request, "edit_writer": writer}).to_string();
    match std::fs::read_to_string(&settings_path) {
        Ok(existing) if existing == settings => {}
        Ok(_) => {
            return Err(DataError::InvalidRequest(format!(
                "{} was made with other settings (see its settings.json); resume with the same ones or choose another --out",
                out.display()
            )))
        }
        Err(_) => {
            if std::fs::read_dir(out).map_err(io_error(out))?.next().is_some() {
                return Err(DataError::InvalidRequest(format!(
                    "{} is not empty and holds no settings.json; choose another --out",
                    out.display()
                )));
            }
            std::fs::write(&settings_path, &settings).map_err(io_error(&settings_path))?;
        }
    }
    let progress_path = out.join("progress.jsonl");
    let text = std::fs::read_to_string(&progress_path).unwrap_or_default();
    text.lines()
        .filter(|line| !line.trim().is_empty())
        .map(|line| {
            serde_json::from_str(line).map_err(|source| DataError::Json {
                path: progress_path.clone(),
                what: "a progress record",
                source,
            })
        })
        .collect()
}

/// Generates the dataset into `out` (resuming a run with the same settings).
pub fn build_pair_dataset(
    components: &SdxlComponents,
    clip: &ClipModel,
    writer: &dyn EditWriter,
    request: &PairDatasetRequest,
    out: &Path,
    progress: &mut dyn FnMut(&str),
) -> Result<PairDatasetReport> {
    request.validate()?;
    let mut outcomes = resume_state(out, request, &writer.name())?;
    let done: HashSet<usize> = outcomes.iter().map(|outcome| outcome.index).collect();
    let resumed = done.len();
    if resumed > 0 {
        progress(&format!(
            "resuming: {resumed} of {} captions already done",
            request.captions.len()
        ));
    }
    for (index, caption) in request.captions.iter().enumerate() {
        if done.contains(&index) {
            continue;
        }
        let outcome = pairs_for_caption(components, clip, writer, request, out, index, caption)?;
        progress(&format!(
            "caption {}/{}: kept {} of {} pairs ({} passed the filter){}",
            index + 1,
            request.captions.len(),
            outcome.kept,
            outcome.tried,
            outcome.passed,
            outcome
                .skipped
                .as_deref()
                .map_or(String::new(), |why| format!(", skipped: {why}"))
        ));
        append_line(&out.join("progress.jsonl"), &outcome)?;
        outcomes.push(outcome);
    }
    outcomes.sort_by_key(|outcome| outcome.index);
    let report = PairDatasetReport {
        out: out.to_path_buf(),
        captions: request.captions.len(),
        resumed,
        pairs_tried: outcomes.iter().map(|o| o.tried).sum(),
        pairs_passed: outcomes.iter().map(|o| o.passed).sum(),
        pairs_kept: outcomes.iter().map(|o| o.kept).sum(),
        rejections: count_rejections(out)?,
        edit_writer: writer.name(),
        outcomes,
    };
    let text = serde_json::to_string_pretty(&report)
        .map_err(|error| DataError::InvalidRequest(format!("cannot write the report: {error}")))?;
    let report_path = out.join("report.json");
    std::fs::write(&report_path, text).map_err(io_error(&report_path))?;
    Ok(report)
}

/// Counts, over every tried pair recorded in `tried.jsonl`, which threshold rejected it.
fn count_rejections(out: &Path) -> Result<BTreeMap<String, usize>> {
    let mut counts = BTreeMap::new();
    let text = std::fs::read_to_string(out.join("tried.jsonl")).unwrap_or_default();
    for line in text.lines() {
        let Ok(value) = serde_json::from_str::<serde_json::Value>(line) else {
            continue;
        };
        let Some(reason) = value.pointer("/pair/rejected").and_then(|r| r.as_str()) else {
            continue;
        };
        for part in reason.split("; ") {
            let name = part.split(" < ").next().unwrap_or(part);
            let name: String = name
                .chars()
                .filter(|c| c.is_alphabetic() || *c == ' ')
                .collect();
            *counts.entry(name.trim().to_string()).or_insert(0) += 1;
        }
    }
    Ok(counts)
}

fn pairs_for_caption(
    components: &SdxlComponents,
    clip: &ClipModel,
    writer: &dyn EditWriter,
    request: &PairDatasetRequest,
    out: &Path,
    index: usize,
    caption: &str,
) -> Result<CaptionOutcome> {
    let mut outcome = CaptionOutcome {
        index,
        caption: caption.to_string(),
        edit: None,
        tried: 0,
        passed: 0,
        kept: 0,
        skipped: None,
    };
    if caption.trim().is_empty() {
        outcome.skipped = Some("empty caption".into());
        return Ok(outcome);
    }
    let caption_seed = mix(&[request.seed, index as u64]);
    let edit = match writer.write(caption, caption_seed) {
        Ok(edit) => edit,
        Err(message) => {
            outcome.skipped = Some(format!("no edit: {message}"));
            return Ok(outcome);
        }
    };
    outcome.edit = Some(CaptionEditRecord {
        instruction: edit.instruction.clone(),
        instruction_zh: edit.instruction_zh.clone(),
        edited_caption: edit.edited_caption.clone(),
    });
    let text_0 = clip.embed_text(caption)?;
    let text_1 = clip.embed_text(&edit.edited_caption)?;
    let mut results = Vec::with_capacity(request.samples);
    for sample in 0..request.samples {
        let seed = mix(&[caption_seed, sample as u64]) >> 1;
        let p = uniform(seed, 1, request.p_range);
        let guidance_scale = uniform(seed, 2, request.guidance_range);
        let mut base = Text2ImageRequest::new(caption);
        base.settings.negative_prompt = request.negative_prompt.clone();
        base.width = request.width;
        base.height = request.height;
        base.settings.num_inference_steps = request.steps;
        base.settings.guidance_scale = guidance_scale;
        base.settings.scheduler = request.scheduler;
        base.settings.seed = seed;
        let pair_request = EditPairRequest::new(base, edit.edited_caption.clone(), p);
        let pair = edit_pair(components, &pair_request, &mut NoProgress).map_err(|source| {
            DataError::InvalidRequest(format!("the pair for caption {index} failed: {source}"))
        })?;
        let images = [
            DynamicImage::ImageRgb8(pair.original.clone()),
            DynamicImage::ImageRgb8(pair.edited.clone()),
        ];
        let embeddings = clip.embed_images(&images)?;
        let similarity = ClipSimilarity::new(&embeddings[0], &embeddings[1], &text_0, &text_1);
        let rejected = request.thresholds.rejection(&similarity);
        results.push((
            TriedPair {
                seed,
                p,
                guidance_scale,
                similarity,
                rejected,
                kept: false,
            },
            images,
        ));
    }
    outcome.tried = results.len();
    outcome.passed = results
        .iter()
        .filter(|(tried, _)| tried.rejected.is_none())
        .count();
    // the best `keep` by directional similarity, as the reference sorts them
    let mut order: Vec<usize> = (0..results.len())
        .filter(|&i| results[i].0.rejected.is_none())
        .collect();
    order.sort_by(|&a, &b| {
        results[b]
            .0
            .similarity
            .sim_direction
            .total_cmp(&results[a].0.similarity.sim_direction)
    });
    for &chosen in order.iter().take(request.keep) {
        let (tried, images) = &mut results[chosen];
        let stem = format!("{index:05}_{}", tried.seed);
        let (input, edited) = (format!("{stem}_0.png"), format!("{stem}_1.png"));
        save_png(&images[0], &out.join(&input))?;
        save_png(&images[1], &out.join(&edited))?;
        tried.kept = true;
        append_line(
            &out.join("metadata.jsonl"),
            &serde_json::json!({
                "input_image": input,
                "edit_prompt": edit.instruction,
                "edited_image": edited,
                "original_caption": caption,
                "edited_caption": edit.edited_caption,
                "edit_prompt_zh": edit.instruction_zh,
                "seed": tried.seed,
                "p": tried.p,
                "guidance_scale": tried.guidance_scale,
                "clip": tried.similarity,
            }),
        )?;
        outcome.kept += 1;
    }
    for (tried, _) in &results {
        append_line(
            &out.join("tried.jsonl"),
            &serde_json::json!({"index": index, "pair": tried}),
        )?;
    }
    Ok(outcome)
}
