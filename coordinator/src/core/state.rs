//! The replicated state and the commands that change it.
//!
//! [`ClusterState::apply`] is the only mutation. It runs on every replica during Raft apply, so
//! it reads no clock and does no IO: every timestamp and id is inside the command.

use std::collections::BTreeMap;

use bk_proto::ids::{BackupId, JobId, SourceName, TaskId, WorkerId};
use bk_proto::model::{TaskKind, TaskReport, TransferStats};
use serde::{Deserialize, Serialize};

use super::domain::{BackupRecord, PhaseSummary, Repository, Source, WorkerRecord};
use super::job::{Job, JobEffect, JobEvent, JobEventRejected, JobKind, JobSpec, TaskStatus};
use super::schedule::definition::Schedule;

/// A replicated state change.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Command {
    /// Registers or replaces a source.
    PutSource(Source),
    /// Registers or replaces a repository.
    PutRepository(Repository),
    /// A worker (re)registered: any task it still held is re-queued with a new attempt.
    RegisterWorker { worker: WorkerRecord },
    /// A planned job was submitted.
    SubmitJob { job_id: JobId, spec: JobSpec, at_ms: u64 },
    /// Something happened to one of a job's tasks.
    Task { task_id: TaskId, event: JobEvent },
    /// An operator cancelled a job.
    CancelJob { job_id: JobId, at_ms: u64 },
    /// Registers or replaces a schedule.
    PutSchedule(Schedule),
    /// Removes a schedule.
    RemoveSchedule { name: String },
    /// The leader runs schedule `name` for slot `slot_ms`: records the run and submits the jobs,
    /// unless the slot already ran (exactly once across failovers).
    RunSchedule { name: String, slot_ms: u64, jobs: Vec<(JobId, JobSpec)>, at_ms: u64 },
    /// The leader drops finished jobs its job history no longer keeps
    /// ([`super::job::history`]); jobs still running are never dropped, backups stay.
    ForgetJobs { job_ids: Vec<JobId> },
    /// The leader drops the per-task detail of finished jobs past the newest few
    /// ([`super::job::summary`]); running jobs are never compacted.
    CompactJobs { job_ids: Vec<JobId> },
}

/// What applying a command answered.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum CommandResponse {
    /// Applied.
    Applied,
    /// Not applied, and why.
    Rejected(Rejection),
}

/// Why a command was not applied: typed, so callers choose their answer (a gRPC code, a log
/// level) by kind instead of by reading the message.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
pub enum Rejection {
    /// No job by that id (forgotten, or never submitted).
    #[error("job `{0}` not found")]
    UnknownJob(JobId),
    /// A job by that id exists already.
    #[error("job `{0}` already exists")]
    DuplicateJob(JobId),
    /// No schedule by that name.
    #[error("schedule `{0}` not found")]
    UnknownSchedule(String),
    /// The schedule already ran for that slot (another leader ran it first).
    #[error("schedule `{name}` already ran for slot {slot_ms}")]
    SlotAlreadyRun {
        /// The schedule.
        name: String,
        /// The slot.
        slot_ms: u64,
    },
    /// The job refused the event (stale attempt, lost race for a lease, not cancellable).
    #[error(transparent)]
    Job(#[from] JobEventRejected),
}

/// Everything the coordinator replicates.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClusterState {
    /// Sources by name.
    pub sources: BTreeMap<SourceName, Source>,
    /// Repositories by name.
    pub repositories: BTreeMap<String, Repository>,
    /// Workers by id.
    pub workers: BTreeMap<WorkerId, WorkerRecord>,
    /// Jobs by id (ULIDs: ordered by submission).
    pub jobs: BTreeMap<JobId, Job>,
    /// Committed backups by id.
    pub backups: BTreeMap<BackupId, BackupRecord>,
    /// Schedules by name.
    #[serde(default)]
    pub schedules: BTreeMap<String, Schedule>,
}

