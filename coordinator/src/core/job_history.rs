//! How long finished jobs stay in the replicated state. Pure.
//!
//! Every job, with its tasks and their reports, lives in every snapshot and is scanned when a
//! worker pulls: a coordinator running hourly backups would carry 8,760 jobs after a year.
//! Finished jobs are kept for a while (to inspect, to watch their outcome) and then forgotten;
//! their backups stay listed (those are [`super::BackupRecord`]s, not jobs).

use bk_proto::ids::JobId;
use serde::{Deserialize, Serialize};

use super::state::ClusterState;

/// Which finished jobs to keep: those finished within `keep_for_ms` of now, and at most
/// `keep_last` of them. Running and queued jobs are always kept.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct JobHistory {
    /// Keep finished jobs this long after they finished.
    pub keep_for_ms: u64,
    /// Keep at most this many finished jobs (the newest).
    pub keep_last: usize,
}

impl Default for JobHistory {
    /// A month (31 days), and up to 5,000 jobs: hourly backups each followed by a prune fill
    /// a month with about 1,500.
    fn default() -> Self {
        Self { keep_for_ms: 31 * 24 * 3_600_000, keep_last: 5_000 }
    }
}

/// The finished jobs `history` no longer keeps at `now_ms`, oldest first.
pub fn jobs_to_forget(state: &ClusterState, now_ms: u64, history: &JobHistory) -> Vec<JobId> {
    let mut finished: Vec<(u64, JobId)> = state
        .jobs
        .values()
        .filter(|job| job.state().is_terminal())
        .map(|job| (job.finished_at_ms().unwrap_or(job.created_at_ms), job.id))
        .collect();
    finished.sort_unstable();
    let over_count = finished.len().saturating_sub(history.keep_last);
    finished
        .iter()
        .enumerate()
        .filter(|(index, (finished_at, _))| {
            *index < over_count || now_ms.saturating_sub(*finished_at) > history.keep_for_ms
        })
        .map(|(_, (_, job_id))| *job_id)
        .collect()
}

#[cfg(test)]
mod tests {
    use bk_proto::ids::BackupId;
    use ulid::Ulid;

    use super::*;
    use crate::core::{Command, CommandResponse, Job};

    const HOUR: u64 = 3_600_000;

    /// Jobs 1..=n; job k was created at hour k and, unless `running` holds k, finished an
    /// hour later.
    fn state(n: u64, running: &[u64]) -> ClusterState {
        let mut state = ClusterState::default();
        for k in 1..=n {
            let id = JobId(Ulid::from_parts(k, 0));
            let spec = crate::core::plan_keys::plan_repository_key(
                &crate::core::Repository::new("r", "file:///r", 1 << 20),
                bk_proto::model::KeyAction::List,
                BackupId(id.0),
            );
            let mut job = Job::new(id, spec, k * HOUR);
            if !running.contains(&k) {
                let outcome = crate::core::job::Outcome::Succeeded;
                job.status = crate::core::JobStatus::Ended { outcome, at_ms: (k + 1) * HOUR };
            }
            state.jobs.insert(id, job);
        }
        state
    }

    fn ids(ks: &[u64]) -> Vec<JobId> {
        ks.iter().map(|k| JobId(Ulid::from_parts(*k, 0))).collect()
    }

    #[test]
    fn test_which_finished_jobs_are_forgotten() {
        let history = JobHistory { keep_for_ms: 10 * HOUR, keep_last: 5 };
        let cases: Vec<(&str, ClusterState, u64, Vec<JobId>)> = vec![
            ("nothing old, under the count", state(3, &[]), 5 * HOUR, vec![]),
            ("over the count: the oldest go", state(7, &[]), 9 * HOUR, ids(&[1, 2])),
            ("too old: finished more than 10 h ago", state(4, &[]), 14 * HOUR, ids(&[1, 2])),
            ("a running job is kept however old", state(4, &[1]), 100 * HOUR, ids(&[2, 3, 4])),
            ("running jobs do not count", state(7, &[6, 7]), 9 * HOUR, vec![]),
        ];
        for (case, state, now_ms, want) in cases {
            assert_eq!(jobs_to_forget(&state, now_ms, &history), want, "{case}");
        }
    }

    #[test]
    fn test_forgetting_jobs_keeps_running_ones_and_backups() {
        let mut state = state(3, &[3]);
        let backup =
            crate::core::BackupRecord::fixture(BackupId(Ulid::from_parts(1, 9)), "s", 1, None);
        state.backups.insert(backup.backup_id, backup);
        let response = state.apply(Command::ForgetJobs { job_ids: ids(&[1, 3]) });
        assert_eq!(response, CommandResponse::Applied);
        assert_eq!(
            state.jobs.keys().copied().collect::<Vec<_>>(),
            ids(&[2, 3]),
            "a running job was forgotten"
        );
        assert_eq!(state.backups.len(), 1, "forgetting a job forgot its backup");
    }
}
