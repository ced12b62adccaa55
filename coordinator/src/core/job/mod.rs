//! One job: phases of tasks with a barrier between phases, plus cleanup tasks that always run.
//!
//! ```text
//!  phase 0 ──all succeeded──▶ phase 1 ──▶ … ──▶ last phase ──▶ cleanup ──▶ Succeeded
//!     │ a task failed for good (or ran out of retries)              ▲
//!     └──────────── remaining tasks Skipped ─────────────────────────┘──▶ Failed
//! ```
//! A task is `Pending` when runnable, `Running` while leased. Every lease increments the task's
//! `attempt`; results and expiries name the attempt they are about, and anything about an older
//! attempt is ignored, so a slow or partitioned worker can never overwrite a newer result.

use bk_proto::ids::{BackupId, JobId, TaskId, TaskSlot};
use bk_proto::model::{DrillReport, RepositoryRef, TaskKind, TaskReport, TaskSpec};
use serde::{Deserialize, Serialize};

pub mod commit_gate;
pub mod history;
pub mod status;
pub mod summary;

use crate::core::domain::SourceSpec;
pub use status::{JobStatus, Outcome};

/// How many times a task may fail with a retryable error before the job fails.
pub const MAX_RETRYABLE_FAILURES: u32 = 3;

/// A planned job: what to run, where, in which order. Fixed at submission.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct JobSpec {
    /// What the job does.
    #[serde(default)]
    pub kind: JobKind,
    /// The backup the job writes (backup) or reads (restore, verify).
    pub backup_id: BackupId,
    /// Backup: the parent it is incremental to (`None`: full).
    #[serde(default)]
    pub parent: Option<BackupId>,
    /// The schedule and slot that submitted the job, if a schedule did.
    #[serde(default)]
    pub scheduled: Option<(String, u64)>,
    /// Source name.
    pub source: String,
    /// The source's topology when the job was planned (recorded in the backup, so a restore
    /// plans from what was backed up even if the source is re-registered later).
    #[serde(default)]
    pub source_spec: Option<SourceSpec>,
    /// The repository, as workers need it.
    pub repository: RepositoryRef,
    /// Node ids the job covers (recorded in the backup).
    pub nodes: Vec<String>,
    /// Phases, in order.
    pub phases: Vec<PlannedPhase>,
    /// Tasks run after the phases, whatever their outcome.
    pub cleanup: Vec<PlannedTask>,
    /// Backup: commit even if source objects failed their format check (they are recorded).
    #[serde(default)]
    pub allow_corrupt: bool,
}

impl JobSpec {
    /// A job that reads `backup` (restore, verify, drill): its source, topology and nodes are
    /// the backup's, it writes no backup and has no cleanup.
    pub fn reading_backup(
        kind: JobKind,
        backup: &crate::core::domain::BackupRecord,
        repository: &RepositoryRef,
        phases: Vec<PlannedPhase>,
    ) -> Self {
        Self {
            kind,
            parent: None,
            scheduled: None,
            backup_id: backup.backup_id,
            source: backup.source.clone(),
            source_spec: backup.source_spec.clone(),
            repository: repository.clone(),
            nodes: backup.nodes.clone(),
            phases,
            cleanup: Vec::new(),
            allow_corrupt: false,
        }
    }
}

/// What a job does.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum JobKind {
    /// Writes a new backup.
    #[default]
    Backup,
    /// Writes a backup's objects back into a target store.
    Restore,
    /// Checks a backup.
    Verify,
    /// Forgets backups by retention rule and deletes the packs nothing uses any more.
    Prune,
    /// Adds, lists or removes a repository's passphrases.
    RepositoryKey,
    /// Restores a backup into scratch space, checks it and starts the database on it.
    Drill,
    /// Checks a whole repository (`bkctl repo check`).
    Check,
}

/// A named group of tasks that run in parallel.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PlannedPhase {
    /// Name shown to operators and recorded in the manifest (`compactor`, `nodes`, …).
    pub name: String,
    /// Its tasks.
    pub tasks: Vec<PlannedTask>,
}