impl ClusterState {
    /// Applies one command. Deterministic: the same commands in the same order give the same
    /// state on every replica.
    pub fn apply(&mut self, command: Command) -> CommandResponse {
        match command {
            Command::PutSource(source) => {
                self.sources.insert(source.name.clone(), source);
            }
            Command::PutRepository(mut repository) => {
                // Re-registering the same URL keeps the config its workers open; another URL
                // is another repository.
                let known = self.repositories.get(&repository.name);
                repository.config_id = known
                    .filter(|known| known.url == repository.url)
                    .and_then(|known| known.config_id.clone());
                self.repositories.insert(repository.name.clone(), repository);
            }
            Command::RegisterWorker { worker } => {
                self.requeue_tasks_of(&worker.worker_id, worker.registered_at_ms);
                self.workers.insert(worker.worker_id.clone(), worker);
            }
            Command::SubmitJob { job_id, spec, at_ms } => {
                if self.jobs.contains_key(&job_id) {
                    return CommandResponse::Rejected(Rejection::DuplicateJob(job_id));
                }
                self.jobs.insert(job_id, Job::new(job_id, spec, at_ms));
            }
            Command::Task { task_id, event } => return self.apply_task_event(task_id, event),
            Command::PutSchedule(schedule) => {
                self.schedules.insert(schedule.name.clone(), schedule);
            }
            Command::RemoveSchedule { name } => {
                if self.schedules.remove(&name).is_none() {
                    return CommandResponse::Rejected(Rejection::UnknownSchedule(name));
                }
            }
            Command::RunSchedule { name, slot_ms, jobs, at_ms } => {
                let Some(schedule) = self.schedules.get_mut(&name) else {
                    return CommandResponse::Rejected(Rejection::UnknownSchedule(name));
                };
                if schedule.last_run_ms.is_some_and(|last| last >= slot_ms) {
                    return CommandResponse::Rejected(Rejection::SlotAlreadyRun { name, slot_ms });
                }
                schedule.last_run_ms = Some(slot_ms);
                for (job_id, spec) in jobs {
                    self.jobs.entry(job_id).or_insert_with(|| Job::new(job_id, spec, at_ms));
                }
            }
            Command::ForgetJobs { job_ids } => {
                for job_id in job_ids {
                    if self.jobs.get(&job_id).is_some_and(|job| job.state().is_terminal()) {
                        self.jobs.remove(&job_id);
                    }
                }
            }
            Command::CompactJobs { job_ids } => {
                for job_id in job_ids {
                    if let Some(job) = self.jobs.get_mut(&job_id) {
                        job.compact();
                    }
                }
            }
            Command::CancelJob { job_id, at_ms } => {
                let Some(job) = self.jobs.get_mut(&job_id) else {
                    return CommandResponse::Rejected(Rejection::UnknownJob(job_id));
                };
                if let Err(rejected) = job.cancel(at_ms) {
                    return CommandResponse::Rejected(rejected.into());
                }
            }
        }
        CommandResponse::Applied
    }

    fn apply_task_event(&mut self, task_id: TaskId, event: JobEvent) -> CommandResponse {
        let Some(job) = self.jobs.get_mut(&task_id.job_id) else {
            return CommandResponse::Rejected(Rejection::UnknownJob(task_id.job_id));
        };
        let event = pin_repository_config(&mut self.repositories, &job.spec.repository.name, event);
        let at_ms = event.at_ms();
        let mut forgotten = Vec::new();
        let effects = match job.apply(event) {
            Ok(effects) => effects,
            Err(rejected) => return CommandResponse::Rejected(rejected.into()),
        };
        for effect in effects {
            match effect {
                // Only a backup job commits, and it names the backup it writes.
                JobEffect::BackupCommitted { report } => {
                    if let Some(record) = backup_record(job, &report) {
                        self.backups.insert(record.backup_id, record);
                    }
                }
                JobEffect::BackupsForgotten { backups } => {
                    for backup_id in &backups {
                        self.backups.remove(backup_id);
                    }
                    forgotten = backups;
                }
                JobEffect::DrillFinished { backup_id, worker_id, report, at_ms } => {
                    let job_id = job.id;
                    super::drill_record::record_drill(
                        &mut self.backups,
                        backup_id,
                        job_id,
                        worker_id,
                        report,
                        at_ms,
                    );
                }
                JobEffect::Finished { .. } => {}
            }
        }
        self.abandon_readers_of(&forgotten, task_id.job_id, at_ms);
        CommandResponse::Applied
    }

    /// Jobs still waiting to read a backup that prune `prune_id` just forgot (a restore,
    /// verify or drill submitted before the prune took the repository lock) fail at once,
    /// naming the prune, instead of running into a missing manifest.
    fn abandon_readers_of(&mut self, forgotten: &[BackupId], prune_id: JobId, at_ms: u64) {
        if forgotten.is_empty() {
            return;
        }
        for job in self.jobs.values_mut() {
            let reads =
                matches!(job.spec.kind, JobKind::Restore | JobKind::Verify | JobKind::Drill);
            let Some(backup_id) = job.spec.backup_id.filter(|id| forgotten.contains(id)) else {
                continue;
            };
            if job.id == prune_id || !reads {
                continue;
            }
            let reason = format!(
                "backup `{backup_id}` was forgotten by prune job `{prune_id}` before this job could read \
                 it; pick another with `bkctl backups`"
            );
            // An ended or committing job keeps its outcome.
            let _ = job.abandon(reason, at_ms);
        }
    }

