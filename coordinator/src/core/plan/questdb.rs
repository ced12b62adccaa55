//! QuestDB plans (`shared/reference/questdb-checkpoint.md`). Pure.
//!
//! Backup: `prepare` (free disk, then `CHECKPOINT CREATE`, or `SNAPSHOT PREPARE` before 8.1.1)
//! → `copy` the server root (`db/`, `.checkpoint/` or `snapshot/`, `conf/`, anything unknown;
//! not `log/`, `public/`, `tmp/`, `import/`, `export/`) → `release` → `commit`. Release also runs
//! as cleanup, first, and retries until it succeeds, so a failed copy, a cancelled job, a killed
//! worker or a coordinator failover never leaves the server in checkpoint mode (its disk would
//! fill). The worker records in staging whether this job holds the checkpoint, so release never
//! frees someone else's.
//!
//! Restore: `preflight` (the PG port refuses connections, the root is empty unless `--wipe`, the
//! backup's chunks exist) → `wipe` (with `--wipe`) → `restore` every object → `trigger`: the empty
//! `_restore` file, last.

use bk_proto::ids::{BackupId, TaskId, TaskSlot};
use bk_proto::model::{CopyPhase, ExcludeRule, PartRef, TaskKind};

use super::error::PlanError;
use super::request::{NewBackup, RestoreRequest};
use crate::core::domain::{BackupRecord, Repository};
use crate::core::job::{JobKind, JobSpec, Placement, PlannedPhase, PlannedTask};

/// Prefixes of the server root copied as their own tasks.
const COPIED: [&str; 4] = ["db/", ".checkpoint/", "snapshot/", "conf/"];
/// Prefixes left out, with why.
const EXCLUDED: [(&str, &str); 5] = [
    ("log/", "server logs, not needed to restore"),
    ("public/", "web console assets, shipped with QuestDB"),
    ("tmp/", "scratch space"),
    ("import/", "COPY input files, not database state"),
    ("export/", "exported files, not database state"),
];

/// What plans need to know about the QuestDB server.
pub struct QuestDbTarget<'a> {
    /// Its node id.
    pub node: &'a str,
    /// `host:port` of its PostgreSQL wire endpoint.
    pub pg_addr: &'a str,
}

/// Plans a backup of a QuestDB source (the server `server`).
pub(super) fn backup(new: &NewBackup<'_>, server: &QuestDbTarget<'_>) -> JobSpec {
    let NewBackup { source, repository, job_id, backup_id, created_at_ms, options } = *new;
    let ids = (job_id, backup_id, created_at_ms);
    let (phases, cleanup) = phases(server, ids, options.adopt_checkpoint);
    JobSpec {
        kind: JobKind::Backup,
        parent: options.parent,
        scheduled: None,
        backup_id: Some(ids.1),
        source: source.name.clone(),
        source_spec: Some(source.spec.clone()),
        repository: repository.clone(),
        nodes: vec![server.node.to_string()],
        phases,
        cleanup,
        allow_corrupt: options.allow_corrupt,
    }
}

/// The phases and cleanup of a QuestDB backup.
fn phases(
    server: &QuestDbTarget<'_>,
    ids: (bk_proto::ids::JobId, BackupId, u64),
    adopt_checkpoint: bool,
) -> (Vec<PlannedPhase>, Vec<PlannedTask>) {
    let (job_id, backup_id, created_at_ms) = ids;
    let on_server = || Placement::Node(server.node.to_string());
    let task = |label: String, kind: TaskKind| PlannedTask::new(label, on_server(), kind);
    let release = || TaskKind::QuestDbRelease { pg_addr: server.pg_addr.to_string() };
    let prepare = task(
        format!("checkpoint QuestDB at {}", server.pg_addr),
        TaskKind::QuestDbPrepare { pg_addr: server.pg_addr.to_string(), adopt_checkpoint },
    );
    let mut copies: Vec<PlannedTask> = COPIED
        .iter()
        .map(|prefix| task(format!("copy {prefix}"), copy_kind(server.node, prefix, Vec::new())))
        .collect();
    let mut exclude: Vec<ExcludeRule> = COPIED
        .iter()
        .map(|prefix| ExcludeRule {
            prefix: prefix.to_string(),
            reason: "copied by another task".to_string(),
            record: false,
        })
        .collect();
    exclude.extend(EXCLUDED.iter().map(|(prefix, reason)| ExcludeRule {
        prefix: prefix.to_string(),
        reason: reason.to_string(),
        record: true,
    }));
    exclude.push(ExcludeRule {
        prefix: "_restore".to_string(),
        reason: "a restore trigger, never part of a backup".to_string(),
        record: true,
    });
    copies.push(task(
        "copy other objects in the server root".to_string(),
        copy_kind(server.node, "", exclude),
    ));
    let parts = (0..copies.len() as u32)
        .map(|index| PartRef {
            task_id: TaskId { job_id, slot: TaskSlot::Phase { phase: 1, index } },
            attempt: 0,
        })
        .collect();
    let phases = vec![
        PlannedPhase { name: "prepare".to_string(), tasks: vec![prepare] },
        PlannedPhase { name: "copy".to_string(), tasks: copies },
        PlannedPhase {
            name: "release".to_string(),
            tasks: vec![task("release the QuestDB checkpoint".to_string(), release())],
        },
        PlannedPhase {
            name: "commit".to_string(),
            tasks: vec![PlannedTask {
                placement: Placement::AnyNode,
                ..task(
                    format!("commit backup {backup_id}"),
                    TaskKind::CommitBackup { backup_id, created_at_ms, parts },
                )
            }],
        },
    ];
    let cleanup = vec![
        PlannedTask {
            retry_until_success: true,
            ..task("release the QuestDB checkpoint (releasing)".to_string(), release())
        },
        PlannedTask {
            placement: Placement::AnyNode,
            depends_on: vec![0],
            ..task("remove staging".to_string(), TaskKind::RemoveStaging)
        },
    ];
    (phases, cleanup)
}

