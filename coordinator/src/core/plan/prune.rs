//! Retention (restic's `--keep-*` semantics) and the prune plan. Pure.
//!
//! Rules, applied to one source's backups in one repository, newest first: `keep_last` keeps the
//! N newest; `keep_daily`/`keep_weekly`/`keep_monthly` keep the newest backup of each of the N
//! most recent days/weeks/months that have one. A backup is kept when any rule keeps it.
//!
//! The plan: `forget` (delete the forgotten backups' manifests, then their segments) →
//! `sweep` (delete every chunk no remaining manifest of the repository references). Safety
//! against concurrent backups comes from the coordinator's repository lock (see
//! [`conflicts`]): a prune and any other job on the same repository never run at the same time,
//! so a chunk a running backup wrote (or reuses) cannot be swept, and a backup never commits a
//! manifest naming a chunk a prune removed.

use std::collections::BTreeSet;

use bk_proto::ids::{BackupId, SourceName};
use bk_proto::model::{Retention, TaskKind};

use super::error::PlanError;
use crate::core::domain::{BackupRecord, Repository};
use crate::core::job::{JobKind, JobSpec, Placement, PlannedPhase, PlannedTask};

/// How many backups each rule keeps (weeks run Monday to Sunday; days, weeks, months in UTC).
pub type RetentionPolicy = Retention;

fn is_empty(policy: &RetentionPolicy) -> bool {
    policy.keep_last == 0
        && policy.keep_daily == 0
        && policy.keep_weekly == 0
        && policy.keep_monthly == 0
}

/// Which backups a policy keeps and forgets. `backups` in any order; both lists newest first.
pub fn select_backups(
    backups: &[&BackupRecord],
    policy: &RetentionPolicy,
) -> (Vec<BackupId>, Vec<BackupId>) {
    let mut sorted: Vec<&BackupRecord> = backups.to_vec();
    sorted.sort_by_key(|backup| std::cmp::Reverse((backup.created_at_ms, backup.backup_id)));
    let mut kept = BTreeSet::new();
    for (index, backup) in sorted.iter().enumerate() {
        if (index as u32) < policy.keep_last {
            kept.insert(backup.backup_id);
        }
    }
    let buckets: [(u32, BucketOf); 3] =
        [(policy.keep_daily, day), (policy.keep_weekly, week), (policy.keep_monthly, month)];
    for (count, bucket_of) in buckets {
        let mut last_bucket = None;
        let mut kept_by_rule = 0;
        for backup in &sorted {
            let bucket = bucket_of(backup.created_at_ms);
            if kept_by_rule < count && last_bucket != Some(bucket) {
                kept.insert(backup.backup_id);
                kept_by_rule += 1;
            }
            last_bucket = Some(bucket);
        }
    }
    sorted.iter().map(|backup| backup.backup_id).partition(|id| kept.contains(id))
}

/// Maps a backup time (ms since the epoch) to its day, week or month number.
type BucketOf = fn(u64) -> i64;

fn day(ms: u64) -> i64 {
    (ms / 86_400_000) as i64
}

/// Weeks starting on Monday: 1970-01-01 was a Thursday.
fn week(ms: u64) -> i64 {
    (day(ms) + 3).div_euclid(7)
}

/// Months since the epoch, from the civil date (Howard Hinnant's algorithm).
fn month(ms: u64) -> i64 {
    let z = day(ms) + 719_468;
    let era = z.div_euclid(146_097);
    let day_of_era = z - era * 146_097;
    let year_of_era =
        (day_of_era - day_of_era / 1460 + day_of_era / 36_524 - day_of_era / 146_096) / 365;
    let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
    let month_index = (5 * day_of_year + 2) / 153;
    let month = if month_index < 10 { month_index + 3 } else { month_index - 9 };
    let year = year_of_era + era * 400 + i64::from(month <= 2);
    year * 12 + month
}

/// What a prune is asked to do.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PruneRequest {
    /// Whose backups the keep rules apply to.
    pub source: SourceName,
    /// The keep rules.
    pub policy: RetentionPolicy,
    /// Report only.
    pub dry_run: bool,
    /// Repack packs more than this percent unused.
    pub max_unused_percent: u32,
}

