//! `huatu dataset build`: DESIGN.md part 2's whole chain from a few example images (and/or
//! a description) to a folder `huatu train lora` trains on.
//!
//! 1. Embed the examples (CLIP image) and the description (CLIP text); each searches the
//!    database. Hits merge by id with their best score; the examples themselves and
//!    near-duplicates (cosine ≥ the threshold to an example or to a better hit) drop out.
//! 2. Still short of `take` images: BLIP captions the examples and each caption's CLIP
//!    text embedding searches too (the article's second round), then merge again.
//! 3. Best first, each image is read and fitted to the training size (`huatu
//!    preprocess`'s fit: pad, center or random crop, or the nearest SDXL bucket); an
//!    unreadable file is dropped and the next hit takes its place.
//! 4. BLIP captions every fitted image (in batches); the prompt writer (an LLM when
//!    configured, else the template: trigger word, caption, scene style words) makes its
//!    training prompt.
//! 5. The folder gets `NNNN_ID.png` + `NNNN_ID.txt` per image (kohya's layout), a
//!    `metadata.jsonl` (diffusers' imagefolder: `file_name`, `text`, plus where each image
//!    came from) and `report.json` (queries, scores, what was dropped and why); it is
//!    written in a staging folder and renamed into place at the end.

pub mod folder;
pub mod gather;
pub mod prompt;

use std::path::{Path, PathBuf};
use std::time::Instant;

use huatu_imaging::io::save_image;
use huatu_imaging::{fit, FitOptions};
use image::DynamicImage;
use serde::Serialize;

use crate::blip::{BlipForConditionalGeneration, CaptionOptions};
use crate::clip::ClipModel;
use crate::db::scan::collect_images;
use crate::db::{content_id, ImageDatabase};
use crate::error::{DataError, Result};
use folder::StagedFolder;
use gather::{Candidate, Dropped, NamedQuery, QueryReport};
use prompt::{PromptWriter, TemplatePromptWriter};

/// What to build.
#[derive(Debug, Clone)]
pub struct DatasetRequest {
    /// The user's example images (files or folders); each searches the database.
    pub examples: Vec<PathBuf>,
    /// Put the examples themselves into the dataset too.
    pub include_examples: bool,
    /// A text description that searches too.
    pub describe: Option<String>,
    /// How many database images to take.
    pub take: usize,
    /// Only hits with at least this cosine similarity.
    pub min_score: Option<f32>,
    /// Hits at least this similar to an example or a better hit are duplicates.
    pub duplicate_threshold: f32,
    /// The training size and how images are fitted to it.
    pub fit: FitOptions,
    pub caption: CaptionOptions,
    /// Images captioned per BLIP call.
    pub batch_size: usize,
    pub out: PathBuf,
}

/// The models a build runs.
pub struct DatasetModels<'a> {
    /// The database's CLIP model.
    pub clip: &'a ClipModel,
    /// Captions every image (and the examples for the second search); without it an
    /// image's caption is the one stored in the database, else its labels.
    pub blip: Option<&'a BlipForConditionalGeneration>,
    /// Writes the training prompts (an LLM); the template steps in when it fails.
    pub writer: Option<&'a dyn PromptWriter>,
    pub template: &'a TemplatePromptWriter,
}

/// Where an image of the dataset came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Origin {
    Example,
    Database,
}

/// One image of the built dataset.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct DatasetImage {
    pub file_name: String,
    pub origin: Origin,
    /// The file it was made from.
    pub source: String,
    /// Its database id (SHA-256 of the source file).
    pub id: String,
    /// Cosine similarity to the query that found it (database images).
    pub score: Option<f32>,
    pub query: Option<String>,
    pub labels: Vec<String>,
    pub caption: Option<String>,
    /// The training prompt (the `.txt` and `metadata.jsonl`'s `text`).
    pub prompt: String,
    /// `[width, height]` before and after fitting; the crop's `[top, left]`.
    pub original_size: [u32; 2],
    pub target_size: [u32; 2],
    pub crop_top_left: [u32; 2],
}

/// An example's caption, when the second search ran.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ExampleCaption {
    pub example: String,
    pub caption: String,
}

/// What a build found, took and dropped (`report.json`).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct DatasetReport {
    pub out: PathBuf,
    pub database: PathBuf,
    pub requested: usize,
    pub from_database: usize,
    pub from_examples: usize,
    /// How many fewer database images than requested were found.
    pub shortfall: usize,
    pub queries: Vec<QueryReport>,
    /// Set when the examples' captions searched too.
    pub caption_search: Option<Vec<ExampleCaption>>,
    pub prompt_writer: String,
    /// Images whose prompt came from the template because the writer failed, and why.
    pub prompt_fallbacks: Vec<String>,
    pub images: Vec<DatasetImage>,
    pub dropped: Vec<Dropped>,
    pub notes: Vec<String>,
    pub seconds: f64,
}

