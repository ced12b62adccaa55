//! The replica's handle: Raft, the applied state, the leader's in-memory runtime, and the one
//! way to change state ([`Coordinator::propose`]).

use std::sync::Arc;
use std::time::Duration;

use openraft::error::{ClientWriteError, RaftError};

use crate::core::{Command, CommandResponse};
use crate::error::{CoordinatorError, CoordinatorResult};
use crate::leader::runtime::LeaderRuntime;
use crate::raft::{Raft, ReplicaId};
use crate::shared::SharedState;

/// Everything a service handler needs.
pub struct Coordinator {
    /// This replica's id.
    pub replica_id: ReplicaId,
    /// Raft.
    pub raft: Raft,
    /// The applied state.
    pub shared: Arc<SharedState>,
    /// Liveness and progress, kept by the leader in memory only.
    pub runtime: LeaderRuntime,
    /// How long a silent worker keeps its leases.
    pub lease_timeout: Duration,
    /// Which finished jobs the leader keeps in the state.
    pub job_history: crate::core::job::history::JobHistory,
    /// What sources are judged by (RPO, drill age) in the console and the metrics.
    pub objectives: crate::core::source_health::Objectives,
}

impl Coordinator {
    /// Replicates `command` and returns what applying it answered.
    ///
    /// # Errors
    /// [`CoordinatorError::NotLeader`] on a follower (with the leader's address when known),
    /// [`CoordinatorError::RaftFatal`] when Raft has stopped.
    pub async fn propose(&self, command: Command) -> CoordinatorResult<CommandResponse> {
        match self.raft.client_write(command).await {
            Ok(response) => Ok(response.data),
            Err(RaftError::APIError(ClientWriteError::ForwardToLeader(forward))) => {
                Err(CoordinatorError::NotLeader {
                    leader_addr: forward.leader_node.map(|node| node.addr),
                })
            }
            Err(RaftError::APIError(ClientWriteError::ChangeMembershipError(error))) => {
                Err(CoordinatorError::Internal(error.to_string()))
            }
            Err(RaftError::Fatal(fatal)) => Err(CoordinatorError::RaftFatal(fatal.to_string())),
        }
    }

    /// Whether this replica is the leader right now.
    pub fn is_leader(&self) -> bool {
        self.raft.metrics().borrow().current_leader == Some(self.replica_id)
    }

    /// Fails with [`CoordinatorError::NotLeader`] unless this replica leads. Used by calls that
    /// need the leader's in-memory runtime (task leases, progress, watching).
    ///
    /// # Errors
    /// [`CoordinatorError::NotLeader`].
    pub fn ensure_leader(&self) -> CoordinatorResult<()> {
        let metrics = self.raft.metrics().borrow().clone();
        match metrics.current_leader {
            Some(leader) if leader == self.replica_id => Ok(()),
            Some(leader) => {
                let leader_addr = metrics
                    .membership_config
                    .membership()
                    .get_node(&leader)
                    .map(|node| node.addr.clone());
                Err(CoordinatorError::NotLeader { leader_addr })
            }
            None => Err(CoordinatorError::NotLeader { leader_addr: None }),
        }
    }
}
