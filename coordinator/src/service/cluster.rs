//! Coordinator cluster membership: status, adding and removing replicas.

use std::collections::BTreeSet;

use bk_proto::pb;
use openraft::error::{ClientWriteError, RaftError};
use openraft::{BasicNode, RaftMetrics};

use crate::coordinator::Coordinator;
use crate::error::{CoordinatorError, CoordinatorResult};

/// The cluster as this replica sees it.
pub fn cluster_status(coordinator: &Coordinator) -> pb::ClusterStatusResponse {
    let metrics = coordinator.raft.metrics().borrow().clone();
    let last_log_index = metrics.last_log_index.unwrap_or(0);
    let replicas = metrics
        .membership_config
        .membership()
        .nodes()
        .map(|(id, node)| replica_status(&metrics, *id, node, last_log_index))
        .collect();
    pb::ClusterStatusResponse {
        replica_id: coordinator.replica_id,
        leader_id: metrics.current_leader.unwrap_or(0),
        term: metrics.current_term,
        last_applied_index: metrics.last_applied.map_or(0, |log_id| log_id.index),
        last_log_index,
        snapshot_index: metrics.snapshot.map_or(0, |log_id| log_id.index),
        replicas,
    }
}

/// One replica: its role, and on the leader how far it has replicated.
fn replica_status(
    metrics: &RaftMetrics<u64, BasicNode>,
    id: u64,
    node: &BasicNode,
    last_log_index: u64,
) -> pb::ReplicaStatus {
    let voters: BTreeSet<u64> = metrics.membership_config.membership().voter_ids().collect();
    let role = if metrics.current_leader == Some(id) {
        "leader"
    } else if voters.contains(&id) {
        "follower"
    } else {
        "learner"
    };
    let matched_index = metrics
        .replication
        .as_ref()
        .and_then(|replication| replication.get(&id))
        .map(|matched| matched.map_or(0, |log_id| log_id.index));
    pb::ReplicaStatus {
        id,
        address: node.addr.clone(),
        role: role.to_string(),
        matched_index,
        lag: matched_index.map(|matched| last_log_index.saturating_sub(matched)),
    }
}

/// Adds `replica_id` at `address`: learner first (it catches up), then voter.
///
/// # Errors
/// [`CoordinatorError::NotLeader`] on a follower; [`CoordinatorError::InvalidRequest`] for a bad
/// id or address; Raft's error when the change cannot be committed.
pub async fn add_replica(
    coordinator: &Coordinator,
    replica_id: u64,
    address: &str,
) -> CoordinatorResult<()> {
    if replica_id == 0 || address.trim().is_empty() {
        return Err(CoordinatorError::InvalidRequest(
            "a replica needs an id ≥ 1 and an address".to_string(),
        ));
    }
    coordinator.ensure_leader()?;
    tracing::info!(replica_id, address, "adding replica as a learner");
    coordinator
        .raft
        .add_learner(replica_id, BasicNode::new(address), true)
        .await
        .map_err(membership_error)?;
    let mut voters: BTreeSet<u64> =
        coordinator.raft.metrics().borrow().membership_config.membership().voter_ids().collect();
    voters.insert(replica_id);
    coordinator.raft.change_membership(voters, false).await.map_err(membership_error)?;
    tracing::info!(replica_id, "replica is a voter");
    Ok(())
}

/// Removes `replica_id` from the cluster.
///
/// # Errors
/// As [`add_replica`]; also refuses to remove the last voter.
pub async fn remove_replica(coordinator: &Coordinator, replica_id: u64) -> CoordinatorResult<()> {
    coordinator.ensure_leader()?;
    let mut voters: BTreeSet<u64> =
        coordinator.raft.metrics().borrow().membership_config.membership().voter_ids().collect();
    if !voters.remove(&replica_id) {
        return Err(CoordinatorError::NotFound {
            what: format!("replica `{replica_id}` among the voters"),
        });
    }
    if voters.is_empty() {
        return Err(CoordinatorError::InvalidRequest("cannot remove the last voter".to_string()));
    }
    coordinator.raft.change_membership(voters, false).await.map_err(membership_error)?;
    tracing::info!(replica_id, "replica removed");
    Ok(())
}

fn membership_error(error: RaftError<u64, ClientWriteError<u64, BasicNode>>) -> CoordinatorError {
    match error {
        RaftError::APIError(ClientWriteError::ForwardToLeader(forward)) => {
            CoordinatorError::NotLeader { leader_addr: forward.leader_node.map(|node| node.addr) }
        }
        RaftError::APIError(ClientWriteError::ChangeMembershipError(error)) => {
            CoordinatorError::FailedPrecondition(format!("membership change refused: {error}"))
        }
        RaftError::Fatal(fatal) => CoordinatorError::RaftFatal(fatal.to_string()),
    }
}
