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

use super::{encode, ReplicaId, TypeConfig};
use crate::core::{ClusterState, CommandResponse};
use crate::shared::SharedState;

const SNAPSHOT: TableDefinition<&str, &[u8]> = TableDefinition::new("raft_snapshot");
const CURRENT: &str = "current";

type StorageResult<T> = Result<T, StorageError<ReplicaId>>;

/// A snapshot as stored: openraft's metadata plus the state as JSON (versioned by `format`).
#[derive(Clone, Debug, Serialize, Deserialize)]
struct StoredSnapshot {
    format: u32,
    meta: SnapshotMeta<ReplicaId, BasicNode>,
    data: Vec<u8>,
}

const SNAPSHOT_FORMAT: u32 = 1;

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
        let snapshot: StoredSnapshot = serde_json::from_slice(value.value())?;
        anyhow::ensure!(
            snapshot.format == SNAPSHOT_FORMAT,
            "snapshot format {} is not supported by this version (expected {SNAPSHOT_FORMAT})",
            snapshot.format
        );
        Ok(Some(snapshot))
    }

    fn write_snapshot(
        &self,
        snapshot: &StoredSnapshot,
    ) -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
        let bytes = encode(snapshot)?;
        let txn = self.database.begin_write()?;
        {
            let mut table = txn.open_table(SNAPSHOT)?;
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
        let stored =
            StoredSnapshot { format: SNAPSHOT_FORMAT, meta: meta.clone(), data: data.clone() };
        self.write_snapshot(&stored)
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
        let stored = StoredSnapshot {
            format: SNAPSHOT_FORMAT,
            meta: meta.clone(),
            data: snapshot.into_inner(),
        };
        self.load(&stored)
            .map_err(|error| StorageIOError::read_snapshot(Some(meta.signature()), &error))?;
        self.write_snapshot(&stored).map_err(|error| {
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