    /// A worker that registers again has lost whatever it was running.
    fn requeue_tasks_of(&mut self, worker_id: &str, at_ms: u64) {
        for job in self.jobs.values_mut().filter(|job| !job.state().is_terminal()) {
            let held: Vec<_> = job
                .slots()
                .filter_map(|slot| {
                    let run = job.run(slot)?;
                    let held = run.status == TaskStatus::Running
                        && run.worker_id.as_deref() == Some(worker_id);
                    held.then_some((slot, run.attempt))
                })
                .collect();
            for (slot, attempt) in held {
                // Cannot be rejected: the task is running at exactly this attempt.
                let _ = job.apply(JobEvent::LeaseLost { slot, attempt, at_ms });
            }
        }
    }
}

/// Records the repository config a task opened, the first time one is reported, so every later
/// task opens that one. A success reporting another config (two workers initialised the
/// repository at once) becomes a retryable failure: the task runs again, told the recorded one.
fn pin_repository_config(
    repositories: &mut BTreeMap<String, Repository>,
    name: &str,
    event: JobEvent,
) -> JobEvent {
    let JobEvent::TaskSucceeded { slot, attempt, report, at_ms } = event else { return event };
    let (Some(reported), Some(repository)) =
        (&report.repository_config, repositories.get_mut(name))
    else {
        return JobEvent::TaskSucceeded { slot, attempt, report, at_ms };
    };
    match &repository.config_id {
        None => repository.config_id = Some(reported.clone()),
        Some(pinned) if pinned != reported => {
            return JobEvent::TaskFailed {
                slot,
                attempt,
                error: format!(
                    "repository `{name}` was initialised by two workers at once: this task used config {reported}, \
                     config {pinned} was recorded first; running the task again with it"
                ),
                retryable: true,
                at_ms,
            }
        }
        Some(_) => {}
    }
    JobEvent::TaskSucceeded { slot, attempt, report, at_ms }
}

fn backup_record(job: &Job, report: &TaskReport) -> Option<BackupRecord> {
    let backup_id = job.spec.backup_id?;
    let mut catalog_format = None;
    let mut consistency = Vec::new();
    let mut catalog_sequence = None;
    let mut events = Vec::new();
    let mut transfer = TransferStats::default();
    let mut exclusions = Vec::new();
    let mut corrupt = Vec::new();
    let mut phases = Vec::new();
    let mut checkpoint_held_ms: Option<u64> = None;
    let mut snapshot = None;
    for (planned, runs) in job.spec.phases.iter().zip(&job.phases) {
        let mut summary = PhaseSummary {
            name: planned.name.clone(),
            started_at_ms: runs.iter().filter_map(|run| run.started_at_ms).min().unwrap_or(0),
            finished_at_ms: runs.iter().filter_map(|run| run.finished_at_ms).max().unwrap_or(0),
            num_objects: 0,
            num_bytes: 0,
        };
        for task_report in runs.iter().filter_map(|run| run.report.as_ref()) {
            summary.num_objects += task_report.num_objects;
            summary.num_bytes += task_report.num_bytes;
            exclusions.extend(task_report.exclusions.iter().cloned());
            catalog_format = catalog_format.or(task_report.catalog_format);
            consistency.extend(task_report.consistency.clone());
            catalog_sequence = catalog_sequence.or(task_report.catalog_sequence);
            events.extend(task_report.events.iter().cloned());
            transfer += task_report.transfer;
            corrupt.extend(task_report.corrupt.iter().cloned());
            checkpoint_held_ms = checkpoint_held_ms.max(task_report.checkpoint_held_ms);
            snapshot = snapshot.or(task_report.snapshot.clone());
        }
        let commits =
            planned.tasks.iter().any(|task| matches!(task.kind, TaskKind::CommitBackup { .. }));
        if !commits {
            phases.push(summary);
        }
    }
    Some(BackupRecord {
        backup_id,
        job_id: job.id,
        source: job.spec.source.clone(),
        repository: job.spec.repository.name.clone(),
        created_at_ms: job.created_at_ms,
        num_objects: report.num_objects,
        num_bytes: report.num_bytes,
        manifest_key: report.manifest_key.clone().unwrap_or_default(),
        nodes: job.spec.nodes.clone(),
        catalog_format,
        exclusions,
        phases,
        source_spec: job.spec.source_spec.clone(),
        consistency,
        catalog_sequence,
        events,
        parent: job.spec.parent,
        transfer,
        corrupt,
        drills: Vec::new(),
        checkpoint_held_ms,
        snapshot,
    })
}

