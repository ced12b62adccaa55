//! Which waiting pulls a command may have given work to. Pure.
//!
//! A thousand workers long-poll for tasks; waking every one of them at every applied command
//! (10,000 commands for a backup of a thousand nodes) made each pull re-scan the state a
//! thousand times per command. A pull waits for its own node's tasks instead, and only the
//! nodes whose tasks became runnable are woken: a task becomes runnable when its phase (or the
//! cleanup) starts, when it is re-queued, or when the tasks it depends on succeed. Commands
//! that touch no job wake nobody; rare ones this does not follow (a worker registering again,
//! a job ending, which may lift a repository lock) wake everyone.

use std::collections::BTreeSet;

use bk_proto::ids::{JobId, TaskSlot};

use super::job::{JobEvent, Placement};
use super::state::{ClusterState, Command};

/// Who to wake after a command.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Wake {
    /// Nodes that have newly runnable tasks.
    pub nodes: BTreeSet<String>,
    /// Newly runnable tasks any worker may take exist (or something changed that this does not
    /// follow): wake every waiting pull.
    pub everyone: bool,
}

/// What a command's jobs looked like before it was applied.
#[derive(Debug)]
pub struct Before {
    /// `None`: wake everyone after this command.
    jobs: Option<Vec<JobBefore>>,
}

/// One job before a command: where it stood, and the task the command is about.
#[derive(Debug)]
struct JobBefore {
    job_id: JobId,
    /// Its runnable phase (the number of phases once in cleanup or ended), and whether it had
    /// ended; `None` when it did not exist.
    stood: Option<(usize, bool)>,
    /// The task a task event is about.
    slot: Option<TaskSlot>,
}

/// Where the jobs `command` touches stand, before it is applied. A lease gives nobody work:
/// nothing is looked at for it (half of all commands).
pub fn before(state: &ClusterState, command: &Command) -> Before {
    let touched: Vec<(JobId, Option<TaskSlot>)> = match command {
        Command::Task { event: JobEvent::TaskLeased { .. }, .. } => Vec::new(),
        Command::Task { task_id, .. } => vec![(task_id.job_id, Some(task_id.slot))],
        Command::SubmitJob { job_id, .. } | Command::CancelJob { job_id, .. } => {
            vec![(*job_id, None)]
        }
        Command::RunSchedule { jobs, .. } => {
            jobs.iter().map(|(job_id, _)| (*job_id, None)).collect()
        }
        Command::ForgetJobs { .. } | Command::CompactJobs { .. } => Vec::new(),
        _ => return Before { jobs: None },
    };
    let jobs = touched
        .into_iter()
        .map(|(job_id, slot)| {
            let stood =
                state.jobs.get(&job_id).map(|job| (job.current_phase(), job.state().is_terminal()));
            JobBefore { job_id, stood, slot }
        })
        .collect();
    Before { jobs: Some(jobs) }
}

/// Whom to wake after the command, comparing with `before`: a job that appeared or moved to
/// another phase (or to its cleanup) wakes the nodes of every task runnable now; otherwise the
/// task the command was about (re-queued) and the tasks depending on it (unblocked) do.
pub fn after(state: &ClusterState, before: Before) -> Wake {
    let Some(jobs) = before.jobs else { return Wake { everyone: true, ..Wake::default() } };
    let mut wake = Wake::default();
    for JobBefore { job_id, stood, slot } in jobs {
        let Some(job) = state.jobs.get(&job_id) else { continue };
        let (phase, ended) = (job.current_phase(), job.state().is_terminal());
        if ended && !stood.is_some_and(|(_, was_ended)| was_ended) {
            wake.everyone = true; // It may have held a repository lock.
        }
        let candidates: Vec<TaskSlot> = match (stood, slot) {
            (Some((was_phase, _)), Some(slot)) if was_phase == phase => {
                let mut candidates = vec![slot];
                if let TaskSlot::Phase { phase: in_phase, index } = slot {
                    let tasks = job
                        .spec
                        .phases
                        .get(in_phase as usize)
                        .map_or(&[][..], |p| p.tasks.as_slice());
                    candidates.extend(
                        tasks
                            .iter()
                            .enumerate()
                            .filter(|(_, task)| task.depends_on.contains(&index))
                            .map(|(dependent, _)| TaskSlot::Phase {
                                phase: in_phase,
                                index: dependent as u32,
                            }),
                    );
                }
                candidates
            }
            _ => job.runnable_slots(),
        };
        for slot in candidates.into_iter().filter(|slot| job.is_runnable(*slot)) {
            match job.planned(slot).map(|task| &task.placement) {
                Some(Placement::Node(node)) => {
                    wake.nodes.insert(node.clone());
                }
                _ => wake.everyone = true,
            }
        }
    }
    wake
}

