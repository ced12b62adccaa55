//! A finished job without its per-task detail. Pure.
//!
//! A job of a thousand-node cluster has some 5,000 tasks, each with its plan and its report in
//! the replicated state (about 1.2 KiB a task): a month of hourly backups of such a cluster
//! would put gigabytes in every snapshot and every replica's memory. What operators read of an
//! old job is its phases (when they ran, how many tasks, objects and bytes) and what went
//! wrong; so the newest finished jobs keep every task (see
//! [`super::history::JobHistory::keep_task_details`]) and older ones keep only this: a
//! summary per phase, and the tasks that failed, had problems or warned, in full.

use bk_proto::ids::TaskSlot;
use serde::{Deserialize, Serialize};

use super::run::{TaskRun, TaskStatus};
use super::spec::PlannedTask;

/// What a compacted job keeps of its phases and cleanup.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct JobSummary {
    /// Per phase, in order.
    pub phases: Vec<PhaseSummary>,
    /// The cleanup tasks, as one more group.
    pub cleanup: PhaseSummary,
}

/// One phase of a compacted job.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PhaseSummary {
    /// Its name (`compactor`, `nodes`, …; `cleanup`).
    pub name: String,
    /// Tasks it had.
    pub num_tasks: u32,
    /// Of those, succeeded.
    pub num_succeeded: u32,
    /// Of those, failed.
    pub num_failed: u32,
    /// When its first task was leased, and its last ended.
    pub started_at_ms: Option<u64>,
    /// When its last task ended.
    pub finished_at_ms: Option<u64>,
    /// Objects and bytes its tasks that move objects (copies, restores) reported.
    pub num_objects: u64,
    /// Their bytes.
    pub num_bytes: u64,
    /// Tasks kept whole: those that failed, or whose reports hold problems or warnings.
    pub tasks: Vec<KeptTask>,
}

/// A task a compacted job keeps whole.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeptTask {
    /// Where it was in the job.
    pub slot: TaskSlot,
    /// Its plan.
    pub planned: PlannedTask,
    /// How it ran.
    pub run: TaskRun,
}

/// Whether a task is worth keeping whole in a compacted job.
fn worth_keeping(run: &TaskRun) -> bool {
    run.status == TaskStatus::Failed
        || run.error.is_some()
        || run
            .report
            .as_ref()
            .is_some_and(|report| !report.problems.is_empty() || !report.warnings.is_empty())
}

/// Summarises one group of tasks.
pub(super) fn summarise<'a>(
    name: &str,
    tasks: impl Iterator<Item = (TaskSlot, &'a PlannedTask, &'a TaskRun)>,
) -> PhaseSummary {
    let mut summary = PhaseSummary { name: name.to_string(), ..PhaseSummary::default() };
    for (slot, planned, run) in tasks {
        summary.num_tasks += 1;
        summary.num_succeeded += u32::from(run.status == TaskStatus::Succeeded);
        summary.num_failed += u32::from(run.status == TaskStatus::Failed);
        if let Some(started) = run.started_at_ms {
            summary.started_at_ms = Some(summary.started_at_ms.map_or(started, |s| s.min(started)));
        }
        if let Some(finished) = run.finished_at_ms {
            summary.finished_at_ms =
                Some(summary.finished_at_ms.map_or(finished, |f| f.max(finished)));
        }
        if let (true, Some(report)) = (planned.kind.moves_objects(), &run.report) {
            summary.num_objects += report.num_objects;
            summary.num_bytes += report.num_bytes;
        }
        if worth_keeping(run) {
            summary.tasks.push(KeptTask { slot, planned: planned.clone(), run: run.clone() });
        }
    }
    summary
}

#[cfg(test)]
mod tests {
    use bk_proto::ids::{BackupId, JobId};
    use bk_proto::model::{CopyPhase, TaskKind, TaskReport};
    use ulid::Ulid;

