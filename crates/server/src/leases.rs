//! The leases this process's workers hold on their jobs, and which of them the lease
//! keeper found lost (the run is then to stop and its outcome is discarded).

use std::collections::{HashMap, HashSet};
use std::sync::{Mutex, MutexGuard};

use crate::job_queue::Lease;

#[derive(Default)]
pub struct LeaseBook {
    state: Mutex<BookState>,
}

#[derive(Default)]
struct BookState {
    held: HashMap<String, Lease>,
    lost: HashSet<String>,
}

impl LeaseBook {
    fn lock(&self) -> MutexGuard<'_, BookState> {
        // Single map operations: a panic cannot leave them half-done.
        self.state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    pub fn hold(&self, lease: Lease) {
        let mut state = self.lock();
        state.lost.remove(&lease.job);
        state.held.insert(lease.job.clone(), lease);
    }

    pub fn release(&self, job: &str) {
        let mut state = self.lock();
        state.held.remove(job);
        state.lost.remove(job);
    }

    pub fn get(&self, job: &str) -> Option<Lease> {
        self.lock().held.get(job).cloned()
    }

    /// Whether the lease on `job` was found lost (the run is to stop).
    pub fn is_lost(&self, job: &str) -> bool {
        self.lock().lost.contains(job)
    }

    pub fn mark_lost(&self, job: &str) {
        let mut state = self.lock();
        if state.held.contains_key(job) {
            state.lost.insert(job.to_string());
        }
    }

    pub fn of_worker(&self, worker: &str) -> Vec<Lease> {
        self.lock()
            .held
            .values()
            .filter(|lease| lease.worker == worker)
            .cloned()
            .collect()
    }

    pub fn all(&self) -> Vec<Lease> {
        self.lock().held.values().cloned().collect()
    }
}
