//! `bench --scale --simulate 1000`: the coordinator under a thousand workers, simulated by this
//! process speaking the real `WorkerHub` protocol (register, heartbeat, long-poll pulls, results)
//! to a real three-replica coordinator cluster, on a source of a thousand data nodes. Tasks
//! succeed at once, so what is measured is the coordinator: its peak memory, its CPU per
//! heartbeat, its Raft log per job, the time from submit to commit, a leader killed mid-job,
//! and the replicated state after many jobs (with the job history's compaction).

use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use bk_proto::endpoints::ReplicaEndpoints;
use bk_proto::model::{TaskKind, TaskReport, TaskSpec};
use bk_proto::pb::worker_hub_client::WorkerHubClient;
use bk_proto::pb::{self, report_result_request::Outcome};
use bk_tests::layout::LayoutParams;
use bk_tests::sandbox::Sandbox;
use serde_json::{json, Value};
use tokio_util::sync::CancellationToken;

use crate::args::Args;

/// How often a simulated worker heartbeats (production's default).
const HEARTBEAT_INTERVAL: Duration = Duration::from_secs(5);
/// Simulated workers per gRPC connection set (HTTP/2 multiplexes their calls).
const WORKERS_PER_CONNECTION: usize = 100;
/// How long the idle coordinator is watched to price a heartbeat.
const IDLE_WINDOW: Duration = Duration::from_secs(30);

/// What the simulated workers counted.
#[derive(Default)]
struct Counters {
    heartbeats: AtomicU64,
    tasks: AtomicU64,
    failed_calls: AtomicU64,
}

