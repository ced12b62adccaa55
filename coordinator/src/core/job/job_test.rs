use bk_proto::ids::{BackupId, JobId, TaskSlot};
use bk_proto::model::{RepositoryRef, TaskKind, TaskReport};
use ulid::Ulid;

use super::*;

#[test]
fn test_a_report_with_problems_fails_the_job_and_runs_cleanup() {
    let mut job = job_with_phases(&[&["a/"], &["b/"]]);
    lease(&mut job, slot(0, 0), 1);
    let report = TaskReport { problems: vec!["chunk ab missing".into()], ..TaskReport::default() };
    job.apply(JobEvent::TaskSucceeded { slot: slot(0, 0), attempt: 1, report, at_ms: 3 }).unwrap();
    assert_eq!(job.state(), JobState::Failing);
    assert!(job.error().unwrap().contains("found 1 problem(s), first: chunk ab missing"));
    assert_eq!(job.run(slot(1, 0)).unwrap().status, TaskStatus::Skipped);
    assert_eq!(job.runnable_slots(), vec![CLEANUP]);
}

fn copy_task(prefix: &str) -> PlannedTask {
    PlannedTask::new(
        format!("copy {prefix}"),
        Placement::Node("node1".to_string()),
        TaskKind::CopyPrefix {
            phase: bk_proto::model::CopyPhase::Nodes,
            node: "node1".to_string(),
            prefix: prefix.to_string(),
            exclude: Vec::new(),
        },
    )
}

fn job_with_phases(phases: &[&[&str]]) -> Job {
    let spec = JobSpec {
        kind: JobKind::Backup,
        parent: None,
        scheduled: None,
        source_spec: None,
        backup_id: Some(BackupId(Ulid::from_parts(1, 1))),
        source: "src".into(),
        repository: RepositoryRef::new("repo", "file:///r", 1024),
        nodes: vec!["node1".to_string()],
        phases: phases
            .iter()
            .enumerate()
            .map(|(index, prefixes)| PlannedPhase {
                name: format!("phase{index}"),
                tasks: prefixes.iter().map(|prefix| copy_task(prefix)).collect(),
            })
            .collect(),
        cleanup: vec![PlannedTask::new(
            "remove staging".to_string(),
            Placement::AnyNode,
            TaskKind::RemoveStaging,
        )],
        allow_corrupt: false,
    };
    Job::new(JobId(Ulid::from_parts(2, 2)), spec, 1_000)
}

fn slot(phase: u32, index: u32) -> TaskSlot {
    TaskSlot::Phase { phase, index }
}

const CLEANUP: TaskSlot = TaskSlot::Cleanup { index: 0 };

fn lease(job: &mut Job, slot: TaskSlot, attempt: u32) {
    job.apply(JobEvent::TaskLeased { slot, attempt, worker_id: "w".into(), at_ms: 10 }).unwrap();
}

fn succeed(job: &mut Job, slot: TaskSlot, attempt: u32) -> Vec<JobEffect> {
    job.apply(JobEvent::TaskSucceeded { slot, attempt, report: TaskReport::default(), at_ms: 20 })
        .unwrap()
}

#[test]
fn test_new_job_makes_only_the_first_phase_runnable() {
    let job = job_with_phases(&[&["a/", "b/"], &["c/"]]);
    assert_eq!(job.state(), JobState::Queued);
    assert_eq!(job.runnable_slots(), vec![slot(0, 0), slot(0, 1)]);
    assert_eq!(job.run(slot(1, 0)).unwrap().status, TaskStatus::Blocked);
}

#[test]
fn test_phase_completes_only_when_its_last_task_succeeds() {
    let mut job = job_with_phases(&[&["a/", "b/"], &["c/"]]);
    lease(&mut job, slot(0, 0), 1);
    lease(&mut job, slot(0, 1), 1);
    assert_eq!(job.state(), JobState::Running);
    succeed(&mut job, slot(0, 0), 1);
    assert_eq!(job.current_phase(), 0);
    assert!(job.runnable_slots().is_empty(), "barrier: phase 1 must wait for phase 0");
    succeed(&mut job, slot(0, 1), 1);
    assert_eq!(job.current_phase(), 1);
    assert_eq!(job.runnable_slots(), vec![slot(1, 0)]);
}

#[test]
fn test_cleanup_runs_after_the_last_phase_and_finishes_the_job() {
    let mut job = job_with_phases(&[&["a/"]]);
    lease(&mut job, slot(0, 0), 1);
    succeed(&mut job, slot(0, 0), 1);
    assert_eq!(job.runnable_slots(), vec![CLEANUP]);
    assert_eq!(job.state(), JobState::Running);
    lease(&mut job, CLEANUP, 1);
    let effects = succeed(&mut job, CLEANUP, 1);
    assert_eq!(effects, vec![JobEffect::Finished { state: JobState::Succeeded }]);
    assert_eq!(job.finished_at_ms(), Some(20));
}

