//! A finished drill, recorded on its backup. Pure.
//!
//! A drill that passed is compared with the previous passing drill of the same source: a table
//! with fewer rows than then is worth a warning (retention may explain it; data loss would too),
//! never a failure.

use std::collections::BTreeMap;

use bk_proto::ids::{BackupId, JobId, WorkerId};
use bk_proto::model::DrillReport;

use super::domain::{BackupRecord, DrillRecord, MAX_DRILLS_KEPT};

/// Records the drill of `backup_id` (ignored when the backup was forgotten meanwhile).
pub fn record_drill(
    backups: &mut BTreeMap<BackupId, BackupRecord>,
    backup_id: BackupId,
    job_id: JobId,
    worker_id: WorkerId,
    report: DrillReport,
    at_ms: u64,
) {
    let Some(source) = backups.get(&backup_id).map(|backup| backup.source.clone()) else {
        return;
    };
    let warnings = if report.passed {
        previous_passing_drill(backups, &source)
            .map(|previous| count_drops(&previous.report, &report))
            .unwrap_or_default()
    } else {
        Vec::new()
    };
    let Some(backup) = backups.get_mut(&backup_id) else { return };
    backup.drills.push(DrillRecord { job_id, at_ms, worker_id, report, warnings });
    if backup.drills.len() > MAX_DRILLS_KEPT {
        let excess = backup.drills.len() - MAX_DRILLS_KEPT;
        backup.drills.drain(..excess);
    }
}

/// The newest passing drill of any backup of `source`.
pub fn previous_passing_drill<'a>(
    backups: &'a BTreeMap<BackupId, BackupRecord>,
    source: &str,
) -> Option<&'a DrillRecord> {
    backups
        .values()
        .filter(|backup| backup.source == source)
        .flat_map(|backup| &backup.drills)
        .filter(|drill| drill.report.passed)
        .max_by_key(|drill| (drill.at_ms, drill.job_id))
}

fn count_drops(previous: &DrillReport, now: &DrillReport) -> Vec<String> {
    let before: BTreeMap<(&str, &str), u64> = previous
        .tables
        .iter()
        .map(|table| ((table.table.as_str(), table.from.as_str()), table.rows))
        .collect();
    now.tables
        .iter()
        .filter_map(|table| {
            let rows = *before.get(&(table.table.as_str(), table.from.as_str()))?;
            (table.rows < rows).then(|| {
                format!(
                    "table `{}` has {} rows, {} fewer than the previous passing drill ({rows}): retention, or lost data?",
                    table.table,
                    table.rows,
                    rows - table.rows
                )
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use bk_proto::model::TableFacts;
    use ulid::Ulid;

    use super::*;

    fn report(passed: bool, rows: u64) -> DrillReport {
        let table = TableFacts {
            table: "db.cpu".into(),
            rows,
            from: "server".into(),
            ..TableFacts::default()
        };
        DrillReport { passed, tables: vec![table], ..DrillReport::default() }
    }

    #[test]
    fn test_a_drop_against_the_previous_passing_drill_of_the_source_warns_and_old_drills_go() {
        let mut backups = BTreeMap::new();
        let (first, second) = (BackupId(Ulid::from_parts(1, 1)), BackupId(Ulid::from_parts(2, 1)));
        for id in [first, second] {
            backups.insert(id, BackupRecord::fixture(id, "src", 1, None));
        }
        let job = |n: u64| JobId(Ulid::from_parts(n, 7));
        record_drill(&mut backups, first, job(1), "w".into(), report(true, 100), 10);
        // A failed drill with fewer rows is not the baseline, and warns of nothing itself.
        record_drill(&mut backups, first, job(2), "w".into(), report(false, 5), 20);
        record_drill(&mut backups, second, job(3), "w".into(), report(true, 90), 30);
        let drills = &backups[&second].drills;
        assert_eq!(drills.len(), 1);
        assert_eq!(drills[0].warnings.len(), 1, "{drills:?}");
        assert!(drills[0].warnings[0].contains("90 rows, 10 fewer"), "{:?}", drills[0].warnings);
        assert!(backups[&first].drills[1].warnings.is_empty());
        for n in 0..15 {
            record_drill(&mut backups, first, job(10 + n), "w".into(), report(true, 100), 40 + n);
        }
        assert_eq!(backups[&first].drills.len(), MAX_DRILLS_KEPT);
        assert_eq!(backups[&first].drills[0].job_id, job(15));
    }
}
