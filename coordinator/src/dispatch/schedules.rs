//! The leader runs due schedules: each due slot becomes one replicated `RunSchedule` command
//! carrying the backup job (and the prune job, when the schedule has one), or a drill schedule's
//! drill. Applying it is fenced
//! by the schedule's last run, so a slot runs once even across a failover.

use std::sync::Arc;
use std::time::Duration;

use bk_proto::ids::{BackupId, JobId};
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};
use ulid::Ulid;

use crate::coordinator::Coordinator;
use crate::core::job_history::{jobs_to_compact, jobs_to_forget};
use crate::core::plan::PlanError;
use crate::core::plan_drill::{plan_drill, resolve_drill_target, DrillTarget};
use crate::core::plan_prune::{plan_prune, PruneRequest};
use crate::core::schedule::{due_slot, Schedule};
use crate::core::submit::{plan_backup_request, BackupRequest};
use crate::core::{ClusterState, Command, CommandResponse, JobSpec};

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
    let job_ids = coordinator.shared.read(|state| jobs_to_forget(state, now_ms, &history));
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
    let job_ids = coordinator.shared.read(|state| jobs_to_compact(state, &history));
    if job_ids.is_empty() {
        return;
    }
    let count = job_ids.len();
    match coordinator.propose(Command::CompactJobs { job_ids }).await {
        Ok(_) => info!(count, "dropped the task details of older finished jobs"),
        Err(error) => warn!(%error, "cannot compact old jobs (leadership changed?)"),
    }
}

/// A drill schedule's run: a drill of the newest backup of its source in its repository. With
/// no backup yet the slot is still marked as run (a warning says why), so it does not repeat.
fn drill_run(state: &ClusterState, schedule: &Schedule, slot_ms: u64, now_ms: u64) -> Command {
    let target = DrillTarget::NewestOf {
        source: schedule.source.clone(),
        repository: Some(schedule.repository.clone()),
    };
    let repository = state.repositories.get(&schedule.repository);
    let planned = resolve_drill_target(state, &target).and_then(|backup| {
        let repository =
            repository.ok_or_else(|| PlanError::UnknownRepository(schedule.repository.clone()))?;
        plan_drill(backup, repository)
    });
    let jobs = match planned {
        Ok(spec) => {
            let scheduled = Some((schedule.name.clone(), slot_ms));
            vec![(JobId::from_ulid(Ulid::new()), JobSpec { scheduled, ..spec })]
        }
        Err(error) => {
            warn!(schedule = %schedule.name, %error, "scheduled drill cannot be planned");
            Vec::new()
        }
    };
    Command::RunSchedule { name: schedule.name.clone(), slot_ms, jobs, at_ms: now_ms }
}

/// One unit of the loop: proposes a run for every due schedule.
pub async fn run_due_schedules(coordinator: &Coordinator) {
    let now_ms = crate::clock::now_ms();
    let runs: Vec<Command> = coordinator.shared.read(|state| {
        let mut runs = Vec::new();
        for schedule in state.schedules.values() {
            let slot_ms = match due_slot(schedule, now_ms) {
                Ok(Some(slot_ms)) => slot_ms,
                Ok(None) => continue,
                Err(error) => {
                    warn!(schedule = %schedule.name, %error, "schedule cannot run");
                    continue;
                }
            };
            if schedule.drill {
                runs.push(drill_run(state, schedule, slot_ms, now_ms));
                continue;
            }
            let request = BackupRequest {
                source: &schedule.source,
                repository: &schedule.repository,
                full: false,
                adopt_checkpoint: false,
                allow_corrupt: false,
            };
            let backup_id = JobId::from_ulid(Ulid::new());
            let mut jobs: Vec<(JobId, JobSpec)> = Vec::new();
            let scheduled = Some((schedule.name.clone(), slot_ms));
            match plan_backup_request(
                state,
                &request,
                backup_id,
                BackupId::from_ulid(Ulid::new()),
                now_ms,
            ) {
                Ok(spec) => {
                    jobs.push((backup_id, JobSpec { scheduled: scheduled.clone(), ..spec }))
                }
                Err(error) => {
                    warn!(schedule = %schedule.name, %error, "scheduled backup cannot be planned");
                    continue;
                }
            }
            if let (Some(retention), Some(repository)) =
                (schedule.prune, state.repositories.get(&schedule.repository))
            {
                // The prune's id sorts after the backup's, so the repository lock runs it after.
                let prune_id = JobId::from_ulid(Ulid(backup_id.0 .0 + 1));
                let backups: Vec<_> = state.backups.values().collect();
                let request = PruneRequest {
                    source: schedule.source.clone(),
                    policy: retention,
                    dry_run: false,
                    max_unused_percent: bk_proto::model::default_max_unused_percent(),
                };
                if let Ok(spec) = plan_prune(&request, repository, &backups, BackupId(prune_id.0)) {
                    jobs.push((prune_id, JobSpec { scheduled, ..spec }));
                }
            }
            runs.push(Command::RunSchedule {
                name: schedule.name.clone(),
                slot_ms,
                jobs,
                at_ms: now_ms,
            });
        }
        runs
    });
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