/// Runs the simulation.
///
/// # Errors
/// When the coordinator cannot start, workers cannot register, or a job fails.
pub(crate) fn run(args: &Args, root: &Path, workers: usize) -> anyhow::Result<()> {
    let runtime = tokio::runtime::Runtime::new()?;
    let env = [
        ("BK_LEASE_TIMEOUT", "30s"),
        ("BK_RAFT_HEARTBEAT_INTERVAL", "100ms"),
        ("BK_RAFT_ELECTION_TIMEOUT", "1s"),
    ];
    let mut sandbox = Sandbox::start_cluster(3, &env)?;
    let params = LayoutParams::many_nodes(workers.saturating_sub(1).max(1), 1);
    sandbox.register_source("sim", &params)?;
    let repository = format!("file://{}", root.join("never-written").display());
    sandbox.bkctl_json(&["repo", "add", "repo", &repository])?;
    let nodes: Vec<String> =
        params.data_nodes.iter().chain(&params.compactor_node).cloned().collect();
    let counters = Arc::new(Counters::default());
    let stop = CancellationToken::new();
    println!("registering {} simulated workers", nodes.len());
    let started = Instant::now();
    let endpoints = sandbox.endpoint();
    let _workers = runtime.block_on(spawn_workers(&nodes, &endpoints, &counters, &stop))?;
    sandbox.wait_until(Duration::from_secs(120), "every worker to register", || {
        let registered = sandbox.bkctl_json(&["workers"]).ok()?.as_array().map_or(0, Vec::len);
        (registered >= nodes.len()).then_some(())
    })?;
    let registration_seconds = started.elapsed().as_secs_f64();
    println!("  registered in {registration_seconds:.1} s");

    let leader = sandbox.leader_id().context("no leader")?;
    let heartbeats_before = counters.heartbeats.load(Ordering::Relaxed);
    let cpu_before = sandbox.replica_cpu_seconds(leader).unwrap_or(0.0);
    std::thread::sleep(IDLE_WINDOW);
    let idle_cpu = sandbox.replica_cpu_seconds(leader).unwrap_or(0.0) - cpu_before;
    let idle_heartbeats = counters.heartbeats.load(Ordering::Relaxed) - heartbeats_before;
    let cpu_per_heartbeat_us = idle_cpu * 1e6 / idle_heartbeats.max(1) as f64;
    println!(
        "  idle {IDLE_WINDOW:?}: {idle_heartbeats} heartbeats, leader CPU {idle_cpu:.2} s ({cpu_per_heartbeat_us:.0} µs each)"
    );

    let raft_before = raft_bytes(&sandbox, leader)?;
    let entries_before = last_log_index(&sandbox)?;
    let (seconds, job) = timed_backup(&sandbox)?;
    let tasks = count_tasks(&job);
    let raft_per_job = raft_bytes(&sandbox, leader)?.saturating_sub(raft_before);
    let entries_per_job = last_log_index(&sandbox)?.saturating_sub(entries_before);
    println!(
        "  backup of {} nodes: {tasks} tasks, submit→commit {seconds:.2} s, Raft {entries_per_job} entries, {:.1} MiB",
        nodes.len(),
        raft_per_job as f64 / f64::from(1 << 20)
    );

    let failover = kill_leader_mid_job(&mut sandbox)?;
    println!(
        "  leader {} killed with {} of {} tasks done: the job succeeded {:.2} s after the kill ({:.2} s in all)",
        failover.killed, failover.done_at_kill, failover.tasks, failover.after_kill_seconds, failover.total_seconds
    );
    let leader = sandbox.leader_id().context("no leader after the failover")?;
    let (jobs_run, join_seconds, state_bytes) = join_a_replica(&mut sandbox, leader)?;
    let peak_rss: Vec<u64> = (1..=4).filter_map(|id| sandbox.replica_peak_rss_bytes(id)).collect();
    println!(
        "  after {jobs_run} jobs: a new replica caught up in {join_seconds:.2} s (the leader's Raft files: {:.1} MiB)",
        state_bytes as f64 / f64::from(1 << 20)
    );
    stop.cancel();
    let history = crate::job_history::measure(720, nodes.len() - 1)?;
    println!(
        "  a month of hourly jobs of this cluster ({} jobs): state {:.1} MiB with the newest 10 keeping task details, \
         {:.1} MiB without compaction",
        history.jobs,
        history.compacted_state_bytes as f64 / f64::from(1 << 20),
        history.state_bytes as f64 / f64::from(1 << 20)
    );
    let document = json!({
        "workers": nodes.len(), "registration_seconds": registration_seconds,
        "idle_heartbeats": idle_heartbeats, "idle_leader_cpu_seconds": idle_cpu,
        "leader_cpu_per_heartbeat_us": cpu_per_heartbeat_us,
        "tasks_per_job": tasks, "submit_to_commit_seconds": seconds,
        "raft_bytes_per_job": raft_per_job, "raft_entries_per_job": entries_per_job,
        "raft_bytes_per_task": raft_per_job as f64 / tasks.max(1) as f64,
        "failover": { "killed_replica": failover.killed, "tasks_done_at_kill": failover.done_at_kill,
                      "seconds_after_kill": failover.after_kill_seconds, "total_seconds": failover.total_seconds },
        "coordinator_peak_rss_bytes": peak_rss,
        "joined_replica": { "jobs_before": jobs_run, "catch_up_seconds": join_seconds, "snapshot_bytes": state_bytes },
        "month_of_hourly_jobs": { "jobs": history.jobs, "state_bytes": history.compacted_state_bytes,
                                  "state_bytes_without_compaction": history.state_bytes },
        "simulated": { "heartbeats": counters.heartbeats.load(Ordering::Relaxed),
                       "tasks": counters.tasks.load(Ordering::Relaxed),
                       "failed_calls": counters.failed_calls.load(Ordering::Relaxed) },
    });
    println!(
        "coordinator peak RSS per replica: {:?} MiB",
        peak_rss.iter().map(|b| b >> 20).collect::<Vec<_>>()
    );
    std::fs::write(&args.out, serde_json::to_string_pretty(&document)?)?;
    println!("written to {}", args.out.display());
    Ok(())
}

/// Starts one task per worker: register, then heartbeat and pull until `stop`.
async fn spawn_workers(
    nodes: &[String],
    endpoints: &str,
    counters: &Arc<Counters>,
    stop: &CancellationToken,
) -> anyhow::Result<Vec<tokio::task::JoinHandle<()>>> {
    let mut connections = Vec::new();
    for _ in 0..nodes.len().div_ceil(WORKERS_PER_CONNECTION) {
        connections.push(Arc::new(ReplicaEndpoints::parse(endpoints, None)?));
    }
    Ok(nodes
        .iter()
        .enumerate()
        .map(|(index, node)| {
            let worker = Simulated {
                id: format!("sim/{node}"),
                node: node.clone(),
                endpoints: connections[index / WORKERS_PER_CONNECTION].clone(),
                counters: counters.clone(),
            };
            tokio::spawn(worker.run(stop.clone()))
        })
        .collect())
}

/// One simulated worker: its tasks succeed at once.
struct Simulated {
    id: String,
    node: String,
    endpoints: Arc<ReplicaEndpoints>,
    counters: Arc<Counters>,
}

