//! A copy task over a listing: the listing, the parent's list of the scope and what earlier
//! attempts copied are merged by key as they stream, and objects are copied as they come.
//!
//! ```text
//!  listing (sorted) ─┐
//!  parent list ──────┼─ merge by key ─▶ reuse | copy (in flight, bounded) ─▶ window (key order) ─▶ run
//!  earlier attempts ─┘
//! ```
//! For each key: an object an earlier attempt copied and that is unchanged since is reused as
//! that attempt recorded it; else one the parent holds unchanged (same size, ETag, time) is
//! reused unread; else it is read and stored. In **delta** mode (the parent has this scope and
//! its stack is short) the run written holds only what differs from the parent — new and
//! changed objects, and a deletion for each parent object no longer listed — so an unchanged
//! scope writes nothing and keeps the parent's runs. In **base** mode it holds every object.
//!
//! Copies finish out of order; a window of at most [`WINDOW`] keys keeps their items in key
//! order for the run. Memory: the window, the objects in flight, one chunk per run read and
//! written. Nothing per object outlives its item reaching the run.

use std::collections::VecDeque;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use bk_proto::model::{CopyPhase, TaskReport};
use futures::stream::FuturesUnordered;
use futures::StreamExt;
use object_store::ObjectMeta;
use tokio::sync::mpsc;

use super::object::{copy_object, Copied, ReadFlow};
use super::output::ListOutput;
use super::totals::CopyTotals;
use crate::error::TaskError;
use crate::repository::list::{needs_new_base, ListItem, MergedView, ObjectEntry, RunRef};
use crate::repository::manifest::{Scope, ScopeList};
use crate::repository::staging::read_earlier;
use crate::repository::writer::BlobWriter;
use crate::tasks::context::TaskContext;

/// Keys between the oldest one still copying and the newest one started, at most.
pub const WINDOW: usize = 4096;

/// What a copy task covers.
#[derive(Clone, Debug)]
pub struct ScopeTarget {
    /// The phase copying it.
    pub phase: CopyPhase,
    /// The node its objects belong to (empty: cluster-level).
    pub node: String,
    /// Its keys.
    pub scope: Scope,
}

/// A finished streamed copy: its totals and, to write with the task's report, its output.
pub struct StreamedCopy<'a> {
    /// What happened.
    pub totals: CopyTotals,
    output: ListOutput<'a>,
    target: ScopeTarget,
    /// The parent's runs kept under the delta (empty in base mode).
    kept_runs: Vec<RunRef>,
    num_objects: u64,
    num_bytes: u64,
}

impl StreamedCopy<'_> {
    /// Writes the done record with `report`; returns the report as recorded.
    ///
    /// # Errors
    /// When a write fails.
    pub async fn finish(self, report: TaskReport) -> Result<TaskReport, TaskError> {
        let Self { output, target, kept_runs, num_objects, num_bytes, .. } = self;
        output
            .finish(report, move |written| {
                let mut runs = kept_runs;
                if !written.chunks.is_empty() {
                    runs.push(written.clone());
                }
                Some(ScopeList {
                    scope: target.scope,
                    phase: target.phase,
                    node: target.node,
                    runs,
                    num_objects,
                    num_bytes,
                })
            })
            .await
    }
}

/// One key of the window, in order.
enum Slot {
    /// Being copied; whether the parent holds the key (a vanished object is then a deletion).
    Copying { in_parent: bool },
    /// Decided: the item to write (`None`: nothing, an unchanged object in delta mode, or a
    /// vanished one the parent did not hold).
    Ready(Option<ListItem>),
}