/// Plans a prune of `request.source`'s backups in `repository`. `backups` may hold every
/// backup of every source and repository: the keep rules only ever see the prune's own (the one
/// place that says which backups a prune judges; see [`resolve_prune_task`]).
///
/// # Errors
/// [`PlanError::InvalidPrune`] without any keep rule (that would forget everything), or with
/// `max_unused_percent` over 100.
pub fn plan_prune(
    request: &PruneRequest,
    repository: &Repository,
    backups: &[&BackupRecord],
) -> Result<JobSpec, PlanError> {
    let PruneRequest { source, policy, dry_run, max_unused_percent } = request;
    let (dry_run, max_unused_percent) = (*dry_run, *max_unused_percent);
    if max_unused_percent > 100 {
        return Err(PlanError::InvalidPrune(format!(
            "--max-unused {max_unused_percent}% is over 100%"
        )));
    }
    if is_empty(policy) {
        return Err(PlanError::InvalidPrune(
            "no keep rule given: pass at least one of --keep-last, --keep-daily, --keep-weekly, --keep-monthly".to_string(),
        ));
    }
    // Shown now; the list that counts is resolved when the forget task is leased.
    let judged = judged_by_prune(backups, source, &repository.name);
    let (_, forgotten_now) = select_backups(&judged, policy);
    let verb = if dry_run { "would forget" } else { "forget" };
    let task = |label: String, kind: TaskKind| PlannedTask::new(label, Placement::AnyNode, kind);
    let phases = vec![
        PlannedPhase {
            name: "forget".to_string(),
            tasks: vec![task(
                format!(
                    "{verb} the backups of `{source}` no keep rule keeps ({} now)",
                    forgotten_now.len()
                ),
                TaskKind::ForgetBackups { backups: Vec::new(), retention: *policy, dry_run },
            )],
        },
        PlannedPhase {
            name: "sweep".to_string(),
            tasks: vec![task(
                format!(
                    "{} packs no backup uses, repack packs over {max_unused_percent}% unused",
                    if dry_run { "count" } else { "delete" }
                ),
                TaskKind::SweepPacks { forgotten: Vec::new(), dry_run, max_unused_percent },
            )],
        },
    ];
    Ok(JobSpec {
        kind: JobKind::Prune,
        backup_id: None,
        parent: None,
        scheduled: None,
        source: source.clone(),
        source_spec: None,
        repository: repository.clone(),
        nodes: Vec::new(),
        phases,
        cleanup: Vec::new(),
        allow_corrupt: false,
    })
}

/// Resolves a prune task's backup list from the backups that exist now (called by the leader
/// when it leases the task): the forget list for `ForgetBackups`, and (for dry-run counting) the
/// same for `SweepPacks`.
pub fn resolve_prune_task(
    kind: &mut TaskKind,
    source: &str,
    repository: &str,
    backups: &[&BackupRecord],
    retention: &Retention,
) {
    let (_, forget) = select_backups(&judged_by_prune(backups, source, repository), retention);
    match kind {
        TaskKind::ForgetBackups { backups, .. } => *backups = forget,
        TaskKind::SweepPacks { forgotten, .. } => *forgotten = forget,
        _ => {}
    }
}

/// The backups a prune of `source` in `repository` applies its keep rules to.
fn judged_by_prune<'a>(
    backups: &[&'a BackupRecord],
    source: &str,
    repository: &str,
) -> Vec<&'a BackupRecord> {
    backups
        .iter()
        .copied()
        .filter(|backup| backup.source == source && backup.repository == repository)
        .collect()
}

#[cfg(test)]
mod tests {
    use ulid::Ulid;

    use super::*;

    const DAY: u64 = 86_400_000;

    fn backup(n: u128, created_at_ms: u64) -> BackupRecord {
        BackupRecord::fixture(
            BackupId(Ulid::from_parts(created_at_ms, n)),
            "s",
            created_at_ms,
            None,
        )
    }

    /// Backups at these (day, hour) points, 2026-11-02 (a Monday) = day 0.
    fn history(points: &[(u64, u64)]) -> Vec<BackupRecord> {
        let monday = 1_793_577_600_000; // 2026-11-02T00:00:00Z
        points
            .iter()
            .enumerate()
            .map(|(n, (d, h))| backup(n as u128, monday + d * DAY + h * 3_600_000))
            .collect()
    }

