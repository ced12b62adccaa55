//! One backup: what it holds (phases, sizes at the source and in the repository, consistency
//! point, exclusions) and, first, whether it was proved restorable (its drills and their
//! checks).

use std::fmt::Write as _;

use bk_proto::pb;

use super::html::{
    backup_link, bytes, duration_ms, escape, flagged, job_link, status, table, time, Row, Status,
};

/// `(title, body)` of a backup's page.
pub(crate) fn backup_page(backup: &pb::Backup, now_ms: u64) -> (String, String) {
    let title = format!("Backup {} of {}", backup.id, backup.source);
    let mut body = drills(backup, now_ms);
    body.push_str("<section aria-labelledby=\"facts-title\"><h2 id=\"facts-title\">What it holds</h2><dl class=\"facts\">");
    let mut fact = |term: &str, value: String| {
        let _ = write!(body, "<dt>{}</dt><dd>{value}</dd>", escape(term));
    };
    fact("Source", escape(&backup.source));
    fact("Repository", escape(&backup.repository));
    fact("Created", time(backup.created_at_ms, now_ms));
    fact("Job", job_link(&backup.job_id));
    fact(
        "Kind",
        if backup.parent_id.is_empty() {
            "full".to_string()
        } else {
            format!("incremental to {}", backup_link(&backup.parent_id))
        },
    );
    fact("Nodes", escape(&backup.nodes.join(", ")));
    fact(
        "Objects",
        format!(
            "{} ({} unchanged since the parent, reused)",
            backup.num_objects, backup.num_objects_reused
        ),
    );
    fact(
        "Size",
        format!(
            "{} at the source · {} read · {} of new data · {} stored in the repository",
            bytes(backup.num_bytes),
            bytes(backup.bytes_read),
            bytes(backup.bytes_written),
            bytes(backup.bytes_stored)
        ),
    );
    if !backup.catalog_format.is_empty() {
        fact(
            "Catalog",
            format!(
                "{} layout, sequence {}",
                escape(&backup.catalog_format),
                backup.catalog_sequence
            ),
        );
    }
    if !backup.snapshot.is_empty() {
        fact("Copied from", escape(&backup.snapshot));
    }
    if backup.checkpoint_held_ms > 0 {
        fact("QuestDB held in checkpoint mode", duration_ms(backup.checkpoint_held_ms));
    }
    body.push_str("</dl></section>");
    body.push_str(&consistency(backup));
    body.push_str(&phases(backup));
    body.push_str(&exclusions(backup));
    if !backup.corrupt_objects.is_empty() {
        let rows: Vec<Row> = backup
            .corrupt_objects
            .iter()
            .map(|object| {
                Row::keyed("key", &object.key, vec![escape(&object.key), escape(&object.reason)])
            })
            .collect();
        body.push_str(&table(
            "corrupt",
            "Objects committed although damaged (--allow-corrupt)",
            &["Object", "What is wrong"],
            &rows,
        ));
    }
    if !backup.events.is_empty() {
        body.push_str("<section aria-labelledby=\"events-title\"><h2 id=\"events-title\">What happened on the live source</h2><ul>");
        for event in &backup.events {
            let _ = write!(body, "<li>{}</li>", escape(event));
        }
        body.push_str("</ul></section>");
    }
    (title, body)
}

