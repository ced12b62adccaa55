//! Restore tasks: the guards (write nothing), the wipe, and writing a backup's objects back.
//!
//! An object becomes visible at its key only after every chunk and the whole object re-hashed
//! to what the manifest records: small objects are assembled in memory and written with one
//! atomic put; large ones stream through a multipart upload that is completed only after the
//! final hash check (and aborted otherwise).

use std::sync::Arc;
use std::time::Duration;

use bk_proto::ids::BackupId;
use bk_proto::model::TaskReport;
use bytes::{Bytes, BytesMut};
use futures::{stream, StreamExt, TryStreamExt};
use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt, PutPayload, WriteMultipart};

use super::TaskContext;
use crate::error::{RepositoryError, TaskError};
use crate::repository::layout::chunk_key;
use crate::repository::manifest::ObjectEntry;
use crate::repository::reader::{check_key_is_safe, read_all, read_manifest, read_segment};
use crate::store::open_store;

/// Objects up to this size are assembled in memory and written with a single put.
const SINGLE_PUT_LIMIT: u64 = 16 << 20;
/// Multipart parts are at least this big (S3's minimum is 5 MiB).
const MIN_PART_SIZE: usize = 8 << 20;

/// Guard: the node is stopped and the target prefixes are empty (unless allowed). Writes nothing.
///
/// # Errors
/// [`TaskError::Invalid`] naming the node or prefix and the fix.
pub async fn check_restore_target(
    context: &TaskContext,
    node: &str,
    target_url: &str,
    prefixes: &[String],
    http_endpoint: Option<&str>,
    allow_existing: bool,
) -> Result<TaskReport, TaskError> {
    if let Some(endpoint) = http_endpoint {
        check_node_stopped(node, endpoint).await?;
    }
    let mut report = TaskReport::default();
    let Some(target) = open_target(context, target_url, false)? else {
        return Ok(report); // A directory that does not exist yet is empty.
    };
    for prefix in prefixes {
        let existing = list_under(target.as_ref(), prefix).await?;
        if existing.is_empty() {
            continue;
        }
        if !allow_existing {
            return Err(TaskError::Invalid(format!(
                "target `{target_url}` is not empty: {} object(s) under `{prefix}` (e.g. `{}`); restoring over them would \
                 mix two states. Pass --wipe to delete exactly the prefixes this restore writes, or --resume to continue \
                 an earlier restore into it",
                existing.len(),
                existing[0]
            )));
        }
        report.warnings.push(format!(
            "{} object(s) already under `{prefix}` in `{target_url}`",
            existing.len()
        ));
    }
    Ok(report)
}

async fn check_node_stopped(node: &str, endpoint: &str) -> Result<(), TaskError> {
    let url = url::Url::parse(endpoint).map_err(|error| {
        TaskError::Invalid(format!("node `{node}`: invalid HTTP endpoint `{endpoint}`: {error}"))
    })?;
    let host = url.host_str().unwrap_or("localhost").to_string();
    let port = url.port_or_known_default().unwrap_or(8181);
    let connect = tokio::time::timeout(
        Duration::from_secs(3),
        tokio::net::TcpStream::connect((host.as_str(), port)),
    )
    .await;
    match connect {
        Err(_) => Err(TaskError::Invalid(format!(
            "cannot confirm node `{node}` is stopped: its HTTP endpoint `{endpoint}` neither accepted nor refused a connection \
             within 3s; stop the node and make its endpoint reachable from this worker (or re-register the source without \
             it and pass --nodes-stopped)"
        ))),
        Ok(Ok(_)) => Err(TaskError::Invalid(format!(
            "node `{node}` is running: its endpoint `{endpoint}` accepted a connection; stop every node before restoring"
        ))),
        Ok(Err(error)) if error.kind() == std::io::ErrorKind::ConnectionRefused => Ok(()),
        Ok(Err(error)) => Err(TaskError::Invalid(format!(
            "cannot confirm node `{node}` is stopped: connecting to `{endpoint}` failed with `{error}` instead of being refused"
        ))),
    }
}

/// Deletes exactly `prefixes` in the target and says how much it deleted.
///
/// # Errors
/// [`TaskError::Source`] when listing or deleting fails.
pub async fn wipe_target(
    context: &TaskContext,
    target_url: &str,
    prefixes: &[String],
) -> Result<TaskReport, TaskError> {
    let mut report = TaskReport::default();
    let Some(target) = open_target(context, target_url, false)? else {
        return Ok(report);
    };
    for prefix in prefixes {
        let keys = list_under(target.as_ref(), prefix).await?;
        let locations = stream::iter(keys.into_iter().map(Ok)).boxed();
        let deleted: Vec<Path> = target
            .delete_stream(locations)
            .try_collect()
            .await
            .map_err(|source| TaskError::Source { key: prefix.clone(), source })?;
        if !deleted.is_empty() {
            report.warnings.push(format!(
                "--wipe deleted {} object(s) under `{prefix}` in `{target_url}`",
                deleted.len()
            ));
            report.num_objects += deleted.len() as u64;
        }
    }
    Ok(report)
}

