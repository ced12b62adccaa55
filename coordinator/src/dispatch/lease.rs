//! Takes leases back from workers that went silent, and from workers that never got them.
//!
//! Runs on every replica but acts only on the leader: each tick, every running task whose
//! worker has been silent longer than the lease timeout gets a `LeaseLost` for its current
//! attempt, which re-queues it. So does a task whose worker is alive but has not reported a
//! single progress message for the attempt within the lease timeout: workers report from the
//! moment they start a task, so silence about it means the assignment never reached the worker
//! (a pull whose answer was lost to a timeout or a broken connection) and would otherwise stay
//! leased forever. The attempt number fences the old worker: if it comes back and reports, its
//! result is ignored.

use std::sync::Arc;
use std::time::Duration;

use bk_proto::ids::TaskId;
use tokio_util::sync::CancellationToken;
use tracing::{debug, warn};

use crate::coordinator::Coordinator;
use crate::core::job::TaskStatus;
use crate::core::{Command, JobEvent};

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
        expire_silent_leases(&coordinator).await;
    }
}

/// Why a lease is taken back.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Expiry {
    /// The worker has been silent past the lease timeout.
    SilentWorker,
    /// The worker is alive but never reported on this attempt.
    NeverAcknowledged,
}

impl Expiry {
    /// Every reason, for metrics that show zeros too.
    pub const ALL: [Expiry; 2] = [Expiry::SilentWorker, Expiry::NeverAcknowledged];

    /// The `reason` label of `bk_leases_requeued_total`.
    pub fn label(self) -> &'static str {
        match self {
            Expiry::SilentWorker => "silent_worker",
            Expiry::NeverAcknowledged => "never_acknowledged",
        }
    }
}

/// One unit of the loop: proposes `LeaseLost` for every lease held by a silent worker, or never
/// acknowledged by a live one.
pub async fn expire_silent_leases(coordinator: &Coordinator) {
    let is_leader = coordinator.is_leader();
    coordinator.runtime.set_leader(is_leader);
    if !is_leader {
        return;
    }
    let lease_timeout = coordinator.lease_timeout;
    // Progress lives in the leader's memory: a new leader gives workers a full lease timeout
    // to report to it before judging acknowledgements.
    let judge_acknowledgements = coordinator.runtime.leader_for() > lease_timeout;
    let now_ms = crate::clock::now_ms();
    let expired: Vec<(TaskId, u32, String, Expiry)> = coordinator.shared.read(|state| {
        let mut expired = Vec::new();
        for job in state.jobs.values().filter(|job| !job.state().is_terminal()) {
            for slot in job.slots() {
                let Some(run) = job.run(slot) else { continue };
                let Some(worker_id) = run.worker_id.as_deref() else {
                    continue;
                };
                if run.status != TaskStatus::Running {
                    continue;
                }
                let task_id = TaskId { job_id: job.id, slot };
                let leased_for_ms = now_ms.saturating_sub(run.started_at_ms.unwrap_or(now_ms));
                let expiry = if coordinator.runtime.silence(worker_id) > lease_timeout {
                    Some(Expiry::SilentWorker)
                } else if judge_acknowledgements
                    && u128::from(leased_for_ms) > lease_timeout.as_millis()
                    && coordinator.runtime.progress(&task_id, run.attempt).is_none()
                {
                    Some(Expiry::NeverAcknowledged)
                } else {
                    None
                };
                if let Some(expiry) = expiry {
                    expired.push((task_id, run.attempt, worker_id.to_string(), expiry));
                }
            }
        }
        expired
    });
    for (task_id, attempt, worker_id, expiry) in expired {
        match expiry {
            Expiry::SilentWorker => {
                warn!(%task_id, attempt, %worker_id, "worker silent past the lease timeout, re-queueing its task")
            }
            Expiry::NeverAcknowledged => {
                warn!(%task_id, attempt, %worker_id, "worker never reported on its task (the assignment was lost on the way), re-queueing it")
            }
        }
        let at_ms = crate::clock::now_ms();
        let event = JobEvent::LeaseLost { slot: task_id.slot, attempt, at_ms };
        if let Err(error) = coordinator.propose(Command::Task { task_id, event }).await {
            debug!(%error, "could not expire lease (leadership changed?)");
            return;
        }
        coordinator.runtime.count_requeue(expiry.label());
    }
}
