//! Committing a backup: the accepted attempts' results become segments, the blob locations they
//! recorded become the backup's index file, then the manifest is written create-only. The
//! manifest's existence is the backup's existence.
//!
//! Before anything is written, every blob every entry names must be in the committed index or in
//! an accepted attempt's records: a manifest never names a blob no index lists. A retried commit
//! writes the same segments and index (deterministic given the accepted attempts); a manifest
//! already there with the same segments means an earlier attempt committed, which is success.

use std::collections::BTreeMap;

use bk_proto::ids::BackupId;
use bk_proto::model::{ExclusionReport, PartRef, TaskReport};
use tracing::info;

use super::TaskContext;
use crate::error::{RepositoryError, TaskError};
use crate::repository::crypto::BlobId;
use crate::repository::index::{write_index, BlobIndex, IndexEntry};
use crate::repository::layout::{manifest_key, segment_key};
use crate::repository::manifest::{Manifest, ObjectEntry, SegmentRef, MANIFEST_FORMAT};
use crate::repository::metadata::{create_sealed, read_json, write_json};
use crate::repository::staging::read_attempt;

/// Objects per segment: bounds the commit's memory and a reader's.
const OBJECTS_PER_SEGMENT: usize = 20_000;

/// Merges `parts` into segments, the index and the manifest of `backup_id`.
///
/// # Errors
/// [`TaskError::Repository`] when a result is missing or a write fails; a different manifest
/// already at the key is reported as corrupt (never overwritten).
pub async fn commit_backup(
    context: &TaskContext,
    backup_id: BackupId,
    created_at_ms: u64,
    parts: &[PartRef],
) -> Result<TaskReport, TaskError> {
    let repository = &context.repository;
    let committed = context.repositories.index(repository).await?;
    let mut segments = SegmentWriter { backup_id, buffer: Vec::new(), segments: Vec::new() };
    let mut exclusions: Vec<ExclusionReport> = Vec::new();
    let mut corrupt = Vec::new();
    let mut new_blobs: BTreeMap<BlobId, IndexEntry> = BTreeMap::new();
    let (mut num_objects, mut num_bytes) = (0u64, 0u64);
    for part in parts {
        if part.attempt == 0 {
            return Err(TaskError::Invalid(format!(
                "copy task `{}` has no accepted attempt",
                part.task_id
            )));
        }
        let (done, attempt_parts) = read_attempt(repository, part.task_id, part.attempt).await?;
        exclusions.extend(done.report.exclusions);
        corrupt.extend(done.report.corrupt);
        for attempt_part in attempt_parts {
            for blob in attempt_part.blobs {
                if !committed.contains_key(&blob.entry.id) {
                    new_blobs.insert(blob.entry.id, blob);
                }
            }
            for entry in attempt_part.entries {
                check_blobs_indexed(&entry, &committed, &new_blobs)?;
                num_objects += 1;
                num_bytes += entry.size;
                context.progress.done(entry.size);
                segments.push(context, entry).await?;
            }
        }
    }
    segments.flush(context).await?;
    if !new_blobs.is_empty() {
        let entries: Vec<IndexEntry> = new_blobs.into_values().collect();
        write_index(repository.store.as_ref(), &repository.key, &backup_id.to_string(), &entries)
            .await?;
    }
    let manifest = Manifest {
        format: MANIFEST_FORMAT,
        backup_id,
        source: context.spec.source.clone(),
        created_at_ms,
        repository_id: repository.config.repository_id.clone(),
        num_objects,
        num_bytes,
        segments: segments.segments,
        exclusions,
        corrupt,
    };
    let key = manifest_key(backup_id);
    write_manifest(context, &manifest).await?;
    info!(%backup_id, num_objects, num_bytes, "backup committed");
    Ok(TaskReport {
        num_objects,
        num_bytes,
        manifest_key: Some(key.to_string()),
        ..TaskReport::default()
    })
}

/// Refuses an entry naming a blob no index lists: committing it would make a backup that
/// cannot be restored.
fn check_blobs_indexed(
    entry: &ObjectEntry,
    committed: &BlobIndex,
    new_blobs: &BTreeMap<BlobId, IndexEntry>,
) -> Result<(), TaskError> {
    match entry.blobs.iter().find(|id| !committed.contains_key(id) && !new_blobs.contains_key(id)) {
        None => Ok(()),
        Some(id) => Err(TaskError::Damaged(format!(
            "object `{}` names blob {id}, which no index and no accepted attempt records: nothing is committed",
            entry.key
        ))),
    }
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
    if existing.segments == manifest.segments && existing.num_objects == manifest.num_objects {
        Ok(())
    } else {
        Err(RepositoryError::Corrupt {
            key: key.to_string(),
            reason: "a different manifest already exists for this backup id".to_string(),
        }
        .into())
    }
}

struct SegmentWriter {
    backup_id: BackupId,
    buffer: Vec<ObjectEntry>,
    segments: Vec<SegmentRef>,
}

impl SegmentWriter {
    /// Appends `entry`, starting a new segment when the node changes (copy tasks are planned
    /// node by node) or the segment is full.
    async fn push(&mut self, context: &TaskContext, entry: ObjectEntry) -> Result<(), TaskError> {
        let new_node = self.buffer.last().is_some_and(|last| last.node != entry.node);
        if new_node || self.buffer.len() >= OBJECTS_PER_SEGMENT {
            self.flush(context).await?;
        }
        self.buffer.push(entry);
        Ok(())
    }

    async fn flush(&mut self, context: &TaskContext) -> Result<(), TaskError> {
        if self.buffer.is_empty() {
            return Ok(());
        }
        let key = segment_key(self.backup_id, self.segments.len());
        let repository = &context.repository;
        write_json(repository.store.as_ref(), &repository.key, &key, &self.buffer).await?;
        let first = self.buffer.iter().map(|entry| &entry.key).min();
        let last = self.buffer.iter().map(|entry| &entry.key).max();
        self.segments.push(SegmentRef {
            key: key.to_string(),
            num_objects: self.buffer.len() as u64,
            keys: first.zip(last).map(|(first, last)| (first.clone(), last.clone())),
        });
        self.buffer.clear();
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::repository::pack::{PackEntry, PackId};

    #[test]
    fn test_an_entry_naming_a_blob_no_index_records_is_refused() {
        let (known, new, unknown) = (BlobId([1; 32]), BlobId([2; 32]), BlobId([3; 32]));
        let place = |id| PackEntry { id, offset: 0, length: 1, raw_length: 1, flags: 0 };
        let committed: BlobIndex = [(known, (PackId([0; 16]), place(known)))].into();
        let new_blobs: BTreeMap<BlobId, IndexEntry> =
            [(new, IndexEntry { pack: PackId([1; 16]), entry: place(new) })].into();
        let entry = |blobs: Vec<BlobId>| ObjectEntry {
            key: "node1/wal/1.wal".to_string(),
            size: 1,
            blobs,
            etag: None,
            last_modified: String::new(),
            phase: bk_proto::model::CopyPhase::Nodes,
            node: "node1".to_string(),
        };
        assert!(check_blobs_indexed(&entry(vec![known, new]), &committed, &new_blobs).is_ok());
        let error =
            check_blobs_indexed(&entry(vec![known, unknown]), &committed, &new_blobs).unwrap_err();
        assert!(!error.is_retryable());
        let message = error.to_string();
        assert!(
            message.contains("node1/wal/1.wal") && message.contains(&unknown.to_string()),
            "{message}"
        );
    }
}
