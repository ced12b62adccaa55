//! What a copy counted and found, shared by both shapes of copy and added to the task's report.

use bk_proto::model::{CorruptObject, TaskReport, TransferStats};

use crate::repository::list::ObjectEntry;

/// Totals of a copy.
#[derive(Debug, Default)]
pub struct CopyTotals {
    /// Objects in the result (copied or reused).
    pub num_objects: u64,
    /// Their bytes.
    pub num_bytes: u64,
    /// Objects that disappeared between listing and reading (normal on a live database).
    pub vanished: Vec<String>,
    /// The entries of a set copy's call (a streamed copy keeps none).
    pub entries: Vec<ObjectEntry>,
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

    /// Counts an object that was read and stored: its bytes, and what its format check found.
    pub fn count_read(
        &mut self,
        entry: &ObjectEntry,
        bytes_written: u64,
        bytes_stored: u64,
        format: Result<crate::formats::Validated, CorruptObject>,
    ) {
        self.transfer.bytes_read += entry.size;
        self.transfer.bytes_written += bytes_written;
        self.transfer.bytes_stored += bytes_stored;
        match format {
            Ok(validated) => self
                .catalog_uuids
                .extend(validated.catalog_uuid.map(|uuid| (entry.key.clone(), uuid))),
            Err(corrupt) => self.corrupt.push(corrupt),
        }
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

#[cfg(test)]
mod tests {
    use super::*;

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
