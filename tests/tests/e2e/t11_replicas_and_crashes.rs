//! Nothing lost when a process dies: three coordinator replicas, leader failover mid-job, a
//! worker killed mid-copy, a partitioned replica, a full restart, a late replica.

use std::time::{Duration, Instant};

use bk_tests::layout::{generate, LayoutParams};
use bk_tests::sandbox::Sandbox;
use serde_json::Value;

use crate::support::{exclusion_prefixes, REGISTER_ENTERPRISE_SOURCE};
use crate::t06_restore_round_trip::assert_restored_identical;

/// Workers capped at 4 MiB/s with one object in flight: a backup takes seconds, long enough to
/// kill something in the middle of it.
/// One object at a time, at 4 MiB/s, saving its progress every second.
const SLOW_WORKER: &str =
    "max_concurrent_objects = 1\nmax_bytes_per_second = 4194304\nprogress_save_interval = \"1s\"";

/// A cluster with many parquet files, registered on `sandbox`, with slow workers (one object in
/// flight) so a backup takes long enough to be interrupted.
fn slow_cluster(sandbox: &mut Sandbox) -> (std::path::PathBuf, std::path::PathBuf) {
    let store = sandbox.path().join("store");
    let mut params = LayoutParams::enterprise(24 << 20);
    params.parquet_per_snapshot = 30;
    params.parquet_size = (32 << 10, 96 << 10);
    generate(&store, &params).unwrap();
    sandbox.bkctl_json(&REGISTER_ENTERPRISE_SOURCE).unwrap();
    let repository = sandbox.path().join("repository");
    sandbox
        .bkctl_json(&[
            "repo",
            "add",
            "repo",
            &format!("file://{}", repository.display()),
            "--chunk-size",
            "65536",
            // Small packs: a copy's progress is durable pack by pack.
            "--pack-size",
            "1MiB",
        ])
        .unwrap();
    for node in ["node1", "node2", "node3", "compactor"] {
        sandbox.start_worker_with("src", node, &store, SLOW_WORKER).unwrap();
    }
    (store, repository)
}

/// `bkctl -o json ARGS` against one replica only (no failover to the others); `None` on failure.
fn bkctl_at(endpoint: &str, args: &[&str]) -> Option<Value> {
    let output = std::process::Command::new(bk_tests::sandbox::binary("bkctl"))
        .args(["-o", "json", "--endpoint", endpoint])
        .args(args)
        .output()
        .ok()?;
    output.status.success().then(|| serde_json::from_slice(&output.stdout).ok()).flatten()
}

fn job(sandbox: &Sandbox, job_id: &str) -> Option<Value> {
    sandbox.bkctl_json(&["job", job_id]).ok()
}

fn tasks(job: &Value) -> Vec<Value> {
    job["phases"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|phase| phase["tasks"].as_array().unwrap().clone())
        .collect()
}

/// Waits for the job to end and returns it.
fn wait_for_end(sandbox: &Sandbox, job_id: &str) -> Value {
    sandbox
        .wait_until(Duration::from_secs(120), "the job to end", || {
            let job = job(sandbox, job_id)?;
            ["succeeded", "failed", "cancelled"].contains(&job["state"].as_str()?).then_some(job)
        })
        .unwrap()
}

fn restore_and_compare(sandbox: &Sandbox, job: &Value, store: &std::path::Path) {
    let backup = sandbox.bkctl_json(&["show", job["backup_id"].as_str().unwrap()]).unwrap();
    let exclusions = exclusion_prefixes(&backup);
    let target = sandbox.path().join("restored");
    let url = format!("file://{}", target.display());
    let output = sandbox
        .bkctl(&[
            "-o",
            "json",
            "submit",
            "restore",
            "--backup",
            job["backup_id"].as_str().unwrap(),
            "--target",
            &url,
            "--nodes-stopped",
            "--wait",
        ])
        .unwrap();
    assert!(output.status.success(), "restore failed: {}", String::from_utf8_lossy(&output.stdout));
    assert_restored_identical(store, &target, &exclusions);
}

