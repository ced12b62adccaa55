//! What happens to a job (events, applied in log order), what applying one asks of the rest
//! of the state, and why an event may not apply.

use bk_proto::ids::{BackupId, TaskSlot, WorkerId};
use bk_proto::model::{DrillReport, TaskReport};
use serde::{Deserialize, Serialize};

use super::run::{JobState, TaskStatus};

/// Something that happened to a job. Time travels inside, so applying is deterministic.
// A success carries its report; events are built once and moved into the log, so boxing the
// large variant would only add an allocation.
#[allow(clippy::large_enum_variant)]
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum JobEvent {
    /// The leader handed attempt `attempt` of a task to a worker.
    TaskLeased { slot: TaskSlot, attempt: u32, worker_id: WorkerId, at_ms: u64 },
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
    DrillFinished { backup_id: BackupId, worker_id: WorkerId, report: DrillReport, at_ms: u64 },
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
