//! `huatu serve`: the HTTP API, durable job queue and web page (crates/server).

pub use huatu_server::ServeArgs;

pub fn run(args: ServeArgs) -> anyhow::Result<()> {
    Ok(huatu_server::run(args)?)
}
