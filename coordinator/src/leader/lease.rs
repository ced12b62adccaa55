//! Takes leases back from workers that went silent, and from workers that never got them.
//!
//! Runs on every replica but acts only on the leader: each tick, the rule in
//! [`crate::core::lease`] names the leases to take back, and each gets a `LeaseLost` for its
//! attempt, which re-queues the task. The attempt number fences the old worker: if it comes
//! back and reports, its result is ignored.

use std::sync::Arc;
use std::time::Duration;

use bk_proto::ids::TaskId;
use tokio_util::sync::CancellationToken;
use tracing::{debug, warn};

use crate::coordinator::Coordinator;
use crate::core::lease::{expired, ExpiredLease, LeaderFacts};

/// Runs the expiry loop until `shutdown`.
pub async fn run_lease_expiry(coordinator: Arc<Coordinator>, shutdown: CancellationToken) {
    let tick =
        (coordinator.lease_timeout / 4).clamp(Duration::from_millis(100), Duration::from_secs(5));
    let mut interval = tokio::time::interval(tick);
    interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = interval.tick() => {}
        }
        expire_leases(&coordinator).await;
    }
}

pub use crate::core::lease::Expiry;

/// One unit of the loop: proposes `LeaseLost` for every lease [`expired`] names.
pub async fn expire_leases(coordinator: &Coordinator) {
    let is_leader = coordinator.is_leader();
    coordinator.runtime.set_leader(is_leader);
    if !is_leader {
        return;
    }
    let leases = {
        let runtime = &coordinator.runtime;
        let silence = |worker_id: &str| runtime.silence(worker_id);
        let acknowledged =
            |task_id: &TaskId, attempt: u32| runtime.progress(task_id, attempt).is_some();
        let facts = LeaderFacts {
            lease_timeout: coordinator.lease_timeout,
            leader_for: runtime.leader_for(),
            silence: &silence,
            acknowledged: &acknowledged,
        };
        let now_ms = crate::clock::now_ms();
        coordinator.read(|state| expired(state, now_ms, &facts))
    };
    for lease in leases {
        let ExpiredLease { task_id, attempt, worker_id, expiry } = &lease;
        match expiry {
            Expiry::SilentWorker => {
                warn!(%task_id, attempt, %worker_id, "worker silent past the lease timeout, re-queueing its task")
            }
            Expiry::NeverAcknowledged => {
                warn!(%task_id, attempt, %worker_id, "worker never reported on its task (the assignment was lost on the way), re-queueing it")
            }
        }
        if let Err(error) = coordinator.propose(lease.command(crate::clock::now_ms())).await {
            debug!(%error, "could not expire lease (leadership changed?)");
            return;
        }
        coordinator.runtime.count_requeue(expiry.label());
    }
}
