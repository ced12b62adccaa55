//! A copy task over a set of objects it finds itself (the catalog: image first, then logs in
//! rounds; licence files; a consistency check's repairs), not over one listing. Such sets are
//! small (a few thousand objects at most), so the parent's list of the scope is read whole and
//! the run is written sorted at the end, as a base (chunks are content-addressed: an unchanged
//! catalog writes the same bytes).

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::Ordering;
use std::sync::Arc;

use bk_proto::model::TaskReport;
use futures::stream::FuturesUnordered;
use futures::StreamExt;
use object_store::ObjectMeta;

use super::object::{copy_object, Copied, ReadFlow};
use super::output::ListOutput;
use super::stream::ScopeTarget;
use super::totals::CopyTotals;
use crate::error::TaskError;
use crate::repository::crypto::BlobId;
use crate::repository::index::{partition_of, IndexEntry};
use crate::repository::list::{ListItem, MergedView, ObjectEntry};
use crate::repository::manifest::ScopeList;
use crate::repository::staging::read_earlier;
use crate::repository::writer::BlobWriter;
use crate::tasks::context::TaskContext;

/// Copies chosen objects of one scope and keeps their entries until the task ends.
pub struct SetCopier<'a> {
    context: &'a TaskContext,
    writer: BlobWriter,
    target: ScopeTarget,
    output: ListOutput<'a>,
    /// The parent's objects of the scope, by key.
    parent: BTreeMap<String, ObjectEntry>,
    /// Objects earlier attempts copied, by key.
    earlier: BTreeMap<String, ObjectEntry>,
    /// This attempt's objects, by key.
    entries: BTreeMap<String, ObjectEntry>,
    /// Where the blobs this attempt stored or carried are (not in the cache's view).
    recorded: HashMap<BlobId, IndexEntry>,
}

impl<'a> SetCopier<'a> {
    /// Loads what copying `target` needs: the index, the parent's list of the scope (when
    /// `use_parent`), and what earlier attempts copied.
    ///
    /// # Errors
    /// When the index or an earlier attempt's records cannot be read.
    pub async fn start(
        context: &'a TaskContext,
        target: ScopeTarget,
        use_parent: bool,
    ) -> Result<SetCopier<'a>, TaskError> {
        let partition = partition_of(&target.node);
        let writer = context.blob_writer(&partition).await?;
        let mut output = ListOutput::new(context, partition);
        let parent = match (use_parent, context.spec.parent) {
            (true, Some(parent)) => parent_entries(context, parent, &target).await,
            _ => BTreeMap::new(),
        };
        let earlier_work =
            read_earlier(&context.repository, context.spec.task_id, context.attempt).await?;
        let recorded =
            earlier_work.blobs.iter().map(|blob| (blob.entry.id, *blob)).collect::<HashMap<_, _>>();
        output.record_blobs(earlier_work.blobs).await?;
        let mut view =
            MergedView::new(&context.repository, &earlier_work.runs, &target.scope.prefix);
        let mut earlier = BTreeMap::new();
        while let Some(entry) = view.next().await? {
            earlier.insert(entry.key.clone(), entry);
        }
        Ok(SetCopier {
            context,
            writer,
            target,
            output,
            parent,
            earlier,
            entries: BTreeMap::new(),
            recorded,
        })
    }

    /// Copies `objects` (reusing unchanged ones) and records their entries; the totals list the
    /// entries of this call.
    ///
    /// # Errors
    /// The first failure.
    pub async fn copy(&mut self, objects: Vec<ObjectMeta>) -> Result<CopyTotals, TaskError> {
        let mut totals = CopyTotals::default();
        let flow = Arc::new(ReadFlow::default());
        flow.idle_after_reads.store(true, Ordering::SeqCst);
        let limit = self.context.worker.max_objects_in_flight().max(1);
        let mut input = objects.into_iter();
        let writer = self.writer.clone();
        let mut running = FuturesUnordered::new();
        loop {
            while flow.reading.load(Ordering::SeqCst) < limit {
                let Some(meta) = input.next() else { break };
                let key = meta.location.to_string();
                if let Some(entry) = self.reusable(&key, &meta) {
                    totals.transfer.num_reused += 1;
                    self.keep(entry, &mut totals);
                    continue;
                }
                flow.reading.fetch_add(1, Ordering::SeqCst);
                running.push(copy_object(self.context, &writer, meta, &flow));
            }
            if running.is_empty() {
                break;
            }
            if flow.reading.load(Ordering::SeqCst) == 0 {
                writer.packer.flush(&writer.requests);
            }
            let next = tokio::select! {
                next = running.next() => next,
                _ = flow.finished_reading.notified() => continue,
                _ = self.context.cancel.cancelled() => {
                    return Err(TaskError::Abandoned("cancelled".to_string()))
                }
            };
            match next {
                None => break,
                Some(Ok(Copied::Vanished(key))) => totals.vanished.push(key),
                Some(Ok(Copied::Stored {
                    entry,
                    new_blobs,
                    bytes_written,
                    bytes_stored,
                    format,
                })) => {
                    totals.count_read(&entry, bytes_written, bytes_stored, format);
                    self.recorded.extend(new_blobs.iter().map(|blob| (blob.entry.id, *blob)));
                    self.output.record_blobs(new_blobs).await?;
                    self.keep(entry, &mut totals);
                }
                Some(Err(error)) => return Err(error),
            }
        }
        Ok(totals)
    }

    /// An earlier attempt's or the parent's entry of `key`, if it still describes the object.
    fn reusable(&self, key: &str, meta: &ObjectMeta) -> Option<ObjectEntry> {
        let earlier = self.earlier.get(key).filter(|entry| entry.describes(meta));
        let parent = self.parent.get(key).filter(|entry| entry.describes(meta));
        earlier.or(parent).cloned()
    }

    fn keep(&mut self, entry: ObjectEntry, totals: &mut CopyTotals) {
        totals.num_objects += 1;
        totals.num_bytes += entry.size;
        totals.entries.push(entry.clone());
        self.entries.insert(entry.key.clone(), entry);
    }

    /// Whether this attempt holds `key`.
    pub fn holds(&self, key: &str) -> bool {
        self.entries.contains_key(key)
    }

    /// Reads back an object this attempt copied or reused, or one whose blob locations are in
    /// `others` (another task's staging records).
    ///
    /// # Errors
    /// [`TaskError::Damaged`] when a blob cannot be read back.
    pub async fn read_back(
        &self,
        entry: &ObjectEntry,
        others: &HashMap<BlobId, IndexEntry>,
    ) -> Result<Vec<u8>, TaskError> {
        read_back(self.context, &self.writer, &self.recorded, others, entry).await
    }

    /// Writes the run (every object, sorted) and the done record with `report`; `keep_list`:
    /// whether the scope has a list even when empty (a consistency check without repairs has
    /// none). Returns the report as recorded.
    ///
    /// # Errors
    /// When a write fails.
    pub async fn finish(
        mut self,
        report: TaskReport,
        keep_list: bool,
    ) -> Result<TaskReport, TaskError> {
        self.writer.packer.flush(&self.writer.requests);
        let (mut num_objects, mut num_bytes) = (0, 0);
        for entry in std::mem::take(&mut self.entries).into_values() {
            num_objects += 1;
            num_bytes += entry.size;
            self.output.push(&ListItem::Object(entry)).await?;
        }
        let target = self.target;
        self.output
            .finish(report, move |written| {
                (keep_list || num_objects > 0).then(|| ScopeList {
                    scope: target.scope,
                    phase: target.phase,
                    node: target.node,
                    runs: if written.chunks.is_empty() {
                        Vec::new()
                    } else {
                        vec![written.clone()]
                    },
                    num_objects,
                    num_bytes,
                })
            })
            .await
    }
}

