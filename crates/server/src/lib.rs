//! huatu's service: an OpenAI-compatible HTTP API over a durable job queue (SQLite in
//! the data directory, or PostgreSQL shared by API nodes and workers on many machines),
//! one worker thread per device, live progress over Server-Sent Events, and the web page.
//! `app(state)` is the router (tests can call it without a socket); `start` runs a
//! server; `run` is `huatu serve`. Start-up and serving fail with a `ServerError` (its
//! causes chained as sources); requests fail with an `ApiError` answer.

// `x % n == 0` keeps building on Rust 1.80 (the README's minimum); `is_multiple_of` is 1.87.
#![allow(clippy::manual_is_multiple_of)]

pub mod agent_jobs;
pub mod blobs;
pub mod blocking;
pub mod config;
pub mod data_dir_lock;
pub mod error;
pub mod events;
pub mod http_serve;
pub mod job_queue;
pub mod job_runner;
pub mod job_services;
pub mod jobs;
pub mod lease_keeper;
pub mod leases;
pub mod limits;
pub mod metrics;
pub mod node;
pub mod png_codec;
pub mod queue_service;
pub mod redact;
pub mod retention;
pub mod routes;
pub mod security;
pub mod server;
pub mod state;
pub mod worker;
pub mod worker_node;

pub use config::{ServeArgs, ServerConfig};
pub use error::{ApiError, ServerError};
pub use routes::app;
pub use server::{run, start, RunningServer};
pub use state::AppState;
pub use worker_node::WorkerArgs;
