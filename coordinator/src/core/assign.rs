//! Handing tasks to workers: which task a pulling worker gets, and what it is told. Pure.
//!
//! The leader's WorkerHub service calls these with the replicated state and two facts only the
//! leader knows in memory (which workers are silent, which tasks a concurrent pull is already
//! leasing); everything it answers follows from them.

use std::collections::HashSet;

use bk_proto::ids::{TaskId, TaskSlot};
use bk_proto::model::{TaskKind, TaskSpec};

use super::domain::{BackupRecord, WorkerRecord};
use super::eligibility::may_run;
use super::job::TaskStatus;
use super::locks::is_held_back;
use super::plan::prune::resolve_prune_task;
use super::state::ClusterState;

/// A pull from a worker the state does not know: it must register (again) first.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("worker `{0}` (register first)")]
pub struct UnregisteredWorker(pub String);

/// The oldest runnable task `worker_id` may run, and the attempt number its lease gets.
///
/// Jobs are scanned in submission order; a job an earlier one holds back ([`super::locks`]:
/// the repository lock, a QuestDB checkpoint) is skipped, as is a task `is_being_leased`
/// reports taken by a concurrent pull, as is a task backing off after a retryable failure
/// until `now_ms` passes its retry time. `is_silent` says whether a worker has been silent past
/// the lease timeout (who may stand in for a dead node).
///
/// # Errors
/// [`UnregisteredWorker`] when `worker_id` is not registered.
pub fn next_task(
    state: &ClusterState,
    worker_id: &str,
    now_ms: u64,
    is_silent: impl Fn(&WorkerRecord) -> bool,
    is_being_leased: impl Fn(&TaskId) -> bool,
) -> Result<Option<(TaskId, u32)>, UnregisteredWorker> {
    let worker =
        state.workers.get(worker_id).ok_or_else(|| UnregisteredWorker(worker_id.to_string()))?;
    let locked = |job: &super::Job| is_held_back(job, state.jobs.values());
    let open: Vec<&super::Job> =
        state.jobs.values().filter(|job| !job.state().is_terminal() && !locked(job)).collect();
    let available = |job: &super::Job, slot: TaskSlot| {
        let task_id = TaskId { job_id: job.id, slot };
        let backing_off = job.run(slot).is_some_and(|run| run.backing_off(now_ms));
        (job.is_runnable(slot) && !backing_off && !is_being_leased(&task_id)).then_some(task_id)
    };
    let lease = |job: &super::Job, task_id: TaskId| {
        let attempt = job.run(task_id.slot).map_or(1, |run| run.attempt + 1);
        Some((task_id, attempt))
    };
    // The worker's own node's tasks (and those any worker may run), oldest job first.
    for job in &open {
        for slot in job.placements.for_node(&worker.node) {
            let Some(task_id) = available(job, slot) else { continue };
            if may_run(worker, job, slot, state.workers.values(), &is_silent) {
                return Ok(lease(job, task_id));
            }
        }
    }
    // Then another node's, standing in for it: only nodes whose workers are all silent.
    let same_source = || state.workers.values().filter(|other| other.source == worker.source);
    if !same_source().any(&is_silent) {
        return Ok(None);
    }
    let silent_nodes: HashSet<&str> = {
        let mut heard: HashSet<&str> = HashSet::new();
        let mut known: HashSet<&str> = HashSet::new();
        for other in same_source() {
            known.insert(&other.node);
            if !is_silent(other) {
                heard.insert(&other.node);
            }
        }
        known.difference(&heard).copied().collect()
    };
    if silent_nodes.is_empty() {
        return Ok(None);
    }
    for job in &open {
        for (_, slots) in job
            .placements
            .on_other_nodes(&worker.node)
            .filter(|(node, _)| silent_nodes.contains(node))
        {
            for slot in slots {
                let Some(task_id) = available(job, *slot) else { continue };
                if may_run(worker, job, *slot, state.workers.values(), &is_silent) {
                    return Ok(lease(job, task_id));
                }
            }
        }
    }
    Ok(None)
}

/// When the earliest task now backing off may be leased (so a pull that found nothing waits
/// until then, not for its whole long-poll).
pub fn next_retry_ms(state: &ClusterState, now_ms: u64) -> Option<u64> {
    state
        .jobs
        .values()
        .filter(|job| !job.state().is_terminal())
        .flat_map(|job| job.slots().filter_map(move |slot| job.run(slot)))
        .filter(|run| run.status == TaskStatus::Pending)
        .filter_map(|run| run.retry_at_ms.filter(|at| *at > now_ms))
        .min()
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