/// Copies every object `listing` yields (sorted by key, all in `target`'s scope).
///
/// # Errors
/// The first failure; what was saved stays in staging for the next attempt.
pub async fn copy_listing<'a>(
    context: &'a TaskContext,
    target: ScopeTarget,
    mut listing: mpsc::Receiver<Result<ObjectMeta, TaskError>>,
) -> Result<StreamedCopy<'a>, TaskError> {
    let partition = crate::repository::index::partition_of(&target.node);
    let writer = context.blob_writer(&partition).await?;
    let mut output = ListOutput::new(context, partition);
    let mut totals = CopyTotals::default();
    let (mut parent, kept_runs, delta) = parent_view(context, &target, &mut totals).await;
    let earlier = read_earlier(&context.repository, context.spec.task_id, context.attempt).await?;
    output.record_blobs(earlier.blobs).await?;
    let mut earlier = MergedView::new(&context.repository, &earlier.runs, &target.scope.prefix);
    let mut merge = Merge {
        window: VecDeque::new(),
        first_seq: 0,
        parent_head: parent.next().await?,
        earlier_head: earlier.next().await?,
        last_key: None,
        delta,
        num_objects: 0,
        num_bytes: 0,
    };
    let flow = Arc::new(ReadFlow::default());
    let limit = context.worker.max_objects_in_flight().max(1);
    let mut running = FuturesUnordered::new();
    let mut listing_done = false;
    loop {
        merge.drain(&mut output, &mut totals).await?;
        let room = merge.window.len() < WINDOW && flow.reading.load(Ordering::SeqCst) < limit;
        if listing_done && merge.window.is_empty() {
            break;
        }
        let idle = listing_done || merge.window.len() >= WINDOW;
        flow.idle_after_reads.store(idle, Ordering::SeqCst);
        if idle && flow.reading.load(Ordering::SeqCst) == 0 && !running.is_empty() {
            // Everything still running waits for a pack and nothing new will fill it.
            writer.packer.flush(&writer.requests);
        }
        tokio::select! {
            listed = listing.recv(), if room && !listing_done => match listed {
                None => {
                    listing_done = true;
                    merge.parent_rest(&mut parent).await?;
                }
                Some(listed) => {
                    let meta = listed?;
                    if let Some(meta) = merge.admit(meta, &mut parent, &mut earlier, &mut totals).await? {
                        flow.reading.fetch_add(1, Ordering::SeqCst);
                        let seq = merge.first_seq + merge.window.len() as u64 - 1;
                        running.push(copy_in_window(context, &writer, meta, flow.clone(), seq));
                    }
                }
            },
            Some((seq, copied)) = running.next(), if !running.is_empty() => {
                merge.copied(seq, copied?, &mut output, &mut totals).await?;
            }
            _ = flow.finished_reading.notified() => {}
            _ = tokio::time::sleep_until(output.next_save()) => output.save().await?,
            _ = context.cancel.cancelled() => return Err(TaskError::Abandoned("cancelled".to_string())),
        }
        if output.save_due() {
            output.save().await?;
        }
    }
    writer.packer.flush(&writer.requests);
    let Merge { num_objects, num_bytes, .. } = merge;
    Ok(StreamedCopy { totals, output, target, kept_runs, num_objects, num_bytes })
}

async fn copy_in_window(
    context: &TaskContext,
    writer: &BlobWriter,
    meta: ObjectMeta,
    flow: Arc<ReadFlow>,
    seq: u64,
) -> (u64, Result<Copied, TaskError>) {
    (seq, copy_object(context, writer, meta, &flow).await)
}

/// The parent's list of the scope and what this attempt writes on top: delta mode when the
/// parent has exactly this scope and its stack may grow (`kept_runs` are its runs), base mode
/// otherwise. An unreadable parent is no error: everything is copied, and a note says so.
async fn parent_view(
    context: &TaskContext,
    target: &ScopeTarget,
    totals: &mut CopyTotals,
) -> (MergedView, Vec<RunRef>, bool) {
    let Some(parent) = context.spec.parent else { return (MergedView::empty(), Vec::new(), false) };
    let manifest = match crate::repository::reader::read_manifest(&context.repository, parent).await
    {
        Ok(manifest) => manifest,
        Err(error) => {
            totals
                .notes
                .push(format!("parent backup {parent} unreadable ({error}): copied in full"));
            return (MergedView::empty(), Vec::new(), false);
        }
    };
    let Some(list) = manifest
        .scopes
        .into_iter()
        .find(|list| list.same_scope(target.phase, &target.node, &target.scope))
    else {
        return (MergedView::empty(), Vec::new(), false);
    };
    let view = MergedView::new(&context.repository, &list.runs, &target.scope.prefix)
        .in_scope(&target.scope);
    if needs_new_base(&list.runs) {
        (view, Vec::new(), false)
    } else {
        (view, list.runs, true)
    }
}

/// The merge of listing, parent and earlier attempts, and the window of keys in flight.
struct Merge {
    window: VecDeque<Slot>,
    /// Sequence number of the window's front.
    first_seq: u64,
    parent_head: Option<ObjectEntry>,
    earlier_head: Option<ObjectEntry>,
    last_key: Option<String>,
    delta: bool,
    /// Objects and bytes in the scope's list as it will be.
    num_objects: u64,
    num_bytes: u64,
}

