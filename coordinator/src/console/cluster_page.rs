//! Workers and coordinator replicas: who leads, who lags, which worker went silent.

use bk_proto::pb;

use super::html::{bytes, duration_ms, escape, status, table, time, Row, Status};

/// `(live, body)`: the cluster page refreshes while open (liveness changes by the second).
pub(crate) fn cluster_page(
    cluster: &pb::ClusterStatusResponse,
    workers: &[pb::Worker],
    lease_timeout_ms: u64,
    now_ms: u64,
) -> (bool, String) {
    let replicas: Vec<Row> = cluster
        .replicas
        .iter()
        .map(|replica| {
            let role = match replica.role.as_str() {
                "leader" => status(Status::Good, "leader"),
                "learner" => status(Status::Busy, "learner"),
                other => status(Status::Good, other),
            };
            let lag = match replica.lag {
                Some(0) => status(Status::Good, "in step"),
                Some(lag) => status(Status::Warn, &format!("{lag} entries behind")),
                None => "–".to_string(),
            };
            Row::keyed(
                "replica",
                &replica.id.to_string(),
                vec![replica.id.to_string(), escape(&replica.address), role, lag],
            )
        })
        .collect();
    let mut body = format!(
        "<p class=\"summary\">Term {} · this replica ({}) applied index {} of {} · snapshot at {}</p>",
        cluster.term,
        cluster.replica_id,
        cluster.last_applied_index,
        cluster.last_log_index,
        cluster.snapshot_index
    );
    if cluster.leader_id == 0 {
        body.push_str(&format!(
            "<p>{}</p>",
            status(
                Status::Bad,
                "no leader known: an election is running or a majority of replicas is down"
            )
        ));
    }
    body.push_str(&table(
        "replicas",
        "Coordinator replicas (lag as the leader sees it)",
        &["Replica", "Address", "Role", "Replication"],
        &replicas,
    ));
    let rows: Vec<Row> = workers
        .iter()
        .map(|worker| {
            let seen = match worker.last_seen_ago_ms {
                Some(ago) if ago > lease_timeout_ms => {
                    status(Status::Bad, &format!("silent for {}", duration_ms(ago)))
                }
                Some(ago) => status(Status::Good, &format!("heard {} ago", duration_ms(ago))),
                None => status(Status::Unknown, "known to the leader only"),
            };
            let limit = match worker.max_bytes_per_second {
                0 => "unlimited".to_string(),
                limit => format!("{}/s", bytes(limit)),
            };
            Row::keyed(
                "worker",
                &worker.id,
                vec![
                    escape(&worker.id),
                    escape(&worker.source),
                    escape(&worker.node),
                    seen,
                    time(worker.registered_at_ms, now_ms),
                    format!("{} objects in flight, {limit}", worker.max_concurrent_objects),
                    worker
                        .store_retries
                        .map(|retries| retries.to_string())
                        .unwrap_or_else(|| "–".into()),
                ],
            )
        })
        .collect();
    body.push_str(&table(
        "workers",
        "Workers",
        &["Worker", "Source", "Node", "Liveness", "Registered", "Limits", "Store retries"],
        &rows,
    ));
    (true, body)
}
