//! A task attempt's results in the repository's staging area, written off the copy path.
//!
//! Entries go to a background writer over a bounded channel: copies never wait for a staging
//! write unless the writer falls far behind. It writes a part every [`ENTRIES_PER_PART`] entries
//! or when its oldest buffered entry is the worker's `progress_save_interval` old (so a slow
//! task's progress survives a crash), and on finish the done record with the last batch inline: a small task costs one
//! PUT. A later attempt of the same task reads the entries of earlier attempts and reuses those
//! whose source object is unchanged; it carries their blob locations into its own parts, so the
//! commit reads exactly one attempt per task.

use std::collections::HashMap;
use std::time::Duration;

use bk_proto::ids::TaskId;
use bk_proto::model::TaskReport;
use object_store::path::Path;
use tokio::sync::mpsc;

use super::crypto::BlobId;
use super::index::IndexEntry;
use super::layout::{done_key, part_key, task_staging_dir};
use super::manifest::{DoneRecord, ObjectEntry, Part, Scope, SegmentRef};
use super::metadata::{read_json, write_json};
use super::open::Repository;
use crate::error::{RepositoryError, RepositoryResult};

/// Entries per part: bounds memory and the work lost when a worker dies mid-task.
const ENTRIES_PER_PART: usize = 5000;

/// Writes an attempt's entries as parts in the background, then its done record.
pub struct PartWriter {
    sender: mpsc::Sender<(ObjectEntry, Vec<IndexEntry>)>,
    /// The background writer: the parts it wrote and what it still buffers.
    writer: tokio::task::JoinHandle<RepositoryResult<(Vec<String>, Part)>>,
    repository: Repository,
    task_id: TaskId,
    attempt: u32,
}

impl PartWriter {
    /// Starts writing attempt `attempt` of `task_id`, saving a part at least every
    /// `save_interval` while entries come in.
    pub fn start(
        repository: &Repository,
        task_id: TaskId,
        attempt: u32,
        save_interval: Duration,
    ) -> Self {
        let (sender, receiver) = mpsc::channel(1024);
        let writer = tokio::spawn(write_parts(
            repository.clone(),
            task_id,
            attempt,
            receiver,
            save_interval,
        ));
        Self { sender, writer, repository: repository.clone(), task_id, attempt }
    }

    /// Adds an entry and the locations of its blobs the committed index does not list.
    ///
    /// # Errors
    /// [`RepositoryError`] when the background writer failed.
    pub async fn push(
        &self,
        entry: ObjectEntry,
        new_blobs: Vec<IndexEntry>,
    ) -> RepositoryResult<()> {
        if self.sender.send((entry, new_blobs)).await.is_err() {
            return Err(RepositoryError::WriteFailed(
                "the staging writer stopped (see the error of the task)".to_string(),
            ));
        }
        Ok(())
    }

    /// Writes the remaining entries inline in the done record of the task that copied
    /// `scope`; `unchanged`: the parent's segments holding every entry of an attempt that found
    /// nothing changed (see [`DoneRecord::unchanged`]).
    ///
    /// # Errors
    /// [`RepositoryError`] when a write fails.
    pub async fn finish(
        self,
        report: &TaskReport,
        scope: &Scope,
        unchanged: Option<Vec<SegmentRef>>,
    ) -> RepositoryResult<()> {
        let Self { sender, writer, repository, task_id, attempt } = self;
        drop(sender); // The writer sees the end of its input and returns what it buffers.
        let (parts, tail) = writer.await.map_err(|error| {
            RepositoryError::WriteFailed(format!("the staging writer panicked: {error}"))
        })??;
        let scope = scope.clone();
        let record = DoneRecord { report: report.clone(), scope, parts, tail, unchanged };
        write_json(repository.store.as_ref(), &repository.key, &done_key(task_id, attempt), &record)
            .await
    }
}

