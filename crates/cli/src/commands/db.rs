//! `huatu db add | search | index | info | remove | export`: the image database of training-data
//! preparation (huatu-data's `ImageDatabase`). Data (JSON lines) to stdout; progress and
//! skipped files to stderr.

use std::io::Write;
use std::path::PathBuf;

use anyhow::Context;
use candle_core::Device;
use clap::{Args, Subcommand};
use huatu_data::db::scan::split_labels;
use huatu_data::db::{embed_query, AddOptions, AddProgress, ImageDatabase, Query, SearchOptions};
use huatu_data::ClipModel;
use huatu_diffusion::device::DeviceChoice;

use crate::device_args::DeviceArgs;

#[derive(Args, Debug)]
pub struct DbArgs {
    #[command(subcommand)]
    pub command: DbCommand,
    /// Where CLIP runs: auto, cpu, cuda or cuda:N. Default: $HUATU_DEVICE, else auto.
    #[arg(long, global = true)]
    pub device: Option<DeviceChoice>,
}

#[derive(Subcommand, Debug)]
pub enum DbCommand {
    /// Embeds images (files, or folders recursively) with CLIP and stores them; creates the
    /// database on first use. Files already present (same content) are left alone.
    Add {
        /// The database folder (created if missing).
        #[arg(long, value_name = "DIR")]
        db: PathBuf,
        /// The CLIP model folder (transformers `CLIPModel`); the database remembers it.
        #[arg(long, value_name = "DIR")]
        model: PathBuf,
        /// Labels for every image added, comma-separated; labels from a sidecar
        /// (NAME.txt: comma-separated, NAME.json: {"labels": [...], "caption": "..."}) are
        /// appended.
        #[arg(long, value_name = "A,B")]
        labels: Option<String>,
        /// Images per model call.
        #[arg(long, default_value_t = 16)]
        batch_size: usize,
        /// Image files and folders.
        #[arg(required = true, value_name = "IMAGES|FOLDERS")]
        inputs: Vec<PathBuf>,
    },
    /// The images most similar to a text or an image: one JSON line per hit, best first.
    Search {
        #[arg(long, value_name = "DIR")]
        db: PathBuf,
        /// A description to search for.
        #[arg(long, required_unless_present = "image", conflicts_with = "image")]
        text: Option<String>,
        /// An example image to search for.
        #[arg(long, value_name = "FILE")]
        image: Option<PathBuf>,
        /// How many hits.
        #[arg(short = 'k', long = "top-k", default_value_t = 10)]
        k: usize,
        /// Only hits with at least this cosine similarity.
        #[arg(long, value_name = "S")]
        min_score: Option<f32>,
        /// Scan every embedding even in a large database (which otherwise searches its
        /// approximate HNSW index).
        #[arg(long)]
        exact: bool,
    },
    /// Builds or updates the approximate index now (search does it when needed).
    Index {
        #[arg(long, value_name = "DIR")]
        db: PathBuf,
    },
    /// Image count and the CLIP model the database was built with, as JSON.
    Info {
        #[arg(long, value_name = "DIR")]
        db: PathBuf,
    },
    /// Removes images by id (or a unique id prefix of 8+ hex digits) or stored path; one
    /// JSON line per removed row.
    Remove {
        #[arg(long, value_name = "DIR")]
        db: PathBuf,
        #[arg(required = true, value_name = "ID|PATH")]
        keys: Vec<String>,
    },
    /// Every row as JSON lines (id, path, labels, caption, width, height; `--vectors` adds
    /// the embedding), to stdout or `--out FILE` (written atomically).
    Export {
        #[arg(long, value_name = "DIR")]
        db: PathBuf,
        #[arg(long, value_name = "FILE")]
        out: Option<PathBuf>,
        #[arg(long)]
        vectors: bool,
    },
}

