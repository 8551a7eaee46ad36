//! What every huatu process opens, whatever its role (all-in-one server, API node,
//! worker): the data directory (locked when the queue is SQLite), the queue, the blob
//! store, the models of its workers, then the worker threads and, on a shared queue, the
//! lease keeper. `Node::stop` stops and joins them.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use candle_core::Device;

use crate::blobs::Blobs;
use crate::config::ServerConfig;
use crate::data_dir_lock::DataDirLock;
use crate::error::ServerError;
use crate::job_queue::WorkerIdentity;
use crate::job_runner::{Capabilities, JobRunner};
use crate::job_services::JobServices;
use crate::state::WorkerHealth;
use crate::worker::run_worker;

/// How long a blob nobody references is kept when several processes share the blob
/// store (a shared queue, or any S3 bucket): another process may have written it for a
/// job it has not recorded yet.
const SHARED_BLOB_GRACE: Duration = Duration::from_secs(3600);

pub struct Node {
    pub services: Arc<JobServices>,
    pub worker_health: Arc<WorkerHealth>,
    /// The model's native size (width, height), the default `size`.
    pub native_size: (usize, usize),
    workers: Vec<std::thread::JoinHandle<()>>,
    keeper: Option<std::thread::JoinHandle<()>>,
    lock: Option<DataDirLock>,
}

/// The devices that get a worker each, opened (a named GPU that cannot be opened is an
/// error at start, not a worker that fails every job).
fn devices(config: &ServerConfig) -> Result<Vec<Device>, ServerError> {
    config
        .devices
        .iter()
        .map(|choice| {
            choice.open().map_err(|source| ServerError::Device {
                device: choice.to_string(),
                source,
            })
        })
        .collect()
}

/// The native size a model folder declares (`unet/config.json`'s `sample_size` × 8),
/// read without loading the model (an API node); 1024 when it does not say.
fn declared_native_size(model: &std::path::Path) -> (usize, usize) {
    let side = std::fs::read_to_string(model.join("unet").join("config.json"))
        .ok()
        .and_then(|text| serde_json::from_str::<serde_json::Value>(&text).ok())
        .and_then(|config| config.get("sample_size")?.as_u64())
        .map_or(1024, |size| size as usize * 8);
    (side, side)
}

