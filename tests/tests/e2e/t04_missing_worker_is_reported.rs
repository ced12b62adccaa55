//! A job whose node has no running worker waits with a reason an operator can act on, and
//! proceeds once the worker starts.

use std::time::Duration;

use bk_tests::layout::LayoutParams;

use crate::support::Cluster;

#[test]
fn test_job_without_a_worker_shows_why_it_waits_then_completes_when_it_starts() {
    let mut cluster = Cluster::new(LayoutParams::enterprise(1 << 20));
    for node in ["node1", "node2", "node3"] {
        cluster.sandbox.start_worker("src", node, &cluster.store.clone()).unwrap();
    }
    let submitted = cluster
        .sandbox
        .bkctl_json(&["submit", "backup", "--source", "src", "--repo", "repo"])
        .unwrap();
    let job_id = submitted["job_id"].as_str().unwrap().to_string();
    let reason = cluster
        .sandbox
        .wait_until(Duration::from_secs(20), "a waiting reason on the compactor's tasks", || {
            let job = cluster.sandbox.bkctl_json(&["job", &job_id]).ok()?;
            let reason = job["phases"][0]["tasks"][0]["waiting_reason"].as_str()?.to_string();
            (!reason.is_empty()).then_some(reason)
        })
        .unwrap();
    assert!(reason.contains("none registered for node `compactor` of source `src`"), "{reason}");
    assert!(reason.contains("start `bk-worker`"), "{reason}");

    let store = cluster.store.clone();
    cluster.sandbox.start_worker("src", "compactor", &store).unwrap();
    let output = cluster.sandbox.bkctl(&["-o", "json", "watch", &job_id]).unwrap();
    assert!(
        output.status.success(),
        "job did not complete: {}",
        String::from_utf8_lossy(&output.stderr)
    );
}
