//! How restore drills are shown: in `bkctl show` (every drill of a backup) and `bkctl backups`
//! (a mark on each source's newest drilled backup).

use std::collections::BTreeMap;

use bk_proto::pb;
use serde_json::{json, Value};

use bk_proto::support::human_bytes;

/// A backup's drills as JSON.
pub(crate) fn drills_json(drills: &[pb::Drill]) -> Value {
    Value::Array(
        drills
            .iter()
            .map(|drill| {
                json!({
                    "job_id": drill.job_id, "at_ms": drill.at_ms, "worker_id": drill.worker_id,
                    "passed": drill.passed, "failure": drill.failure, "checks": drill.checks,
                    "restore_ms": drill.restore_ms, "start_ms": drill.start_ms,
                    "scratch_bytes": drill.scratch_bytes, "log_file": drill.log_file,
                    "warnings": drill.warnings,
                    "tables": drill.tables.iter().map(|table| json!({
                        "table": table.table, "rows": table.rows, "min_time": table.min_time,
                        "max_time": table.max_time, "from": table.from,
                    })).collect::<Vec<_>>(),
                })
            })
            .collect(),
    )
}

/// Prints a backup's drills, newest last.
pub(crate) fn print_drills(drills: &[pb::Drill]) {
    if drills.is_empty() {
        println!(
            "  drills       none (prove it restorable: `bkctl submit drill --backup ID --wait`)"
        );
        return;
    }
    println!("  drills");
    for drill in drills {
        let outcome = if drill.passed { "PASSED".to_string() } else { "FAILED".to_string() };
        let started = drill
            .start_ms
            .map(|ms| format!("database healthy after {:.1}s", ms as f64 / 1000.0))
            .unwrap_or_else(|| "database not started (offline checks only)".to_string());
        println!(
            "    {} {outcome} on {} (job {}): restored in {:.1}s, {} of scratch; {started}",
            timestamp(drill.at_ms),
            drill.worker_id,
            drill.job_id,
            drill.restore_ms as f64 / 1000.0,
            human_bytes(drill.scratch_bytes),
        );
        if !drill.failure.is_empty() {
            println!("      failure: {}", drill.failure);
        }
        if !drill.log_file.is_empty() {
            println!("      database log kept on the worker: {}", drill.log_file);
        }
        for check in &drill.checks {
            println!("      ok: {check}");
        }
        for table in &drill.tables {
            println!(
                "      {:<32} {:>12} rows  {} .. {}  ({})",
                table.table, table.rows, table.min_time, table.max_time, table.from
            );
        }
        for warning in &drill.warnings {
            println!("      WARNING: {warning}");
        }
    }
}

/// Per source, the newest backup that was drilled, and its newest drill: what `bkctl backups`
/// marks.
pub(crate) fn newest_drilled(backups: &[pb::Backup]) -> BTreeMap<&str, (&str, &pb::Drill)> {
    let mut newest: BTreeMap<&str, (u64, &str, &pb::Drill)> = BTreeMap::new();
    for backup in backups {
        let Some(drill) = backup.drills.last() else { continue };
        let entry = newest.entry(backup.source.as_str()).or_insert((0, "", drill));
        if backup.created_at_ms >= entry.0 {
            *entry = (backup.created_at_ms, backup.id.as_str(), drill);
        }
    }
    newest.into_iter().map(|(source, (_, id, drill))| (source, (id, drill))).collect()
}

/// The mark `bkctl backups` prints after a backup.
pub(crate) fn drill_mark(drill: &pb::Drill) -> String {
    if drill.passed {
        format!("drilled: passed {}", timestamp(drill.at_ms))
    } else {
        format!("drilled: FAILED {}", timestamp(drill.at_ms))
    }
}

fn timestamp(at_ms: u64) -> String {
    chrono::DateTime::from_timestamp_millis(at_ms as i64)
        .map(|at| at.format("%Y-%m-%d %H:%M:%SZ").to_string())
        .unwrap_or_else(|| at_ms.to_string())
}