    fn kept(history: &[BackupRecord], policy: RetentionPolicy) -> Vec<usize> {
        let refs: Vec<&BackupRecord> = history.iter().collect();
        let (keep, _) = select_backups(&refs, &policy);
        let mut indices: Vec<usize> = keep
            .iter()
            .map(|id| history.iter().position(|backup| backup.backup_id == *id).unwrap())
            .collect();
        indices.sort_unstable();
        indices
    }

    #[test]
    fn test_keep_rules_follow_restic_semantics() {
        // Two backups a day for 10 days (days 0-9; 0 is a Monday), plus one 40 days later.
        let mut points: Vec<(u64, u64)> = (0..10).flat_map(|day| [(day, 1), (day, 13)]).collect();
        points.push((40, 1));
        let history = history(&points);
        let policy = |last, daily, weekly, monthly| RetentionPolicy {
            keep_last: last,
            keep_daily: daily,
            keep_weekly: weekly,
            keep_monthly: monthly,
        };
        let cases: Vec<(RetentionPolicy, Vec<usize>)> = vec![
            (policy(3, 0, 0, 0), vec![18, 19, 20]),
            // The newest of each of the 3 most recent days: day 40, day 9, day 8.
            (policy(0, 3, 0, 0), vec![17, 19, 20]),
            // Weeks: day 40's week, days 7-9 (newest day 9 pm), days 0-6 (newest day 6 pm).
            (policy(0, 0, 3, 0), vec![13, 19, 20]),
            // Months: December (day 40 = 2026-12-12) and November (newest: day 9 pm).
            (policy(0, 0, 0, 5), vec![19, 20]),
            (policy(1, 1, 0, 0), vec![20]),
            (policy(2, 2, 0, 0), vec![19, 20]),
        ];
        for (rules, expected) in cases {
            assert_eq!(kept(&history, rules), expected, "{rules:?}");
        }
    }

    #[test]
    fn test_prune_without_rules_is_refused_and_plans_forget_then_sweep() {
        let history = history(&[(0, 1), (1, 1), (2, 1)]);
        let refs: Vec<&BackupRecord> = history.iter().collect();
        let repository = Repository::new("r", "file:///r", 1 << 20);
        let mut request = PruneRequest {
            source: "s".into(),
            policy: RetentionPolicy::default(),
            dry_run: false,
            max_unused_percent: 10,
        };
        let error = plan_prune(&request, &repository, &refs).unwrap_err();
        assert!(error.to_string().contains("--keep-last"), "{error}");
        request.policy = RetentionPolicy { keep_last: 1, ..RetentionPolicy::default() };
        request.dry_run = true;
        let spec = plan_prune(&request, &repository, &refs).unwrap();
        let names: Vec<&str> = spec.phases.iter().map(|phase| phase.name.as_str()).collect();
        assert_eq!(names, ["forget", "sweep"]);
        let TaskKind::ForgetBackups { retention, dry_run, .. } = &spec.phases[0].tasks[0].kind
        else {
            panic!()
        };
        assert_eq!((retention.keep_last, *dry_run), (1, true));
        assert_eq!(
            spec.phases[0].tasks[0].label,
            "would forget the backups of `s` no keep rule keeps (2 now)"
        );
    }

    #[test]
    fn test_a_prune_judges_only_its_source_in_its_repository_whatever_it_is_given() {
        let mut history = history(&[(0, 1), (1, 1), (2, 1), (3, 1), (4, 1)]);
        history[3].source = "other".into();
        history[4].repository = "elsewhere".into();
        let refs: Vec<&BackupRecord> = history.iter().collect();
        let repository = Repository::new("r", "file:///r", 1 << 20);
        let request = PruneRequest {
            source: "s".into(),
            policy: RetentionPolicy { keep_last: 1, ..RetentionPolicy::default() },
            dry_run: false,
            max_unused_percent: 10,
        };
        // Every backup given, as the scheduled prune passes them: still 2 of `s` in `r`.
        let spec = plan_prune(&request, &repository, &refs).unwrap();
        assert!(
            spec.phases[0].tasks[0].label.ends_with("(2 now)"),
            "{}",
            spec.phases[0].tasks[0].label
        );
        let mut kind = spec.phases[0].tasks[0].kind.clone();
        resolve_prune_task(&mut kind, "s", "r", &refs, &request.policy);
        let TaskKind::ForgetBackups { mut backups, .. } = kind else { panic!() };
        backups.sort();
        assert_eq!(backups, [history[0].backup_id, history[1].backup_id]);
    }
}
