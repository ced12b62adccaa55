//! The `bk.v1.WorkerHub` service: workers register, heartbeat, pull tasks and report.
//!
//! Everything here runs on the leader (followers answer with the leader's address), because
//! leases and liveness are the leader's business.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use bk_proto::ids::{TaskId, WorkerId};

use crate::core::assign::{assigned_spec, is_current_attempt, next_retry_ms, next_task};
use bk_proto::pb;
use bk_proto::pb::worker_hub_server::WorkerHub;
use tokio::sync::Notify;
use tonic::{Request, Response, Status};
use tracing::{debug, info, warn};

use super::worker_requests::{progress_from_pb, result_from_pb, task_id_from_pb, worker_from_pb};
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
            .read(|state| {
                let ids = state.workers.keys();
                let silent = runtime.silent_workers(ids, self.coordinator.lease_timeout);
                let is_silent = |candidate: &WorkerRecord| silent.contains(&candidate.worker_id);
                let now_ms = crate::clock::now_ms();
                next_task(state, worker_id, now_ms, is_silent, |id| runtime.is_being_leased(id))
            })
            .map_err(|unregistered| CoordinatorError::NotFound { what: unregistered.to_string() })
    }

    async fn pull_task(
        &self,
        request: pb::PullTaskRequest,
    ) -> CoordinatorResult<Option<pb::TaskAssignment>> {
        self.coordinator.ensure_leader()?;
        let wait = Duration::from_millis(request.wait_ms as u64).min(MAX_PULL_WAIT);
        let (deadline, worker_id) = (tokio::time::Instant::now() + wait, &request.worker_id);
        let wakers = self.wakers_of(worker_id);
        loop {
            self.coordinator.runtime.touch(worker_id);
            // Listening before looking: a task made runnable meanwhile wakes this pull.
            let woken = armed(&wakers);
            match self.try_lease(worker_id).await? {
                Lease::Leased(task_id, attempt) => {
                    return self.assignment(task_id, attempt).map(Some)
                }
                Lease::LostRace => continue,
                Lease::NothingRunnable => {}
            }
            // A stand-in for a silent node is found when the pull ends and the worker pulls again.
            tokio::select! {
                _ = woken => {}
                _ = tokio::time::sleep_until(self.next_retry(deadline)) => {}
                _ = tokio::time::sleep_until(deadline) => return Ok(None),
            }
        }
    }

    /// When the earliest task backing off after a failure may be leased; past `deadline` when
    /// none is due before it (nothing wakes a pull when a back-off ends).
    fn next_retry(&self, deadline: tokio::time::Instant) -> tokio::time::Instant {
        let now_ms = crate::clock::now_ms();
        match self.coordinator.read(|state| next_retry_ms(state, now_ms)) {
            Some(at_ms) => tokio::time::Instant::now() + Duration::from_millis(at_ms - now_ms),
            None => deadline + Duration::from_secs(60),
        }
    }

    /// The wakers of the worker's node and of every worker.
    fn wakers_of(&self, worker_id: &str) -> (Arc<Notify>, Arc<Notify>) {
        let node =
            self.coordinator.read(|state| state.workers.get(worker_id).map(|w| w.node.clone()));
        self.coordinator.task_wakers(node.as_deref().unwrap_or_default())
    }

    /// Leases the oldest runnable task this worker may run, if there is one.
    async fn try_lease(&self, worker_id: &str) -> CoordinatorResult<Lease> {
        let Some((task_id, attempt)) = self.find_task(worker_id)? else {
            return Ok(Lease::NothingRunnable);
        };
        // Held until the proposal is decided: concurrent pulls (every waiting worker wakes when
        // a barrier opens) pick other tasks instead of racing for this one.
        let Some(_reservation) = self.coordinator.runtime.reserve_lease(task_id) else {
            return Ok(Lease::LostRace);
        };
        let event = JobEvent::TaskLeased {
            slot: task_id.slot,
            attempt,
            worker_id: WorkerId::from(worker_id),
            at_ms: crate::clock::now_ms(),
        };
        Ok(match self.coordinator.propose(Command::Task { task_id, event }).await? {
            CommandResponse::Applied => Lease::Leased(task_id, attempt),
            // Another worker leased it first: look again.
            CommandResponse::Rejected(_) => Lease::LostRace,
        })
    }

    fn assignment(&self, task_id: TaskId, attempt: u32) -> CoordinatorResult<pb::TaskAssignment> {
        let spec = self.coordinator.read(|state| assigned_spec(state, task_id));
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
        let (task_id, event) = result_from_pb(request, crate::clock::now_ms())?;
        if let JobEvent::TaskFailed { attempt, error, retryable, .. } = &event {
            warn!(%task_id, attempt, %error, retryable, "task failed");
        }
        match self.coordinator.propose(Command::Task { task_id, event }).await? {
            CommandResponse::Applied => info!(%task_id, "task result applied"),
            CommandResponse::Rejected(reason) => {
                debug!(%task_id, %reason, "stale task result ignored")
            }
        }
        Ok(())
    }

    async fn register_worker(&self, request: pb::RegisterWorkerRequest) -> CoordinatorResult<()> {
        self.coordinator.ensure_leader()?;
        let worker = worker_from_pb(request, crate::clock::now_ms())?;
        let worker_id = worker.worker_id.clone();
        info!(%worker_id, source = %worker.source, node = %worker.node, "worker registered");
        self.coordinator.propose(Command::RegisterWorker { worker }).await?;
        self.coordinator.runtime.touch(&worker_id);
        Ok(())
    }

    /// Records the progress; `false` when the attempt is no longer current (the worker abandons).
    fn report_progress(&self, request: pb::ReportProgressRequest) -> CoordinatorResult<bool> {
        self.coordinator.ensure_leader()?;
        self.coordinator.runtime.touch(&request.worker_id);
        let task_id = task_id_from_pb(&request.task_id)?;
        let attempt = request.attempt;
        if !self.coordinator.read(|state| is_current_attempt(state, &task_id, attempt)) {
            return Ok(false);
        }
        self.coordinator.runtime.record_progress(task_id, attempt, progress_from_pb(&request));
        self.coordinator.notify_watchers();
        Ok(true)
    }
}

