//! `huatu caption --model DIR --image FILE [--image FILE|FOLDER ...]`: BLIP captions as
//! transformers' `BlipForConditionalGeneration.generate` + `decode(skip_special_tokens=True)`
//! make them. One image file: one JSON line `{"caption": "..."}`; several images or a
//! folder (recursive): one JSON line per image, `{"path": "...", "caption": "..."}`,
//! captioned in batches. Unreadable files are skipped and named on stderr.

use std::path::PathBuf;

use clap::Args;
use huatu_data::db::scan::collect_images;
use huatu_data::{BlipForConditionalGeneration, CaptionOptions};
use huatu_imaging::io::load_image;

use crate::device_args::DeviceArgs;
use crate::error_report::one_line;

#[derive(Args, Debug)]
pub struct CaptionArgs {
    /// A BLIP captioning folder as transformers saves `BlipForConditionalGeneration` with
    /// its processor (config.json, model.safetensors, preprocessor_config.json, tokenizer).
    #[arg(long, value_name = "DIR")]
    pub model: PathBuf,
    #[command(flatten)]
    pub device: DeviceArgs,
    /// Images or folders of images (recursive); repeat for several.
    #[arg(long, value_name = "FILE|FOLDER", required = true)]
    pub image: Vec<PathBuf>,
    /// The most tokens to generate after the prompt (`max_new_tokens`).
    #[arg(long, value_name = "N", default_value_t = 20)]
    pub max_tokens: usize,
    /// Beam search with this many beams; 1 is greedy search.
    #[arg(long, value_name = "K", default_value_t = 1)]
    pub num_beams: usize,
    /// A start the caption continues, e.g. "a picture of" (kept in the caption).
    #[arg(long, value_name = "TEXT")]
    pub prompt: Option<String>,
    /// Images captioned together.
    #[arg(long, value_name = "N", default_value_t = 8)]
    pub batch_size: usize,
}

pub fn run(args: CaptionArgs) -> anyhow::Result<()> {
    if args.max_tokens == 0 || args.num_beams == 0 || args.batch_size == 0 {
        anyhow::bail!(
            "--max-tokens, --num-beams and --batch-size must be at least 1, got {}, {} and {}",
            args.max_tokens,
            args.num_beams,
            args.batch_size
        );
    }
    let single = args.image.len() == 1 && args.image[0].is_file();
    let files = collect_images(&args.image)?;
    let model = BlipForConditionalGeneration::load(&args.model, &args.device.open()?)?;
    let options = CaptionOptions {
        max_new_tokens: args.max_tokens,
        num_beams: args.num_beams,
        prompt: args.prompt,
    };
    if single {
        let image = load_image(&files[0])?;
        let caption = model
            .caption_images(&[image], &options)?
            .into_iter()
            .next()
            .ok_or_else(|| anyhow::anyhow!("the model returned no caption"))?;
        println!("{}", serde_json::json!({ "caption": caption.text }));
        return Ok(());
    }
    let mut skipped = 0;
    for chunk in files.chunks(args.batch_size) {
        let mut paths = Vec::with_capacity(chunk.len());
        let mut images = Vec::with_capacity(chunk.len());
        for path in chunk {
            match load_image(path) {
                Ok(image) => {
                    paths.push(path);
                    images.push(image);
                }
                Err(error) => {
                    skipped += 1;
                    eprintln!("skipped {}: {}", path.display(), one_line(&error));
                }
            }
        }
        for (path, caption) in paths.iter().zip(model.caption_images(&images, &options)?) {
            println!(
                "{}",
                serde_json::json!({ "path": path.display().to_string(), "caption": caption.text })
            );
        }
    }
    eprintln!(
        "captioned {} image(s), skipped {skipped} (unreadable)",
        files.len() - skipped
    );
    Ok(())
}
