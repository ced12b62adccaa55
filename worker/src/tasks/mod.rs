//! Running one task: what each [`TaskKind`] does with the node's store and the repository.
//!
//! # Layout
//! - [`copy`]: copying listed objects into the repository with bounded concurrency, reusing
//!   entries of earlier attempts (shared by every copy task).
//! - [`influxdb3`]: the InfluxDB 3 copy tasks (prefixes, catalog detection, licence files).
//! - [`consistency`]: a node's consistency check and repair after its copies.
//! - [`commit`]: merging accepted results into segments and writing the manifest.
//! - [`cleanup`]: removing a job's staging area.
//! - [`prune`]: forgetting backups, dropping and repacking packs.
//! - [`keys`]: adding, listing and removing the repository's passphrases.
//! - [`verify`]: checking a backup object by object (existence, or re-hashing).
//! - [`restore`]: restore guards, the wipe, and writing objects back with hash checks.

pub mod check;
pub mod cleanup;
pub mod commit;
pub mod consistency;
pub mod copy;
pub mod influxdb3;
pub mod keys;
pub mod prune;
pub mod purged;
pub mod restore;
pub mod verify;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use bk_proto::model::{TaskKind, TaskReport, TaskSpec};
use object_store::ObjectStore;
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;

use crate::error::TaskError;
use crate::repository::counting::RequestCounts;
use crate::repository::open::{Repository, RepositoryCache};
use crate::repository::packer::Packer;
use crate::repository::writer::BlobWriter;

/// Counters a running task updates and the progress reporter reads.
#[derive(Debug, Default)]
pub struct ProgressCounters {
    /// Objects done (copied or reused).
    pub objects_done: AtomicU64,
    /// Bytes of those objects.
    pub bytes_done: AtomicU64,
    /// Objects listed so far.
    pub objects_total: AtomicU64,
    /// Bytes of those.
    pub bytes_total: AtomicU64,
}

impl ProgressCounters {
    /// Counts a listed object.
    pub fn listed(&self, size: u64) {
        self.objects_total.fetch_add(1, Ordering::Relaxed);
        self.bytes_total.fetch_add(size, Ordering::Relaxed);
    }

    /// Counts a finished object.
    pub fn done(&self, size: u64) {
        self.objects_done.fetch_add(1, Ordering::Relaxed);
        self.bytes_done.fetch_add(size, Ordering::Relaxed);
    }
}

/// Everything a task needs.
pub struct TaskContext {
    /// The task.
    pub spec: TaskSpec,
    /// Its attempt.
    pub attempt: u32,
    /// The node's store.
    pub source: Arc<dyn ObjectStore>,
    /// The repository, open (its key unlocked).
    pub repository: Repository,
    /// The worker's repository cache (the index).
    pub repositories: Arc<RepositoryCache>,
    /// The worker's packer for this repository, shared with its other tasks.
    pub packer: Arc<Packer>,
    /// Requests this task made to the repository.
    pub requests: Arc<RequestCounts>,
    /// Progress counters.
    pub progress: Arc<ProgressCounters>,
    /// Worker-wide bound on objects being read (memory: permits × 2 chunks, plus packs).
    pub object_permits: Arc<Semaphore>,
    /// How many objects one task keeps in flight (at most the worker-wide bound).
    pub max_objects_in_flight: usize,
    /// Worker-wide bound on blobs being sealed at once (the cores).
    pub cpu: Arc<Semaphore>,
    /// Worker-wide budget of bytes in chunk buffers (reads, sealed copies, restored ranges).
    pub memory: crate::repository::buffers::ChunkMemory,
    /// The worker-wide bytes-per-second cap.
    pub throttle: Arc<crate::throttle::Throttle>,
    /// Cancelled when the coordinator takes the task back or the worker stops.
    pub cancel: CancellationToken,
    /// The node's store URL (restores compare targets with it).
    pub store_url: String,
    /// The node's store options, used to open restore targets.
    pub store_options: std::collections::BTreeMap<String, String>,
    /// The process environment (standard object-store variables).
    pub env: Vec<(String, String)>,
    /// How cloud-store requests are retried.
    pub retry: crate::store::RetrySettings,
    /// How to talk to a QuestDB server next to this worker.
    pub questdb: crate::config::QuestDbConfig,
    /// Whether copies check the databases' formats ([`crate::formats`]); off only to measure
    /// what the checks cost (`BK_SKIP_FORMAT_CHECKS=1`, for benchmarks).
    pub check_formats: bool,
    /// The worker's config (passphrases for key tasks, Argon2id cost).
    pub config: Arc<crate::config::WorkerConfig>,
}

impl TaskContext {
    /// What writing blobs of index partition `partition` needs, with the partition's index as
    /// of now.
    ///
    /// # Errors
    /// When the index cannot be brought up to date.
    pub async fn blob_writer(&self, partition: &str) -> Result<BlobWriter, TaskError> {
        Ok(BlobWriter {
            key: self.repository.key.clone(),
            config: self.repository.config.clone(),
            index: self.repositories.index(&self.repository, &[partition.to_string()]).await?,
            packer: self.packer.clone(),
            cpu: self.cpu.clone(),
            throttle: self.throttle.clone(),
            requests: self.requests.clone(),
            memory: self.memory.clone(),
        })
    }
}