#[cfg(test)]
mod tests {
    use bk_proto::ids::TaskSlot;
    use ulid::Ulid;

    use super::*;
    use crate::core::domain::SourceSpec;
    use crate::core::plan::plan_backup;

    fn state_with_job() -> (ClusterState, JobId) {
        let mut state = ClusterState::default();
        let source = Source {
            name: "core".into(),
            spec: SourceSpec::InfluxDb3Core { node: "n".into(), http_endpoint: None },
        };
        let repository = Repository::new("r", "file:///r", 1);
        let job_id = JobId(Ulid::from_parts(1, 1));
        let spec = plan_backup(
            &source,
            &repository,
            job_id,
            BackupId(Ulid::from_parts(1, 2)),
            1,
            &crate::core::plan::BackupOptions::default(),
        )
        .unwrap();
        assert_eq!(
            state.apply(Command::SubmitJob { job_id, spec, at_ms: 1 }),
            CommandResponse::Applied
        );
        (state, job_id)
    }

    fn lease(worker_id: &str, job_id: JobId, attempt: u32) -> Command {
        Command::Task {
            task_id: TaskId { job_id, slot: TaskSlot::Phase { phase: 0, index: 0 } },
            event: JobEvent::TaskLeased {
                slot: TaskSlot::Phase { phase: 0, index: 0 },
                attempt,
                worker_id: worker_id.into(),
                at_ms: 2,
            },
        }
    }

    #[test]
    fn test_second_lease_of_the_same_attempt_loses_the_race() {
        let (mut state, job_id) = state_with_job();
        assert_eq!(state.apply(lease("w1", job_id, 1)), CommandResponse::Applied);
        assert!(matches!(state.apply(lease("w2", job_id, 1)), CommandResponse::Rejected(_)));
    }

    #[test]
    fn test_reregistering_worker_gives_back_its_tasks() {
        let (mut state, job_id) = state_with_job();
        state.apply(lease("w1", job_id, 1));
        let worker = WorkerRecord {
            worker_id: "w1".into(),
            source: "core".into(),
            node: "n".into(),
            version: "0".into(),
            registered_at_ms: 3,
            max_concurrent_objects: 16,
            max_bytes_per_second: 0,
            store_url: String::new(),
            repositories: Vec::new(),
            drills: false,
            snapshots: false,
        };
        state.apply(Command::RegisterWorker { worker });
        let job = &state.jobs[&job_id];
        let run = job.run(TaskSlot::Phase { phase: 0, index: 0 }).unwrap();
        assert_eq!((run.status, run.attempt), (TaskStatus::Pending, 1));
        assert_eq!(state.apply(lease("w1", job_id, 2)), CommandResponse::Applied);
    }

    #[test]
    fn test_a_schedule_slot_runs_once_even_if_proposed_twice() {
        let (mut state, job_id) = state_with_job();
        let spec = state.jobs[&job_id].spec.clone();
        let schedule = Schedule {
            name: "nightly".into(),
            source: "core".into(),
            repository: "r".into(),
            cron: "0 2 * * *".into(),
            prune: None,
            drill: false,
            created_at_ms: 0,
            last_run_ms: None,
        };
        state.apply(Command::PutSchedule(schedule));
        let run = |n: u128| Command::RunSchedule {
            name: "nightly".into(),
            slot_ms: 100,
            jobs: vec![(JobId(Ulid::from_parts(9, n)), spec.clone())],
            at_ms: 101,
        };
        assert_eq!(state.apply(run(1)), CommandResponse::Applied);
        // A second leader proposing the same slot (it had not seen the first run) is refused.
        assert!(matches!(state.apply(run(2)), CommandResponse::Rejected(_)));
        assert_eq!(state.jobs.len(), 2);
        assert_eq!(state.schedules["nightly"].last_run_ms, Some(100));
    }

