//! Restore tasks: the guards (write nothing), the wipe, and writing a backup's objects back.
//!
//! An object becomes visible at its key only after every blob it is made of opened (it is
//! sealed: any alteration fails) and hashed to its id. Objects of one blob (most of them: small
//! files) are fetched pack by pack with ranged reads covering many at once, so a thousand WAL
//! files cost a few GETs; larger objects are read blob by blob and written with one put, or a
//! multipart upload completed only after the last blob checked out (aborted otherwise).

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::Arc;
use std::time::Duration;

use bk_proto::ids::BackupId;
use bk_proto::model::{CopyPhase, TaskReport};
use bytes::{Bytes, BytesMut};
use futures::stream::BoxStream;
use futures::{stream, StreamExt, TryStreamExt};
use object_store::path::Path;
use object_store::{ObjectMeta, ObjectStore, ObjectStoreExt, PutPayload, WriteMultipart};

use super::context::TaskContext;
use crate::error::{RepositoryError, TaskError};
use crate::repository::blob::Plaintext;
use crate::repository::buffers::CHUNKS;
use crate::repository::crypto::BlobId;
use crate::repository::index_cache::IndexView;
use crate::repository::list::{MergedView, ObjectEntry};
use crate::repository::manifest::ScopeList;
use crate::repository::pack::{PackEntry, PackId};
use crate::repository::reader::{
    check_key_is_safe, open_stored_blob_in_place, read_located_blob, read_manifest,
    read_pack_range, OpenedBlob,
};
use crate::repository::source::ChunkSource;

/// Objects up to this size are assembled in memory and written with a single put.
const SINGLE_PUT_LIMIT: u64 = 16 << 20;
/// Multipart parts are at least this big (S3's minimum is 5 MiB).
const MIN_PART_SIZE: usize = 8 << 20;
/// Ranged reads of a pack are merged across gaps up to this size, into reads of at most the
/// repository's chunk size (at least this): a read holds one object permit, so a restore's
/// memory is bounded like a backup's, by permits × chunk size.
const MAX_RANGE_GAP: u64 = 1 << 20;

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
/// [`TaskError::Target`] when listing or deleting fails.
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
            .map_err(|source| TaskError::Target { key: prefix.clone(), source })?;
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

/// Entries restored together: their blobs are looked up and their packs read in one go.
const BATCH: usize = 4096;

/// Writes the backup's objects of `phase` (and `node`) into the target, scope by scope, a
/// batch of entries at a time: memory is bounded by a batch, not by the backup.
///
/// # Errors
/// [`TaskError::Invalid`] for an unsafe key, [`TaskError::Damaged`] naming the object and blob
/// when backup data is missing or altered, [`TaskError::Target`] when the target refuses a
/// write, store errors otherwise.
pub async fn restore_objects(
    context: &TaskContext,
    backup_id: BackupId,
    target_url: &str,
    phase: CopyPhase,
    node: Option<&str>,
) -> Result<TaskReport, TaskError> {
    let repository = &context.repository;
    let manifest = read_manifest(repository, backup_id).await?;
    let target = open_target(context, target_url, true)?
        .ok_or_else(|| TaskError::Invalid(format!("cannot create target `{target_url}`")))?;
    let lists: Vec<&ScopeList> = manifest
        .scopes
        .iter()
        .filter(|list| list.phase == phase && node.is_none_or(|node| list.node == node))
        .collect();
    let mut partitions: Vec<String> = lists.iter().map(|list| list.partition()).collect();
    partitions.sort();
    partitions.dedup();
    let index = context.worker.repositories.index(repository, &partitions).await?;
    // Only a target that held something under these prefixes before this task wrote (a
    // `--resume`) is listed to find what is there already; a fresh one costs nothing more.
    let mut held_before = Vec::with_capacity(lists.len());
    for list in &lists {
        let path = Path::from(list.scope.prefix.trim_end_matches('/'));
        let first = target.list(Some(&path)).next().await.transpose();
        let first =
            first.map_err(|source| TaskError::Target { key: list.scope.prefix.clone(), source })?;
        held_before.push(first.is_some());
    }
    let mut report = TaskReport::default();
    for (list, held) in lists.into_iter().zip(held_before) {
        let mut view =
            MergedView::new(repository, &list.runs, &list.scope.prefix).in_scope(&list.scope);
        let mut present = TargetCursor::new(target.as_ref(), &list.scope.prefix, held);
        loop {
            let mut batch = Vec::with_capacity(BATCH);
            while batch.len() < BATCH {
                match view.next().await? {
                    Some(entry) => batch.push(entry),
                    None => break,
                }
            }
            if batch.is_empty() {
                break;
            }
            restore_batch(context, &index, &target, batch, &mut present, &mut report).await?;
        }
    }
    if phase == CopyPhase::Licence
        && report.num_objects > 0
        && normalize(target_url) != normalize(&context.worker.config.store.url)
    {
        report.warnings.push(format!(
            "licence files were restored to `{target_url}`, not the source store `{}`: InfluxDB 3 Enterprise licences are \
             bound to their bucket/path, so this cluster may need a new licence from InfluxData",
            context.worker.config.store.url
        ));
    }
    Ok(report)
}

