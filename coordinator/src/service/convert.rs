//! Conversions between the domain and `bk.v1` messages.

use std::collections::BTreeMap;
use std::time::Duration;

use bk_proto::ids::{TaskId, TaskSlot, WorkerId};
use bk_proto::pb;

use crate::core::domain::{BackupRecord, Repository, Source, SourceSpec, WorkerRecord};
use crate::core::job::{Job, JobKind, JobState, Placement, PlannedTask, TaskRun, TaskStatus};
use crate::core::waiting::waiting_reason;
use crate::error::CoordinatorError;
use crate::leader::runtime::LeaderRuntime;

/// Validates and converts a source from the wire.
///
/// # Errors
/// [`CoordinatorError::InvalidRequest`] for a missing name or kind.
pub fn source_from_pb(source: pb::Source) -> Result<Source, CoordinatorError> {
    if source.name.trim().is_empty() {
        return Err(CoordinatorError::InvalidRequest("source name is empty".to_string()));
    }
    let spec = match source.kind {
        Some(pb::source::Kind::Influxdb3Enterprise(enterprise)) => {
            SourceSpec::InfluxDb3Enterprise {
                cluster_id: enterprise.cluster_id,
                compactor_node: enterprise.compactor_node,
                data_nodes: enterprise.data_nodes,
                http_endpoints: enterprise.http_endpoints.into_iter().collect(),
            }
        }
        Some(pb::source::Kind::Influxdb3Core(core)) => SourceSpec::InfluxDb3Core {
            node: core.node,
            http_endpoint: (!core.http_endpoint.is_empty()).then_some(core.http_endpoint),
        },
        Some(pb::source::Kind::Questdb(questdb)) => {
            SourceSpec::QuestDb { node: questdb.node, pg_addr: questdb.pg_addr }
        }
        None => {
            return Err(CoordinatorError::InvalidRequest(format!(
                "source `{}` has no kind",
                source.name
            )))
        }
    };
    Ok(Source { name: source.name.into(), spec })
}

/// Converts a source to the wire.
pub fn source_to_pb(source: &Source) -> pb::Source {
    let kind = match &source.spec {
        SourceSpec::InfluxDb3Enterprise {
            cluster_id,
            compactor_node,
            data_nodes,
            http_endpoints,
        } => pb::source::Kind::Influxdb3Enterprise(pb::InfluxDb3Enterprise {
            cluster_id: cluster_id.clone(),
            compactor_node: compactor_node.clone(),
            data_nodes: data_nodes.clone(),
            http_endpoints: http_endpoints.clone().into_iter().collect(),
        }),
        SourceSpec::InfluxDb3Core { node, http_endpoint } => {
            pb::source::Kind::Influxdb3Core(pb::InfluxDb3Core {
                node: node.clone(),
                http_endpoint: http_endpoint.clone().unwrap_or_default(),
            })
        }
        SourceSpec::QuestDb { node, pg_addr } => {
            pb::source::Kind::Questdb(pb::QuestDb { node: node.clone(), pg_addr: pg_addr.clone() })
        }
    };
    pb::Source { name: source.name.to_string(), kind: Some(kind) }
}

/// Validates and converts a repository from the wire.
///
/// # Errors
/// [`CoordinatorError::InvalidRequest`] for a missing name, or a URL that is not a supported
/// object-store URL.
pub fn repository_from_pb(repository: pb::Repository) -> Result<Repository, CoordinatorError> {
    crate::core::validate::repository(crate::core::validate::RepositoryRequest {
        name: repository.name,
        url: repository.url,
        chunk_size: repository.chunk_size_bytes,
        pack_size: repository.pack_size_bytes,
        compression_level: repository.compression_level,
    })
    .map_err(CoordinatorError::InvalidRequest)
}

/// Converts a repository to the wire.
pub fn repository_to_pb(repository: &Repository) -> pb::Repository {
    pb::Repository {
        name: repository.name.clone(),
        url: repository.url.clone(),
        chunk_size_bytes: repository.chunk_size,
        pack_size_bytes: repository.pack_size,
        compression_level: Some(repository.compression_level),
        config_id: repository.config_id.clone().unwrap_or_default(),
    }
}

/// Converts a repository-key action from the wire.
///
/// # Errors
/// [`CoordinatorError::InvalidRequest`] for a missing action, file or key id.
pub fn key_action_from_pb(
    action: Option<pb::submit_repository_key_request::Action>,
) -> Result<bk_proto::model::KeyAction, CoordinatorError> {
    use bk_proto::model::KeyAction;
    use pb::submit_repository_key_request::Action;
    let invalid = |message: &str| Err(CoordinatorError::InvalidRequest(message.to_string()));
    match action {
        Some(Action::List(_)) => Ok(KeyAction::List),
        Some(Action::Add(add)) if add.new_password_file.trim().is_empty() => {
            invalid("`add` needs the path of a file on the worker holding the new passphrase")
        }
        Some(Action::Add(add)) => Ok(KeyAction::Add { new_password_file: add.new_password_file }),
        Some(Action::Remove(remove)) if remove.key_id.trim().is_empty() => {
            invalid("`remove` needs a key id (`bkctl repo key list` shows them)")
        }
        Some(Action::Remove(remove)) => Ok(KeyAction::Remove { key_id: remove.key_id }),
        None => invalid("no action: add, list or remove"),
    }
}

