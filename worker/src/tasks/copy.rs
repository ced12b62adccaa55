//! Copying a set of listed objects into the repository.
//!
//! Idempotent per task: an object whose entry an earlier attempt wrote, with the same size,
//! ETag and last-modified time, is reused without being read. Objects run concurrently, bounded
//! by the worker-wide permits; each holds at most one chunk in memory. Every object read is
//! checked against its database's format as it streams past ([`crate::formats`]); a damaged
//! one is still copied, and reported.

use std::collections::HashMap;

use futures::{Stream, StreamExt, TryStreamExt};
use object_store::{ObjectMeta, ObjectStoreExt};
use tracing::warn;

use super::TaskContext;
use crate::error::TaskError;
use crate::formats::{describe_corruption, Validator};
use crate::repository::chunks::{store_object, StoreObjectError};
use crate::repository::manifest::ObjectEntry;
use crate::repository::staging::PartWriter;

/// Totals of a copy.
#[derive(Debug, Default)]
pub struct CopyTotals {
    /// Objects in the result (copied or reused).
    pub num_objects: u64,
    /// Their bytes.
    pub num_bytes: u64,
    /// Objects that disappeared between listing and reading (normal on a live database).
    pub vanished: Vec<String>,
    /// The entries written, when the caller asked to keep them.
    pub kept: Vec<ObjectEntry>,
    /// Objects reused without being read (unchanged since the parent backup, or copied by an
    /// earlier attempt).
    pub num_reused: u64,
    /// Bytes read from the source.
    pub bytes_read: u64,
    /// Bytes of new chunks written.
    pub bytes_written: u64,
    /// Other events worth recording (e.g. an unreadable parent).
    pub notes: Vec<String>,
    /// Objects that failed their format check.
    pub corrupt: Vec<bk_proto::model::CorruptObject>,
    /// The catalog UUID of each v3 catalog file read, by key.
    pub catalog_uuids: Vec<(String, u128)>,
}

impl CopyTotals {
    /// Events worth recording: vanished objects (normal on a live database: WAL cleanup,
    /// retention; the consistency check decides whether the backup still holds a restartable
    /// state), and objects reused from an earlier attempt.
    pub fn events(&self) -> Vec<String> {
        let reused = (self.num_reused > 0).then(|| {
            format!(
                "reused {} object(s) an earlier attempt had copied, without reading them",
                self.num_reused
            )
        });
        self.vanished
            .iter()
            .map(|key| format!("`{key}` was deleted by the database between listing and copying"))
            .chain(reused)
            .chain(self.notes.iter().cloned())
            .collect()
    }
}

/// Copies every object of `objects` and appends its entry to `writer`.
///
/// # Errors
/// The first failure; objects copied so far stay in staging for the next attempt.
pub async fn copy_objects<S>(
    context: &TaskContext,
    objects: S,
    node: &str,
    phase: &str,
    earlier: &HashMap<String, ObjectEntry>,
    writer: &mut PartWriter<'_>,
    keep_entries: bool,
) -> Result<CopyTotals, TaskError>
where
    S: Stream<Item = Result<ObjectMeta, TaskError>>,
{
    let concurrency = context.max_objects_in_flight.max(1);
    let results = objects
        .map_ok(|meta| copy_one(context, meta, node, phase, earlier))
        .try_buffered(concurrency);
    let mut results = std::pin::pin!(results);
    let mut totals = CopyTotals::default();
    loop {
        let next = tokio::select! {
            next = results.next() => next,
            _ = context.cancel.cancelled() => return Err(TaskError::Abandoned("cancelled".to_string())),
        };
        match next {
            None => return Ok(totals),
            Some(Err(error)) => return Err(error),
            Some(Ok(Copied::Reused(entry))) => {
                totals.num_objects += 1;
                totals.num_bytes += entry.size;
                totals.num_reused += 1;
                writer.push(&entry).await?;
                if keep_entries {
                    totals.kept.push(entry);
                }
            }
            Some(Ok(Copied::Entry(entry, check))) => {
                totals.bytes_read += entry.size;
                totals.bytes_written += check.bytes_written;
                match check.format {
                    Ok(validated) => totals
                        .catalog_uuids
                        .extend(validated.catalog_uuid.map(|uuid| (entry.key.clone(), uuid))),
                    Err(reason) => totals
                        .corrupt
                        .push(bk_proto::model::CorruptObject { key: entry.key.clone(), reason }),
                }
                totals.num_objects += 1;
                totals.num_bytes += entry.size;
                writer.push(&entry).await?;
                if keep_entries {
                    totals.kept.push(entry);
                }
            }
            Some(Ok(Copied::Vanished(key))) => totals.vanished.push(key),
        }
    }
}

