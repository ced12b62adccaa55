//! Where a job stands, as one value, and how records written before it existed are read.
//!
//! ```text
//!  Queued{phase} ──first lease──▶ Running{phase} ──phase done──▶ Running{phase + 1} …
//!       │                            │                              │ last phase done
//!       │  task failed for good,     │                              ▼
//!       └── problems, or cancel ─────┴──────────────▶ CleaningUp{Succeeded | Failed | Cancelled}
//!                                                                   │ every cleanup task ended
//!                                                                   ▼
//!                                                     Ended{outcome, at_ms}
//! ```
//! Cleanup (release a QuestDB checkpoint, remove staging) runs whatever the outcome; a cleanup
//! task that fails turns a `Succeeded` outcome into `Failed`. Per task, `TaskRun::abandoned`
//! marks an attempt still running on a worker after its job moved to cleanup.

use serde::{Deserialize, Serialize};

use super::run::JobState;

/// How a job ends (or is ending, while its cleanup runs).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "outcome", rename_all = "snake_case")]
pub enum Outcome {
    /// Every phase succeeded (and, once ended, every cleanup task).
    Succeeded,
    /// A task failed for good, found problems, or a gate refused the commit.
    Failed {
        /// The first failure.
        error: String,
    },
    /// An operator cancelled it.
    Cancelled {
        /// "cancelled by an operator", or the failure that came first.
        error: String,
    },
}

impl Outcome {
    /// Its error, if it is not a success.
    pub fn error(&self) -> Option<&str> {
        match self {
            Outcome::Succeeded => None,
            Outcome::Failed { error } | Outcome::Cancelled { error } => Some(error),
        }
    }
}

/// Where a job stands.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "status", rename_all = "snake_case")]
pub enum JobStatus {
    /// No task leased yet; `phase` is the phase whose tasks may run.
    Queued {
        /// Index of the runnable phase.
        phase: usize,
    },
    /// Tasks of `phase` may run (earlier phases all succeeded).
    Running {
        /// Index of the runnable phase.
        phase: usize,
    },
    /// No phase runs any more: the cleanup tasks run (once abandoned attempts ended).
    CleaningUp {
        /// How the job will end.
        outcome: Outcome,
    },
    /// Every cleanup task ended.
    Ended {
        /// How it ended.
        outcome: Outcome,
        /// When.
        at_ms: u64,
    },
}

impl JobStatus {
    /// The coarse state clients see (`bk.v1.JobState`).
    pub fn state(&self) -> JobState {
        match self {
            JobStatus::Queued { .. } => JobState::Queued,
            JobStatus::Running { .. } | JobStatus::CleaningUp { outcome: Outcome::Succeeded } => {
                JobState::Running
            }
            JobStatus::CleaningUp { .. } => JobState::Failing,
            JobStatus::Ended { outcome: Outcome::Succeeded, .. } => JobState::Succeeded,
            JobStatus::Ended { outcome: Outcome::Failed { .. }, .. } => JobState::Failed,
            JobStatus::Ended { outcome: Outcome::Cancelled { .. }, .. } => JobState::Cancelled,
        }
    }

    /// The outcome, once decided.
    pub fn outcome(&self) -> Option<&Outcome> {
        match self {
            JobStatus::Queued { .. } | JobStatus::Running { .. } => None,
            JobStatus::CleaningUp { outcome } | JobStatus::Ended { outcome, .. } => Some(outcome),
        }
    }
}

#[cfg(test)]
mod tests {

    use serde_json::{json, Value};
    use ulid::Ulid;

    use super::*;
    use crate::core::job::Job;
    use bk_proto::ids::JobId;

    /// A two-phase job, as JSON in the shape written before `status` existed.
    fn old_shape(state: &str, current_phase: usize, error: Option<&str>, cancelled: bool) -> Value {
        let repository = crate::core::Repository::new("r", "file:///r", 1 << 20);
        let mut spec = crate::core::plan::keys::plan_repository_key(
            &repository,
            bk_proto::model::KeyAction::List,
        );
        spec.phases.push(spec.phases[0].clone());
        let job = Job::new(JobId(Ulid::from_parts(1, 1)), spec, 1);
        let mut value = serde_json::to_value(&job).unwrap();
        let object = value.as_object_mut().unwrap();
        object.remove("status");
        object.insert("state".into(), json!(state));
        object.insert("current_phase".into(), json!(current_phase));
        object.insert("error".into(), json!(error));
        object.insert("cancelled".into(), json!(cancelled));
        object.insert("finished_at_ms".into(), json!(9));
        value
    }

    #[test]
    fn test_jobs_replicated_before_the_status_enum_read_as_the_same_status() {
        let failed = || Outcome::Failed { error: "task `x` failed".to_string() };
        let cases = [
            (old_shape("Queued", 0, None, false), JobStatus::Queued { phase: 0 }),
            (old_shape("Running", 1, None, false), JobStatus::Running { phase: 1 }),
            (
                old_shape("Running", 2, None, false),
                JobStatus::CleaningUp { outcome: Outcome::Succeeded },
            ),
            (
                old_shape("Failing", 2, Some("task `x` failed"), false),
                JobStatus::CleaningUp { outcome: failed() },
            ),
            (
                old_shape("Succeeded", 2, None, false),
                JobStatus::Ended { outcome: Outcome::Succeeded, at_ms: 9 },
            ),
            (
                old_shape("Failed", 2, Some("task `x` failed"), false),
                JobStatus::Ended { outcome: failed(), at_ms: 9 },
            ),
            (
                old_shape("Cancelled", 2, Some("cancelled by an operator"), true),
                JobStatus::Ended {
                    outcome: Outcome::Cancelled { error: "cancelled by an operator".to_string() },
                    at_ms: 9,
                },
            ),
        ];
        for (old, want) in cases {
            let job: Job = serde_json::from_value(old.clone()).unwrap();
            assert_eq!(job.status, want, "{old}");
            // Written back in the new shape, it reads the same.
            let again: Job = serde_json::from_value(serde_json::to_value(&job).unwrap()).unwrap();
            assert_eq!(again, job);
        }
    }
}
