//! Applies committed commands to the [`SharedState`] and snapshots it.
//!
//! The state lives in memory; what makes it durable is the Raft log plus the last snapshot,
//! which is stored in the same redb file. On start-up the snapshot is loaded and openraft
//! re-applies the committed entries after it.

use std::io::Cursor;
use std::sync::Arc;

use openraft::storage::{RaftStateMachine, Snapshot};
use openraft::{
    BasicNode, EntryPayload, LogId, OptionalSend, RaftSnapshotBuilder, SnapshotMeta, StorageError,
    StorageIOError, StoredMembership,
};
use redb::{Database, ReadableDatabase, TableDefinition};
use serde::{Deserialize, Serialize};

use super::types::{encode, ReplicaId, TypeConfig};
use crate::core::{ClusterState, CommandResponse};
use crate::shared::SharedState;

const SNAPSHOT: TableDefinition<&str, &[u8]> = TableDefinition::new("raft_snapshot");
const CURRENT: &str = "current";
/// The state's bytes of the current snapshot (format 2): stored as they are, not inside JSON.
const CURRENT_DATA: &str = "current_data";

type StorageResult<T> = Result<T, StorageError<ReplicaId>>;

/// A snapshot: openraft's metadata plus the state as JSON.
#[derive(Clone, Debug)]
struct StoredSnapshot {
    meta: SnapshotMeta<ReplicaId, BasicNode>,
    data: Vec<u8>,
}

/// The record under [`CURRENT`]: format 2 keeps the state's bytes under [`CURRENT_DATA`];
/// format 1 held them inline, as a JSON array of numbers (about 3.5 bytes stored per byte: a
/// thousand-node cluster's snapshots made a replica's Raft file grow by 100 MiB a backup).
#[derive(Clone, Debug, Serialize, Deserialize)]
struct SnapshotRecord {
    format: u32,
    meta: SnapshotMeta<ReplicaId, BasicNode>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    data: Option<Vec<u8>>,
}

const SNAPSHOT_FORMAT: u32 = 2;

/// The state machine. Cloned to build snapshots (clones share everything).
#[derive(Clone, Debug)]
pub struct StateMachineStore {
    database: Arc<Database>,
    shared: Arc<SharedState>,
    last_applied: Option<LogId<ReplicaId>>,
    last_membership: StoredMembership<ReplicaId, BasicNode>,
}

impl StateMachineStore {
    /// Opens the state machine, loading the last snapshot into `shared`.
    ///
    /// # Errors
    /// Fails when the snapshot table cannot be opened or the stored snapshot cannot be decoded.
    pub fn open(database: Arc<Database>, shared: Arc<SharedState>) -> anyhow::Result<Self> {
        let txn = database.begin_write()?;
        txn.open_table(SNAPSHOT)?;
        txn.commit()?;
        let mut store = Self {
            database,
            shared,
            last_applied: None,
            last_membership: StoredMembership::default(),
        };
        if let Some(snapshot) = store.read_snapshot()? {
            store.load(&snapshot)?;
        }
        Ok(store)
    }

    fn read_snapshot(&self) -> anyhow::Result<Option<StoredSnapshot>> {
        let txn = self.database.begin_read()?;
        let table = txn.open_table(SNAPSHOT)?;
        let Some(value) = table.get(CURRENT)? else {
            return Ok(None);
        };
        let record: SnapshotRecord = serde_json::from_slice(value.value())?;
        let data = match (record.format, record.data) {
            (1, Some(data)) => data,
            (SNAPSHOT_FORMAT, None) => {
                let data = table.get(CURRENT_DATA)?;
                let data = data.ok_or_else(|| anyhow::anyhow!("the snapshot's state is missing"))?;
                data.value().to_vec()
            }
            (format, _) => anyhow::bail!(
                "snapshot format {format} is not supported by this version (expected 1 or {SNAPSHOT_FORMAT})"
            ),
        };
        Ok(Some(StoredSnapshot { meta: record.meta, data }))
    }

    fn write_snapshot(
        &self,
        meta: &SnapshotMeta<ReplicaId, BasicNode>,
        data: &[u8],
    ) -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
        let record = SnapshotRecord { format: SNAPSHOT_FORMAT, meta: meta.clone(), data: None };
        let bytes = encode(&record)?;
        let txn = self.database.begin_write()?;
        {
            let mut table = txn.open_table(SNAPSHOT)?;
            table.insert(CURRENT_DATA, data)?;
            table.insert(CURRENT, bytes.as_slice())?;
        }
        txn.commit()?;
        Ok(())
    }

    fn load(&mut self, snapshot: &StoredSnapshot) -> Result<(), serde_json::Error> {
        let state: ClusterState = serde_json::from_slice(&snapshot.data)?;
        self.shared.replace(state);
        self.last_applied = snapshot.meta.last_log_id;
        self.last_membership = snapshot.meta.last_membership.clone();
        Ok(())
    }
}

