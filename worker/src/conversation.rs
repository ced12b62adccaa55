//! The worker's conversation with the coordinator: register, heartbeat, pull tasks, report.
//! Running a task is the [`TaskRuntime`]'s business; this module only asks it for contexts.
//!
//! One signal says "register again": the coordinator answers a heartbeat with `must_register`,
//! or a pull with NOT_FOUND, when it no longer knows this worker (a new cluster, a restore of
//! its state); either raises the signal and the heartbeat loop alone registers, once.
//!
//! `max_parallel_tasks` loops each long-poll for a task, run it, and report its result until
//! the coordinator accepts the report (results are fenced by attempt, so re-sending is safe).
//! While a task runs, its progress is sent every half second; an `abandon` answer (the lease
//! was lost, the job failed) cancels the task.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use bk_proto::endpoints::{status_with_causes, ReplicaEndpoints};
use bk_proto::model::TaskSpec;
use bk_proto::pb;
use bk_proto::pb::worker_hub_client::WorkerHubClient;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;
use tracing::{error, info, warn};

use crate::config::WorkerConfig;
use crate::error::TaskError;
use crate::runtime::TaskRuntime;
use crate::tasks::{run_task, ProgressCounters};

/// Calls are retried over this many attempts (rotating endpoints, following the leader).
const CALL_ATTEMPTS: u32 = 6;
const PULL_WAIT: Duration = Duration::from_secs(10);
const PROGRESS_INTERVAL: Duration = Duration::from_millis(500);

/// A running worker's side of the conversation.
pub struct Conversation {
    config: Arc<WorkerConfig>,
    worker_id: String,
    endpoints: ReplicaEndpoints,
    runtime: TaskRuntime,
    /// Raised when the coordinator no longer knows this worker; the heartbeat loop registers.
    register_again: Notify,
    /// Counters served on `/metrics`.
    pub(crate) metrics: Arc<crate::metrics::WorkerMetrics>,
}

impl Conversation {
    /// The worker's configuration.
    pub fn config(&self) -> &WorkerConfig {
        &self.config
    }

    /// Prepares a worker.
    ///
    /// # Errors
    /// When the coordinator endpoints do not parse or the TLS files cannot be read.
    pub fn new(config: WorkerConfig, env: Vec<(String, String)>) -> anyhow::Result<Self> {
        let tls = config.tls.load().context("invalid [tls] config")?;
        let endpoints = ReplicaEndpoints::parse(&config.coordinator_endpoints.join(","), tls)?;
        let config = Arc::new(config);
        Ok(Self {
            worker_id: config.worker_id(),
            runtime: TaskRuntime::new(config.clone(), env),
            config,
            endpoints,
            register_again: Notify::new(),
            metrics: Arc::default(),
        })
    }

    /// Registers, retrying until the coordinator answers or `shutdown`.
    pub async fn register(&self, shutdown: &CancellationToken) -> bool {
        let request = pb::RegisterWorkerRequest {
            worker_id: self.worker_id.clone(),
            source: self.config.source.clone(),
            node: self.config.node.clone(),
            version: env!("CARGO_PKG_VERSION").to_string(),
            max_concurrent_objects: u32::try_from(self.config.max_concurrent_objects)
                .unwrap_or(u32::MAX),
            max_bytes_per_second: self.config.max_bytes_per_second.unwrap_or(0),
            store_url: self.config.store.url.clone(),
            repositories: self.config.repositories_with_passphrase(),
            drills: self.config.drill.is_some(),
            snapshots: self.config.snapshot.as_ref().is_some_and(|snapshot| snapshot.enabled()),
        };
        let mut delay = Duration::from_millis(200);
        loop {
            let result = self
                .endpoints
                .call(CALL_ATTEMPTS, |channel| {
                    let request = self.authorized(request.clone());
                    async move { WorkerHubClient::new(channel).register_worker(request).await }
                })
                .await;
            match result {
                Ok(_) => {
                    info!(worker_id = %self.worker_id, coordinator = %self.endpoints.current_address(), "registered");
                    return true;
                }
                Err(status) => {
                    warn!(worker_id = %self.worker_id, error = %status_with_causes(&status), "cannot register yet, retrying")
                }
            }
            tokio::select! {
                _ = shutdown.cancelled() => return false,
                _ = tokio::time::sleep(delay) => {}
            }
            delay = (delay * 2).min(Duration::from_secs(5));
        }
    }