enum Copied {
    /// Read and stored: the entry, and what reading it found.
    Entry(ObjectEntry, ReadOutcome),
    Reused(ObjectEntry),
    Vanished(String),
}

/// What reading an object found besides its bytes.
struct ReadOutcome {
    /// Bytes of new chunks written.
    bytes_written: u64,
    /// Its format check: what it told, or what is wrong with it.
    format: Result<crate::formats::Validated, String>,
}

async fn copy_one(
    context: &TaskContext,
    meta: ObjectMeta,
    node: &str,
    phase: &str,
    earlier: &HashMap<String, ObjectEntry>,
) -> Result<Copied, TaskError> {
    let key = meta.location.to_string();
    let last_modified = meta.last_modified.to_rfc3339();
    context.progress.listed(meta.size);
    if let Some(entry) = earlier.get(&key) {
        let unchanged = entry.size == meta.size
            && entry.etag == meta.e_tag
            && entry.last_modified == last_modified;
        if unchanged {
            context.progress.done(meta.size);
            return Ok(Copied::Reused(ObjectEntry {
                phase: phase.to_string(),
                node: node.to_string(),
                ..entry.clone()
            }));
        }
    }
    let _permit = context
        .object_permits
        .acquire()
        .await
        .map_err(|_| TaskError::Abandoned("worker stopping".to_string()))?;
    let stream = match context.source.get(&meta.location).await {
        Ok(result) => result.into_stream(),
        Err(object_store::Error::NotFound { .. }) => {
            warn!(%key, "object vanished before it could be read");
            return Ok(Copied::Vanished(key));
        }
        Err(source) => return Err(TaskError::Source { key, source }),
    };
    let chunk_size = context.repository_info.chunk_size as usize;
    let throttle = context.throttle.clone();
    let stream = Box::pin(stream.then(move |piece| {
        let throttle = throttle.clone();
        async move {
            if let Ok(bytes) = &piece {
                throttle.acquire(bytes.len() as u64).await;
            }
            piece
        }
    }));
    let mut validator = if context.check_formats { Validator::for_key(&key) } else { None };
    let stored =
        match store_object(context.repository.as_ref(), chunk_size, stream, validator.as_mut())
            .await
        {
            Ok(stored) => stored,
            Err(StoreObjectError::Read(object_store::Error::NotFound { .. })) => {
                return Ok(Copied::Vanished(key))
            }
            Err(StoreObjectError::Read(source)) => return Err(TaskError::Source { key, source }),
            Err(StoreObjectError::Write(error)) => return Err(TaskError::Repository(error)),
        };
    context.progress.done(stored.size);
    let format = match validator {
        Some(validator) => {
            let kind = validator.kind();
            validator.finish().map_err(|reason| {
                warn!(%key, %reason, "object fails its format check");
                describe_corruption(&key, kind, &reason)
            })
        }
        None => Ok(crate::formats::Validated::default()),
    };
    let outcome = ReadOutcome { bytes_written: stored.bytes_written, format };
    Ok(Copied::Entry(
        ObjectEntry {
            key,
            size: stored.size,
            blake3: stored.blake3,
            chunks: stored.chunks,
            etag: meta.e_tag,
            last_modified,
            phase: phase.to_string(),
            node: node.to_string(),
        },
        outcome,
    ))
}

/// Lists every object under `prefix` (a directory-like prefix ending in `/`).
pub fn list_prefix(
    context: &TaskContext,
    prefix: &str,
) -> impl Stream<Item = Result<ObjectMeta, TaskError>> + 'static {
    let path = object_store::path::Path::from(prefix.trim_end_matches('/'));
    let key = prefix.to_string();
    context
        .source
        .list(Some(&path))
        .map_err(move |source| TaskError::Source { key: key.clone(), source })
}

/// Returns the object at `key`, or `None` if it does not exist.
///
/// # Errors
/// [`TaskError::Source`] when the store fails otherwise.
pub async fn head_if_exists(
    context: &TaskContext,
    key: &str,
) -> Result<Option<ObjectMeta>, TaskError> {
    match context.source.head(&object_store::path::Path::from(key)).await {
        Ok(meta) => Ok(Some(meta)),
        Err(object_store::Error::NotFound { .. }) => Ok(None),
        Err(source) => Err(TaskError::Source { key: key.to_string(), source }),
    }
}