/// An example image as loaded.
struct Example {
    path: PathBuf,
    name: String,
    id: String,
    image: DynamicImage,
    embedding: Vec<f32>,
}

/// An image ready for captioning and writing.
struct Prepared {
    origin: Origin,
    source: String,
    id: String,
    score: Option<f32>,
    query: Option<String>,
    labels: Vec<String>,
    stored_caption: Option<String>,
    image: DynamicImage,
    report: huatu_imaging::FitReport,
}

fn validate(request: &DatasetRequest) -> Result<()> {
    let invalid = |message: &str| Err(DataError::InvalidRequest(message.into()));
    if request.examples.is_empty() && request.describe.is_none() {
        return invalid("give example images (--examples) or a description (--describe)");
    }
    let keeps_examples = request.include_examples && !request.examples.is_empty();
    if request.take == 0 && !keeps_examples {
        return invalid("--take must be at least 1 (or keep the examples in the dataset)");
    }
    if request.duplicate_threshold <= 0.0
        || request.duplicate_threshold > 1.0
        || request.duplicate_threshold.is_nan()
    {
        return invalid("the duplicate threshold must be in (0, 1]");
    }
    if request.batch_size == 0 {
        return invalid("the caption batch size must be at least 1");
    }
    if request
        .describe
        .as_deref()
        .is_some_and(|d| d.trim().is_empty())
    {
        return invalid("--describe is empty");
    }
    Ok(())
}

/// Builds the dataset folder; `progress` hears what each stage is doing.
pub fn build_dataset(
    database: &ImageDatabase,
    models: &DatasetModels,
    request: &DatasetRequest,
    progress: &mut dyn FnMut(&str),
) -> Result<DatasetReport> {
    validate(request)?;
    let started = Instant::now();
    let mut staged = StagedFolder::create(&request.out)?;
    let mut notes = Vec::new();

    let examples = load_examples(models.clip, &request.examples)?;
    progress(&format!("{} example(s) embedded", examples.len()));
    let mut queries: Vec<NamedQuery> = examples
        .iter()
        .map(|example| NamedQuery {
            name: format!("example {}", example.name),
            embedding: example.embedding.clone(),
        })
        .collect();
    if let Some(describe) = &request.describe {
        queries.push(NamedQuery {
            name: format!("description \"{describe}\""),
            embedding: models.clip.embed_text(describe)?,
        });
    }
    let example_ids: Vec<String> = examples.iter().map(|e| e.id.clone()).collect();
    let example_vectors: Vec<(String, Vec<f32>)> = examples
        .iter()
        .map(|e| (format!("example {}", e.name), e.embedding.clone()))
        .collect();
    let gathered = gather_enough(database, &queries, &example_ids, &example_vectors, request)?;
    let (mut candidates, mut dropped, mut query_reports) = gathered;
    progress(&format!(
        "{} queries found {} distinct image(s)",
        queries.len(),
        candidates.len()
    ));

    let mut caption_search = None;
    if candidates.len() < request.take && !examples.is_empty() {
        match models.blip {
            Some(blip) => {
                let images: Vec<DynamicImage> = examples.iter().map(|e| e.image.clone()).collect();
                let captions = blip.caption_images(&images, &request.caption)?;
                let mut written = Vec::new();
                for (example, caption) in examples.iter().zip(captions) {
                    queries.push(NamedQuery {
                        name: format!("caption of {}: \"{}\"", example.name, caption.text),
                        embedding: models.clip.embed_text(&caption.text)?,
                    });
                    written.push(ExampleCaption {
                        example: example.path.display().to_string(),
                        caption: caption.text,
                    });
                }
                (candidates, dropped, query_reports) =
                    gather_enough(database, &queries, &example_ids, &example_vectors, request)?;
                progress(&format!(
                    "short of {}: searched by the examples' captions too, {} distinct image(s)",
                    request.take,
                    candidates.len()
                ));
                caption_search = Some(written);
            }
            None => notes.push(format!(
                "found {} of {} images; with a BLIP model (--caption-model) the examples' captions would search too",
                candidates.len(),
                request.take
            )),
        }
    }

    let writer_name = models
        .writer
        .map_or_else(|| models.template.name(), |writer| writer.name());
    let mut writing = Writing {
        staged: &mut staged,
        models,
        request,
        images: Vec::new(),
        fallbacks: Vec::new(),
        noted_missing_captions: false,
        notes: &mut notes,
    };
    let mut batch = Vec::with_capacity(request.batch_size);
    let from_examples = if request.include_examples {
        for example in &examples {
            batch.push(prepare_example(example, &request.fit)?);
            if batch.len() == request.batch_size {
                writing.write_batch(std::mem::take(&mut batch))?;
            }
        }
        examples.len()
    } else {
        0
    };
    let mut from_database = 0;
    for candidate in candidates {
        if from_database == request.take {
            break;
        }
        match prepare_candidate(&candidate, &request.fit) {
            Ok(prepared) => {
                batch.push(prepared);
                from_database += 1;
            }
            Err(reason) => dropped.push(Dropped {
                path: candidate.row.path.clone(),
                id: Some(candidate.row.id.clone()),
                score: Some(candidate.score),
                reason,
            }),
        }
        if batch.len() == request.batch_size {
            writing.write_batch(std::mem::take(&mut batch))?;
            progress(&format!(
                "{} of {} image(s) written",
                writing.images.len(),
                from_examples + request.take
            ));
        }
    }
    writing.write_batch(batch)?;
    let images = std::mem::take(&mut writing.images);
    let prompt_fallbacks = std::mem::take(&mut writing.fallbacks);
    if images.is_empty() {
        return Err(DataError::InvalidRequest(format!(
            "no images for the dataset: the database {} has none similar enough{}",
            database.dir().display(),
            request
                .min_score
                .map_or(String::new(), |score| format!(" (--min-score {score})"))
        )));
    }
    let shortfall = request.take - from_database;
    if shortfall > 0 {
        notes.push(format!(
            "{from_database} of {} database images taken; the database has no more distinct images similar enough",
            request.take
        ));
    }
    let mut report = DatasetReport {
        out: request.out.clone(),
        database: database.dir().to_path_buf(),
        requested: request.take,
        from_database,
        from_examples,
        shortfall,
        queries: query_reports,
        caption_search,
        prompt_writer: writer_name,
        prompt_fallbacks,
        images,
        dropped,
        notes,
        seconds: 0.0,
    };
    report.seconds = started.elapsed().as_secs_f64();
    let text = serde_json::to_string_pretty(&report).map_err(|error| {
        DataError::InvalidRequest(format!("the report cannot be written: {error}"))
    })?;
    staged.write_text("report.json", &text)?;
    staged.finish()?;
    Ok(report)
}

