//! The tasks of an InfluxDB 3 backup whose workers have `[snapshot]`: one snapshot per node
//! before any copy (the job's first phase), deleted by a cleanup task that runs until it
//! succeeds. InfluxDB needs every file of a node from one instant, so only atomic methods are
//! used (`reflink` is refused, and skipped by `auto`).

use bk_proto::model::TaskReport;

use super::{delete_for_job, take_for_job, Taken};
use crate::error::TaskError;
use crate::tasks::context::TaskContext;

/// Takes the node's snapshot, or says the node is copied live.
///
/// # Errors
/// The configured method failed; the store is not local; store errors.
pub async fn take(context: &TaskContext, node: &str) -> Result<TaskReport, TaskError> {
    let mut report = TaskReport::default();
    let Some(config) = context.worker.config.snapshot.as_ref().filter(|config| config.enabled())
    else {
        report.warnings.push(format!(
            "worker `{}` has no [snapshot] section: node `{node}` is copied live (with consistency repair)",
            context.worker.config.worker_id()
        ));
        return Ok(report);
    };
    let root = context.worker.config.store_root().ok_or_else(|| {
        TaskError::Invalid(format!(
            "[snapshot] needs the node's store to be a local directory (file:///path), not `{}`",
            context.worker.config.store.url
        ))
    })?;
    match take_for_job(context, config, &root, true).await? {
        Taken::Snapshot(record) => {
            let taken = format!(
                "{} snapshot `{}` of node `{node}` taken in {:.3} s",
                record.method.as_str(),
                record.name,
                record.took_ms as f64 / 1000.0
            );
            report.events.push(format!("{taken}: the node's copy reads it, all from one instant"));
            report.snapshot = Some(taken);
        }
        Taken::NoneUsable(why) => report.warnings.push(format!(
            "[snapshot] auto: no atomic method works on `{}` ({why}): node `{node}` is copied live",
            root.display()
        )),
    }
    Ok(report)
}

/// Deletes the node's snapshot of this job, if one was taken.
///
/// # Errors
/// Retryable until the snapshot is gone; store errors.
pub async fn delete(context: &TaskContext, node: &str) -> Result<TaskReport, TaskError> {
    let mut report = TaskReport::default();
    match delete_for_job(context).await? {
        Some(deleted) => report.events.push(deleted),
        None => report.events.push(format!("no snapshot of node `{node}` to delete")),
    }
    Ok(report)
}
