//! Settings of one server: the `huatu serve` flags (clap) and the resolved `ServerConfig`.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use clap::Args;
use huatu_diffusion::device::{DeviceChoice, DtypeChoice};

use crate::blobs::S3Location;
use crate::error::ServerError;

/// The longest synchronous wait honoured (one year); larger `--sync-timeout-secs` are capped.
const MAX_SYNC_TIMEOUT_SECS: u64 = 365 * 24 * 3600;
/// The longest `--keep-results` (a thousand years: "forever" without overflowing clocks).
const MAX_KEEP_DAYS: f64 = 365_000.0;
/// The largest `--max-store-gib` (1 EiB).
const MAX_STORE_GIB: f64 = (1u64 << 30) as f64;
/// The longest header or body timeout (one day).
const MAX_IO_TIMEOUT_SECS: u64 = 24 * 3600;
/// The most connections `--max-connections` may allow.
const MAX_CONNECTIONS: usize = 1_000_000;

/// The default `--max-megapixel-steps`: 4 images × 30 steps at 1024², or one 2048² image
/// with 30 steps. SDXL with guidance is ~13 TFLOP per 1024² step, about two minutes on a
/// 2-core CPU, so this is a few hours there (minutes on a GPU). The largest request the
/// other limits allow, 8 × 150 steps × 2048², is 4800: forty times over. (Attention grows
/// faster than the pixel count: a 2048² step costs ~6× a 1024² one, not 4×.)
pub const DEFAULT_MAX_MEGAPIXEL_STEPS: f64 = 120.0;

/// The default `--max-job-secs`: six hours, above what the default cost limit takes on a
/// 2-core CPU, so it only stops what the cost could not foresee.
pub const DEFAULT_MAX_JOB_SECS: u64 = 6 * 3600;

