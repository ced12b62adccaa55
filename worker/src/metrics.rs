//! Prometheus metrics of one worker, served as `GET /metrics` on `metrics_listen` when it is set.
//! Counters live in the process (they restart at zero with it, as Prometheus counters may); the
//! coordinator's `/metrics` has the cluster-wide view.

use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::metrics::MetricType;
use prometheus_client::registry::Registry;

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
#[derive(Debug)]
pub struct Limits {
    /// The worker's id (a label on every series).
    pub worker_id: String,
    /// `max_concurrent_objects`.
    pub max_concurrent_objects: usize,
    /// `max_bytes_per_second` (0: unlimited).
    pub max_bytes_per_second: u64,
}

/// Reads the counters and limits at scrape time.
#[derive(Debug)]
struct WorkerCollector {
    metrics: Arc<WorkerMetrics>,
    limits: Arc<Limits>,
}

impl Collector for WorkerCollector {
    fn encode(&self, mut encoder: DescriptorEncoder<'_>) -> fmt::Result {
        let labels = [("worker", self.limits.worker_id.as_str())];
        let metrics = &self.metrics;
        // Names without `_total`: the exposition adds it to counters.
        let counters = [
            (
                "bk_worker_tasks_succeeded",
                "Task attempts that succeeded.",
                &metrics.tasks_succeeded,
            ),
            (
                "bk_worker_tasks_failed",
                "Task attempts that failed or were abandoned.",
                &metrics.tasks_failed,
            ),
            ("bk_worker_objects", "Objects finished by tasks.", &metrics.objects_done),
            ("bk_worker_bytes", "Bytes of the objects finished by tasks.", &metrics.bytes_done),
            (
                "bk_worker_heartbeats",
                "Heartbeats the coordinator answered.",
                &metrics.heartbeats_ok,
            ),
            ("bk_worker_heartbeat_failures", "Heartbeats that failed.", &metrics.heartbeats_failed),
        ];
        for (name, help, value) in counters {
            let mut family = encoder.encode_descriptor(name, help, None, MetricType::Counter)?;
            ConstCounter::new(value.load(Ordering::Relaxed))
                .encode(family.encode_family(&labels)?)?;
        }
        let mut family = encoder.encode_descriptor(
            "bk_worker_store_retries",
            "Object-store requests retried (throttling, 5xx, connection errors, timeouts).",
            None,
            MetricType::Counter,
        )?;
        ConstCounter::new(crate::retries::store_retries())
            .encode(family.encode_family(&labels)?)?;
        let gauges = [
            (
                "bk_worker_max_concurrent_objects",
                "Objects in flight at most.",
                self.limits.max_concurrent_objects as u64,
            ),
            (
                "bk_worker_max_bytes_per_second",
                "Bandwidth cap (0: none).",
                self.limits.max_bytes_per_second,
            ),
        ];
        for (name, help, value) in gauges {
            let mut family = encoder.encode_descriptor(name, help, None, MetricType::Gauge)?;
            ConstGauge::new(value).encode(family.encode_family(&labels)?)?;
        }
        Ok(())
    }
}

/// The OpenMetrics text exposition of `metrics` and `limits`.
pub fn render(metrics: Arc<WorkerMetrics>, limits: Arc<Limits>) -> String {
    let mut registry = Registry::default();
    registry.register_collector(Box::new(WorkerCollector { metrics, limits }));
    let mut body = String::new();
    // Writing into a String cannot fail.
    let _ = prometheus_client::encoding::text::encode(&mut body, &registry);
    body
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
            async move {
                let content_type = "application/openmetrics-text; version=1.0.0; charset=utf-8";
                ([(axum::http::header::CONTENT_TYPE, content_type)], render(metrics, limits))
            }
        }),
    );
    axum::serve(listener, router).with_graceful_shutdown(shutdown.cancelled_owned()).await
}
