//! Copying one object: read it once into blobs (checking its format as it streams past), wait
//! for the packs holding its new blobs, and say what became of it.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use bk_proto::model::CorruptObject;
use object_store::{ObjectMeta, ObjectStoreExt};
use tracing::warn;

use crate::error::TaskError;
use crate::formats::{describe_corruption, Validated, Validator};
use crate::repository::index::IndexEntry;
use crate::repository::list::ObjectEntry;
use crate::repository::source::ChunkSource;
use crate::repository::writer::{read_object, BlobWriter, StoreObjectError};
use crate::tasks::context::TaskContext;

/// How one object ended.
#[derive(Debug)]
pub enum Copied {
    /// Read and stored: its entry, where its new blobs are, and what reading found.
    Stored {
        /// Its entry.
        entry: ObjectEntry,
        /// Locations of the blobs this object added to packs (stored by now).
        new_blobs: Vec<IndexEntry>,
        /// Bytes of those blobs, plaintext and stored.
        bytes_written: u64,
        /// Stored bytes of those blobs.
        bytes_stored: u64,
        /// Its format check: what it told, or what is wrong with it.
        format: Result<Validated, CorruptObject>,
    },
    /// Gone from the source before it could be read (normal on a live database).
    Vanished(String),
}

/// How a task's objects move through reading: how many are reading (each holds one of the
/// task's reading slots), and a signal when one finishes reading.
#[derive(Debug, Default)]
pub struct ReadFlow {
    /// Objects reading.
    pub reading: AtomicUsize,
    /// Set when the task will start no more objects for now (its input ended, or its window is
    /// full): then the last object to finish reading flushes the open pack, since everything
    /// else of the task waits for a pack.
    pub idle_after_reads: AtomicBool,
    /// Signalled when an object finishes reading.
    pub finished_reading: tokio::sync::Notify,
}

/// Copies one object: reads it holding a worker-wide object permit, then waits for the packs
/// holding its new blobs. `flow.reading` must have been counted up for it by the caller.
///
/// # Errors
/// [`TaskError::Source`] when reading fails (not when the object vanished),
/// [`TaskError::Repository`] when storing fails.
pub async fn copy_object(
    context: &TaskContext,
    writer: &BlobWriter,
    meta: ObjectMeta,
    flow: &ReadFlow,
) -> Result<Copied, TaskError> {
    let key = meta.location.to_string();
    context.progress.listed(meta.size);
    let read = read_into_blobs(context, writer, &meta, &key).await;
    let was_last = flow.reading.fetch_sub(1, Ordering::SeqCst) == 1;
    if was_last && flow.idle_after_reads.load(Ordering::SeqCst) {
        writer.packer.flush(&writer.requests);
    }
    flow.finished_reading.notify_one();
    let (pending, validator) = match read? {
        Some(read) => read,
        None => return Ok(Copied::Vanished(key)),
    };
    let stored = pending.stored().await.map_err(|error| match error {
        StoreObjectError::Read(source) => TaskError::Source { key: key.clone(), source },
        StoreObjectError::Write(error) => TaskError::Repository(error),
    })?;
    context.progress.done(stored.size);
    let format = match validator {
        Some(validator) => {
            let kind = validator.kind();
            validator.finish().map_err(|reason| {
                warn!(%key, %reason, "object fails its format check");
                CorruptObject { key: key.clone(), reason: describe_corruption(&key, kind, &reason) }
            })
        }
        None => Ok(Validated::default()),
    };
    let mut entry = ObjectEntry::listed(&meta, stored.blobs);
    entry.size = stored.size;
    Ok(Copied::Stored {
        entry,
        new_blobs: stored.new_blobs,
        bytes_written: stored.bytes_written,
        bytes_stored: stored.bytes_stored,
        format,
    })
}

/// Reads an object into blobs; `None` when it is gone.
async fn read_into_blobs(
    context: &TaskContext,
    writer: &BlobWriter,
    meta: &ObjectMeta,
    key: &str,
) -> Result<Option<(crate::repository::writer::PendingObject, Option<Validator>)>, TaskError> {
    let _permit = context.worker.object_permit().await?;
    let result = match context.source.get(&meta.location).await {
        Ok(result) => result,
        Err(object_store::Error::NotFound { .. }) => {
            warn!(%key, "object vanished before it could be read");
            return Ok(None);
        }
        Err(source) => return Err(TaskError::Source { key: key.to_string(), source }),
    };
    let mut validator = if !context.worker.config.bench.skip_format_checks {
        Validator::for_key(key)
    } else {
        None
    };
    match read_object(writer, ChunkSource::new(result), validator.as_mut()).await {
        Ok(pending) => Ok(Some((pending, validator))),
        Err(StoreObjectError::Read(object_store::Error::NotFound { .. })) => Ok(None),
        Err(StoreObjectError::Read(source)) => {
            Err(TaskError::Source { key: key.to_string(), source })
        }
        Err(StoreObjectError::Write(error)) => Err(TaskError::Repository(error)),
    }
}
