//! Verification finds damage object by object; restore refuses damaged objects and manifest
//! keys that would escape the target.

use std::path::Path;

use serde_json::Value;

use crate::support::read_backup_entries;
use crate::t06_restore_round_trip::{backed_up_cluster, restore};

fn verify(cluster: &crate::support::Cluster, backup_id: &str, deep: bool) -> (bool, Value) {
    let mut args = vec!["-o", "json", "submit", "verify", "--backup", backup_id, "--wait"];
    if deep {
        args.push("--deep");
    }
    let output = cluster.sandbox.bkctl(&args).unwrap();
    (output.status.success(), serde_json::from_slice(&output.stdout).unwrap())
}

fn problems(job: &Value) -> Vec<String> {
    job["phases"][0]["tasks"][0]["problems"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p.as_str().unwrap().to_string())
        .collect()
}

fn chunk_path(repository: &Path, hash: &str) -> std::path::PathBuf {
    repository.join(format!("chunks/{}/{hash}", &hash[..2]))
}

#[test]
fn test_a_flipped_byte_is_reported_by_deep_verify_and_stops_that_object_in_restore() {
    let (cluster, backup_id, _) = backed_up_cluster(1 << 20);
    let (succeeded, job) = verify(&cluster, &backup_id, true);
    assert!(succeeded, "deep verify of an intact backup failed: {job}");

    let (_, entries) = read_backup_entries(&cluster.repository, &backup_id);
    let victim = &entries["node2/snapshots/18446744073709551614.info.json"];
    let chunk = victim["chunks"][0].as_str().unwrap().to_string();
    let path = chunk_path(&cluster.repository, &chunk);
    let mut bytes = std::fs::read(&path).unwrap();
    bytes[0] ^= 0x01;
    std::fs::write(&path, bytes).unwrap();

    let (succeeded, job) = verify(&cluster, &backup_id, false);
    assert!(succeeded, "a present chunk passes the existence check: {job}");
    let (succeeded, job) = verify(&cluster, &backup_id, true);
    assert!(!succeeded, "deep verify missed a flipped byte: {job}");
    let found = problems(&job);
    assert_eq!(found.len(), 1, "{found:?}");
    assert!(
        found[0].contains("node2/snapshots/18446744073709551614.info.json")
            && found[0].contains(&chunk),
        "{found:?}"
    );
    assert!(found[0].contains("is corrupt"), "{found:?}");

    let target = cluster.sandbox.path().join("restored");
    let (succeeded, job) = restore(&cluster, &backup_id, &target, &["--nodes-stopped"]);
    assert!(!succeeded, "restore of a corrupt chunk succeeded: {job}");
    let error = job["error"].as_str().unwrap();
    assert!(
        error.contains("node2/snapshots/18446744073709551614.info.json") && error.contains(&chunk),
        "{error}"
    );
    assert!(
        !target.join("node2/snapshots/18446744073709551614.info.json").exists(),
        "the corrupt object became visible"
    );
}

#[test]
fn test_missing_chunk_is_reported_by_verify_object_by_object() {
    let (cluster, backup_id, _) = backed_up_cluster(1 << 20);
    let (_, entries) = read_backup_entries(&cluster.repository, &backup_id);
    let victim = &entries["cluster1/catalog/v3/snapshot"];
    let chunk = victim["chunks"][0].as_str().unwrap();
    std::fs::remove_file(chunk_path(&cluster.repository, chunk)).unwrap();
    for deep in [false, true] {
        let (succeeded, job) = verify(&cluster, &backup_id, deep);
        assert!(!succeeded, "deep={deep}: verify missed a missing chunk");
        let found = problems(&job);
        assert_eq!(found, [format!("object `cluster1/catalog/v3/snapshot`: chunk `{chunk}` is missing from the repository")]);
    }
}

#[test]
fn test_manifest_key_escaping_the_target_is_refused() {
    let (cluster, backup_id, _) = backed_up_cluster(1 << 20);
    // Tamper as an attacker with write access to the repository would: rewrite a key and fix the
    // segment hash in the manifest so the change is not caught as corruption.
    let manifest_path = cluster.repository.join(format!("backups/{backup_id}/manifest"));
    let mut manifest: Value =
        serde_json::from_slice(&std::fs::read(&manifest_path).unwrap()).unwrap();
    let segment_path = cluster.repository.join(manifest["segments"][0]["key"].as_str().unwrap());
    let segment = String::from_utf8(std::fs::read(&segment_path).unwrap()).unwrap();
    let tampered = segment.replacen("\"key\":\"node1/wal/", "\"key\":\"../escaped/", 1);
    assert_ne!(tampered, segment);
    std::fs::write(&segment_path, &tampered).unwrap();
    manifest["segments"][0]["blake3"] =
        Value::String(blake3::hash(tampered.as_bytes()).to_hex().to_string());
    std::fs::write(&manifest_path, serde_json::to_vec(&manifest).unwrap()).unwrap();

    let target = cluster.sandbox.path().join("restored");
    let (succeeded, job) = restore(&cluster, &backup_id, &target, &["--nodes-stopped"]);
    assert!(!succeeded, "restore followed an escaping key: {job}");
    assert!(job["error"].as_str().unwrap().contains("refusing manifest key `../escaped/"), "{job}");
    assert!(
        !cluster.sandbox.path().join("escaped").exists(),
        "an object was written outside the target"
    );
}