/// Restores one batch of entries (in key order).
async fn restore_batch(
    context: &TaskContext,
    index: &IndexView,
    target: &Arc<dyn ObjectStore>,
    entries: Vec<ObjectEntry>,
    present: &mut TargetCursor,
    report: &mut TaskReport,
) -> Result<(), TaskError> {
    let mut sizes = HashMap::new();
    for entry in &entries {
        check_key_is_safe(&entry.key).map_err(TaskError::Invalid)?;
        context.progress.listed(entry.size);
        if let Some(size) = present.size_of(&entry.key).await? {
            sizes.insert(entry.key.clone(), size);
        }
    }
    let located = locate(index, &entries).await?;
    let (small, large): (Vec<_>, Vec<_>) =
        entries.iter().zip(located).partition(|(entry, _)| entry.blobs.len() <= 1);
    let mut written = restore_small(context, index, target, &small, &sizes).await?;
    for (entry, locations) in large {
        let fresh = !restored_already(context, target.as_ref(), entry, &sizes).await?;
        if fresh {
            restore_large(context, index, target.as_ref(), entry, &locations).await?;
        }
        context.progress.done(entry.size);
        written.insert(entry.key.clone(), fresh);
    }
    for entry in &entries {
        report.num_objects += 1;
        report.num_bytes += entry.size;
        report.num_skipped += u64::from(!written.get(&entry.key).copied().unwrap_or(true));
    }
    Ok(())
}

/// Where each blob of an entry is (`None`: in no index file).
type Located = Vec<Option<(PackId, PackEntry)>>;

async fn locate(index: &IndexView, entries: &[ObjectEntry]) -> Result<Vec<Located>, TaskError> {
    let index = index.clone();
    let wanted: Vec<Vec<BlobId>> = entries.iter().map(|entry| entry.blobs.clone()).collect();
    tokio::task::spawn_blocking(move || {
        wanted.iter().map(|blobs| blobs.iter().map(|id| index.get(id)).collect()).collect()
    })
    .await
    .map_err(|error| TaskError::Retryable(format!("looking blobs up was interrupted: {error}")))
}

/// The objects already in the target under a scope's prefix, listed in key order alongside the
/// entries being restored (one listing per scope, nothing held: for `--resume`).
struct TargetCursor {
    listed: Option<BoxStream<'static, object_store::Result<ObjectMeta>>>,
    head: Option<ObjectMeta>,
    prefix: String,
}

impl TargetCursor {
    /// A cursor over the target under `prefix`; one that lists nothing unless `held`.
    fn new(target: &dyn ObjectStore, prefix: &str, held: bool) -> Self {
        let path = Path::from(prefix.trim_end_matches('/'));
        let listed = held.then(|| target.list(Some(&path)));
        Self { listed, head: None, prefix: prefix.to_string() }
    }

