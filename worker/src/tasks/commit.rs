//! Committing a backup: the accepted results become segments, then the manifest is written
//! create-only. The manifest's existence is the backup's existence.
//!
//! Segments are deterministic given the accepted results, so a retried commit rewrites the same
//! bytes; a manifest that already exists with the same segments means an earlier attempt
//! committed, which is success.

use bk_proto::ids::BackupId;
use bk_proto::model::{ExclusionReport, PartRef, TaskReport};
use object_store::path::Path;
use object_store::{ObjectStoreExt, PutMode, PutOptions, PutPayload};
use tracing::info;

use super::TaskContext;
use crate::error::{RepositoryError, TaskError};
use crate::repository::layout::{manifest_key, segment_key};
use crate::repository::manifest::{Manifest, SegmentRef, MANIFEST_FORMAT};
use crate::repository::staging::{read_done, read_part};

/// Objects per segment: bounds the commit's memory and a reader's.
const OBJECTS_PER_SEGMENT: usize = 20_000;

/// Merges `parts` into segments and writes the manifest of `backup_id`.
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
    let repository = context.repository.as_ref();
    let mut segments =
        SegmentWriter { backup_id, buffer: Vec::new(), num_buffered: 0, segments: Vec::new() };
    let mut exclusions: Vec<ExclusionReport> = Vec::new();
    let mut corrupt = Vec::new();
    let (mut num_objects, mut num_bytes) = (0u64, 0u64);
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
        for part_key in &done.parts {
            for entry in read_part(repository, &Path::from(part_key.as_str())).await? {
                num_objects += 1;
                num_bytes += entry.size;
                segments.push(context, &entry).await?;
                context.progress.done(entry.size);
            }
        }
    }
    segments.flush(context).await?;
    let manifest = Manifest {
        format: MANIFEST_FORMAT,
        backup_id,
        source: context.spec.source.clone(),
        created_at_ms,
        repository_id: context.repository_info.id.clone(),
        chunk_size: context.repository_info.chunk_size,
        num_objects,
        num_bytes,
        segments: segments.segments,
        exclusions,
        corrupt,
    };
    let key = manifest_key(backup_id);
    write_manifest(context, &key, &manifest).await?;
    info!(%backup_id, num_objects, num_bytes, "backup committed");
    Ok(TaskReport {
        num_objects,
        num_bytes,
        manifest_key: Some(key.to_string()),
        ..TaskReport::default()
    })
}

async fn write_manifest(
    context: &TaskContext,
    key: &Path,
    manifest: &Manifest,
) -> Result<(), TaskError> {
    let corrupt = |reason: String| RepositoryError::Corrupt { key: key.to_string(), reason };
    let bytes = serde_json::to_vec_pretty(manifest).map_err(|error| corrupt(error.to_string()))?;
    let options = PutOptions { mode: PutMode::Create, ..PutOptions::default() };
    match context.repository.put_opts(key, PutPayload::from(bytes), options).await {
        Ok(_) => Ok(()),
        Err(object_store::Error::AlreadyExists { .. }) => {
            let existing = context
                .repository
                .get(key)
                .await
                .map_err(RepositoryError::store(key.to_string()))?;
            let existing =
                existing.bytes().await.map_err(RepositoryError::store(key.to_string()))?;
            let existing: Manifest =
                serde_json::from_slice(&existing).map_err(|error| corrupt(error.to_string()))?;
            if existing.segments == manifest.segments {
                Ok(())
            } else {
                Err(corrupt("a different manifest already exists for this backup id".to_string())
                    .into())
            }
        }
        Err(error) => Err(RepositoryError::store(key.to_string())(error).into()),
    }
}

struct SegmentWriter {
    backup_id: BackupId,
    buffer: Vec<u8>,
    num_buffered: usize,
    segments: Vec<SegmentRef>,
}

impl SegmentWriter {
    async fn push(
        &mut self,
        context: &TaskContext,
        entry: &crate::repository::manifest::ObjectEntry,
    ) -> Result<(), TaskError> {
        serde_json::to_writer(&mut self.buffer, entry).map_err(|error| {
            RepositoryError::Corrupt { key: "segment".into(), reason: error.to_string() }
        })?;
        self.buffer.push(b'\n');
        self.num_buffered += 1;
        if self.num_buffered >= OBJECTS_PER_SEGMENT {
            self.flush(context).await?;
        }
        Ok(())
    }

    async fn flush(&mut self, context: &TaskContext) -> Result<(), TaskError> {
        if self.num_buffered == 0 {
            return Ok(());
        }
        let key = segment_key(self.backup_id, self.segments.len());
        let bytes = std::mem::take(&mut self.buffer);
        let blake3 = blake3::hash(&bytes).to_hex().to_string();
        context
            .repository
            .put(&key, PutPayload::from(bytes))
            .await
            .map_err(RepositoryError::store(key.to_string()))?;
        self.segments.push(SegmentRef {
            key: key.to_string(),
            num_objects: self.num_buffered as u64,
            blake3,
        });
        self.num_buffered = 0;
        Ok(())
    }
}
