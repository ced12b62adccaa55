//! Running one task: what each [`TaskKind`] does with the node's store and the repository.
//!
//! # Layout
//! - [`context`]: what a running task is given ([`TaskContext`]) and its progress counters.
//! - [`copy`]: copying listed objects into the repository with bounded concurrency, reusing
//!   entries of earlier attempts (shared by every copy task).
//! - [`influxdb3`]: the InfluxDB 3 copy tasks (prefixes, catalog detection, licence files).
//! - [`consistency`]: a node's consistency check and repair after its copies.
//! - [`commit`]: merging accepted results into segments and writing the manifest.
//! - [`cleanup`]: removing a job's staging area.
//! - [`prune`]: forgetting backups, dropping and repacking packs.
//! - [`keys`]: adding, listing and removing the repository's passphrases.
//! - [`verify`]: checking a backup object by object (existence, or re-hashing).
//! - [`questdb`]: the QuestDB prepare (checkpoint, snapshot, release) and release tasks, and
//!   the marker that says whether this job holds the checkpoint.
//! - [`restore`]: restore guards, the wipe, and writing objects back with hash checks.

pub mod check;
pub mod checkpoint_marker;
pub mod cleanup;
pub mod commit;
pub mod consistency;
pub mod context;
pub mod copy;
pub mod influxdb3;
pub mod keys;
pub mod prune;
pub mod purged;
pub mod questdb;
pub mod restore;
pub mod verify;

use std::sync::atomic::Ordering;

use bk_proto::model::{TaskKind, TaskReport};

use crate::error::TaskError;
pub use context::{ProgressCounters, TaskContext, WorkerResources};

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
            questdb::prepare(context, pg_addr, *adopt_checkpoint).await
        }
        TaskKind::QuestDbRelease { pg_addr } => questdb::release(context, pg_addr).await,
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