#[derive(Args, Debug, Clone)]
pub struct ServeArgs {
    /// An SDXL model: a diffusers folder or a single-file checkpoint (.safetensors).
    /// Without it the API runs but generation answers 503.
    #[arg(long)]
    pub model: Option<PathBuf>,
    /// For a single-file checkpoint: a diffusers folder with configs and tokenizers.
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// An InstructPix2Pix SDXL model (8-channel UNet, diffusers folder): /v1/agent runs
    /// text edits (edit.instruct) with it. Without it they run as prompts through
    /// inpainting / image-to-image on --model.
    #[arg(long)]
    pub instruct_model: Option<PathBuf>,
    /// An SDXL canny ControlNet (diffusers folder, or .safetensors with config.json beside):
    /// /v1/agent puts supplied images into the picture (edit.reference) with it.
    #[arg(long)]
    pub controlnet: Option<PathBuf>,
    /// Real-ESRGAN weights (.pth or .safetensors), for scene enhancers that upscale.
    #[arg(long)]
    pub sr_model: Option<PathBuf>,
    /// The agent's intent model folder; default $HUATU_INTENT_MODEL or ./models/intent.
    /// Without one, /v1/agent answers 503.
    #[arg(long)]
    pub intent_model: Option<PathBuf>,
    /// A local instruction-tuned Qwen2/Qwen2.5/Qwen3 (transformers folder or .gguf file with
    /// tokenizer.json beside it) that writes the agent's prompts, loaded once at start; its
    /// answer is checked and the offline writer's prompt kept when it is unusable. Default:
    /// $HUATU_PROMPT_MODEL, else the offline writer alone.
    #[arg(long)]
    pub prompt_model: Option<PathBuf>,
    /// Address to listen on; port 0 picks a free port (printed on stdout).
    #[arg(long, default_value = "127.0.0.1:8080")]
    pub listen: SocketAddr,
    /// Where the job database, inputs, results (by content hash) and LoRAs (`loras/`) live.
    #[arg(long, default_value = "huatu-data")]
    pub data: PathBuf,
    /// Keep inputs and results in an S3-compatible bucket instead of --data's blobs/:
    /// s3://BUCKET[/PREFIX]. Endpoint, region and credentials come from AWS_ENDPOINT_URL,
    /// AWS_REGION, AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY; the bucket must exist.
    #[arg(long, value_name = "s3://BUCKET[/PREFIX]")]
    pub blob_store: Option<S3Location>,
    /// A bearer token that clients must send (`Authorization: Bearer KEY`). Repeat for
    /// several. Without any key the API is open.
    #[arg(long = "api-key")]
    pub api_keys: Vec<String>,
    /// A file with one API key per line (blank lines and `#` comments skipped).
    #[arg(long)]
    pub api_key_file: Option<PathBuf>,
    /// An origin allowed to call the API from a browser (CORS), e.g. https://app.example;
    /// `*` allows any. Repeat for several. Default: same origin only.
    #[arg(long = "cors-origin")]
    pub cors_origins: Vec<String>,
    /// Most jobs waiting or running at once; more are answered 429 with Retry-After.
    #[arg(long, default_value_t = 64)]
    pub queue_capacity: usize,
    /// Largest request body in MiB (uploads included).
    #[arg(long, default_value_t = 20)]
    pub max_upload_mib: usize,
    /// Largest width or height in pixels, of requested and of uploaded images.
    #[arg(long, default_value_t = 2048)]
    pub max_dimension: usize,
    /// Most denoising steps a request may ask for.
    #[arg(long, default_value_t = 150)]
    pub max_steps: usize,
    /// Most work one job may ask for, in megapixel-steps: images × denoising steps × pixels
    /// / 1024² (an edit counts the steps its strength runs). Larger jobs are refused with
    /// 400 `job_too_large`. The default, 120, allows 4 images × 30 steps at 1024² or one
    /// 2048² image with 30 steps (a few hours on a 2-core CPU); 8 × 150 steps × 2048² is
    /// 4800.
    #[arg(long, default_value_t = DEFAULT_MAX_MEGAPIXEL_STEPS, value_name = "N")]
    pub max_megapixel_steps: f64,
    /// Seconds a job may run before the worker stops it; it ends `failed` ("ran longer
    /// than N s"). Default six hours; at most a year.
    #[arg(long, default_value_t = DEFAULT_MAX_JOB_SECS, value_name = "SECS")]
    pub max_job_secs: u64,
    /// How long a synchronous request waits for its job before answering 504 (the job
    /// goes on and can be followed at /v1/jobs/{id}); at most a year.
    #[arg(long, default_value_t = 600)]
    pub sync_timeout_secs: u64,
    /// Base of the `url`s in responses, e.g. https://huatu.example; default: from the
    /// request's Host header.
    #[arg(long)]
    pub public_url: Option<String>,
    /// A Host name this server answers to without an API key, besides loopback names, the
    /// --listen address and --public-url's host (a guard against DNS rebinding). Repeat
    /// for several.
    #[arg(long = "allowed-host")]
    pub allowed_hosts: Vec<String>,
    /// Listen on a non-loopback address without an API key (refused otherwise): anyone
    /// who reaches the port can run jobs and read every prompt and image.
    #[arg(long)]
    pub insecure_public: bool,
    /// Seconds a client has to send a request's headers (slow clients are cut off).
    #[arg(long, default_value_t = 30)]
    pub header_timeout_secs: u64,
    /// Seconds a request body may pause between two pieces before the request fails.
    #[arg(long, default_value_t = 60)]
    pub body_timeout_secs: u64,
    /// Most open connections; further ones wait until one closes.
    #[arg(long, default_value_t = 512)]
    pub max_connections: usize,
    /// Days a finished job (succeeded, failed or cancelled) is kept, with its inputs and
    /// images; older ones are deleted, oldest first, and their /v1/jobs/{id} answers 404.
    /// Fractions allowed (0.5 = 12 hours). Default: kept until --max-store-gib needs room.
    #[arg(long, value_name = "DAYS")]
    pub keep_results: Option<f64>,
    /// Most GiB of stored inputs and images (the blob store); past it the oldest finished
    /// jobs are deleted with their blobs until it fits. Queued and running jobs are never
    /// deleted. Fractions allowed. Default: no limit.
    #[arg(long, value_name = "GIB")]
    pub max_store_gib: Option<f64>,
    /// Compute precision: auto (f32 on the CPU; bf16 on a GPU that has it, else f16),
    /// f32, f16 or bf16.
    #[arg(long, default_value = "auto")]
    pub dtype: DtypeChoice,
    /// A device that gets a worker (its own copy of the models): auto, cpu, cuda or
    /// cuda:N. Repeat for several GPUs (`--device cuda:0 --device cuda:1`); a job goes to
    /// the first free one. Default: $HUATU_DEVICE, else auto.
    #[arg(long = "device")]
    pub devices: Vec<DeviceChoice>,
    /// The job queue: a PostgreSQL URL (postgres://USER[:PASSWORD]@HOST:PORT/DB) shared by
    /// API nodes and workers on any number of machines (processes on one machine may
    /// share one --data directory as their blob store). Default: SQLite in --data, one
    /// server per directory.
    #[arg(long, value_name = "URL")]
    pub database: Option<String>,
    /// Serve the API only; workers (`huatu worker`) run the jobs. Needs --database.
    #[arg(long)]
    pub no_worker: bool,
    /// Seconds a worker's lease on its job lasts without a heartbeat (sent every third of
    /// it); a job whose worker stopped answering is re-queued after it (--database only).
    #[arg(long, default_value_t = 15, value_name = "SECS")]
    pub lease_secs: u64,
}

