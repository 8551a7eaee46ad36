//! Job events between nodes over PostgreSQL's LISTEN/NOTIFY: a worker's events (running,
//! steps, the outcome) are sent on one channel in order through one connection, and
//! every API node listens and feeds them into its own `EventHub`, so an SSE client of
//! any node follows a job on any worker. Notifications are not stored: a node that was
//! disconnected misses some, and its streams read the job's row (the source of truth)
//! when they resume (see `routes/jobs.rs`).

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use futures_util::StreamExt;
use serde::{Deserialize, Serialize};
use tokio::sync::mpsc;
use tokio_postgres::{AsyncMessage, Client, Config};
use tokio_postgres_rustls::MakeRustlsConnect;

use crate::events::EventHub;
use crate::job_queue::store::QueueError;
use crate::jobs::JobEvent;

/// The NOTIFY channel of job events.
pub const EVENTS_CHANNEL: &str = "huatu_job_events";

/// NOTIFY payloads must stay under 8000 bytes; a longer failure reason is cut (the
/// job's row keeps all of it).
const MAX_REASON: usize = 2000;

#[derive(Serialize, Deserialize)]
struct Envelope {
    job: String,
    event: JobEvent,
}

pub struct EventBus {
    outbox: mpsc::UnboundedSender<String>,
    handle: tokio::runtime::Handle,
    config: Config,
    tls: MakeRustlsConnect,
    listening: Arc<AtomicBool>,
}

impl EventBus {
    /// Starts the sender on `handle`'s runtime.
    pub fn start(handle: &tokio::runtime::Handle, config: Config, tls: MakeRustlsConnect) -> Self {
        let (outbox, queued) = mpsc::unbounded_channel();
        handle.spawn(send_in_order(config.clone(), tls.clone(), queued));
        Self {
            outbox,
            handle: handle.clone(),
            config,
            tls,
            listening: Arc::new(AtomicBool::new(false)),
        }
    }

    /// Sends `event` of job `id` to every listening node (this one included).
    pub fn send(&self, id: &str, event: &JobEvent) {
        let event = match event {
            JobEvent::Failed { reason } if reason.len() > MAX_REASON => {
                let mut end = MAX_REASON;
                while !reason.is_char_boundary(end) {
                    end -= 1;
                }
                JobEvent::Failed {
                    reason: format!("{}…", &reason[..end]),
                }
            }
            event => event.clone(),
        };
        let envelope = Envelope {
            job: id.to_string(),
            event,
        };
        if let Ok(payload) = serde_json::to_string(&envelope) {
            let _ = self.outbox.send(payload);
        }
    }

    /// Feeds every node's events into `hub` from now on (reconnecting when the
    /// connection breaks).
    pub fn listen(&self, hub: Arc<EventHub>) {
        let config = self.config.clone();
        let tls = self.tls.clone();
        let listening = self.listening.clone();
        self.handle.spawn(async move {
            loop {
                if let Err(error) = listen_once(&config, &tls, &hub, &listening).await {
                    tracing::warn!("job events: listening failed, reconnecting: {error}");
                }
                listening.store(false, Ordering::SeqCst);
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
        });
    }

    /// Whether the listening connection is up (`/healthz`).
    pub fn is_listening(&self) -> bool {
        self.listening.load(Ordering::SeqCst)
    }
}

async fn send_in_order(
    config: Config,
    tls: MakeRustlsConnect,
    mut queued: mpsc::UnboundedReceiver<String>,
) {
    let mut client: Option<Client> = None;
    while let Some(payload) = queued.recv().await {
        for _attempt in 0..2 {
            if client.as_ref().is_none_or(Client::is_closed) {
                client = super::pool::connect(&config, &tls).await.ok();
            }
            let Some(connected) = &client else {
                tokio::time::sleep(Duration::from_millis(200)).await;
                continue;
            };
            match connected
                .execute("SELECT pg_notify($1, $2)", &[&EVENTS_CHANNEL, &payload])
                .await
            {
                Ok(_) => break,
                Err(error) => {
                    tracing::warn!("job events: cannot notify: {error}");
                    client = None;
                }
            }
        }
    }
}

async fn listen_once(
    config: &Config,
    tls: &MakeRustlsConnect,
    hub: &Arc<EventHub>,
    listening: &AtomicBool,
) -> Result<(), QueueError> {
    let (client, mut connection) = config.connect(tls.clone()).await?;
    let (received, mut payloads) = mpsc::unbounded_channel();
    let reader = tokio::spawn(async move {
        let mut messages = futures_util::stream::poll_fn(move |cx| connection.poll_message(cx));
        while let Some(message) = messages.next().await {
            match message {
                Ok(AsyncMessage::Notification(notification)) => {
                    let _ = received.send(notification.payload().to_string());
                }
                Ok(_) => {}
                Err(error) => {
                    tracing::warn!("job events: connection lost: {error}");
                    break;
                }
            }
        }
    });
    client
        .batch_execute(&format!("LISTEN {EVENTS_CHANNEL}"))
        .await?;
    listening.store(true, Ordering::SeqCst);
    while let Some(payload) = payloads.recv().await {
        match serde_json::from_str::<Envelope>(&payload) {
            Ok(Envelope { job, event }) => hub.publish(&job, event),
            Err(error) => tracing::warn!("job events: unreadable notification: {error}"),
        }
    }
    drop(client);
    let _ = reader.await;
    Ok(())
}
