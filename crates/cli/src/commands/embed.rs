//! `huatu embed --model DIR (--image FILE | --text "...")`: one JSON line
//! `{"embedding": [...]}`, the L2-normalised CLIP embedding — transformers'
//! `CLIPModel.get_image_features` / `get_text_features`, then divided by its norm.

use std::path::PathBuf;

use clap::Args;
use huatu_data::db::{embed_query, Query};
use huatu_data::ClipModel;

use crate::device_args::DeviceArgs;

#[derive(Args, Debug)]
pub struct EmbedArgs {
    /// A CLIP model folder as transformers saves `CLIPModel` with its processor
    /// (config.json, model.safetensors, preprocessor_config.json, tokenizer files).
    #[arg(long, value_name = "DIR")]
    pub model: PathBuf,
    #[command(flatten)]
    pub device: DeviceArgs,
    /// An image to embed.
    #[arg(
        long,
        value_name = "FILE",
        required_unless_present = "text",
        conflicts_with = "text"
    )]
    pub image: Option<PathBuf>,
    /// A text to embed.
    #[arg(long)]
    pub text: Option<String>,
}

pub fn run(args: EmbedArgs) -> anyhow::Result<()> {
    let query = match (args.image, args.text) {
        (Some(image), _) => Query::Image(image),
        (None, Some(text)) => Query::Text(text),
        (None, None) => anyhow::bail!("give --image FILE or --text \"...\""),
    };
    let model = ClipModel::load(&args.model, &args.device.open()?)?;
    let embedding = embed_query(&model, &query)?;
    // serialised as f32 (shortest round-trip form), not widened to f64
    println!("{{\"embedding\":{}}}", serde_json::to_string(&embedding)?);
    Ok(())
}
