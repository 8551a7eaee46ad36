//! What every handler can reach: settings, the queue, stored blobs, live events, metrics,
//! and whether the worker threads are still alive.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use tokio::sync::watch;

use crate::config::ServerConfig;
use crate::job_services::JobServices;
use crate::security::HostPolicy;

#[derive(Clone)]
pub struct AppState {
    pub context: Arc<HandlerContext>,
}

pub struct HandlerContext {
    pub config: ServerConfig,
    pub services: Arc<JobServices>,
    /// Whether a model is loaded (generation needs one).
    pub model_loaded: bool,
    /// The model's native size (width, height), the default `size`.
    pub native_size: (usize, usize),
    /// The optional models the workers hold (InstructPix2Pix, ControlNet, Real-ESRGAN).
    pub capabilities: crate::job_runner::Capabilities,
    /// The agent (intent model, scenes, lexicon), when an intent model was found.
    pub agent_planner: Option<Arc<crate::agent_jobs::AgentPlanner>>,
    /// Turns true when the server begins to stop: streams and waiting requests end.
    pub stopping: watch::Receiver<bool>,
    pub started_at: std::time::Instant,
    /// The Host names answered without an API key (DNS-rebinding guard).
    pub hosts: HostPolicy,
    /// Worker threads started and still alive (`/healthz` is 503 when one died).
    pub workers: Arc<WorkerHealth>,
    /// Open HTTP connections (the accept loop counts them).
    pub connections: Arc<crate::http_serve::Connections>,
}

impl std::ops::Deref for AppState {
    type Target = HandlerContext;

    fn deref(&self) -> &HandlerContext {
        &self.context
    }
}

/// Counts live worker threads: each holds a [`WorkerAlive`] for its whole life, which
/// is dropped when the thread returns or unwinds from a panic.
#[derive(Debug, Default)]
pub struct WorkerHealth {
    started: AtomicUsize,
    alive: AtomicUsize,
}

impl WorkerHealth {
    /// Called on the worker thread itself, first thing.
    pub fn enter(self: &Arc<Self>) -> WorkerAlive {
        self.started.fetch_add(1, Ordering::SeqCst);
        self.alive.fetch_add(1, Ordering::SeqCst);
        WorkerAlive(self.clone())
    }

    pub fn started(&self) -> usize {
        self.started.load(Ordering::SeqCst)
    }

    pub fn alive(&self) -> usize {
        self.alive.load(Ordering::SeqCst)
    }
}

/// One worker thread's life; dropping it marks the thread gone.
pub struct WorkerAlive(Arc<WorkerHealth>);

impl Drop for WorkerAlive {
    fn drop(&mut self) {
        self.0.alive.fetch_sub(1, Ordering::SeqCst);
    }
}
