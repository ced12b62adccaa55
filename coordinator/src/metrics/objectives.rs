//! The series alerting is built on: per source, its newest backup and drill against the
//! operator's objectives (from [`crate::core::source_health`], the same judgement the console
//! shows), and per repository the outcome of its newest verify and check.
//!
//! The objectives are exported too (`bk_source_rpo_seconds`, `bk_source_drill_max_age_seconds`)
//! so the rules in `deploy/prometheus/` compare against the coordinator's own numbers instead of
//! a copy that drifts.

use std::collections::BTreeMap;
use std::fmt;

use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::metrics::MetricType;

use crate::coordinator::Coordinator;
use crate::core::job::{JobKind, JobState};
use crate::core::source_health::source_health;

/// One gauge family with one label.
struct Family {
    name: &'static str,
    help: &'static str,
    label: &'static str,
    values: Vec<(String, f64)>,
}

/// Encodes every per-source and per-repository series, read under one look at the state.
pub(super) fn encode(
    coordinator: &Coordinator,
    encoder: &mut DescriptorEncoder<'_>,
) -> fmt::Result {
    let now_ms = crate::clock::now_ms();
    let (health, checks) = coordinator.read(|state| {
        (source_health(state, &coordinator.objectives, now_ms), repository_checks(state))
    });
    let seconds = |ms: u64| ms as f64 / 1000.0;
    let per_source = |pick: &dyn Fn(&crate::core::source_health::SourceHealth) -> Option<f64>| {
        health.iter().filter_map(|h| Some((h.source.clone(), pick(h)?))).collect::<Vec<_>>()
    };
    let families = [
        Family {
            name: "bk_source_last_backup_timestamp_seconds",
            help: "When the newest committed backup of a source was created (absent: none yet).",
            label: "source",
            values: per_source(&|h| Some(seconds(h.last_backup.as_ref()?.created_at_ms))),
        },
        Family {
            name: "bk_source_rpo_seconds",
            help: "The recovery-point objective of a source ([objectives] in the coordinator's \
                   config): its newest backup may be this old.",
            label: "source",
            values: per_source(&|h| Some(seconds(h.rpo_ms))),
        },
        Family {
            name: "bk_source_last_drill_timestamp_seconds",
            help: "When the newest restore drill of a source's backups ended, passed or not.",
            label: "source",
            values: per_source(&|h| Some(seconds(h.last_drill.as_ref()?.at_ms))),
        },
        Family {
            name: "bk_source_last_drill_passed",
            help: "1 when the newest restore drill of a source passed, 0 when it failed.",
            label: "source",
            values: per_source(&|h| Some(f64::from(u8::from(h.last_drill.as_ref()?.passed)))),
        },
        Family {
            name: "bk_source_drill_max_age_seconds",
            help: "How old the newest drill of a source may be ([objectives] drill_max_age).",
            label: "source",
            values: per_source(&|h| Some(seconds(h.drill_max_age_ms))),
        },
        Family {
            name: "bk_source_last_backup_job_failed",
            help: "1 when the newest finished backup job of a source failed.",
            label: "source",
            values: per_source(&|h| Some(f64::from(u8::from(h.last_backup_failure.is_some())))),
        },
    ];
    for family in families {
        let mut encoded =
            encoder.encode_descriptor(family.name, family.help, None, MetricType::Gauge)?;
        for (value_label, value) in &family.values {
            ConstGauge::new(*value)
                .encode(encoded.encode_family(&[(family.label, value_label.as_str())])?)?;
        }
    }
    let mut encoded = encoder.encode_descriptor(
        "bk_repository_last_check_passed",
        "Per repository and kind (`verify`, `check`): 1 when the newest finished job of that \
         kind succeeded, 0 when it failed (missing blobs, damaged packs, unreadable objects).",
        None,
        MetricType::Gauge,
    )?;
    for ((repository, kind), passed) in &checks {
        let labels = [("repository", repository.as_str()), ("kind", *kind)];
        ConstGauge::new(u64::from(*passed)).encode(encoded.encode_family(&labels)?)?;
    }
    Ok(())
}

/// Per (repository, `verify`|`check`), whether its newest finished job of that kind succeeded
/// (cancelled jobs say nothing about the repository).
fn repository_checks(state: &crate::core::ClusterState) -> BTreeMap<(String, &'static str), bool> {
    let mut checks = BTreeMap::new();
    for job in state.jobs.values() {
        let kind = match job.spec.kind {
            JobKind::Verify => "verify",
            JobKind::Check => "check",
            _ => continue,
        };
        let passed = match job.state() {
            JobState::Succeeded => true,
            JobState::Failed => false,
            _ => continue,
        };
        checks.insert((job.spec.repository.name.clone(), kind), passed);
    }
    checks
}
