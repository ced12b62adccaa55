//! Restore gives back what was backed up: byte-identical, in reverse stage order, resumable.

use std::path::Path;

use bk_tests::layout::LayoutParams;
use bk_tests::tree::hash_tree;
use serde_json::Value;

use crate::support::{phase_windows, Cluster};

/// Backs up a generated cluster; returns it with the backup's id and recorded exclusions.
pub(crate) fn backed_up_cluster(size: u64) -> (Cluster, String, Vec<String>) {
    let mut cluster = Cluster::new(LayoutParams::enterprise(size));
    cluster.start_all_workers();
    let (succeeded, job) = cluster.backup();
    assert!(succeeded, "backup failed: {job}");
    let backup_id = job["backup_id"].as_str().unwrap().to_string();
    let backup = cluster.sandbox.bkctl_json(&["show", &backup_id]).unwrap();
    let exclusions = backup["exclusions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["prefix"].as_str().unwrap().to_string())
        .collect();
    (cluster, backup_id, exclusions)
}

/// Runs `bkctl -o json submit restore --wait` with `extra` flags; returns (success, job JSON).
pub(crate) fn restore(
    cluster: &Cluster,
    backup_id: &str,
    target: &Path,
    extra: &[&str],
) -> (bool, Value) {
    let url = format!("file://{}", target.display());
    let mut args =
        vec!["-o", "json", "submit", "restore", "--backup", backup_id, "--target", &url, "--wait"];
    args.extend_from_slice(extra);
    let output = cluster.sandbox.bkctl(&args).unwrap();
    let job = serde_json::from_slice(&output.stdout)
        .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&output.stderr).to_string()));
    (output.status.success(), job)
}

/// Asserts `target` holds exactly the source minus the exclusions, byte for byte.
pub(crate) fn assert_restored_identical(source: &Path, target: &Path, exclusions: &[String]) {
    let mut expected = hash_tree(source).unwrap();
    expected.retain(|key, _| !exclusions.iter().any(|prefix| key.starts_with(prefix)));
    let restored = hash_tree(target).unwrap();
    let missing: Vec<&String> =
        expected.keys().filter(|key| !restored.contains_key(*key)).collect();
    let extra: Vec<&String> = restored.keys().filter(|key| !expected.contains_key(*key)).collect();
    assert!(missing.is_empty() && extra.is_empty(), "missing {missing:?}, unexpected {extra:?}");
    for (key, value) in &expected {
        assert_eq!(&restored[key], value, "`{key}` differs after restore");
    }
}

fn tasks(job: &Value) -> Vec<&Value> {
    job["phases"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|phase| phase["tasks"].as_array().unwrap())
        .collect()
}

#[test]
fn test_restore_into_an_empty_dir_is_byte_identical_and_runs_the_stages_in_reverse() {
    let (cluster, backup_id, exclusions) = backed_up_cluster(6 << 20);
    let target = cluster.sandbox.path().join("restored");
    let (succeeded, job) = restore(&cluster, &backup_id, &target, &["--nodes-stopped"]);
    assert!(succeeded, "restore failed: {job}");
    assert_eq!(job["kind"], "restore");
    assert_restored_identical(&cluster.store, &target, &exclusions);

    let windows = phase_windows(&job);
    let names: Vec<&str> = windows.iter().map(|(name, _, _)| name.as_str()).collect();
    assert_eq!(names, ["preflight", "catalog", "licence", "nodes", "compactor"]);
    for pair in windows.windows(2) {
        let ((previous, _, finished), (next, started, _)) = (&pair[0], &pair[1]);
        assert!(
            started >= finished,
            "`{next}` started at {started} before `{previous}` finished at {finished}"
        );
    }
    // The target is another directory than the source store: the licence is bound to its path.
    let licence_warnings: Vec<&Value> =
        tasks(&job).into_iter().flat_map(|task| task["warnings"].as_array().unwrap()).collect();
    assert!(
        licence_warnings
            .iter()
            .any(|warning| warning.as_str().unwrap().contains("licences are bound")),
        "{licence_warnings:?}"
    );
    // Each node's objects were written by that node's worker.
    for task in job["phases"][3]["tasks"].as_array().unwrap() {
        assert_eq!(task["worker_id"], format!("src/{}", task["node"].as_str().unwrap()));
    }
}

#[test]
fn test_resumed_restore_keeps_what_is_right_and_repairs_the_rest() {
    let (cluster, backup_id, exclusions) = backed_up_cluster(2 << 20);
    let target = cluster.sandbox.path().join("restored");
    let (succeeded, job) = restore(&cluster, &backup_id, &target, &["--nodes-stopped"]);
    assert!(succeeded, "restore failed: {job}");
    // As if the first restore had died part-way: one object missing, one half-written.
    std::fs::remove_file(target.join("node2/wal/00000000030.wal")).unwrap();
    let damaged = target.join("node1/snapshots/18446744073709551614.info.json");
    let mut bytes = std::fs::read(&damaged).unwrap();
    bytes[10] ^= 0xff;
    std::fs::write(&damaged, bytes).unwrap();

    let (succeeded, job) = restore(&cluster, &backup_id, &target, &["--nodes-stopped"]);
    assert!(
        !succeeded,
        "a second restore over a non-empty target must be refused without --resume"
    );
    assert!(job["error"].as_str().unwrap().contains("--resume"), "{job}");

    let (succeeded, job) = restore(&cluster, &backup_id, &target, &["--nodes-stopped", "--resume"]);
    assert!(succeeded, "resumed restore failed: {job}");
    assert_restored_identical(&cluster.store, &target, &exclusions);
    let restored_tasks: Vec<&Value> = tasks(&job)
        .into_iter()
        .filter(|task| task["label"].as_str().unwrap().starts_with("restore"))
        .collect();
    let objects: u64 =
        restored_tasks.iter().map(|task| task["objects_done"].as_u64().unwrap()).sum();
    let skipped: u64 =
        restored_tasks.iter().map(|task| task["num_skipped"].as_u64().unwrap()).sum();
    assert_eq!(objects - skipped, 2, "exactly the missing and the damaged object are rewritten");
}
