//! Takes leases back from workers that went silent.
//!
//! Runs on every replica but acts only on the leader: each tick, every running task whose
//! worker has been silent longer than the lease timeout gets a `LeaseLost` for its current
//! attempt, which re-queues it. The attempt number fences the old worker: if it comes back and
//! reports, its result is ignored.

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

/// One unit of the loop: proposes `LeaseLost` for every lease held by a silent worker.
pub async fn expire_silent_leases(coordinator: &Coordinator) {
    let is_leader = coordinator.is_leader();
    coordinator.runtime.set_leader(is_leader);
    if !is_leader {
        return;
    }
    let expired: Vec<(TaskId, u32, String)> = coordinator.shared.read(|state| {
        let mut expired = Vec::new();
        for job in state.jobs.values().filter(|job| !job.state.is_terminal()) {
            for slot in job.slots() {
                let Some(run) = job.run(slot) else { continue };
                let Some(worker_id) = run.worker_id.as_deref() else {
                    continue;
                };
                if run.status == TaskStatus::Running
                    && coordinator.runtime.silence(worker_id) > coordinator.lease_timeout
                {
                    expired.push((
                        TaskId { job_id: job.id, slot },
                        run.attempt,
                        worker_id.to_string(),
                    ));
                }
            }
        }
        expired
    });
    for (task_id, attempt, worker_id) in expired {
        warn!(%task_id, attempt, %worker_id, "worker silent past the lease timeout, re-queueing its task");
        let at_ms = crate::clock::now_ms();
        let event = JobEvent::LeaseLost { slot: task_id.slot, attempt, at_ms };
        if let Err(error) = coordinator.propose(Command::Task { task_id, event }).await {
            debug!(%error, "could not expire lease (leadership changed?)");
            return;
        }
    }
}