/// Searches with every query and deduplicates, widening the search (4× the hits per
/// query) while duplicates leave fewer than `take` distinct images and the database has
/// more to give.
fn gather_enough(
    database: &ImageDatabase,
    queries: &[NamedQuery],
    example_ids: &[String],
    example_vectors: &[(String, Vec<f32>)],
    request: &DatasetRequest,
) -> Result<(Vec<Candidate>, Vec<Dropped>, Vec<QueryReport>)> {
    let images = database.info()?.images;
    // room for duplicates and unreadable files without searching again
    let mut pool = request.take * 2 + 16;
    loop {
        let (found, reports) =
            gather::search(database, queries, pool, request.min_score, example_ids)?;
        let (kept, dropped) =
            gather::deduplicate(found, example_vectors, request.duplicate_threshold);
        let saturated = reports.iter().any(|report| report.hits == pool);
        if kept.len() >= request.take + request.take / 8 + 2 || !saturated || pool >= images {
            return Ok((kept, dropped, reports));
        }
        pool = (pool * 4).min(images);
    }
}

fn file_name(path: &Path) -> String {
    path.file_name().map_or_else(
        || path.display().to_string(),
        |name| name.to_string_lossy().into_owned(),
    )
}

fn load_examples(clip: &ClipModel, inputs: &[PathBuf]) -> Result<Vec<Example>> {
    let files = if inputs.is_empty() {
        Vec::new()
    } else {
        collect_images(inputs)?
    };
    let mut examples = Vec::with_capacity(files.len());
    for path in files {
        let bytes = std::fs::read(&path).map_err(|source| DataError::Io {
            path: path.clone(),
            source,
        })?;
        let limits = huatu_imaging::io::DecodeLimits::DEFAULT;
        let image =
            huatu_imaging::io::decode_image(&bytes, None, "it", &limits).map_err(|error| {
                DataError::InvalidRequest(format!(
                    "example {} is not a readable image: {error}",
                    path.display()
                ))
            })?;
        examples.push(Example {
            name: file_name(&path),
            id: content_id(&bytes),
            path,
            image,
            embedding: Vec::new(),
        });
    }
    let images: Vec<DynamicImage> = examples.iter().map(|e| e.image.clone()).collect();
    for (example, embedding) in examples.iter_mut().zip(clip.embed_images(&images)?) {
        example.embedding = embedding;
    }
    Ok(examples)
}