/// One task of a plan.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PlannedTask {
    /// Short description, e.g. `copy node1/wal/`.
    pub label: String,
    /// Which workers may run it.
    pub placement: Placement,
    /// What it does.
    pub kind: TaskKind,
    /// Indices of tasks of the same phase that must succeed before this one may start (e.g. a
    /// node's consistency check waits for that node's copy tasks, still before the barrier).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub depends_on: Vec<u32>,
    /// Retryable failures re-queue the task without bound (a QuestDB release must eventually
    /// happen: the job stays visibly releasing until it does).
    #[serde(default, skip_serializing_if = "is_false")]
    pub retry_until_success: bool,
}

impl PlannedTask {
    /// A task that may start as soon as its phase does, and whose retryable failures count
    /// against the retry limit (what nearly every task is).
    pub fn new(label: String, placement: Placement, kind: TaskKind) -> Self {
        Self { label, placement, kind, depends_on: Vec::new(), retry_until_success: false }
    }

    /// Starts only once these tasks of its phase have succeeded.
    pub fn after(mut self, depends_on: Vec<u32>) -> Self {
        self.depends_on = depends_on;
        self
    }

    /// Retryable failures re-queue it without bound (a QuestDB release, a snapshot deletion:
    /// what must eventually happen).
    pub fn retrying_until_success(mut self) -> Self {
        self.retry_until_success = true;
        self
    }
}

/// Which workers may run a task.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Placement {
    /// Only the worker of this node of the job's source (it holds that node's storage).
    Node(String),
    /// Any worker of the job's source.
    AnyNode,
    /// Any worker, of any source, holding a passphrase for this repository (repository-key
    /// jobs, which belong to no source).
    RepositoryHolder(String),
    /// Any worker of the job's source with a `[drill]` section (scratch space of its own).
    DrillWorker,
}

/// Where a job stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum JobState {
    /// No task has been leased yet.
    Queued,
    /// Tasks are running.
    Running,
    /// A task failed for good; cleanup tasks run before the job is `Failed`.
    Failing,
    /// Every phase and cleanup task succeeded.
    Succeeded,
    /// The job failed; see its error.
    Failed,
    /// An operator cancelled the job; its cleanup tasks ran.
    Cancelled,
}

impl JobState {
    /// Whether the job has ended.
    pub fn is_terminal(self) -> bool {
        matches!(self, JobState::Succeeded | JobState::Failed | JobState::Cancelled)
    }
}

/// Where a task stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum TaskStatus {
    /// Its phase has not started.
    Blocked,
    /// Runnable, not leased.
    Pending,
    /// Leased to a worker.
    Running,
    /// Done.
    Succeeded,
    /// Failed for good.
    Failed,
    /// Never ran, or ran but was abandoned: the job failed or was cancelled first.
    Skipped,
}

/// The live state of one task.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TaskRun {
    /// Where it stands.
    pub status: TaskStatus,
    /// Leases handed out so far (0: never leased).
    pub attempt: u32,
    /// The worker of the current or last lease.
    pub worker_id: Option<String>,
    /// When the current or last lease was handed out.
    pub started_at_ms: Option<u64>,
    /// When it succeeded or failed.
    pub finished_at_ms: Option<u64>,
    /// Retryable failures so far.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub num_failures: u32,
    /// The last error.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// The worker's report, once it succeeded.
    pub report: Option<TaskReport>,
    /// The job failed or was cancelled while this task ran: its worker is told to stop, and
    /// whatever it reports ends the task as skipped.
    #[serde(default, skip_serializing_if = "is_false")]
    pub abandoned: bool,
}

fn is_zero(value: &u32) -> bool {
    *value == 0
}

fn is_false(value: &bool) -> bool {
    !*value
}

impl TaskRun {
    fn new(status: TaskStatus) -> Self {
        Self {
            status,
            attempt: 0,
            worker_id: None,
            started_at_ms: None,
            finished_at_ms: None,
            num_failures: 0,
            error: None,
            report: None,
            abandoned: false,
        }
    }
}

