//! Committing a backup: the accepted attempts' scope lists become the manifest, the blob
//! locations small attempts carried inline become the backup's index files, and the manifest is
//! written create-only. The manifest's existence is the backup's existence.
//!
//! The commit reads one done record per task, never an object list: each attempt wrote its
//! own run (a delta on the parent's runs, or a new base) and named in its record the runs its
//! scope's list is made of. Every blob those runs name is in an index file or carried inline
//! here, by construction: an attempt adds an item to its run only once its object's blobs are
//! stored and recorded (written to an index file of its partition, or carried inline), reuses
//! an earlier attempt's items with their carried locations, and reuses the parent's items as
//! they are — a committed backup's blobs stay indexed, since prune keeps every blob a kept
//! backup names indexed and no prune runs while this job holds the repository. `verify` and
//! `repo check` prove it after the fact.
//!
//! A retried commit writes the same index files and manifest (deterministic given the accepted
//! attempts); a manifest already there with the same lists means an earlier attempt committed,
//! which is success.

use std::collections::BTreeMap;

use bk_proto::ids::BackupId;
use bk_proto::model::{ExclusionReport, PartRef, TaskReport};
use tracing::info;

use super::context::TaskContext;
use crate::error::{RepositoryError, TaskError};
use crate::repository::crypto::BlobId;
use crate::repository::index::{write_index_files, IndexEntry};
use crate::repository::layout::manifest_key;
use crate::repository::manifest::{Manifest, ScopeList, MANIFEST_FORMAT};
use crate::repository::metadata::{create_sealed, read_json};
use crate::repository::staging::read_done;

/// Merges the accepted attempts of `parts` into the manifest of `backup_id`.
///
/// # Errors
/// [`TaskError::Repository`] when a record is missing or a write fails; a different manifest
/// already at the key is reported as corrupt (never overwritten).
pub async fn commit_backup(
    context: &TaskContext,
    backup_id: BackupId,
    created_at_ms: u64,
    parts: &[PartRef],
) -> Result<TaskReport, TaskError> {
    let repository = &context.repository;
    let mut scopes: Vec<ScopeList> = Vec::new();
    let mut exclusions: Vec<ExclusionReport> = Vec::new();
    let mut corrupt = Vec::new();
    // Per partition, the blob locations attempts carried inline (sorted: a retry writes the same).
    let mut carried: BTreeMap<String, BTreeMap<BlobId, IndexEntry>> = BTreeMap::new();
    let mut list_bytes_written = 0;
    for part in parts {
        if part.attempt == 0 {
            return Err(TaskError::Invalid(format!(
                "copy task `{}` has no accepted attempt",
                part.task_id
            )));
        }
        let done = read_done(repository, part.task_id, part.attempt).await?;
        exclusions.extend(done.report.exclusions);
        corrupt.extend(done.report.corrupt);
        list_bytes_written += done.report.transfer.list_bytes_written;
        let partition = match &done.list {
            Some(list) => list.partition(),
            None if done.blobs.is_empty() => continue,
            None => {
                return Err(TaskError::Invalid(format!(
                    "task `{}` carried blob locations but kept no list",
                    part.task_id
                )))
            }
        };
        let slot = carried.entry(partition).or_default();
        slot.extend(done.blobs.into_iter().map(|blob| (blob.entry.id, blob)));
        scopes.extend(done.list);
    }
    for (partition, blobs) in &carried {
        let entries: Vec<IndexEntry> = blobs.values().copied().collect();
        write_index_files(
            repository.store.as_ref(),
            &repository.key,
            partition,
            &backup_id.to_string(),
            &entries,
        )
        .await?;
    }
    let num_objects = scopes.iter().map(|list| list.num_objects).sum();
    let num_bytes = scopes.iter().map(|list| list.num_bytes).sum();
    context.progress.listed(num_bytes);
    let manifest = Manifest {
        format: MANIFEST_FORMAT,
        backup_id,
        source: context.spec.source.clone(),
        created_at_ms,
        repository_id: repository.config.repository_id.clone(),
        num_objects,
        num_bytes,
        scopes,
        exclusions,
        corrupt,
    };
    write_manifest(context, &manifest).await?;
    context.progress.done(num_bytes);
    let num_runs = manifest.runs().count();
    info!(%backup_id, num_objects, num_bytes, num_runs, list_bytes_written, "backup committed");
    Ok(TaskReport {
        num_objects,
        num_bytes,
        manifest_key: Some(manifest_key(backup_id).to_string()),
        ..TaskReport::default()
    })
}

async fn write_manifest(context: &TaskContext, manifest: &Manifest) -> Result<(), TaskError> {
    let repository = &context.repository;
    let key = manifest_key(manifest.backup_id);
    let json = serde_json::to_vec(manifest).map_err(|error| RepositoryError::Corrupt {
        key: key.to_string(),
        reason: error.to_string(),
    })?;
    if create_sealed(repository.store.as_ref(), &repository.key, &key, &json).await? {
        return Ok(());
    }
    let existing: Manifest = read_json(repository.store.as_ref(), &repository.key, &key).await?;
    if existing.scopes == manifest.scopes && existing.num_objects == manifest.num_objects {
        Ok(())
    } else {
        Err(RepositoryError::Corrupt {
            key: key.to_string(),
            reason: "a different manifest already exists for this backup id".to_string(),
        }
        .into())
    }
}