impl Simulated {
    async fn run(self, stop: CancellationToken) {
        self.register().await;
        let worker = Arc::new(self);
        // Heartbeats on their own, as bk-worker sends them: a pull is never cut short (a pull
        // dropped while the leader leases it a task loses that assignment).
        let beating = worker.clone();
        let beat_stop = stop.clone();
        tokio::spawn(async move {
            let mut heartbeat = tokio::time::interval(HEARTBEAT_INTERVAL);
            heartbeat.tick().await;
            loop {
                tokio::select! {
                    _ = beat_stop.cancelled() => return,
                    _ = heartbeat.tick() => beating.heartbeat().await,
                }
            }
        });
        loop {
            let pulled = tokio::select! {
                _ = stop.cancelled() => return,
                pulled = worker.pull() => pulled,
            };
            if let Some(assignment) = pulled {
                worker.finish(assignment).await;
            }
        }
    }

    async fn register(&self) {
        let request = pb::RegisterWorkerRequest {
            worker_id: self.id.clone(),
            source: "sim".into(),
            node: self.node.clone(),
            version: "simulated".into(),
            max_concurrent_objects: 16,
            max_bytes_per_second: 0,
            store_url: "file:///simulated".into(),
            repositories: vec!["*".into()],
            drills: false,
            snapshots: false,
        };
        while self
            .endpoints
            .call(3, |channel| {
                let request = request.clone();
                async move { WorkerHubClient::new(channel).register_worker(request).await }
            })
            .await
            .is_err()
        {
            self.counters.failed_calls.fetch_add(1, Ordering::Relaxed);
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    async fn heartbeat(&self) {
        let request = pb::HeartbeatRequest { worker_id: self.id.clone(), store_retries: 0 };
        let answered = self
            .endpoints
            .call(2, |channel| {
                let request = request.clone();
                async move { WorkerHubClient::new(channel).heartbeat(request).await }
            })
            .await;
        match answered {
            Ok(response) => {
                self.counters.heartbeats.fetch_add(1, Ordering::Relaxed);
                if response.into_inner().must_register {
                    self.register().await;
                }
            }
            Err(_) => {
                self.counters.failed_calls.fetch_add(1, Ordering::Relaxed);
            }
        }
    }

    async fn pull(&self) -> Option<pb::TaskAssignment> {
        let request = pb::PullTaskRequest { worker_id: self.id.clone(), wait_ms: 10_000 };
        let answered = self
            .endpoints
            .call(2, |channel| {
                let request = request.clone();
                async move { WorkerHubClient::new(channel).pull_task(request).await }
            })
            .await;
        match answered {
            Ok(response) => response.into_inner().task,
            Err(_) => {
                self.counters.failed_calls.fetch_add(1, Ordering::Relaxed);
                tokio::time::sleep(Duration::from_millis(200)).await;
                None
            }
        }
    }

    /// Reports the task done, with what the coordinator needs of its kind.
    async fn finish(&self, assignment: pb::TaskAssignment) {
        let spec: Option<TaskSpec> = serde_json::from_slice(&assignment.spec_json).ok();
        let mut report = TaskReport::default();
        if let Some(spec) = &spec {
            report.repository_config = Some("simulated".into());
            if let TaskKind::CommitBackup { backup_id, .. } = &spec.kind {
                report.manifest_key = Some(format!("backups/{backup_id}/manifest"));
            }
        }
        let request = pb::ReportResultRequest {
            worker_id: self.id.clone(),
            task_id: assignment.task_id,
            attempt: assignment.attempt,
            outcome: Some(Outcome::ReportJson(serde_json::to_vec(&report).unwrap_or_default())),
        };
        let answered = self
            .endpoints
            .call(5, |channel| {
                let request = request.clone();
                async move { WorkerHubClient::new(channel).report_result(request).await }
            })
            .await;
        match answered {
            Ok(_) => self.counters.tasks.fetch_add(1, Ordering::Relaxed),
            Err(_) => self.counters.failed_calls.fetch_add(1, Ordering::Relaxed),
        };
    }
}

fn timed_backup(sandbox: &Sandbox) -> anyhow::Result<(f64, Value)> {
    let started = Instant::now();
    let output = sandbox.bkctl(&[
        "-o", "json", "submit", "backup", "--source", "sim", "--repo", "repo", "--wait",
    ])?;
    let seconds = started.elapsed().as_secs_f64();
    anyhow::ensure!(
        output.status.success(),
        "the backup failed: {}",
        String::from_utf8_lossy(&output.stdout)
    );
    Ok((seconds, serde_json::from_slice(&output.stdout)?))
}

struct Failover {
    killed: u64,
    tasks: u64,
    done_at_kill: u64,
    after_kill_seconds: f64,
    total_seconds: f64,
}

/// Submits a backup, kills the leader once about a third of its tasks are done, and waits for
/// the job to succeed under the new leader.
fn kill_leader_mid_job(sandbox: &mut Sandbox) -> anyhow::Result<Failover> {
    let started = Instant::now();
    let submitted =
        sandbox.bkctl_json(&["submit", "backup", "--source", "sim", "--repo", "repo"])?;
    let job_id = submitted["job_id"].as_str().context("no job id")?.to_string();
    // Polled once a second: rendering a job of 5,000 tasks is work for the leader too.
    let (tasks, done_at_kill) = loop {
        let job = sandbox.bkctl_json(&["job", &job_id])?;
        let (total, done) = task_counts(&job);
        if done * 3 >= total {
            break (total, done);
        }
        anyhow::ensure!(
            started.elapsed() < Duration::from_secs(300),
            "a third of the tasks never got done"
        );
        std::thread::sleep(Duration::from_secs(1));
    };
    let killed = sandbox.leader_id().context("no leader")?;
    sandbox.kill_replica(killed);
    let killed_at = Instant::now();
    let state = loop {
        let jobs = sandbox.bkctl_json(&["jobs"]).unwrap_or_default();
        let state = jobs
            .as_array()
            .into_iter()
            .flatten()
            .find(|job| job["id"] == job_id.as_str())
            .and_then(|job| job["state"].as_str().map(str::to_string))
            .unwrap_or_default();
        if ["succeeded", "failed", "cancelled"].contains(&state.as_str()) {
            break state;
        }
        anyhow::ensure!(
            killed_at.elapsed() < Duration::from_secs(600),
            "the job never ended after the failover"
        );
        std::thread::sleep(Duration::from_millis(250));
    };
    anyhow::ensure!(state == "succeeded", "the job ended {state} after the failover");
    let after_kill_seconds = killed_at.elapsed().as_secs_f64();
    sandbox.start_replica(killed)?;
    Ok(Failover {
        killed,
        tasks,
        done_at_kill,
        after_kill_seconds,
        total_seconds: started.elapsed().as_secs_f64(),
    })
}

/// Runs more backups (so the state holds jobs and compacted ones), then adds a fourth replica
/// and times its catch-up (the leader sends it the snapshot). Returns the jobs run, the
/// seconds and the snapshot's bytes.
fn join_a_replica(sandbox: &mut Sandbox, leader: u64) -> anyhow::Result<(usize, f64, u64)> {
    let more = 12;
    for _ in 0..more {
        timed_backup(sandbox)?;
    }
    let target = last_log_index(sandbox)?;
    let started = Instant::now();
    sandbox.add_replica(4)?;
    let joined = sandbox.replica_endpoint(4).to_string();
    sandbox.wait_until(Duration::from_secs(300), "the new replica to catch up", || {
        let status = sandbox.bkctl_json_at(&joined, &["cluster", "status"]).ok()?;
        (status["last_applied_index"].as_u64()? >= target).then_some(())
    })?;
    let seconds = started.elapsed().as_secs_f64();
    let snapshot = raft_bytes(sandbox, leader)?;
    Ok((more + 2, seconds, snapshot))
}

fn task_counts(job: &Value) -> (u64, u64) {
    let tasks: Vec<&Value> = job["phases"]
        .as_array()
        .into_iter()
        .flatten()
        .flat_map(|phase| phase["tasks"].as_array().into_iter().flatten())
        .collect();
    let done = tasks.iter().filter(|task| task["state"] == "succeeded").count();
    (tasks.len() as u64, done as u64)
}

fn count_tasks(job: &Value) -> u64 {
    task_counts(job).0
}

fn last_log_index(sandbox: &Sandbox) -> anyhow::Result<u64> {
    let status = sandbox.bkctl_json(&["cluster", "status"])?;
    Ok(status["last_log_index"].as_u64().unwrap_or(0))
}

fn raft_bytes(sandbox: &Sandbox, id: u64) -> anyhow::Result<u64> {
    crate::scale::directory_bytes(&sandbox.path().join(format!("coordinator-{id}")))
}
