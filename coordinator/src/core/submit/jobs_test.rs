use bk_proto::model::{KeyAction, RepositoryRef, TaskKind};
use ulid::Ulid;

use super::*;
use crate::core::domain::{Source, WorkerRecord};
use crate::core::plan::prune::RetentionPolicy;
use crate::core::JobKind;

const NOW: u64 = 1_795_312_800_000;

fn ids() -> Ids {
    Ids { job_id: JobId(Ulid::from_parts(7, 1)), backup_id: BackupId(Ulid::from_parts(7, 2)) }
}

/// A Core source `core` (node `node0`, HTTP endpoint registered), repository `repo`, a worker
/// on `node0`, and one committed backup (id 1).
fn state() -> ClusterState {
    let mut state = ClusterState::default();
    let spec = SourceSpec::InfluxDb3Core {
        node: "node0".into(),
        http_endpoint: Some("http://node0:8181".into()),
    };
    state.sources.insert("core".into(), Source { name: "core".into(), spec: spec.clone() });
    state.repositories.insert("repo".into(), RepositoryRef::new("repo", "file:///r", 1 << 20));
    let mut worker = WorkerRecord::for_test("core/node0", "node0", "file:///data");
    worker.source = "core".into();
    state.workers.insert(worker.worker_id.clone(), worker);
    let id = BackupId(Ulid::from_parts(1, 1));
    let mut backup = BackupRecord::fixture(id, "core", NOW - 1_000, Some(spec));
    backup.repository = "repo".into();
    state.backups.insert(id, backup);
    state
}

/// The job a command submits.
fn spec(command: Result<Command, PlanError>) -> JobSpec {
    match command {
        Ok(Command::SubmitJob { job_id, spec, at_ms }) => {
            assert_eq!((job_id, at_ms), (ids().job_id, NOW));
            spec
        }
        other => panic!("not a submitted job: {other:?}"),
    }
}

const BACKUP_1: BackupId = BackupId(Ulid(((1u128) << 80) | 1));

#[test]
fn test_each_request_submits_its_kind_of_job_with_the_ids_it_was_given() {
    let state = state();
    let request = BackupRequest {
        source: "core",
        repository: "repo",
        full: false,
        adopt_checkpoint: false,
        allow_corrupt: false,
    };
    let backup = spec(backup(&state, &request, ids(), NOW));
    assert_eq!(
        (backup.kind, backup.backup_id, backup.parent),
        (JobKind::Backup, Some(ids().backup_id), Some(BACKUP_1))
    );
    assert_eq!(spec(verify(&state, BACKUP_1, true, ids(), NOW)).kind, JobKind::Verify);
    let target = DrillTarget::NewestOf { source: "core".into(), repository: None };
    assert_eq!(spec(drill(&state, &target, ids(), NOW)).kind, JobKind::Drill);
    let prune_request = PruneRequest {
        source: "core".into(),
        policy: RetentionPolicy { keep_last: 1, ..RetentionPolicy::default() },
        dry_run: true,
        max_unused_percent: 10,
    };
    let pruned = spec(prune(&state, "repo", &prune_request, ids(), NOW));
    // Jobs about the repository as a whole name no backup.
    assert_eq!((pruned.kind, pruned.backup_id), (JobKind::Prune, None));
    let key_job = spec(key(&state, "repo", KeyAction::List, ids(), NOW));
    assert_eq!((key_job.kind, key_job.backup_id), (JobKind::RepositoryKey, None));
    let check_job = spec(check(&state, "repo", 5, ids(), NOW));
    assert_eq!((check_job.kind, check_job.backup_id), (JobKind::Check, None));
    let verify_job = spec(verify(&state, BACKUP_1, true, ids(), NOW));
    assert_eq!(verify_job.backup_id, Some(BACKUP_1));
}

#[test]
fn test_a_restore_is_completed_with_the_registered_endpoints_and_worker_nodes() {
    let request = RestoreRequest {
        default_target: Some("file:///restored".into()),
        ..RestoreRequest::default()
    };
    let restore = spec(restore(&state(), BACKUP_1, request, ids(), NOW));
    assert_eq!(restore.kind, JobKind::Restore);
    // The node has a worker, so its tasks run there; its endpoint is checked for being stopped.
    let preflight = &restore.phases[0].tasks;
    assert!(
        preflight.iter().any(|task| matches!(&task.kind,
            TaskKind::CheckRestoreTarget { http_endpoint: Some(endpoint), .. } if endpoint == "http://node0:8181")),
        "{preflight:?}"
    );
}

#[test]
fn test_what_cannot_be_submitted_says_why() {
    let state = state();
    let unknown = BackupId(Ulid::from_parts(9, 9));
    let cases: Vec<(&str, Result<Command, PlanError>, &str)> = vec![
        ("unknown backup", verify(&state, unknown, false, ids(), NOW), "not found"),
        (
            "unknown repository",
            key(&state, "nope", KeyAction::List, ids(), NOW),
            "unknown repository `nope`",
        ),
        ("a percentage over 100", check(&state, "repo", 101, ids(), NOW), "0 to 100"),
        (
            "unknown source",
            backup(
                &state,
                &BackupRequest {
                    source: "nope",
                    repository: "repo",
                    full: true,
                    adopt_checkpoint: false,
                    allow_corrupt: false,
                },
                ids(),
                NOW,
            ),
            "unknown source `nope`",
        ),
    ];
    for (case, result, expected) in cases {
        let error = result.expect_err(case).to_string();
        assert!(error.contains(expected), "{case}: {error}");
    }
    assert!(
        matches!(verify(&state, unknown, false, ids(), NOW), Err(PlanError::UnknownBackup(id)) if id == unknown)
    );
}
