//! When the leader takes a lease back. Pure: the facts only the leader knows (how long each
//! worker has been silent, which attempts reported progress, how long it has led) come in as
//! arguments, the leases to take back come out; `leader::lease` proposes them.
//!
//! A running task's lease is lost when its worker has been silent past the lease timeout, or
//! when its worker is alive but never reported a single progress message for the attempt
//! within the lease timeout: workers report from the moment they start a task, so silence about
//! it means the assignment never reached the worker (a pull whose answer was lost to a timeout
//! or a broken connection) and would otherwise stay leased forever. A new leader judges
//! acknowledgements only after leading for a full lease timeout: progress lives in the leader's
//! memory, so workers get that long to report to it.

use std::time::Duration;

use bk_proto::ids::{TaskId, WorkerId};

use super::job::JobEvent;
use super::job::TaskStatus;
use super::state::{ClusterState, Command};

/// Why a lease is taken back.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Expiry {
    /// The worker has been silent past the lease timeout.
    SilentWorker,
    /// The worker is alive but never reported on this attempt.
    NeverAcknowledged,
}

impl Expiry {
    /// Every reason, for metrics that show zeros too.
    pub const ALL: [Expiry; 2] = [Expiry::SilentWorker, Expiry::NeverAcknowledged];

    /// The `reason` label of `bk_leases_requeued_total`.
    pub fn label(self) -> &'static str {
        match self {
            Expiry::SilentWorker => "silent_worker",
            Expiry::NeverAcknowledged => "never_acknowledged",
        }
    }
}

/// What the leader knows that the replicated state does not.
pub struct LeaderFacts<'a> {
    /// A worker silent for longer loses its leases.
    pub lease_timeout: Duration,
    /// How long this replica has led.
    pub leader_for: Duration,
    /// How long ago the leader heard from a worker (by id).
    pub silence: &'a dyn Fn(&str) -> Duration,
    /// Whether an attempt of a task has reported progress to this leader.
    pub acknowledged: &'a dyn Fn(&TaskId, u32) -> bool,
}

/// A lease to take back.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ExpiredLease {
    /// The task.
    pub task_id: TaskId,
    /// Its attempt that loses the lease (fences the old worker's late report).
    pub attempt: u32,
    /// The worker that held it.
    pub worker_id: WorkerId,
    /// Why.
    pub expiry: Expiry,
}

impl ExpiredLease {
    /// The command that re-queues the task.
    pub fn command(&self, at_ms: u64) -> Command {
        let event = JobEvent::LeaseLost { slot: self.task_id.slot, attempt: self.attempt, at_ms };
        Command::Task { task_id: self.task_id, event }
    }
}

/// Every lease of a running task that must be taken back at `now_ms`.
pub fn expired(state: &ClusterState, now_ms: u64, facts: &LeaderFacts<'_>) -> Vec<ExpiredLease> {
    let judge_acknowledgements = facts.leader_for > facts.lease_timeout;
    let mut expired = Vec::new();
    for job in state.jobs.values().filter(|job| !job.state().is_terminal()) {
        for slot in job.slots() {
            let Some(run) = job.run(slot) else { continue };
            let (TaskStatus::Running, Some(worker_id)) = (run.status, run.worker_id.as_ref())
            else {
                continue;
            };
            let task_id = TaskId { job_id: job.id, slot };
            let leased_for_ms = now_ms.saturating_sub(run.started_at_ms.unwrap_or(now_ms));
            let expiry = if (facts.silence)(worker_id) > facts.lease_timeout {
                Some(Expiry::SilentWorker)
            } else if judge_acknowledgements
                && u128::from(leased_for_ms) > facts.lease_timeout.as_millis()
                && !(facts.acknowledged)(&task_id, run.attempt)
            {
                Some(Expiry::NeverAcknowledged)
            } else {
                None
            };
            if let Some(expiry) = expiry {
                let worker_id = worker_id.clone();
                expired.push(ExpiredLease { task_id, attempt: run.attempt, worker_id, expiry });
            }
        }
    }
    expired
}

