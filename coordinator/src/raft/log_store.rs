//! The Raft log, vote and committed index, in a redb file.
//!
//! Every write is one redb transaction committed with redb's default durability (fsync), so an
//! entry acknowledged to the leader survives a crash. Entries are JSON under their index.

use std::fmt::Debug;
use std::ops::{Bound, RangeBounds};
use std::sync::Arc;

use openraft::storage::{LogFlushed, LogState, RaftLogStorage};
use openraft::{Entry, LogId, OptionalSend, RaftLogReader, StorageError, StorageIOError, Vote};
use redb::{Database, ReadableDatabase, ReadableTable, TableDefinition};

use super::types::{encode, ReplicaId, TypeConfig};

const LOGS: TableDefinition<u64, &[u8]> = TableDefinition::new("raft_logs");
const META: TableDefinition<&str, &[u8]> = TableDefinition::new("raft_meta");
const VOTE_KEY: &str = "vote";
const COMMITTED_KEY: &str = "committed";
const PURGED_KEY: &str = "last_purged";

type StorageResult<T> = Result<T, StorageError<ReplicaId>>;

/// The Raft log store. Cheap to clone: clones share the database.
#[derive(Clone, Debug)]
pub struct LogStore {
    database: Arc<Database>,
}

impl LogStore {
    /// Opens (creating the tables if needed) the log in `database`.
    ///
    /// # Errors
    /// Fails when the tables cannot be created.
    pub fn open(database: Arc<Database>) -> anyhow::Result<Self> {
        let txn = database.begin_write()?;
        txn.open_table(LOGS)?;
        txn.open_table(META)?;
        txn.commit()?;
        Ok(Self { database })
    }

    fn read_meta<T: serde::de::DeserializeOwned>(&self, key: &str) -> StorageResult<Option<T>> {
        let read = || -> Result<Option<T>, Box<dyn std::error::Error + Send + Sync>> {
            let txn = self.database.begin_read()?;
            let table = txn.open_table(META)?;
            let Some(value) = table.get(key)? else {
                return Ok(None);
            };
            Ok(Some(serde_json::from_slice(value.value())?))
        };
        read().map_err(|error| StorageIOError::read(&io(error)).into())
    }

    fn write_meta<T: serde::Serialize>(
        &self,
        key: &str,
        value: &T,
    ) -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
        let bytes = encode(value)?;
        let txn = self.database.begin_write()?;
        {
            let mut table = txn.open_table(META)?;
            table.insert(key, bytes.as_slice())?;
        }
        txn.commit()?;
        Ok(())
    }

    fn delete_range(
        &self,
        range: (Bound<u64>, Bound<u64>),
    ) -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
        let txn = self.database.begin_write()?;
        {
            let mut table = txn.open_table(LOGS)?;
            table.retain_in(range, |_, _| false)?;
        }
        txn.commit()?;
        Ok(())
    }
}

impl RaftLogReader<TypeConfig> for LogStore {
    async fn try_get_log_entries<RB: RangeBounds<u64> + Clone + Debug + OptionalSend>(
        &mut self,
        range: RB,
    ) -> StorageResult<Vec<Entry<TypeConfig>>> {
        let read =
            || -> Result<Vec<Entry<TypeConfig>>, Box<dyn std::error::Error + Send + Sync>> {
                let txn = self.database.begin_read()?;
                let table = txn.open_table(LOGS)?;
                let bounds = (range.start_bound().cloned(), range.end_bound().cloned());
                let mut entries = Vec::new();
                for row in table.range::<u64>(bounds)? {
                    let (_, value) = row?;
                    entries.push(serde_json::from_slice(value.value())?);
                }
                Ok(entries)
            };
        read().map_err(|error| StorageIOError::read_logs(&io(error)).into())
    }
}

impl RaftLogStorage<TypeConfig> for LogStore {
    type LogReader = Self;

    async fn get_log_state(&mut self) -> StorageResult<LogState<TypeConfig>> {
        let last_purged_log_id: Option<LogId<ReplicaId>> = self.read_meta(PURGED_KEY)?;
        let read_last =
            || -> Result<Option<LogId<ReplicaId>>, Box<dyn std::error::Error + Send + Sync>> {
                let txn = self.database.begin_read()?;
                let table = txn.open_table(LOGS)?;
                let Some((_, value)) = table.last()? else {
                    return Ok(None);
                };
                let entry: Entry<TypeConfig> = serde_json::from_slice(value.value())?;
                Ok(Some(entry.log_id))
            };
        let last = read_last().map_err(|error| StorageIOError::read_logs(&io(error)))?;
        Ok(LogState { last_purged_log_id, last_log_id: last.or(last_purged_log_id) })
    }

    async fn get_log_reader(&mut self) -> Self::LogReader {
        self.clone()
    }

    async fn save_vote(&mut self, vote: &Vote<ReplicaId>) -> StorageResult<()> {
        self.write_meta(VOTE_KEY, vote)
            .map_err(|error| StorageIOError::write_vote(&io(error)).into())
    }

    async fn read_vote(&mut self) -> StorageResult<Option<Vote<ReplicaId>>> {
        self.read_meta(VOTE_KEY)
    }

    async fn save_committed(&mut self, committed: Option<LogId<ReplicaId>>) -> StorageResult<()> {
        self.write_meta(COMMITTED_KEY, &committed)
            .map_err(|error| StorageIOError::write(&io(error)).into())
    }

    async fn read_committed(&mut self) -> StorageResult<Option<LogId<ReplicaId>>> {
        Ok(self.read_meta::<Option<LogId<ReplicaId>>>(COMMITTED_KEY)?.flatten())
    }

    async fn append<I>(&mut self, entries: I, callback: LogFlushed<TypeConfig>) -> StorageResult<()>
    where
        I: IntoIterator<Item = Entry<TypeConfig>> + OptionalSend,
        I::IntoIter: OptionalSend,
    {
        let write = || -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
            let txn = self.database.begin_write()?;
            {
                let mut table = txn.open_table(LOGS)?;
                for entry in entries {
                    let bytes = encode(&entry)?;
                    table.insert(entry.log_id.index, bytes.as_slice())?;
                }
            }
            txn.commit()?;
            Ok(())
        };
        let result = write().map_err(|error| std::io::Error::other(error.to_string()));
        let failed = result.as_ref().err().map(StorageIOError::write_logs);
        callback.log_io_completed(result);
        match failed {
            Some(error) => Err(error.into()),
            None => Ok(()),
        }
    }

    async fn truncate(&mut self, log_id: LogId<ReplicaId>) -> StorageResult<()> {
        self.delete_range((Bound::Included(log_id.index), Bound::Unbounded))
            .map_err(|error| StorageIOError::write_logs(&io(error)).into())
    }

    async fn purge(&mut self, log_id: LogId<ReplicaId>) -> StorageResult<()> {
        self.write_meta(PURGED_KEY, &log_id).map_err(|error| StorageIOError::write(&io(error)))?;
        self.delete_range((Bound::Unbounded, Bound::Included(log_id.index)))
            .map_err(|error| StorageIOError::write_logs(&io(error)).into())
    }
}

/// Wraps a storage error so openraft's error constructors (which want a sized error) accept it.
fn io(error: Box<dyn std::error::Error + Send + Sync>) -> std::io::Error {
    std::io::Error::other(error)
}