/// Resolves when either waker (the node's, everyone's) is notified after this call: armed at
/// once, so a notification between arming and awaiting is not lost.
fn armed(wakers: &(Arc<Notify>, Arc<Notify>)) -> Pin<Box<dyn Future<Output = ()> + Send + '_>> {
    let mut node = Box::pin(wakers.0.notified());
    let mut everyone = Box::pin(wakers.1.notified());
    node.as_mut().enable();
    everyone.as_mut().enable();
    Box::pin(async move {
        tokio::select! {
            _ = node => {}
            _ = everyone => {}
        }
    })
}

/// What one look for a task found.
enum Lease {
    Leased(TaskId, u32),
    /// Another pull took the task first.
    LostRace,
    NothingRunnable,
}

#[tonic::async_trait]
impl WorkerHub for WorkerHubServiceImpl {
    async fn register_worker(
        &self,
        request: Request<pb::RegisterWorkerRequest>,
    ) -> Result<Response<pb::RegisterWorkerResponse>, Status> {
        self.register_worker(request.into_inner()).await?;
        Ok(Response::new(pb::RegisterWorkerResponse {}))
    }

    async fn heartbeat(
        &self,
        request: Request<pb::HeartbeatRequest>,
    ) -> Result<Response<pb::HeartbeatResponse>, Status> {
        self.coordinator.ensure_leader()?;
        let request = request.into_inner();
        let worker_id = request.worker_id;
        let known = self.coordinator.read(|state| state.workers.contains_key(worker_id.as_str()));
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
        let current = self.report_progress(request.into_inner())?;
        Ok(Response::new(pb::ReportProgressResponse { abandon: !current }))
    }

    async fn report_result(
        &self,
        request: Request<pb::ReportResultRequest>,
    ) -> Result<Response<pb::ReportResultResponse>, Status> {
        self.report_result(request.into_inner()).await?;
        Ok(Response::new(pb::ReportResultResponse {}))
    }
}