#[test]
fn test_three_replicas_any_of_which_takes_writes_and_reads() {
    let sandbox = Sandbox::start_cluster(3, &[]).unwrap();
    let status = sandbox.bkctl_json(&["cluster", "status"]).unwrap();
    let roles: Vec<&str> = status["replicas"]
        .as_array()
        .unwrap()
        .iter()
        .map(|replica| replica["role"].as_str().unwrap())
        .collect();
    assert_eq!(roles.iter().filter(|role| **role == "leader").count(), 1, "{status}");
    assert_eq!(roles.iter().filter(|role| **role == "follower").count(), 2, "{status}");
    let leader = status["leader_id"].as_u64().unwrap();
    let follower = (1..=3).find(|id| *id != leader).unwrap();
    // A client that only knows a follower: its write reaches the leader, its read is local.
    let only_follower = ["--endpoint", sandbox.replica_endpoint(follower)];
    let run = |args: &[&str]| {
        let mut full = only_follower.to_vec();
        full.extend_from_slice(args);
        let output = std::process::Command::new(bk_tests::sandbox::binary("bkctl"))
            .args(full)
            .output()
            .unwrap();
        assert!(output.status.success(), "{args:?}: {}", String::from_utf8_lossy(&output.stderr));
        String::from_utf8(output.stdout).unwrap()
    };
    run(&["repo", "add", "repo", "file:///tmp/bk-unused"]);
    let repos = sandbox
        .wait_until(Duration::from_secs(10), "the follower to apply the write", || {
            let repos = run(&["-o", "json", "repos"]);
            repos.contains("bk-unused").then_some(repos)
        })
        .unwrap();
    assert!(repos.contains("\"name\": \"repo\""), "{repos}");
    let removed =
        sandbox.bkctl_json(&["cluster", "remove-replica", &follower.to_string()]).unwrap();
    assert_eq!(removed["removed"], true);
    let status = sandbox.bkctl_json(&["cluster", "status"]).unwrap();
    assert_eq!(status["replicas"].as_array().unwrap().len(), 2, "{status}");
}

#[test]
fn test_backup_survives_killing_the_leader_and_restores_byte_identical() {
    let mut failovers = Vec::new();
    for run in 1..=2 {
        let mut sandbox = Sandbox::start_cluster(3, &[]).unwrap();
        let (store, _) = slow_cluster(&mut sandbox);
        let submitted =
            sandbox.bkctl_json(&["submit", "backup", "--source", "src", "--repo", "repo"]).unwrap();
        let job_id = submitted["job_id"].as_str().unwrap().to_string();
        sandbox
            .wait_until(Duration::from_secs(60), "copy progress", || {
                let job = job(&sandbox, &job_id)?;
                tasks(&job)
                    .iter()
                    .any(|task| {
                        task["state"] == "running" && task["objects_done"].as_u64().unwrap_or(0) > 5
                    })
                    .then_some(())
            })
            .unwrap();
        let leader = sandbox.leader_id().unwrap();
        sandbox.kill_replica(leader);
        let killed_at = Instant::now();
        let killed_at_ms =
            std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_millis()
                as u64;
        sandbox
            .wait_until(Duration::from_secs(60), "task progress under a new leader", || {
                let new_leader = sandbox.leader_id().filter(|id| *id != leader)?;
                let job = job(&sandbox, &job_id)?;
                let progressing = tasks(&job).iter().any(|task| {
                    (task["state"] == "running" && task["objects_done"].as_u64().unwrap_or(0) > 0)
                        || task["finished_at_ms"].as_u64().unwrap_or(0) > killed_at_ms
                });
                (new_leader > 0 && progressing).then_some(())
            })
            .unwrap();
        failovers.push(killed_at.elapsed());
        let job = wait_for_end(&sandbox, &job_id);
        assert_eq!(job["state"], "succeeded", "run {run}: {job}");
        restore_and_compare(&sandbox, &job, &store);
    }
    failovers.sort();
    eprintln!("failover (leader killed -> task progress again), sorted: {failovers:?}");
}

