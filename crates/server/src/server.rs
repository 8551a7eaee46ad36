//! Starting and stopping a server: open the data directory and the queue (recovering jobs
//! a crash interrupted), load the model for each device's worker, bind, serve until told
//! to stop, then stop gracefully (running jobs go back to the queue).

use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Instant;

use tokio::sync::watch;
use tracing_subscriber::filter::LevelFilter;
use tracing_subscriber::EnvFilter;

use crate::config::{ServeArgs, ServerConfig};
use crate::error::ServerError;
use crate::node::Node;
use crate::routes::app;
use crate::state::{AppState, HandlerContext};

/// A server running on the current tokio runtime.
pub struct RunningServer {
    pub address: SocketAddr,
    stop: watch::Sender<bool>,
    task: tokio::task::JoinHandle<Result<(), ServerError>>,
}

impl RunningServer {
    /// Stops gracefully: no new connections, open streams end, the running job (if any)
    /// is put back in the queue, workers are joined.
    pub async fn stop(self) -> Result<(), ServerError> {
        let _ = self.stop.send(true);
        self.wait().await
    }

    /// Waits until the server has stopped.
    pub async fn wait(self) -> Result<(), ServerError> {
        match self.task.await {
            Ok(result) => result,
            Err(source) => Err(ServerError::Task {
                task: "the server",
                source,
            }),
        }
    }

    /// A handle that makes the server stop (e.g. from a signal handler).
    pub fn stopper(&self) -> watch::Sender<bool> {
        self.stop.clone()
    }
}

pub async fn start(config: ServerConfig) -> Result<RunningServer, ServerError> {
    // before anything slow (model loading) or lasting (the data directory)
    crate::security::check_listen(&config)?;
    let node = Node::open(&config).await?;
    let services = node.services.clone();
    let model_loaded = config.model.is_some();
    let agent_planner = match config.intent_model.clone() {
        Some(dir) => {
            let prompt_model = config.prompt_model.clone();
            let loaded = tokio::task::spawn_blocking(move || {
                crate::agent_jobs::AgentPlanner::load(&dir, prompt_model.as_deref())
            })
            .await
            .map_err(|source| ServerError::Task {
                task: "loading the intent model",
                source,
            })??;
            Some(Arc::new(loaded))
        }
        None => {
            tracing::warn!("no intent model: /v1/agent answers 503 (see --intent-model)");
            if let Some(path) = &config.prompt_model {
                tracing::warn!(
                    "prompt model {} not loaded: the agent needs an intent model",
                    path.display()
                );
            }
            None
        }
    };

    let listener = tokio::net::TcpListener::bind(config.listen)
        .await
        .map_err(|source| ServerError::Listen {
            address: config.listen.to_string(),
            source,
        })?;
    let address = listener.local_addr().map_err(ServerError::Serve)?;

    // Events of jobs on every node's workers (a shared queue) reach this node's streams.
    if let Some(bus) = &services.bus {
        bus.listen(services.events.clone());
    }
    // Once before the first job: blobs nobody references, jobs past retention.
    let retention = crate::retention::Policy::of(&config);
    crate::retention::sweep_now(services.clone(), retention).await;

    let (stop, stop_requested) = watch::channel(false);
    let sweeper = crate::retention::spawn_sweeper(
        services.clone(),
        retention,
        config.retention_interval,
        stop_requested.clone(),
    );
    let mut config = config;
    config.listen = address;
    let capabilities = crate::job_runner::Capabilities::of(&config);
    let hosts = crate::security::HostPolicy::new(
        address,
        config.public_url.as_deref(),
        &config.allowed_hosts,
    );
    let limits = crate::http_serve::HttpLimits {
        header_timeout: config.header_timeout,
        body_timeout: config.body_timeout,
        max_connections: config.max_connections,
    };
    let connections = Arc::new(crate::http_serve::Connections::default());
    let state = AppState {
        context: Arc::new(HandlerContext {
            config,
            services: services.clone(),
            model_loaded,
            native_size: node.native_size,
            capabilities,
            agent_planner,
            stopping: stop_requested.clone(),
            started_at: Instant::now(),
            hosts,
            workers: node.worker_health.clone(),
            connections: connections.clone(),
        }),
    };
    let router = app(state);
    let task = tokio::spawn(async move {
        let mut signal = stop_requested.clone();
        let shutdown_services = services.clone();
        let served = crate::http_serve::serve(listener, router, limits, connections, async move {
            let _ = signal.wait_for(|stop| *stop).await;
            // Stop the workers at once: a running job is put back in the queue.
            shutdown_services.shutdown.store(true, Ordering::SeqCst);
            shutdown_services.wakeup.notify();
        })
        .await;
        node.stop().await;
        sweeper.abort();
        let _ = sweeper.await;
        served.map_err(ServerError::Serve)
    });
    Ok(RunningServer {
        address,
        stop,
        task,
    })
}

/// Logs to stderr, filtered by `HUATU_LOG`: a level (`HUATU_LOG=debug` for more) or
/// `tracing` directives (`HUATU_LOG=info,huatu_server=debug`); `info` when unset.
pub fn init_logging() {
    let filter = log_filter(std::env::var("HUATU_LOG").ok().as_deref());
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_target(false)
        .try_init();
}

/// `info` for everything, changed by the directives in `text`; ones that do not parse
/// are skipped.
fn log_filter(text: Option<&str>) -> EnvFilter {
    EnvFilter::builder()
        .with_default_directive(LevelFilter::INFO.into())
        .parse_lossy(text.unwrap_or_default())
}

/// `huatu serve`: runs until Ctrl-C or SIGTERM. Prints `listening on http://ADDR` to
/// stdout once it accepts connections.
pub fn run(args: ServeArgs) -> Result<(), ServerError> {
    init_logging();
    let config = ServerConfig::from_args(&args)?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(ServerError::Runtime)?;
    runtime.block_on(async move {
        let server = start(config).await?;
        {
            use std::io::Write;
            let mut stdout = std::io::stdout();
            writeln!(stdout, "listening on http://{}", server.address)
                .and_then(|()| stdout.flush())
                .map_err(ServerError::Stdout)?;
        }
        let stopper = server.stopper();
        tokio::spawn(async move {
            wait_for_signal().await;
            tracing::info!("stopping (a second signal is not needed; running jobs are re-queued)");
            let _ = stopper.send(true);
        });
        server.wait().await
    })
}

pub(crate) async fn wait_for_signal() {
    let interrupt = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut terminate =
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(terminate) => terminate,
                Err(_) => {
                    let _ = interrupt.await;
                    return;
                }
            };
        tokio::select! {
            _ = interrupt => {}
            _ = terminate.recv() => {}
        }
    }
    #[cfg(not(unix))]
    {
        let _ = interrupt.await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn huatu_log_takes_a_level_or_directives() {
        let most_verbose = |text: Option<&str>| log_filter(text).max_level_hint();
        assert_eq!(most_verbose(None), Some(LevelFilter::INFO));
        assert_eq!(most_verbose(Some("")), Some(LevelFilter::INFO));
        assert_eq!(most_verbose(Some("debug")), Some(LevelFilter::DEBUG));
        assert_eq!(most_verbose(Some("warn")), Some(LevelFilter::WARN));
        assert_eq!(most_verbose(Some("error")), Some(LevelFilter::ERROR));
        assert_eq!(
            most_verbose(Some("warn,huatu_server=trace")),
            Some(LevelFilter::TRACE)
        );
        let filter = log_filter(Some("warn,huatu_server=debug")).to_string();
        assert!(filter.contains("huatu_server=debug"), "{filter}");
    }
}
