//! End-to-end tests of the service against real servers on 127.0.0.1 with the tiny SDXL
//! fixture: every endpoint, bad inputs of each kind, auth, CORS, cancel, a full queue,
//! edits, and restarts (graceful, and killed mid-queue) over the same data directory.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod api;
mod cancel_races;
mod common;
mod durability;
mod edits_agent;
mod guards;
mod inputs;
mod limits;
mod postgres_nodes;
mod postgres_queue;
mod queue;
mod restart;
mod s3_store;
mod soak;
