//! Copying listed objects into the repository: the engine every copy task uses.
//!
//! A [`Copier`] is made once per task: it loads the repository's index, the parent backup's
//! entries under the task's prefix and what earlier attempts of the task recorded, once. Then
//! objects run independently (a large one does not hold up the others), at most
//! `max_objects_in_flight` reading at once across the worker; an object whose bytes are all
//! read releases its slot and waits for the pack holding its new blobs. Entries go to the
//! staging writer as objects complete. When every object still running waits for a pack, the
//! task flushes the open pack instead of waiting for others to fill it.
//!
//! Idempotent per task: an object whose entry the parent backup or an earlier attempt wrote,
//! with the same size, ETag and last-modified time, is reused without being read, provided its
//! blobs are still where an index says. Every object read is checked against its database's
//! format as it streams past ([`crate::formats`]); a damaged one is still copied, and reported.

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use bk_proto::model::{CopyPhase, CorruptObject, TaskReport, TransferStats};
use futures::stream::FuturesUnordered;
use futures::{StreamExt, TryStreamExt};
use object_store::{ObjectMeta, ObjectStoreExt};
use tracing::warn;

use super::TaskContext;
use crate::error::TaskError;
use crate::formats::{describe_corruption, Validated, Validator};
use crate::repository::crypto::BlobId;
use crate::repository::index::IndexEntry;
use crate::repository::manifest::{ObjectEntry, Scope};
use crate::repository::open::{ParentSegment, SharedSegment};
use crate::repository::source::ChunkSource;
use crate::repository::staging::{read_earlier, PartWriter};
use crate::repository::writer::{read_object, BlobWriter, StoreObjectError};

/// Totals of a copy.
#[derive(Debug, Default)]
pub struct CopyTotals {
    /// Objects in the result (copied or reused).
    pub num_objects: u64,
    /// Their bytes.
    pub num_bytes: u64,
    /// Objects that disappeared between listing and reading (normal on a live database).
    pub vanished: Vec<String>,
    /// The entries written.
    pub kept: Vec<ObjectEntry>,
    /// Objects reused, bytes read, written and stored (the task's `repository_puts` are
    /// counted by its store).
    pub transfer: TransferStats,
    /// Of the reused objects, the ones an earlier attempt of this task had copied.
    pub num_resumed: u64,
    /// Other events worth recording (e.g. an unreadable parent).
    pub notes: Vec<String>,
    /// Objects that failed their format check.
    pub corrupt: Vec<CorruptObject>,
    /// The catalog UUID of each v3 catalog file read, by key.
    pub catalog_uuids: Vec<(String, u128)>,
}

impl CopyTotals {
    /// Events worth recording: vanished objects (normal on a live database: WAL cleanup,
    /// retention; the consistency check decides whether the backup still holds a restartable
    /// state), and other notes.
    pub fn events(&self) -> Vec<String> {
        let resumed = (self.num_resumed > 0).then(|| {
            format!(
                "reused {} object(s) an earlier attempt had copied, without reading them",
                self.num_resumed
            )
        });
        self.vanished
            .iter()
            .map(|key| format!("`{key}` was deleted by the database between listing and copying"))
            .chain(resumed)
            .chain(self.notes.iter().cloned())
            .collect()
    }

    /// Adds these totals to a task's report.
    pub fn add_to(&self, report: &mut TaskReport) {
        report.corrupt.extend(self.corrupt.iter().cloned());
        report.num_objects += self.num_objects;
        report.num_bytes += self.num_bytes;
        report.transfer += self.transfer;
        report.events.extend(self.events());
    }
}

/// Entries that may be reused without reading their objects, with where their blobs are.
#[derive(Default)]
struct Reusable {
    /// The parent backup's segments that may hold the task's prefix (shared, sorted by key).
    parent: Vec<SharedSegment>,
    /// Entries an earlier attempt of this task wrote, by key: they win over the parent's.
    resumed: HashMap<String, ObjectEntry>,
    /// Blob locations an earlier attempt recorded (not yet in a committed index).
    blobs: HashMap<BlobId, IndexEntry>,
}

