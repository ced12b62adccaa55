//! Where a job and each of its tasks stand: the live state the events change.

use bk_proto::ids::WorkerId;
use bk_proto::model::TaskReport;
use serde::{Deserialize, Serialize};

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
    pub worker_id: Option<WorkerId>,
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
    /// After a retryable failure, not leased again before this time (the back-off; `None`:
    /// at once).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retry_at_ms: Option<u64>,
}

/// How long a task waits after its `failures`-th retryable failure before it is leased again:
/// 2 s, doubling, at most a minute. A failure that lasts a few seconds (S3 throttling, a burst
/// of damaged uploads, a store restarting) then does not use up every attempt at once.
pub fn retry_delay_ms(failures: u32) -> u64 {
    const FIRST_MS: u64 = 2_000;
    const MAX_MS: u64 = 60_000;
    FIRST_MS.saturating_mul(1 << failures.saturating_sub(1).min(10)).min(MAX_MS)
}

fn is_zero(value: &u32) -> bool {
    *value == 0
}

pub(super) fn is_false(value: &bool) -> bool {
    !*value
}

impl TaskRun {
    /// Whether a back-off keeps it from being leased at `now_ms`.
    pub fn backing_off(&self, now_ms: u64) -> bool {
        self.retry_at_ms.is_some_and(|at| at > now_ms)
    }

    pub(super) fn new(status: TaskStatus) -> Self {
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
            retry_at_ms: None,
        }
    }
}
