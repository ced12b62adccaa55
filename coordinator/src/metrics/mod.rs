//! Prometheus metrics, served as `GET /metrics` over HTTP/1.1 on the gRPC port (so one port per
//! replica is enough to scrape). A `prometheus-client` collector reads the replicated state and
//! the leader's runtime on each scrape: nothing to keep in sync.

use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric, NoLabelSet};
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::metrics::MetricType;
use prometheus_client::registry::Registry;

mod objectives;

use crate::coordinator::Coordinator;
use crate::core::job::TaskStatus;

/// Upper bounds (seconds) of the task-duration histogram: a WAL prefix takes a second, a large
/// node's parquet an hour.
const DURATION_BUCKETS: [f64; 8] = [1.0, 5.0, 30.0, 60.0, 300.0, 900.0, 3600.0, f64::MAX];

/// The OpenMetrics content type the body is encoded in.
const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// The `/metrics` route.
pub fn router(coordinator: Arc<Coordinator>) -> axum::Router {
    let mut registry = Registry::default();
    registry.register_collector(Box::new(StateCollector { coordinator }));
    let registry = Arc::new(registry);
    axum::Router::new().route(
        "/metrics",
        axum::routing::get(move || {
            let registry = registry.clone();
            async move {
                let mut body = String::new();
                match prometheus_client::encoding::text::encode(&mut body, &registry) {
                    Ok(()) => ([(axum::http::header::CONTENT_TYPE, CONTENT_TYPE)], body),
                    Err(_) => ([(axum::http::header::CONTENT_TYPE, "text/plain")], String::new()),
                }
            }
        }),
    )
}

/// Reads the coordinator's state at scrape time.
struct StateCollector {
    coordinator: Arc<Coordinator>,
}

impl fmt::Debug for StateCollector {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter.write_str("StateCollector")
    }
}

/// Counts over the replicated state, taken under one read.
#[derive(Default)]
struct StateCounts {
    jobs: BTreeMap<(String, String), u64>,
    tasks: BTreeMap<String, u64>,
    /// Per bucket of [`DURATION_BUCKETS`], the succeeded tasks that took at most its bound.
    duration_buckets: [u64; DURATION_BUCKETS.len()],
    duration_sum: f64,
    duration_count: u64,
    retries: u64,
    backups: u64,
    backup_bytes: u64,
    bytes_read: u64,
    bytes_written: u64,
    bytes_stored: u64,
    workers: Vec<String>,
    /// Per source, when its newest passing drill ended (ms).
    last_drill_success_ms: BTreeMap<String, u64>,
    /// Per QuestDB source: (newest backup's creation, its checkpoint hold in ms).
    checkpoint_held: BTreeMap<String, (u64, u64)>,
}

fn state_counts(coordinator: &Coordinator) -> StateCounts {
    coordinator.read(|state| {
        let mut counts = StateCounts::default();
        for job in state.jobs.values() {
            let kind = format!("{:?}", job.spec.kind).to_lowercase();
            let job_state = format!("{:?}", job.state()).to_lowercase();
            *counts.jobs.entry((kind, job_state)).or_default() += 1;
            for slot in job.slots() {
                let Some(run) = job.run(slot) else { continue };
                *counts.tasks.entry(format!("{:?}", run.status).to_lowercase()).or_default() += 1;
                counts.retries += u64::from(run.num_failures);
                if let (TaskStatus::Succeeded, Some(started), Some(finished)) =
                    (run.status, run.started_at_ms, run.finished_at_ms)
                {
                    let seconds = finished.saturating_sub(started) as f64 / 1000.0;
                    counts.duration_sum += seconds;
                    counts.duration_count += 1;
                    let bucket = DURATION_BUCKETS.iter().position(|le| seconds <= *le);
                    counts.duration_buckets[bucket.unwrap_or(DURATION_BUCKETS.len() - 1)] += 1;
                }
            }
        }
        for backup in state.backups.values() {
            counts.backups += 1;
            counts.backup_bytes += backup.num_bytes;
            counts.bytes_read += backup.transfer.bytes_read;
            counts.bytes_written += backup.transfer.bytes_written;
            counts.bytes_stored += backup.transfer.bytes_stored;
            if let Some(held) = backup.checkpoint_held_ms {
                let newest = counts.checkpoint_held.entry(backup.source.to_string()).or_default();
                if backup.created_at_ms >= newest.0 {
                    *newest = (backup.created_at_ms, held);
                }
            }
            for drill in backup.drills.iter().filter(|drill| drill.report.passed) {
                let last =
                    counts.last_drill_success_ms.entry(backup.source.to_string()).or_default();
                *last = (*last).max(drill.at_ms);
            }
        }
        counts.workers = state.workers.keys().map(|id| id.to_string()).collect();
        counts
    })
}