    use super::*;
    use crate::core::job::{Job, JobEvent, JobSpec, Placement, PlannedPhase};

    fn copy(prefix: &str) -> PlannedTask {
        PlannedTask::new(
            format!("copy {prefix}"),
            Placement::Node("n".into()),
            TaskKind::CopyPrefix {
                phase: CopyPhase::Nodes,
                node: "n".into(),
                prefix: prefix.into(),
                exclude: Vec::new(),
            },
        )
    }

    fn job() -> Job {
        let spec = JobSpec {
            kind: crate::core::job::JobKind::Backup,
            backup_id: Some(BackupId(Ulid::from_parts(1, 1))),
            parent: None,
            scheduled: None,
            source: "s".into(),
            source_spec: None,
            repository: bk_proto::model::RepositoryRef::new("r", "file:///r", 1 << 20),
            nodes: vec!["n".into()],
            phases: vec![PlannedPhase {
                name: "nodes".into(),
                tasks: vec![copy("n/wal/"), copy("n/dbs/"), copy("n/x/")],
            }],
            cleanup: Vec::new(),
            allow_corrupt: false,
        };
        Job::new(JobId(Ulid::from_parts(1, 2)), spec, 10)
    }

    fn run(job: &mut Job, index: u32, outcome: Result<TaskReport, &str>, at_ms: u64) {
        let slot = TaskSlot::Phase { phase: 0, index };
        let worker_id = "w".to_string();
        job.apply(JobEvent::TaskLeased { slot, attempt: 1, worker_id: worker_id.into(), at_ms })
            .unwrap();
        let event = match outcome {
            Ok(report) => JobEvent::TaskSucceeded { slot, attempt: 1, report, at_ms: at_ms + 5 },
            Err(error) => JobEvent::TaskFailed {
                slot,
                attempt: 1,
                error: error.into(),
                retryable: false,
                at_ms: at_ms + 5,
            },
        };
        job.apply(event).unwrap();
    }

    #[test]
    fn test_a_compacted_job_keeps_its_phases_totals_and_what_went_wrong_only() {
        let mut job = job();
        let mut still_running = job.clone();
        still_running.compact();
        assert!(still_running.summary.is_none(), "a running job keeps its tasks");
        let report = |objects| TaskReport {
            num_objects: objects,
            num_bytes: objects * 10,
            ..TaskReport::default()
        };
        let warned = TaskReport { warnings: vec!["careful".into()], ..report(1) };
        run(&mut job, 0, Ok(report(5)), 100);
        run(&mut job, 1, Ok(warned), 110);
        run(&mut job, 2, Err("disk on fire"), 120);
        assert!(job.state().is_terminal(), "{:?}", job.status);
        job.compact();
        let summary = job.summary.clone().unwrap();
        let phase = &summary.phases[0];
        assert_eq!(
            (phase.name.as_str(), phase.num_tasks, phase.num_succeeded, phase.num_failed),
            ("nodes", 3, 2, 1)
        );
        assert_eq!((phase.started_at_ms, phase.finished_at_ms), (Some(100), Some(125)));
        assert_eq!((phase.num_objects, phase.num_bytes), (6, 60));
        let kept: Vec<&str> = phase.tasks.iter().map(|task| task.planned.label.as_str()).collect();
        assert_eq!(kept, ["copy n/dbs/", "copy n/x/"], "the warned and the failed task");
        assert_eq!(phase.tasks[1].run.error.as_deref(), Some("disk on fire"));
        assert!(job.slots().next().is_none(), "no task is left to lease or count");
        assert!(job.spec.phases[0].tasks.is_empty() && job.spec.phases[0].name == "nodes");
        let before = job.clone();
        job.compact();
        assert_eq!(job, before, "compacting twice changes nothing");
        let json = serde_json::to_string(&job).unwrap();
        assert_eq!(serde_json::from_str::<Job>(&json).unwrap(), job);
    }
}