fn drills(backup: &pb::Backup, now_ms: u64) -> String {
    let mut html = String::from("<section aria-labelledby=\"drills-title\"><h2 id=\"drills-title\">Restore drills</h2><div id=\"drills\">");
    if backup.drills.is_empty() {
        let _ = write!(
            html,
            "<p>{} Prove it restorable: <code>bkctl submit drill --backup {}</code></p>",
            status(Status::Warn, "never drilled"),
            escape(&backup.id)
        );
    }
    for drill in backup.drills.iter().rev() {
        let verdict = if drill.passed {
            status(Status::Good, "passed")
        } else {
            status(Status::Bad, "failed")
        };
        let _ = write!(
            html,
            "<article class=\"drill\" data-drill-job=\"{job}\" data-passed=\"{passed}\"><h3>{verdict} {at}</h3>\
             <p>{link} on <code>{worker}</code> · restored in {restore}{start} · {scratch} in scratch</p>",
            job = escape(&drill.job_id),
            passed = drill.passed,
            at = time(drill.at_ms, now_ms),
            link = job_link(&drill.job_id),
            worker = escape(&drill.worker_id),
            restore = duration_ms(drill.restore_ms),
            start = drill.start_ms.map(|ms| format!(" · database healthy after {}", duration_ms(ms))).unwrap_or_default(),
            scratch = bytes(drill.scratch_bytes),
        );
        if !drill.failure.is_empty() {
            let _ = write!(html, "<p class=\"failure\">{}</p>", escape(&drill.failure));
        }
        if !drill.log_file.is_empty() {
            let _ = write!(
                html,
                "<p>The database's log is kept on the worker at <code>{}</code>.</p>",
                escape(&drill.log_file)
            );
        }
        for warning in &drill.warnings {
            html.push_str(&flagged("warning", Status::Warn, "warning:", warning));
        }
        html.push_str("<details><summary>Checks and tables</summary><ul>");
        for check in &drill.checks {
            let _ = write!(html, "<li>{}</li>", escape(check));
        }
        html.push_str("</ul>");
        let rows: Vec<Row> = drill
            .tables
            .iter()
            .map(|t| {
                Row::keyed(
                    "table",
                    &t.table,
                    vec![
                        escape(&t.table),
                        t.rows.to_string(),
                        escape(&t.min_time),
                        escape(&t.max_time),
                        escape(&t.from),
                    ],
                )
            })
            .collect();
        html.push_str(&table(
            &format!("drill-{}-tables", escape(&drill.job_id)),
            "Tables the drill counted",
            &["Table", "Rows", "From", "To", "Asked"],
            &rows,
        ));
        html.push_str("</details></article>");
    }
    html.push_str("</div></section>");
    html
}

fn consistency(backup: &pb::Backup) -> String {
    if backup.consistency.is_empty() {
        return String::new();
    }
    let rows: Vec<Row> = backup
        .consistency
        .iter()
        .map(|point| {
            Row::keyed(
                "node",
                &point.node,
                vec![
                    escape(&point.node),
                    point.snapshot_sequence.to_string(),
                    point.snapshot_wal_sequence.to_string(),
                    point.last_wal_sequence.to_string(),
                    point.required_catalog_sequence.to_string(),
                ],
            )
        })
        .collect();
    table(
        "consistency",
        "Consistency point: the state each node restarts from",
        &["Node", "Snapshot", "Snapshot covers WAL", "Last WAL", "Catalog needed"],
        &rows,
    )
}

fn phases(backup: &pb::Backup) -> String {
    let rows: Vec<Row> = backup
        .phases
        .iter()
        .map(|phase| {
            Row::keyed(
                "phase",
                &phase.name,
                vec![
                    escape(&phase.name),
                    duration_ms(phase.finished_at_ms.saturating_sub(phase.started_at_ms)),
                    phase.num_objects.to_string(),
                    bytes(phase.num_bytes),
                ],
            )
        })
        .collect();
    table(
        "phases",
        "Phases of the job that wrote it",
        &["Phase", "Took", "Objects", "Bytes"],
        &rows,
    )
}

fn exclusions(backup: &pb::Backup) -> String {
    if backup.exclusions.is_empty() {
        return String::new();
    }
    let rows: Vec<Row> = backup
        .exclusions
        .iter()
        .map(|exclusion| {
            Row::keyed(
                "prefix",
                &exclusion.prefix,
                vec![
                    escape(&exclusion.prefix),
                    exclusion.num_objects.to_string(),
                    escape(&exclusion.reason),
                ],
            )
        })
        .collect();
    table("exclusions", "What was deliberately not copied", &["Prefix", "Objects", "Why"], &rows)
}