fn prepare_example(example: &Example, options: &FitOptions) -> Result<Prepared> {
    let fitted = fit(&example.image, &options.keyed(&example.id))?;
    Ok(Prepared {
        origin: Origin::Example,
        source: example.path.display().to_string(),
        id: example.id.clone(),
        score: None,
        query: None,
        labels: Vec::new(),
        stored_caption: None,
        image: DynamicImage::ImageRgb8(fitted.image),
        report: fitted.report,
    })
}

fn prepare_candidate(
    candidate: &Candidate,
    options: &FitOptions,
) -> std::result::Result<Prepared, String> {
    let path = Path::new(&candidate.row.path);
    let image = huatu_imaging::io::load_image(path)
        .map_err(|error| format!("cannot read the image: {error}"))?;
    let fitted = fit(&image, &options.keyed(&candidate.row.id))
        .map_err(|error| format!("cannot fit the image: {error}"))?;
    Ok(Prepared {
        origin: Origin::Database,
        source: candidate.row.path.clone(),
        id: candidate.row.id.clone(),
        score: Some(candidate.score),
        query: Some(candidate.query.clone()),
        labels: candidate.row.labels.clone(),
        stored_caption: candidate.row.caption.clone(),
        image: DynamicImage::ImageRgb8(fitted.image),
        report: fitted.report,
    })
}

/// Captions, prompts and writes prepared images into the staging folder.
struct Writing<'a, 'm> {
    staged: &'a mut StagedFolder,
    models: &'a DatasetModels<'m>,
    request: &'a DatasetRequest,
    images: Vec<DatasetImage>,
    fallbacks: Vec<String>,
    noted_missing_captions: bool,
    notes: &'a mut Vec<String>,
}

impl Writing<'_, '_> {
    fn write_batch(&mut self, batch: Vec<Prepared>) -> Result<()> {
        if batch.is_empty() {
            return Ok(());
        }
        let captions: Vec<Option<String>> = match self.models.blip {
            Some(blip) => {
                let images: Vec<DynamicImage> = batch.iter().map(|p| p.image.clone()).collect();
                blip.caption_images(&images, &self.request.caption)?
                    .into_iter()
                    .map(|caption| Some(caption.text))
                    .collect()
            }
            None => {
                if !self.noted_missing_captions {
                    self.notes
                        .push("no BLIP model: captions are the database's, else its labels".into());
                    self.noted_missing_captions = true;
                }
                batch.iter().map(|p| p.stored_caption.clone()).collect()
            }
        };
        for (prepared, caption) in batch.into_iter().zip(captions) {
            let number = self.images.len();
            let stem = format!("{number:04}_{}", &prepared.id[..prepared.id.len().min(12)]);
            let prompt = self.prompt(&stem, caption.as_deref(), &prepared.labels);
            let file_name = format!("{stem}.png");
            save_image(&prepared.image, &self.staged.path(&file_name))?;
            self.staged.write_text(&format!("{stem}.txt"), &prompt)?;
            let report = prepared.report;
            let image = DatasetImage {
                file_name,
                origin: prepared.origin,
                source: prepared.source,
                id: prepared.id,
                score: prepared.score,
                query: prepared.query,
                labels: prepared.labels,
                caption,
                prompt,
                original_size: [report.original_size.width, report.original_size.height],
                target_size: [report.target_size.width, report.target_size.height],
                crop_top_left: [report.crop_top_left.0, report.crop_top_left.1],
            };
            self.staged.append_metadata(&serde_json::json!({
                "file_name": image.file_name,
                "text": image.prompt,
                "caption": image.caption,
                "origin": image.origin,
                "source": image.source,
                "id": image.id,
                "score": image.score,
                "original_size": image.original_size,
                "crop_top_left": image.crop_top_left,
            }))?;
            self.images.push(image);
        }
        Ok(())
    }

    fn prompt(&mut self, stem: &str, caption: Option<&str>, labels: &[String]) -> String {
        let Some(writer) = self.models.writer else {
            return self.models.template.fill(caption, labels);
        };
        match writer.write(caption, labels) {
            Ok(prompt) if !prompt.trim().is_empty() => prompt.trim().to_string(),
            Ok(_) => {
                self.fallbacks
                    .push(format!("{stem}: the writer returned an empty prompt"));
                self.models.template.fill(caption, labels)
            }
            Err(message) => {
                self.fallbacks.push(format!("{stem}: {message}"));
                self.models.template.fill(caption, labels)
            }
        }
    }
}
