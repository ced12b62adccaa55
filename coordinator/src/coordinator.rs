//! The replica's handle: Raft, the applied state, the leader's in-memory runtime, and the one
//! way to change state ([`Coordinator::propose`]).

use std::sync::Arc;
use std::time::Duration;

use openraft::error::{ClientWriteError, RaftError};

use tokio::sync::{watch, Notify};

use crate::core::{ClusterState, Command, CommandResponse};
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
    /// The applied state: read through [`Coordinator::read`], changed only by proposing.
    shared: Arc<SharedState>,
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
    /// A replica's coordinator over `shared`, the state its Raft state machine applies to.
    pub fn new(
        replica_id: ReplicaId,
        raft: Raft,
        shared: Arc<SharedState>,
        lease_timeout: Duration,
        job_history: crate::core::job::history::JobHistory,
        objectives: crate::core::source_health::Objectives,
    ) -> Self {
        Self {
            replica_id,
            raft,
            shared,
            runtime: LeaderRuntime::default(),
            lease_timeout,
            job_history,
            objectives,
        }
    }

    /// Reads the applied state (consistent for the call; never held across an await).
    pub fn read<R>(&self, read: impl FnOnce(&ClusterState) -> R) -> R {
        self.shared.read(read)
    }

    /// The wakers a worker of `node` waits on for runnable tasks (its node's, everyone's).
    pub fn task_wakers(&self, node: &str) -> (Arc<Notify>, Arc<Notify>) {
        self.shared.task_wakers(node)
    }

    /// Wakes job watchers (progress changed without a state change).
    pub fn notify_watchers(&self) {
        self.shared.notify();
    }

    /// A receiver that changes whenever the state or progress does (for streaming watchers).
    pub fn subscribe(&self) -> watch::Receiver<u64> {
        self.shared.subscribe()
    }

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

    /// Confirms, with a round of heartbeats, that this replica still leads: what it has applied
    /// then holds every write committed before the call (a read-index read), so a client reads
    /// what it wrote even across a failover. A follower, or a leader deposed without knowing it
    /// yet, answers [`CoordinatorError::NotLeader`] with the leader it knows of.
    ///
    /// # Errors
    /// [`CoordinatorError::NotLeader`].
    pub async fn ensure_linearizable(&self) -> CoordinatorResult<()> {
        self.ensure_leader()?;
        if self.raft.ensure_linearizable().await.is_err() {
            // Deposed meanwhile: say who leads now, if anyone is known.
            self.ensure_leader()?;
            return Err(CoordinatorError::NotLeader { leader_addr: None });
        }
        Ok(())
    }
}
