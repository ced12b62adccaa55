use bk_proto::ids::{BackupId, JobId, TaskSlot};
use bk_proto::model::{RepositoryRef, Retention, TaskKind};
use ulid::Ulid;

use super::*;
use crate::core::job::{JobEvent, JobKind, JobSpec, Placement, PlannedPhase, PlannedTask};
use crate::core::plan::prune::{plan_prune, PruneRequest};
use crate::core::{Command, CommandResponse, Repository};

fn worker(node: &str) -> WorkerRecord {
    WorkerRecord {
        worker_id: format!("src/{node}").into(),
        source: "src".into(),
        node: node.to_string(),
        version: String::new(),
        registered_at_ms: 0,
        max_concurrent_objects: 16,
        max_bytes_per_second: 0,
        store_url: "file:///data".to_string(),
        repositories: vec!["*".to_string()],
        drills: false,
        snapshots: false,
    }
}

fn copy_on(node: &str) -> PlannedTask {
    PlannedTask::new(
        format!("copy {node}/wal/"),
        Placement::Node(node.to_string()),
        TaskKind::CopyPrefix {
            phase: bk_proto::model::CopyPhase::Nodes,
            node: node.to_string(),
            prefix: format!("{node}/wal/"),
            exclude: Vec::new(),
        },
    )
}

fn backup_spec(n: u64) -> JobSpec {
    JobSpec {
        kind: JobKind::Backup,
        parent: None,
        scheduled: None,
        source_spec: None,
        backup_id: Some(BackupId(Ulid::from_parts(n, 0))),
        source: "src".into(),
        repository: RepositoryRef::new("repo", "file:///r", 1024),
        nodes: vec!["node1".to_string(), "node2".to_string()],
        phases: vec![PlannedPhase {
            name: "nodes".to_string(),
            tasks: vec![copy_on("node1"), copy_on("node2")],
        }],
        cleanup: Vec::new(),
        allow_corrupt: false,
    }
}

fn job_id(n: u64) -> JobId {
    JobId(Ulid::from_parts(n, 0))
}

fn apply(state: &mut ClusterState, command: Command) {
    assert_eq!(state.apply(command), CommandResponse::Applied);
}

/// Two workers (node1, node2) and a backup job `1` with one copy task per node.
fn state_with_backup() -> ClusterState {
    let mut state = ClusterState::default();
    apply(&mut state, Command::PutRepository(RepositoryRef::new("repo", "file:///r", 1024)));
    for node in ["node1", "node2"] {
        apply(&mut state, Command::RegisterWorker { worker: worker(node) });
    }
    apply(&mut state, Command::SubmitJob { job_id: job_id(1), spec: backup_spec(1), at_ms: 1 });
    state
}

fn task(job: u64, index: u32) -> TaskId {
    TaskId { job_id: job_id(job), slot: TaskSlot::Phase { phase: 0, index } }
}

fn lease(state: &mut ClusterState, task_id: TaskId, attempt: u32, worker_id: &str) {
    let event =
        JobEvent::TaskLeased { slot: task_id.slot, attempt, worker_id: worker_id.into(), at_ms: 5 };
    apply(state, Command::Task { task_id, event });
}

#[test]
fn test_which_task_a_pulling_worker_gets() {
    let state = state_with_backup();
    let nobody_silent = |_: &WorkerRecord| false;
    let node2_silent = |worker: &WorkerRecord| worker.node == "node2";
    // (case, pulling worker, task a concurrent pull is leasing, node2 silent, what it gets)
    type Case = (&'static str, &'static str, Option<TaskId>, bool, Option<(TaskId, u32)>);
    let cases: Vec<Case> = vec![
        ("its own node's task", "src/node1", None, false, Some((task(1, 0), 1))),
        ("node2's own task", "src/node2", None, false, Some((task(1, 1), 1))),
        (
            "its task is being leased by a concurrent pull",
            "src/node1",
            Some(task(1, 0)),
            false,
            None,
        ),
        (
            "another node's task is being leased",
            "src/node2",
            Some(task(1, 0)),
            false,
            Some((task(1, 1), 1)),
        ),
        // A file store is per machine: nobody may stand in for a silent node on one.
        ("node2 silent, file store", "src/node1", Some(task(1, 0)), true, None),
    ];
    for (case, worker_id, leasing, silent, want) in cases {
        let being_leased = |id: &TaskId| Some(*id) == leasing;
        let got = if silent {
            next_task(&state, worker_id, 0, node2_silent, being_leased)
        } else {
            next_task(&state, worker_id, 0, nobody_silent, being_leased)
        };
        assert_eq!(got, Ok(want), "{case}");
    }
    assert_eq!(
        next_task(&state, "src/node9", 0, nobody_silent, |_| false),
        Err(UnregisteredWorker("src/node9".to_string()))
    );
}

