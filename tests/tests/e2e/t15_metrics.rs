//! Prometheus metrics on the gRPC port: after a backup, the named series are there with the
//! values a user would expect.

use bk_tests::layout::LayoutParams;

use crate::support::{metric_value as value, scrape_metrics as scrape, Cluster};

#[test]
fn test_metrics_expose_jobs_tasks_backups_raft_and_workers_after_a_backup() {
    let mut cluster = Cluster::new(LayoutParams::enterprise(1 << 20));
    cluster.start_all_workers();
    let (succeeded, job) = cluster.backup();
    assert!(succeeded, "{job}");
    let body = scrape(cluster.sandbox.replica_endpoint(1));
    assert_eq!(value(&body, "bk_jobs{kind=\"backup\",state=\"succeeded\"}"), Some(1.0), "{body}");
    assert_eq!(value(&body, "bk_backups"), Some(1.0));
    assert!(value(&body, "bk_backup_bytes").unwrap() > 0.0);
    assert!(value(&body, "bk_tasks{state=\"succeeded\"}").unwrap() >= 20.0, "{body}");
    assert!(value(&body, "bk_task_duration_seconds_count").unwrap() >= 20.0);
    assert_eq!(value(&body, "bk_task_retries_total"), Some(0.0));
    assert_eq!(value(&body, "bk_raft_is_leader"), Some(1.0));
    assert!(value(&body, "bk_raft_last_applied_index").unwrap() > 0.0);
    assert_eq!(value(&body, "bk_workers_registered"), Some(4.0));
    assert!(
        value(&body, "bk_worker_last_seen_seconds{worker=\"src/node1\"}").unwrap() < 60.0,
        "{body}"
    );
    assert!(body.contains("# TYPE bk_jobs gauge"));
}

#[test]
fn test_status_summarises_cluster_workers_jobs_and_last_backups_and_yaml_matches_json() {
    let mut cluster = Cluster::new(LayoutParams::core(1 << 20));
    cluster.start_all_workers();
    let (succeeded, job) = cluster.backup();
    assert!(succeeded, "{job}");
    let status = cluster.sandbox.bkctl_json(&["status"]).unwrap();
    assert_eq!(status["cluster"]["replicas"].as_array().unwrap().len(), 1);
    assert_eq!(status["workers"].as_array().unwrap().len(), 1);
    assert_eq!(status["running_jobs"].as_array().unwrap().len(), 0);
    assert_eq!(status["last_backups"]["src"]["id"], job["backup_id"]);
    let yaml = cluster.sandbox.bkctl(&["-o", "yaml", "backups"]).unwrap();
    assert!(yaml.status.success());
    let from_yaml: serde_json::Value = yaml_serde::from_slice(&yaml.stdout).unwrap();
    assert_eq!(from_yaml, cluster.sandbox.bkctl_json(&["backups"]).unwrap());
}

#[test]
fn test_worker_metrics_count_tasks_bytes_and_heartbeats() {
    let mut cluster = Cluster::new(LayoutParams::enterprise(1 << 20));
    let mut addresses = Vec::new();
    for node in cluster.nodes() {
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let address = format!("127.0.0.1:{port}");
        let extra = format!("metrics_listen = \"{address}\"\nmax_bytes_per_second = 1073741824");
        cluster.sandbox.start_worker_with("src", &node, &cluster.store, &extra).unwrap();
        addresses.push(address);
    }
    let (succeeded, job) = cluster.backup();
    assert!(succeeded, "{job}");
    let backup = cluster.sandbox.bkctl_json(&["show", job["backup_id"].as_str().unwrap()]).unwrap();
    let mut bytes = 0.0;
    for (node, address) in cluster.nodes().iter().zip(&addresses) {
        let label = format!("{{worker=\"src/{node}\"}}");
        let body = cluster
            .sandbox
            .wait_until(std::time::Duration::from_secs(10), "a heartbeat counted", || {
                let body = scrape(address);
                (value(&body, &format!("bk_worker_heartbeats_total{label}"))? >= 1.0)
                    .then_some(body)
            })
            .unwrap();
        assert!(value(&body, &format!("bk_worker_tasks_succeeded_total{label}")).unwrap() >= 1.0);
        assert_eq!(value(&body, &format!("bk_worker_tasks_failed_total{label}")), Some(0.0));
        assert_eq!(
            value(&body, &format!("bk_worker_max_bytes_per_second{label}")),
            Some(1073741824.0),
            "{body}"
        );
        bytes += value(&body, &format!("bk_worker_bytes_total{label}")).unwrap();
    }
    // The limits are visible to operators in `bkctl workers` too.
    let workers = cluster.sandbox.bkctl_json(&["workers"]).unwrap();
    for worker in workers.as_array().unwrap() {
        assert_eq!(worker["max_bytes_per_second"], 1073741824, "{worker}");
        assert_eq!(worker["max_concurrent_objects"], 16, "{worker}");
    }
    // Every object of the backup was finished by some worker.
    assert!(bytes >= backup["num_bytes"].as_f64().unwrap(), "{bytes} < {backup}");
}

#[test]
fn test_reflection_lists_bk_services_in_v1_and_v1alpha() {
    use tokio_stream::StreamExt as _;
    let sandbox = bk_tests::sandbox::Sandbox::start().unwrap();
    let endpoint = format!("http://{}", sandbox.replica_endpoint(1));
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let (v1, v1alpha) = runtime.block_on(async {
        use tonic_reflection::pb::{v1, v1alpha};
        let channel =
            tonic::transport::Channel::from_shared(endpoint).unwrap().connect().await.unwrap();
        let mut client = v1::server_reflection_client::ServerReflectionClient::new(channel.clone());
        let request = v1::ServerReflectionRequest {
            host: String::new(),
            message_request: Some(v1::server_reflection_request::MessageRequest::ListServices(
                String::new(),
            )),
        };
        let mut answers = client
            .server_reflection_info(tokio_stream::iter([request]))
            .await
            .unwrap()
            .into_inner();
        let v1 = format!("{:?}", answers.next().await.unwrap().unwrap().message_response);
        let mut client = v1alpha::server_reflection_client::ServerReflectionClient::new(channel);
        let request = v1alpha::ServerReflectionRequest {
            host: String::new(),
            message_request: Some(
                v1alpha::server_reflection_request::MessageRequest::ListServices(String::new()),
            ),
        };
        let mut answers = client
            .server_reflection_info(tokio_stream::iter([request]))
            .await
            .unwrap()
            .into_inner();
        let v1alpha = format!("{:?}", answers.next().await.unwrap().unwrap().message_response);
        (v1, v1alpha)
    });
    for (version, listed) in [("v1", v1), ("v1alpha", v1alpha)] {
        for service in ["bk.v1.Control", "bk.v1.WorkerHub", "grpc.health.v1.Health"] {
            assert!(listed.contains(service), "{version} does not list {service}: {listed}");
        }
    }
}