    /// The size of the object at `key` in the target, if there is one; keys are asked for in
    /// increasing order.
    async fn size_of(&mut self, key: &str) -> Result<Option<u64>, TaskError> {
        loop {
            if let Some(head) = &self.head {
                match head.location.as_ref().cmp(key) {
                    std::cmp::Ordering::Less => self.head = None,
                    std::cmp::Ordering::Equal => return Ok(Some(head.size)),
                    std::cmp::Ordering::Greater => return Ok(None),
                }
            }
            let Some(listed) = self.listed.as_mut() else { return Ok(None) };
            match listed.next().await {
                Some(Ok(meta)) => self.head = Some(meta),
                Some(Err(source)) => {
                    return Err(TaskError::Target { key: self.prefix.clone(), source })
                }
                None => {
                    self.listed = None;
                    return Ok(None);
                }
            }
        }
    }
}

/// Restores one-blob (and empty) objects, fetching each pack's blobs with as few ranged reads
/// as their placement allows. Returns, per key, whether it was written (false: already there).
async fn restore_small(
    context: &TaskContext,
    index: &IndexView,
    target: &Arc<dyn ObjectStore>,
    entries: &[(&ObjectEntry, Located)],
    present: &HashMap<String, u64>,
) -> Result<HashMap<String, bool>, TaskError> {
    let mut written = HashMap::new();
    let mut by_pack: BTreeMap<PackId, Vec<(PackEntry, &ObjectEntry)>> = BTreeMap::new();
    for (entry, located) in entries {
        if restored_already(context, target.as_ref(), entry, present).await? {
            context.progress.done(entry.size);
            written.insert(entry.key.clone(), false);
            continue;
        }
        let Some(id) = entry.blobs.first() else {
            put_object(target.as_ref(), entry, PutPayload::default()).await?;
            written.insert(entry.key.clone(), true);
            continue;
        };
        let (pack, location) =
            located.first().copied().flatten().ok_or_else(|| not_indexed(entry, id, index))?;
        by_pack.entry(pack).or_default().push((location, *entry));
    }
    let max_range = context.repository.config.chunk_size.max(MAX_RANGE_GAP);
    let ranges: Vec<(PackId, Vec<(PackEntry, &ObjectEntry)>)> = by_pack
        .into_iter()
        .flat_map(|(pack, mut items)| {
            items.sort_by_key(|(location, _)| location.offset);
            coalesce(items, max_range).into_iter().map(move |range| (pack, range))
        })
        .collect();
    let parallel = context.worker.max_objects_in_flight().clamp(1, 8);
    // After a failure no new range starts, but the ones writing finish: a write dropped midway
    // would go on in the store's blocking thread (or leave its staging file) after the task
    // reported, and the target must be still once the job says the restore ended.
    let failed = std::sync::atomic::AtomicBool::new(false);
    let failed = &failed;
    // Futures collected first: a closure inside the stream type trips rustc's Send inference.
    let reads: Vec<_> = ranges
        .into_iter()
        .map(|(pack, items)| async move {
            if failed.load(std::sync::atomic::Ordering::Relaxed) {
                return Ok(Vec::new());
            }
            let restored = restore_range(context, target.as_ref(), pack, items).await;
            if restored.is_err() {
                failed.store(true, std::sync::atomic::Ordering::Relaxed);
            }
            restored
        })
        .collect();
    let results: Vec<Result<Vec<String>, TaskError>> =
        stream::iter(reads).buffer_unordered(parallel).collect().await;
    let restored = results.into_iter().collect::<Result<Vec<Vec<String>>, TaskError>>()?;
    written.extend(restored.into_iter().flatten().map(|key| (key, true)));
    Ok(written)
}

/// Cuts a pack's wanted blobs (sorted by offset) into reads of at most `max_range` bytes (or
/// one blob, if larger), merging across gaps up to [`MAX_RANGE_GAP`].
fn coalesce<T>(items: Vec<(PackEntry, T)>, max_range: u64) -> Vec<Vec<(PackEntry, T)>> {
    let mut ranges: Vec<Vec<(PackEntry, T)>> = Vec::new();
    for item in items {
        let start_new = match ranges.last().and_then(|range| Some((range.first()?, range.last()?)))
        {
            None => true,
            Some(((first, _), (last, _))) => {
                let end = last.offset + u64::from(last.length);
                item.0.offset > end + MAX_RANGE_GAP
                    || item.0.offset + u64::from(item.0.length) - first.offset > max_range
            }
        };
        if start_new {
            ranges.push(vec![item]);
        } else if let Some(range) = ranges.last_mut() {
            range.push(item);
        }
    }
    ranges
}

