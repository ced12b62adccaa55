//! Hot backups: InfluxDB 3 nodes keep writing, snapshotting and deleting while bk copies them.

use std::time::Duration;

use bk_tests::invariants::check_tree;
use bk_tests::layout::{generate, LayoutParams};
use bk_tests::live::{LiveCatalog, LiveNode, LiveParams, LiveWriter};
use bk_tests::tree::copy_tree;
use rand::rngs::StdRng;
use rand::SeedableRng;
use serde_json::Value;

use crate::support::Cluster;
use crate::t06_restore_round_trip::restore;

fn live_params(seed: u64) -> LiveParams {
    LiveParams { seed, snapshot_every: 2, keep_snapshotted_wal: 1, ..LiveParams::default() }
}

#[test]
fn test_the_vendor_copy_order_on_a_live_node_loses_wal_files() {
    // The vendor's recipe copies snapshots/, then dbs/, then wal/. A snapshot landing in between
    // deletes the WAL files right after the copied manifest's coverage. Deterministic: the test
    // drives the node tick by tick where the copy would take time.
    let dir = tempfile::tempdir().unwrap();
    let (source, copy) = (dir.path().join("source"), dir.path().join("copy"));
    generate(&source, &LayoutParams::enterprise(1 << 20)).unwrap();
    let params = live_params(11);
    let mut node = LiveNode::resume(&source, "node1").unwrap();
    let mut catalog = LiveCatalog::resume(&source, "cluster1").unwrap();
    let mut rng = StdRng::seed_from_u64(params.seed);
    let mut tick = |node: &mut LiveNode, catalog: &mut LiveCatalog| {
        catalog.tick(&params).unwrap();
        node.tick(&params, catalog.sequence(), &mut rng).unwrap();
    };
    tick(&mut node, &mut catalog);
    copy_tree(&source.join("node1/snapshots"), &copy.join("node1/snapshots")).unwrap();
    for _ in 0..4 {
        tick(&mut node, &mut catalog); // Two snapshots land while snapshots/ is "being copied".
    }
    copy_tree(&source.join("node1/dbs"), &copy.join("node1/dbs")).unwrap();
    copy_tree(&source.join("node1/wal"), &copy.join("node1/wal")).unwrap();
    copy_tree(&source.join("cluster1"), &copy.join("cluster1")).unwrap();
    let violations = check_tree(&copy, &["node1".to_string()], "cluster1").unwrap();
    assert!(
        violations
            .iter()
            .any(|violation| violation.contains("node1: WAL") && violation.contains("missing")),
        "the vendor order should lose WAL files here: {violations:?}"
    );
}

/// Backs up `cluster` while a live writer runs; returns (succeeded, job, restored invariants).
fn live_backup(
    cluster: &Cluster,
    params: LiveParams,
    interval: Duration,
) -> (bool, Value, Vec<String>) {
    let writer =
        LiveWriter::spawn(&cluster.store, &cluster.nodes(), "cluster1", params, interval).unwrap();
    let (succeeded, job) = cluster.backup();
    let ticks = writer.stop().unwrap();
    assert!(ticks > 0, "the live writer never ran");
    if !succeeded {
        return (false, job, Vec::new());
    }
    let target = cluster.sandbox.path().join(format!("restored-{}", job["id"].as_str().unwrap()));
    let (restored, restore_job) =
        restore(cluster, job["backup_id"].as_str().unwrap(), &target, &["--nodes-stopped"]);
    assert!(restored, "restore failed: {restore_job}");
    (true, job, check_tree(&target, &cluster.nodes(), "cluster1").unwrap())
}

fn job_events(job: &Value) -> Vec<String> {
    job["phases"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|phase| phase["tasks"].as_array().unwrap())
        .flat_map(|task| task["events"].as_array().unwrap())
        .map(|event| event.as_str().unwrap().to_string())
        .collect()
}

#[test]
fn test_backups_of_a_live_cluster_restore_to_a_restartable_state_over_many_seeds() {
    for seed in 1..=4 {
        let mut params = LayoutParams::enterprise(1 << 20);
        params.seed = seed;
        let mut cluster = Cluster::new(params);
        cluster.start_all_workers();
        let (succeeded, job, violations) =
            live_backup(&cluster, live_params(seed), Duration::from_millis(3));
        assert!(succeeded, "seed {seed}: live backup failed: {job}");
        assert!(
            violations.is_empty(),
            "seed {seed}: restored tree is not restartable: {violations:?}"
        );
        let backup =
            cluster.sandbox.bkctl_json(&["show", job["backup_id"].as_str().unwrap()]).unwrap();
        let points = backup["consistency"].as_array().unwrap();
        assert_eq!(points.len(), 4, "seed {seed}: one consistency point per node: {backup}");
        let required = points
            .iter()
            .map(|point| point["required_catalog_sequence"].as_u64().unwrap())
            .max()
            .unwrap();
        assert!(
            backup["catalog_sequence"].as_u64().unwrap() >= required,
            "seed {seed}: catalog older than a snapshot: {backup}"
        );
    }
}

