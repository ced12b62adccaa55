//! The coordinator scale test: many nodes, each with its own worker process, backed up at two
//! object counts per node. What it shows: the coordinator's memory, Raft log and state grow with
//! the number of tasks (nodes × prefixes), not with the number of objects the workers copy.

use std::path::Path;
use std::time::Duration;

use anyhow::Context;
use bk_tests::layout::{generate, LayoutParams};
use serde_json::{json, Value};

use crate::args::Args;
use crate::deployment::Deployment;
use crate::job_history;

/// What one scale run measured.
struct Measurement {
    objects_per_node: u32,
    objects: u64,
    bytes: u64,
    tasks: u64,
    submit_to_commit_seconds: f64,
    coordinator_peak_rss_bytes: u64,
    raft_log_entries: u64,
    raft_dir_bytes: u64,
    /// Leases the coordinator took back (should be 0: every worker stays alive).
    requeued: usize,
}

/// Runs the scale test at both object counts and reports them side by side.
///
/// # Errors
/// When a process cannot start, a worker does not register, or the backup fails.
pub(crate) fn run(args: &Args, root: &Path) -> anyhow::Result<()> {
    let history = job_history::measure(1_000, 10)?;
    println!(
        "job history: {} hourly backup jobs of a 10-node cluster, every job whole {:.1} MiB; \
         with the defaults (31 days, at most 5,000, the newest 10 with task details): {} jobs \
         kept, {:.1} MiB (×{:.2}), {} backups still listed",
        history.jobs,
        mib(history.state_bytes as u64),
        history.kept_jobs,
        mib(history.compacted_state_bytes as u64),
        history.compacted_state_bytes as f64 / history.state_bytes as f64,
        history.backups
    );
    let (low, high) = args.scale_objects;
    let mut measurements = Vec::new();
    for objects_per_node in [low, high] {
        let measurement = measure(args.scale_nodes, objects_per_node, root)?;
        if args.dir.is_none() {
            std::fs::remove_dir_all(root.join(format!("scale-{objects_per_node}")))?;
        }
        measurements.push(measurement);
    }
    print_and_write(args, &measurements, &history)
}

fn measure(nodes: usize, objects_per_node: u32, root: &Path) -> anyhow::Result<Measurement> {
    let dir = root.join(format!("scale-{objects_per_node}"));
    let cluster = dir.join("cluster");
    let params = LayoutParams::many_nodes(nodes, objects_per_node);
    println!("{nodes} nodes + compactor, ~{objects_per_node} objects per node: generating");
    let generated = generate(&cluster, &params).context("cannot generate the cluster")?;
    println!("starting the coordinator and {} worker processes", nodes + 1);
    let deployment = Deployment::start(&cluster, &params, "")?;
    let sandbox = &deployment.sandbox;
    sandbox.wait_until(Duration::from_secs(120), "every worker to register", || {
        let workers = sandbox.bkctl_json(&["workers"]).ok()?;
        let registered = workers.as_array().map_or(0, Vec::len);
        (registered > nodes).then_some(())
    })?;
    deployment.add_repository("repo", &format!("file://{}", dir.join("repo").display()), &[])?;
    println!("backing up {} objects", generated.keys.len());
    let (seconds, job) = deployment.timed_job(&["backup", "--source", "src", "--repo", "repo"])?;
    let cluster_status = sandbox.bkctl_json(&["cluster", "status"])?;
    let measurement = Measurement {
        objects_per_node,
        objects: generated.keys.len() as u64,
        bytes: generated.num_bytes,
        tasks: count_tasks(&job),
        submit_to_commit_seconds: seconds,
        coordinator_peak_rss_bytes: sandbox.replica_peak_rss_bytes(1).unwrap_or(0),
        raft_log_entries: cluster_status["last_log_index"].as_u64().unwrap_or(0),
        raft_dir_bytes: directory_bytes(&sandbox.path().join("coordinator-1"))?,
        requeued: std::fs::read_to_string(sandbox.path().join("coordinator-1.log"))
            .unwrap_or_default()
            .matches("re-queueing")
            .count(),
    };
    println!(
        "  {} tasks, {:.2} s submit→commit, coordinator peak RSS {:.1} MiB, {} Raft entries, \
         {:.1} MiB on disk, {} leases re-queued",
        measurement.tasks,
        measurement.submit_to_commit_seconds,
        mib(measurement.coordinator_peak_rss_bytes),
        measurement.raft_log_entries,
        mib(measurement.raft_dir_bytes),
        measurement.requeued
    );
    Ok(measurement)
}

