//! A node whose worker is gone (the node crashed with its sidecar) does not stall backups of a
//! cluster in a shared bucket: once its worker has been silent past the lease timeout, another
//! worker of the same source reading the same bucket copies that node's prefixes, and the
//! backup holds everything a backup with every worker alive holds.

use std::time::Duration;

use bk_tests::garage::{Garage, BUCKET, SECRET_ACCESS_KEY};
use bk_tests::layout::{generate, LayoutParams};
use bk_tests::sandbox::Sandbox;
use serde_json::Value;

use crate::support::{run_job, REGISTER_ENTERPRISE_SOURCE};

const NODES: [&str; 4] = ["node1", "node2", "node3", "compactor"];

#[test]
fn test_a_dead_nodes_prefixes_are_copied_by_a_worker_of_the_same_bucket() {
    let mut sandbox = Sandbox::start().unwrap();
    let garage_dir = sandbox.path().join("garage");
    let garage = Garage::start(&garage_dir).unwrap();
    let secret_file = garage_dir.join("secret-key");
    std::fs::write(&secret_file, SECRET_ACCESS_KEY).unwrap();
    let s3_options = garage.options_toml(&secret_file);

    // The cluster lands in the bucket the way an operator would put it there: a bk restore.
    let store = sandbox.path().join("store");
    generate(&store, &LayoutParams::enterprise(1 << 20)).unwrap();
    sandbox.bkctl_json(&REGISTER_ENTERPRISE_SOURCE).unwrap();
    let repository = format!("file://{}", sandbox.path().join("repository").display());
    sandbox.bkctl_json(&["repo", "add", "repo", &repository]).unwrap();
    for node in NODES {
        let tables =
            format!("[store]\nurl = \"file://{}\"\noptions = {s3_options}\n", store.display());
        sandbox.start_worker_toml("src", node, "", &tables).unwrap();
    }
    let seeded = run_job(&sandbox, &["submit", "backup", "--source", "src", "--repo", "repo"]);
    let bucket_cluster = format!("s3://{BUCKET}/cluster");
    let seeded_id = seeded["backup_id"].as_str().unwrap();
    run_job(
        &sandbox,
        &[
            "submit",
            "restore",
            "--backup",
            seeded_id,
            "--target",
            &bucket_cluster,
            "--nodes-stopped",
        ],
    );
    for node in NODES {
        sandbox.kill_worker(node);
    }

    // The bucket cluster, a worker per node; then node2 dies with its worker.
    let register: Vec<&str> = REGISTER_ENTERPRISE_SOURCE
        .iter()
        .map(|arg| if *arg == "src" { "s3src" } else { arg })
        .collect();
    sandbox.bkctl_json(&register).unwrap();
    for node in NODES {
        let tables = format!("[store]\nurl = \"{bucket_cluster}\"\noptions = {s3_options}\n");
        sandbox.start_worker_toml("s3src", node, "", &tables).unwrap();
    }
    sandbox
        .wait_until(Duration::from_secs(20), "every worker to register", || {
            let workers = sandbox.bkctl_json(&["workers"]).ok()?;
            let count = workers.as_array()?.iter().filter(|w| w["source"] == "s3src").count();
            (count == NODES.len()).then_some(())
        })
        .unwrap();
    sandbox.kill_worker("node2");

    let submitted =
        sandbox.bkctl_json(&["submit", "backup", "--source", "s3src", "--repo", "repo"]).unwrap();
    let job_id = submitted["job_id"].as_str().unwrap();
    let backup = sandbox
        .wait_until(Duration::from_secs(60), "the backup to end without node2's worker", || {
            let job = sandbox.bkctl_json(&["job", job_id]).ok()?;
            (job["state"] != "running" && job["state"] != "queued").then_some(job)
        })
        .unwrap();
    assert_eq!(backup["state"], "succeeded", "{backup}");
    let node2_tasks: Vec<&Value> = backup["phases"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|phase| phase["tasks"].as_array().unwrap())
        .filter(|task| task["node"] == "node2")
        .collect();
    assert!(!node2_tasks.is_empty());
    for task in node2_tasks {
        let worker = task["worker_id"].as_str().unwrap();
        assert!(worker.starts_with("s3src/") && worker != "s3src/node2", "{task}");
    }
    let shown = |id: &str| sandbox.bkctl_json(&["show", id]).unwrap();
    let (full, stood_in) = (shown(seeded_id), shown(backup["backup_id"].as_str().unwrap()));
    assert_eq!(stood_in["num_objects"], full["num_objects"], "objects missing from the backup");
    assert_eq!(stood_in["num_bytes"], full["num_bytes"]);
}
