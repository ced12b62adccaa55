//! Restore guards refuse before anything is written: a running node, a non-empty target, a
//! backup with a missing chunk. `--wipe` deletes exactly the restore's prefixes and says so.

use std::net::TcpListener;

use bk_tests::tree::hash_tree;

use crate::support::{OpenedRepository, REGISTER_ENTERPRISE_SOURCE};
use crate::t06_restore_round_trip::{assert_restored_identical, backed_up_cluster, restore};

#[test]
fn test_node_whose_http_endpoint_answers_blocks_the_restore() {
    let (cluster, backup_id, _) = backed_up_cluster(1 << 20);
    // A listening socket stands in for node1's running HTTP server.
    let running_node = TcpListener::bind("127.0.0.1:0").unwrap();
    let endpoint = format!("node1=http://{}", running_node.local_addr().unwrap());
    let register: Vec<&str> =
        REGISTER_ENTERPRISE_SOURCE.iter().copied().chain(["--http", &endpoint]).collect();
    cluster.sandbox.bkctl_json(&register).unwrap();
    let target = cluster.sandbox.path().join("restored");
    let (succeeded, job) = restore(&cluster, &backup_id, &target, &["--nodes-stopped"]);
    assert!(!succeeded, "restore ran while node1 answers: {job}");
    let error = job["error"].as_str().unwrap();
    assert!(error.contains("node `node1` is running"), "{error}");
    assert!(!target.exists(), "a refused restore wrote into the target");

    drop(running_node); // node1 stopped: its port now refuses connections.
    let (succeeded, job) = restore(&cluster, &backup_id, &target, &["--nodes-stopped"]);
    assert!(succeeded, "restore after node1 stopped failed: {job}");
}

#[test]
fn test_nodes_that_cannot_be_checked_need_nodes_stopped() {
    let (cluster, backup_id, _) = backed_up_cluster(1 << 20);
    let target = cluster.sandbox.path().join("restored");
    let (succeeded, job) = restore(&cluster, &backup_id, &target, &[]);
    assert!(!succeeded);
    assert!(job.to_string().contains("--nodes-stopped"), "{job}");
    assert!(!target.exists());
}

#[test]
fn test_non_empty_target_is_refused_untouched_and_wipe_replaces_exactly_the_restored_prefixes() {
    let (cluster, backup_id, exclusions) = backed_up_cluster(1 << 20);
    let target = cluster.sandbox.path().join("restored");
    std::fs::create_dir_all(target.join("node1/wal")).unwrap();
    std::fs::write(target.join("node1/wal/99999999999.wal"), b"newer data").unwrap();
    std::fs::create_dir_all(target.join("unrelated")).unwrap();
    std::fs::write(target.join("unrelated/keep.txt"), b"not bk's").unwrap();
    let before = hash_tree(&target).unwrap();

    let (succeeded, job) = restore(&cluster, &backup_id, &target, &["--nodes-stopped"]);
    assert!(!succeeded, "restore over a non-empty target: {job}");
    let error = job["error"].as_str().unwrap();
    assert!(
        error.contains("not empty") && error.contains("node1/") && error.contains("--wipe"),
        "{error}"
    );
    assert_eq!(hash_tree(&target).unwrap(), before, "a refused restore changed the target");

    let (succeeded, job) = restore(&cluster, &backup_id, &target, &["--nodes-stopped", "--wipe"]);
    assert!(succeeded, "restore with --wipe failed: {job}");
    let wipe_warnings = job["phases"][1]["tasks"].to_string();
    assert!(wipe_warnings.contains("--wipe deleted 1 object(s) under `node1/`"), "{wipe_warnings}");
    assert_eq!(
        std::fs::read(target.join("unrelated/keep.txt")).unwrap(),
        b"not bk's",
        "wipe touched a prefix it does not restore"
    );
    std::fs::remove_dir_all(target.join("unrelated")).unwrap();
    assert_restored_identical(&cluster.store, &target, &exclusions);
}

#[test]
fn test_a_missing_pack_stops_the_restore_before_anything_is_written() {
    let (cluster, backup_id, _) = backed_up_cluster(1 << 20);
    // A pack the backup needs: not just any pack, since two workers storing the same blob at
    // once each pack it, and the index names only one of the two copies.
    let repository = OpenedRepository::open(&cluster.repository);
    let (_, entries) = repository.backup(&backup_id);
    let blob = entries
        .values()
        .find_map(|entry| entry["blobs"][0].as_str())
        .expect("the backup holds no blob");
    let pack = cluster.repository.join(repository.blob_location(blob).0);
    let pack_name = pack.file_name().unwrap().to_string_lossy().to_string();
    std::fs::remove_file(&pack).unwrap();
    let target = cluster.sandbox.path().join("restored");
    let (succeeded, job) = restore(&cluster, &backup_id, &target, &["--nodes-stopped"]);
    assert!(!succeeded, "restore with a missing pack: {job}");
    let error = job["error"].as_str().unwrap();
    assert!(error.contains(&pack_name) && error.contains("is missing"), "{error}");
    assert!(!target.exists(), "a refused restore wrote into the target");
}