#[test]
fn test_worker_killed_mid_copy_resumes_without_copying_again() {
    let mut sandbox = Sandbox::start().unwrap();
    let (store, _) = slow_cluster(&mut sandbox);
    let submitted =
        sandbox.bkctl_json(&["submit", "backup", "--source", "src", "--repo", "repo"]).unwrap();
    let job_id = submitted["job_id"].as_str().unwrap().to_string();
    let dbs_id = sandbox
        .wait_until(Duration::from_secs(60), "node1's dbs/ copy under way", || {
            let job = job(&sandbox, &job_id)?;
            let dbs = tasks(&job).into_iter().find(|task| task["label"] == "copy node1/dbs/")?;
            (dbs["state"] == "running").then(|| dbs["id"].as_str().map(str::to_string))?
        })
        .unwrap();
    // Kill it once a progress save (the record of objects copied so far) has reached staging.
    let staging = sandbox.path().join("repository/staging").join(&dbs_id).join("a1");
    sandbox
        .wait_until(Duration::from_secs(60), "a saved progress of node1's dbs/ copy", || {
            staging.join("progress").exists().then_some(())
        })
        .unwrap();
    sandbox.kill_worker("node1");
    // The lease (3 s here) expires: the task is runnable again, waiting for node1's worker.
    let reason = sandbox
        .wait_until(Duration::from_secs(30), "node1's lease to expire", || {
            let job = job(&sandbox, &job_id)?;
            let dbs = tasks(&job).into_iter().find(|task| task["label"] == "copy node1/dbs/")?;
            let reason = dbs["waiting_reason"].as_str()?.to_string();
            (dbs["state"] == "pending" && !reason.is_empty()).then_some(reason)
        })
        .unwrap();
    assert!(reason.contains("`src/node1` last seen"), "{reason}");
    sandbox.start_worker_with("src", "node1", &store, SLOW_WORKER).unwrap();
    let job = wait_for_end(&sandbox, &job_id);
    assert_eq!(job["state"], "succeeded", "{job}");
    let dbs = tasks(&job).into_iter().find(|task| task["label"] == "copy node1/dbs/").unwrap();
    assert!(dbs["attempt"].as_u64().unwrap() >= 2, "the task was not re-run: {dbs}");
    let events = dbs["events"].to_string();
    assert!(
        events.contains("reused") && events.contains("earlier attempt"),
        "objects were copied again: {dbs}"
    );
    restore_and_compare(&sandbox, &job, &store);
}

/// Registers `count` repositories: a quick way to grow the Raft log by `count` entries.
fn add_repositories(sandbox: &Sandbox, count: usize) {
    for index in 0..count {
        let (name, url) = (format!("repo{index}"), format!("file:///tmp/bk-{index}"));
        sandbox.bkctl_json(&["repo", "add", &name, &url]).unwrap();
    }
}

#[test]
fn test_partitioned_replica_catches_up_and_a_full_restart_loses_nothing() {
    let mut sandbox = Sandbox::start_cluster(3, &[]).unwrap();
    let leader = sandbox.leader_id().unwrap();
    let lagging = (1..=3).find(|id| *id != leader).unwrap();
    sandbox.kill_replica(lagging);
    add_repositories(&sandbox, 20);
    let expected = sandbox.bkctl_json(&["repos"]).unwrap();
    sandbox.start_replica(lagging).unwrap();
    let lagging_view = |sandbox: &Sandbox| bkctl_at(sandbox.replica_endpoint(lagging), &["repos"]);
    sandbox
        .wait_until(Duration::from_secs(20), "the partitioned replica to catch up", || {
            (lagging_view(&sandbox)? == expected).then_some(())
        })
        .unwrap();

    for id in 1..=3 {
        sandbox.kill_replica(id);
    }
    for id in 1..=3 {
        sandbox.start_replica(id).unwrap();
    }
    let after = sandbox
        .wait_until(Duration::from_secs(30), "a leader after the full restart", || {
            sandbox.leader_id()?;
            sandbox.bkctl_json(&["repos"]).ok()
        })
        .unwrap();
    assert_eq!(after, expected, "state changed across a restart of every replica");
}