async fn restore_range(
    context: &TaskContext,
    target: &dyn ObjectStore,
    pack: PackId,
    items: Vec<(PackEntry, &ObjectEntry)>,
) -> Result<Vec<String>, TaskError> {
    let _permit = context.worker.object_permit().await?;
    let (Some((first, _)), Some((last, _))) = (items.first(), items.last()) else {
        return Ok(Vec::new());
    };
    let start = first.offset;
    let end = last.offset + u64::from(last.length);
    // The range read, and each blob's plaintext while it is written.
    let largest = items.iter().map(|(location, _)| location.raw_length as usize).max().unwrap_or(0);
    let _memory = context
        .worker
        .memory
        .take((end - start) as usize + largest)
        .await
        .map_err(TaskError::Abandoned)?;
    let bytes = read_pack_range(&context.repository, pack, start, end)
        .await
        .map_err(|error| damaged_pack(error, items[0].1, pack))?;
    // Every blob is opened where it lies in the range's buffer, and written from there. A blob
    // several objects share (identical files) is opened once: it is plaintext after that.
    let mut buffer = bytes.try_into_mut().unwrap_or_else(|shared| BytesMut::from(&shared[..]));
    let mut opened: Vec<(u64, Opened)> = Vec::with_capacity(items.len());
    for (location, entry) in &items {
        if let Some((offset, plaintext)) = opened.last() {
            if *offset == location.offset {
                let same = plaintext.clone();
                opened.push((location.offset, same));
                continue;
            }
        }
        let from = (location.offset - start) as usize;
        let stored = &mut buffer[from..from + location.length as usize];
        let plaintext = open_stored_blob_in_place(&context.repository, pack, location, stored)
            .map_err(|error| {
                TaskError::Damaged(format!(
                    "object `{}`: {error}; nothing was written at it",
                    entry.key
                ))
            })?;
        opened.push((
            location.offset,
            match plaintext {
                Plaintext::InPlace(range) => Opened::At(from + range.start..from + range.end),
                Plaintext::Decompressed(plaintext) => Opened::Own(Bytes::from(plaintext)),
            },
        ));
    }
    let buffer = buffer.freeze();
    let mut keys = Vec::with_capacity(items.len());
    for ((_, entry), (_, plaintext)) in items.into_iter().zip(opened) {
        let plaintext = match plaintext {
            Opened::At(range) => buffer.slice(range),
            Opened::Own(plaintext) => plaintext,
        };
        put_object(target, entry, plaintext.into()).await?;
        context.progress.done(entry.size);
        keys.push(entry.key.clone());
    }
    CHUNKS.give_bytes(buffer);
    Ok(keys)
}

/// A blob of a pack range, opened: where its plaintext lies in the range's buffer, or its own
/// buffer (decompressed).
#[derive(Clone)]
enum Opened {
    At(std::ops::Range<usize>),
    Own(Bytes),
}

/// Restores an object of several blobs, reading them in order.
async fn restore_large(
    context: &TaskContext,
    index: &IndexView,
    target: &dyn ObjectStore,
    entry: &ObjectEntry,
    located: &Located,
) -> Result<(), TaskError> {
    let _permit = context.worker.object_permit().await?;
    let key = object_key(&entry.key)?;
    let target_error = |source| TaskError::Target { key: entry.key.clone(), source };
    let blobs = entry.blobs.iter().zip(located);
    // Assembled whole (small), or two parts in flight plus the blob being read.
    let part_size = MIN_PART_SIZE.max(context.repository.config.chunk_size as usize);
    let held = if entry.size <= SINGLE_PUT_LIMIT { entry.size as usize } else { 3 * part_size };
    let _memory = context.worker.memory.take(held).await.map_err(TaskError::Abandoned)?;
    // Each blob's plaintext is handed to the target as read (no copy), and its buffer goes
    // back to the pool once the target is done with it.
    if entry.size <= SINGLE_PUT_LIMIT {
        let mut parts = Vec::with_capacity(entry.blobs.len());
        for (id, location) in blobs {
            parts.push(read_object_blob(context, index, entry, id, location).await?);
        }
        let payload = parts.iter().map(|part| part.plaintext.clone()).collect();
        put_object(target, entry, payload).await?;
        parts.into_iter().for_each(OpenedBlob::recycle);
        return Ok(());
    }
    let upload = target.put_multipart(&key).await.map_err(target_error)?;
    let mut writer = WriteMultipart::new_with_chunk_size(upload, part_size);
    let mut written = VecDeque::new();
    for (id, location) in blobs {
        let bytes = match read_object_blob(context, index, entry, id, location).await {
            Ok(bytes) => bytes,
            Err(error) => {
                let _ = writer.abort().await;
                return Err(error);
            }
        };
        if let Err(error) = writer.wait_for_capacity(2).await {
            let _ = writer.abort().await;
            return Err(target_error(error));
        }
        writer.put(bytes.plaintext.clone());
        written.push_back(bytes);
        // A blob a part still holds is not taken (see `recycle`); it is freed when the part is.
        while written.len() > 3 {
            written.pop_front().into_iter().for_each(OpenedBlob::recycle);
        }
    }
    // `finish` aborts a failed upload itself: its parts are removed before the task reports,
    // not by a background cleanup after it.
    writer.finish().await.map_err(target_error)?;
    written.into_iter().for_each(OpenedBlob::recycle);
    Ok(())
}

