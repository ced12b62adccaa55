//! Handing tasks to workers: which task a pulling worker gets, and what it is told. Pure.
//!
//! The leader's WorkerHub service calls these with the replicated state and two facts only the
//! leader knows in memory (which workers are silent, which tasks a concurrent pull is already
//! leasing); everything it answers follows from them.

use bk_proto::ids::TaskId;
use bk_proto::model::{TaskKind, TaskSpec};

use super::domain::{BackupRecord, WorkerRecord};
use super::eligibility::may_run;
use super::job::TaskStatus;
use super::plan_prune::{conflicts, resolve_prune_task};
use super::state::ClusterState;

/// A pull from a worker the state does not know: it must register (again) first.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("worker `{0}` (register first)")]
pub struct UnregisteredWorker(pub String);

/// The oldest runnable task `worker_id` may run, and the attempt number its lease gets.
///
/// Jobs are scanned in submission order; a job waiting for the repository lock (a prune
/// excludes every other job on its repository) is skipped, as is a task `is_being_leased`
/// reports taken by a concurrent pull. `is_silent` says whether a worker has been silent past
/// the lease timeout (who may stand in for a dead node).
///
/// # Errors
/// [`UnregisteredWorker`] when `worker_id` is not registered.
pub fn next_task(
    state: &ClusterState,
    worker_id: &str,
    is_silent: impl Fn(&WorkerRecord) -> bool,
    is_being_leased: impl Fn(&TaskId) -> bool,
) -> Result<Option<(TaskId, u32)>, UnregisteredWorker> {
    let worker =
        state.workers.get(worker_id).ok_or_else(|| UnregisteredWorker(worker_id.to_string()))?;
    let locked = |job: &super::Job| state.jobs.values().any(|other| conflicts(job, other));
    for job in state.jobs.values().filter(|job| !job.state().is_terminal() && !locked(job)) {
        for slot in job.runnable_slots() {
            let task_id = TaskId { job_id: job.id, slot };
            if is_being_leased(&task_id) {
                continue;
            }
            if may_run(worker, job, slot, state.workers.values(), &is_silent) {
                let attempt = job.run(slot).map_or(1, |run| run.attempt + 1);
                return Ok(Some((task_id, attempt)));
            }
        }
    }
    Ok(None)
}

/// The spec a worker receives for a task it just leased, `None` if the task does not exist.
///
/// Two things are decided at lease time rather than at planning: the repository config (the
/// first one a task of any job reported opening, so every later task opens that one), and a
/// prune's backup list (its rules apply to the backups that exist when it runs, including
/// those committed while it waited for the repository lock).
pub fn assigned_spec(state: &ClusterState, task_id: TaskId) -> Option<TaskSpec> {
    let job = state.jobs.get(&task_id.job_id)?;
    let mut spec = job.task_spec(task_id.slot)?;
    if let Some(repository) = state.repositories.get(&spec.repository.name) {
        spec.repository.config_id.clone_from(&repository.config_id);
    }
    let retention =
        job.spec.phases.iter().flat_map(|phase| &phase.tasks).find_map(|task| match &task.kind {
            TaskKind::ForgetBackups { retention, .. } => Some(*retention),
            _ => None,
        });
    if let Some(retention) = retention {
        let backups: Vec<&BackupRecord> = state.backups.values().collect();
        resolve_prune_task(
            &mut spec.kind,
            &job.spec.source,
            &job.spec.repository.name,
            &backups,
            &retention,
        );
    }
    Some(spec)
}

/// Whether `attempt` is the task's running attempt: a worker running any other (fenced by a
/// newer lease, or abandoned by a cancel) is told to stop.
pub fn is_current_attempt(state: &ClusterState, task_id: &TaskId, attempt: u32) -> bool {
    state.jobs.get(&task_id.job_id).and_then(|job| job.run(task_id.slot)).is_some_and(|run| {
        run.attempt == attempt && run.status == TaskStatus::Running && !run.abandoned
    })
}

#[cfg(test)]
#[path = "assign_test.rs"]
mod tests;
