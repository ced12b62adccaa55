use bk_proto::ids::{BackupId, JobId};
use bk_proto::model::DrillReport;
use ulid::Ulid;

use super::*;
use crate::core::domain::{BackupRecord, DrillRecord, Source};
use crate::core::schedule::Schedule;

const HOUR: u64 = 3_600_000;
/// 2026-11-22T02:00:00Z.
const TWO_AM: u64 = 1_795_312_800_000;

fn state() -> ClusterState {
    let mut state = ClusterState::default();
    for name in ["influx", "quest"] {
        let spec = if name == "quest" {
            SourceSpec::QuestDb { node: "q".into(), pg_addr: "127.0.0.1:8812".into() }
        } else {
            SourceSpec::InfluxDb3Core { node: "n".into(), http_endpoint: None }
        };
        state.sources.insert(name.into(), Source { name: name.into(), spec });
    }
    state
}

fn backup(state: &mut ClusterState, n: u64, source: &str, created_at_ms: u64) -> BackupId {
    let id = BackupId(Ulid::from_parts(n, 0));
    state.backups.insert(id, BackupRecord::fixture(id, source, created_at_ms, None));
    id
}

fn drill(state: &mut ClusterState, backup: BackupId, at_ms: u64, passed: bool) {
    let report = DrillReport {
        passed,
        failure: (!passed).then(|| "the server exited".to_string()),
        ..DrillReport::default()
    };
    let record = DrillRecord {
        job_id: JobId(Ulid::from_parts(at_ms, 1)),
        at_ms,
        worker_id: "w".into(),
        report,
        warnings: Vec::new(),
    };
    if let Some(backup) = state.backups.get_mut(&backup) {
        backup.drills.push(record);
    }
}

#[test]
fn test_a_source_without_backups_is_outside_its_rpo_and_not_restorable() {
    let health = source_health(&state(), &Objectives::default(), TWO_AM);
    assert_eq!(health.len(), 2);
    let influx = &health[0];
    assert_eq!((influx.source.as_str(), influx.kind), ("influx", "influxdb3 core"));
    assert_eq!(influx.last_backup, None);
    assert!(!influx.within_rpo(TWO_AM));
    assert!(!influx.restorable(TWO_AM));
    assert_eq!(health[1].kind, "questdb");
}

#[test]
fn test_the_newest_backup_counts_against_the_rpo_of_its_own_source() {
    let mut state = state();
    backup(&mut state, 1, "influx", TWO_AM - 30 * HOUR);
    let newest = backup(&mut state, 2, "influx", TWO_AM - 2 * HOUR);
    backup(&mut state, 3, "quest", TWO_AM - 30 * HOUR);
    let mut objectives = Objectives::default();
    objectives.rpo_by_source.insert("influx".into(), HOUR);
    let health = source_health(&state, &objectives, TWO_AM);
    let (influx, quest) = (&health[0], &health[1]);
    assert_eq!(influx.last_backup.as_ref().map(|last| last.backup_id), Some(newest));
    assert_eq!(influx.backup_age_ms(TWO_AM), Some(2 * HOUR));
    assert_eq!(influx.rpo_ms, HOUR);
    assert!(!influx.within_rpo(TWO_AM), "two hours old against a one-hour RPO");
    assert_eq!(quest.rpo_ms, 25 * HOUR);
    assert!(!quest.within_rpo(TWO_AM), "30 hours old against the 25-hour default");
    assert!(quest.within_rpo(TWO_AM - 6 * HOUR));
}

#[test]
fn test_the_newest_drill_of_any_backup_decides_and_a_failed_one_is_not_restorable() {
    let mut state = state();
    let old = backup(&mut state, 1, "influx", TWO_AM - 48 * HOUR);
    let new = backup(&mut state, 2, "influx", TWO_AM - 24 * HOUR);
    drill(&mut state, new, TWO_AM - 10 * HOUR, true);
    // Drilled later, though of an older backup: the newest drill is what counts.
    drill(&mut state, old, TWO_AM - HOUR, false);
    let health = source_health(&state, &Objectives::default(), TWO_AM);
    let last = health[0].last_drill.clone().unwrap();
    assert_eq!((last.backup_id, last.passed), (old, false));
    assert_eq!(last.failure.as_deref(), Some("the server exited"));
    assert!(!health[0].restorable(TWO_AM));

    drill(&mut state, new, TWO_AM - HOUR / 2, true);
    let health = source_health(&state, &Objectives::default(), TWO_AM);
    assert!(health[0].restorable(TWO_AM));
    assert!(!health[0].restorable(TWO_AM + 9 * 24 * HOUR), "a passing drill grows overdue");
}

#[test]
fn test_the_next_run_is_the_earliest_of_the_source_schedules() {
    let mut state = state();
    for (name, cron, drill) in [("nightly", "0 2 * * *", false), ("hourly", "30 * * * *", true)] {
        let schedule = Schedule {
            name: name.into(),
            source: "influx".into(),
            repository: "r".into(),
            cron: cron.into(),
            prune: None,
            drill,
            created_at_ms: 0,
            last_run_ms: None,
        };
        state.schedules.insert(name.into(), schedule);
    }
    let health = source_health(&state, &Objectives::default(), TWO_AM);
    let next = health[0].next_run.clone().unwrap();
    assert_eq!(
        (next.schedule.as_str(), next.at_ms, next.drill),
        ("hourly", TWO_AM + HOUR / 2, true)
    );
    assert_eq!(health[1].next_run, None);
    assert_eq!(next_occurrence("0 2 * * *", TWO_AM), Some(TWO_AM + 24 * HOUR), "strictly after");
}
