//! Large objects are streamed: a worker backing up and restoring objects many times the chunk
//! size keeps its memory bounded by concurrency × chunk size plus the packs it fills and
//! uploads, not by object size.

use bk_tests::layout::LayoutParams;
use rand::rngs::StdRng;
use rand::{RngCore, SeedableRng};

use crate::support::{exclusion_prefixes, Cluster};
use crate::t06_restore_round_trip::{assert_restored_identical, restore};

const MIB: u64 = 1 << 20;
/// Two objects of 128 MiB on node1, against 1 MiB chunks and two objects in flight.
const LARGE_OBJECTS: u64 = 2;
const LARGE_OBJECT_SIZE: u64 = 128 * MIB;
/// What a worker process holds before any object: runtime, gRPC client, buffers (debug build).
const BASELINE: u64 = 40 * MIB;
/// The restore writes objects above 16 MiB as multipart uploads of 8 MiB parts, two in flight
/// plus the one being filled.
const RESTORE_PART: u64 = 8 * MIB;
const CHUNK_SIZE: u64 = MIB;
const IN_FLIGHT: u64 = 2;
/// Packs of the test's repository: the open one and up to four uploading are in memory, each
/// at most its size and one chunk.
const PACK_SIZE: u64 = 2 * MIB;
const PACKS_IN_MEMORY: u64 = 5;

#[test]
fn test_objects_many_times_the_chunk_size_keep_worker_memory_bounded() {
    let mut cluster = Cluster::new(LayoutParams::enterprise(MIB));
    // The same cluster, with large files in node1's database directory.
    let dbs = cluster.store.join("node1/dbs/large-1/table-1/2026-11-22/00-00");
    std::fs::create_dir_all(&dbs).unwrap();
    let mut rng = StdRng::seed_from_u64(7);
    let mut block = vec![0u8; MIB as usize];
    for index in 0..LARGE_OBJECTS {
        let mut bytes = Vec::with_capacity(LARGE_OBJECT_SIZE as usize);
        for _ in 0..LARGE_OBJECT_SIZE / MIB {
            rng.fill_bytes(&mut block);
            bytes.extend_from_slice(&block);
        }
        // A parquet file's framing, as the format check expects.
        bytes[..4].copy_from_slice(b"PAR1");
        let end = bytes.len();
        bytes[end - 4..].copy_from_slice(b"PAR1");
        std::fs::write(dbs.join(format!("{index:010}.parquet")), bytes).unwrap();
    }
    let url = format!("file://{}", cluster.sandbox.path().join("big-repository").display());
    cluster
        .sandbox
        .bkctl_json(&[
            "repo",
            "add",
            "big",
            &url,
            "--chunk-size",
            &CHUNK_SIZE.to_string(),
            "--pack-size",
            &PACK_SIZE.to_string(),
        ])
        .unwrap();
    let worker_config = format!("max_concurrent_objects = {IN_FLIGHT}");
    for node in cluster.nodes() {
        cluster.sandbox.start_worker_with("src", &node, &cluster.store, &worker_config).unwrap();
    }
    let output = cluster
        .sandbox
        .bkctl(&["-o", "json", "submit", "backup", "--source", "src", "--repo", "big", "--wait"])
        .unwrap();
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stdout));
    let job: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    let backup_id = job["backup_id"].as_str().unwrap();
    let after_backup = cluster.sandbox.worker_peak_rss_bytes("node1").unwrap();

    let target = cluster.sandbox.path().join("restored");
    let (restored, job) = restore(&cluster, backup_id, &target, &["--nodes-stopped"]);
    assert!(restored, "restore failed: {job}");
    let exclusions = exclusion_prefixes(&cluster.sandbox.bkctl_json(&["show", backup_id]).unwrap());
    assert_restored_identical(&cluster.store, &target, &exclusions);
    let after_restore = cluster.sandbox.worker_peak_rss_bytes("node1").unwrap();

    // Both bounds are below one object's size: buffering a whole object would break them.
    // Per object in flight: the chunk read ahead, the one being sealed and its sealed copy.
    let backup_bound =
        BASELINE + IN_FLIGHT * 3 * CHUNK_SIZE + PACKS_IN_MEMORY * (PACK_SIZE + CHUNK_SIZE);
    let restore_bound = BASELINE + IN_FLIGHT * 3 * RESTORE_PART;
    println!(
        "node1 worker peak RSS: {} MiB after backup (bound {} MiB), {} MiB after restore \
         (bound {} MiB); objects of {} MiB",
        after_backup / MIB,
        backup_bound / MIB,
        after_restore / MIB,
        restore_bound / MIB,
        LARGE_OBJECT_SIZE / MIB
    );
    assert!(after_backup < backup_bound, "backup peak RSS {after_backup} ≥ {backup_bound}");
    assert!(after_restore < restore_bound, "restore peak RSS {after_restore} ≥ {restore_bound}");
}

/// A worker runs next to a database node job after job, so its allocator must give back what a
/// job freed: it starts itself again with mimalloc set to purge freed pages at once and glibc's
/// malloc (for its C libraries) limited, unless the operator set a value, which wins.
#[test]
fn test_a_worker_runs_with_its_allocator_settings_and_an_operators_value_wins() {
    let mut sandbox = bk_tests::sandbox::Sandbox::start().unwrap();
    sandbox.set_worker_env(vec![("MALLOC_ARENA_MAX".to_string(), "3".to_string())]);
    let store = sandbox.path().join("store");
    std::fs::create_dir_all(&store).unwrap();
    sandbox.start_worker("src", "node1", &store).unwrap();
    let environment = sandbox.worker_environment("node1").unwrap();
    let value = |name: &str| {
        environment.iter().find(|(key, _)| key == name).map(|(_, value)| value.as_str())
    };
    assert_eq!(value("MIMALLOC_PURGE_DELAY"), Some("0"), "{environment:?}");
    assert_eq!(value("MALLOC_TRIM_THRESHOLD_"), Some("16777216"), "{environment:?}");
    assert_eq!(value("MALLOC_ARENA_MAX"), Some("3"), "the operator's value: {environment:?}");
}
