//! Prometheus metrics, served as `GET /metrics` over HTTP/1.1 on the gRPC port (so one port per
//! replica is enough to scrape). Rendered from the replicated state and the leader's runtime on
//! each scrape: nothing to keep in sync.

use std::collections::BTreeMap;
use std::fmt::Write;
use std::sync::Arc;

use crate::coordinator::Coordinator;
use crate::core::job::TaskStatus;

/// The `/metrics` route.
pub fn router(coordinator: Arc<Coordinator>) -> axum::Router {
    axum::Router::new().route(
        "/metrics",
        axum::routing::get(move || {
            let coordinator = coordinator.clone();
            async move { render(&coordinator) }
        }),
    )
}

/// The metrics in Prometheus' text exposition format.
pub fn render(coordinator: &Coordinator) -> String {
    let mut out = String::new();
    let raft = coordinator.raft.metrics().borrow().clone();
    let is_leader = raft.current_leader == Some(coordinator.replica_id);
    coordinator.shared.read(|state| {
        let mut jobs: BTreeMap<(String, String), u64> = BTreeMap::new();
        let mut tasks: BTreeMap<String, u64> = BTreeMap::new();
        let (mut duration_sum, mut duration_count, mut retries) = (0.0, 0u64, 0u64);
        for job in state.jobs.values() {
            let key = (format!("{:?}", job.spec.kind).to_lowercase(), format!("{:?}", job.state).to_lowercase());
            *jobs.entry(key).or_default() += 1;
            for slot in job.slots() {
                let Some(run) = job.run(slot) else { continue };
                *tasks.entry(format!("{:?}", run.status).to_lowercase()).or_default() += 1;
                retries += u64::from(run.num_failures);
                if let (TaskStatus::Succeeded, Some(started), Some(finished)) = (run.status, run.started_at_ms, run.finished_at_ms) {
                    duration_sum += finished.saturating_sub(started) as f64 / 1000.0;
                    duration_count += 1;
                }
            }
        }
        family(&mut out, "bk_jobs", "gauge", "Jobs by kind and state.");
        for ((kind, job_state), count) in &jobs {
            let _ = writeln!(out, "bk_jobs{{kind=\"{kind}\",state=\"{job_state}\"}} {count}");
        }
        family(&mut out, "bk_tasks", "gauge", "Tasks of all jobs by state.");
        for (task_state, count) in &tasks {
            let _ = writeln!(out, "bk_tasks{{state=\"{task_state}\"}} {count}");
        }
        family(&mut out, "bk_task_duration_seconds", "summary", "Durations of succeeded tasks (their last attempt).");
        let _ = writeln!(out, "bk_task_duration_seconds_sum {duration_sum}\nbk_task_duration_seconds_count {duration_count}");
        family(&mut out, "bk_task_retries_total", "counter", "Retryable task failures that re-queued a task.");
        let _ = writeln!(out, "bk_task_retries_total {retries}");
        let backups = state.backups.values();
        let (count, bytes, read, written) = backups.fold((0u64, 0u64, 0u64, 0u64), |(count, bytes, read, written), backup| {
            (count + 1, bytes + backup.num_bytes, read + backup.bytes_read, written + backup.bytes_written)
        });
        family(&mut out, "bk_backups", "gauge", "Committed backups.");
        let _ = writeln!(out, "bk_backups {count}");
        family(&mut out, "bk_backup_bytes", "gauge", "Bytes of the objects in committed backups.");
        let _ = writeln!(out, "bk_backup_bytes {bytes}");
        family(&mut out, "bk_bytes_read_total", "counter", "Source bytes read by committed backups.");
        let _ = writeln!(out, "bk_bytes_read_total {read}");
        family(&mut out, "bk_bytes_written_total", "counter", "Chunk bytes written by committed backups.");
        let _ = writeln!(out, "bk_bytes_written_total {written}");
        family(&mut out, "bk_workers_registered", "gauge", "Registered workers.");
        let _ = writeln!(out, "bk_workers_registered {}", state.workers.len());
    });
    family(&mut out, "bk_raft_term", "gauge", "Current Raft term.");
    let _ = writeln!(out, "bk_raft_term {}", raft.current_term);
    family(&mut out, "bk_raft_is_leader", "gauge", "1 when this replica leads.");
    let _ = writeln!(out, "bk_raft_is_leader {}", u8::from(is_leader));
    family(&mut out, "bk_raft_leader_id", "gauge", "The leader's replica id (0: none known).");
    let _ = writeln!(out, "bk_raft_leader_id {}", raft.current_leader.unwrap_or(0));
    family(
        &mut out,
        "bk_raft_last_applied_index",
        "gauge",
        "Last log index applied on this replica.",
    );
    let _ = writeln!(
        out,
        "bk_raft_last_applied_index {}",
        raft.last_applied.map_or(0, |log_id| log_id.index)
    );
    family(&mut out, "bk_raft_last_log_index", "gauge", "Last log index on this replica.");
    let _ = writeln!(out, "bk_raft_last_log_index {}", raft.last_log_index.unwrap_or(0));
    if is_leader {
        family(
            &mut out,
            "bk_leases_requeued_total",
            "counter",
            "Leases taken back while this replica led: from silent workers, or never acknowledged.",
        );
        let requeues = coordinator.runtime.requeues();
        for reason in crate::dispatch::lease::Expiry::ALL.map(|expiry| expiry.label()) {
            let count = requeues.get(reason).copied().unwrap_or(0);
            let _ = writeln!(out, "bk_leases_requeued_total{{reason=\"{reason}\"}} {count}");
        }
        family(
            &mut out,
            "bk_worker_last_seen_seconds",
            "gauge",
            "Seconds since the leader last heard from each worker.",
        );
        // Every registered worker, heard from or not since this replica became leader.
        let workers: Vec<String> =
            coordinator.shared.read(|state| state.workers.keys().cloned().collect());
        for worker in workers {
            let ago = coordinator.runtime.silence(&worker);
            let _ = writeln!(
                out,
                "bk_worker_last_seen_seconds{{worker=\"{}\"}} {}",
                escape(&worker),
                ago.as_secs_f64()
            );
        }
    }
    out
}

fn family(out: &mut String, name: &str, kind: &str, help: &str) {
    let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
}

fn escape(value: &str) -> String {
    value.replace('\\', "\\\\").replace('"', "\\\"").replace('\n', "\\n")
}