impl Merge {
    /// Takes the next listed object: decides it at once (reuse) or returns it to copy (its
    /// slot is then the window's last).
    async fn admit(
        &mut self,
        meta: ObjectMeta,
        parent: &mut MergedView,
        earlier: &mut MergedView,
        totals: &mut CopyTotals,
    ) -> Result<Option<ObjectMeta>, TaskError> {
        let key = meta.location.to_string();
        if let Some(last) = &self.last_key {
            if key.as_str() <= last.as_str() {
                return Err(TaskError::Invalid(format!(
                    "the source listed `{key}` after `{last}`: bk needs listings in key order (S3, Azure, GCS and local \
                     directories list so), this store does not"
                )));
            }
        }
        // Parent objects before this key are gone from the source.
        while let Some(head) = self.parent_head.take_if(|head| head.key < key) {
            if self.delta {
                self.window.push_back(Slot::Ready(Some(ListItem::Deleted(head.key))));
            }
            self.parent_head = parent.next().await?;
        }
        while self.earlier_head.as_ref().is_some_and(|head| head.key < key) {
            self.earlier_head = earlier.next().await?;
        }
        let in_parent = self.parent_head.as_ref().is_some_and(|head| head.key == key);
        let from_parent = match in_parent {
            true => {
                let next = parent.next().await?;
                std::mem::replace(&mut self.parent_head, next)
            }
            false => None,
        };
        let from_earlier = match self.earlier_head.as_ref().is_some_and(|head| head.key == key) {
            true => {
                let next = earlier.next().await?;
                std::mem::replace(&mut self.earlier_head, next)
            }
            false => None,
        };
        self.last_key = Some(key);
        let parent_unchanged = from_parent.filter(|entry| entry.describes(&meta));
        let earlier_unchanged = from_earlier.filter(|entry| entry.describes(&meta));
        let reused = match (earlier_unchanged, parent_unchanged) {
            (Some(earlier), Some(parent)) if parent == earlier => Some((parent, false)),
            (Some(earlier), _) => {
                totals.num_resumed += 1;
                Some((earlier, true))
            }
            (None, Some(parent)) => Some((parent, false)),
            (None, None) => None,
        };
        let Some((entry, changed)) = reused else {
            self.window.push_back(Slot::Copying { in_parent });
            return Ok(Some(meta));
        };
        totals.transfer.num_reused += 1;
        totals.num_objects += 1;
        totals.num_bytes += entry.size;
        self.num_objects += 1;
        self.num_bytes += entry.size;
        let item = (changed || !self.delta).then_some(ListItem::Object(entry));
        self.window.push_back(Slot::Ready(item));
        Ok(None)
    }

    /// Every parent object left once the listing ended is gone from the source.
    async fn parent_rest(&mut self, parent: &mut MergedView) -> Result<(), TaskError> {
        while let Some(head) = self.parent_head.take() {
            if self.delta {
                self.window.push_back(Slot::Ready(Some(ListItem::Deleted(head.key))));
            }
            self.parent_head = parent.next().await?;
        }
        Ok(())
    }

    /// The copy of window slot `seq` finished.
    async fn copied(
        &mut self,
        seq: u64,
        copied: Copied,
        output: &mut ListOutput<'_>,
        totals: &mut CopyTotals,
    ) -> Result<(), TaskError> {
        let index = (seq - self.first_seq) as usize;
        let Some(Slot::Copying { in_parent }) = self.window.get(index) else {
            return Err(TaskError::Invalid(format!("copy window lost key {seq}")));
        };
        let in_parent = *in_parent;
        let item = match copied {
            Copied::Vanished(key) => {
                totals.vanished.push(key.clone());
                (self.delta && in_parent).then_some(ListItem::Deleted(key))
            }
            Copied::Stored { entry, new_blobs, bytes_written, bytes_stored, format } => {
                totals.count_read(&entry, bytes_written, bytes_stored, format);
                totals.num_objects += 1;
                totals.num_bytes += entry.size;
                self.num_objects += 1;
                self.num_bytes += entry.size;
                output.record_blobs(new_blobs).await?;
                Some(ListItem::Object(entry))
            }
        };
        self.window[index] = Slot::Ready(item);
        Ok(())
    }

    /// Writes the decided keys at the window's front, in order.
    async fn drain(
        &mut self,
        output: &mut ListOutput<'_>,
        _totals: &mut CopyTotals,
    ) -> Result<(), TaskError> {
        while let Some(Slot::Ready(_)) = self.window.front() {
            let Some(Slot::Ready(item)) = self.window.pop_front() else { break };
            self.first_seq += 1;
            if let Some(item) = item {
                output.push(&item).await?;
            }
        }
        Ok(())
    }
}