#[cfg(test)]
mod tests {
    use bk_proto::ids::{BackupId, TaskId};
    use bk_proto::model::{RepositoryRef, TaskKind, TaskReport};
    use ulid::Ulid;

    use super::*;
    use crate::core::domain::WorkerRecord;
    use crate::core::job::{JobKind, JobSpec, PlannedPhase, PlannedTask};

    fn copy_on(node: &str) -> PlannedTask {
        PlannedTask::new(
            format!("copy {node}/"),
            Placement::Node(node.to_string()),
            TaskKind::RemoveStaging,
        )
    }

    fn spec() -> JobSpec {
        let phase = |name: &str, tasks| PlannedPhase { name: name.into(), tasks };
        JobSpec {
            kind: JobKind::Backup,
            parent: None,
            scheduled: None,
            source_spec: None,
            backup_id: Some(BackupId(Ulid::from_parts(1, 0))),
            source: "src".into(),
            repository: RepositoryRef::new("repo", "file:///r", 1024),
            nodes: vec!["n1".into(), "n2".into()],
            phases: vec![
                phase("first", vec![copy_on("n1"), copy_on("n2")]),
                phase("second", vec![copy_on("n2")]),
            ],
            cleanup: Vec::new(),
            allow_corrupt: false,
        }
    }

    fn applied(state: &mut ClusterState, command: Command) -> Wake {
        let before = before(state, &command);
        assert_eq!(state.apply(command), crate::core::CommandResponse::Applied);
        after(state, before)
    }

    #[test]
    fn test_only_the_nodes_given_work_are_woken() {
        let mut state = ClusterState::default();
        let registered = applied(
            &mut state,
            Command::RegisterWorker { worker: WorkerRecord::for_test("src/n1", "n1", "") },
        );
        assert!(registered.everyone, "a registration may re-queue tasks");
        let job_id = bk_proto::ids::JobId(Ulid::from_parts(1, 1));
        let submitted = applied(&mut state, Command::SubmitJob { job_id, spec: spec(), at_ms: 1 });
        assert_eq!(submitted.nodes, ["n1".to_string(), "n2".to_string()].into());
        assert!(!submitted.everyone);
        let task = |index| TaskId { job_id, slot: TaskSlot::Phase { phase: 0, index } };
        let lease = |index| Command::Task {
            task_id: task(index),
            event: JobEvent::TaskLeased {
                slot: task(index).slot,
                attempt: 1,
                worker_id: "w".into(),
                at_ms: 2,
            },
        };
        let done = |index| Command::Task {
            task_id: task(index),
            event: JobEvent::TaskSucceeded {
                slot: task(index).slot,
                attempt: 1,
                report: TaskReport::default(),
                at_ms: 3,
            },
        };
        assert_eq!(applied(&mut state, lease(0)), Wake::default(), "a lease gives nobody work");
        assert_eq!(applied(&mut state, lease(1)), Wake::default());
        assert_eq!(applied(&mut state, done(0)), Wake::default(), "the phase is not over yet");
        let barrier = applied(&mut state, done(1));
        assert_eq!(barrier.nodes, ["n2".to_string()].into(), "the next phase is n2's");
        let forget = applied(&mut state, Command::ForgetJobs { job_ids: vec![job_id] });
        assert_eq!(forget, Wake::default());
    }
}
