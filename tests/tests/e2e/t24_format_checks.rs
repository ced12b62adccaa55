//! bk vouches for what it backs up: files whose database-level integrity is broken (a WAL file
//! with a bad CRC, a catalog log with a bad payload CRC, a truncated snapshot manifest, a parquet
//! file without its closing magic) fail the backup, each named; `--allow-corrupt` commits them
//! and records them.

use bk_tests::layout::LayoutParams;
use serde_json::Value;

use crate::support::Cluster;

/// One damaged file of each kind InfluxDB 3 writes, damaged as disks and bugs do.
const DAMAGED: [&str; 4] = [
    "node1/wal/00000000030.wal",
    "cluster1/catalog/v3/logs/00000000000000000005.catalog",
    "node2/snapshots/18446744073709551613.info.json",
    "node3/dbs/1/0/2026-11-21/00-40/0000000005.parquet",
];

fn damage(cluster: &Cluster) {
    let path = |key: &str| cluster.store.join(key);
    let flip_last_byte = |key: &str| {
        let mut bytes = std::fs::read(path(key)).unwrap();
        let last = bytes.len() - 1;
        bytes[last] ^= 0x5A;
        std::fs::write(path(key), bytes).unwrap();
    };
    let truncate_by = |key: &str, cut: usize| {
        let bytes = std::fs::read(path(key)).unwrap();
        std::fs::write(path(key), &bytes[..bytes.len() - cut]).unwrap();
    };
    flip_last_byte(DAMAGED[0]); // Payload byte: the CRC no longer matches.
    flip_last_byte(DAMAGED[1]); // Payload byte: the header's payload CRC no longer matches.
    truncate_by(DAMAGED[2], 40); // A torn write: the JSON ends early.
    truncate_by(DAMAGED[3], 2); // The closing `PAR1` is cut.
}

fn backup(cluster: &Cluster, extra: &[&str]) -> (bool, Value) {
    let mut args =
        vec!["-o", "json", "submit", "backup", "--source", "src", "--repo", "repo", "--wait"];
    args.extend_from_slice(extra);
    let output = cluster.sandbox.bkctl(&args).unwrap();
    (output.status.success(), serde_json::from_slice(&output.stdout).unwrap())
}

#[test]
fn test_damaged_files_fail_the_backup_each_named_unless_allowed_and_recorded() {
    let mut cluster = Cluster::new(LayoutParams::enterprise(1 << 20));
    for key in DAMAGED {
        assert!(cluster.store.join(key).is_file(), "the layout has no `{key}`");
    }
    damage(&cluster);
    cluster.start_all_workers();

    let (succeeded, job) = backup(&cluster, &[]);
    assert!(!succeeded, "a backup of damaged files committed: {job}");
    let error = job["error"].as_str().unwrap();
    assert!(error.starts_with("4 source object(s) are damaged"), "{error}");
    for (key, what) in DAMAGED.iter().zip([
        "CRC32 mismatch",
        "payload CRC32 mismatch",
        "does not parse as JSON",
        "does not end with the `PAR1` magic",
    ]) {
        assert!(error.contains(key), "`{key}` not named: {error}");
        assert!(error.contains(what), "`{what}` not said: {error}");
    }
    assert!(error.contains("--allow-corrupt"), "{error}");
    let commit = job["phases"].as_array().unwrap().last().unwrap();
    assert_eq!(commit["name"], "commit");
    assert_eq!(commit["tasks"][0]["state"], "skipped", "the commit ran: {job}");
    assert_eq!(cluster.sandbox.bkctl_json(&["backups"]).unwrap().as_array().unwrap().len(), 0);

    let (succeeded, job) = backup(&cluster, &["--allow-corrupt"]);
    assert!(succeeded, "--allow-corrupt did not commit: {job}");
    let backup = cluster.sandbox.bkctl_json(&["show", job["backup_id"].as_str().unwrap()]).unwrap();
    let mut recorded: Vec<&str> = backup["corrupt_objects"]
        .as_array()
        .unwrap()
        .iter()
        .map(|object| object["key"].as_str().unwrap())
        .collect();
    recorded.sort_unstable();
    let mut expected = DAMAGED.to_vec();
    expected.sort_unstable();
    assert_eq!(recorded, expected, "{backup}");
    let table = cluster.sandbox.bkctl(&["show", job["backup_id"].as_str().unwrap()]).unwrap();
    let table = String::from_utf8_lossy(&table.stdout);
    assert!(table.contains("DAMAGED: 4 object(s)"), "{table}");
}