fn key_to_pb(key: &bk_proto::model::RepositoryKeyInfo) -> pb::RepositoryKey {
    pb::RepositoryKey {
        key_id: key.key_id.clone(),
        created_at: key.created_at.clone(),
        host: key.host.clone(),
        kdf: key.kdf.clone(),
        current: key.current,
    }
}

/// Converts a backup record to the wire.
pub fn backup_to_pb(backup: &BackupRecord) -> pb::Backup {
    pb::Backup {
        consistency: backup
            .consistency
            .iter()
            .map(|point| pb::ConsistencyPoint {
                node: point.node.clone(),
                snapshot_sequence: point.snapshot_sequence,
                snapshot_wal_sequence: point.snapshot_wal_sequence,
                last_wal_sequence: point.last_wal_sequence,
                required_catalog_sequence: point.required_catalog_sequence,
            })
            .collect(),
        catalog_sequence: backup.catalog_sequence.unwrap_or(0),
        events: backup.events.clone(),
        parent_id: backup.parent.map(|parent| parent.to_string()).unwrap_or_default(),
        num_objects_reused: backup.transfer.num_reused,
        bytes_read: backup.transfer.bytes_read,
        bytes_written: backup.transfer.bytes_written,
        bytes_stored: backup.transfer.bytes_stored,
        repository_puts: backup.transfer.repository_puts,
        list_bytes_written: backup.transfer.list_bytes_written,
        checkpoint_held_ms: backup.checkpoint_held_ms.unwrap_or(0),
        snapshot: backup.snapshot.clone().unwrap_or_default(),
        drills: backup.drills.iter().map(drill_to_pb).collect(),
        corrupt_objects: backup
            .corrupt
            .iter()
            .map(|object| pb::CorruptObject {
                key: object.key.clone(),
                reason: object.reason.clone(),
            })
            .collect(),
        id: backup.backup_id.to_string(),
        source: backup.source.to_string(),
        repository: backup.repository.clone(),
        job_id: backup.job_id.to_string(),
        created_at_ms: backup.created_at_ms,
        num_objects: backup.num_objects,
        num_bytes: backup.num_bytes,
        manifest_key: backup.manifest_key.clone(),
        nodes: backup.nodes.clone(),
        catalog_format: backup
            .catalog_format
            .map(|format| format.as_str().to_string())
            .unwrap_or_default(),
        exclusions: backup
            .exclusions
            .iter()
            .map(|exclusion| pb::Exclusion {
                prefix: exclusion.prefix.clone(),
                reason: exclusion.reason.clone(),
                num_objects: exclusion.num_objects,
            })
            .collect(),
        phases: backup
            .phases
            .iter()
            .map(|phase| pb::PhaseTiming {
                name: phase.name.clone(),
                started_at_ms: phase.started_at_ms,
                finished_at_ms: phase.finished_at_ms,
                num_objects: phase.num_objects,
                num_bytes: phase.num_bytes,
            })
            .collect(),
    }
}

/// What only the leader knows of workers (it hears their heartbeats).
pub struct Liveness {
    /// How long ago each worker was heard from.
    pub last_seen: BTreeMap<WorkerId, Duration>,
    /// Each worker's object-store retries, from its last heartbeat.
    pub store_retries: BTreeMap<WorkerId, u64>,
}

/// Converts a worker record to the wire; `liveness` only when this replica leads.
pub fn worker_to_pb(worker: &WorkerRecord, liveness: Option<&Liveness>) -> pb::Worker {
    pb::Worker {
        id: worker.worker_id.to_string(),
        source: worker.source.to_string(),
        node: worker.node.clone(),
        registered_at_ms: worker.registered_at_ms,
        max_concurrent_objects: worker.max_concurrent_objects,
        max_bytes_per_second: worker.max_bytes_per_second,
        last_seen_ago_ms: liveness.and_then(|liveness| {
            liveness.last_seen.get(&worker.worker_id).map(|ago| ago.as_millis() as u64)
        }),
        store_retries: liveness
            .and_then(|liveness| liveness.store_retries.get(&worker.worker_id).copied()),
    }
}

