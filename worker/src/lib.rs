//! The bk worker: runs next to one database node, holds that node's storage credentials and the
//! repositories', and does all of that node's data IO for the coordinator's tasks.
//!
//! # Layout
//! - [`conversation`]: register, heartbeat, pull tasks, report progress and results.
//! - [`runtime`]: what the worker's tasks share, and making a task's context (stores, repository).
//! - [`tasks`]: what each task does (copy prefixes, catalog, licence, commit, cleanup).
//! - [`questdb`]: QuestDB's checkpoint over its PostgreSQL wire endpoint.
//! - [`snapshot`]: filesystem and volume snapshots a backup copies from (`[snapshot]`).
//! - [`drill`]: restore drills (restore into scratch, offline checks, start the database).
//! - [`repository`]: the repository format (chunks, segments, manifests, staging).
//! - [`store`]: opening object stores from URLs.
//! - [`throttle`]: the worker-wide bytes-per-second cap.
//! - [`config`]: the versioned TOML config.
//!
//! [`run`] is the entry point; it takes a shutdown token so tests and `bkctl demo` can run
//! workers inside their own process.

pub mod config;
pub mod conversation;
pub mod credentials;
pub mod drill;
pub mod error;
pub mod formats;
pub mod local_list;
pub mod local_store;
pub mod metrics;
pub mod questdb;
pub mod repository;
pub mod retries;
pub mod runtime;
pub mod snapshot;
pub mod store;
pub mod tasks;
pub mod throttle;

use std::sync::Arc;

use anyhow::Context;

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
    drill::wipe_leftovers(&config).map_err(anyhow::Error::msg)?;
    let conversation = Arc::new(conversation::Conversation::new(config, env)?);
    let mut loops = JoinSet::new();
    if let Some(address) = conversation.config().metrics_listen {
        let listener = tokio::net::TcpListener::bind(address)
            .await
            .with_context(|| format!("cannot listen for metrics on {address} (metrics_listen)"))?;
        let limits = Arc::new(metrics::Limits {
            worker_id: conversation.config().worker_id(),
            max_concurrent_objects: conversation.config().max_concurrent_objects,
            max_bytes_per_second: conversation.config().max_bytes_per_second.unwrap_or(0),
        });
        let (metrics, shutdown) = (conversation.metrics.clone(), shutdown.clone());
        loops.spawn(async move {
            if let Err(error) = metrics::serve(listener, metrics, limits, shutdown).await {
                tracing::error!(%error, "metrics server stopped");
            }
        });
    }
    if !conversation.register(&shutdown).await {
        shutdown.cancel();
        while loops.join_next().await.is_some() {}
        return Ok(());
    }
    loops.spawn(conversation.clone().heartbeat_loop(shutdown.clone()));
    for _ in 0..parallel_tasks {
        loops.spawn(conversation.clone().task_loop(shutdown.clone()));
    }
    while loops.join_next().await.is_some() {}
    tracing::info!("worker stopped");
    Ok(())
}