/// Everything a server needs, resolved and checked.
#[derive(Debug, Clone)]
pub struct ServerConfig {
    pub model: Option<PathBuf>,
    pub model_config: Option<PathBuf>,
    pub instruct_model: Option<PathBuf>,
    pub controlnet: Option<PathBuf>,
    pub sr_model: Option<PathBuf>,
    pub intent_model: Option<PathBuf>,
    /// The agent's prompt-writing language model (`--prompt-model`), if any.
    pub prompt_model: Option<PathBuf>,
    pub listen: SocketAddr,
    pub data_dir: PathBuf,
    /// An S3 bucket for inputs and results (`--blob-store`); None: `blobs/` in `data_dir`.
    pub blob_store: Option<S3Location>,
    pub api_keys: Vec<String>,
    pub cors_origins: Vec<String>,
    pub queue_capacity: usize,
    pub max_upload_bytes: usize,
    pub max_dimension: usize,
    pub max_steps: usize,
    pub max_images: usize,
    /// Most megapixel-steps per job (`--max-megapixel-steps`, see `limits`).
    pub max_megapixel_steps: f64,
    /// Longest a job may run (`--max-job-secs`).
    pub max_job: std::time::Duration,
    pub sync_timeout: std::time::Duration,
    pub public_url: Option<String>,
    pub dtype: DtypeChoice,
    /// One worker per device.
    pub devices: Vec<DeviceChoice>,
    /// How long finished jobs are kept (`--keep-results`); None: no age limit.
    pub keep_results: Option<std::time::Duration>,
    /// Most bytes in the blob store (`--max-store-gib`); None: no limit.
    pub max_store_bytes: Option<u64>,
    /// How often retention runs (and once at start).
    pub retention_interval: std::time::Duration,
    pub allowed_hosts: Vec<String>,
    pub insecure_public: bool,
    pub header_timeout: std::time::Duration,
    pub body_timeout: std::time::Duration,
    pub max_connections: usize,
    /// A shared PostgreSQL queue (`--database`); None: SQLite in the data directory.
    pub database: Option<String>,
    /// Whether this process runs workers (false: `--no-worker`, the API alone).
    pub run_workers: bool,
    /// Whether this process serves HTTP (false: `huatu worker`).
    pub serve_http: bool,
    /// How long a worker's lease lasts without a heartbeat (`--lease-secs`).
    pub lease: std::time::Duration,
    /// The workers' names in a shared queue; default `<host>-<pid>-<index>`.
    pub worker_name: Option<String>,
}

impl ServerConfig {
    /// Defaults for a server over `data_dir` on a free loopback port.
    pub fn new(data_dir: impl Into<PathBuf>) -> Self {
        Self {
            model: None,
            model_config: None,
            instruct_model: None,
            controlnet: None,
            sr_model: None,
            intent_model: None,
            prompt_model: None,
            listen: SocketAddr::from(([127, 0, 0, 1], 0)),
            data_dir: data_dir.into(),
            blob_store: None,
            api_keys: Vec::new(),
            cors_origins: Vec::new(),
            queue_capacity: 64,
            max_upload_bytes: 20 << 20,
            max_dimension: 2048,
            max_steps: 150,
            max_images: 8,
            max_megapixel_steps: DEFAULT_MAX_MEGAPIXEL_STEPS,
            max_job: std::time::Duration::from_secs(DEFAULT_MAX_JOB_SECS),
            sync_timeout: std::time::Duration::from_secs(600),
            public_url: None,
            dtype: DtypeChoice::Auto,
            devices: vec![DeviceChoice::Auto],
            keep_results: None,
            max_store_bytes: None,
            retention_interval: std::time::Duration::from_secs(600),
            allowed_hosts: Vec::new(),
            insecure_public: false,
            header_timeout: std::time::Duration::from_secs(30),
            body_timeout: std::time::Duration::from_secs(60),
            max_connections: 512,
            database: None,
            run_workers: true,
            serve_http: true,
            lease: std::time::Duration::from_secs(15),
            worker_name: None,
        }
    }

