//! A copy task's results in the repository's staging area.
//!
//! An attempt writes its object entries in parts of bounded size as it goes, then a done record
//! listing its parts. A later attempt of the same task reads the entries of earlier attempts
//! and reuses those whose source object is unchanged, so a re-run never copies an object twice;
//! it writes every entry into its own parts, so the commit reads exactly one attempt.

use std::collections::HashMap;

use bk_proto::ids::TaskId;
use bk_proto::model::TaskReport;
use futures::TryStreamExt;
use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt, PutPayload};

use super::layout::{done_key, part_key, task_staging_dir};
use super::manifest::{DoneRecord, ObjectEntry};
use crate::error::{RepositoryError, RepositoryResult};

/// Entries per part: bounds memory and the work lost when a worker dies mid-task.
const ENTRIES_PER_PART: usize = 500;
/// A part is also written when its first entry is this old, so a slow task's progress survives
/// a crash too.
const PART_MAX_AGE: std::time::Duration = std::time::Duration::from_secs(1);

/// Writes an attempt's entries as parts, then its done record.
pub struct PartWriter<'a> {
    repository: &'a dyn ObjectStore,
    task_id: TaskId,
    attempt: u32,
    buffer: Vec<u8>,
    num_buffered: usize,
    first_buffered_at: Option<std::time::Instant>,
    parts: Vec<String>,
}

impl<'a> PartWriter<'a> {
    /// Starts writing attempt `attempt` of `task_id`.
    pub fn new(repository: &'a dyn ObjectStore, task_id: TaskId, attempt: u32) -> Self {
        Self {
            repository,
            task_id,
            attempt,
            buffer: Vec::new(),
            num_buffered: 0,
            first_buffered_at: None,
            parts: Vec::new(),
        }
    }

    /// Adds an entry; writes a part when enough are buffered.
    ///
    /// # Errors
    /// [`RepositoryError`] when a part cannot be written.
    pub async fn push(&mut self, entry: &ObjectEntry) -> RepositoryResult<()> {
        serde_json::to_writer(&mut self.buffer, entry).map_err(|error| {
            RepositoryError::Corrupt { key: "part".into(), reason: error.to_string() }
        })?;
        self.buffer.push(b'\n');
        self.num_buffered += 1;
        let first_buffered_at = *self.first_buffered_at.get_or_insert_with(std::time::Instant::now);
        if self.num_buffered >= ENTRIES_PER_PART || first_buffered_at.elapsed() >= PART_MAX_AGE {
            self.flush().await?;
        }
        Ok(())
    }

    async fn flush(&mut self) -> RepositoryResult<()> {
        if self.num_buffered == 0 {
            return Ok(());
        }
        let key = part_key(self.task_id, self.attempt, self.parts.len());
        let bytes = std::mem::take(&mut self.buffer);
        self.repository
            .put(&key, PutPayload::from(bytes))
            .await
            .map_err(RepositoryError::store(key.to_string()))?;
        self.parts.push(key.to_string());
        self.num_buffered = 0;
        self.first_buffered_at = None;
        Ok(())
    }

    /// Writes the remaining entries and the done record.
    ///
    /// # Errors
    /// [`RepositoryError`] when a write fails.
    pub async fn finish(mut self, report: &TaskReport) -> RepositoryResult<()> {
        self.flush().await?;
        let record = DoneRecord { report: report.clone(), parts: self.parts };
        let key = done_key(self.task_id, self.attempt);
        let bytes = serde_json::to_vec(&record).map_err(|error| RepositoryError::Corrupt {
            key: key.to_string(),
            reason: error.to_string(),
        })?;
        self.repository
            .put(&key, PutPayload::from(bytes))
            .await
            .map_err(RepositoryError::store(key.to_string()))?;
        Ok(())
    }
}

/// Reads the entries written by attempts before `attempt`, by source key.
///
/// # Errors
/// [`RepositoryError`] when listing or reading fails, or a part does not parse.
pub async fn read_earlier_entries(
    repository: &dyn ObjectStore,
    task_id: TaskId,
    attempt: u32,
) -> RepositoryResult<HashMap<String, ObjectEntry>> {
    let dir = task_staging_dir(task_id);
    let current_dir = format!("{dir}/a{attempt}/");
    let metas: Vec<_> = repository
        .list(Some(&dir))
        .try_collect()
        .await
        .map_err(RepositoryError::store(dir.to_string()))?;
    let mut entries = HashMap::new();
    for meta in metas {
        let key = meta.location.to_string();
        let is_part = meta.location.filename().is_some_and(|name| name.starts_with("part-"));
        if !is_part || key.starts_with(&current_dir) {
            continue;
        }
        for entry in read_part(repository, &meta.location).await? {
            entries.insert(entry.key.clone(), entry);
        }
    }
    Ok(entries)
}

/// Reads one part.
///
/// # Errors
/// [`RepositoryError`] when it cannot be read or does not parse.
pub async fn read_part(
    repository: &dyn ObjectStore,
    key: &Path,
) -> RepositoryResult<Vec<ObjectEntry>> {
    let bytes = repository
        .get(key)
        .await
        .map_err(RepositoryError::store(key.to_string()))?
        .bytes()
        .await
        .map_err(RepositoryError::store(key.to_string()))?;
    bytes
        .split(|byte| *byte == b'\n')
        .filter(|line| !line.is_empty())
        .map(|line| {
            serde_json::from_slice(line).map_err(|error| RepositoryError::Corrupt {
                key: key.to_string(),
                reason: error.to_string(),
            })
        })
        .collect()
}

/// Reads the done record of an attempt.
///
/// # Errors
/// [`RepositoryError`] when it is missing, unreadable or does not parse.
pub async fn read_done(
    repository: &dyn ObjectStore,
    task_id: TaskId,
    attempt: u32,
) -> RepositoryResult<DoneRecord> {
    let key = done_key(task_id, attempt);
    let bytes = repository
        .get(&key)
        .await
        .map_err(RepositoryError::store(key.to_string()))?
        .bytes()
        .await
        .map_err(RepositoryError::store(key.to_string()))?;
    serde_json::from_slice(&bytes).map_err(|error| RepositoryError::Corrupt {
        key: key.to_string(),
        reason: error.to_string(),
    })
}
