//! The PostgreSQL driver's side: a small tokio runtime of its own and a few connections
//! (each reconnected on its next use when it broke), and `run`, which runs one async
//! database call there and waits for it from any thread, async handlers included (their
//! SQLite calls block the same way).

use std::future::Future;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use tokio::sync::{Mutex, OwnedMutexGuard};
use tokio_postgres::{Client, Config};
use tokio_postgres_rustls::MakeRustlsConnect;

use crate::job_queue::store::QueueError;

/// Connections per process: a worker's heartbeat, its claim and a few handlers at once.
const CONNECTIONS: usize = 4;

pub struct Pool {
    config: Config,
    tls: MakeRustlsConnect,
    slots: Vec<Arc<Mutex<Option<Client>>>>,
    next: AtomicUsize,
}

/// One connection, held exclusively until dropped.
pub struct Connection(OwnedMutexGuard<Option<Client>>);

impl Connection {
    pub fn client(&mut self) -> &mut Client {
        // `Pool::get` only hands out a slot that holds a client.
        self.0
            .as_mut()
            .unwrap_or_else(|| unreachable!("a pool slot without a client"))
    }
}

impl Pool {
    pub fn new(config: Config, tls: MakeRustlsConnect) -> Self {
        Self {
            config,
            tls,
            slots: (0..CONNECTIONS)
                .map(|_| Arc::new(Mutex::new(None)))
                .collect(),
            next: AtomicUsize::new(0),
        }
    }

    pub fn config(&self) -> &Config {
        &self.config
    }

    pub fn tls(&self) -> &MakeRustlsConnect {
        &self.tls
    }

    /// A free connection if one is, else the next in turn once it is free; (re)connects.
    pub async fn get(&self) -> Result<Connection, QueueError> {
        let free = self
            .slots
            .iter()
            .find_map(|slot| slot.clone().try_lock_owned().ok());
        let mut guard = match free {
            Some(guard) => guard,
            None => {
                let index = self.next.fetch_add(1, Ordering::Relaxed) % self.slots.len();
                self.slots[index].clone().lock_owned().await
            }
        };
        if guard.as_ref().is_none_or(Client::is_closed) {
            *guard = Some(connect(&self.config, &self.tls).await?);
        }
        Ok(Connection(guard))
    }
}

/// A new connection (TLS as the URL's `sslmode` says), its I/O driven by a task on the
/// current runtime.
pub async fn connect(config: &Config, tls: &MakeRustlsConnect) -> Result<Client, QueueError> {
    let (client, connection) = config.connect(tls.clone()).await?;
    tokio::spawn(async move {
        if let Err(error) = connection.await {
            tracing::warn!("PostgreSQL connection closed: {error}");
        }
    });
    Ok(client)
}

/// The runtime the driver runs on; shut down in the background when dropped (dropping
/// it in an async context would otherwise panic).
pub struct Driver {
    runtime: Option<tokio::runtime::Runtime>,
}

impl Driver {
    pub fn new() -> std::io::Result<Self> {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("huatu-postgres")
            .enable_all()
            .build()?;
        Ok(Self {
            runtime: Some(runtime),
        })
    }

    pub fn handle(&self) -> tokio::runtime::Handle {
        match &self.runtime {
            Some(runtime) => runtime.handle().clone(),
            None => unreachable!("the runtime is only taken at drop"),
        }
    }

    /// Runs `task` on the driver's runtime and waits for its result.
    pub fn run<T, F>(&self, task: F) -> Result<T, QueueError>
    where
        T: Send + 'static,
        F: Future<Output = Result<T, QueueError>> + Send + 'static,
    {
        let (sender, receiver) = std::sync::mpsc::sync_channel(1);
        self.handle().spawn(async move {
            let _ = sender.send(task.await);
        });
        receiver.recv().map_err(|_| QueueError::Stopped)?
    }
}

impl Drop for Driver {
    fn drop(&mut self) {
        if let Some(runtime) = self.runtime.take() {
            runtime.shutdown_background();
        }
    }
}
