//! What must hold before a backup may be committed, checked when its commit phase is about to
//! start (after every copy, consistency and catalog task succeeded). Pure.
//!
//! 1. **The catalog is at least as new as the data.** Every copied snapshot names the catalog
//!    sequence it was written against; InfluxDB panics loading a node whose WAL or snapshots name
//!    a database or table its catalog does not know (`queryable_buffer.rs:186`). The catalog is
//!    copied after all node data for this reason; if it still comes out older than a node
//!    needs, the backup is not one InfluxDB can load.
//! 2. **No object failed its format check**, unless the request said `--allow-corrupt` (then
//!    the backup records them).
//!
//! Either failure fails the job before its commit: nothing is committed.

use bk_proto::model::{CorruptObject, TaskKind, TaskReport};

/// Corrupt objects listed by name in a refusal; beyond, only their count.
const MAX_NAMED: usize = 20;

/// Why the job's backup must not be committed, if it must not: `reports` are the job's
/// succeeded tasks' reports with their kinds, in plan order.
pub fn commit_refusal(reports: &[(&TaskKind, &TaskReport)], allow_corrupt: bool) -> Option<String> {
    catalog_behind(reports).or_else(|| {
        let corrupt = corrupt_objects(reports);
        (!allow_corrupt && !corrupt.is_empty()).then(|| refuse_corrupt(&corrupt))
    })
}

/// Every object a task of the job found corrupt, in plan order.
pub fn corrupt_objects(reports: &[(&TaskKind, &TaskReport)]) -> Vec<CorruptObject> {
    reports.iter().flat_map(|(_, report)| report.corrupt.iter().cloned()).collect()
}

fn catalog_behind(reports: &[(&TaskKind, &TaskReport)]) -> Option<String> {
    let held = reports.iter().find_map(|(kind, report)| match kind {
        TaskKind::CopyCatalog { .. } => report.catalog_sequence,
        _ => None,
    })?;
    let (node, required) = reports
        .iter()
        .flat_map(|(_, report)| &report.consistency)
        .map(|point| (&point.node, point.required_catalog_sequence))
        .max_by_key(|(_, required)| *required)?;
    (held < required).then(|| {
        format!(
            "the catalog copied holds sequence {held}, but the snapshots copied from node `{node}` need catalog \
             sequence {required}: InfluxDB cannot load a node whose snapshots name databases or tables its catalog \
             does not know. Nothing was committed. Check that the catalog's prefix (the cluster id; the node id on \
             Core) is the one this cluster writes to, then back up again"
        )
    })
}

fn refuse_corrupt(corrupt: &[CorruptObject]) -> String {
    let mut named: Vec<String> =
        corrupt.iter().take(MAX_NAMED).map(|object| object.reason.clone()).collect();
    if corrupt.len() > MAX_NAMED {
        named.push(format!("… and {} more", corrupt.len() - MAX_NAMED));
    }
    format!(
        "{} source object(s) are damaged (they fail their database's own format check), so a restore would give \
         them back damaged; nothing was committed. Repair or remove them on the source, or pass --allow-corrupt to \
         commit anyway and record them: {}",
        corrupt.len(),
        named.join("; ")
    )
}

#[cfg(test)]
mod tests {
    use bk_proto::model::ConsistencyPoint;

    use super::*;

    fn catalog() -> TaskKind {
        TaskKind::CopyCatalog {
            catalog_prefix: "c/".into(),
            phase: bk_proto::model::CopyPhase::Catalog,
        }
    }

    fn node(name: &str, required: u64) -> TaskReport {
        TaskReport {
            consistency: Some(ConsistencyPoint {
                node: name.into(),
                snapshot_sequence: 1,
                snapshot_wal_sequence: 1,
                last_wal_sequence: 1,
                required_catalog_sequence: required,
                retention_deleted: Vec::new(),
            }),
            ..TaskReport::default()
        }
    }

    #[test]
    fn test_a_catalog_older_than_any_node_needs_is_refused_naming_both() {
        let check = TaskKind::RemoveStaging;
        let cases: Vec<(Option<u64>, Vec<u64>, Option<&str>)> = vec![
            (Some(30), vec![19, 30], None),
            (Some(31), vec![30], None),
            (Some(19), vec![12, 30], Some("holds sequence 19, but the snapshots copied from node `n1` need catalog sequence 30")),
            (None, vec![30], None), // v1 catalogs carry no sequence bk reads: nothing to compare.
            (Some(5), vec![], None),
        ];
        for (held, required, refusal) in cases {
            let catalog_report = TaskReport { catalog_sequence: held, ..TaskReport::default() };
            let nodes: Vec<TaskReport> = required
                .iter()
                .enumerate()
                .map(|(index, required)| node(&format!("n{index}"), *required))
                .collect();
            let kind = catalog();
            let mut reports: Vec<(&TaskKind, &TaskReport)> =
                nodes.iter().map(|report| (&check, report)).collect();
            reports.push((&kind, &catalog_report));
            let found = catalog_behind(&reports);
            match refusal {
                None => assert_eq!(found, None, "held {held:?}, required {required:?}"),
                Some(text) => {
                    let found = found.expect("refused");
                    assert!(found.contains(text), "{found}");
                }
            }
        }
    }

    #[test]
    fn test_corrupt_objects_are_all_named_and_counted() {
        let report = |keys: &[&str]| TaskReport {
            corrupt: keys
                .iter()
                .map(|key| CorruptObject {
                    key: key.to_string(),
                    reason: format!("WAL file `{key}`: bad"),
                })
                .collect(),
            ..TaskReport::default()
        };
        let (wal, other) = (report(&["n/wal/1.wal"]), report(&["n/dbs/x.parquet"]));
        let kind = TaskKind::RemoveStaging;
        let reports = vec![(&kind, &wal), (&kind, &other)];
        let corrupt = corrupt_objects(&reports);
        assert_eq!(corrupt.len(), 2);
        let refusal = refuse_corrupt(&corrupt);
        assert!(refusal.starts_with("2 source object(s)"), "{refusal}");
        assert!(refusal.contains("n/wal/1.wal") && refusal.contains("n/dbs/x.parquet"));
        assert!(refusal.contains("--allow-corrupt"));
    }
}