    pub fn from_args(args: &ServeArgs) -> Result<Self, ServerError> {
        let devices = match args.devices.as_slice() {
            [] => vec![DeviceChoice::from_flag_or_env(None)
                .map_err(|error| ServerError::Config(error.to_string()))?],
            given => given.to_vec(),
        };
        for (index, device) in devices.iter().enumerate() {
            if devices[..index].contains(device) {
                return Err(ServerError::Config(format!(
                    "--device {device} is given twice (one worker per device)"
                )));
            }
        }
        let mut api_keys: Vec<String> = args
            .api_keys
            .iter()
            .map(|key| key.trim().to_string())
            .collect();
        if let Some(path) = &args.api_key_file {
            let text = std::fs::read_to_string(path).map_err(|source| ServerError::DataDir {
                path: path.clone(),
                source,
            })?;
            api_keys.extend(
                text.lines()
                    .map(str::trim)
                    .filter(|line| !line.is_empty() && !line.starts_with('#'))
                    .map(String::from),
            );
        }
        if api_keys.iter().any(String::is_empty) {
            return Err(ServerError::Config("an API key must not be empty".into()));
        }
        if args.queue_capacity == 0 {
            return Err(ServerError::Config(
                "--queue-capacity must be at least 1".into(),
            ));
        }
        if args.max_dimension < 64 || args.max_dimension % 8 != 0 {
            return Err(ServerError::Config(format!(
                "--max-dimension must be a multiple of 8 and at least 64, got {}",
                args.max_dimension
            )));
        }
        for (flag, seconds) in [
            ("--header-timeout-secs", args.header_timeout_secs),
            ("--body-timeout-secs", args.body_timeout_secs),
        ] {
            if !(1..=MAX_IO_TIMEOUT_SECS).contains(&seconds) {
                return Err(ServerError::Config(format!(
                    "{flag} must be from 1 to {MAX_IO_TIMEOUT_SECS}, got {seconds}"
                )));
            }
        }
        if !(1..=MAX_CONNECTIONS).contains(&args.max_connections) {
            return Err(ServerError::Config(format!(
                "--max-connections must be from 1 to {MAX_CONNECTIONS}, got {}",
                args.max_connections
            )));
        }
        let keep_results = match args.keep_results {
            None => None,
            Some(days) if days.is_finite() && days > 0.0 && days <= MAX_KEEP_DAYS => {
                Some(std::time::Duration::from_secs_f64(days * 86_400.0))
            }
            Some(days) => {
                return Err(ServerError::Config(format!(
                    "--keep-results must be a number of days above 0 and at most {MAX_KEEP_DAYS}, got {days}"
                )))
            }
        };
        let max_store_bytes = match args.max_store_gib {
            None => None,
            Some(gib) if gib.is_finite() && gib > 0.0 && gib <= MAX_STORE_GIB => {
                Some((gib * (1u64 << 30) as f64) as u64)
            }
            Some(gib) => {
                return Err(ServerError::Config(format!(
                    "--max-store-gib must be above 0 and at most {MAX_STORE_GIB}, got {gib}"
                )))
            }
        };
        if !(args.max_megapixel_steps.is_finite() && args.max_megapixel_steps > 0.0) {
            return Err(ServerError::Config(format!(
                "--max-megapixel-steps must be a number above 0, got {}",
                args.max_megapixel_steps
            )));
        }
        if !(1..=MAX_SYNC_TIMEOUT_SECS).contains(&args.max_job_secs) {
            return Err(ServerError::Config(format!(
                "--max-job-secs must be from 1 to {MAX_SYNC_TIMEOUT_SECS} (a year), got {}",
                args.max_job_secs
            )));
        }
        if let Some(url) = &args.database {
            check_database_url(url)?;
        } else if args.no_worker {
            return Err(ServerError::Config(
                "--no-worker needs --database postgres://…: with the built-in SQLite queue no other process can run the jobs".into(),
            ));
        }
        if !(3..=3600).contains(&args.lease_secs) {
            return Err(ServerError::Config(format!(
                "--lease-secs must be from 3 to 3600, got {}",
                args.lease_secs
            )));
        }
        if args.model.is_none() {
            let extras = [
                ("--instruct-model", args.instruct_model.is_some()),
                ("--controlnet", args.controlnet.is_some()),
                ("--sr-model", args.sr_model.is_some()),
            ];
            if let Some((flag, _)) = extras.iter().find(|(_, given)| *given) {
                return Err(ServerError::Config(format!(
                    "{flag} is used by the workers, which need --model"
                )));
            }
        }
        Ok(Self {
            model: args.model.clone(),
            model_config: args.config.clone(),
            instruct_model: args.instruct_model.clone(),
            controlnet: args.controlnet.clone(),
            sr_model: args.sr_model.clone(),
            intent_model: intent_model_dir(args.intent_model.as_deref()),
            prompt_model: args
                .prompt_model
                .clone()
                .or_else(|| std::env::var_os("HUATU_PROMPT_MODEL").map(PathBuf::from)),
            listen: args.listen,
            data_dir: args.data.clone(),
            blob_store: args.blob_store.clone(),
            api_keys,
            cors_origins: args.cors_origins.clone(),
            queue_capacity: args.queue_capacity,
            max_upload_bytes: args.max_upload_mib.saturating_mul(1 << 20),
            max_dimension: args.max_dimension,
            max_steps: args.max_steps.max(1),
            max_images: 8,
            max_megapixel_steps: args.max_megapixel_steps,
            max_job: std::time::Duration::from_secs(args.max_job_secs),
            // a deadline past tokio's clock range would panic when added to `now`
            sync_timeout: std::time::Duration::from_secs(
                args.sync_timeout_secs.clamp(1, MAX_SYNC_TIMEOUT_SECS),
            ),
            public_url: args
                .public_url
                .as_ref()
                .map(|url| url.trim_end_matches('/').to_string()),
            dtype: args.dtype,
            devices,
            keep_results,
            max_store_bytes,
            retention_interval: std::time::Duration::from_secs(600),
            allowed_hosts: args.allowed_hosts.clone(),
            insecure_public: args.insecure_public,
            header_timeout: std::time::Duration::from_secs(args.header_timeout_secs),
            body_timeout: std::time::Duration::from_secs(args.body_timeout_secs),
            max_connections: args.max_connections,
            database: args.database.clone(),
            run_workers: !args.no_worker,
            serve_http: true,
            lease: std::time::Duration::from_secs(args.lease_secs),
            worker_name: None,
        })
    }
}

