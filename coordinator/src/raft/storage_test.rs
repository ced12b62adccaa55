//! openraft's own storage test suite (`openraft::testing::Suite`) run against bk's redb log
//! store and state machine: vote, log append/truncate/purge, membership, apply, snapshots.

use std::sync::Arc;

use openraft::testing::{StoreBuilder, Suite};
use openraft::StorageError;

use super::log_store::LogStore;
use super::state_machine::StateMachineStore;
use super::{ReplicaId, TypeConfig};
use crate::shared::SharedState;

/// A fresh store in its own temporary directory (kept alive with the store).
struct RedbStores;

impl StoreBuilder<TypeConfig, LogStore, StateMachineStore, tempfile::TempDir> for RedbStores {
    async fn build(
        &self,
    ) -> Result<(tempfile::TempDir, LogStore, StateMachineStore), StorageError<ReplicaId>> {
        let failed = |error: String| {
            StorageError::from_io_error(
                openraft::ErrorSubject::Store,
                openraft::ErrorVerb::Write,
                std::io::Error::other(error),
            )
        };
        let dir = tempfile::tempdir().map_err(|error| failed(error.to_string()))?;
        let database = redb::Database::create(dir.path().join("raft.redb"))
            .map_err(|error| failed(error.to_string()))?;
        let database = Arc::new(database);
        let log_store =
            LogStore::open(database.clone()).map_err(|error| failed(error.to_string()))?;
        let state_machine = StateMachineStore::open(database, Arc::new(SharedState::default()))
            .map_err(|error| failed(error.to_string()))?;
        Ok((dir, log_store, state_machine))
    }
}

#[test]
fn test_the_redb_storage_passes_openraft_s_storage_suite() {
    Suite::test_all(RedbStores).unwrap();
}
