//! The `huatu` binary: every feature as a subcommand; each subcommand translates its
//! arguments into one library call.

use std::process::ExitCode;

use clap::{Parser, Subcommand};

mod commands;
mod device_args;
mod error_report;
mod fit_args;
mod intent_model_lookup;
mod model_args;
mod model_lookup;

#[derive(Parser)]
#[command(
    name = "huatu",
    version,
    about = "huatu (画图): a self-hosted image creation agent"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Text-to-image with Stable Diffusion XL.
    Generate(commands::generate::GenerateArgs),
    /// Serves the HTTP API (OpenAI-compatible images, jobs, SSE progress) and the web page.
    Serve(commands::serve::ServeArgs),
    /// Runs jobs from a shared PostgreSQL queue (`serve --database … --no-worker` is the
    /// API); no HTTP.
    Worker(commands::worker::WorkerArgs),
    /// Understands an instruction, plans and runs the whole chain, printing each step.
    Chat(commands::chat::ChatArgs),
    /// Edits an image: text edit (InstructPix2Pix), region edit (inpainting, ControlNet) or img2img.
    Edit(commands::edit::EditArgs),
    /// An original/edited image pair from two captions with shared self-attention
    /// (Prompt-to-Prompt, as InstructPix2Pix made its training data).
    EditPair(Box<commands::edit_pair::EditPairArgs>),
    /// Understands an instruction: intent and slots as JSON (INTENTS.md).
    Parse(commands::parse::ParseArgs),
    /// The plan `chat` would run (intent, slots, scene, prompts, size, LoRA, enhancer), without running it.
    Plan(commands::plan::PlanArgs),
    /// Scores a model on labelled data.
    #[command(subcommand)]
    Eval(commands::parse::EvalCommand),
    /// Trains a model.
    #[command(subcommand)]
    Train(commands::train::TrainCommand),
    /// Inspect LoRA adapter files.
    Lora(commands::lora::LoraArgs),
    /// Improves an image with a chain of enhancers (denoise, sharpen, CLAHE, colour, Real-ESRGAN).
    Enhance(commands::enhance::EnhanceArgs),
    /// Brings images to a target size or SDXL bucket, keeping the aspect ratio.
    Preprocess(commands::preprocess::PreprocessArgs),
    /// Prints the L2-normalised CLIP embedding of an image or a text as one JSON line.
    Embed(commands::embed::EmbedArgs),
    /// Captions images with BLIP, one JSON line per image.
    Caption(commands::caption::CaptionArgs),
    /// The image database for training data: add images, search by text or image, info,
    /// remove, export.
    Db(commands::db::DbArgs),
    /// Training datasets from the image database: `dataset build`.
    #[command(subcommand)]
    Dataset(commands::dataset::DatasetCommand),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Generate(args) => commands::generate::run(args),
        Command::Serve(args) => commands::serve::run(args),
        Command::Worker(args) => commands::worker::run(args),
        Command::Edit(args) => commands::edit::run(args),
        Command::EditPair(args) => commands::edit_pair::run(*args),
        Command::Chat(args) => commands::chat::run(args),
        Command::Parse(args) => commands::parse::run(args),
        Command::Plan(args) => commands::plan::run(args),
        Command::Eval(command) => commands::parse::run_eval(command),
        Command::Train(command) => commands::train::run(command),
        Command::Lora(args) => commands::lora::run(args),
        Command::Enhance(args) => commands::enhance::run(args),
        Command::Preprocess(args) => commands::preprocess::run(args),
        Command::Embed(args) => commands::embed::run(args),
        Command::Caption(args) => commands::caption::run(args),
        Command::Db(args) => commands::db::run(args),
        Command::Dataset(command) => commands::dataset::run(command),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            error_report::print_chain(&error);
            ExitCode::FAILURE
        }
    }
}