#[test]
fn test_stale_attempts_are_fenced() {
    // (event, expected rejection) after the task was leased twice (attempt 2 is current).
    let cases: Vec<(JobEvent, JobEventRejected)> = vec![
        (
            JobEvent::TaskSucceeded {
                slot: slot(0, 0),
                attempt: 1,
                report: TaskReport::default(),
                at_ms: 5,
            },
            JobEventRejected::StaleAttempt { attempt: 1, current: 2 },
        ),
        (
            JobEvent::TaskFailed {
                slot: slot(0, 0),
                attempt: 1,
                error: "x".into(),
                retryable: false,
                at_ms: 5,
            },
            JobEventRejected::StaleAttempt { attempt: 1, current: 2 },
        ),
        (
            JobEvent::LeaseLost { slot: slot(0, 0), attempt: 1, at_ms: 5 },
            JobEventRejected::StaleAttempt { attempt: 1, current: 2 },
        ),
        (
            JobEvent::TaskLeased { slot: slot(0, 0), attempt: 2, worker_id: "w".into(), at_ms: 5 },
            JobEventRejected::StaleAttempt { attempt: 2, current: 2 },
        ),
        (
            JobEvent::TaskLeased { slot: slot(0, 0), attempt: 3, worker_id: "w".into(), at_ms: 5 },
            JobEventRejected::WrongStatus {
                status: TaskStatus::Running,
                expected: "pending".into(),
            },
        ),
        (
            JobEvent::LeaseLost { slot: slot(9, 9), attempt: 1, at_ms: 5 },
            JobEventRejected::UnknownTask(slot(9, 9)),
        ),
    ];
    for (event, expected) in cases {
        let mut job = job_with_phases(&[&["a/"]]);
        lease(&mut job, slot(0, 0), 1);
        job.apply(JobEvent::LeaseLost { slot: slot(0, 0), attempt: 1, at_ms: 3 }).unwrap();
        lease(&mut job, slot(0, 0), 2);
        let before = job.clone();
        assert_eq!(job.apply(event.clone()), Err(expected), "{event:?}");
        assert_eq!(job, before, "a rejected event must not change the job: {event:?}");
    }
}

#[test]
fn test_retryable_failures_requeue_until_the_bound() {
    let mut job = job_with_phases(&[&["a/"]]);
    for attempt in 1..MAX_RETRYABLE_FAILURES {
        lease(&mut job, slot(0, 0), attempt);
        job.apply(JobEvent::TaskFailed {
            slot: slot(0, 0),
            attempt,
            error: "503".into(),
            retryable: true,
            at_ms: 9,
        })
        .unwrap();
        let run = job.run(slot(0, 0)).unwrap();
        assert_eq!(run.status, TaskStatus::Pending);
        // It backs off: 2 s after the first failure, 4 s after the second.
        assert_eq!(run.retry_at_ms, Some(9 + 2_000 * u64::from(attempt)), "attempt {attempt}");
        assert!(run.backing_off(9 + 1_999) && !run.backing_off(9 + 2_000 * u64::from(attempt)));
    }
    lease(&mut job, slot(0, 0), MAX_RETRYABLE_FAILURES);
    assert_eq!(job.run(slot(0, 0)).unwrap().retry_at_ms, None, "a lease ends the back-off");
    job.apply(JobEvent::TaskFailed {
        slot: slot(0, 0),
        attempt: MAX_RETRYABLE_FAILURES,
        error: "503".into(),
        retryable: true,
        at_ms: 9,
    })
    .unwrap();
    assert_eq!(job.state(), JobState::Failing);
    assert_eq!(job.runnable_slots(), vec![CLEANUP]);
}

#[test]
fn test_failure_skips_the_rest_and_runs_cleanup_once_running_tasks_stopped() {
    let mut job = job_with_phases(&[&["a/", "b/"], &["c/"]]);
    lease(&mut job, slot(0, 0), 1);
    lease(&mut job, slot(0, 1), 1);
    job.apply(JobEvent::TaskFailed {
        slot: slot(0, 0),
        attempt: 1,
        error: "no catalog".into(),
        retryable: false,
        at_ms: 30,
    })
    .unwrap();
    assert_eq!(job.state(), JobState::Failing);
    assert_eq!(job.run(slot(1, 0)).unwrap().status, TaskStatus::Skipped);
    assert_eq!(job.error(), Some("task `copy a/` failed (a retry cannot help): no catalog"));
    // b/ still runs on its worker: cleanup (which removes staging) waits for it to stop.
    assert!(job.run(slot(0, 1)).unwrap().abandoned);
    assert!(job.runnable_slots().is_empty(), "cleanup must wait for the abandoned task");
    // Its late success is discarded: the task ends as skipped and cleanup starts.
    succeed(&mut job, slot(0, 1), 1);
    assert_eq!(job.run(slot(0, 1)).unwrap().status, TaskStatus::Skipped);
    assert!(job.run(slot(0, 1)).unwrap().report.is_none());
    assert_eq!(job.runnable_slots(), vec![CLEANUP]);
    lease(&mut job, CLEANUP, 1);
    let effects = succeed(&mut job, CLEANUP, 1);
    assert_eq!(effects, vec![JobEffect::Finished { state: JobState::Failed }]);
}

