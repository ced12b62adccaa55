//! The bk worker: runs next to one database node, holds that node's storage credentials and the
//! repositories', and does all of that node's data IO for the coordinator's tasks.
//!
//! # Layout
//! - [`hub`]: register, heartbeat, pull tasks, report progress and results.
//! - [`tasks`]: what each task does (copy prefixes, catalog, licence, commit, cleanup).
//! - [`questdb`]: QuestDB's checkpoint over its PostgreSQL wire endpoint.
//! - [`repository`]: the repository format (chunks, segments, manifests, staging).
//! - [`store`]: opening object stores from URLs.
//! - [`throttle`]: the worker-wide bytes-per-second cap.
//! - [`config`]: the versioned TOML config.
//!
//! [`run`] is the entry point; it takes a shutdown token so tests and `bkctl demo` can run
//! workers inside their own process.

pub mod config;
pub mod error;
pub mod hub;
pub mod questdb;
pub mod repository;
pub mod store;
pub mod tasks;
pub mod throttle;

use std::sync::Arc;

use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

pub use config::WorkerConfig;

/// Runs a worker until `shutdown` is cancelled: registers, then heartbeats and runs tasks.
///
/// # Errors
/// When the config's coordinator endpoints do not parse.
pub async fn run(
    config: WorkerConfig,
    env: Vec<(String, String)>,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    let parallel_tasks = config.max_parallel_tasks;
    let hub = Arc::new(hub::Hub::new(config, env)?);
    if !hub.register(&shutdown).await {
        return Ok(());
    }
    let mut loops = JoinSet::new();
    loops.spawn(hub.clone().heartbeat_loop(shutdown.clone()));
    for _ in 0..parallel_tasks {
        loops.spawn(hub.clone().task_loop(shutdown.clone()));
    }
    while loops.join_next().await.is_some() {}
    tracing::info!("worker stopped");
    Ok(())
}
