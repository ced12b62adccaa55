//! The `bk.v1.WorkerHub` service: workers register, heartbeat, pull tasks and report.
//!
//! Everything here runs on the leader (followers answer with the leader's address), because
//! leases and liveness are the leader's business.

use std::sync::Arc;
use std::time::Duration;

use bk_proto::ids::{TaskId, TaskSlot};
use bk_proto::model::TaskReport;

use crate::core::assign::{assigned_spec, is_current_attempt, next_task};
use bk_proto::pb;
use bk_proto::pb::worker_hub_server::WorkerHub;
use tonic::{Request, Response, Status};
use tracing::{debug, info, warn};

use crate::coordinator::Coordinator;
use crate::core::domain::WorkerRecord;
use crate::core::{Command, CommandResponse, JobEvent};
use crate::error::{CoordinatorError, CoordinatorResult};

/// Longest a `PullTask` long-poll is held open.
const MAX_PULL_WAIT: Duration = Duration::from_secs(20);

/// Serves the WorkerHub API.
pub struct WorkerHubServiceImpl {
    coordinator: Arc<Coordinator>,
}

impl WorkerHubServiceImpl {
    /// Serves `coordinator`.
    pub fn new(coordinator: Arc<Coordinator>) -> Self {
        Self { coordinator }
    }

    /// Finds the oldest runnable task this worker may run and its next attempt number.
    fn find_task(&self, worker_id: &str) -> CoordinatorResult<Option<(TaskId, u32)>> {
        let runtime = &self.coordinator.runtime;
        self.coordinator
            .shared
            .read(|state| {
                let ids = state.workers.keys().map(String::as_str);
                let silent = runtime.silent_workers(ids, self.coordinator.lease_timeout);
                let is_silent = |candidate: &WorkerRecord| silent.contains(&candidate.worker_id);
                next_task(state, worker_id, is_silent, |id| runtime.is_being_leased(id))
            })
            .map_err(|unregistered| CoordinatorError::NotFound { what: unregistered.to_string() })
    }

    async fn pull_task(
        &self,
        request: pb::PullTaskRequest,
    ) -> CoordinatorResult<Option<pb::TaskAssignment>> {
        self.coordinator.ensure_leader()?;
        let wait = Duration::from_millis(request.wait_ms as u64).min(MAX_PULL_WAIT);
        let deadline = tokio::time::Instant::now() + wait;
        let node = self
            .coordinator
            .shared
            .read(|state| state.workers.get(&request.worker_id).map(|worker| worker.node.clone()));
        let (node_waker, everyone) =
            self.coordinator.shared.task_wakers(node.as_deref().unwrap_or_default());
        loop {
            self.coordinator.runtime.touch(&request.worker_id);
            // Listening before looking: a task made runnable meanwhile wakes this pull.
            let node_woken = node_waker.notified();
            let everyone_woken = everyone.notified();
            tokio::pin!(node_woken, everyone_woken);
            node_woken.as_mut().enable();
            everyone_woken.as_mut().enable();
            if let Some((task_id, attempt)) = self.find_task(&request.worker_id)? {
                // Held until the proposal is decided: concurrent pulls (every waiting worker
                // wakes when a barrier opens) pick other tasks instead of racing for this one.
                let Some(_reservation) = self.coordinator.runtime.reserve_lease(task_id) else {
                    continue;
                };
                let event = JobEvent::TaskLeased {
                    slot: task_id.slot,
                    attempt,
                    worker_id: request.worker_id.clone(),
                    at_ms: crate::clock::now_ms(),
                };
                if self.coordinator.propose(Command::Task { task_id, event }).await?
                    == CommandResponse::Applied
                {
                    return self.assignment(task_id, attempt).map(Some);
                }
                continue; // Lost a race with another worker: look again.
            }
            // Woken when this node (or any worker) has runnable tasks again; a stand-in for a
            // silent node is found when the pull ends and the worker pulls again.
            tokio::select! {
                _ = node_woken => {}
                _ = everyone_woken => {}
                _ = tokio::time::sleep_until(deadline) => return Ok(None),
            }
        }
    }

    fn assignment(&self, task_id: TaskId, attempt: u32) -> CoordinatorResult<pb::TaskAssignment> {
        let spec = self.coordinator.shared.read(|state| assigned_spec(state, task_id));
        let spec = spec.ok_or_else(|| {
            CoordinatorError::Internal(format!("leased task `{task_id}` vanished"))
        })?;
        let spec_json = serde_json::to_vec(&spec)
            .map_err(|error| CoordinatorError::Internal(error.to_string()))?;
        info!(%task_id, attempt, "task leased");
        Ok(pb::TaskAssignment { task_id: task_id.to_string(), attempt, spec_json })
    }

