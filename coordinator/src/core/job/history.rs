//! How long finished jobs stay in the replicated state. Pure.
//!
//! Every job, with its tasks and their reports, lives in every snapshot and is scanned when a
//! worker pulls: a coordinator running hourly backups would carry 8,760 jobs after a year.
//! Finished jobs are kept for a while (to inspect, to watch their outcome) and then forgotten;
//! their backups stay listed (those are [`crate::core::BackupRecord`]s, not jobs).

use bk_proto::ids::JobId;
use serde::{Deserialize, Serialize};

use crate::core::state::ClusterState;

/// Which finished jobs to keep: those finished within `keep_for_ms` of now, and at most
/// `keep_last` of them. Running and queued jobs are always kept.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct JobHistory {
    /// Keep finished jobs this long after they finished.
    pub keep_for_ms: u64,
    /// Keep at most this many finished jobs (the newest).
    pub keep_last: usize,
    /// The newest this many finished jobs keep every task; older ones keep a summary per phase
    /// and the tasks that failed or warned ([`super::summary`]).
    #[serde(default = "default_keep_task_details")]
    pub keep_task_details: usize,
    /// ... and together at most this many tasks (the newest finished job always keeps its
    /// own): ten jobs of a ten-node cluster are 500 tasks, of a thousand-node one 50,000, whose
    /// detail would be most of the coordinator's memory and of every snapshot.
    #[serde(default = "default_keep_task_details_tasks")]
    pub keep_task_details_tasks: usize,
}

fn default_keep_task_details() -> usize {
    10
}

fn default_keep_task_details_tasks() -> usize {
    20_000
}

impl Default for JobHistory {
    /// A month (31 days), and up to 5,000 jobs: hourly backups each followed by a prune fill
    /// a month with about 1,500.
    fn default() -> Self {
        Self {
            keep_for_ms: 31 * 24 * 3_600_000,
            keep_last: 5_000,
            keep_task_details: default_keep_task_details(),
            keep_task_details_tasks: default_keep_task_details_tasks(),
        }
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

/// The finished jobs whose per-task detail `history` no longer keeps, not compacted yet, oldest
/// first: all but the newest `keep_task_details` finished jobs, and of those all past the
/// `keep_task_details_tasks` budget counted from the newest (which always keeps its own).
pub fn jobs_to_compact(state: &ClusterState, history: &JobHistory) -> Vec<JobId> {
    let mut finished: Vec<(u64, JobId, bool, usize)> = state
        .jobs
        .values()
        .filter(|job| job.state().is_terminal())
        .map(|job| {
            let finished_at = job.finished_at_ms().unwrap_or(job.created_at_ms);
            (finished_at, job.id, job.summary.is_some(), job.slots().count())
        })
        .collect();
    finished.sort_unstable();
    let mut kept_tasks = 0usize;
    let mut keep_from = finished.len();
    for (newest_first, (_, _, compacted, tasks)) in finished.iter().rev().enumerate() {
        kept_tasks = kept_tasks.saturating_add(*tasks);
        let over_budget = newest_first > 0 && kept_tasks > history.keep_task_details_tasks;
        if *compacted || newest_first >= history.keep_task_details || over_budget {
            break;
        }
        keep_from -= 1;
    }
    finished[..keep_from]
        .iter()
        .filter(|(_, _, compacted, _)| !compacted)
        .map(|(_, job_id, _, _)| *job_id)
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
            let spec = crate::core::plan::keys::plan_repository_key(
                &crate::core::Repository::new("r", "file:///r", 1 << 20),
                bk_proto::model::KeyAction::List,
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
        let history = JobHistory {
            keep_for_ms: 10 * HOUR,
            keep_last: 5,
            keep_task_details: 2,
            keep_task_details_tasks: 100,
        };
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

    #[test]
    fn test_finished_jobs_past_the_newest_few_are_compacted_once() {
        let history = JobHistory { keep_task_details: 2, ..JobHistory::default() };
        let cases: Vec<(&str, ClusterState, Vec<JobId>)> = vec![
            ("no more than the newest two", state(2, &[]), vec![]),
            ("the older ones, oldest first", state(5, &[]), ids(&[1, 2, 3])),
            ("running jobs are neither kept nor counted", state(5, &[4, 5]), ids(&[1])),
        ];
        for (case, state, want) in cases {
            assert_eq!(jobs_to_compact(&state, &history), want, "{case}");
        }
        let tasks_per_job =
            state(1, &[]).jobs.values().map(|job| job.slots().count()).sum::<usize>();
        let cases: Vec<(&str, usize, Vec<JobId>)> = vec![
            ("a budget of one job's tasks: the newest alone", tasks_per_job, ids(&[1, 2, 3, 4])),
            ("the newest keeps its own however large", 0, ids(&[1, 2, 3, 4])),
            ("a budget of three jobs: the count (2) decides", 3 * tasks_per_job, ids(&[1, 2, 3])),
        ];
        for (case, budget, want) in cases {
            let history =
                JobHistory { keep_task_details: 2, keep_task_details_tasks: budget, ..history };
            assert_eq!(jobs_to_compact(&state(5, &[]), &history), want, "{case}");
        }
        let mut state = state(5, &[]);
        let response = state.apply(Command::CompactJobs { job_ids: ids(&[1, 2, 3]) });
        assert_eq!(response, CommandResponse::Applied);
        assert!(state.jobs[&ids(&[1])[0]].summary.is_some());
        assert!(state.jobs[&ids(&[4])[0]].summary.is_none());
        assert!(
            jobs_to_compact(&state, &history).is_empty(),
            "compacted jobs are not proposed again"
        );
    }
}
