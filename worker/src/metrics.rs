//! Prometheus metrics of one worker, served as `GET /metrics` on `metrics_listen` when it is set.
//! Counters live in the process (they restart at zero with it, as Prometheus counters may); the
//! coordinator's `/metrics` has the cluster-wide view.

use std::fmt::Write;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use tokio_util::sync::CancellationToken;

/// Counters the hub updates.
#[derive(Debug, Default)]
pub struct WorkerMetrics {
    /// Task attempts that succeeded.
    pub tasks_succeeded: AtomicU64,
    /// Task attempts that failed (including abandoned ones).
    pub tasks_failed: AtomicU64,
    /// Objects finished by tasks (copied, reused, restored or verified).
    pub objects_done: AtomicU64,
    /// Bytes of those objects.
    pub bytes_done: AtomicU64,
    /// Heartbeats the coordinator answered.
    pub heartbeats_ok: AtomicU64,
    /// Heartbeats that failed (coordinator unreachable or refusing).
    pub heartbeats_failed: AtomicU64,
}

/// What the exposition reports besides the counters.
pub struct Limits {
    /// The worker's id (a label on every series).
    pub worker_id: String,
    /// `max_concurrent_objects`.
    pub max_concurrent_objects: usize,
    /// `max_bytes_per_second` (0: unlimited).
    pub max_bytes_per_second: u64,
}

impl WorkerMetrics {
    /// The metrics in Prometheus' text exposition format.
    pub fn render(&self, limits: &Limits) -> String {
        let label = format!("{{worker=\"{}\"}}", limits.worker_id.replace('"', "'"));
        let mut out = String::new();
        let counters = [
            (
                "bk_worker_tasks_succeeded_total",
                "Task attempts that succeeded.",
                &self.tasks_succeeded,
            ),
            (
                "bk_worker_tasks_failed_total",
                "Task attempts that failed or were abandoned.",
                &self.tasks_failed,
            ),
            ("bk_worker_objects_total", "Objects finished by tasks.", &self.objects_done),
            ("bk_worker_bytes_total", "Bytes of the objects finished by tasks.", &self.bytes_done),
            (
                "bk_worker_heartbeats_total",
                "Heartbeats the coordinator answered.",
                &self.heartbeats_ok,
            ),
            (
                "bk_worker_heartbeat_failures_total",
                "Heartbeats that failed.",
                &self.heartbeats_failed,
            ),
        ];
        for (name, help, value) in counters {
            let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} counter");
            let _ = writeln!(out, "{name}{label} {}", value.load(Ordering::Relaxed));
        }
        let retries = "bk_worker_store_retries_total";
        let _ = writeln!(
            out,
            "# HELP {retries} Object-store requests retried (throttling, 5xx, connection \
             errors, timeouts).\n# TYPE {retries} counter\n{retries}{label} {}",
            crate::retries::store_retries()
        );
        let gauges = [
            (
                "bk_worker_max_concurrent_objects",
                "Objects in flight at most.",
                limits.max_concurrent_objects as u64,
            ),
            (
                "bk_worker_max_bytes_per_second",
                "Bandwidth cap (0: none).",
                limits.max_bytes_per_second,
            ),
        ];
        for (name, help, value) in gauges {
            let _ =
                writeln!(out, "# HELP {name} {help}\n# TYPE {name} gauge\n{name}{label} {value}");
        }
        out
    }
}

/// Serves `/metrics` on `listener` until `shutdown`.
///
/// # Errors
/// When the server fails.
pub async fn serve(
    listener: tokio::net::TcpListener,
    metrics: Arc<WorkerMetrics>,
    limits: Arc<Limits>,
    shutdown: CancellationToken,
) -> std::io::Result<()> {
    let router = axum::Router::new().route(
        "/metrics",
        axum::routing::get(move || {
            let (metrics, limits) = (metrics.clone(), limits.clone());
            async move { metrics.render(&limits) }
        }),
    );
    axum::serve(listener, router).with_graceful_shutdown(shutdown.cancelled_owned()).await
}
