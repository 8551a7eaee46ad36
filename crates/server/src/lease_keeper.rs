//! Leases on a shared queue: the book of leases this process's workers hold, and the
//! keeper thread that renews them every `interval` (a third of the lease), learns of
//! cancels accepted by any API node, and re-queues jobs of workers that stopped
//! renewing (any node does it; the statement is idempotent). A lease the keeper finds
//! lost — the job was re-queued and perhaps runs elsewhere — stops the local run at its
//! next step, and its outcome is then discarded by the queue. When the database cannot
//! be reached for longer than a lease, every held lease is taken as lost.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::job_queue::{LeaseState, WorkerIdentity};
use crate::job_services::JobServices;
use crate::jobs::{JobEvent, JobStatus};

/// Starts the keeper for `workers` (none on an API-only node: it still expires leases).
pub fn spawn(
    services: Arc<JobServices>,
    workers: Vec<WorkerIdentity>,
    interval: Duration,
    lease: Duration,
) -> std::io::Result<std::thread::JoinHandle<()>> {
    std::thread::Builder::new()
        .name("huatu-leases".into())
        .spawn(move || {
            let mut last_renewed = Instant::now();
            while !services.shutdown.load(Ordering::SeqCst) {
                let round = Instant::now();
                if renew(&services, &workers) {
                    last_renewed = round;
                } else if last_renewed.elapsed() > lease {
                    for held in services.leases.all() {
                        tracing::warn!(job = %held.job, "the queue has not answered for longer than a lease: giving the job up");
                        services.leases.mark_lost(&held.job);
                    }
                }
                expire(&services);
                while round.elapsed() < interval && !services.shutdown.load(Ordering::SeqCst) {
                    std::thread::sleep(Duration::from_millis(50).min(interval));
                }
            }
        })
}

/// One heartbeat per worker; false when the queue could not be reached.
fn renew(services: &JobServices, workers: &[WorkerIdentity]) -> bool {
    let mut reached = true;
    for worker in workers {
        let leases = services.leases.of_worker(&worker.name);
        match services.queue.heartbeat(worker, &leases) {
            Ok(states) => {
                for (lease, state) in leases.iter().zip(states) {
                    match state {
                        LeaseState::Held {
                            cancel_requested: true,
                        } => {
                            services.cancels.request(&lease.job);
                        }
                        LeaseState::Held { .. } => {}
                        LeaseState::Lost => {
                            tracing::warn!(job = %lease.job, worker = %lease.worker, "lease lost (the job was re-queued); stopping this run");
                            services.leases.mark_lost(&lease.job);
                        }
                    }
                }
            }
            Err(error) => {
                tracing::warn!(worker = %worker.name, "heartbeat failed: {error}");
                reached = false;
            }
        }
    }
    reached
}

/// Re-queues or fails jobs whose lease expired, and tells their listeners.
fn expire(services: &JobServices) {
    let expired = match services.queue.expire_leases() {
        Ok(expired) => expired,
        Err(error) => {
            tracing::warn!("cannot expire leases: {error}");
            return;
        }
    };
    for job in expired {
        services
            .metrics
            .lease_expiries
            .fetch_add(1, Ordering::Relaxed);
        tracing::warn!(job = %job.job, status = job.status.as_str(), "lease expired: its worker stopped answering");
        let event = match job.status {
            JobStatus::Failed => JobEvent::Failed {
                reason: job.error.unwrap_or_default(),
            },
            JobStatus::Cancelled => JobEvent::Cancelled,
            _ => JobEvent::Queued { position: 0 },
        };
        services.publish(&job.job, event);
        services.wakeup.notify();
    }
}