pub fn run(args: DbArgs) -> anyhow::Result<()> {
    let device = DeviceArgs {
        device: args.device,
    };
    match args.command {
        DbCommand::Add {
            db,
            model,
            labels,
            batch_size,
            inputs,
        } => add(db, model, labels, batch_size, inputs, &device.open()?),
        DbCommand::Search {
            db,
            text,
            image,
            k,
            min_score,
            exact,
        } => {
            let query = match (image, text) {
                (Some(image), _) => Query::Image(image),
                (None, Some(text)) => Query::Text(text),
                (None, None) => anyhow::bail!("give --text \"...\" or --image FILE"),
            };
            let database = ImageDatabase::open(&db)?;
            let model = database.load_model(&device.open()?)?;
            let embedding = embed_query(&model, &query)?;
            let mut stdout = std::io::stdout().lock();
            let options = SearchOptions {
                min_score,
                exact,
                ..SearchOptions::top(k)
            };
            for hit in database.search_with(&embedding, &options)? {
                writeln!(stdout, "{}", serde_json::to_string(&hit)?)?;
            }
            Ok(())
        }
        DbCommand::Index { db } => {
            let database = ImageDatabase::open(&db)?;
            let action = database.build_index()?;
            let info = database.info()?;
            eprintln!("{action:?}: {} images indexed", info.indexed.unwrap_or(0));
            Ok(())
        }
        DbCommand::Info { db } => {
            let info = ImageDatabase::open(&db)?.info()?;
            println!("{}", serde_json::to_string(&info)?);
            Ok(())
        }
        DbCommand::Remove { db, keys } => {
            let mut database = ImageDatabase::open(&db)?;
            let removed = database.remove(&keys)?;
            for row in &removed {
                println!("{}", serde_json::to_string(row)?);
            }
            eprintln!("removed {} image(s)", removed.len());
            Ok(())
        }
        DbCommand::Export { db, out, vectors } => export(db, out, vectors),
    }
}

fn add(
    db: PathBuf,
    model: PathBuf,
    labels: Option<String>,
    batch_size: usize,
    inputs: Vec<PathBuf>,
    device: &Device,
) -> anyhow::Result<()> {
    let model = ClipModel::load(&model, device)?;
    let mut database = ImageDatabase::open_or_create(&db, &model)?;
    let options = AddOptions {
        labels: labels.as_deref().map(split_labels).unwrap_or_default(),
        batch_size,
    };
    let bar =
        indicatif::ProgressBar::with_draw_target(None, indicatif::ProgressDrawTarget::stderr());
    let style =
        indicatif::ProgressStyle::with_template("{msg} [{bar:30}] {pos}/{len} {per_sec} eta {eta}")
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar());
    bar.set_style(style);
    bar.set_message("embedding");
    let report = database.add(&model, &inputs, &options, |progress: &AddProgress| {
        bar.set_length(progress.total as u64);
        bar.set_position(progress.done as u64);
    })?;
    bar.finish_and_clear();
    for skipped in &report.skipped {
        eprintln!("skipped {}: {}", skipped.path.display(), skipped.reason);
    }
    let seen = report.added + report.already_present + report.skipped.len();
    let rate = if report.seconds > 0.0 {
        seen as f64 / report.seconds
    } else {
        0.0
    };
    eprintln!(
        "added {}, already present {}, skipped {} (unreadable) in {:.1}s ({rate:.1} images/s); {} images in {}",
        report.added,
        report.already_present,
        report.skipped.len(),
        report.seconds,
        database.info()?.images,
        db.display()
    );
    Ok(())
}

fn export(db: PathBuf, out: Option<PathBuf>, with_vectors: bool) -> anyhow::Result<()> {
    let database = ImageDatabase::open(&db)?;
    let rows = database.rows()?;
    let vectors = if with_vectors {
        let (ids, flat) = database.vectors()?;
        let dimension = if ids.is_empty() {
            0
        } else {
            flat.len() / ids.len()
        };
        ids.into_iter()
            .zip(flat.chunks(dimension.max(1)).map(<[f32]>::to_vec))
            .collect::<std::collections::HashMap<_, _>>()
    } else {
        Default::default()
    };
    let mut text = String::new();
    for row in rows {
        let mut value = serde_json::to_value(&row)?;
        if let (Some(vector), Some(object)) = (vectors.get(&row.id), value.as_object_mut()) {
            // f32 values, not widened to f64
            object.insert(
                "embedding".into(),
                serde_json::from_str(&serde_json::to_string(vector)?)?,
            );
        }
        text.push_str(&value.to_string());
        text.push('\n');
    }
    match out {
        None => std::io::stdout().lock().write_all(text.as_bytes())?,
        Some(path) => {
            // write beside the target, then rename: readers never see half a file
            let mut partial = path.clone().into_os_string();
            partial.push(".partial");
            let partial = PathBuf::from(partial);
            std::fs::write(&partial, text)
                .with_context(|| format!("cannot write {}", partial.display()))?;
            std::fs::rename(&partial, &path)
                .with_context(|| format!("cannot write {}", path.display()))?;
        }
    }
    Ok(())
}