/// Writes the backup's objects of `phase` (and `node`) into the target.
///
/// # Errors
/// [`TaskError::Invalid`] for an unsafe key, [`TaskError::Damaged`] naming the object and chunk
/// when backup data is missing or corrupt, store errors otherwise.
pub async fn restore_objects(
    context: &TaskContext,
    backup_id: BackupId,
    target_url: &str,
    phase: &str,
    node: Option<&str>,
) -> Result<TaskReport, TaskError> {
    let manifest = read_manifest(context.repository.as_ref(), backup_id).await?;
    let target = open_target(context, target_url, true)?
        .ok_or_else(|| TaskError::Invalid(format!("cannot create target `{target_url}`")))?;
    let mut report = TaskReport::default();
    for segment in &manifest.segments {
        let entries: Vec<ObjectEntry> = read_segment(context.repository.as_ref(), segment)
            .await?
            .into_iter()
            .filter(|entry| entry.phase == phase && node.is_none_or(|node| entry.node == node))
            .collect();
        for entry in &entries {
            check_key_is_safe(&entry.key).map_err(TaskError::Invalid)?;
            context.progress.listed(entry.size);
        }
        // Futures collected first: a closure inside the stream type trips rustc's Send inference.
        let restores: Vec<_> =
            entries.iter().map(|entry| restore_one(context, target.clone(), entry)).collect();
        let outcomes: Vec<bool> = stream::iter(restores)
            .buffered(context.max_objects_in_flight.max(1))
            .try_collect()
            .await?;
        for (entry, written) in entries.iter().zip(&outcomes) {
            report.num_objects += 1;
            report.num_bytes += entry.size;
            report.num_skipped += u64::from(!written);
        }
    }
    if phase == "licence"
        && report.num_objects > 0
        && normalize(target_url) != normalize(&context.store_url)
    {
        report.warnings.push(format!(
            "licence files were restored to `{target_url}`, not the source store `{}`: InfluxDB 3 Enterprise licences are \
             bound to their bucket/path, so this cluster may need a new licence from InfluxData",
            context.store_url
        ));
    }
    Ok(report)
}

/// Restores one object; returns false when it was already there with the right content.
async fn restore_one(
    context: &TaskContext,
    target: Arc<dyn ObjectStore>,
    entry: &ObjectEntry,
) -> Result<bool, TaskError> {
    let _permit = context
        .object_permits
        .acquire()
        .await
        .map_err(|_| TaskError::Abandoned("worker stopping".into()))?;
    let key = object_key(&entry.key)?;
    if already_restored(target.as_ref(), &key, entry).await? {
        context.progress.done(entry.size);
        return Ok(false);
    }
    let target_error = |source| TaskError::Source { key: entry.key.clone(), source };
    if entry.size <= SINGLE_PUT_LIMIT {
        let mut bytes = BytesMut::with_capacity(entry.size as usize);
        for chunk in &entry.chunks {
            bytes.extend_from_slice(&read_chunk(context, entry, chunk).await?);
        }
        check_object_hash(entry, &bytes)?;
        target.put(&key, PutPayload::from(bytes.freeze())).await.map_err(target_error)?;
    } else {
        let upload = target.put_multipart(&key).await.map_err(target_error)?;
        let mut writer = WriteMultipart::new_with_chunk_size(
            upload,
            MIN_PART_SIZE.max(context.repository_info.chunk_size as usize),
        );
        let mut hasher = blake3::Hasher::new();
        for chunk in &entry.chunks {
            let bytes = match read_chunk(context, entry, chunk).await {
                Ok(bytes) => bytes,
                Err(error) => {
                    let _ = writer.abort().await;
                    return Err(error);
                }
            };
            hasher.update(&bytes);
            writer.wait_for_capacity(2).await.map_err(target_error)?;
            writer.put(bytes);
        }
        if hasher.finalize().to_hex().as_str() != entry.blake3 {
            let _ = writer.abort().await;
            return Err(TaskError::Damaged(format!(
                "object `{}`: its chunks do not hash to its BLAKE3 `{}`",
                entry.key, entry.blake3
            )));
        }
        writer.finish().await.map_err(target_error)?;
    }
    context.progress.done(entry.size);
    Ok(true)
}

async fn read_chunk(
    context: &TaskContext,
    entry: &ObjectEntry,
    chunk: &str,
) -> Result<Bytes, TaskError> {
    let bytes = match read_all(context.repository.as_ref(), &chunk_key(chunk)).await {
        Ok(bytes) => bytes,
        Err(RepositoryError::Store { source: object_store::Error::NotFound { .. }, .. }) => {
            return Err(TaskError::Damaged(format!(
                "object `{}`: chunk `{chunk}` is missing from the repository",
                entry.key
            )));
        }
        Err(error) => return Err(error.into()),
    };
    let actual = blake3::hash(&bytes).to_hex().to_string();
    if actual != chunk {
        return Err(TaskError::Damaged(format!(
            "object `{}`: chunk `{chunk}` is corrupt (its bytes hash to `{actual}`); nothing was written at `{}`",
            entry.key, entry.key
        )));
    }
    Ok(bytes)
}

