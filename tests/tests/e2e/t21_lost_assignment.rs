//! A task whose assignment never reached its worker (the pull's answer lost to a timeout or a
//! broken connection) is taken back although the worker stays alive, and handed out again as
//! the next attempt. Played by a worker that speaks the WorkerHub protocol itself: it
//! registers, pulls a task, keeps heartbeating, and never says a word about the task.

use std::time::{Duration, Instant};

use bk_proto::pb;
use bk_proto::pb::worker_hub_client::WorkerHubClient;
use bk_tests::sandbox::Sandbox;
use tonic::transport::Channel;

use crate::support::{metric_value, register_core_source, scrape_metrics};

const WORKER_ID: &str = "core/node0";

async fn pull(client: &mut WorkerHubClient<Channel>) -> Option<pb::TaskAssignment> {
    let request = pb::PullTaskRequest { worker_id: WORKER_ID.to_string(), wait_ms: 500 };
    client.pull_task(request).await.ok()?.into_inner().task
}

#[tokio::test(flavor = "current_thread")]
async fn test_a_lease_the_worker_never_acknowledges_is_taken_back_and_handed_out_again() {
    let sandbox = Sandbox::start().unwrap();
    register_core_source(&sandbox);
    let submitted =
        sandbox.bkctl_json(&["submit", "backup", "--source", "core", "--repo", "repo"]).unwrap();
    let job_id = submitted["job_id"].as_str().unwrap().to_string();

    let endpoint = format!("http://{}", sandbox.endpoint());
    let mut client = WorkerHubClient::connect(endpoint).await.unwrap();
    let register = pb::RegisterWorkerRequest {
        worker_id: WORKER_ID.to_string(),
        source: "core".to_string(),
        node: "node0".to_string(),
        version: "test".to_string(),
        max_concurrent_objects: 1,
        max_bytes_per_second: 0,
        store_url: String::new(),
        repositories: Vec::new(),
        drills: false,
        snapshots: false,
    };
    client.register_worker(register).await.unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    let first = loop {
        if let Some(assignment) = pull(&mut client).await {
            break assignment;
        }
        assert!(Instant::now() < deadline, "no task was ever handed out");
    };
    assert_eq!(first.attempt, 1);

    // Alive (heartbeats) but silent about every task it pulls, as if the assignments had been
    // lost on the way. The node's other tasks are pulled (and lost) too.
    let deadline = Instant::now() + Duration::from_secs(30);
    let again = loop {
        let heartbeat = pb::HeartbeatRequest { worker_id: WORKER_ID.to_string(), store_retries: 0 };
        client.heartbeat(heartbeat).await.unwrap();
        if let Some(assignment) = pull(&mut client).await {
            if assignment.task_id == first.task_id {
                break assignment;
            }
        }
        assert!(
            Instant::now() < deadline,
            "the unacknowledged lease was never taken back; job: {}",
            sandbox.bkctl_json(&["job", &job_id]).unwrap()
        );
    };
    assert_eq!(again.attempt, 2, "the lost attempt was not fenced off");
    let metrics = scrape_metrics(sandbox.replica_endpoint(1));
    let requeued =
        metric_value(&metrics, "bk_leases_requeued_total{reason=\"never_acknowledged\"}");
    assert!(requeued.is_some_and(|count| count >= 1.0), "{metrics}");
    let silent = metric_value(&metrics, "bk_leases_requeued_total{reason=\"silent_worker\"}");
    assert_eq!(silent, Some(0.0), "the worker was never silent");
    let workers = sandbox.bkctl_json(&["workers"]).unwrap();
    assert!(
        workers[0]["last_seen_ago_ms"].as_u64().is_some_and(|ago| ago < 3000),
        "the worker should have counted as alive throughout: {workers}"
    );
}