impl Reusable {
    /// The recorded entry of `key`, and whether an earlier attempt (not the parent) wrote it.
    fn get(&self, key: &str) -> Option<(&ObjectEntry, bool)> {
        if let Some(entry) = self.resumed.get(key) {
            return Some((entry, true));
        }
        self.parent.iter().filter_map(|segment| segment.get()?.get(key)).next().map(|e| (e, false))
    }

    /// The parent's entries in `scope`.
    fn parent_entries_in(&self, scope: &Scope) -> usize {
        let in_scope = |segment: &ParentSegment| segment.in_scope(scope).count();
        self.parent.iter().filter_map(|segment| segment.get()).map(in_scope).sum()
    }
}

/// Whether the task so far found only the parent's objects, unchanged: then it writes no
/// entries, and its done record names the parent's segments instead (see
/// [`crate::repository::manifest::DoneRecord::unchanged`]).
struct Unchanged {
    /// The parent's entries under the prefix: as many distinct keys must be reused.
    parent_entries: usize,
    /// Keys reused from the parent so far, their entries the parent's as they are: only the
    /// keys are held (the entries are in the parent's segments), and those entries go to
    /// staging if the task turns out to have changed after all.
    keys: std::collections::HashSet<String>,
}

/// A task's copying: made once per task, used for every batch it copies.
pub struct Copier<'a> {
    context: &'a TaskContext,
    writer: BlobWriter,
    parts: PartWriter,
    reusable: Reusable,
    /// The keys the task copies.
    scope: Scope,
    /// `None` once anything but an unchanged parent object was seen. A std mutex: held for a
    /// push, never across a wait.
    unchanged: std::sync::Mutex<Option<Unchanged>>,
    /// Why the parent's entries could not be used, reported once.
    parent_note: Option<String>,
    /// Where the blobs this task stored or carried are (not in the committed index yet), to
    /// read copied objects back. A std mutex: held for a map update.
    recorded: std::sync::Mutex<HashMap<BlobId, IndexEntry>>,
}

/// How one object ended.
enum Copied {
    /// Read and stored: its entry, where its new blobs are, and what reading found.
    Entry { entry: ObjectEntry, new_blobs: Vec<IndexEntry>, read: ReadOutcome },
    /// Reused unread: its entry, the locations of its blobs no committed index lists,
    /// whether an earlier attempt of this task (not the parent) had copied it, and whether the
    /// entry is the parent's as it is.
    Reused { entry: ObjectEntry, carried: Vec<IndexEntry>, resumed: bool, same_as_parent: bool },
    /// Gone from the source before it could be read.
    Vanished(String),
}

/// What reading an object found besides its bytes.
struct ReadOutcome {
    bytes_written: u64,
    bytes_stored: u64,
    /// Its format check: what it told, or what is wrong with it.
    format: Result<Validated, String>,
}