/// What a job view needs beyond the job: workers, and (on the leader) liveness and progress.
pub struct JobViewContext<'a> {
    /// Registered workers.
    pub workers: &'a BTreeMap<WorkerId, WorkerRecord>,
    /// The leader's runtime, or `None` on a follower.
    pub runtime: Option<&'a LeaderRuntime>,
    /// The lease timeout (for waiting reasons).
    pub lease_timeout: Duration,
    /// Why the repository lock holds the job back, if it does.
    pub locked_by: Option<String>,
}

/// Converts a job, with progress and waiting reasons, to the wire.
pub fn job_to_pb(job: &Job, context: &JobViewContext<'_>) -> pb::Job {
    let last_seen = context.runtime.map(LeaderRuntime::last_seen_ago).unwrap_or_default();
    let task = |slot, planned: Option<&PlannedTask>, run: &TaskRun| {
        task_to_pb(job, slot, planned, run, context, &last_seen)
    };
    let (phases, cleanup) = match &job.summary {
        Some(summary) => {
            let group = |phase: &crate::core::job::summary::PhaseSummary| pb::Phase {
                name: phase.name.clone(),
                tasks: phase
                    .tasks
                    .iter()
                    .map(|kept| task(kept.slot, Some(&kept.planned), &kept.run))
                    .collect(),
                summary: Some(pb::PhaseSummary {
                    num_tasks: phase.num_tasks,
                    num_succeeded: phase.num_succeeded,
                    num_failed: phase.num_failed,
                    started_at_ms: phase.started_at_ms.unwrap_or(0),
                    finished_at_ms: phase.finished_at_ms.unwrap_or(0),
                    num_objects: phase.num_objects,
                    num_bytes: phase.num_bytes,
                }),
            };
            let cleanup = group(&summary.cleanup).tasks;
            (summary.phases.iter().map(group).collect(), cleanup)
        }
        None => {
            let phases = job
                .spec
                .phases
                .iter()
                .zip(&job.phases)
                .enumerate()
                .map(|(phase, (planned, runs))| pb::Phase {
                    name: planned.name.clone(),
                    tasks: runs
                        .iter()
                        .enumerate()
                        .map(|(index, run)| {
                            let slot = TaskSlot::Phase { phase: phase as u32, index: index as u32 };
                            task(slot, job.planned(slot), run)
                        })
                        .collect(),
                    summary: None,
                })
                .collect();
            let cleanup = job
                .cleanup
                .iter()
                .enumerate()
                .map(|(index, run)| {
                    let slot = TaskSlot::Cleanup { index: index as u32 };
                    task(slot, job.planned(slot), run)
                })
                .collect();
            (phases, cleanup)
        }
    };
    pb::Job { phases, cleanup, ..job_header_to_pb(job) }
}

/// One task of `job` on the wire: its state, where it runs, why it waits, what it moved and
/// reported.
fn task_to_pb(
    job: &Job,
    slot: TaskSlot,
    planned: Option<&PlannedTask>,
    run: &TaskRun,
    context: &JobViewContext<'_>,
    last_seen: &BTreeMap<WorkerId, Duration>,
) -> pb::Task {
    let task_id = TaskId { job_id: job.id, slot };
    let node = match planned.map(|task| &task.placement) {
        Some(Placement::Node(node)) => node.clone(),
        _ => String::new(),
    };
    let now_ms = crate::clock::now_ms();
    let waiting_reason = match (run.status, planned, context.runtime, &context.locked_by) {
        (TaskStatus::Pending, Some(_), _, Some(lock)) => lock.clone(),
        (TaskStatus::Pending, _, _, None) if run.backing_off(now_ms) => format!(
            "retrying in {} s, after failure {}: {}",
            run.retry_at_ms.unwrap_or(now_ms).saturating_sub(now_ms).div_ceil(1000),
            run.num_failures,
            run.error.as_deref().unwrap_or("no error recorded")
        ),
        (TaskStatus::Pending, Some(planned), Some(_), None) => waiting_reason(
            &job.spec.source,
            planned,
            context.workers,
            last_seen,
            context.lease_timeout,
        )
        .unwrap_or_default(),
        _ => String::new(),
    };
    let progress = match (&run.report, context.runtime) {
        (Some(report), _) => Some(pb::Progress {
            objects_done: report.num_objects,
            bytes_done: report.num_bytes,
            objects_total: report.num_objects,
            bytes_total: report.num_bytes,
        }),
        (None, Some(runtime)) => runtime.progress(&task_id, run.attempt),
        (None, None) => None,
    };
    let (warnings, problems, num_skipped, events) = match &run.report {
        Some(report) => (
            report.warnings.clone(),
            report.problems.clone(),
            report.num_skipped,
            report.events.clone(),
        ),
        None => (Vec::new(), Vec::new(), 0, Vec::new()),
    };
    let keys = run.report.iter().flat_map(|report| &report.keys).map(key_to_pb).collect();
    let moves_objects = planned.is_some_and(|task| task.kind.moves_objects());
    pb::Task {
        moves_objects,
        warnings,
        problems,
        num_skipped,
        events,
        keys,
        id: task_id.to_string(),
        label: planned.map(|task| task.label.clone()).unwrap_or_default(),
        node,
        state: task_state_to_pb(run.status) as i32,
        attempt: run.attempt,
        worker_id: run.worker_id.as_deref().unwrap_or_default().to_string(),
        started_at_ms: run.started_at_ms.unwrap_or(0),
        finished_at_ms: run.finished_at_ms.unwrap_or(0),
        error: run.error.clone().unwrap_or_default(),
        waiting_reason,
        progress,
    }
}