    /// Heartbeats every `heartbeat_interval` until `shutdown`; registers again when the signal
    /// is raised.
    pub async fn heartbeat_loop(self: Arc<Self>, shutdown: CancellationToken) {
        let mut interval = tokio::time::interval(self.config.heartbeat_interval);
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => return,
                _ = self.register_again.notified() => {
                    self.register(&shutdown).await;
                    continue;
                }
                _ = interval.tick() => {}
            }
            let worker_id = self.worker_id.clone();
            let result = self
                .endpoints
                .call(CALL_ATTEMPTS, |channel| {
                    let request = self.authorized(pb::HeartbeatRequest {
                        worker_id: worker_id.clone(),
                        store_retries: crate::retries::store_retries(),
                    });
                    async move { WorkerHubClient::new(channel).heartbeat(request).await }
                })
                .await;
            match result {
                Ok(response) if response.get_ref().must_register => {
                    self.register_again.notify_one()
                }
                Ok(_) => {
                    self.metrics.heartbeats_ok.fetch_add(1, Ordering::Relaxed);
                }
                Err(status) => {
                    self.metrics.heartbeats_failed.fetch_add(1, Ordering::Relaxed);
                    warn!(error = %status_with_causes(&status), "heartbeat failed")
                }
            }
        }
    }

    /// Pulls and runs tasks until `shutdown`.
    pub async fn task_loop(self: Arc<Self>, shutdown: CancellationToken) {
        while !shutdown.is_cancelled() {
            let request = pb::PullTaskRequest {
                worker_id: self.worker_id.clone(),
                wait_ms: PULL_WAIT.as_millis() as u32,
            };
            let pulled = tokio::select! {
                _ = shutdown.cancelled() => return,
                pulled = self.endpoints.call(CALL_ATTEMPTS, |channel| {
                    let request = self.authorized(request.clone());
                    async move { WorkerHubClient::new(channel).pull_task(request).await }
                }) => pulled,
            };
            match pulled {
                Ok(response) => {
                    if let Some(assignment) = response.into_inner().task {
                        self.run_assignment(assignment, &shutdown).await;
                    }
                }
                Err(status) => {
                    if status.code() == tonic::Code::NotFound {
                        self.register_again.notify_one();
                    } else {
                        warn!(error = %status_with_causes(&status), "cannot pull tasks, retrying");
                    }
                    tokio::select! {
                        _ = shutdown.cancelled() => return,
                        _ = tokio::time::sleep(Duration::from_secs(1)) => {}
                    }
                }
            }
        }
    }

    async fn run_assignment(&self, assignment: pb::TaskAssignment, shutdown: &CancellationToken) {
        let outcome = match serde_json::from_slice::<TaskSpec>(&assignment.spec_json) {
            Ok(spec) => self.run_spec(spec, assignment.attempt, shutdown).await,
            Err(error) => Err(TaskError::Invalid(format!(
                "cannot decode task (coordinator and worker versions differ?): {error}"
            ))),
        };
        let outcome = match outcome {
            Ok(report) => match serde_json::to_vec(&report) {
                Ok(json) => pb::report_result_request::Outcome::ReportJson(json),
                Err(error) => failure(&TaskError::Invalid(error.to_string())),
            },
            // Stopping: the lease will pass to the next attempt; say nothing.
            Err(TaskError::Abandoned(reason)) if shutdown.is_cancelled() => {
                info!(task_id = %assignment.task_id, %reason, "task abandoned while stopping");
                return;
            }
            // Told to stop (job failed or cancelled): say so at once, so the job's cleanup does
            // not wait for the lease to expire. A stale attempt's report is simply ignored.
            Err(error @ TaskError::Abandoned(_)) => {
                info!(task_id = %assignment.task_id, attempt = assignment.attempt, "task abandoned");
                failure(&error)
            }
            Err(error) => {
                error!(task_id = %assignment.task_id, attempt = assignment.attempt, %error, "task failed");
                failure(&error)
            }
        };
        let request = pb::ReportResultRequest {
            worker_id: self.worker_id.clone(),
            task_id: assignment.task_id.clone(),
            attempt: assignment.attempt,
            outcome: Some(outcome),
        };
        let mut delay = Duration::from_millis(200);
        loop {
            let reported = self
                .endpoints
                .call(CALL_ATTEMPTS, |channel| {
                    let request = self.authorized(request.clone());
                    async move { WorkerHubClient::new(channel).report_result(request).await }
                })
                .await;
            match reported {
                Ok(_) => return,
                Err(status) => {
                    warn!(task_id = %assignment.task_id, error = %status_with_causes(&status), "cannot report result yet, retrying")
                }
            }
            tokio::select! {
                _ = shutdown.cancelled() => return,
                _ = tokio::time::sleep(delay) => {}
            }
            delay = (delay * 2).min(Duration::from_secs(5));
        }
    }

    async fn run_spec(
        &self,
        spec: TaskSpec,
        attempt: u32,
        shutdown: &CancellationToken,
    ) -> Result<bk_proto::model::TaskReport, TaskError> {
        let task_id = spec.task_id;
        info!(%task_id, attempt, kind = ?std::mem::discriminant(&spec.kind), "task started");
        // Progress is reported from the start (before stores are opened, which may take a
        // while against a throttling store): the first report is what tells the coordinator
        // this worker really has the task.
        let progress = Arc::new(ProgressCounters::default());
        let cancel = shutdown.child_token();
        let reporter = self.report_progress_until_done(
            task_id.to_string(),
            attempt,
            progress.clone(),
            cancel.clone(),
        );
        let (result, ()) = tokio::join!(
            async {
                let result = match self.runtime.context(spec, attempt, &progress, &cancel).await {
                    Ok(context) => run_task(&context).await,
                    Err(error) => Err(error),
                };
                cancel.cancel();
                let outcome = if result.is_ok() {
                    &self.metrics.tasks_succeeded
                } else {
                    &self.metrics.tasks_failed
                };
                outcome.fetch_add(1, Ordering::Relaxed);
                let metrics = &self.metrics;
                metrics
                    .objects_done
                    .fetch_add(progress.objects_done.load(Ordering::Relaxed), Ordering::Relaxed);
                metrics
                    .bytes_done
                    .fetch_add(progress.bytes_done.load(Ordering::Relaxed), Ordering::Relaxed);
                result
            },
            reporter
        );
        match result {
            Err(TaskError::Abandoned(_)) if !shutdown.is_cancelled() => {
                Err(TaskError::Abandoned("lease lost".to_string()))
            }
            other => other,
        }
    }

    /// Sends progress until `done` is cancelled; cancels it when the coordinator says abandon.
    async fn report_progress_until_done(
        &self,
        task_id: String,
        attempt: u32,
        progress: Arc<ProgressCounters>,
        done: CancellationToken,
    ) {
        let mut interval = tokio::time::interval(PROGRESS_INTERVAL);
        loop {
            tokio::select! {
                _ = done.cancelled() => return,
                _ = interval.tick() => {}
            }
            let request = pb::ReportProgressRequest {
                worker_id: self.worker_id.clone(),
                task_id: task_id.clone(),
                attempt,
                objects_done: progress.objects_done.load(Ordering::Relaxed),
                bytes_done: progress.bytes_done.load(Ordering::Relaxed),
                objects_total: progress.objects_total.load(Ordering::Relaxed),
                bytes_total: progress.bytes_total.load(Ordering::Relaxed),
            };
            // The task's end must not wait for a progress call: stop as soon as it is done.
            let response = tokio::select! {
                _ = done.cancelled() => return,
                response = self.endpoints.call(2, |channel| {
                    let request = self.authorized(request.clone());
                    async move { WorkerHubClient::new(channel).report_progress(request).await }
                }) => response,
            };
            if let Ok(response) = response {
                if response.into_inner().abandon {
                    warn!(%task_id, attempt, "coordinator took the task back, abandoning it");
                    done.cancel();
                    return;
                }
            }
        }
    }
}

