//! The leader runs due schedules: each due slot becomes one replicated `RunSchedule` command
//! carrying the backup job (and the prune job, when the schedule has one), or a drill schedule's
//! drill. Applying it is fenced
//! by the schedule's last run, so a slot runs once even across a failover.

use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::CancellationToken;
use tracing::{info, warn};
use ulid::Ulid;

use crate::coordinator::Coordinator;
use crate::core::job::history::{jobs_to_compact, jobs_to_forget};
use crate::core::schedule::{due_runs, DueRuns};
use crate::core::{Command, CommandResponse};

/// How often the leader looks for due schedules (the finest useful cron granularity).
const TICK: Duration = Duration::from_millis(500);

/// How often the leader drops finished jobs its job history no longer keeps.
const FORGET_JOBS_EVERY: u32 = 120; // ticks: a minute
/// How often the leader drops the task details of older finished jobs.
const COMPACT_JOBS_EVERY: u32 = 20; // ticks: ten seconds

/// Runs the schedule loop (and, every minute, the job-history compaction) until `shutdown`.
pub async fn run_schedules(coordinator: Arc<Coordinator>, shutdown: CancellationToken) {
    let mut interval = tokio::time::interval(TICK);
    interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut ticks = 0u32;
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = interval.tick() => {}
        }
        if coordinator.is_leader() {
            run_due_schedules(&coordinator).await;
            if ticks % FORGET_JOBS_EVERY == 0 {
                forget_old_jobs(&coordinator).await;
            }
            if ticks % COMPACT_JOBS_EVERY == 0 {
                compact_old_jobs(&coordinator).await;
            }
            ticks = ticks.wrapping_add(1);
        }
    }
}

/// Proposes dropping the finished jobs the job history no longer keeps.
pub async fn forget_old_jobs(coordinator: &Coordinator) {
    let now_ms = crate::clock::now_ms();
    let history = coordinator.job_history;
    let job_ids = coordinator.read(|state| jobs_to_forget(state, now_ms, &history));
    if job_ids.is_empty() {
        return;
    }
    let count = job_ids.len();
    match coordinator.propose(Command::ForgetJobs { job_ids }).await {
        Ok(_) => info!(count, "dropped finished jobs past the job history"),
        Err(error) => warn!(%error, "cannot drop old jobs (leadership changed?)"),
    }
}

/// Proposes dropping the per-task detail of the finished jobs past the newest few.
pub async fn compact_old_jobs(coordinator: &Coordinator) {
    let history = coordinator.job_history;
    let job_ids = coordinator.read(|state| jobs_to_compact(state, &history));
    if job_ids.is_empty() {
        return;
    }
    let count = job_ids.len();
    match coordinator.propose(Command::CompactJobs { job_ids }).await {
        Ok(_) => info!(count, "dropped the task details of older finished jobs"),
        Err(error) => warn!(%error, "cannot compact old jobs (leadership changed?)"),
    }
}

/// One unit of the loop: proposes a run for every due schedule ([`due_runs`] decides which).
pub async fn run_due_schedules(coordinator: &Coordinator) {
    let now_ms = crate::clock::now_ms();
    let DueRuns { commands: runs, problems } =
        coordinator.read(|state| due_runs(state, now_ms, Ulid::new));
    for (schedule, error) in problems {
        warn!(%schedule, %error, "scheduled run cannot be planned");
    }
    for run in runs {
        let Command::RunSchedule { name, slot_ms, .. } = &run else { continue };
        let (name, slot_ms) = (name.clone(), *slot_ms);
        match coordinator.propose(run).await {
            Ok(CommandResponse::Applied) => info!(schedule = %name, slot_ms, "schedule ran"),
            Ok(CommandResponse::Rejected(reason)) => {
                info!(schedule = %name, %reason, "schedule run not applied")
            }
            Err(error) => {
                warn!(schedule = %name, %error, "cannot run schedule (leadership changed?)");
                return;
            }
        }
    }
}
