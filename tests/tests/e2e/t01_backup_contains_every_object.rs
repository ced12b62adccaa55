//! The backup of a generated cluster holds every source object except the recorded exclusions,
//! each with the right size, and its blobs reassemble to the object's bytes.

use bk_tests::layout::LayoutParams;
use bk_tests::tree::hash_tree;

use crate::support::{read_backup_entries, Cluster, OpenedRepository};

#[test]
fn test_backup_holds_every_object_with_its_hash_minus_recorded_exclusions() {
    // Objects larger than the 64 KiB chunk size, so multi-chunk objects are exercised.
    let mut cluster = Cluster::new(LayoutParams::enterprise(8 << 20));
    cluster.start_all_workers();
    let (succeeded, job) = cluster.backup();
    assert!(succeeded, "backup failed: {job}");
    let backup_id = job["backup_id"].as_str().unwrap();

    let backup = cluster.sandbox.bkctl_json(&["show", backup_id]).unwrap();
    let excluded: Vec<&str> = backup["exclusions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|exclusion| exclusion["prefix"].as_str().unwrap())
        .collect();
    for node in cluster.nodes() {
        assert!(
            excluded.contains(&format!("{node}/table-snapshots/").as_str()),
            "{node}'s table-snapshots not recorded"
        );
    }

    let source = hash_tree(&cluster.store).unwrap();
    assert_eq!(
        source.keys().cloned().collect::<Vec<_>>(),
        cluster.generated.keys,
        "the store is not what was generated"
    );
    let (manifest, entries) = read_backup_entries(&cluster.repository, backup_id);
    let expected: Vec<&String> = source
        .keys()
        .filter(|key| !excluded.iter().any(|prefix| key.starts_with(prefix)))
        .collect();
    assert_eq!(
        entries.keys().collect::<Vec<_>>(),
        expected,
        "backup keys differ from source keys minus exclusions"
    );
    assert_eq!(manifest["num_objects"].as_u64().unwrap(), expected.len() as u64);
    assert_eq!(backup["num_objects"].as_u64().unwrap(), expected.len() as u64);

    let repository = OpenedRepository::open(&cluster.repository);
    let mut multi_chunk = 0;
    for (key, entry) in &entries {
        let (size, hash) = &source[key];
        assert_eq!(entry["size"].as_u64().unwrap(), *size, "size of {key}");
        let bytes = repository.object(entry);
        assert_eq!(
            blake3::hash(&bytes).to_hex().to_string(),
            *hash,
            "blobs of {key} do not reassemble into it"
        );
        multi_chunk += usize::from(entry["blobs"].as_array().unwrap().len() > 1);
    }
    assert!(
        multi_chunk > 0,
        "no object spanned several chunks; the test would not exercise chunking"
    );
    assert!(!cluster.repository.join("staging").exists(), "staging was not removed after commit");
}

#[test]
fn test_core_node_is_backed_up_with_its_catalog_copied_once() {
    let mut cluster = Cluster::new(LayoutParams::core(2 << 20));
    cluster.start_all_workers();
    let (succeeded, job) = cluster.backup();
    assert!(succeeded, "backup failed: {job}");
    let phases: Vec<&str> = job["phases"]
        .as_array()
        .unwrap()
        .iter()
        .map(|phase| phase["name"].as_str().unwrap())
        .collect();
    assert_eq!(phases, ["nodes", "catalog", "commit"]);
    let (_, entries) = read_backup_entries(&cluster.repository, job["backup_id"].as_str().unwrap());
    let catalog: Vec<&str> = entries
        .values()
        .filter(|entry| entry["key"].as_str().unwrap().starts_with("node0/catalog/"))
        .map(|entry| entry["phase"].as_str().unwrap())
        .collect();
    assert!(!catalog.is_empty(), "the Core catalog is missing");
    assert!(
        catalog.iter().all(|phase| *phase == "catalog"),
        "catalog objects copied outside the catalog phase"
    );
}

#[test]
fn test_waiting_without_a_terminal_prints_plain_progress_lines() {
    let mut cluster = Cluster::new(LayoutParams::enterprise(1 << 20));
    cluster.start_all_workers();
    // Table output with stderr not a terminal (a log file, CI, cron): progress as plain lines.
    let output = cluster
        .sandbox
        .bkctl(&["submit", "backup", "--source", "src", "--repo", "repo", "--wait"])
        .unwrap();
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    let stderr = String::from_utf8_lossy(&output.stderr);
    let line = stderr.lines().rfind(|line| line.contains("tasks done")).unwrap_or_else(|| {
        panic!("no progress line on stderr: {stderr}");
    });
    // The last line names the final state and counts each backed-up object once (checks and
    // the commit read the same objects again).
    let backups = cluster.sandbox.bkctl_json(&["backups", "-o", "json"]).unwrap();
    let objects = backups[0]["num_objects"].as_u64().unwrap();
    assert!(line.contains("stage succeeded: "), "{line}");
    assert!(line.contains(&format!(" {objects} objects, ")), "{line} (the backup holds {objects})");
    assert!(!stderr.contains('\u{1b}'), "terminal escapes in a non-terminal stream: {stderr}");
}
