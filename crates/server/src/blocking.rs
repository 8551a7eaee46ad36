//! CPU work of requests (decoding uploads, parsing intents, reading blobs) on a bounded
//! pool: at most one task per core runs at once, the rest wait their turn on the async
//! side. tokio's blocking pool alone would start up to 512 threads under a burst of
//! uploads, each holding a decoded image.

use std::sync::{Arc, LazyLock};

use tokio::sync::Semaphore;
use tokio::task::JoinError;

static PERMITS: LazyLock<Arc<Semaphore>> = LazyLock::new(|| {
    let cores = std::thread::available_parallelism().map_or(2, std::num::NonZeroUsize::get);
    Arc::new(Semaphore::new(cores))
});

/// Runs `work` on tokio's blocking pool once a permit is free. The permit moves into the
/// task, so a request that goes away while it waits or runs frees it only when the work
/// ends: the bound holds for the threads, not only for the futures.
pub async fn spawn<F, T>(work: F) -> Result<T, JoinError>
where
    F: FnOnce() -> T + Send + 'static,
    T: Send + 'static,
{
    // The semaphore is never closed, so acquiring fails never; run unbounded if it did.
    let permit = PERMITS.clone().acquire_owned().await.ok();
    tokio::task::spawn_blocking(move || {
        let result = work();
        drop(permit);
        result
    })
    .await
}

/// Tasks that may run at once (the number of cores).
pub fn capacity() -> usize {
    std::thread::available_parallelism().map_or(2, std::num::NonZeroUsize::get)
}

/// Tasks running or waiting for a permit now is `capacity() - available()`.
pub fn available() -> usize {
    PERMITS.available_permits()
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;
    use std::time::Duration;

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn no_more_tasks_run_at_once_than_there_are_cores() {
        let running = Arc::new(AtomicUsize::new(0));
        let most = Arc::new(AtomicUsize::new(0));
        let tasks: Vec<_> = (0..super::capacity() * 4)
            .map(|_| {
                let (running, most) = (running.clone(), most.clone());
                tokio::spawn(super::spawn(move || {
                    let now = running.fetch_add(1, Ordering::SeqCst) + 1;
                    most.fetch_max(now, Ordering::SeqCst);
                    std::thread::sleep(Duration::from_millis(20));
                    running.fetch_sub(1, Ordering::SeqCst);
                }))
            })
            .collect();
        for task in tasks {
            assert!(matches!(task.await, Ok(Ok(()))));
        }
        let most = most.load(Ordering::SeqCst);
        assert!(most >= 1 && most <= super::capacity(), "{most} at once");
    }
}
