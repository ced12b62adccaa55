//! What the due schedules submit now: one [`Command::RunSchedule`] per due slot, carrying the
//! backup job (and its prune), or the drill. Pure: the leader passes the state, the time and a
//! source of fresh ids, and proposes what comes back.

use bk_proto::ids::{BackupId, JobId};
use ulid::Ulid;

use super::definition::{due_slot, Schedule};
use crate::core::job::JobSpec;
use crate::core::plan::drill::{plan_drill, resolve_drill_target, DrillTarget};
use crate::core::plan::prune::{plan_prune, PruneRequest};
use crate::core::plan::PlanError;
use crate::core::state::{ClusterState, Command};
use crate::core::submit::{plan_backup_request, BackupRequest};

/// The runs to propose, and what could not run (schedule name, why) for the leader to log.
#[derive(Debug, Default)]
pub struct DueRuns {
    /// One `RunSchedule` per due slot.
    pub commands: Vec<Command>,
    /// Schedules that are due but cannot run, and why.
    pub problems: Vec<(String, String)>,
}

/// Every due schedule's run at `now_ms`; `new_id` draws fresh ids (the core draws none).
///
/// - A backup schedule's backup is incremental to the newest backup of its source in its
///   repository; when it cannot be planned (an unknown source or repository) nothing is run and
///   the slot stays due, so the next tick tries again and the problem is logged.
/// - Its prune, when it has one, gets the backup's id + 1: it sorts right after the backup, so
///   the repository lock runs it once the backup has ended.
/// - A drill schedule drills the newest backup of its source in its repository; with none yet
///   the slot is still marked as run (with a problem saying why), so it does not repeat every
///   tick.
/// - While a job of the schedule's previous run has not ended, a due slot is marked as run
///   with no jobs (and a problem naming the job): a run that takes longer than the interval
///   would otherwise queue a backup (and its prune) every slot, without end.
pub fn due_runs(state: &ClusterState, now_ms: u64, mut new_id: impl FnMut() -> Ulid) -> DueRuns {
    let mut runs = DueRuns::default();
    for schedule in state.schedules.values() {
        let slot_ms = match due_slot(schedule, now_ms) {
            Ok(Some(slot_ms)) => slot_ms,
            Ok(None) => continue,
            Err(error) => {
                runs.problems.push((schedule.name.clone(), error));
                continue;
            }
        };
        if let Some(job_id) = unfinished_run(state, &schedule.name) {
            runs.problems.push((
                schedule.name.clone(),
                format!(
                    "skipped the slot at {slot_ms} ms: job {job_id} of the previous run has not ended \
                     (lengthen the interval, or see why that job is slow with `bkctl job {job_id}`)"
                ),
            ));
            runs.commands.push(Command::RunSchedule {
                name: schedule.name.clone(),
                slot_ms,
                jobs: Vec::new(),
                at_ms: now_ms,
            });
            continue;
        }
        let jobs = if schedule.drill {
            drill_jobs(state, schedule, slot_ms, &mut new_id)
        } else {
            backup_jobs(state, schedule, slot_ms, now_ms, &mut new_id)
        };
        match jobs {
            Ok(jobs) => runs.commands.push(Command::RunSchedule {
                name: schedule.name.clone(),
                slot_ms,
                jobs,
                at_ms: now_ms,
            }),
            Err((error, mark_run)) => {
                runs.problems.push((schedule.name.clone(), error.to_string()));
                if mark_run {
                    runs.commands.push(Command::RunSchedule {
                        name: schedule.name.clone(),
                        slot_ms,
                        jobs: Vec::new(),
                        at_ms: now_ms,
                    });
                }
            }
        }
    }
    runs
}

/// The oldest job a run of schedule `name` submitted that has not ended, if any.
fn unfinished_run(state: &ClusterState, name: &str) -> Option<JobId> {
    state
        .jobs
        .values()
        .filter(|job| !job.state().is_terminal())
        .find(|job| job.spec.scheduled.as_ref().is_some_and(|(scheduled, _)| scheduled == name))
        .map(|job| job.id)
}

/// A scheduled job list, or why there is none and whether the slot counts as run anyway.
type Jobs = Result<Vec<(JobId, JobSpec)>, (PlanError, bool)>;

fn backup_jobs(
    state: &ClusterState,
    schedule: &Schedule,
    slot_ms: u64,
    now_ms: u64,
    new_id: &mut impl FnMut() -> Ulid,
) -> Jobs {
    let request = BackupRequest {
        source: &schedule.source,
        repository: &schedule.repository,
        full: false,
        adopt_checkpoint: false,
        allow_corrupt: false,
    };
    let job_id = JobId::from_ulid(new_id());
    let backup_id = BackupId::from_ulid(new_id());
    let scheduled = Some((schedule.name.clone(), slot_ms));
    let spec = plan_backup_request(state, &request, job_id, backup_id, now_ms)
        .map_err(|error| (error, false))?;
    let mut jobs = vec![(job_id, JobSpec { scheduled: scheduled.clone(), ..spec })];
    if let (Some(retention), Some(repository)) =
        (schedule.prune, state.repositories.get(&schedule.repository))
    {
        let prune_id = JobId::from_ulid(Ulid(job_id.0 .0 + 1));
        let backups: Vec<_> = state.backups.values().collect();
        let request = PruneRequest {
            source: schedule.source.clone(),
            policy: retention,
            dry_run: false,
            max_unused_percent: bk_proto::model::default_max_unused_percent(),
        };
        // A schedule's retention was checked when it was added: it always has a keep rule.
        if let Ok(spec) = plan_prune(&request, repository, &backups) {
            jobs.push((prune_id, JobSpec { scheduled, ..spec }));
        }
    }
    Ok(jobs)
}

fn drill_jobs(
    state: &ClusterState,
    schedule: &Schedule,
    slot_ms: u64,
    new_id: &mut impl FnMut() -> Ulid,
) -> Jobs {
    let target = DrillTarget::NewestOf {
        source: schedule.source.clone(),
        repository: Some(schedule.repository.clone()),
    };
    let backup = resolve_drill_target(state, &target).map_err(|error| (error, true))?;
    let repository = state
        .repositories
        .get(&schedule.repository)
        .ok_or_else(|| (PlanError::UnknownRepository(schedule.repository.clone()), true))?;
    let spec = plan_drill(backup, repository).map_err(|error| (error, true))?;
    let scheduled = Some((schedule.name.clone(), slot_ms));
    Ok(vec![(JobId::from_ulid(new_id()), JobSpec { scheduled, ..spec })])
}

#[cfg(test)]
#[path = "runs_test.rs"]
mod tests;