    async fn report_result(&self, request: pb::ReportResultRequest) -> CoordinatorResult<()> {
        self.coordinator.ensure_leader()?;
        self.coordinator.runtime.touch(&request.worker_id);
        let task_id: TaskId =
            request.task_id.parse().map_err(|error: bk_proto::ids::ParseIdError| {
                CoordinatorError::InvalidRequest(error.to_string())
            })?;
        let slot: TaskSlot = task_id.slot;
        let at_ms = crate::clock::now_ms();
        let event = match request.outcome {
            Some(pb::report_result_request::Outcome::ReportJson(json)) => {
                let report: TaskReport = serde_json::from_slice(&json).map_err(|error| {
                    CoordinatorError::InvalidRequest(format!("undecodable task report: {error}"))
                })?;
                JobEvent::TaskSucceeded { slot, attempt: request.attempt, report, at_ms }
            }
            Some(pb::report_result_request::Outcome::Failure(failure)) => {
                warn!(%task_id, attempt = request.attempt, error = %failure.message, retryable = failure.retryable, "task failed");
                JobEvent::TaskFailed {
                    slot,
                    attempt: request.attempt,
                    error: failure.message,
                    retryable: failure.retryable,
                    at_ms,
                }
            }
            None => {
                return Err(CoordinatorError::InvalidRequest("result without outcome".to_string()))
            }
        };
        match self.coordinator.propose(Command::Task { task_id, event }).await? {
            CommandResponse::Applied => {
                info!(%task_id, attempt = request.attempt, "task result applied")
            }
            CommandResponse::Rejected(reason) => {
                debug!(%task_id, %reason, "stale task result ignored")
            }
        }
        Ok(())
    }
}

#[tonic::async_trait]
impl WorkerHub for WorkerHubServiceImpl {
    async fn register_worker(
        &self,
        request: Request<pb::RegisterWorkerRequest>,
    ) -> Result<Response<pb::RegisterWorkerResponse>, Status> {
        self.coordinator.ensure_leader()?;
        let request = request.into_inner();
        if request.worker_id.is_empty() || request.source.is_empty() || request.node.is_empty() {
            return Err(Status::invalid_argument("worker_id, source and node are required"));
        }
        let worker = WorkerRecord {
            worker_id: request.worker_id.clone(),
            source: request.source,
            node: request.node,
            version: request.version,
            registered_at_ms: crate::clock::now_ms(),
            max_concurrent_objects: request.max_concurrent_objects,
            max_bytes_per_second: request.max_bytes_per_second,
            store_url: request.store_url,
            repositories: request.repositories,
            drills: request.drills,
            snapshots: request.snapshots,
        };
        info!(worker_id = %worker.worker_id, source = %worker.source, node = %worker.node, "worker registered");
        self.coordinator.propose(Command::RegisterWorker { worker }).await?;
        self.coordinator.runtime.touch(&request.worker_id);
        Ok(Response::new(pb::RegisterWorkerResponse {}))
    }

    async fn heartbeat(
        &self,
        request: Request<pb::HeartbeatRequest>,
    ) -> Result<Response<pb::HeartbeatResponse>, Status> {
        self.coordinator.ensure_leader()?;
        let request = request.into_inner();
        let worker_id = request.worker_id;
        let known = self.coordinator.shared.read(|state| state.workers.contains_key(&worker_id));
        if known {
            self.coordinator.runtime.touch(&worker_id);
            self.coordinator.runtime.record_store_retries(&worker_id, request.store_retries);
        }
        Ok(Response::new(pb::HeartbeatResponse { must_register: !known }))
    }

    async fn pull_task(
        &self,
        request: Request<pb::PullTaskRequest>,
    ) -> Result<Response<pb::PullTaskResponse>, Status> {
        let task = self.pull_task(request.into_inner()).await?;
        Ok(Response::new(pb::PullTaskResponse { task }))
    }

    async fn report_progress(
        &self,
        request: Request<pb::ReportProgressRequest>,
    ) -> Result<Response<pb::ReportProgressResponse>, Status> {
        self.coordinator.ensure_leader()?;
        let request = request.into_inner();
        self.coordinator.runtime.touch(&request.worker_id);
        let task_id: TaskId =
            request.task_id.parse().map_err(|error: bk_proto::ids::ParseIdError| {
                Status::invalid_argument(error.to_string())
            })?;
        if !self
            .coordinator
            .shared
            .read(|state| is_current_attempt(state, &task_id, request.attempt))
        {
            return Ok(Response::new(pb::ReportProgressResponse { abandon: true }));
        }
        let progress = pb::Progress {
            objects_done: request.objects_done,
            bytes_done: request.bytes_done,
            objects_total: request.objects_total,
            bytes_total: request.bytes_total,
        };
        self.coordinator.runtime.record_progress(task_id, request.attempt, progress);
        self.coordinator.shared.notify();
        Ok(Response::new(pb::ReportProgressResponse { abandon: false }))
    }

    async fn report_result(
        &self,
        request: Request<pb::ReportResultRequest>,
    ) -> Result<Response<pb::ReportResultResponse>, Status> {
        self.report_result(request.into_inner()).await?;
        Ok(Response::new(pb::ReportResultResponse {}))
    }
}
