//! Which worker may run which task: the rule the leader applies when a worker pulls. Pure.
//!
//! A task placed on a node runs on that node's worker (it holds the node's storage), or, when
//! every worker of that node has been silent past the lease timeout, on a worker of the same
//! source reading the same shared cloud store ([`super::stand_in`]). A task for any node runs
//! on any worker of the job's source; a drill on one of those with a `[drill]` section. A
//! repository-key task runs on any worker, of any source,
//! holding a passphrase for its repository.

use super::domain::WorkerRecord;
use super::job::{Job, Placement, PlannedTask};
use super::stand_in::may_stand_in;
use bk_proto::ids::TaskSlot;

/// Whether `worker` may run the task at `slot` of `job`; `workers` are all registered workers,
/// `is_silent` says whether one has been silent past the lease timeout.
pub fn may_run<'a>(
    worker: &WorkerRecord,
    job: &Job,
    slot: TaskSlot,
    workers: impl IntoIterator<Item = &'a WorkerRecord>,
    is_silent: impl Fn(&WorkerRecord) -> bool,
) -> bool {
    job.planned(slot)
        .is_some_and(|task| may_take(worker, &job.spec.source, task, workers, is_silent))
}

/// The placement rule, once: whether `worker` may take `task` of a job of `source`. Handing out
/// tasks ([`may_run`]) and explaining why a task waits ([`super::waiting::waiting_reason`]) both
/// ask it, so a task that a stand-in may run is never reported as waiting for its dead node.
pub fn may_take<'a>(
    worker: &WorkerRecord,
    source: &str,
    task: &PlannedTask,
    workers: impl IntoIterator<Item = &'a WorkerRecord>,
    is_silent: impl Fn(&WorkerRecord) -> bool,
) -> bool {
    match &task.placement {
        Placement::RepositoryHolder(repository) => worker.can_open(repository),
        _ if source != worker.source => false,
        Placement::Node(node) => {
            *node == worker.node || may_stand_in(worker, node, &task.kind, workers, is_silent)
        }
        Placement::AnyNode => true,
        Placement::DrillWorker => worker.drills,
    }
}

#[cfg(test)]
mod tests {
    use bk_proto::ids::JobId;
    use bk_proto::model::{KeyAction, RepositoryRef};
    use ulid::Ulid;

    use super::*;
    use crate::core::plan::keys::plan_repository_key;

    #[test]
    fn test_key_tasks_go_to_passphrase_holders_of_any_source_and_others_stay_in_their_source() {
        let repository = RepositoryRef::new("vault", "file:///r", 1 << 20);
        let spec = plan_repository_key(&repository, KeyAction::List);
        let job = Job::new(JobId(Ulid::from_parts(1, 2)), spec, 0);
        let slot = TaskSlot::Phase { phase: 0, index: 0 };
        let mut holder = WorkerRecord::for_test("other/n", "n", "");
        holder.source = "other".into();
        holder.repositories = vec!["vault".into()];
        let mut stranger = holder.clone();
        stranger.repositories = vec!["elsewhere".into()];
        let mut default_holder = stranger.clone();
        default_holder.repositories = vec!["*".into()];
        let none: Vec<&WorkerRecord> = Vec::new();
        let cases = [(&holder, true), (&stranger, false), (&default_holder, true)];
        for (worker, expected) in cases {
            assert_eq!(
                may_run(worker, &job, slot, none.clone(), |_| false),
                expected,
                "{worker:?}"
            );
        }
    }
}