async fn read_object_blob(
    context: &TaskContext,
    index: &IndexView,
    entry: &ObjectEntry,
    id: &BlobId,
    location: &Option<(PackId, PackEntry)>,
) -> Result<OpenedBlob, TaskError> {
    let (pack, place) = location.ok_or_else(|| not_indexed(entry, id, index))?;
    read_located_blob(&context.repository, pack, &place).await.map_err(|error| match error {
        crate::repository::reader::BlobReadError::Repository(error) => TaskError::Repository(error),
        other => TaskError::Damaged(format!(
            "object `{}`: {other}; nothing was written at it",
            entry.key
        )),
    })
}

async fn put_object(
    target: &dyn ObjectStore,
    entry: &ObjectEntry,
    payload: PutPayload,
) -> Result<(), TaskError> {
    if payload.content_length() as u64 != entry.size {
        return Err(TaskError::Damaged(format!(
            "object `{}`: its blobs hold {} bytes, the backup records {}; nothing was written at it",
            entry.key,
            payload.content_length(),
            entry.size
        )));
    }
    let key = object_key(&entry.key)?;
    target
        .put(&key, payload)
        .await
        .map_err(|source| TaskError::Target { key: entry.key.clone(), source })?;
    Ok(())
}

fn not_indexed(entry: &ObjectEntry, id: &BlobId, index: &IndexView) -> TaskError {
    TaskError::Damaged(format!(
        "object `{}`: blob {id} is in no index of the repository{}; nothing was written at it",
        entry.key,
        index.why_missing()
    ))
}

fn damaged_pack(error: RepositoryError, entry: &ObjectEntry, pack: PackId) -> TaskError {
    let path = crate::repository::layout::pack_path(pack);
    match error {
        RepositoryError::Store { source: object_store::Error::NotFound { .. }, .. } => {
            TaskError::Damaged(format!(
            "object `{}`: pack `{path}` is missing from the repository; nothing was written at it",
            entry.key
        ))
        }
        RepositoryError::Corrupt { reason, .. } => TaskError::Damaged(format!(
            "object `{}`: pack `{path}`: {reason}; nothing was written at it",
            entry.key
        )),
        other => TaskError::Repository(other),
    }
}

/// Whether the target already holds the object with the right content (resume): same size,
/// and each chunk of it hashes to the entry's blob id.
async fn restored_already(
    context: &TaskContext,
    target: &dyn ObjectStore,
    entry: &ObjectEntry,
    present: &HashMap<String, u64>,
) -> Result<bool, TaskError> {
    if present.get(&entry.key) != Some(&entry.size) {
        return Ok(false);
    }
    let key = object_key(&entry.key)?;
    let target_error = |source| TaskError::Target { key: entry.key.clone(), source };
    let mut source = ChunkSource::new(target.get(&key).await.map_err(target_error)?);
    let chunk_size = context.repository.config.chunk_size as usize;
    let mut blobs = entry.blobs.iter();
    while let Some(chunk) = source.next_chunk(chunk_size).await.map_err(target_error)? {
        if blobs.next() != Some(&context.repository.key.blob_id(&chunk)) {
            return Ok(false);
        }
    }
    Ok(blobs.next().is_none())
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
    let worker = &context.worker;
    worker
        .open_store(target_url, &worker.config.store.options, create)
        .map(Some)
        .map_err(|error| TaskError::Invalid(format!("restore target: {error}")))
}