fn copy_kind(node: &str, prefix: &str, exclude: Vec<ExcludeRule>) -> TaskKind {
    TaskKind::CopyPrefix {
        phase: CopyPhase::Copy,
        node: node.to_string(),
        prefix: prefix.to_string(),
        exclude,
    }
}

/// Plans a QuestDB restore.
///
/// # Errors
/// [`PlanError::InvalidRestore`] when no target is given.
pub(super) fn restore(
    server: &QuestDbTarget<'_>,
    backup: &BackupRecord,
    repository: &Repository,
    request: &RestoreRequest,
    server_has_worker: bool,
) -> Result<JobSpec, PlanError> {
    let invalid = |reason: &str| PlanError::InvalidRestore {
        backup_id: backup.backup_id.to_string(),
        reason: reason.to_string(),
    };
    let target_url = request
        .node_targets
        .get(server.node)
        .or(request.default_target.as_ref())
        .cloned()
        .ok_or_else(|| invalid("no target: pass `--target URL` (the QuestDB server root)"))?;
    let placement = if server_has_worker {
        Placement::Node(server.node.to_string())
    } else {
        Placement::AnyNode
    };
    let task =
        |label: &str, kind: TaskKind| PlannedTask::new(label.to_string(), placement.clone(), kind);
    let mut phases = vec![PlannedPhase {
        name: "preflight".to_string(),
        tasks: vec![
            task(
                "check QuestDB is stopped and the root is empty",
                TaskKind::CheckRestoreTarget {
                    node: server.node.to_string(),
                    target_url: target_url.clone(),
                    prefixes: vec![String::new()],
                    http_endpoint: Some(format!("postgres://{}", server.pg_addr)),
                    allow_existing: request.wipe || request.resume,
                },
            ),
            task(
                &format!("check backup {} and its chunks exist", backup.backup_id),
                TaskKind::VerifyBackup { backup_id: backup.backup_id, deep: false },
            ),
        ],
    }];
    if request.wipe {
        let wipe =
            TaskKind::WipeTarget { target_url: target_url.clone(), prefixes: vec![String::new()] };
        phases.push(PlannedPhase {
            name: "wipe".to_string(),
            tasks: vec![task("empty the server root", wipe)],
        });
    }
    let restore = TaskKind::RestoreObjects {
        backup_id: backup.backup_id,
        target_url: target_url.clone(),
        phase: CopyPhase::Copy,
        node: None,
    };
    phases.push(PlannedPhase {
        name: "restore".to_string(),
        tasks: vec![task("restore the server root", restore)],
    });
    let trigger = TaskKind::QuestDbRestoreTrigger { target_url };
    phases.push(PlannedPhase {
        name: "trigger".to_string(),
        tasks: vec![task("create the empty `_restore` trigger file", trigger)],
    });
    let nodes = vec![server.node.to_string()];
    Ok(JobSpec { nodes, ..JobSpec::reading_backup(JobKind::Restore, backup, repository, phases) })
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use bk_proto::ids::JobId;
    use ulid::Ulid;

    use super::*;
    use crate::core::domain::SourceSpec;
    use crate::core::job::{Job, JobEvent, JobState, TaskStatus};

    fn server() -> QuestDbTarget<'static> {
        QuestDbTarget { node: "qnode", pg_addr: "127.0.0.1:8812" }
    }

    fn backup_job() -> Job {
        let ids = (JobId(Ulid::from_parts(1, 1)), BackupId(Ulid::from_parts(1, 2)), 5);
        let (phases, cleanup) = phases(&server(), ids, false);
        let spec = JobSpec {
            kind: JobKind::Backup,
            parent: None,
            scheduled: None,
            backup_id: Some(ids.1),
            source: "qdb".into(),
            source_spec: None,
            repository: Repository::new("r", "file:///r", 1 << 20),
            nodes: vec!["qnode".into()],
            phases,
            cleanup,
            allow_corrupt: false,
        };
        Job::new(ids.0, spec, 5)
    }

    #[test]
    fn test_backup_checkpoints_copies_releases_then_commits() {
        let job = backup_job();
        let names: Vec<&str> = job.spec.phases.iter().map(|phase| phase.name.as_str()).collect();
        assert_eq!(names, ["prepare", "copy", "release", "commit"]);
        let labels: Vec<&str> =
            job.spec.phases[1].tasks.iter().map(|task| task.label.as_str()).collect();
        assert_eq!(
            labels,
            [
                "copy db/",
                "copy .checkpoint/",
                "copy snapshot/",
                "copy conf/",
                "copy other objects in the server root"
            ]
        );
        let TaskKind::CopyPrefix { exclude, .. } = &job.spec.phases[1].tasks[4].kind else {
            panic!()
        };
        let recorded: Vec<&str> =
            exclude.iter().filter(|rule| rule.record).map(|rule| rule.prefix.as_str()).collect();
        assert_eq!(recorded, ["log/", "public/", "tmp/", "import/", "export/", "_restore"]);
        assert!(
            matches!(job.spec.cleanup[0].kind, TaskKind::QuestDbRelease { .. })
                && job.spec.cleanup[0].retry_until_success
        );
        assert_eq!(
            job.spec.cleanup[1].depends_on,
            [0],
            "staging (the ownership marker) goes after the release"
        );
    }

    #[test]
    fn test_release_cleanup_retries_until_it_succeeds_even_after_a_failed_copy() {
        let mut job = backup_job();
        let prepare = TaskSlot::Phase { phase: 0, index: 0 };
        job.apply(JobEvent::TaskLeased {
            slot: prepare,
            attempt: 1,
            worker_id: "w".into(),
            at_ms: 1,
        })
        .unwrap();
        job.apply(JobEvent::TaskSucceeded {
            slot: prepare,
            attempt: 1,
            report: Default::default(),
            at_ms: 2,
        })
        .unwrap();
        let copy = TaskSlot::Phase { phase: 1, index: 0 };
        job.apply(JobEvent::TaskLeased { slot: copy, attempt: 1, worker_id: "w".into(), at_ms: 3 })
            .unwrap();
        job.apply(JobEvent::TaskFailed {
            slot: copy,
            attempt: 1,
            error: "disk".into(),
            retryable: false,
            at_ms: 4,
        })
        .unwrap();
        let release = TaskSlot::Cleanup { index: 0 };
        assert_eq!(job.runnable_slots(), [release], "staging removal waits for the release");
        for attempt in 1..=10 {
            job.apply(JobEvent::TaskLeased {
                slot: release,
                attempt,
                worker_id: "w".into(),
                at_ms: 5,
            })
            .unwrap();
            job.apply(JobEvent::TaskFailed {
                slot: release,
                attempt,
                error: "connection refused".into(),
                retryable: true,
                at_ms: 6,
            })
            .unwrap();
            assert_eq!(
                job.run(release).unwrap().status,
                TaskStatus::Pending,
                "attempt {attempt}: release gave up"
            );
            assert_eq!(job.state(), JobState::Failing);
        }
        job.apply(JobEvent::TaskLeased {
            slot: release,
            attempt: 11,
            worker_id: "w".into(),
            at_ms: 7,
        })
        .unwrap();
        job.apply(JobEvent::TaskSucceeded {
            slot: release,
            attempt: 11,
            report: Default::default(),
            at_ms: 8,
        })
        .unwrap();
        assert_eq!(job.runnable_slots(), [TaskSlot::Cleanup { index: 1 }]);
    }

    #[test]
    fn test_restore_checks_the_pg_port_and_writes_the_trigger_last() {
        let spec = SourceSpec::QuestDb { node: "qnode".into(), pg_addr: "127.0.0.1:8812".into() };
        let backup = BackupRecord::fixture(BackupId(Ulid::from_parts(1, 2)), "qdb", 0, Some(spec));
        let repository = Repository::new("r", "file:///r", 1 << 20);
        let request = RestoreRequest {
            default_target: Some("file:///var/lib/questdb".into()),
            wipe: true,
            node_targets: BTreeMap::new(),
            ..RestoreRequest::default()
        };
        let spec = restore(&server(), &backup, &repository, &request, true).unwrap();
        let names: Vec<&str> = spec.phases.iter().map(|phase| phase.name.as_str()).collect();
        assert_eq!(names, ["preflight", "wipe", "restore", "trigger"]);
        let TaskKind::CheckRestoreTarget { http_endpoint, prefixes, .. } =
            &spec.phases[0].tasks[0].kind
        else {
            panic!()
        };
        assert_eq!(http_endpoint.as_deref(), Some("postgres://127.0.0.1:8812"));
        assert_eq!(prefixes, &[String::new()], "the whole root must be empty");
    }
}