    #[test]
    fn test_the_first_reported_repository_config_is_pinned_and_another_is_retried() {
        let (mut state, job_id) = state_with_job();
        state.apply(Command::PutRepository(Repository::new("r", "file:///r", 1)));
        let slot = TaskSlot::Phase { phase: 0, index: 0 };
        let task_id = TaskId { job_id, slot };
        let succeed = |attempt: u32, config: &str| Command::Task {
            task_id,
            event: JobEvent::TaskSucceeded {
                slot,
                attempt,
                report: TaskReport {
                    repository_config: Some(config.to_string()),
                    ..TaskReport::default()
                },
                at_ms: 3,
            },
        };
        state.apply(lease("w1", job_id, 1));
        state.apply(succeed(1, "first"));
        assert_eq!(state.repositories["r"].config_id.as_deref(), Some("first"));
        // Another task reporting a second config (a racing initialisation) is run again.
        let other = TaskSlot::Phase { phase: 0, index: 1 };
        let other_id = TaskId { job_id, slot: other };
        state.apply(Command::Task {
            task_id: other_id,
            event: JobEvent::TaskLeased {
                slot: other,
                attempt: 1,
                worker_id: "w2".into(),
                at_ms: 2,
            },
        });
        state.apply(Command::Task {
            task_id: other_id,
            event: JobEvent::TaskSucceeded {
                slot: other,
                attempt: 1,
                report: TaskReport {
                    repository_config: Some("second".into()),
                    ..TaskReport::default()
                },
                at_ms: 4,
            },
        });
        let run = state.jobs[&job_id].run(other).unwrap();
        assert_eq!(run.status, TaskStatus::Pending, "{run:?}");
        assert!(run.error.as_deref().unwrap_or_default().contains("initialised by two workers"));
        assert_eq!(state.repositories["r"].config_id.as_deref(), Some("first"));
        // Re-registering the same URL keeps it; another URL is another repository.
        state.apply(Command::PutRepository(Repository::new("r", "file:///r", 1)));
        assert_eq!(state.repositories["r"].config_id.as_deref(), Some("first"));
        state.apply(Command::PutRepository(Repository::new("r", "file:///elsewhere", 1)));
        assert_eq!(state.repositories["r"].config_id, None);
    }

    #[test]
    fn test_state_round_trips_through_json() {
        let (state, _) = state_with_job();
        let bytes = serde_json::to_vec(&state).unwrap();
        assert_eq!(serde_json::from_slice::<ClusterState>(&bytes).unwrap(), state);
    }

    #[test]
    fn test_a_job_waiting_to_read_a_backup_a_prune_forgets_fails_naming_the_prune() {
        use crate::core::plan::plan_verify;
        use crate::core::plan::prune::{plan_prune, PruneRequest, RetentionPolicy};
        let mut state = ClusterState::default();
        let repository = Repository::new("r", "file:///r", 1 << 20);
        state.repositories.insert("r".into(), repository.clone());
        let backup_id = BackupId(Ulid::from_parts(1, 1));
        let mut backup = BackupRecord::fixture(backup_id, "s", 1, None);
        backup.repository = "r".into();
        state.backups.insert(backup_id, backup.clone());
        // A verify of the backup, submitted first, then a prune that forgets it.
        let verify_id = JobId(Ulid::from_parts(2, 1));
        let spec = plan_verify(&backup, &repository, false);
        state.apply(Command::SubmitJob { job_id: verify_id, spec, at_ms: 2 });
        let prune_id = JobId(Ulid::from_parts(3, 1));
        let request = PruneRequest {
            source: "s".into(),
            policy: RetentionPolicy { keep_last: 1, ..RetentionPolicy::default() },
            dry_run: false,
            max_unused_percent: 10,
        };
        let spec = plan_prune(&request, &repository, &[]).unwrap();
        state.apply(Command::SubmitJob { job_id: prune_id, spec, at_ms: 3 });
        let slot = TaskSlot::Phase { phase: 0, index: 0 };
        let task_id = TaskId { job_id: prune_id, slot };
        let leased = JobEvent::TaskLeased { slot, attempt: 1, worker_id: "w".into(), at_ms: 4 };
        assert_eq!(state.apply(Command::Task { task_id, event: leased }), CommandResponse::Applied);
        let report = TaskReport { forgotten: vec![backup_id], ..TaskReport::default() };
        let done = JobEvent::TaskSucceeded { slot, attempt: 1, report, at_ms: 5 };
        assert_eq!(state.apply(Command::Task { task_id, event: done }), CommandResponse::Applied);
        assert!(!state.backups.contains_key(&backup_id));
        let verify = &state.jobs[&verify_id];
        let error = verify.error().unwrap_or_default();
        assert!(
            error.contains(&format!("forgotten by prune job `{prune_id}`")),
            "{:?}: {error}",
            verify.state()
        );
        assert_ne!(state.jobs[&prune_id].error(), Some(error), "the prune itself goes on");
    }
}