async fn write_parts(
    repository: Repository,
    task_id: TaskId,
    attempt: u32,
    mut receiver: mpsc::Receiver<(ObjectEntry, Vec<IndexEntry>)>,
    save_interval: Duration,
) -> RepositoryResult<(Vec<String>, Part)> {
    let mut parts = Vec::new();
    let mut buffer = Part::default();
    let mut deadline: Option<tokio::time::Instant> = None;
    loop {
        let received = match deadline {
            Some(deadline) => tokio::select! {
                received = receiver.recv() => received.map(Some),
                _ = tokio::time::sleep_until(deadline) => Some(None),
            },
            None => receiver.recv().await.map(Some),
        };
        match received {
            None => return Ok((parts, buffer)),
            Some(Some((entry, blobs))) => {
                buffer.entries.push(entry);
                buffer.blobs.extend(blobs);
                deadline.get_or_insert_with(|| tokio::time::Instant::now() + save_interval);
                if buffer.entries.len() < ENTRIES_PER_PART {
                    continue;
                }
            }
            Some(None) => {} // The oldest buffered entry is due.
        }
        let key = part_key(task_id, attempt, parts.len());
        write_json(repository.store.as_ref(), &repository.key, &key, &buffer).await?;
        parts.push(key.to_string());
        buffer = Part::default();
        deadline = None;
    }
}

/// Everything attempts before `attempt` of `task_id` recorded: entries by source key, and the
/// locations of the blobs they name that the committed index may not list.
pub struct EarlierResults {
    /// Entries by key.
    pub entries: HashMap<String, ObjectEntry>,
    /// Blob locations they recorded.
    pub blobs: HashMap<BlobId, IndexEntry>,
}

/// Reads what earlier attempts of a task wrote (parts and done records).
///
/// # Errors
/// [`RepositoryError`] when listing or reading fails.
pub async fn read_earlier(
    repository: &Repository,
    task_id: TaskId,
    attempt: u32,
) -> RepositoryResult<EarlierResults> {
    let dir = task_staging_dir(task_id);
    let current = format!("{dir}/a{attempt}/");
    let mut results = EarlierResults { entries: HashMap::new(), blobs: HashMap::new() };
    for path in super::list_paths(repository.store.as_ref(), dir.as_ref()).await? {
        if path.as_ref().starts_with(&current) {
            continue;
        }
        let read = match path.filename() {
            Some(name) if name.starts_with("part-") => read_part(repository, &path).await,
            Some("done") => {
                read_json::<DoneRecord>(repository.store.as_ref(), &repository.key, &path)
                    .await
                    .map(|done| done.tail)
            }
            _ => continue,
        };
        let part = match read {
            Ok(part) => part,
            // Reuse is an optimisation: a record that does not open (an attempt that ran under
            // the config that lost an initialisation race, sealed with its key; or damage) is
            // not reused, and its objects are copied again.
            Err(RepositoryError::Corrupt { key, reason }) => {
                tracing::warn!(%key, %reason, "an earlier attempt's staging record does not open: its objects are copied again");
                continue;
            }
            Err(error) => return Err(error),
        };
        results.blobs.extend(part.blobs.into_iter().map(|entry| (entry.entry.id, entry)));
        results.entries.extend(part.entries.into_iter().map(|entry| (entry.key.clone(), entry)));
    }
    Ok(results)
}

/// Reads one part.
///
/// # Errors
/// [`RepositoryError`] when it cannot be read or opened.
pub async fn read_part(repository: &Repository, key: &Path) -> RepositoryResult<Part> {
    read_json(repository.store.as_ref(), &repository.key, key).await
}

/// Reads the done record of an attempt.
///
/// # Errors
/// [`RepositoryError`] when it is missing or does not open.
pub async fn read_done(
    repository: &Repository,
    task_id: TaskId,
    attempt: u32,
) -> RepositoryResult<DoneRecord> {
    read_json(repository.store.as_ref(), &repository.key, &done_key(task_id, attempt)).await
}

/// Every entry and blob location an accepted attempt recorded: its parts, then its tail.
///
/// # Errors
/// [`RepositoryError`] when a record cannot be read.
pub async fn read_attempt(
    repository: &Repository,
    task_id: TaskId,
    attempt: u32,
) -> RepositoryResult<(DoneRecord, Vec<Part>)> {
    let done = read_done(repository, task_id, attempt).await?;
    let mut parts = Vec::with_capacity(done.parts.len() + 1);
    for key in &done.parts {
        parts.push(read_part(repository, &Path::from(key.as_str())).await?);
    }
    parts.push(done.tail.clone());
    Ok((done, parts))
}