#[cfg(test)]
mod tests {
    use bk_proto::ids::{JobId, TaskSlot};
    use bk_proto::model::RepositoryRef;
    use ulid::Ulid;

    use super::*;
    use crate::core::plan::prune::{plan_prune, PruneRequest, RetentionPolicy};
    use crate::core::Job;

    const TIMEOUT: Duration = Duration::from_secs(30);
    const SLOT: TaskSlot = TaskSlot::Phase { phase: 0, index: 0 };

    /// A state with one job whose first task was leased to `w` at 1,000 ms.
    fn state() -> ClusterState {
        let request = PruneRequest {
            source: "s".into(),
            policy: RetentionPolicy { keep_last: 1, ..RetentionPolicy::default() },
            dry_run: false,
            max_unused_percent: 10,
        };
        let repository = RepositoryRef::new("r", "file:///r", 1 << 20);
        let spec = plan_prune(&request, &repository, &[]).unwrap();
        let mut job = Job::new(JobId(Ulid::from_parts(1, 2)), spec, 0);
        let event =
            JobEvent::TaskLeased { slot: SLOT, attempt: 1, worker_id: "w".into(), at_ms: 1_000 };
        job.apply(event).unwrap();
        let mut state = ClusterState::default();
        state.jobs.insert(job.id, job);
        state
    }

    #[test]
    fn test_which_leases_are_taken_back() {
        let state = state();
        let at = |seconds: u64| 1_000 + seconds * 1_000;
        let secs = Duration::from_secs;
        // (case, now, worker silent for, leader for, acknowledged, expected)
        type Case = (&'static str, u64, Duration, Duration, bool, Option<Expiry>);
        let cases: Vec<Case> = vec![
            ("alive and reporting", at(60), secs(1), secs(600), true, None),
            (
                "silent past the timeout",
                at(60),
                secs(31),
                secs(600),
                true,
                Some(Expiry::SilentWorker),
            ),
            ("silent, not yet past it", at(60), secs(29), secs(600), true, None),
            (
                "alive, never reported",
                at(31),
                secs(1),
                secs(600),
                false,
                Some(Expiry::NeverAcknowledged),
            ),
            ("alive, leased too recently to judge", at(29), secs(1), secs(600), false, None),
            (
                "a new leader gives workers a lease timeout to report",
                at(60),
                secs(1),
                secs(10),
                false,
                None,
            ),
        ];
        for (case, now, silence, leader_for, acknowledged, expected) in cases {
            let silence = move |_: &str| silence;
            let acknowledged = move |_: &TaskId, _: u32| acknowledged;
            let facts = LeaderFacts {
                lease_timeout: TIMEOUT,
                leader_for,
                silence: &silence,
                acknowledged: &acknowledged,
            };
            let got: Vec<Expiry> =
                expired(&state, now, &facts).iter().map(|lease| lease.expiry).collect();
            assert_eq!(got, expected.into_iter().collect::<Vec<_>>(), "{case}");
        }
    }

    #[test]
    fn test_the_command_fences_the_lost_attempt() {
        let silence = |_: &str| Duration::from_secs(60);
        let acknowledged = |_: &TaskId, _: u32| true;
        let facts = LeaderFacts {
            lease_timeout: TIMEOUT,
            leader_for: Duration::from_secs(600),
            silence: &silence,
            acknowledged: &acknowledged,
        };
        let lease = expired(&state(), 100_000, &facts).remove(0);
        assert_eq!((lease.attempt, lease.worker_id.as_str()), (1, "w"));
        let Command::Task { event: JobEvent::LeaseLost { slot, attempt, at_ms }, .. } =
            lease.command(7)
        else {
            panic!("not a LeaseLost")
        };
        assert_eq!((slot, attempt, at_ms), (SLOT, 1, 7));
    }
}