/// Something that happened to a job. Time travels inside, so applying is deterministic.
// A success carries its report; events are built once and moved into the log, so boxing the
// large variant would only add an allocation.
#[allow(clippy::large_enum_variant)]
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum JobEvent {
    /// The leader handed attempt `attempt` of a task to a worker.
    TaskLeased { slot: TaskSlot, attempt: u32, worker_id: String, at_ms: u64 },
    /// A worker reported success.
    TaskSucceeded { slot: TaskSlot, attempt: u32, report: TaskReport, at_ms: u64 },
    /// A worker reported failure.
    TaskFailed { slot: TaskSlot, attempt: u32, error: String, retryable: bool, at_ms: u64 },
    /// The leader stopped hearing from the worker holding this attempt, or the worker restarted.
    LeaseLost { slot: TaskSlot, attempt: u32, at_ms: u64 },
}

impl JobEvent {
    /// When it happened (every event carries the leader's time).
    pub fn at_ms(&self) -> u64 {
        match self {
            JobEvent::TaskLeased { at_ms, .. }
            | JobEvent::TaskSucceeded { at_ms, .. }
            | JobEvent::TaskFailed { at_ms, .. }
            | JobEvent::LeaseLost { at_ms, .. } => *at_ms,
        }
    }
}

/// What applying an event asks of the rest of the state.
#[derive(Clone, Debug, PartialEq, Eq)]
#[allow(clippy::large_enum_variant)] // As `JobEvent`: built once, consumed at once.
pub enum JobEffect {
    /// The commit task succeeded: the backup exists.
    BackupCommitted { report: TaskReport },
    /// The job reached a terminal state.
    Finished { state: JobState },
    /// A prune forgot these backups: their manifests are gone.
    BackupsForgotten { backups: Vec<BackupId> },
    /// A drill ended (passed or failed): it is recorded on its backup.
    DrillFinished { backup_id: BackupId, worker_id: String, report: DrillReport, at_ms: u64 },
}

/// Why an event was not applied. Not an error of the state machine: callers use it to answer
/// the worker (e.g. a lease lost to a race).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
pub enum JobEventRejected {
    /// No task at that slot.
    #[error("no task at slot {0:?}")]
    UnknownTask(TaskSlot),
    /// The event is about an attempt that is not the current one (fencing).
    #[error("attempt {attempt} is stale (current attempt: {current})")]
    StaleAttempt { attempt: u32, current: u32 },
    /// The job cannot be cancelled now, and why.
    #[error("the job cannot be cancelled: {0}")]
    NotCancellable(String),
    /// The task is not in a state the event applies to.
    #[error("task is {status:?}, not {expected}")]
    WrongStatus { status: TaskStatus, expected: String },
}

/// A job and the live state of its tasks.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(from = "status::StoredJob")]
pub struct Job {
    /// Its id.
    pub id: JobId,
    /// The plan.
    pub spec: JobSpec,
    /// Submission time.
    pub created_at_ms: u64,
    /// Where it stands ([`JobStatus`] draws the transitions).
    pub status: JobStatus,
    /// Live state per phase, per task.
    pub phases: Vec<Vec<TaskRun>>,
    /// Live state of the cleanup tasks.
    pub cleanup: Vec<TaskRun>,
    /// Set once the job's per-task detail was dropped (an old finished job): its phases and
    /// the tasks worth keeping. The plan's tasks and `phases` are empty then.
    pub summary: Option<summary::JobSummary>,
    /// Its tasks by placement, derived from the plan (not stored: rebuilt when read).
    #[serde(skip)]
    pub placements: crate::core::placement_index::PlacementIndex,
}