#[test]
fn test_a_job_behind_a_prune_on_its_repository_waits_for_it() {
    let mut state = state_with_backup();
    let request = PruneRequest {
        source: "src".into(),
        policy: Retention { keep_last: 1, ..Retention::default() },
        dry_run: false,
        max_unused_percent: 10,
    };
    let repository: Repository = RepositoryRef::new("repo", "file:///r", 1024);
    let prune = plan_prune(&request, &repository, &[]).unwrap();
    apply(&mut state, Command::SubmitJob { job_id: job_id(2), spec: prune, at_ms: 2 });
    apply(&mut state, Command::SubmitJob { job_id: job_id(3), spec: backup_spec(3), at_ms: 3 });

    // The prune waits for the earlier backup; the later backup waits for the prune.
    let picks = |state: &ClusterState| {
        next_task(state, "src/node1", 0, |_| false, |_| false).unwrap().map(|(id, _)| id.job_id)
    };
    assert_eq!(picks(&state), Some(job_id(1)));
    lease(&mut state, task(1, 0), 1, "src/node1");
    assert_eq!(picks(&state), None, "node1 got work past the prune's lock");
    apply(&mut state, Command::CancelJob { job_id: job_id(1), at_ms: 6 });
    let event = JobEvent::TaskFailed {
        slot: task(1, 0).slot,
        attempt: 1,
        error: "cancelled".to_string(),
        retryable: false,
        at_ms: 7,
    };
    apply(&mut state, Command::Task { task_id: task(1, 0), event });
    assert!(state.jobs[&job_id(1)].state().is_terminal());
    assert_eq!(picks(&state), Some(job_id(2)), "the prune runs once the backup ended");
}

#[test]
fn test_a_task_whose_lease_was_lost_gets_the_next_attempt_and_only_it_is_current() {
    let mut state = state_with_backup();
    lease(&mut state, task(1, 0), 1, "src/node1");
    assert!(is_current_attempt(&state, &task(1, 0), 1));
    let event = JobEvent::LeaseLost { slot: task(1, 0).slot, attempt: 1, at_ms: 9 };
    apply(&mut state, Command::Task { task_id: task(1, 0), event });
    assert!(!is_current_attempt(&state, &task(1, 0), 1), "a fenced attempt stays current");
    assert_eq!(next_task(&state, "src/node1", 0, |_| false, |_| false), Ok(Some((task(1, 0), 2))));
    lease(&mut state, task(1, 0), 2, "src/node1");
    assert!(is_current_attempt(&state, &task(1, 0), 2));
    assert!(!is_current_attempt(&state, &task(1, 1), 1), "a task never leased is current");
}

#[test]
fn test_the_assigned_spec_carries_the_pinned_config_and_the_backups_to_forget_now() {
    let mut state = state_with_backup();
    state.repositories.get_mut("repo").unwrap().config_id = Some("c1".to_string());
    assert_eq!(
        assigned_spec(&state, task(1, 0)).unwrap().repository.config_id.as_deref(),
        Some("c1")
    );
    assert!(assigned_spec(&state, task(9, 0)).is_none());

    let request = PruneRequest {
        source: "src".into(),
        policy: Retention { keep_last: 1, ..Retention::default() },
        dry_run: false,
        max_unused_percent: 10,
    };
    let repository = state.repositories["repo"].clone();
    let prune = plan_prune(&request, &repository, &[]).unwrap();
    apply(&mut state, Command::SubmitJob { job_id: job_id(2), spec: prune, at_ms: 2 });
    // Two backups committed after the prune was planned (with none): the older is forgotten.
    for n in [10, 11] {
        let mut backup = BackupRecord::fixture(BackupId(Ulid::from_parts(n, 0)), "src", n, None);
        backup.repository = "repo".to_string();
        state.backups.insert(backup.backup_id, backup);
    }
    let forget = TaskId { job_id: job_id(2), slot: TaskSlot::Phase { phase: 0, index: 0 } };
    let spec = assigned_spec(&state, forget).unwrap();
    assert!(
        matches!(&spec.kind, TaskKind::ForgetBackups { backups, .. } if *backups == [BackupId(Ulid::from_parts(10, 0))]),
        "{:?}",
        spec.kind
    );
}

#[test]
fn test_a_task_backing_off_after_a_failure_is_not_handed_out_before_its_time() {
    let mut state = state_with_backup();
    lease(&mut state, task(1, 0), 1, "src/node1");
    let event = JobEvent::TaskFailed {
        slot: task(1, 0).slot,
        attempt: 1,
        error: "503 SlowDown".to_string(),
        retryable: true,
        at_ms: 10,
    };
    apply(&mut state, Command::Task { task_id: task(1, 0), event });
    let retry_at = 10 + crate::core::job::run::retry_delay_ms(1);
    assert_eq!(next_retry_ms(&state, 10), Some(retry_at));
    let pick = |now_ms| next_task(&state, "src/node1", now_ms, |_| false, |_| false).unwrap();
    // Before its time the worker gets another task of the job, if any, never this one.
    assert_ne!(pick(retry_at - 1).map(|(id, _)| id), Some(task(1, 0)));
    assert_eq!(pick(retry_at), Some((task(1, 0), 2)));
    assert_eq!(next_retry_ms(&state, retry_at), None, "nothing is backing off any more");
}
