//! Is each source restorable, and recently enough? One answer per source, from the replicated
//! state, the operator's objectives and the time. Pure.
//!
//! The console's overview, the Prometheus metrics (and so the alert rules) and anything else
//! that judges a source read it from here, so they can never disagree about what "the last
//! backup" or "the last drill" of a source is.

use std::collections::BTreeMap;
use std::str::FromStr;

use bk_proto::ids::{BackupId, JobId};
use chrono::{TimeZone, Utc};
use croner::Cron;

use super::domain::SourceSpec;
use super::job::{JobKind, JobState};
use super::state::ClusterState;

/// What the operator promises per source: how old the newest backup may be (the recovery-point
/// objective) and how old the newest passing drill may be.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Objectives {
    /// Default RPO in milliseconds.
    pub rpo_ms: u64,
    /// RPO per source name, overriding the default.
    pub rpo_by_source: BTreeMap<String, u64>,
    /// The newest drill of a source older than this is overdue.
    pub drill_max_age_ms: u64,
}

impl Default for Objectives {
    /// A nightly backup with an hour of slack, and a weekly drill with a day of slack.
    fn default() -> Self {
        Self {
            rpo_ms: 25 * 3_600_000,
            rpo_by_source: BTreeMap::new(),
            drill_max_age_ms: 8 * 24 * 3_600_000,
        }
    }
}

impl Objectives {
    /// The RPO of `source`.
    pub fn rpo_for(&self, source: &str) -> u64 {
        self.rpo_by_source.get(source).copied().unwrap_or(self.rpo_ms)
    }
}

/// One source, judged.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SourceHealth {
    /// The source's name.
    pub source: String,
    /// `influxdb3 enterprise`, `influxdb3 core` or `questdb`.
    pub kind: &'static str,
    /// Its newest committed backup.
    pub last_backup: Option<LastBackup>,
    /// Its RPO (ms).
    pub rpo_ms: u64,
    /// Its newest drill, passed or not.
    pub last_drill: Option<LastDrill>,
    /// How old its newest drill may be (ms).
    pub drill_max_age_ms: u64,
    /// Its newest finished backup job, when that one failed: what an operator must fix before
    /// the next one.
    pub last_backup_failure: Option<(JobId, String)>,
    /// The next run of any of its schedules.
    pub next_run: Option<NextRun>,
}

/// The newest committed backup of a source.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LastBackup {
    /// Its id.
    pub backup_id: BackupId,
    /// When it was created (its consistency point is taken during its job).
    pub created_at_ms: u64,
}

/// The newest drill of a source.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LastDrill {
    /// The backup it restored.
    pub backup_id: BackupId,
    /// When it ended.
    pub at_ms: u64,
    /// Whether the backup proved restorable.
    pub passed: bool,
    /// Its first failure.
    pub failure: Option<String>,
}

/// The next scheduled run of a source.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NextRun {
    /// The schedule's name.
    pub schedule: String,
    /// When it is due.
    pub at_ms: u64,
    /// A drill rather than a backup.
    pub drill: bool,
}

impl SourceHealth {
    /// Age of the newest backup at `now_ms`; `None` without one.
    pub fn backup_age_ms(&self, now_ms: u64) -> Option<u64> {
        self.last_backup.as_ref().map(|backup| now_ms.saturating_sub(backup.created_at_ms))
    }

    /// Whether the newest backup is within the RPO (`false` without a backup).
    pub fn within_rpo(&self, now_ms: u64) -> bool {
        self.backup_age_ms(now_ms).is_some_and(|age| age <= self.rpo_ms)
    }

    /// Whether the source was proved restorable recently: its newest drill passed and is not
    /// older than the drill objective.
    pub fn restorable(&self, now_ms: u64) -> bool {
        self.last_drill.as_ref().is_some_and(|drill| {
            drill.passed && now_ms.saturating_sub(drill.at_ms) <= self.drill_max_age_ms
        })
    }
}

/// Every registered source, judged at `now_ms`, in name order.
pub fn source_health(
    state: &ClusterState,
    objectives: &Objectives,
    now_ms: u64,
) -> Vec<SourceHealth> {
    let mut health: BTreeMap<&str, SourceHealth> = state
        .sources
        .values()
        .map(|source| {
            let kind = match source.spec {
                SourceSpec::InfluxDb3Enterprise { .. } => "influxdb3 enterprise",
                SourceSpec::InfluxDb3Core { .. } => "influxdb3 core",
                SourceSpec::QuestDb { .. } => "questdb",
            };
            let judged = SourceHealth {
                source: source.name.to_string(),
                kind,
                last_backup: None,
                rpo_ms: objectives.rpo_for(&source.name),
                last_drill: None,
                drill_max_age_ms: objectives.drill_max_age_ms,
                last_backup_failure: None,
                next_run: None,
            };
            (source.name.as_str(), judged)
        })
        .collect();
    for backup in state.backups.values() {
        let Some(judged) = health.get_mut(backup.source.as_str()) else { continue };
        if judged.last_backup.as_ref().is_none_or(|last| backup.created_at_ms >= last.created_at_ms)
        {
            judged.last_backup = Some(LastBackup {
                backup_id: backup.backup_id,
                created_at_ms: backup.created_at_ms,
            });
        }
        for drill in &backup.drills {
            if judged.last_drill.as_ref().is_none_or(|last| drill.at_ms >= last.at_ms) {
                judged.last_drill = Some(LastDrill {
                    backup_id: backup.backup_id,
                    at_ms: drill.at_ms,
                    passed: drill.report.passed,
                    failure: drill.report.failure.clone(),
                });
            }
        }
    }
    // Jobs are keyed by ULID, so the last finished backup job of a source wins.
    for job in state.jobs.values().filter(|job| job.spec.kind == JobKind::Backup) {
        let Some(judged) = health.get_mut(job.spec.source.as_str()) else { continue };
        match job.state() {
            JobState::Failed => {
                let error = job.error().unwrap_or("failed").to_string();
                judged.last_backup_failure = Some((job.id, error));
            }
            JobState::Succeeded => judged.last_backup_failure = None,
            _ => {}
        }
    }
    for schedule in state.schedules.values() {
        let Some(judged) = health.get_mut(schedule.source.as_str()) else { continue };
        let Some(at_ms) = next_occurrence(&schedule.cron, now_ms) else { continue };
        if judged.next_run.as_ref().is_none_or(|next| at_ms < next.at_ms) {
            judged.next_run =
                Some(NextRun { schedule: schedule.name.clone(), at_ms, drill: schedule.drill });
        }
    }
    health.into_values().collect()
}

/// The first occurrence of `cron` after `now_ms`; `None` for a pattern that never fires again
/// (or does not parse, which registration already refuses).
pub fn next_occurrence(cron: &str, now_ms: u64) -> Option<u64> {
    let cron = Cron::from_str(cron).ok()?;
    let now = Utc.timestamp_millis_opt(i64::try_from(now_ms).ok()?).single()?;
    let next = cron.find_next_occurrence(&now, false).ok()?;
    u64::try_from(next.timestamp_millis()).ok()
}

#[cfg(test)]
#[path = "source_health_test.rs"]
mod tests;
