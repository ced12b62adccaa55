//! Schedules: the leader submits a backup (and a prune) at each cron slot, a slot runs once even
//! when the leader dies, bad patterns are refused, and a removed schedule stops.

use std::collections::BTreeSet;
use std::time::Duration;

use bk_tests::layout::{generate, LayoutParams};
use bk_tests::sandbox::Sandbox;
use serde_json::Value;

use crate::support::REGISTER_ENTERPRISE_SOURCE;

/// Every job the schedule `name` submitted.
fn scheduled_jobs(sandbox: &Sandbox, name: &str) -> Vec<Value> {
    let jobs = sandbox.bkctl_json(&["jobs", "--limit", "10000"]).unwrap_or(Value::Null);
    jobs.as_array()
        .map(|jobs| jobs.iter().filter(|job| job["schedule"] == name).cloned().collect())
        .unwrap_or_default()
}

fn succeeded_backups(jobs: &[Value]) -> Vec<&Value> {
    jobs.iter().filter(|job| job["kind"] == "backup" && job["state"] == "succeeded").collect()
}

#[test]
fn test_schedule_runs_each_slot_once_across_a_leader_failover() {
    let mut sandbox = Sandbox::start_cluster(3, &[]).unwrap();
    let store = sandbox.path().join("store");
    generate(&store, &LayoutParams::enterprise(1 << 20)).unwrap();
    sandbox.bkctl_json(&REGISTER_ENTERPRISE_SOURCE).unwrap();
    let repository = format!("file://{}", sandbox.path().join("repository").display());
    sandbox.bkctl_json(&["repo", "add", "repo", &repository]).unwrap();
    for node in ["node1", "node2", "node3", "compactor"] {
        sandbox.start_worker("src", node, &store).unwrap();
    }

    // Bad input is refused with the reason, and nothing is registered.
    let bad = sandbox
        .bkctl(&["schedule", "add", "bad", "--source", "src", "--repo", "repo", "--cron", "often"])
        .unwrap();
    assert!(!bad.status.success());
    let stderr = String::from_utf8_lossy(&bad.stderr);
    assert!(stderr.contains("cron"), "{stderr}");
    let unknown = sandbox
        .bkctl(&[
            "schedule",
            "add",
            "x",
            "--source",
            "nope",
            "--repo",
            "repo",
            "--cron",
            "0 2 * * *",
        ])
        .unwrap();
    assert!(!unknown.status.success());
    assert!(String::from_utf8_lossy(&unknown.stderr).contains("nope"));
    assert_eq!(sandbox.bkctl_json(&["schedule", "list"]).unwrap(), Value::Array(vec![]));

    // Every two seconds, keeping the two newest backups.
    let every_two_seconds = [
        "schedule",
        "add",
        "often",
        "--source",
        "src",
        "--repo",
        "repo",
        "--cron",
        "*/2 * * * * *",
        "--prune-keep-last",
        "2",
    ];
    sandbox.bkctl_json(&every_two_seconds).unwrap();
    sandbox
        .wait_until(Duration::from_secs(120), "two scheduled backups", || {
            (succeeded_backups(&scheduled_jobs(&sandbox, "often")).len() >= 2).then_some(())
        })
        .unwrap();

    // The leader dies; the new one carries on from the replicated last run.
    let old_leader = sandbox.leader_id().unwrap();
    let before: BTreeSet<String> = scheduled_jobs(&sandbox, "often")
        .iter()
        .map(|job| job["id"].as_str().unwrap().to_string())
        .collect();
    sandbox.kill_replica(old_leader);
    sandbox
        .wait_until(Duration::from_secs(120), "two more scheduled backups", || {
            let new_leader = sandbox.leader_id()?;
            let jobs: Vec<Value> = scheduled_jobs(&sandbox, "often")
                .into_iter()
                .filter(|job| !before.contains(job["id"].as_str().unwrap()))
                .collect();
            (new_leader != old_leader && succeeded_backups(&jobs).len() >= 2).then_some(())
        })
        .unwrap();

    sandbox.bkctl_json(&["schedule", "remove", "often"]).unwrap();
    assert_eq!(sandbox.bkctl_json(&["schedule", "list"]).unwrap(), Value::Array(vec![]));
    let jobs = sandbox
        .wait_until(Duration::from_secs(120), "every scheduled job to end", || {
            let jobs = scheduled_jobs(&sandbox, "often");
            jobs.iter()
                .all(|job| {
                    ["succeeded", "failed", "cancelled"].contains(&job["state"].as_str().unwrap())
                })
                .then_some(jobs)
        })
        .unwrap();

    // One backup per slot, every slot on the pattern, and the prunes ran.
    let backups: Vec<&Value> = jobs.iter().filter(|job| job["kind"] == "backup").collect();
    let slots: BTreeSet<u64> =
        backups.iter().map(|job| job["schedule_slot_ms"].as_u64().unwrap()).collect();
    assert_eq!(slots.len(), backups.len(), "a slot ran twice: {jobs:?}");
    assert!(slots.iter().all(|slot| slot % 2000 == 0), "{slots:?}");
    assert!(
        jobs.iter().any(|job| job["kind"] == "prune" && job["state"] == "succeeded"),
        "no prune ran: {jobs:?}"
    );
    let failed: Vec<&Value> = jobs.iter().filter(|job| job["state"] != "succeeded").collect();
    assert!(failed.is_empty(), "scheduled jobs failed: {failed:?}");
}