/// The parent's objects of `target`'s scope, whole; empty when the parent has no such scope
/// or cannot be read (then everything is copied).
async fn parent_entries(
    context: &TaskContext,
    parent: bk_proto::ids::BackupId,
    target: &ScopeTarget,
) -> BTreeMap<String, ObjectEntry> {
    let mut entries = BTreeMap::new();
    let Ok(manifest) = crate::repository::reader::read_manifest(&context.repository, parent).await
    else {
        return entries;
    };
    let Some(list) = manifest
        .scopes
        .iter()
        .find(|list| list.same_scope(target.phase, &target.node, &target.scope))
    else {
        return entries;
    };
    let mut view = MergedView::new(&context.repository, &list.runs, &target.scope.prefix);
    while let Ok(Some(entry)) = view.next().await {
        entries.insert(entry.key.clone(), entry);
    }
    entries
}

/// Reads an object back from the repository: its blobs are where the writer's index view,
/// `recorded` or `others` say.
///
/// # Errors
/// [`TaskError::Damaged`] when a blob is missing or damaged; the store's error when it fails.
pub async fn read_back(
    context: &TaskContext,
    writer: &BlobWriter,
    recorded: &HashMap<BlobId, IndexEntry>,
    others: &HashMap<BlobId, IndexEntry>,
    entry: &ObjectEntry,
) -> Result<Vec<u8>, TaskError> {
    let mut bytes = Vec::with_capacity(entry.size as usize);
    for id in &entry.blobs {
        let location = writer.index.get(id).or_else(|| {
            recorded.get(id).or_else(|| others.get(id)).map(|known| (known.pack, known.entry))
        });
        let blob = match location {
            Some((pack, place)) => {
                crate::repository::reader::read_located_blob(&context.repository, pack, &place)
                    .await
            }
            None => Err(crate::repository::reader::BlobReadError::NotIndexed(*id)),
        };
        let blob = blob.map_err(|error| read_back_failed(&entry.key, error))?;
        bytes.extend_from_slice(&blob.plaintext);
        blob.recycle();
    }
    Ok(bytes)
}

/// Why reading `key` back failed, as the task reports it: the store failing is the store's
/// error (retried when transient: a burst of S3 resets is not damage); anything else means
/// the repository does not hold what was written.
fn read_back_failed(key: &str, error: crate::repository::reader::BlobReadError) -> TaskError {
    match error {
        crate::repository::reader::BlobReadError::Repository(store) => TaskError::Repository(store),
        damaged => TaskError::Damaged(format!("reading back `{key}`: {damaged}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::RepositoryError;
    use crate::repository::reader::BlobReadError;

    #[test]
    fn test_a_store_failing_while_reading_back_is_retried_and_missing_data_is_damage() {
        let transport = object_store::Error::Generic {
            store: "S3",
            source: "error sending request, after 10 retries".into(),
        };
        let store_failed =
            BlobReadError::Repository(RepositoryError::store("packs/b8/b8")(transport));
        let missing = BlobReadError::PackMissing { id: BlobId([1; 32]), pack: "packs/01".into() };
        let cases =
            [(store_failed, true, "packs/b8/b8"), (missing, false, "reading back `n/wal/1.wal`")];
        for (error, retryable, named) in cases {
            let failed = read_back_failed("n/wal/1.wal", error);
            assert_eq!(failed.is_retryable(), retryable, "{failed}");
            assert!(failed.to_string().contains(named), "{failed}");
        }
    }
}