#[test]
fn test_a_snapshot_landing_mid_copy_triggers_a_repair_visible_in_the_job() {
    let mut cluster = Cluster::new(LayoutParams::enterprise(1 << 20));
    cluster.start_all_workers();
    // Aggressive: a snapshot every tick, every snapshotted WAL file deleted at once.
    let aggressive = |seed| LiveParams {
        seed,
        snapshot_every: 1,
        keep_snapshotted_wal: 0,
        ..LiveParams::default()
    };
    for attempt in 1..=10 {
        let (succeeded, job, violations) =
            live_backup(&cluster, aggressive(attempt), Duration::from_millis(1));
        assert!(succeeded, "attempt {attempt}: live backup failed: {job}");
        assert!(
            violations.is_empty(),
            "attempt {attempt}: restored tree is not restartable: {violations:?}"
        );
        let repairs: Vec<String> = job_events(&job)
            .into_iter()
            .filter(|event| event.starts_with("repair round"))
            .collect();
        if !repairs.is_empty() {
            let backup =
                cluster.sandbox.bkctl_json(&["show", job["backup_id"].as_str().unwrap()]).unwrap();
            let recorded = backup["events"].to_string();
            assert!(
                recorded.contains("repair round"),
                "the backup does not record the repair: {recorded}"
            );
            return;
        }
    }
    panic!("no backup out of 10 needed a repair: the live writer is not racing the copy");
}

#[test]
fn test_a_source_that_stays_inconsistent_fails_the_job_and_commits_nothing() {
    // WAL 32 is gone for good (after the newest snapshot, which covers WAL 30): no repair can help.
    let mut cluster = Cluster::new(LayoutParams::enterprise(1 << 20));
    std::fs::remove_file(cluster.store.join("node2/wal/00000000032.wal")).unwrap();
    cluster.start_all_workers();
    let (succeeded, job) = cluster.backup();
    assert!(!succeeded, "an inconsistent node was backed up: {job}");
    let error = job["error"].as_str().unwrap();
    assert!(error.contains("node `node2` is still inconsistent after 5 repair rounds"), "{error}");
    assert!(error.contains("WAL 32..=32 missing"), "{error}");
    assert_eq!(cluster.sandbox.bkctl_json(&["backups"]).unwrap().as_array().unwrap().len(), 0);
    assert!(!cluster.repository.join("backups").exists(), "a manifest was written");
    assert!(!cluster.repository.join("staging").exists(), "staging was left behind");
}

#[test]
fn test_a_catalog_older_than_the_snapshots_need_is_refused_and_commits_nothing() {
    let mut cluster = Cluster::new(LayoutParams::enterprise(1 << 20));
    // The nodes snapshot against a catalog ahead of the one under `cluster1/` (as a node pointed
    // at another cluster's catalog would): node2's snapshots name sequences it does not hold.
    let params = LiveParams { catalog_lead: 1000, ..live_params(5) };
    let mut node = LiveNode::resume(&cluster.store, "node2").unwrap();
    let mut catalog = LiveCatalog::resume(&cluster.store, "cluster1").unwrap();
    let mut rng = StdRng::seed_from_u64(params.seed);
    for _ in 0..params.snapshot_every {
        catalog.tick(&params).unwrap();
        node.tick(&params, catalog.sequence(), &mut rng).unwrap();
    }
    cluster.start_all_workers();
    let (succeeded, job) = cluster.backup();
    assert!(!succeeded, "a backup whose catalog is older than its snapshots committed: {job}");
    let error = job["error"].as_str().unwrap();
    let expected = format!(
        "the catalog copied holds sequence {}, but the snapshots copied from node `node2` need catalog sequence {}",
        catalog.sequence(),
        catalog.sequence() + 1000
    );
    assert!(error.contains(&expected), "{error}");
    assert_eq!(cluster.sandbox.bkctl_json(&["backups"]).unwrap().as_array().unwrap().len(), 0);
}
