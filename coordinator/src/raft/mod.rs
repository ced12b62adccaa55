//! Replication of the [`ClusterState`](crate::core::ClusterState) with openraft.
//!
//! # Layout
//! - [`log_store`]: the Raft log, vote and commit index in a redb file (fsync on every commit).
//! - [`state_machine`]: applies committed [`Command`]s to the shared state; snapshots it to redb.
//! - [`network`]: the client side of replica-to-replica RPCs (one lazy tonic channel per peer).
//! - [`service`]: the server side, the `bk.v1.Raft` gRPC service.
//! - [`types`]: the Raft type configuration and the limits every part shares.

// openraft's `StorageError` is what its storage traits return; its size is not ours to change.
#![allow(clippy::result_large_err)]

pub mod log_store;
pub mod network;
pub mod service;
pub mod state_machine;
pub mod types;

use std::path::Path;
use std::sync::Arc;

use crate::shared::SharedState;
use anyhow::Context;
pub use types::{Raft, ReplicaId, SnapshotData, TypeConfig, MAX_RAFT_MESSAGE_BYTES};

/// redb's page cache for the log and the snapshot. Its default (1 GiB) fills with log pages a
/// replica has already applied: at a thousand workers that was most of a replica's memory. Reads
/// of the log are sequential and recent, so a small cache serves them.
const REDB_CACHE_BYTES: usize = 16 << 20;
/// Opens the replica's storage under `data_dir` and starts its Raft instance.
///
/// # Errors
/// Fails when the storage cannot be opened (another process holds it, or it is corrupt) or the
/// Raft config is invalid.
pub async fn start_raft(
    replica_id: ReplicaId,
    data_dir: &Path,
    raft_config: openraft::Config,
    shared: Arc<SharedState>,
    peer_tls: Option<tonic::transport::ClientTlsConfig>,
) -> anyhow::Result<Raft> {
    std::fs::create_dir_all(data_dir)
        .with_context(|| format!("failed to create data dir `{}`", data_dir.display()))?;
    let db_path = data_dir.join("raft.redb");
    let database = redb::Builder::new()
        .set_cache_size(REDB_CACHE_BYTES)
        .create(&db_path)
        .with_context(|| {
            format!(
                "failed to open `{}` (is another coordinator using this data dir?)",
                db_path.display()
            )
        })?;
    let database = Arc::new(database);
    let log_store = log_store::LogStore::open(database.clone())?;
    let state_machine = state_machine::StateMachineStore::open(database, shared)?;
    let config = Arc::new(raft_config.validate().context("invalid raft configuration")?);
    let network = network::NetworkFactory::new(peer_tls);
    let raft = Raft::new(replica_id, config, network, log_store, state_machine)
        .await
        .context("failed to start raft")?;
    Ok(raft)
}

#[cfg(test)]
#[path = "storage_test.rs"]
mod storage_test;
