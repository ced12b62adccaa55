//! What holds a job back until an earlier one ends. Pure.
//!
//! - The repository lock: a prune excludes every other job on its repository (it deletes
//!   packs the others might read or write); backups, restores and verifies share it.
//! - The checkpoint: a QuestDB server has one checkpoint, so backups of the same QuestDB source
//!   run one at a time. Without this rule a second backup (a schedule's slot during a manual
//!   one) found the server "already in checkpoint mode" and failed, blaming "someone else".

use super::domain::SourceSpec;
use super::job::{Job, JobKind};

/// Why a job waits for another.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Lock {
    /// A prune and other jobs on the same repository never run together.
    Repository,
    /// One backup of a QuestDB source at a time.
    Checkpoint,
}

/// Whether `job` must wait for `other` (submitted earlier, still running), and why.
pub fn waits_for(job: &Job, other: &Job) -> Option<Lock> {
    if other.id >= job.id || other.state().is_terminal() {
        return None;
    }
    let same_repository = other.spec.repository.name == job.spec.repository.name;
    let prune = job.spec.kind == JobKind::Prune || other.spec.kind == JobKind::Prune;
    if same_repository && prune {
        return Some(Lock::Repository);
    }
    let backups = job.spec.kind == JobKind::Backup && other.spec.kind == JobKind::Backup;
    let questdb = matches!(job.spec.source_spec, Some(SourceSpec::QuestDb { .. }));
    (backups && questdb && other.spec.source == job.spec.source).then_some(Lock::Checkpoint)
}

/// Whether any of `jobs` holds `job` back.
pub fn is_held_back<'a>(job: &Job, mut jobs: impl Iterator<Item = &'a Job>) -> bool {
    jobs.any(|other| waits_for(job, other).is_some())
}

/// Why `job` waits, naming the job that holds it back (for operators), or `None`.
pub fn lock_reason<'a>(job: &Job, jobs: impl IntoIterator<Item = &'a Job>) -> Option<String> {
    let (other, lock) =
        jobs.into_iter().find_map(|other| waits_for(job, other).map(|lock| (other, lock)))?;
    Some(match lock {
        Lock::Repository => format!(
            "waiting for job `{}` ({:?}) on repository `{}` to end: a prune and other jobs on \
             the same repository never run together",
            other.id, other.spec.kind, other.spec.repository.name
        ),
        Lock::Checkpoint => format!(
            "waiting for backup job `{}` of `{}` to end: a QuestDB server has one checkpoint, \
             so its backups run one at a time",
            other.id, other.spec.source
        ),
    })
}

#[cfg(test)]
mod tests {
    use bk_proto::ids::{BackupId, JobId};
    use ulid::Ulid;

    use super::*;
    use crate::core::domain::{Repository, Source};
    use crate::core::plan::prune::{plan_prune, PruneRequest, RetentionPolicy};
    use crate::core::plan::{plan_backup, BackupOptions};

    fn prune_on(repository: &str, n: u64) -> Job {
        let request = PruneRequest {
            source: "s".into(),
            policy: RetentionPolicy { keep_last: 1, ..RetentionPolicy::default() },
            dry_run: false,
            max_unused_percent: 10,
        };
        let repository = Repository::new(repository, "file:///r", 1 << 20);
        let spec = plan_prune(&request, &repository, &[]).unwrap();
        Job::new(JobId(Ulid::from_parts(n, 1)), spec, 0)
    }

    fn backup_of(source: &str, questdb: bool, n: u64) -> Job {
        let spec = if questdb {
            SourceSpec::QuestDb { node: "q".into(), pg_addr: "127.0.0.1:8812".into() }
        } else {
            SourceSpec::InfluxDb3Core { node: "n".into(), http_endpoint: None }
        };
        let source = Source { name: source.into(), spec };
        let repository = Repository::new("r", "file:///r", 1 << 20);
        let (job_id, backup_id) = (JobId(Ulid::from_parts(n, 2)), BackupId(Ulid::from_parts(n, 3)));
        let options = BackupOptions::default();
        let spec = plan_backup(&source, &repository, job_id, backup_id, 0, &options).unwrap();
        Job::new(job_id, spec, 0)
    }

    #[test]
    fn test_the_repository_lock_names_the_earlier_job_on_the_same_repository() {
        let (first, second, elsewhere) = (prune_on("r", 1), prune_on("r", 2), prune_on("x", 3));
        let reason = lock_reason(&second, [&first, &elsewhere]).unwrap();
        assert!(reason.contains(&first.id.to_string()) && reason.contains("`r`"), "{reason}");
        assert_eq!(lock_reason(&first, [&second, &elsewhere]), None, "a later job never blocks");
        assert_eq!(lock_reason(&elsewhere, [&first, &second]), None);
    }

    #[test]
    fn test_backups_of_one_questdb_source_run_one_at_a_time() {
        let cases = [
            // (earlier, later, the later waits)
            (backup_of("qdb", true, 1), backup_of("qdb", true, 2), Some(Lock::Checkpoint)),
            (backup_of("qdb", true, 1), backup_of("other", true, 2), None),
            (backup_of("influx", false, 1), backup_of("influx", false, 2), None),
            (backup_of("qdb", true, 2), backup_of("qdb", true, 1), None),
        ];
        for (earlier, later, expected) in cases {
            assert_eq!(waits_for(&later, &earlier), expected, "{} after {}", later.id, earlier.id);
        }
        let (first, second) = (backup_of("qdb", true, 1), backup_of("qdb", true, 2));
        let reason = lock_reason(&second, [&first]).unwrap();
        assert!(reason.contains(&first.id.to_string()) && reason.contains("one checkpoint"));
        let mut ended = first;
        let outcome = crate::core::job::Outcome::Succeeded;
        ended.status = crate::core::JobStatus::Ended { outcome, at_ms: 5 };
        assert_eq!(waits_for(&second, &ended), None, "an ended backup holds nothing");
    }
}
