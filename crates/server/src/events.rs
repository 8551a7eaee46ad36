//! Live job events, fanned out to every listener (SSE streams, synchronous requests).
//! One broadcast channel per job that someone listens to; the last progress of running
//! jobs is kept so that a late listener starts from where the job is.
//!
//! A channel lives exactly as long as someone listens or the job has not ended: a
//! [`Subscription`] removes its channel when it is the last one dropped, so a subscribe
//! on an unknown job, a refused (429) submit or a client that goes away leaves nothing
//! behind (`huatu_event_channels` in `/metrics` shows the count).

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};

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

/// A listener of one job's events; dropping the last one for a job removes its channel.
pub struct Subscription {
    hub: Arc<EventHub>,
    id: String,
    /// Always `Some` until drop (taken there so the receiver goes before the count check).
    receiver: Option<broadcast::Receiver<JobEvent>>,
}

impl Subscription {
    /// The next event; `Closed` after the terminal event, `Lagged` after a gap.
    pub async fn recv(&mut self) -> Result<JobEvent, broadcast::error::RecvError> {
        match self.receiver.as_mut() {
            Some(receiver) => receiver.recv().await,
            None => Err(broadcast::error::RecvError::Closed),
        }
    }

    /// Whether the job's channel has closed (its terminal event was sent).
    pub fn is_closed(&self) -> bool {
        match &self.receiver {
            Some(receiver) => receiver.is_closed(),
            None => true,
        }
    }
}

impl Drop for Subscription {
    fn drop(&mut self) {
        drop(self.receiver.take());
        self.hub.release(&self.id);
    }
}

impl EventHub {
    /// Listens to a job's future events. Subscribe before reading the job's state so that
    /// nothing falls between the two.
    pub fn subscribe(self: &Arc<Self>, id: &str) -> Subscription {
        let mut channels = lock(&self.channels);
        let receiver = channels
            .entry(id.to_string())
            .or_insert_with(|| broadcast::channel(CHANNEL_CAPACITY).0)
            .subscribe();
        Subscription {
            hub: self.clone(),
            id: id.to_string(),
            receiver: Some(receiver),
        }
    }

    /// Removes the job's channel if nobody listens to it any more.
    fn release(&self, id: &str) {
        let mut channels = lock(&self.channels);
        if channels
            .get(id)
            .is_some_and(|sender| sender.receiver_count() == 0)
        {
            channels.remove(id);
        }
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

    /// Channels open now (one per job someone listens to).
    pub fn channels(&self) -> usize {
        lock(&self.channels).len()
    }

    /// Running jobs whose progress is kept.
    pub fn tracked_progress(&self) -> usize {
        lock(&self.progress).len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_last_subscription_dropped_removes_the_channel() {
        let hub = Arc::new(EventHub::default());
        let first = hub.subscribe("job_a");
        let second = hub.subscribe("job_a");
        assert_eq!(hub.channels(), 1);
        drop(first);
        assert_eq!(hub.channels(), 1, "one listener is left");
        drop(second);
        assert_eq!(hub.channels(), 0);
    }

    #[tokio::test]
    async fn a_terminal_event_still_reaches_a_listener_after_the_channel_is_gone() {
        let hub = Arc::new(EventHub::default());
        let mut listener = hub.subscribe("job_b");
        hub.publish("job_b", JobEvent::Cancelled);
        assert_eq!(hub.channels(), 0);
        assert!(matches!(listener.recv().await, Ok(JobEvent::Cancelled)));
        assert!(listener.recv().await.is_err());
        // A late resubscription after the end is removed again when dropped.
        drop(hub.subscribe("job_b"));
        drop(listener);
        assert_eq!(hub.channels(), 0);
    }
}