impl Job {
    /// Creates a queued job whose first phase is runnable.
    pub fn new(id: JobId, spec: JobSpec, created_at_ms: u64) -> Self {
        let phases = spec
            .phases
            .iter()
            .map(|phase| phase.tasks.iter().map(|_| TaskRun::new(TaskStatus::Blocked)).collect())
            .collect();
        let cleanup = spec.cleanup.iter().map(|_| TaskRun::new(TaskStatus::Blocked)).collect();
        let mut job = Job {
            id,
            spec,
            created_at_ms,
            status: JobStatus::Queued { phase: 0 },
            phases,
            cleanup,
            summary: None,
            placements: crate::core::placement_index::PlacementIndex::default(),
        };
        job.placements = crate::core::placement_index::PlacementIndex::of(&job.spec);
        let mut effects = Vec::new();
        job.start_phase_or_cleanup(created_at_ms, &mut effects);
        job
    }

    /// The coarse state clients see.
    pub fn state(&self) -> JobState {
        self.status.state()
    }

    /// Index of the phase whose tasks may run (the number of phases once none does).
    pub fn current_phase(&self) -> usize {
        match self.status {
            JobStatus::Queued { phase } | JobStatus::Running { phase } => phase,
            JobStatus::CleaningUp { .. } | JobStatus::Ended { .. } => self.phases.len(),
        }
    }

    /// Why it failed or was cancelled.
    pub fn error(&self) -> Option<&str> {
        self.status.outcome().and_then(Outcome::error)
    }

    /// When it ended.
    pub fn finished_at_ms(&self) -> Option<u64> {
        match self.status {
            JobStatus::Ended { at_ms, .. } => Some(at_ms),
            _ => None,
        }
    }

    /// Moves the runnable phase to `phase` (cleanup once past the last): a job still queued
    /// stays queued.
    fn set_phase(&mut self, phase: usize) {
        self.status = match (&self.status, phase < self.phases.len()) {
            (JobStatus::Queued { .. }, true) => JobStatus::Queued { phase },
            (_, true) => JobStatus::Running { phase },
            (_, false) => JobStatus::CleaningUp { outcome: Outcome::Succeeded },
        };
    }