/// A replica restarted after missing writes answers `job`, `jobs` and `backups` through the
/// leader: a job just submitted is found whichever replica is asked (the chaos campaign's seed
/// 331 listed jobs from a replica still catching up, missed a prune, and checked backups the
/// prune then removed). `--local` still reads the replica's own state, which may lag.
#[test]
fn test_reads_from_a_lagging_replica_include_the_job_just_submitted() {
    let mut sandbox = Sandbox::start_cluster(3, &[]).unwrap();
    let leader = sandbox.leader_id().unwrap();
    let lagging = (1..=3).find(|id| *id != leader).unwrap();
    sandbox.kill_replica(lagging);
    sandbox.register_source("src", &LayoutParams::enterprise(1 << 16)).unwrap();
    add_repositories(&sandbox, 1);
    // No worker runs: the backup stays queued, a job in the state all the same.
    let submitted =
        sandbox.bkctl_json(&["submit", "backup", "--source", "src", "--repo", "repo0"]).unwrap();
    let job_id = submitted["job_id"].as_str().unwrap().to_string();
    sandbox.start_replica(lagging).unwrap();
    let endpoint = sandbox.replica_endpoint(lagging).to_string();
    let found = bkctl_at(&endpoint, &["job", &job_id]);
    assert_eq!(found.as_ref().map(|job| &job["id"]), Some(&Value::from(job_id.clone())));
    let listed = bkctl_at(&endpoint, &["jobs"]).unwrap();
    assert!(
        listed.as_array().unwrap().iter().any(|job| job["id"] == job_id.as_str()),
        "the lagging replica's list misses job {job_id}: {listed}"
    );
    // Its own view catches up in time.
    sandbox
        .wait_until(Duration::from_secs(20), "the replica's own state to hold the job", || {
            bkctl_at(&endpoint, &["--local", "job", &job_id])
        })
        .unwrap();
}

#[test]
fn test_a_replica_added_after_log_compaction_catches_up_from_a_snapshot() {
    let env =
        [("BK_RAFT_SNAPSHOT_AFTER_ENTRIES", "10"), ("BK_RAFT_KEEP_ENTRIES_AFTER_SNAPSHOT", "2")];
    let mut sandbox = Sandbox::start_cluster(1, &env).unwrap();
    add_repositories(&sandbox, 40);
    let expected = sandbox.bkctl_json(&["repos"]).unwrap();
    let status = sandbox
        .wait_until(Duration::from_secs(10), "a snapshot on the leader", || {
            let status = sandbox.bkctl_json(&["cluster", "status"]).ok()?;
            (status["snapshot_index"].as_u64()? > 10).then_some(status)
        })
        .unwrap();
    assert!(status["snapshot_index"].as_u64().unwrap() > 10, "{status}");
    let (address, _) = sandbox.add_replica(2).unwrap();
    let status_of_new = || bkctl_at(&address, &["cluster", "status"]);
    let joined = sandbox
        .wait_until(Duration::from_secs(20), "the new replica to hold the state", || {
            let repos = bkctl_at(&address, &["repos"])?;
            (repos == expected).then(status_of_new).flatten()
        })
        .unwrap();
    assert!(
        joined["snapshot_index"].as_u64().unwrap() > 10,
        "the new replica did not start from a snapshot: {joined}"
    );
}