#[test]
fn test_an_abandoned_task_whose_worker_died_ends_when_its_lease_is_lost() {
    let mut job = job_with_phases(&[&["a/", "b/"]]);
    lease(&mut job, slot(0, 0), 1);
    lease(&mut job, slot(0, 1), 1);
    job.cancel(40).unwrap();
    assert!(job.runnable_slots().is_empty());
    job.apply(JobEvent::LeaseLost { slot: slot(0, 0), attempt: 1, at_ms: 41 }).unwrap();
    assert!(job.runnable_slots().is_empty(), "b/ still runs");
    job.apply(JobEvent::LeaseLost { slot: slot(0, 1), attempt: 1, at_ms: 42 }).unwrap();
    assert_eq!(job.runnable_slots(), vec![CLEANUP]);
}

#[test]
fn test_commit_task_success_emits_backup_committed() {
    let mut job = job_with_phases(&[]);
    job.spec.phases.push(PlannedPhase {
        name: "commit".into(),
        tasks: vec![PlannedTask::new(
            "commit".into(),
            Placement::AnyNode,
            TaskKind::CommitBackup {
                backup_id: job.spec.backup_id.expect("a backup job"),
                created_at_ms: 1,
                parts: vec![],
            },
        )],
    });
    job = Job::new(job.id, job.spec.clone(), 1);
    lease(&mut job, slot(0, 0), 1);
    let report = TaskReport { num_objects: 7, ..TaskReport::default() };
    let effects = job
        .apply(JobEvent::TaskSucceeded {
            slot: slot(0, 0),
            attempt: 1,
            report: report.clone(),
            at_ms: 2,
        })
        .unwrap();
    assert_eq!(effects, vec![JobEffect::BackupCommitted { report }]);
}

#[test]
fn test_a_task_waits_for_its_same_phase_dependencies() {
    let mut job = job_with_phases(&[&["a/", "b/", "check"]]);
    job.spec.phases[0].tasks[2].depends_on = vec![0, 1];
    assert_eq!(job.runnable_slots(), vec![slot(0, 0), slot(0, 1)]);
    lease(&mut job, slot(0, 0), 1);
    succeed(&mut job, slot(0, 0), 1);
    assert_eq!(job.runnable_slots(), vec![slot(0, 1)], "one dependency is still running");
    lease(&mut job, slot(0, 1), 1);
    succeed(&mut job, slot(0, 1), 1);
    assert_eq!(job.runnable_slots(), vec![slot(0, 2)]);
}

#[test]
fn test_job_with_no_phases_goes_straight_to_cleanup() {
    let job = job_with_phases(&[]);
    assert_eq!(job.runnable_slots(), vec![CLEANUP]);
}

#[test]
fn test_cancel_skips_the_rest_runs_cleanup_and_ends_cancelled() {
    let mut job = job_with_phases(&[&["a/", "b/"], &["c/"]]);
    lease(&mut job, slot(0, 0), 1);
    job.cancel(50).unwrap();
    assert!(job.run(slot(0, 0)).unwrap().abandoned, "the running task's worker is told to stop");
    assert_eq!(job.run(slot(0, 1)).unwrap().status, TaskStatus::Skipped);
    job.apply(JobEvent::TaskFailed {
        slot: slot(0, 0),
        attempt: 1,
        error: "abandoned".into(),
        retryable: true,
        at_ms: 51,
    })
    .unwrap();
    assert_eq!(job.run(slot(0, 0)).unwrap().status, TaskStatus::Skipped);
    assert_eq!(job.runnable_slots(), vec![CLEANUP]);
    lease(&mut job, CLEANUP, 1);
    let effects = succeed(&mut job, CLEANUP, 1);
    assert_eq!(effects, vec![JobEffect::Finished { state: JobState::Cancelled }]);
    assert!(job.cancel(60).is_err(), "an ended job cannot be cancelled");
}

#[test]
fn test_a_committing_job_cannot_be_cancelled() {
    let mut job = job_with_phases(&[]);
    job.spec.phases.push(PlannedPhase {
        name: "commit".into(),
        tasks: vec![PlannedTask::new(
            "commit".into(),
            Placement::AnyNode,
            TaskKind::CommitBackup {
                backup_id: job.spec.backup_id.expect("a backup job"),
                created_at_ms: 1,
                parts: vec![],
            },
        )],
    });
    job = Job::new(job.id, job.spec.clone(), 1);
    lease(&mut job, slot(0, 0), 1);
    let error = job.cancel(2).unwrap_err().to_string();
    assert!(error.contains("being committed"), "{error}");
}

#[test]
fn test_the_retry_back_off_doubles_from_two_seconds_up_to_a_minute() {
    use crate::core::job::run::retry_delay_ms;
    let cases =
        [(0, 2_000), (1, 2_000), (2, 4_000), (3, 8_000), (5, 32_000), (6, 60_000), (40, 60_000)];
    for (failures, delay) in cases {
        assert_eq!(retry_delay_ms(failures), delay, "after {failures} failure(s)");
    }
}