    /// The task ids of every task of the job, phases first.
    pub fn slots(&self) -> impl Iterator<Item = TaskSlot> + '_ {
        let phase_slots = self.phases.iter().enumerate().flat_map(|(phase, tasks)| {
            (0..tasks.len())
                .map(move |index| TaskSlot::Phase { phase: phase as u32, index: index as u32 })
        });
        let cleanup_slots =
            (0..self.cleanup.len()).map(|index| TaskSlot::Cleanup { index: index as u32 });
        phase_slots.chain(cleanup_slots)
    }

    /// The live state of a task.
    pub fn run(&self, slot: TaskSlot) -> Option<&TaskRun> {
        match slot {
            TaskSlot::Phase { phase, index } => {
                self.phases.get(phase as usize)?.get(index as usize)
            }
            TaskSlot::Cleanup { index } => self.cleanup.get(index as usize),
        }
    }

    fn run_mut(&mut self, slot: TaskSlot) -> Option<&mut TaskRun> {
        match slot {
            TaskSlot::Phase { phase, index } => {
                self.phases.get_mut(phase as usize)?.get_mut(index as usize)
            }
            TaskSlot::Cleanup { index } => self.cleanup.get_mut(index as usize),
        }
    }

    /// The plan of a task.
    pub fn planned(&self, slot: TaskSlot) -> Option<&PlannedTask> {
        match slot {
            TaskSlot::Phase { phase, index } => {
                self.spec.phases.get(phase as usize)?.tasks.get(index as usize)
            }
            TaskSlot::Cleanup { index } => self.spec.cleanup.get(index as usize),
        }
    }

    /// The spec a worker receives for a task.
    ///
    /// A commit learns here which attempt of each copy task was accepted, so it reads exactly
    /// those results and never a fenced attempt's.
    pub fn task_spec(&self, slot: TaskSlot) -> Option<TaskSpec> {
        let planned = self.planned(slot)?;
        let mut kind = planned.kind.clone();
        if let TaskKind::CommitBackup { parts, .. } | TaskKind::CheckNodeConsistency { parts, .. } =
            &mut kind
        {
            for part in parts.iter_mut() {
                part.attempt = self.run(part.task_id.slot).map_or(0, |run| run.attempt);
            }
        }
        Some(TaskSpec {
            task_id: TaskId { job_id: self.id, slot },
            source: self.spec.source.clone(),
            repository: self.spec.repository.clone(),
            parent: self.spec.parent,
            kind,
        })
    }

    /// What the job is doing, for people watching it: its current phase, `cleanup`,
    /// `releasing` while a QuestDB checkpoint release has not succeeded yet, and once it ended
    /// its final state (`succeeded`, `failed`, `cancelled`).
    pub fn stage(&self) -> String {
        match self.state() {
            JobState::Succeeded => return "succeeded".to_string(),
            JobState::Failed => return "failed".to_string(),
            JobState::Cancelled => return "cancelled".to_string(),
            JobState::Queued | JobState::Running | JobState::Failing => {}
        }
        if let Some(phase) = self.spec.phases.get(self.current_phase()) {
            return phase.name.clone();
        }
        let releasing = self.spec.cleanup.iter().zip(&self.cleanup).any(|(task, run)| {
            matches!(task.kind, TaskKind::QuestDbRelease { .. })
                && run.status != TaskStatus::Succeeded
        });
        if releasing { "releasing" } else { "cleanup" }.to_string()
    }

    /// Whether the task at `slot` may be leased now (pending, its dependencies met).
    pub fn is_runnable(&self, slot: TaskSlot) -> bool {
        self.run(slot).is_some_and(|run| run.status == TaskStatus::Pending)
            && self.dependencies_allow_start(slot)
    }

    /// Tasks that may be leased now, in plan order.
    pub fn runnable_slots(&self) -> Vec<TaskSlot> {
        self.slots()
            .filter(|slot| {
                self.run(*slot).is_some_and(|run| run.status == TaskStatus::Pending)
                    && self.dependencies_allow_start(*slot)
            })
            .collect()
    }

    /// Whether the tasks `slot` depends on allow it to start: in a phase, every dependency
    /// succeeded; among cleanup tasks, every dependency ended (cleanup always goes on).
    pub fn dependencies_allow_start(&self, slot: TaskSlot) -> bool {
        let Some(planned) = self.planned(slot) else { return true };
        planned.depends_on.iter().all(|index| match slot {
            TaskSlot::Phase { phase, .. } => {
                let dependency = TaskSlot::Phase { phase, index: *index };
                self.run(dependency).is_some_and(|run| run.status == TaskStatus::Succeeded)
            }
            TaskSlot::Cleanup { .. } => {
                self.run(TaskSlot::Cleanup { index: *index }).is_some_and(|run| {
                    matches!(run.status, TaskStatus::Succeeded | TaskStatus::Failed)
                })
            }
        })
    }

    /// Moves the job by one event and returns what the rest of the state must do.
    ///
    /// # Errors
    /// Returns [`JobEventRejected`] when the event does not apply (unknown task, stale attempt,
    /// wrong status); the job is unchanged then.
    pub fn apply(&mut self, event: JobEvent) -> Result<Vec<JobEffect>, JobEventRejected> {
        let mut effects = Vec::new();
        match event {
            JobEvent::TaskLeased { slot, attempt, worker_id, at_ms } => {
                let run = self.run_mut(slot).ok_or(JobEventRejected::UnknownTask(slot))?;
                // A lease must be exactly the next attempt: a second lease of the same attempt
                // (two workers racing) is rejected.
                if attempt != run.attempt + 1 {
                    return Err(JobEventRejected::StaleAttempt { attempt, current: run.attempt });
                }
                require_status(run, TaskStatus::Pending, "pending")?;
                run.status = TaskStatus::Running;
                run.attempt = attempt;
                run.worker_id = Some(worker_id);
                run.started_at_ms = Some(at_ms);
                if let JobStatus::Queued { phase } = self.status {
                    self.status = JobStatus::Running { phase };
                }
            }
            JobEvent::TaskSucceeded { slot, attempt, report, at_ms } => {
                let run = self.current_run_mut(slot, attempt)?;
                require_status(run, TaskStatus::Running, "running")?;
                if run.abandoned {
                    return Ok(self.end_abandoned(slot, at_ms));
                }
                run.status = TaskStatus::Succeeded;
                run.finished_at_ms = Some(at_ms);
                run.error = None;
                let worker_id = run.worker_id.clone().unwrap_or_default();
                match self.planned(slot).map(|task| &task.kind) {
                    Some(TaskKind::CommitBackup { .. }) => {
                        effects.push(JobEffect::BackupCommitted { report: report.clone() })
                    }
                    Some(TaskKind::ForgetBackups { dry_run: false, .. }) => effects
                        .push(JobEffect::BackupsForgotten { backups: report.forgotten.clone() }),
                    Some(TaskKind::DrillBackup { backup_id, .. }) => {
                        effects.push(JobEffect::DrillFinished {
                            backup_id: *backup_id,
                            worker_id,
                            report: report.drill.as_deref().cloned().unwrap_or_default(),
                            at_ms,
                        })
                    }
                    _ => {}
                }
                let problems = report.problems.len();
                let first_problem = report.problems.first().cloned().unwrap_or_default();
                if let Some(run) = self.run_mut(slot) {
                    run.report = Some(report);
                }
                if problems > 0 {
                    let label =
                        self.planned(slot).map(|task| task.label.clone()).unwrap_or_default();
                    let error =
                        format!("`{label}` found {problems} problem(s), first: {first_problem}");
                    self.fail(error, slot, at_ms, &mut effects);
                } else {
                    self.advance(at_ms, &mut effects);
                }
            }
            JobEvent::TaskFailed { slot, attempt, error, retryable, at_ms } => {
                let run = self.current_run_mut(slot, attempt)?;
                require_status(run, TaskStatus::Running, "running")?;
                if run.abandoned {
                    return Ok(self.end_abandoned(slot, at_ms));
                }
                run.error = Some(error.clone());
                let unbounded = self.planned(slot).is_some_and(|task| task.retry_until_success);
                let run = self.run_mut(slot).ok_or(JobEventRejected::UnknownTask(slot))?;
                if retryable && (unbounded || run.num_failures + 1 < MAX_RETRYABLE_FAILURES) {
                    run.num_failures += 1;
                    run.status = TaskStatus::Pending;
                } else {
                    run.num_failures += 1;
                    run.status = TaskStatus::Failed;
                    run.finished_at_ms = Some(at_ms);
                    let attempts = run.num_failures;
                    let label =
                        self.planned(slot).map(|task| task.label.clone()).unwrap_or_default();
                    // Say whether running it again could help, so an operator knows whether to
                    // resubmit as is or fix something first.
                    let why = if retryable {
                        format!("after {attempts} attempts")
                    } else {
                        "(a retry cannot help)".to_string()
                    };
                    let message = format!("task `{label}` failed {why}: {error}");
                    if let Some(TaskKind::DrillBackup { backup_id, .. }) =
                        self.planned(slot).map(|task| &task.kind)
                    {
                        // A drill that could not even run is a failed drill: record it.
                        let worker_id = self
                            .run(slot)
                            .and_then(|run| run.worker_id.clone())
                            .unwrap_or_default();
                        effects.push(JobEffect::DrillFinished {
                            backup_id: *backup_id,
                            worker_id,
                            report: DrillReport {
                                failure: Some(error.clone()),
                                ..DrillReport::default()
                            },
                            at_ms,
                        });
                    }
                    self.fail(message, slot, at_ms, &mut effects);
                }
            }
            JobEvent::LeaseLost { slot, attempt, at_ms } => {
                let run = self.current_run_mut(slot, attempt)?;
                require_status(run, TaskStatus::Running, "running")?;
                if run.abandoned {
                    return Ok(self.end_abandoned(slot, at_ms));
                }
                run.status = TaskStatus::Pending;
            }
        }
        Ok(effects)
    }

    fn current_run_mut(
        &mut self,
        slot: TaskSlot,
        attempt: u32,
    ) -> Result<&mut TaskRun, JobEventRejected> {
        let run = self.run_mut(slot).ok_or(JobEventRejected::UnknownTask(slot))?;
        if run.attempt != attempt {
            return Err(JobEventRejected::StaleAttempt { attempt, current: run.attempt });
        }
        Ok(run)
    }

    /// Records the failure, skips every task that has not succeeded, and starts cleanup.
    fn fail(
        &mut self,
        error: String,
        failed_slot: TaskSlot,
        at_ms: u64,
        effects: &mut Vec<JobEffect>,
    ) {
        self.status = JobStatus::CleaningUp {
            outcome: match self.status.outcome() {
                // The first failure is the one reported; a cancellation stays a cancellation.
                Some(decided @ (Outcome::Failed { .. } | Outcome::Cancelled { .. })) => {
                    decided.clone()
                }
                Some(Outcome::Succeeded) | None => Outcome::Failed { error },
            },
        };
        if matches!(failed_slot, TaskSlot::Cleanup { .. }) {
            // A failed cleanup task does not stop the other cleanup tasks.
            self.finish_if_cleanup_done(at_ms, effects);
            return;
        }
        for run in self.phases.iter_mut().flatten() {
            match run.status {
                TaskStatus::Blocked | TaskStatus::Pending => run.status = TaskStatus::Skipped,
                // Its worker is told to stop (progress answers `abandon`); cleanup waits until it
                // has, so staging is not removed under a worker still writing to it.
                TaskStatus::Running => run.abandoned = true,
                _ => {}
            }
        }
        self.start_cleanup_when_idle(at_ms, effects);
    }

    /// Starts cleanup once no abandoned task is still running on a worker.
    fn start_cleanup_when_idle(&mut self, at_ms: u64, effects: &mut Vec<JobEffect>) {
        if self.phases.iter().flatten().all(|run| run.status != TaskStatus::Running) {
            self.start_phase_or_cleanup(at_ms, effects);
        }
    }

    /// An abandoned task's attempt ended (result, failure or lost lease): it counts as skipped.
    fn end_abandoned(&mut self, slot: TaskSlot, at_ms: u64) -> Vec<JobEffect> {
        if let Some(run) = self.run_mut(slot) {
            run.status = TaskStatus::Skipped;
            run.finished_at_ms = Some(at_ms);
        }
        let mut effects = Vec::new();
        self.start_cleanup_when_idle(at_ms, &mut effects);
        effects
    }

    /// Cancels the job: every task not yet done is skipped (a running one's worker is told to
    /// abandon it) and the cleanup tasks run, so a QuestDB checkpoint is released and staging
    /// removed. Refused once a commit is under way or done, so a cancelled job never leaves a
    /// backup behind.
    ///
    /// # Errors
    /// [`JobEventRejected::NotCancellable`] for an ended or committing job.
    pub fn cancel(&mut self, at_ms: u64) -> Result<Vec<JobEffect>, JobEventRejected> {
        let error =
            self.error().map_or_else(|| "cancelled by an operator".to_string(), str::to_string);
        self.stop(Outcome::Cancelled { error }, at_ms)
    }

    /// Fails the job for a reason outside it (the backup it was to read was forgotten by a
    /// prune before it ran): like a cancel (its remaining tasks are skipped, its cleanup runs),
    /// but it ends failed, saying `reason`.
    ///
    /// # Errors
    /// [`JobEventRejected::NotCancellable`] for an ended or committing job.
    pub fn abandon(
        &mut self,
        reason: String,
        at_ms: u64,
    ) -> Result<Vec<JobEffect>, JobEventRejected> {
        self.stop(Outcome::Failed { error: reason }, at_ms)
    }

    /// Ends the job with `outcome` after its cleanup, unless it has ended or is committing.
    fn stop(&mut self, outcome: Outcome, at_ms: u64) -> Result<Vec<JobEffect>, JobEventRejected> {
        if self.state().is_terminal() {
            return Err(JobEventRejected::NotCancellable("it has already ended".to_string()));
        }
        let committing = self.slots().any(|slot| {
            let is_commit = self
                .planned(slot)
                .is_some_and(|task| matches!(task.kind, TaskKind::CommitBackup { .. }));
            is_commit
                && self.run(slot).is_some_and(|run| {
                    matches!(run.status, TaskStatus::Running | TaskStatus::Succeeded)
                })
        });
        if committing {
            return Err(JobEventRejected::NotCancellable(
                "its backup is being committed".to_string(),
            ));
        }
        let mut effects = Vec::new();
        let in_phases = self.current_phase() < self.phases.len();
        // Already in cleanup: it finishes, only the outcome changes.
        self.status = JobStatus::CleaningUp { outcome };
        if in_phases {
            let first_slot = TaskSlot::Phase { phase: 0, index: 0 };
            self.fail(String::new(), first_slot, at_ms, &mut effects);
        }
        Ok(effects)
    }

    /// Moves past every completed phase; starts cleanup after the last one. A commit phase
    /// starts only if the commit gate lets it ([`commit_gate`]).
    fn advance(&mut self, at_ms: u64, effects: &mut Vec<JobEffect>) {
        while matches!(self.status, JobStatus::Queued { .. } | JobStatus::Running { .. })
            && self.phases[self.current_phase()]
                .iter()
                .all(|run| run.status == TaskStatus::Succeeded)
        {
            self.set_phase(self.current_phase() + 1);
            if let Some(commit_slot) = self.commit_slot_of_current_phase() {
                if let Some(refusal) = commit_gate::commit_refusal(self) {
                    self.fail(refusal, commit_slot, at_ms, effects);
                    return;
                }
            }
            self.start_phase_or_cleanup(at_ms, effects);
        }
        if self.current_phase() >= self.phases.len() {
            self.finish_if_cleanup_done(at_ms, effects);
        }
    }

    /// The commit task of the phase about to start, if it has one.
    fn commit_slot_of_current_phase(&self) -> Option<TaskSlot> {
        let current = self.current_phase();
        let phase = self.spec.phases.get(current)?;
        let index = phase
            .tasks
            .iter()
            .position(|task| matches!(task.kind, TaskKind::CommitBackup { .. }))?;
        Some(TaskSlot::Phase { phase: current as u32, index: index as u32 })
    }

    fn start_phase_or_cleanup(&mut self, at_ms: u64, effects: &mut Vec<JobEffect>) {
        let current = self.current_phase();
        let runs = match self.phases.get_mut(current) {
            Some(runs) => runs,
            None => &mut self.cleanup,
        };
        for run in runs.iter_mut().filter(|run| run.status == TaskStatus::Blocked) {
            run.status = TaskStatus::Pending;
        }
        if current < self.phases.len() && self.phases[current].is_empty() {
            self.advance(at_ms, effects);
        } else if current >= self.phases.len() {
            if let JobStatus::Queued { .. } | JobStatus::Running { .. } = self.status {
                self.status = JobStatus::CleaningUp { outcome: Outcome::Succeeded };
            }
            self.finish_if_cleanup_done(at_ms, effects);
        }
    }

    fn finish_if_cleanup_done(&mut self, at_ms: u64, effects: &mut Vec<JobEffect>) {
        let cleanup_done = self
            .cleanup
            .iter()
            .all(|run| matches!(run.status, TaskStatus::Succeeded | TaskStatus::Failed));
        let JobStatus::CleaningUp { outcome } = &self.status else { return };
        if !cleanup_done {
            return;
        }
        self.status = JobStatus::Ended { outcome: outcome.clone(), at_ms };
        effects.push(JobEffect::Finished { state: self.state() });
    }
}

fn require_status(
    run: &TaskRun,
    status: TaskStatus,
    expected: &'static str,
) -> Result<(), JobEventRejected> {
    if run.status == status {
        Ok(())
    } else {
        Err(JobEventRejected::WrongStatus { status: run.status, expected: expected.to_string() })
    }
}

#[cfg(test)]
#[path = "job_test.rs"]
mod job_test;
