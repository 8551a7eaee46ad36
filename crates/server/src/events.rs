//! Live job events, fanned out to every listener (SSE streams, synchronous requests).
//! One broadcast channel per job that someone listens to; the last progress of running
//! jobs is kept so that a late listener starts from where the job is.

use std::collections::HashMap;
use std::sync::{Mutex, MutexGuard};

use tokio::sync::broadcast;

use crate::jobs::JobEvent;

const CHANNEL_CAPACITY: usize = 256;

#[derive(Default)]
pub struct EventHub {
    channels: Mutex<HashMap<String, broadcast::Sender<JobEvent>>>,
    progress: Mutex<HashMap<String, (usize, usize)>>,
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

impl EventHub {
    /// Listens to a job's future events. Subscribe before reading the job's state so that
    /// nothing falls between the two.
    pub fn subscribe(&self, id: &str) -> broadcast::Receiver<JobEvent> {
        let mut channels = lock(&self.channels);
        channels
            .entry(id.to_string())
            .or_insert_with(|| broadcast::channel(CHANNEL_CAPACITY).0)
            .subscribe()
    }

    pub fn publish(&self, id: &str, event: JobEvent) {
        match &event {
            JobEvent::Step { step, total } => {
                lock(&self.progress).insert(id.to_string(), (*step, *total));
            }
            event if event.is_terminal() => {
                lock(&self.progress).remove(id);
            }
            _ => {}
        }
        let mut channels = lock(&self.channels);
        let terminal = event.is_terminal();
        if let Some(sender) = channels.get(id) {
            // No receivers left is not an error: nobody is listening.
            let _ = sender.send(event);
        }
        if terminal {
            // Receivers still get the buffered final event, then `Closed`.
            channels.remove(id);
        }
    }

    /// (step, total) of a running job.
    pub fn progress(&self, id: &str) -> Option<(usize, usize)> {
        lock(&self.progress).get(id).copied()
    }

    /// Drops channels nobody listens to any more.
    pub fn prune(&self) {
        lock(&self.channels).retain(|_, sender| sender.receiver_count() > 0);
    }
}