impl RaftSnapshotBuilder<TypeConfig> for StateMachineStore {
    async fn build_snapshot(&mut self) -> StorageResult<Snapshot<TypeConfig>> {
        let data =
            self.shared.read(encode).map_err(|error| StorageIOError::read_state_machine(&error))?;
        let snapshot_id = match self.last_applied {
            Some(log_id) => format!("{}-{}", log_id.leader_id, log_id.index),
            None => "empty".to_string(),
        };
        let meta = SnapshotMeta {
            last_log_id: self.last_applied,
            last_membership: self.last_membership.clone(),
            snapshot_id,
        };
        self.write_snapshot(&meta, &data)
            .map_err(|error| StorageIOError::write_snapshot(Some(meta.signature()), &io(error)))?;
        Ok(Snapshot { meta, snapshot: Box::new(Cursor::new(data)) })
    }
}

impl RaftStateMachine<TypeConfig> for StateMachineStore {
    type SnapshotBuilder = Self;

    async fn applied_state(
        &mut self,
    ) -> StorageResult<(Option<LogId<ReplicaId>>, StoredMembership<ReplicaId, BasicNode>)> {
        Ok((self.last_applied, self.last_membership.clone()))
    }

    async fn apply<I>(&mut self, entries: I) -> StorageResult<Vec<CommandResponse>>
    where
        I: IntoIterator<Item = openraft::Entry<TypeConfig>> + OptionalSend,
        I::IntoIter: OptionalSend,
    {
        let mut responses = Vec::new();
        for entry in entries {
            self.last_applied = Some(entry.log_id);
            let response = match entry.payload {
                EntryPayload::Blank => CommandResponse::Applied,
                EntryPayload::Normal(command) => self.shared.apply(command),
                EntryPayload::Membership(membership) => {
                    self.last_membership = StoredMembership::new(Some(entry.log_id), membership);
                    CommandResponse::Applied
                }
            };
            responses.push(response);
        }
        Ok(responses)
    }

    async fn get_snapshot_builder(&mut self) -> Self::SnapshotBuilder {
        self.clone()
    }

    async fn begin_receiving_snapshot(&mut self) -> StorageResult<Box<Cursor<Vec<u8>>>> {
        Ok(Box::new(Cursor::new(Vec::new())))
    }

    async fn install_snapshot(
        &mut self,
        meta: &SnapshotMeta<ReplicaId, BasicNode>,
        snapshot: Box<Cursor<Vec<u8>>>,
    ) -> StorageResult<()> {
        let stored = StoredSnapshot { meta: meta.clone(), data: snapshot.into_inner() };
        self.load(&stored)
            .map_err(|error| StorageIOError::read_snapshot(Some(meta.signature()), &error))?;
        self.write_snapshot(&stored.meta, &stored.data).map_err(|error| {
            StorageIOError::write_snapshot(Some(meta.signature()), &io(error)).into()
        })
    }

    async fn get_current_snapshot(&mut self) -> StorageResult<Option<Snapshot<TypeConfig>>> {
        let snapshot = self
            .read_snapshot()
            .map_err(|error| StorageIOError::read_snapshot(None, &io(error.to_string().into())))?;
        Ok(snapshot.map(|stored| Snapshot {
            meta: stored.meta,
            snapshot: Box::new(Cursor::new(stored.data)),
        }))
    }
}

/// Wraps a storage error so openraft's error constructors (which want a sized error) accept it.
fn io(error: Box<dyn std::error::Error + Send + Sync>) -> std::io::Error {
    std::io::Error::other(error)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn meta() -> SnapshotMeta<ReplicaId, BasicNode> {
        SnapshotMeta {
            last_log_id: None,
            last_membership: StoredMembership::default(),
            snapshot_id: "fixture".to_string(),
        }
    }

    fn state_with_a_repository() -> ClusterState {
        let mut state = ClusterState::default();
        let repository = crate::core::Repository::new("main", "file:///r", 1 << 20);
        let _ = state.apply(crate::core::Command::PutRepository(repository));
        state
    }

    #[test]
    fn test_snapshots_keep_the_state_as_bytes_and_format_1_still_loads() {
        let dir = tempfile::tempdir().unwrap();
        let database = Arc::new(Database::create(dir.path().join("raft.redb")).unwrap());
        let data = serde_json::to_vec(&state_with_a_repository()).unwrap();
        // Format 1: the state inline in the JSON record, as an array of numbers.
        let old = serde_json::json!({"format": 1, "meta": meta(), "data": data});
        let txn = database.begin_write().unwrap();
        txn.open_table(SNAPSHOT).unwrap().insert(CURRENT, old.to_string().as_bytes()).unwrap();
        txn.commit().unwrap();
        let shared = Arc::new(SharedState::default());
        let store = StateMachineStore::open(database.clone(), shared.clone()).unwrap();
        assert!(shared.read(|state| state.repositories.contains_key("main")));
        // Written again, it is format 2: a small record and the bytes beside it.
        store.write_snapshot(&meta(), &data).unwrap();
        let txn = database.begin_read().unwrap();
        let table = txn.open_table(SNAPSHOT).unwrap();
        let record = table.get(CURRENT).unwrap().unwrap().value().to_vec();
        assert!(record.len() < 300, "the record holds the state again: {} bytes", record.len());
        assert_eq!(table.get(CURRENT_DATA).unwrap().unwrap().value(), data.as_slice());
        drop((table, txn));
        let reloaded = Arc::new(SharedState::default());
        StateMachineStore::open(database, reloaded.clone()).unwrap();
        assert!(reloaded.read(|state| state.repositories.contains_key("main")));
    }
}