/// A queue URL this huatu can use: PostgreSQL only (SQLite is the default, no URL).
pub fn check_database_url(url: &str) -> Result<(), ServerError> {
    if url.starts_with("postgres://") || url.starts_with("postgresql://") {
        Ok(())
    } else {
        Err(ServerError::Config(format!(
            "--database must be a PostgreSQL URL (postgres://USER@HOST:PORT/DB), got `{}`",
            crate::job_queue::url::redact_url(url)
        )))
    }
}

/// The intent model to use: the flag, else `$HUATU_INTENT_MODEL`, else `models/intent`
/// under the working directory when it is there.
pub fn intent_model_dir(flag: Option<&Path>) -> Option<PathBuf> {
    if let Some(dir) = flag {
        return Some(dir.to_path_buf());
    }
    if let Some(dir) = std::env::var_os("HUATU_INTENT_MODEL") {
        return Some(PathBuf::from(dir));
    }
    let local = PathBuf::from("models/intent");
    local.join("config.json").is_file().then_some(local)
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct Wrapper {
        #[command(flatten)]
        args: ServeArgs,
    }

    #[test]
    fn a_huge_sync_timeout_is_capped_instead_of_overflowing_the_clock() {
        let wrapper =
            Wrapper::try_parse_from(["serve", "--sync-timeout-secs", &u64::MAX.to_string()])
                .unwrap_or_else(|error| panic!("{error}"));
        let config =
            ServerConfig::from_args(&wrapper.args).unwrap_or_else(|error| panic!("{error}"));
        assert_eq!(config.sync_timeout.as_secs(), MAX_SYNC_TIMEOUT_SECS);
        let _deadline = std::time::Instant::now() + config.sync_timeout;
    }
}