impl<'a> Copier<'a> {
    /// Loads what copying under `prefix` needs: the index, the parent's entries under
    /// `prefix`, and what earlier attempts of this task recorded.
    ///
    /// # Errors
    /// When the index or an earlier attempt's records cannot be read.
    pub async fn start(context: &'a TaskContext, prefix: &str) -> Result<Copier<'a>, TaskError> {
        Self::start_in(context, Scope::prefix(prefix)).await
    }

    /// As [`Copier::start`], for the keys under `scope.prefix` except `scope.excluded` (the
    /// parts of the prefix other tasks copy, or the plan leaves out).
    ///
    /// # Errors
    /// When the index or an earlier attempt's records cannot be read.
    pub async fn start_in(context: &'a TaskContext, scope: Scope) -> Result<Copier<'a>, TaskError> {
        let prefix = scope.prefix.as_str();
        let writer = context.blob_writer().await?;
        let mut reusable = Reusable::default();
        let parent_note = load_parent(context, prefix, &mut reusable.parent).await;
        let earlier =
            read_earlier(&context.repository, context.spec.task_id, context.attempt).await?;
        // Entries an earlier attempt of this task wrote win over the parent's: they are newer.
        reusable.resumed = earlier.entries;
        reusable.blobs = earlier.blobs;
        let parent_entries = reusable.parent_entries_in(&scope);
        let unchanged = (parent_note.is_none() && parent_entries > 0)
            .then(|| Unchanged { parent_entries, keys: Default::default() });
        let parts = PartWriter::start(
            &context.repository,
            context.spec.task_id,
            context.attempt,
            context.config.progress_save_interval,
        );
        Ok(Copier {
            context,
            writer,
            parts,
            reusable,
            scope,
            unchanged: std::sync::Mutex::new(unchanged),
            parent_note,
            recorded: Default::default(),
        })
    }

    /// Reads back an object this task copied (or reused), or one another task of the job
    /// copied whose blob locations are in `others` (from its staging records).
    ///
    /// # Errors
    /// [`TaskError::Damaged`] when a blob cannot be read back.
    pub async fn read_back(
        &self,
        entry: &ObjectEntry,
        others: &HashMap<BlobId, IndexEntry>,
    ) -> Result<Vec<u8>, TaskError> {
        let mut index = crate::repository::index::BlobIndex::new();
        {
            let recorded = self.recorded.lock().unwrap_or_else(|poison| poison.into_inner());
            for id in &entry.blobs {
                let location = self.writer.index.get(id).copied().or_else(|| {
                    recorded
                        .get(id)
                        .or_else(|| others.get(id))
                        .map(|known| (known.pack, known.entry))
                });
                if let Some(location) = location {
                    index.insert(*id, location);
                }
            }
        }
        crate::repository::reader::read_object(&self.context.repository, &index, entry)
            .await
            .map_err(|error| TaskError::Damaged(format!("reading back `{}`: {error}", entry.key)))
    }

    /// Copies `objects` and records their entries; returns what happened.
    ///
    /// # Errors
    /// The first failure; entries recorded so far stay in staging for the next attempt.
    pub async fn copy(
        &mut self,
        objects: Vec<ObjectMeta>,
        node: &str,
        phase: CopyPhase,
    ) -> Result<CopyTotals, TaskError> {
        let mut totals = CopyTotals::default();
        totals.notes.extend(self.parent_note.take());
        let flow = Arc::new(ReadFlow::default());
        let mut input = objects.into_iter();
        let mut running = FuturesUnordered::new();
        let limit = self.context.max_objects_in_flight.max(1);
        loop {
            while !flow.exhausted.load(Ordering::SeqCst)
                && flow.reading.load(Ordering::SeqCst) < limit
            {
                match input.next() {
                    Some(meta) => {
                        flow.reading.fetch_add(1, Ordering::SeqCst);
                        running.push(self.copy_one(meta, node, phase, flow.clone()));
                    }
                    None => {
                        flow.exhausted.store(true, Ordering::SeqCst);
                        if flow.reading.load(Ordering::SeqCst) == 0 {
                            self.writer.packer.flush(&self.writer.requests);
                        }
                    }
                }
            }
            if running.is_empty() {
                break;
            }
            let next = tokio::select! {
                next = running.next() => next,
                // A slot to read another object opened: fill it (objects waiting for a pack
                // need others to fill it).
                _ = flow.finished_reading.notified() => continue,
                _ = self.context.cancel.cancelled() => {
                    return Err(TaskError::Abandoned("cancelled".to_string()))
                }
            };
            match next {
                None => break,
                Some(result) => self.record(result?, &mut totals).await?,
            }
        }
        Ok(totals)
    }

    async fn record(&self, copied: Copied, totals: &mut CopyTotals) -> Result<(), TaskError> {
        let mut from_parent = false;
        let (entry, blobs) = match copied {
            Copied::Vanished(key) => {
                self.changed().await?;
                totals.vanished.push(key);
                return Ok(());
            }
            Copied::Reused { entry, carried, resumed, same_as_parent } => {
                totals.transfer.num_reused += 1;
                totals.num_resumed += u64::from(resumed);
                from_parent = same_as_parent && carried.is_empty();
                (entry, carried)
            }
            Copied::Entry { entry, new_blobs, read } => {
                totals.transfer.bytes_read += entry.size;
                totals.transfer.bytes_written += read.bytes_written;
                totals.transfer.bytes_stored += read.bytes_stored;
                match read.format {
                    Ok(validated) => totals
                        .catalog_uuids
                        .extend(validated.catalog_uuid.map(|uuid| (entry.key.clone(), uuid))),
                    Err(reason) => {
                        totals.corrupt.push(CorruptObject { key: entry.key.clone(), reason })
                    }
                }
                (entry, new_blobs)
            }
        };
        totals.num_objects += 1;
        totals.num_bytes += entry.size;
        self.recorded
            .lock()
            .unwrap_or_else(|poison| poison.into_inner())
            .extend(blobs.iter().map(|blob| (blob.entry.id, *blob)));
        totals.kept.push(entry.clone());
        let held = {
            let mut unchanged = self.unchanged.lock().unwrap_or_else(|poison| poison.into_inner());
            from_parent
                && unchanged.as_mut().is_some_and(|held| held.keys.insert(entry.key.clone()))
        };
        if !held {
            self.changed().await?;
            self.parts.push(entry, blobs).await?;
        }
        Ok(())
    }

    /// Something other than an unchanged parent object was seen: the parent's entries of the
    /// keys held back go to staging after all (they are what reuse made of them: the parent's
    /// as they are, all blobs in the committed index).
    async fn changed(&self) -> Result<(), TaskError> {
        let held = self.unchanged.lock().unwrap_or_else(|poison| poison.into_inner()).take();
        for key in held.map(|held| held.keys).unwrap_or_default() {
            if let Some((entry, _)) = self.reusable.get(&key) {
                self.parts.push(entry.clone(), Vec::new()).await?;
            }
        }
        Ok(())
    }

    /// Writes the task's done record with `report`: when every object under the prefix was
    /// the parent's, unchanged, it names the parent's segments instead of listing entries.
    ///
    /// # Errors
    /// When the staging write fails.
    pub async fn finish(self, report: &TaskReport) -> Result<(), TaskError> {
        self.writer.packer.flush(&self.writer.requests);
        let all_of_the_parent = self
            .unchanged
            .lock()
            .unwrap_or_else(|poison| poison.into_inner())
            .as_ref()
            .is_some_and(|unchanged| unchanged.keys.len() == unchanged.parent_entries);
        if !all_of_the_parent {
            self.changed().await?;
            return Ok(self.parts.finish(report, &self.scope, None).await?);
        }
        let segments = self
            .reusable
            .parent
            .iter()
            .filter_map(|segment| segment.get())
            .filter(|segment| segment.in_scope(&self.scope).next().is_some())
            .map(|segment| segment.segment.clone())
            .collect();
        Ok(self.parts.finish(report, &self.scope, Some(segments)).await?)
    }

    /// Copies one object: reads it (holding one of the task's reading slots), then waits for
    /// the pack holding its new blobs. Once the task has nothing more to read, the last object
    /// to finish reading flushes the open pack: every other object still running waits for a
    /// pack, and nothing else of this task would fill it.
    async fn copy_one(
        &self,
        meta: ObjectMeta,
        node: &str,
        phase: CopyPhase,
        flow: Arc<ReadFlow>,
    ) -> Result<Copied, TaskError> {
        let key = meta.location.to_string();
        let last_modified = meta.last_modified.to_rfc3339();
        let step = self.read_one(meta.clone(), &key, &last_modified, node, phase).await;
        let was_last = flow.reading.fetch_sub(1, Ordering::SeqCst) == 1;
        if was_last && flow.exhausted.load(Ordering::SeqCst) {
            self.writer.packer.flush(&self.writer.requests);
        }
        flow.finished_reading.notify_one();
        let (pending, validator) = match step? {
            ReadStep::Done(copied) => return Ok(copied),
            ReadStep::Read(pending, validator) => (pending, validator),
        };
        let stored = pending.stored().await.map_err(|error| match error {
            StoreObjectError::Read(source) => TaskError::Source { key: key.clone(), source },
            StoreObjectError::Write(error) => TaskError::Repository(error),
        })?;
        self.context.progress.done(stored.size);
        let format = match validator {
            Some(validator) => {
                let kind = validator.kind();
                validator.finish().map_err(|reason| {
                    warn!(%key, %reason, "object fails its format check");
                    describe_corruption(&key, kind, &reason)
                })
            }
            None => Ok(Validated::default()),
        };
        let read = ReadOutcome {
            bytes_written: stored.bytes_written,
            bytes_stored: stored.bytes_stored,
            format,
        };
        let entry = ObjectEntry {
            key,
            size: stored.size,
            blobs: stored.blobs,
            etag: meta.e_tag,
            last_modified,
            phase,
            node: node.to_string(),
        };
        Ok(Copied::Entry { entry, new_blobs: stored.new_blobs, read })
    }

    /// Reads an object into blobs (or finds it reusable, or gone).
    async fn read_one(
        &self,
        meta: ObjectMeta,
        key: &str,
        last_modified: &str,
        node: &str,
        phase: CopyPhase,
    ) -> Result<ReadStep, TaskError> {
        self.context.progress.listed(meta.size);
        if let Some(reused) = self.reuse(&meta, key, last_modified, node, phase) {
            self.context.progress.done(meta.size);
            return Ok(ReadStep::Done(reused));
        }
        let _permit = self
            .context
            .object_permits
            .acquire()
            .await
            .map_err(|_| TaskError::Abandoned("worker stopping".to_string()))?;
        let key = key.to_string();
        let result = match self.context.source.get(&meta.location).await {
            Ok(result) => result,
            Err(object_store::Error::NotFound { .. }) => {
                warn!(%key, "object vanished before it could be read");
                return Ok(ReadStep::Done(Copied::Vanished(key)));
            }
            Err(source) => return Err(TaskError::Source { key, source }),
        };
        let mut validator =
            if self.context.check_formats { Validator::for_key(&key) } else { None };
        match read_object(&self.writer, ChunkSource::new(result), validator.as_mut()).await {
            Ok(pending) => Ok(ReadStep::Read(pending, validator)),
            Err(StoreObjectError::Read(object_store::Error::NotFound { .. })) => {
                Ok(ReadStep::Done(Copied::Vanished(key)))
            }
            Err(StoreObjectError::Read(source)) => Err(TaskError::Source { key, source }),
            Err(StoreObjectError::Write(error)) => Err(TaskError::Repository(error)),
        }
    }

    /// The entry of an unchanged object (same size, ETag and last-modified time as recorded)
    /// whose blobs are all where an index or an earlier attempt says.
    fn reuse(
        &self,
        meta: &ObjectMeta,
        key: &str,
        last_modified: &str,
        node: &str,
        phase: CopyPhase,
    ) -> Option<Copied> {
        let (entry, resumed) = self.reusable.get(key)?;
        if !unchanged(entry, meta, last_modified) {
            return None;
        }
        let mut carried = Vec::new();
        for id in &entry.blobs {
            if self.writer.index.contains_key(id) {
                continue;
            }
            carried.push(*self.reusable.blobs.get(id)?);
        }
        let same_as_parent = !resumed && entry.phase == phase && entry.node == node;
        let entry = ObjectEntry { phase, node: node.to_string(), ..entry.clone() };
        Some(Copied::Reused { entry, carried, resumed, same_as_parent })
    }
}

/// Whether a listed object is the one `entry` recorded: same size, ETag and last-modified time.
/// Content is not compared (that would mean reading it): a database rewriting an object in
/// place within the same second and to the same size, on a store without ETags, is missed, as
/// by every incremental tool that trusts listings (rsync, rclone, restic without --force).
fn unchanged(entry: &ObjectEntry, meta: &ObjectMeta, last_modified: &str) -> bool {
    entry.size == meta.size && entry.etag == meta.e_tag && entry.last_modified == last_modified
}

/// How a task's objects move through reading.
#[derive(Default)]
struct ReadFlow {
    /// Objects reading (a slot each).
    reading: AtomicUsize,
    /// Every object of the batch has been started.
    exhausted: std::sync::atomic::AtomicBool,
    /// Signalled when an object finishes reading.
    finished_reading: tokio::sync::Notify,
}

/// Where an object stands after reading. One per object in flight, moved once: the size
/// difference between the variants costs nothing worth a heap allocation per object.
#[allow(clippy::large_enum_variant)]
enum ReadStep {
    /// Nothing more to do (reused, or gone).
    Done(Copied),
    /// Read into blobs, some maybe in a pack not stored yet; with its format check.
    Read(crate::repository::writer::PendingObject, Option<Validator>),
}

/// The parent backup's entries under `prefix` (incremental backups), read once per worker for
/// all its tasks. An unreadable parent is not an error: the task copies everything and says so
/// (the returned note).
async fn load_parent(
    context: &TaskContext,
    prefix: &str,
    parent_segments: &mut Vec<SharedSegment>,
) -> Option<String> {
    let parent = context.spec.parent?;
    match context.repositories.backup_entries(&context.repository, parent, prefix).await {
        Ok(segments) => {
            *parent_segments = segments;
            None
        }
        Err(error) => Some(format!("parent backup {parent} unreadable ({error}): copied in full")),
    }
}

/// The entries in `scope` of the parent segments an unchanged attempt names (its entries, see
/// [`crate::repository::manifest::DoneRecord::unchanged`]), through this worker's cache.
///
/// # Errors
/// [`TaskError::Repository`] when a segment cannot be read.
pub async fn unchanged_entries(
    context: &TaskContext,
    scope: &Scope,
    segments: &[crate::repository::manifest::SegmentRef],
) -> Result<Vec<ObjectEntry>, TaskError> {
    let mut entries = Vec::new();
    for segment in segments {
        let shared = context.repositories.segment(&context.repository, segment).await?;
        entries
            .extend(shared.get().into_iter().flat_map(|segment| segment.in_scope(scope)).cloned());
    }
    Ok(entries)
}

/// Lists every object under `prefix` (a directory-like prefix ending in `/`, or empty).
pub fn list_prefix(
    context: &TaskContext,
    prefix: &str,
) -> impl futures::Stream<Item = Result<ObjectMeta, TaskError>> + 'static {
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

#[cfg(test)]
mod tests {
    use super::*;

    fn entry() -> ObjectEntry {
        ObjectEntry {
            key: "node1/wal/00000000001.wal".to_string(),
            size: 4096,
            blobs: Vec::new(),
            etag: Some("e1".to_string()),
            last_modified: "2026-11-25T10:00:00Z".to_string(),
            phase: bk_proto::model::CopyPhase::Nodes,
            node: "node1".to_string(),
        }
    }

    fn listed(size: u64, e_tag: Option<&str>) -> ObjectMeta {
        ObjectMeta {
            location: "node1/wal/00000000001.wal".into(),
            last_modified: chrono::DateTime::UNIX_EPOCH,
            size,
            e_tag: e_tag.map(str::to_string),
            version: None,
        }
    }

    #[test]
    fn test_an_object_is_reused_only_when_size_etag_and_time_all_match() {
        let time = "2026-11-25T10:00:00Z";
        let cases = [
            ("unchanged", listed(4096, Some("e1")), time, true),
            ("grew", listed(8192, Some("e1")), time, false),
            ("rewritten, new ETag", listed(4096, Some("e2")), time, false),
            ("the store stopped giving ETags", listed(4096, None), time, false),
            ("touched", listed(4096, Some("e1")), "2026-11-25T10:00:01Z", false),
        ];
        for (case, meta, last_modified, want) in cases {
            assert_eq!(unchanged(&entry(), &meta, last_modified), want, "{case}");
        }
    }

    #[test]
    fn test_copy_totals_add_to_the_report_and_name_vanished_and_resumed_objects() {
        let totals = CopyTotals {
            num_objects: 3,
            num_bytes: 30,
            vanished: vec!["node1/wal/2.wal".to_string()],
            transfer: TransferStats { num_reused: 2, bytes_read: 10, ..TransferStats::default() },
            num_resumed: 1,
            notes: vec!["parent unreadable".to_string()],
            ..CopyTotals::default()
        };
        let mut report = TaskReport { num_objects: 1, ..TaskReport::default() };
        totals.add_to(&mut report);
        assert_eq!((report.num_objects, report.num_bytes), (4, 30));
        assert_eq!(report.transfer.num_reused, 2);
        assert_eq!(report.transfer.bytes_read, 10);
        assert_eq!(report.events.len(), 3, "{:?}", report.events);
        assert!(report.events[0].contains("`node1/wal/2.wal` was deleted by the database"));
        assert!(report.events[1].contains("reused 1 object(s) an earlier attempt had copied"));
        assert_eq!(report.events[2], "parent unreadable");
    }
}
