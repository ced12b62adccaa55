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

use bk_proto::ids::{JobId, TaskId, TaskSlot, WorkerId};
use bk_proto::model::{DrillReport, TaskKind, TaskReport, TaskSpec};
use serde::{Deserialize, Serialize};

use crate::core::placement_index::PlacementIndex;

pub mod commit_gate;
mod compact;
pub mod event;
pub mod history;
pub mod run;
pub mod spec;
pub mod status;
pub mod summary;

pub use event::{JobEffect, JobEvent, JobEventRejected};
pub use run::{JobState, TaskRun, TaskStatus};
pub use spec::{JobKind, JobSpec, Placement, PlannedPhase, PlannedTask};
pub use status::{JobStatus, Outcome};

/// How many times a task may fail with a retryable error before the job fails.
pub const MAX_RETRYABLE_FAILURES: u32 = 3;

/// A job and the live state of its tasks.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(from = "StoredJob")]
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
    pub placements: PlacementIndex,
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

    /// The reports of the job's succeeded tasks with their kinds, in plan order (what the
    /// commit gate judges).
    fn succeeded_reports(&self) -> Vec<(&TaskKind, &TaskReport)> {
        self.slots()
            .filter_map(|slot| {
                let report = self.run(slot)?.report.as_ref()?;
                Some((&self.planned(slot)?.kind, report))
            })
            .collect()
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
            source: self.spec.source.to_string(),
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
        match event {
            JobEvent::TaskLeased { slot, attempt, worker_id, at_ms } => {
                self.leased(slot, attempt, worker_id, at_ms)?;
                Ok(Vec::new())
            }
            JobEvent::TaskSucceeded { slot, attempt, report, at_ms } => {
                self.succeeded(slot, attempt, report, at_ms)
            }
            JobEvent::TaskFailed { slot, attempt, error, retryable, at_ms } => {
                self.failed(slot, attempt, error, retryable, at_ms)
            }
            JobEvent::LeaseLost { slot, attempt, at_ms } => {
                let run = self.current_run_mut(slot, attempt)?;
                require_status(run, TaskStatus::Running, "running")?;
                if run.abandoned {
                    return Ok(self.end_abandoned(slot, at_ms));
                }
                run.status = TaskStatus::Pending;
                Ok(Vec::new())
            }
        }
    }

    fn leased(
        &mut self,
        slot: TaskSlot,
        attempt: u32,
        worker_id: WorkerId,
        at_ms: u64,
    ) -> Result<(), JobEventRejected> {
        let run = self.run_mut(slot).ok_or(JobEventRejected::UnknownTask(slot))?;
        // A lease must be exactly the next attempt: a second lease of the same attempt (two
        // workers racing) is rejected.
        if attempt != run.attempt + 1 {
            return Err(JobEventRejected::StaleAttempt { attempt, current: run.attempt });
        }
        require_status(run, TaskStatus::Pending, "pending")?;
        run.status = TaskStatus::Running;
        run.attempt = attempt;
        run.worker_id = Some(worker_id);
        run.started_at_ms = Some(at_ms);
        run.retry_at_ms = None;
        if let JobStatus::Queued { phase } = self.status {
            self.status = JobStatus::Running { phase };
        }
        Ok(())
    }

    fn succeeded(
        &mut self,
        slot: TaskSlot,
        attempt: u32,
        report: TaskReport,
        at_ms: u64,
    ) -> Result<Vec<JobEffect>, JobEventRejected> {
        let mut effects = Vec::new();
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
            Some(TaskKind::ForgetBackups { dry_run: false, .. }) => {
                effects.push(JobEffect::BackupsForgotten { backups: report.forgotten.clone() })
            }
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
            let label = self.planned(slot).map(|task| task.label.clone()).unwrap_or_default();
            let error = format!("`{label}` found {problems} problem(s), first: {first_problem}");
            self.fail(error, slot, at_ms, &mut effects);
        } else {
            self.advance(at_ms, &mut effects);
        }
        Ok(effects)
    }

    fn failed(
        &mut self,
        slot: TaskSlot,
        attempt: u32,
        error: String,
        retryable: bool,
        at_ms: u64,
    ) -> Result<Vec<JobEffect>, JobEventRejected> {
        let run = self.current_run_mut(slot, attempt)?;
        require_status(run, TaskStatus::Running, "running")?;
        if run.abandoned {
            return Ok(self.end_abandoned(slot, at_ms));
        }
        run.error = Some(error.clone());
        let unbounded = self.planned(slot).is_some_and(|task| task.retry_until_success);
        let run = self.run_mut(slot).ok_or(JobEventRejected::UnknownTask(slot))?;
        run.num_failures += 1;
        if retryable && (unbounded || run.num_failures < MAX_RETRYABLE_FAILURES) {
            run.status = TaskStatus::Pending;
            run.retry_at_ms = Some(at_ms + run::retry_delay_ms(run.num_failures));
            return Ok(Vec::new());
        }
        run.status = TaskStatus::Failed;
        run.finished_at_ms = Some(at_ms);
        let attempts = run.num_failures;
        let label = self.planned(slot).map(|task| task.label.clone()).unwrap_or_default();
        // Say whether running it again could help, so an operator knows whether to resubmit as
        // is or fix something first.
        let why = if retryable {
            format!("after {attempts} attempts")
        } else {
            "(a retry cannot help)".to_string()
        };
        let message = format!("task `{label}` failed {why}: {error}");
        let mut effects = Vec::new();
        if let Some(TaskKind::DrillBackup { backup_id, .. }) =
            self.planned(slot).map(|task| &task.kind)
        {
            // A drill that could not even run is a failed drill: record it.
            let worker_id =
                self.run(slot).and_then(|run| run.worker_id.clone()).unwrap_or_default();
            effects.push(JobEffect::DrillFinished {
                backup_id: *backup_id,
                worker_id,
                report: DrillReport { failure: Some(error), ..DrillReport::default() },
                at_ms,
            });
        }
        self.fail(message, slot, at_ms, &mut effects);
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
                if let Some(refusal) =
                    commit_gate::commit_refusal(&self.succeeded_reports(), self.spec.allow_corrupt)
                {
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

/// A job as stored, in either shape: with `status` (now), or with the fields it replaced
/// (`state`, `current_phase`, `error`, `cancelled`, `finished_at_ms`), as snapshots and log
/// entries written before it hold them.
#[derive(Deserialize)]
struct StoredJob {
    id: JobId,
    spec: JobSpec,
    created_at_ms: u64,
    phases: Vec<Vec<TaskRun>>,
    cleanup: Vec<TaskRun>,
    #[serde(default)]
    status: Option<JobStatus>,
    #[serde(default)]
    state: Option<JobState>,
    #[serde(default)]
    current_phase: usize,
    #[serde(default)]
    error: Option<String>,
    #[serde(default)]
    cancelled: bool,
    #[serde(default)]
    finished_at_ms: Option<u64>,
    #[serde(default)]
    summary: Option<summary::JobSummary>,
}

impl From<StoredJob> for Job {
    fn from(stored: StoredJob) -> Self {
        let status = stored.status.unwrap_or_else(|| {
            let outcome = match (stored.cancelled, stored.error) {
                (true, error) => Outcome::Cancelled {
                    error: error.unwrap_or_else(|| "cancelled by an operator".to_string()),
                },
                (false, Some(error)) => Outcome::Failed { error },
                (false, None) => Outcome::Succeeded,
            };
            let phase = stored.current_phase;
            match stored.state.unwrap_or(JobState::Queued) {
                JobState::Queued => JobStatus::Queued { phase },
                JobState::Running if phase < stored.phases.len() => JobStatus::Running { phase },
                JobState::Running | JobState::Failing => JobStatus::CleaningUp { outcome },
                JobState::Succeeded | JobState::Failed | JobState::Cancelled => {
                    JobStatus::Ended { outcome, at_ms: stored.finished_at_ms.unwrap_or(0) }
                }
            }
        });
        let placements = PlacementIndex::of(&stored.spec);
        Job {
            id: stored.id,
            spec: stored.spec,
            created_at_ms: stored.created_at_ms,
            status,
            phases: stored.phases,
            cleanup: stored.cleanup,
            summary: stored.summary,
            placements,
        }
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
