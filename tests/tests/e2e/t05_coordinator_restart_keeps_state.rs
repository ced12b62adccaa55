//! A coordinator killed with SIGKILL and started again on its data directory keeps every
//! source, repository, job and backup.

use bk_tests::layout::LayoutParams;

use crate::support::Cluster;

#[test]
fn test_killed_coordinator_comes_back_with_every_job_and_backup() {
    let mut cluster = Cluster::new(LayoutParams::enterprise(1 << 20));
    cluster.start_all_workers();
    let (succeeded, job) = cluster.backup();
    assert!(succeeded, "backup failed: {job}");
    let job_id = job["id"].as_str().unwrap().to_string();
    let before = (
        cluster.sandbox.bkctl_json(&["backups"]).unwrap(),
        cluster.sandbox.bkctl_json(&["sources"]).unwrap(),
        cluster.sandbox.bkctl_json(&["repos"]).unwrap(),
        cluster.sandbox.bkctl_json(&["job", &job_id]).unwrap(),
    );

    cluster.sandbox.restart_coordinator().unwrap();

    // Reads are served from the replayed state as soon as the replica answers.
    let after = cluster
        .sandbox
        .wait_until(
            std::time::Duration::from_secs(20),
            "the restarted coordinator to answer",
            || {
                Some((
                    cluster.sandbox.bkctl_json(&["backups"]).ok()?,
                    cluster.sandbox.bkctl_json(&["sources"]).ok()?,
                    cluster.sandbox.bkctl_json(&["repos"]).ok()?,
                    cluster.sandbox.bkctl_json(&["job", &job_id]).ok()?,
                ))
            },
        )
        .unwrap();
    assert_eq!(after.0, before.0, "backups changed across the restart");
    assert_eq!(after.1, before.1, "sources changed across the restart");
    assert_eq!(after.2, before.2, "repositories changed across the restart");
    assert_eq!(after.3["state"], "succeeded");
    assert_eq!(after.3["phases"], before.3["phases"], "task records changed across the restart");

    // And it keeps working: the workers re-register with the new process and a second backup runs.
    let (succeeded, second) = cluster.backup();
    assert!(succeeded, "backup after restart failed: {second}");
    assert_eq!(cluster.sandbox.bkctl_json(&["backups"]).unwrap().as_array().unwrap().len(), 2);
}
