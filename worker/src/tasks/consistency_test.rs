use super::*;

fn snapshot(sequence: u64, wal: u64, parquet: &[&str], removed: &[&str]) -> (String, SnapshotInfo) {
    let info = SnapshotInfo {
        snapshot_sequence: sequence,
        wal_sequence: wal,
        catalog_sequence: sequence * 2,
        parquet: parquet.iter().map(|path| path.to_string()).collect(),
        removed: removed.iter().map(|path| path.to_string()).collect(),
    };
    (format!("n/snapshots/{:020}.info.json", u64::MAX - sequence), info)
}

/// (copied keys, snapshots, expected gap?, expected missing parquet, expected last WAL)
type Case<'a> = (Vec<&'a str>, Vec<(String, SnapshotInfo)>, bool, Vec<&'a str>, u64);

#[test]
fn test_assessment_table() {
    let wal = |sequence: u64| format!("n/wal/{sequence:011}.wal");
    let (w10, w11, w12, w13) = (wal(10), wal(11), wal(12), wal(13));
    let cases: Vec<Case> = vec![
        (
            vec![&w11, &w12, "n/dbs/a.parquet"],
            vec![snapshot(1, 10, &["n/dbs/a.parquet"], &[])],
            false,
            vec![],
            12,
        ),
        // The vendor-order failure: the copied manifest covers WAL 10, WAL 11 was deleted by a later snapshot.
        (
            vec![&w12, &w13, "n/dbs/a.parquet"],
            vec![snapshot(1, 10, &["n/dbs/a.parquet"], &[])],
            true,
            vec![],
            10,
        ),
        (vec![&w11, &w13], vec![snapshot(1, 10, &[], &[])], true, vec![], 11),
        // WAL files at or before W do not matter.
        (vec![&w10], vec![snapshot(1, 10, &[], &[])], false, vec![], 10),
        // A parquet file named by a manifest must be in the backup, unless a later one removed it.
        (
            vec![&w11],
            vec![snapshot(1, 10, &["n/dbs/a.parquet", "n/dbs/b.parquet"], &[])],
            false,
            vec!["n/dbs/a.parquet", "n/dbs/b.parquet"],
            11,
        ),
        (
            vec![&w12],
            vec![
                snapshot(1, 10, &["n/dbs/a.parquet"], &[]),
                snapshot(2, 11, &[], &["n/dbs/a.parquet"]),
            ],
            false,
            vec![],
            12,
        ),
        // The removal read before the manifest adding the file: the same.
        (
            vec![&w12],
            vec![
                snapshot(2, 11, &[], &["n/dbs/a.parquet"]),
                snapshot(1, 10, &["n/dbs/a.parquet"], &[]),
            ],
            false,
            vec![],
            12,
        ),
        // No snapshot yet: WAL must be contiguous from 1.
        (vec!["n/wal/00000000001.wal", "n/wal/00000000002.wal"], vec![], false, vec![], 2),
    ];
    for (keys, snapshots, gap, missing, last) in cases {
        let mut copy = NodeCopy::default();
        for key in &keys {
            copy.add_key("n", key);
        }
        for (key, info) in snapshots {
            copy.add_snapshot(&key, info);
        }
        let assessment = assess("n", &copy, &HashSet::new());
        assert_eq!(assessment.gap.is_some(), gap, "{keys:?}: {:?}", assessment.gap);
        assert_eq!(assessment.missing_parquet, missing, "{keys:?}");
        assert_eq!(assessment.point.last_wal_sequence, last, "{keys:?}");
    }
}

#[test]
fn test_a_parquet_file_copied_after_its_manifest_was_read_is_no_longer_missing() {
    let mut copy = NodeCopy::default();
    let (key, info) = snapshot(1, 0, &["n/dbs/a.parquet"], &[]);
    copy.add_snapshot(&key, info);
    assert_eq!(assess("n", &copy, &HashSet::new()).missing_parquet, ["n/dbs/a.parquet"]);
    copy.add_key("n", "n/dbs/a.parquet");
    assert!(assess("n", &copy, &HashSet::new()).missing_parquet.is_empty());
    assert!(copy.holds("n/dbs/a.parquet") && !copy.holds("n/dbs/b.parquet"));
    let retention: HashSet<String> = ["n/dbs/b.parquet".to_string()].into();
    let (key, info) = snapshot(2, 0, &["n/dbs/b.parquet"], &[]);
    copy.add_snapshot(&key, info);
    assert!(assess("n", &copy, &retention).missing_parquet.is_empty());
}

#[test]
fn test_snapshot_manifest_fields_are_read_from_influxdb_json() {
    let manifest = serde_json::json!({
        "version": "1", "node_id": "n", "next_file_id": 3, "snapshot_sequence_number": 7,
        "wal_file_sequence_number": 70, "catalog_sequence_number": 14, "parquet_size_bytes": 0,
        "row_count": 0, "min_time": 0, "max_time": 1,
        "databases": [[1, {"tables": [[0, [{"id": 1, "path": "n/dbs/1/0/x.parquet"}]], [1, [{"id": 2, "path": "n/dbs/1/1/y.parquet"}]]]}]],
        "removed_files": [[1, {"tables": [[0, [{"id": 0, "path": "n/dbs/1/0/old.parquet"}]]]}]]
    });
    let info = parse_snapshot(manifest.to_string().as_bytes()).unwrap();
    assert_eq!((info.snapshot_sequence, info.wal_sequence, info.catalog_sequence), (7, 70, 14));
    assert_eq!(info.parquet, ["n/dbs/1/0/x.parquet", "n/dbs/1/1/y.parquet"]);
    assert_eq!(info.removed, ["n/dbs/1/0/old.parquet"]);
    assert!(parse_snapshot(b"{}").unwrap_err().contains("snapshot_sequence_number"));
}