fn check_object_hash(entry: &ObjectEntry, bytes: &[u8]) -> Result<(), TaskError> {
    if blake3::hash(bytes).to_hex().as_str() == entry.blake3 {
        Ok(())
    } else {
        Err(TaskError::Damaged(format!(
            "object `{}`: its chunks do not hash to its BLAKE3 `{}`",
            entry.key, entry.blake3
        )))
    }
}

/// Whether the target already holds the object with the right size and BLAKE3 (resume).
async fn already_restored(
    target: &dyn ObjectStore,
    key: &Path,
    entry: &ObjectEntry,
) -> Result<bool, TaskError> {
    let meta = match target.head(key).await {
        Ok(meta) => meta,
        Err(object_store::Error::NotFound { .. }) => return Ok(false),
        Err(source) => return Err(TaskError::Source { key: entry.key.clone(), source }),
    };
    if meta.size != entry.size {
        return Ok(false);
    }
    let mut stream = target
        .get(key)
        .await
        .map_err(|source| TaskError::Source { key: entry.key.clone(), source })?
        .into_stream();
    let mut hasher = blake3::Hasher::new();
    while let Some(piece) = stream.next().await {
        hasher
            .update(&piece.map_err(|source| TaskError::Source { key: entry.key.clone(), source })?);
    }
    Ok(hasher.finalize().to_hex().as_str() == entry.blake3)
}

/// Opens a restore target with this worker's store options; `None` when it is a local
/// directory that does not exist and `create` is false (it is empty, and must not be created
/// by a guard).
fn open_target(
    context: &TaskContext,
    target_url: &str,
    create: bool,
) -> Result<Option<Arc<dyn ObjectStore>>, TaskError> {
    if !create {
        if let Ok(url) = url::Url::parse(target_url) {
            if url.scheme() == "file" && url.to_file_path().is_ok_and(|path| !path.exists()) {
                return Ok(None);
            }
        }
    }
    open_store(target_url, &context.store_options, &context.env, &context.retry, create)
        .map(Some)
        .map_err(|error| TaskError::Invalid(format!("restore target: {error}")))
}

/// Keys under a directory-like prefix (ending in `/`, or empty for everything), or the key
/// itself if it exists.
async fn list_under(target: &dyn ObjectStore, prefix: &str) -> Result<Vec<Path>, TaskError> {
    let source_error = |source| TaskError::Source { key: prefix.to_string(), source };
    if !prefix.is_empty() && !prefix.ends_with('/') {
        let key = Path::from(prefix);
        return match target.head(&key).await {
            Ok(_) => Ok(vec![key]),
            Err(object_store::Error::NotFound { .. }) => Ok(Vec::new()),
            Err(source) => Err(source_error(source)),
        };
    }
    let path = Path::from(prefix.trim_end_matches('/'));
    target.list(Some(&path)).map_ok(|meta| meta.location).try_collect().await.map_err(source_error)
}

/// A manifest key as an object path. Keys are stored in object_store's canonical (encoded)
/// form, as listed, so they are parsed, never re-encoded (`trades~1` stays `trades~1`).
fn object_key(key: &str) -> Result<Path, TaskError> {
    Path::parse(key).map_err(|error| {
        TaskError::Invalid(format!("manifest key `{key}` is not a valid object path: {error}"))
    })
}

/// Creates the empty `_restore` file in the QuestDB server root, last, and tells the operator
/// what happens next.
///
/// # Errors
/// Store errors writing it.
pub async fn write_restore_trigger(
    context: &TaskContext,
    target_url: &str,
) -> Result<TaskReport, TaskError> {
    let target = open_target(context, target_url, true)?
        .ok_or_else(|| TaskError::Invalid(format!("cannot open target `{target_url}`")))?;
    target
        .put(&Path::from("_restore"), PutPayload::default())
        .await
        .map_err(|source| TaskError::Source { key: "_restore".to_string(), source })?;
    let mut report = TaskReport { num_objects: 1, ..TaskReport::default() };
    report.warnings.push(format!(
        "restore written to `{target_url}` with the `_restore` trigger: start QuestDB now (same major version as the          backup). On start it finds `_restore`, recovers every table from the checkpoint directory (rebuilding symbol          maps, dropping partitions newer than the checkpoint), deletes `_restore` and the checkpoint directory, then runs          normally; if recovery fails it exits and leaves `_restore` in place, so fix the cause and start it again"
    ));
    Ok(report)
}

fn normalize(url: &str) -> String {
    url.trim_end_matches('/').to_string()
}