impl Node {
    pub async fn open(config: &ServerConfig) -> Result<Node, ServerError> {
        let data = config.data_dir.clone();
        let data_error = |source| ServerError::DataDir {
            path: data.clone(),
            source,
        };
        // SQLite: one server per data directory (checked to be writable first), as a
        // second one would re-queue the first one's running jobs. A shared queue has
        // leases instead, and its processes may share the directory.
        let lock = match config.database {
            None => Some(crate::data_dir_lock::acquire(&data)?),
            Some(_) => None,
        };
        std::fs::create_dir_all(data.join("loras")).map_err(data_error)?;
        let database = config.database.clone();
        let queue_dir = data.clone();
        let lease = config.lease;
        // `huatu <worker name>` (or api / worker) in pg_stat_activity.
        let role = if config.serve_http { "api" } else { "worker" };
        let application = format!("huatu {}", config.worker_name.as_deref().unwrap_or(role));
        let (queue, bus) = tokio::task::spawn_blocking(move || {
            crate::job_queue::open(database.as_deref(), &queue_dir, lease, &application)
        })
        .await
        .map_err(|source| ServerError::Task {
            task: "opening the job queue",
            source,
        })??;
        let recovery = queue.recover().map_err(|source| ServerError::Queue {
            database: queue.describe(),
            source,
        })?;
        if recovery.requeued + recovery.failed > 0 {
            tracing::warn!(
                requeued = recovery.requeued,
                failed = recovery.failed,
                "found jobs interrupted by an unclean stop"
            );
        }
        let blobs = Arc::new(match config.blob_store.clone() {
            None => {
                let grace = queue.is_shared().then_some(SHARED_BLOB_GRACE);
                Blobs::open_with(&data.join("blobs"), grace).map_err(data_error)?
            }
            // A bucket is always shared (see blobs/s3.rs); its probe is a network call.
            Some(location) => {
                let cache = data.join("blob-cache");
                let described = location.to_string();
                tokio::task::spawn_blocking(move || {
                    Blobs::open_s3(&location, &cache, SHARED_BLOB_GRACE)
                })
                .await
                .map_err(|source| ServerError::Task {
                    task: "opening the blob store",
                    source,
                })?
                .map_err(|source| ServerError::BlobStore {
                    location: described,
                    source: Box::new(source),
                })?
            }
        });
        tracing::info!(store = %blobs.describe(), "blob store ready");

        let mut engines = Vec::new();
        let mut native_size = (1024, 1024);
        if let Some(model) = config.model.clone() {
            native_size = declared_native_size(&model);
            if config.run_workers {
                for device in devices(config)? {
                    let started = Instant::now();
                    let loading_config = config.clone();
                    let model_path = model.clone();
                    let engine = tokio::task::spawn_blocking(move || {
                        JobRunner::load(&loading_config, &model_path, &device)
                    })
                    .await
                    .map_err(|source| ServerError::Task {
                        task: "loading the model",
                        source,
                    })??;
                    native_size = engine.native_size();
                    tracing::info!(
                        "loaded {} in {:.1}s",
                        model.display(),
                        started.elapsed().as_secs_f64()
                    );
                    engines.push(engine);
                }
            }
        } else {
            // No worker then: queued jobs wait for a server that has a model.
            tracing::warn!("no --model: the API runs, generation answers 503");
        }

        let services = Arc::new(JobServices::new(queue, blobs, bus));
        let redactor = crate::redact::Redactor::new(config);
        let worker_health = Arc::new(WorkerHealth::default());
        let capabilities = Capabilities::of(config);
        let identities: Vec<WorkerIdentity> = (0..engines.len())
            .map(|index| {
                let name = match &config.worker_name {
                    Some(name) if engines.len() == 1 => name.clone(),
                    Some(name) => format!("{name}-{index}"),
                    None => crate::job_queue::default_worker_name(index),
                };
                crate::job_queue::worker_identity(name, capabilities, &data.join("loras"))
            })
            .collect();
        let keeper = if services.queue.is_shared() {
            let interval = config.lease / 3;
            Some(
                crate::lease_keeper::spawn(
                    services.clone(),
                    identities.clone(),
                    interval,
                    config.lease,
                )
                .map_err(ServerError::Serve)?,
            )
        } else {
            None
        };
        let workers = engines
            .into_iter()
            .zip(identities)
            .enumerate()
            .map(|(index, (engine, identity))| {
                let services = services.clone();
                let health = worker_health.clone();
                let redactor = redactor.clone();
                tracing::info!(worker = %identity.name, capabilities = ?identity.capabilities, "worker ready");
                std::thread::Builder::new()
                    .name(format!("huatu-worker-{index}"))
                    .spawn(move || {
                        // dropped when the thread ends, panicking or not: /healthz sees it
                        let _alive = health.enter();
                        run_worker(services, engine, redactor, identity)
                    })
                    .map_err(ServerError::Serve)
            })
            .collect::<Result<_, _>>()?;
        Ok(Node {
            services,
            worker_health,
            native_size,
            workers,
            keeper,
            lock,
        })
    }

    /// Stops the workers (a running job goes back to the queue) and the lease keeper,
    /// joins them, then lets go of the data directory.
    pub async fn stop(self) {
        let Node {
            services,
            workers,
            keeper,
            lock,
            ..
        } = self;
        services.shutdown.store(true, Ordering::SeqCst);
        services.wakeup.notify();
        let joined = tokio::task::spawn_blocking(move || {
            for worker in workers {
                if worker.join().is_err() {
                    tracing::error!("a worker thread panicked");
                }
            }
            if let Some(keeper) = keeper {
                let _ = keeper.join();
            }
        })
        .await;
        if joined.is_err() {
            tracing::error!("cannot join the worker threads");
        }
        // The next server may have the directory once the workers are done with it.
        drop(lock);
    }
}
