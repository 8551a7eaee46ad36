//! What every handler can reach: settings, the queue, stored blobs, live events, metrics.

use std::sync::Arc;

use tokio::sync::watch;

use crate::config::ServerConfig;
use crate::worker::Shared;

#[derive(Clone)]
pub struct AppState {
    pub inner: Arc<Inner>,
}

pub struct Inner {
    pub config: ServerConfig,
    pub shared: Arc<Shared>,
    /// Whether a model is loaded (generation needs one).
    pub model_loaded: bool,
    /// The model's native size (width, height), the default `size`.
    pub native_size: (usize, usize),
    /// The optional models the workers hold (InstructPix2Pix, ControlNet, Real-ESRGAN).
    pub capabilities: crate::engine::Capabilities,
    /// The agent (intent model, scenes, lexicon), when an intent model was found.
    pub assistant: Option<Arc<crate::assistant::Assistant>>,
    /// Turns true when the server begins to stop: streams and waiting requests end.
    pub stopping: watch::Receiver<bool>,
    pub started_at: std::time::Instant,
}

impl std::ops::Deref for AppState {
    type Target = Inner;

    fn deref(&self) -> &Inner {
        &self.inner
    }
}