/// A job without its phases and tasks: what a list of jobs shows. Cheap whatever the job's
/// size (a thousand-node backup has some 5,000 tasks), so pages that list many jobs and
/// refresh themselves do not render every task of every job.
pub fn job_header_to_pb(job: &Job) -> pb::Job {
    pb::Job {
        schedule: job.spec.scheduled.as_ref().map(|(name, _)| name.clone()).unwrap_or_default(),
        schedule_slot_ms: job.spec.scheduled.as_ref().map_or(0, |(_, slot)| *slot),
        stage: job.stage(),
        id: job.id.to_string(),
        kind: match job.spec.kind {
            JobKind::Backup => pb::JobKind::Backup,
            JobKind::Restore => pb::JobKind::Restore,
            JobKind::Verify => pb::JobKind::Verify,
            JobKind::Prune => pb::JobKind::Prune,
            JobKind::RepositoryKey => pb::JobKind::RepositoryKey,
            JobKind::Drill => pb::JobKind::Drill,
            JobKind::Check => pb::JobKind::Check,
        } as i32,
        state: job_state_to_pb(job.state()) as i32,
        source: job.spec.source.to_string(),
        repository: job.spec.repository.name.clone(),
        created_at_ms: job.created_at_ms,
        finished_at_ms: job.finished_at_ms().unwrap_or(0),
        error: job.error().unwrap_or_default().to_string(),
        backup_id: job.spec.backup_id.map(|id| id.to_string()).unwrap_or_default(),
        phases: Vec::new(),
        cleanup: Vec::new(),
    }
}

fn job_state_to_pb(state: JobState) -> pb::JobState {
    match state {
        JobState::Queued => pb::JobState::Queued,
        JobState::Running => pb::JobState::Running,
        JobState::Failing => pb::JobState::Failing,
        JobState::Succeeded => pb::JobState::Succeeded,
        JobState::Failed => pb::JobState::Failed,
        JobState::Cancelled => pb::JobState::Cancelled,
    }
}

fn task_state_to_pb(status: TaskStatus) -> pb::TaskState {
    match status {
        TaskStatus::Blocked => pb::TaskState::Blocked,
        TaskStatus::Pending => pb::TaskState::Pending,
        TaskStatus::Running => pb::TaskState::Running,
        TaskStatus::Succeeded => pb::TaskState::Succeeded,
        TaskStatus::Failed => pb::TaskState::Failed,
        TaskStatus::Skipped => pb::TaskState::Skipped,
    }
}

fn drill_to_pb(drill: &crate::core::domain::DrillRecord) -> pb::Drill {
    let report = &drill.report;
    pb::Drill {
        job_id: drill.job_id.to_string(),
        at_ms: drill.at_ms,
        worker_id: drill.worker_id.to_string(),
        passed: report.passed,
        failure: report.failure.clone().unwrap_or_default(),
        checks: report.checks.clone(),
        tables: report
            .tables
            .iter()
            .map(|table| pb::DrillTable {
                table: table.table.clone(),
                rows: table.rows,
                min_time: table.min_time.clone(),
                max_time: table.max_time.clone(),
                from: table.from.clone(),
            })
            .collect(),
        restore_ms: report.restore_ms,
        start_ms: report.start_ms,
        scratch_bytes: report.scratch_bytes,
        log_file: report.log_file.clone().unwrap_or_default(),
        warnings: drill.warnings.clone(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn test_source_round_trips_through_the_wire() {
        let source = Source {
            name: "prod".into(),
            spec: SourceSpec::InfluxDb3Enterprise {
                cluster_id: "c".into(),
                compactor_node: "k".into(),
                data_nodes: vec!["a".into(), "b".into()],
                http_endpoints: [("a".to_string(), "http://a:8181".to_string())].into(),
            },
        };
        assert_eq!(source_from_pb(source_to_pb(&source)).unwrap(), source);
        let core = Source {
            name: "core".into(),
            spec: SourceSpec::InfluxDb3Core { node: "n".into(), http_endpoint: None },
        };
        assert_eq!(source_from_pb(source_to_pb(&core)).unwrap(), core);
    }
}
