//! `bkctl status`: the coordinator cluster, workers, running jobs and the last backup of each
//! source, in one call sequence and one screen.

use std::collections::BTreeMap;

use bk_proto::pb;
use serde_json::{json, Value};

use crate::client::Client;
use crate::render::{self, human_bytes};

/// Gathers the status document.
///
/// # Errors
/// The first failing call's status.
pub(crate) async fn gather(client: &Client) -> Result<Value, tonic::Status> {
    let cluster = client.cluster_status(pb::ClusterStatusRequest {}).await?;
    let workers = client.list_workers(pb::ListWorkersRequest {}).await?.workers;
    let jobs = client.list_jobs(pb::ListJobsRequest { limit: 0, local: false }).await?.jobs;
    let backups = client
        .list_backups(pb::ListBackupsRequest { source: String::new(), local: false })
        .await?
        .backups;
    let running: Vec<Value> =
        jobs.iter().filter(|job| !render::job_ended(job)).map(render::job_json).collect();
    // Backups are listed newest first: the first per source is its last.
    let mut last_backups: BTreeMap<String, Value> = BTreeMap::new();
    for backup in &backups {
        last_backups.entry(backup.source.clone()).or_insert_with(|| render::backup_json(backup));
    }
    Ok(json!({
        "cluster": render::cluster_json(&cluster),
        "workers": workers.iter().map(render::worker_json).collect::<Vec<_>>(),
        "running_jobs": running,
        "last_backups": last_backups,
    }))
}

/// Prints the status document as a table.
pub(crate) fn print(status: &Value) {
    let cluster = &status["cluster"];
    let replicas = cluster["replicas"].as_array().map_or(0, Vec::len);
    println!(
        "cluster   {replicas} replica(s), leader {}, term {}",
        cluster["leader_id"], cluster["term"]
    );
    let workers = status["workers"].as_array().cloned().unwrap_or_default();
    println!("workers   {} registered", workers.len());
    for worker in &workers {
        let seen = worker["last_seen_ago_ms"]
            .as_u64()
            .map_or("-".to_string(), |ms| format!("{:.1}s ago", ms as f64 / 1000.0));
        println!("          {:<28} last seen {seen}", worker["id"].as_str().unwrap_or(""));
    }
    let running = status["running_jobs"].as_array().cloned().unwrap_or_default();
    println!("running   {} job(s)", running.len());
    for job in &running {
        println!(
            "          {} {} {} ({})",
            job["id"].as_str().unwrap_or(""),
            job["kind"].as_str().unwrap_or(""),
            job["source"].as_str().unwrap_or(""),
            job["stage"].as_str().unwrap_or("")
        );
    }
    println!("backups   last per source");
    for (source, backup) in status["last_backups"].as_object().into_iter().flatten() {
        println!(
            "          {source:<16} {} {:>8} objects {:>10}",
            backup["id"].as_str().unwrap_or(""),
            backup["num_objects"],
            human_bytes(backup["num_bytes"].as_u64().unwrap_or(0))
        );
    }
}