fn count_tasks(job: &Value) -> u64 {
    job["phases"]
        .as_array()
        .map(|phases| {
            phases.iter().map(|phase| phase["tasks"].as_array().map_or(0, Vec::len) as u64).sum()
        })
        .unwrap_or(0)
}

pub(crate) fn directory_bytes(dir: &Path) -> anyhow::Result<u64> {
    let mut total = 0;
    for entry in std::fs::read_dir(dir).with_context(|| format!("cannot list {}", dir.display()))? {
        let entry = entry?;
        let metadata = entry.metadata()?;
        total += if metadata.is_dir() { directory_bytes(&entry.path())? } else { metadata.len() };
    }
    Ok(total)
}

fn mib(bytes: u64) -> f64 {
    bytes as f64 / f64::from(1 << 20)
}

fn print_and_write(
    args: &Args,
    measurements: &[Measurement],
    history: &job_history::HistorySize,
) -> anyhow::Result<()> {
    println!(
        "\n{} nodes + compactor, one worker process each (a single-replica coordinator)",
        args.scale_nodes
    );
    println!(
        "{:>12} {:>9} {:>7} {:>14} {:>12} {:>12} {:>12}",
        "objects", "MiB", "tasks", "submit→commit", "coord. RSS", "Raft entries", "Raft on disk"
    );
    for m in measurements {
        println!(
            "{:>12} {:>9.1} {:>7} {:>12.2} s {:>8.1} MiB {:>12} {:>8.1} MiB",
            m.objects,
            mib(m.bytes),
            m.tasks,
            m.submit_to_commit_seconds,
            mib(m.coordinator_peak_rss_bytes),
            m.raft_log_entries,
            mib(m.raft_dir_bytes)
        );
    }
    if let [low, high] = measurements {
        let ratio = |a: f64, b: f64| if b > 0.0 { a / b } else { f64::NAN };
        println!(
            "high / low: objects ×{:.1}, tasks ×{:.2}, coordinator RSS ×{:.2}, Raft entries ×{:.2}, \
             Raft on disk ×{:.2}, submit→commit ×{:.2}",
            ratio(high.objects as f64, low.objects as f64),
            ratio(high.tasks as f64, low.tasks as f64),
            ratio(high.coordinator_peak_rss_bytes as f64, low.coordinator_peak_rss_bytes as f64),
            ratio(high.raft_log_entries as f64, low.raft_log_entries as f64),
            ratio(high.raft_dir_bytes as f64, low.raft_dir_bytes as f64),
            ratio(high.submit_to_commit_seconds, low.submit_to_commit_seconds),
        );
    }
    let rows: Vec<Value> = measurements
        .iter()
        .map(|m| {
            json!({
                "objects_per_node": m.objects_per_node, "objects": m.objects, "bytes": m.bytes,
                "tasks": m.tasks, "submit_to_commit_seconds": m.submit_to_commit_seconds,
                "coordinator_peak_rss_bytes": m.coordinator_peak_rss_bytes,
                "raft_log_entries": m.raft_log_entries, "raft_dir_bytes": m.raft_dir_bytes,
                "leases_requeued": m.requeued,
            })
        })
        .collect();
    let history = json!({
        "jobs": history.jobs, "state_bytes": history.state_bytes, "kept_jobs": history.kept_jobs,
        "compacted_state_bytes": history.compacted_state_bytes, "backups": history.backups,
    });
    let document = json!({"nodes": args.scale_nodes, "runs": rows, "job_history": history});
    std::fs::write(&args.out, serde_json::to_string_pretty(&document)?)
        .with_context(|| format!("cannot write {}", args.out.display()))?;
    println!("written to {}", args.out.display());
    Ok(())
}
