//! What workers send, read into the core's types: the checks a request must pass before the
//! leader acts on it, apart from the handlers that act.

use bk_proto::ids::{ParseIdError, TaskId, WorkerId};
use bk_proto::model::TaskReport;
use bk_proto::pb;

use crate::core::domain::WorkerRecord;
use crate::core::JobEvent;
use crate::error::CoordinatorError;

/// A registration as the worker record it proposes.
///
/// # Errors
/// [`CoordinatorError::InvalidRequest`] when the worker, source or node id is missing.
pub fn worker_from_pb(
    request: pb::RegisterWorkerRequest,
    at_ms: u64,
) -> Result<WorkerRecord, CoordinatorError> {
    if request.worker_id.is_empty() || request.source.is_empty() || request.node.is_empty() {
        return Err(CoordinatorError::InvalidRequest(
            "worker_id, source and node are required".to_string(),
        ));
    }
    Ok(WorkerRecord {
        worker_id: WorkerId(request.worker_id),
        source: request.source.into(),
        node: request.node,
        version: request.version,
        registered_at_ms: at_ms,
        max_concurrent_objects: request.max_concurrent_objects,
        max_bytes_per_second: request.max_bytes_per_second,
        store_url: request.store_url,
        repositories: request.repositories,
        drills: request.drills,
        snapshots: request.snapshots,
    })
}

/// A task id as a worker sent it.
///
/// # Errors
/// [`CoordinatorError::InvalidRequest`] naming what does not parse.
pub fn task_id_from_pb(task_id: &str) -> Result<TaskId, CoordinatorError> {
    task_id
        .parse()
        .map_err(|error: ParseIdError| CoordinatorError::InvalidRequest(error.to_string()))
}

/// A task's result as the job event it proposes.
///
/// # Errors
/// [`CoordinatorError::InvalidRequest`] for a bad task id, an undecodable report or a result
/// without an outcome.
pub fn result_from_pb(
    request: pb::ReportResultRequest,
    at_ms: u64,
) -> Result<(TaskId, JobEvent), CoordinatorError> {
    let task_id = task_id_from_pb(&request.task_id)?;
    let (slot, attempt) = (task_id.slot, request.attempt);
    let event = match request.outcome {
        Some(pb::report_result_request::Outcome::ReportJson(json)) => {
            let report: TaskReport = serde_json::from_slice(&json).map_err(|error| {
                CoordinatorError::InvalidRequest(format!("undecodable task report: {error}"))
            })?;
            JobEvent::TaskSucceeded { slot, attempt, report, at_ms }
        }
        Some(pb::report_result_request::Outcome::Failure(failure)) => JobEvent::TaskFailed {
            slot,
            attempt,
            error: failure.message,
            retryable: failure.retryable,
            at_ms,
        },
        None => return Err(CoordinatorError::InvalidRequest("result without outcome".to_string())),
    };
    Ok((task_id, event))
}

/// A progress report's counts.
pub fn progress_from_pb(request: &pb::ReportProgressRequest) -> pb::Progress {
    pb::Progress {
        objects_done: request.objects_done,
        bytes_done: request.bytes_done,
        objects_total: request.objects_total,
        bytes_total: request.bytes_total,
    }
}
