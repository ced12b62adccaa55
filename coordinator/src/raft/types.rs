//! bk's Raft types and the limits every part of the replication shares, apart from the parts so
//! that the log, the state machine and the network import them without importing each other.

use std::io::Cursor;

use openraft::BasicNode;

use crate::core::{Command, CommandResponse};

openraft::declare_raft_types!(
    /// bk's Raft types: commands in, responses out, replicas addressed by their gRPC address.
    pub TypeConfig:
        D = Command,
        R = CommandResponse,
        Node = BasicNode,
);

/// A replica's id (unique in the coordinator cluster, configured per replica).
pub type ReplicaId = u64;

/// The largest replica-to-replica message accepted or sent. tonic's default (4 MiB) is smaller
/// than one append of a thousand-node job's entries or a snapshot chunk with its metadata, and a
/// refused message is retried forever, so a joining replica would never catch up.
pub const MAX_RAFT_MESSAGE_BYTES: usize = 256 << 20;
/// The Raft handle.
pub type Raft = openraft::Raft<TypeConfig>;

/// Encodes a value for storage or the wire (JSON: readable in a debugger, and the state is small).
pub(crate) fn encode<T: serde::Serialize>(value: &T) -> Result<Vec<u8>, serde_json::Error> {
    serde_json::to_vec(value)
}

/// The default snapshot payload type, as openraft's `declare_raft_types!` expects it in scope.
pub type SnapshotData = Cursor<Vec<u8>>;