fn gauge(
    encoder: &mut DescriptorEncoder<'_>,
    name: &str,
    help: &str,
    value: impl prometheus_client::encoding::EncodeGaugeValue + Send + Sync + fmt::Debug + 'static,
) -> fmt::Result {
    let gauge = ConstGauge::new(value);
    gauge.encode(encoder.encode_descriptor(name, help, None, MetricType::Gauge)?)
}

/// A counter; the exposition adds `_total` to `name`.
fn counter(encoder: &mut DescriptorEncoder<'_>, name: &str, help: &str, value: u64) -> fmt::Result {
    let counter = ConstCounter::new(value);
    counter.encode(encoder.encode_descriptor(name, help, None, MetricType::Counter)?)
}

impl Collector for StateCollector {
    fn encode(&self, mut encoder: DescriptorEncoder<'_>) -> fmt::Result {
        let coordinator = &self.coordinator;
        let counts = state_counts(coordinator);
        encode_jobs(&mut encoder, &counts)?;
        encode_backups(&mut encoder, &counts)?;
        objectives::encode(coordinator, &mut encoder)?;
        let workers = counts.workers.len() as u64;
        gauge(&mut encoder, "bk_workers_registered", "Registered workers.", workers)?;
        if encode_raft(&mut encoder, coordinator)? {
            encode_leader(&mut encoder, coordinator, &counts)?;
        }
        Ok(())
    }
}

/// Jobs and tasks by state, task durations and retries.
fn encode_jobs(encoder: &mut DescriptorEncoder<'_>, counts: &StateCounts) -> fmt::Result {
    let mut family =
        encoder.encode_descriptor("bk_jobs", "Jobs by kind and state.", None, MetricType::Gauge)?;
    for ((kind, state), count) in &counts.jobs {
        let labels = [("kind", kind.as_str()), ("state", state.as_str())];
        ConstGauge::new(*count).encode(family.encode_family(&labels)?)?;
    }
    let mut family = encoder.encode_descriptor(
        "bk_tasks",
        "Tasks of all jobs by state.",
        None,
        MetricType::Gauge,
    )?;
    for (state, count) in &counts.tasks {
        ConstGauge::new(*count).encode(family.encode_family(&[("state", state.as_str())])?)?;
    }
    let buckets: Vec<(f64, u64)> =
        DURATION_BUCKETS.iter().copied().zip(counts.duration_buckets).collect();
    encoder
        .encode_descriptor(
            "bk_task_duration_seconds",
            "Durations of succeeded tasks (their last attempt).",
            None,
            MetricType::Histogram,
        )?
        .encode_histogram::<NoLabelSet>(
            counts.duration_sum,
            counts.duration_count,
            &buckets,
            None,
        )?;
    let retries_help = "Retryable task failures that re-queued a task.";
    counter(encoder, "bk_task_retries", retries_help, counts.retries)?;
    Ok(())
}