/// Keys under a directory-like prefix (ending in `/`, or empty for everything), or the key
/// itself if it exists.
async fn list_under(target: &dyn ObjectStore, prefix: &str) -> Result<Vec<Path>, TaskError> {
    let source_error = |source| TaskError::Target { key: prefix.to_string(), source };
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

/// Makes the restored QuestDB root recover from its checkpoint on the next start, last, and
/// tells the operator what happens next ([`crate::questdb::recovery`]).
///
/// # Errors
/// Store errors; a root without a checkpoint.
pub async fn write_restore_trigger(
    context: &TaskContext,
    target_url: &str,
) -> Result<TaskReport, TaskError> {
    let target = open_target(context, target_url, true)?
        .ok_or_else(|| TaskError::Invalid(format!("cannot open target `{target_url}`")))?;
    let restore_name = context.spec.task_id.job_id.to_string();
    let armed = crate::questdb::recovery::arm_recovery(target.as_ref(), &restore_name).await?;
    let mut report = TaskReport { num_objects: 1, ..TaskReport::default() };
    report.warnings.push(armed.explain(target_url));
    Ok(report)
}

fn normalize(url: &str) -> String {
    url.trim_end_matches('/').to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::repository::crypto::BlobId;

    fn blob(offset: u64, length: u32) -> (PackEntry, ()) {
        let entry = PackEntry { id: BlobId([0; 32]), offset, length, raw_length: length, flags: 0 };
        (entry, ())
    }

    fn shape(ranges: &[Vec<(PackEntry, ())>]) -> Vec<Vec<u64>> {
        ranges.iter().map(|range| range.iter().map(|(entry, _)| entry.offset).collect()).collect()
    }

    #[test]
    fn test_wanted_blobs_are_read_in_ranges_no_longer_than_the_limit() {
        const MIB: u64 = 1 << 20;
        // (case, wanted blobs, read limit, offsets of each read)
        type Case = (&'static str, Vec<(PackEntry, ())>, u64, Vec<Vec<u64>>);
        let cases: Vec<Case> = vec![
            (
                "adjacent blobs share a read",
                vec![blob(0, 100), blob(100, 100)],
                8 * MIB,
                vec![vec![0, 100]],
            ),
            (
                "a gap up to 1 MiB is read through",
                vec![blob(0, 100), blob(MIB, 100)],
                8 * MIB,
                vec![vec![0, MIB]],
            ),
            (
                "a larger gap starts a new read",
                vec![blob(0, 100), blob(2 * MIB, 100)],
                8 * MIB,
                vec![vec![0], vec![2 * MIB]],
            ),
            (
                "a read stops at the limit",
                vec![blob(0, MIB as u32), blob(MIB, MIB as u32), blob(2 * MIB, MIB as u32)],
                2 * MIB,
                vec![vec![0, MIB], vec![2 * MIB]],
            ),
            (
                "a blob larger than the limit is read alone",
                vec![blob(0, 3 * MIB as u32), blob(3 * MIB, 10)],
                2 * MIB,
                vec![vec![0], vec![3 * MIB]],
            ),
            ("nothing wanted, nothing read", vec![], 2 * MIB, vec![]),
        ];
        for (case, items, max_range, want) in cases {
            assert_eq!(shape(&coalesce(items, max_range)), want, "{case}");
        }
    }

    #[test]
    fn test_manifest_keys_are_parsed_as_stored_and_target_urls_compare_without_a_trailing_slash() {
        assert_eq!(object_key("db/trades~1/_txn").unwrap().as_ref(), "db/trades~1/_txn");
        let error = object_key("a//b").unwrap_err().to_string();
        assert!(error.contains("manifest key `a//b` is not a valid object path"), "{error}");
        assert_eq!(normalize("file:///restore/"), normalize("file:///restore"));
    }
}