impl Conversation {
    /// Wraps a message with the join token, read now (from its file when configured), so a
    /// rotated token is used from the next call on.
    fn authorized<T>(&self, message: T) -> tonic::Request<T> {
        let mut request = tonic::Request::new(message);
        let token = match &self.config.join_token_file {
            Some(path) => std::fs::read_to_string(path).ok().map(|token| token.trim().to_string()),
            None => self.config.join_token.clone(),
        };
        if let Some(value) = token
            .filter(|token| !token.is_empty())
            .and_then(|token| format!("Bearer {token}").parse().ok())
        {
            request.metadata_mut().insert("authorization", value);
        }
        request
    }
}

fn failure(error: &TaskError) -> pb::report_result_request::Outcome {
    pb::report_result_request::Outcome::Failure(pb::TaskFailure {
        message: error.to_string(),
        retryable: error.is_retryable(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn test_a_failure_tells_the_coordinator_whether_to_retry() {
        let cases = [
            (TaskError::Retryable("QuestDB not reachable yet".into()), true),
            (TaskError::Invalid("target not empty: pass --wipe".into()), false),
        ];
        for (error, retryable) in cases {
            let message = error.to_string();
            let pb::report_result_request::Outcome::Failure(failure) = failure(&error) else {
                panic!("not a failure");
            };
            assert_eq!((failure.message, failure.retryable), (message, retryable));
        }
    }
}
