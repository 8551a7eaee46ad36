//! `huatu worker`: a process that runs jobs from a shared PostgreSQL queue and serves no
//! HTTP. It loads the models once per device, advertises what it can run, claims jobs
//! it can, keeps their leases, and on Ctrl-C or SIGTERM puts a running job back.

use std::path::PathBuf;

use clap::Args;
use huatu_diffusion::device::{DeviceChoice, DtypeChoice};

use crate::blobs::S3Location;
use crate::config::{check_database_url, ServerConfig, DEFAULT_MAX_JOB_SECS};
use crate::error::ServerError;
use crate::node::Node;

#[derive(Args, Debug, Clone)]
pub struct WorkerArgs {
    /// An SDXL model: a diffusers folder or a single-file checkpoint (.safetensors).
    #[arg(long)]
    pub model: PathBuf,
    /// For a single-file checkpoint: a diffusers folder with configs and tokenizers.
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// An InstructPix2Pix SDXL model: this worker then takes text edits (edit.instruct).
    #[arg(long)]
    pub instruct_model: Option<PathBuf>,
    /// An SDXL canny ControlNet: this worker then takes edit.reference jobs.
    #[arg(long)]
    pub controlnet: Option<PathBuf>,
    /// Real-ESRGAN weights: this worker then takes jobs whose enhancer upscales.
    #[arg(long)]
    pub sr_model: Option<PathBuf>,
    /// The shared queue: postgres://USER[:PASSWORD]@HOST:PORT/DB (as the API nodes').
    #[arg(long, value_name = "URL")]
    pub database: String,
    /// The blob store (inputs, results by content hash) and LoRAs (`loras/`): the same
    /// directory as the API nodes', shared (e.g. NFS) across machines.
    #[arg(long, default_value = "huatu-data")]
    pub data: PathBuf,
    /// The S3-compatible bucket of inputs and results, as the API nodes' --blob-store
    /// (s3://BUCKET[/PREFIX], settings from the AWS_* variables); --data then keeps only
    /// LoRAs and short-lived local copies.
    #[arg(long, value_name = "s3://BUCKET[/PREFIX]")]
    pub blob_store: Option<S3Location>,
    /// A name for this worker in /metrics and logs; default `<host>-<pid>-<index>`.
    #[arg(long)]
    pub name: Option<String>,
    /// Compute precision: auto, f32, f16 or bf16.
    #[arg(long, default_value = "auto")]
    pub dtype: DtypeChoice,
    /// A device that gets a worker (auto, cpu, cuda, cuda:N); repeat for several GPUs.
    #[arg(long = "device")]
    pub devices: Vec<DeviceChoice>,
    /// Seconds a job may run before the worker stops it (it ends `failed`).
    #[arg(long, default_value_t = DEFAULT_MAX_JOB_SECS, value_name = "SECS")]
    pub max_job_secs: u64,
    /// Seconds a lease lasts without a heartbeat; use the API nodes' value.
    #[arg(long, default_value_t = 15, value_name = "SECS")]
    pub lease_secs: u64,
}

impl WorkerArgs {
    pub fn to_config(&self) -> Result<ServerConfig, ServerError> {
        check_database_url(&self.database)?;
        if !(3..=3600).contains(&self.lease_secs) {
            return Err(ServerError::Config(format!(
                "--lease-secs must be from 3 to 3600, got {}",
                self.lease_secs
            )));
        }
        let devices = match self.devices.as_slice() {
            [] => vec![DeviceChoice::from_flag_or_env(None)
                .map_err(|error| ServerError::Config(error.to_string()))?],
            given => given.to_vec(),
        };
        let mut config = ServerConfig::new(&self.data);
        config.model = Some(self.model.clone());
        config.model_config = self.config.clone();
        config.instruct_model = self.instruct_model.clone();
        config.controlnet = self.controlnet.clone();
        config.sr_model = self.sr_model.clone();
        config.intent_model = None;
        config.database = Some(self.database.clone());
        config.blob_store = self.blob_store.clone();
        config.run_workers = true;
        config.serve_http = false;
        config.worker_name = self.name.clone();
        config.dtype = self.dtype;
        config.devices = devices;
        config.max_job = std::time::Duration::from_secs(self.max_job_secs.max(1));
        config.lease = std::time::Duration::from_secs(self.lease_secs);
        Ok(config)
    }
}

/// `huatu worker`: runs until Ctrl-C or SIGTERM. Prints `worker ready` on stdout once it
/// takes jobs.
pub fn run(args: WorkerArgs) -> Result<(), ServerError> {
    crate::server::init_logging();
    let config = args.to_config()?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(ServerError::Runtime)?;
    runtime.block_on(async move {
        let node = Node::open(&config).await?;
        {
            use std::io::Write;
            let mut stdout = std::io::stdout();
            writeln!(stdout, "worker ready")
                .and_then(|()| stdout.flush())
                .map_err(ServerError::Stdout)?;
        }
        crate::server::wait_for_signal().await;
        tracing::info!("stopping (a running job is put back in the queue)");
        node.stop().await;
        Ok(())
    })
}