/// Runs a task to completion. What it wrote to a local (`file://`) repository or restore target
/// is on disk before it returns: its success is what makes the coordinator commit a backup or
/// report a restore done.
///
/// # Errors
/// The task's [`TaskError`]; [`TaskError::is_retryable`] says whether another attempt may help.
pub async fn run_task(context: &TaskContext) -> Result<TaskReport, TaskError> {
    let mut report = run_kind(context).await?;
    let mut written = vec![context.spec.repository.url.clone()];
    written.extend(target_url(&context.spec.kind).map(str::to_string));
    tokio::task::spawn_blocking(move || {
        written.iter().try_for_each(|url| crate::store::sync_local_store(url))
    })
    .await
    .map_err(|error| TaskError::Retryable(format!("syncing to disk was interrupted: {error}")))?
    .map_err(|error| TaskError::Retryable(error.to_string()))?;
    if context.spec.kind.uses_repository() {
        report.repository_config = Some(context.repository.config.config_id.clone());
    }
    report.transfer.repository_puts = context.requests.puts.load(Ordering::Relaxed);
    Ok(report)
}

/// The restore target a task writes to, if any.
fn target_url(kind: &TaskKind) -> Option<&str> {
    match kind {
        TaskKind::RestoreObjects { target_url, .. }
        | TaskKind::WipeTarget { target_url, .. }
        | TaskKind::QuestDbRestoreTrigger { target_url } => Some(target_url),
        _ => None,
    }
}

async fn run_kind(context: &TaskContext) -> Result<TaskReport, TaskError> {
    match &context.spec.kind {
        TaskKind::CopyPrefix { phase, node, prefix, exclude } => {
            influxdb3::copy_prefix(context, *phase, node, prefix, exclude).await
        }
        TaskKind::CopyCatalog { catalog_prefix, phase } => {
            influxdb3::copy_catalog(context, catalog_prefix, *phase).await
        }
        TaskKind::CopyLicence { cluster_prefix, phase } => {
            influxdb3::copy_licence(context, cluster_prefix, *phase).await
        }
        TaskKind::CommitBackup { backup_id, created_at_ms, parts } => {
            commit::commit_backup(context, *backup_id, *created_at_ms, parts).await
        }
        TaskKind::RemoveStaging => cleanup::remove_staging(context).await,
        TaskKind::ForgetBackups { backups, dry_run, .. } => {
            prune::forget_backups(context, backups, *dry_run).await
        }
        TaskKind::SweepPacks { forgotten, dry_run, max_unused_percent } => {
            prune::sweep_packs(context, forgotten, *dry_run, *max_unused_percent).await
        }
        TaskKind::RepositoryKey { action } => keys::run(context, action).await,
        TaskKind::CheckRepository { read_data_percent } => {
            check::check_repository(context, *read_data_percent).await
        }
        TaskKind::TakeSnapshot { node } => crate::snapshot::task::take(context, node).await,
        TaskKind::DeleteSnapshot { node } => crate::snapshot::task::delete(context, node).await,
        TaskKind::QuestDbPrepare { pg_addr, adopt_checkpoint } => {
            crate::questdb::checkpoint::prepare(context, pg_addr, *adopt_checkpoint).await
        }
        TaskKind::QuestDbRelease { pg_addr } => {
            crate::questdb::checkpoint::release(context, pg_addr).await
        }
        TaskKind::QuestDbRestoreTrigger { target_url } => {
            restore::write_restore_trigger(context, target_url).await
        }
        TaskKind::CheckNodeConsistency { node, phase, parts, max_rounds } => {
            consistency::check_node_consistency(context, node, *phase, parts, *max_rounds).await
        }
        TaskKind::VerifyBackup { backup_id, deep } => {
            verify::verify_backup(context, *backup_id, *deep).await
        }
        TaskKind::CheckRestoreTarget {
            node,
            target_url,
            prefixes,
            http_endpoint,
            allow_existing,
        } => {
            restore::check_restore_target(
                context,
                node,
                target_url,
                prefixes,
                http_endpoint.as_deref(),
                *allow_existing,
            )
            .await
        }
        TaskKind::WipeTarget { target_url, prefixes } => {
            restore::wipe_target(context, target_url, prefixes).await
        }
        TaskKind::RestoreObjects { backup_id, target_url, phase, node } => {
            restore::restore_objects(context, *backup_id, target_url, *phase, node.as_deref()).await
        }
        TaskKind::DrillBackup { backup_id, database } => {
            crate::drill::drill_backup(context, *backup_id, database).await
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn test_the_restore_target_of_a_task() {
        assert_eq!(
            target_url(&TaskKind::WipeTarget {
                target_url: "file:///t".into(),
                prefixes: Vec::new()
            }),
            Some("file:///t")
        );
        assert_eq!(target_url(&TaskKind::RemoveStaging), None);
    }
}