/// Committed backups: counts, bytes, drills and checkpoint holds.
fn encode_backups(encoder: &mut DescriptorEncoder<'_>, counts: &StateCounts) -> fmt::Result {
    gauge(encoder, "bk_backups", "Committed backups.", counts.backups)?;
    let bytes_help = "Bytes of the objects in committed backups.";
    gauge(encoder, "bk_backup_bytes", bytes_help, counts.backup_bytes)?;
    let read_help = "Source bytes read by committed backups.";
    counter(encoder, "bk_bytes_read", read_help, counts.bytes_read)?;
    let written_help = "Blob bytes written by committed backups.";
    counter(encoder, "bk_bytes_written", written_help, counts.bytes_written)?;
    let mut family = encoder.encode_descriptor(
        "bk_backup_last_drill_success_timestamp_seconds",
        "When the newest passing restore drill of a source's backups ended (alert when it \
         grows old: nobody has proved the backups restorable since).",
        None,
        MetricType::Gauge,
    )?;
    for (source, at_ms) in &counts.last_drill_success_ms {
        let seconds = *at_ms as f64 / 1000.0;
        ConstGauge::new(seconds).encode(family.encode_family(&[("source", source.as_str())])?)?;
    }
    let mut family = encoder.encode_descriptor(
        "bk_questdb_checkpoint_held_seconds",
        "How long the newest backup of a QuestDB source held the server in checkpoint mode \
         (its disk grows meanwhile; with a snapshot, the snapshot's time, not the copy's).",
        None,
        MetricType::Gauge,
    )?;
    for (source, (_, held_ms)) in &counts.checkpoint_held {
        ConstGauge::new(*held_ms as f64 / 1000.0)
            .encode(family.encode_family(&[("source", source.as_str())])?)?;
    }
    let stored_help = "What committed backups' new blobs take in the repository (compressed, \
                       sealed).";
    counter(encoder, "bk_bytes_stored", stored_help, counts.bytes_stored)?;
    Ok(())
}

/// This replica's view of Raft. Returns whether it leads.
fn encode_raft(
    encoder: &mut DescriptorEncoder<'_>,
    coordinator: &Coordinator,
) -> Result<bool, fmt::Error> {
    let raft = coordinator.raft.metrics().borrow().clone();
    let is_leader = raft.current_leader == Some(coordinator.replica_id);
    gauge(encoder, "bk_raft_term", "Current Raft term.", raft.current_term)?;
    let leads = u64::from(is_leader);
    gauge(encoder, "bk_raft_is_leader", "1 when this replica leads.", leads)?;
    let leader_help = "The leader's replica id (0: none known).";
    gauge(encoder, "bk_raft_leader_id", leader_help, raft.current_leader.unwrap_or(0))?;
    let applied = raft.last_applied.map_or(0, |log_id| log_id.index);
    let applied_help = "Last log index applied on this replica.";
    gauge(encoder, "bk_raft_last_applied_index", applied_help, applied)?;
    let last_log = raft.last_log_index.unwrap_or(0);
    let last_help = "Last log index on this replica.";
    gauge(encoder, "bk_raft_last_log_index", last_help, last_log)?;
    Ok(is_leader)
}

/// What only the leader knows: leases taken back and when each worker was last heard from.
fn encode_leader(
    encoder: &mut DescriptorEncoder<'_>,
    coordinator: &Coordinator,
    counts: &StateCounts,
) -> fmt::Result {
    let mut family = encoder.encode_descriptor(
        "bk_leases_requeued",
        "Leases taken back while this replica led: from silent workers, or never acknowledged.",
        None,
        MetricType::Counter,
    )?;
    let requeues = coordinator.runtime.requeues();
    for reason in crate::leader::lease::Expiry::ALL.map(|expiry| expiry.label()) {
        let count = requeues.get(reason).copied().unwrap_or(0);
        ConstCounter::new(count).encode(family.encode_family(&[("reason", reason)])?)?;
    }
    let mut family = encoder.encode_descriptor(
        "bk_worker_last_seen_seconds",
        "Seconds since the leader last heard from each worker.",
        None,
        MetricType::Gauge,
    )?;
    // Every registered worker, heard from or not since this replica became leader.
    for worker in &counts.workers {
        let ago = coordinator.runtime.silence(worker).as_secs_f64();
        ConstGauge::new(ago).encode(family.encode_family(&[("worker", worker.as_str())])?)?;
    }
    Ok(())
}
