//! `huatu worker`: runs jobs from a shared PostgreSQL queue, no HTTP (crates/server).

pub use huatu_server::WorkerArgs;

pub fn run(args: WorkerArgs) -> anyhow::Result<()> {
    Ok(huatu_server::worker_node::run(args)?)
}
