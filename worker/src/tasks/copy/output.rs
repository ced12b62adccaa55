//! What a copy task attempt writes besides packs: its run of list items, the index files of
//! the blobs it stored, its progress saves and its done record.
//!
//! Order is what keeps a record true: an item reaches the run only once its object's packs are
//! stored; blob locations go to an index file (past [`INDEX_FILE_AT`] of them) or ride along
//! inline in the next record; a record names a run's chunks only after writing the index files
//! or carrying the locations of every blob those chunks name.

use std::time::{Duration, Instant};

use bk_proto::model::TaskReport;

use crate::error::TaskError;
use crate::repository::index::{write_index_files, IndexEntry};
use crate::repository::layout::attempt_index_name;
use crate::repository::list::{ListItem, RunRef, RunWriter};
use crate::repository::manifest::{DoneRecord, ProgressRecord, ScopeList};
use crate::repository::staging::{write_done, write_progress};
use crate::tasks::context::TaskContext;

/// Blob locations an attempt holds before writing them to an index file of its own (fewer
/// ride inline in its records, so a small task costs no index file).
const INDEX_FILE_AT: usize = 4096;

/// An attempt's output, as it is written.
pub struct ListOutput<'a> {
    context: &'a TaskContext,
    partition: String,
    run: RunWriter,
    /// Locations of stored blobs no index file of this attempt lists yet.
    pending: Vec<IndexEntry>,
    /// Index files written so far (they are numbered by it).
    num_index_flushes: usize,
    last_save: Instant,
    save_interval: Duration,
}

impl<'a> ListOutput<'a> {
    /// The output of `context`'s attempt, indexing blobs under `partition`.
    pub fn new(context: &'a TaskContext, partition: String) -> Self {
        Self {
            context,
            partition,
            run: RunWriter::new(&context.repository),
            pending: Vec::new(),
            num_index_flushes: 0,
            last_save: Instant::now(),
            save_interval: context.worker.config.progress_save_interval,
        }
    }

    /// The partition its blobs are indexed under.
    pub fn partition(&self) -> &str {
        &self.partition
    }

    /// Appends `item` to the run (keys strictly increasing).
    ///
    /// # Errors
    /// When a chunk cannot be written.
    pub async fn push(&mut self, item: &ListItem) -> Result<(), TaskError> {
        Ok(self.run.push(item).await?)
    }

    /// Records where blobs this attempt stored (or carries from an earlier one) are.
    ///
    /// # Errors
    /// When an index file cannot be written.
    pub async fn record_blobs(&mut self, blobs: Vec<IndexEntry>) -> Result<(), TaskError> {
        self.pending.extend(blobs);
        if self.pending.len() >= INDEX_FILE_AT {
            self.write_index_file().await?;
        }
        Ok(())
    }

    async fn write_index_file(&mut self) -> Result<(), TaskError> {
        let entries = std::mem::take(&mut self.pending);
        let repository = &self.context.repository;
        let spec = &self.context.spec;
        let base = format!(
            "{}-{:04}",
            attempt_index_name(spec.task_id, self.context.attempt),
            self.num_index_flushes
        );
        self.num_index_flushes += 1;
        let names = write_index_files(
            repository.store.as_ref(),
            &repository.key,
            &self.partition,
            &base,
            &entries,
        )
        .await?;
        // One file per name, each a slice of `entries` in order.
        for (name, batch) in
            names.iter().zip(entries.chunks(crate::repository::index::INDEX_FILE_ENTRIES))
        {
            self.context
                .worker
                .repositories
                .record_index_file(repository, &self.partition, name, batch.to_vec())
                .await?;
        }
        Ok(())
    }

    /// Whether a progress save is due.
    pub fn save_due(&self) -> bool {
        self.last_save.elapsed() >= self.save_interval
    }

    /// When the next progress save is due.
    pub fn next_save(&self) -> tokio::time::Instant {
        tokio::time::Instant::from_std(self.last_save + self.save_interval)
    }

    /// Saves progress: the run as far as it got (its current chunk cut), and the blobs its
    /// items name that no index file lists.
    ///
    /// # Errors
    /// When a write fails.
    pub async fn save(&mut self) -> Result<(), TaskError> {
        self.last_save = Instant::now();
        self.run.cut().await?;
        let record = ProgressRecord {
            written: RunRef { chunks: self.run.chunks().to_vec() },
            blobs: self.pending.clone(),
        };
        let spec = &self.context.spec;
        write_progress(&self.context.repository, spec.task_id, self.context.attempt, &record)
            .await?;
        Ok(())
    }

    /// Ends the run and writes the done record with `report` (to which it adds the list bytes
    /// written); `list` makes the scope's list from the run written (`None`: the task keeps no
    /// list, a consistency check that repaired nothing). Returns the report as recorded.
    ///
    /// # Errors
    /// When a write fails.
    pub async fn finish(
        self,
        mut report: TaskReport,
        list: impl FnOnce(&RunRef) -> Option<ScopeList>,
    ) -> Result<TaskReport, TaskError> {
        let Self { context, run, pending, .. } = self;
        let (written, bytes) = run.finish().await?;
        report.transfer.list_bytes_written += bytes;
        let record = DoneRecord { report, list: list(&written), written, blobs: pending };
        write_done(&context.repository, context.spec.task_id, context.attempt, &record).await?;
        Ok(record.report)
    }
}
