//! The worker's conversation with the coordinator: register, heartbeat, pull tasks, report.
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
use bk_proto::model::{RepositoryRef, TaskSpec};
use bk_proto::pb;
use bk_proto::pb::worker_hub_client::WorkerHubClient;
use object_store::ObjectStore;
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use tracing::{error, info, warn};

use crate::config::WorkerConfig;
use crate::error::RepositoryError;
use crate::error::TaskError;
use crate::repository::cache::RepositoryCache;
use crate::repository::config::InitSettings;
use crate::repository::counting::{CountingStore, RequestCounts};
use crate::repository::open::{open, OpenRequest};
use crate::repository::opened::Repository;
use crate::repository::packer::Packer;
use crate::store::open_store;
use crate::tasks::{run_task, ProgressCounters, TaskContext};

/// Calls are retried over this many attempts (rotating endpoints, following the leader).
const CALL_ATTEMPTS: u32 = 6;
const PULL_WAIT: Duration = Duration::from_secs(10);
const PROGRESS_INTERVAL: Duration = Duration::from_millis(500);

/// The worker's packers, by repository URL and config id: weak, so a packer lives as long as
/// the tasks using it.
type Packers =
    std::sync::Mutex<std::collections::HashMap<(String, String), std::sync::Weak<Packer>>>;

/// A running worker's shared state.
pub struct Hub {
    config: Arc<WorkerConfig>,
    worker_id: String,
    endpoints: ReplicaEndpoints,
    object_permits: Arc<Semaphore>,
    /// The worker's budget of bytes in chunk buffers, shared by its tasks.
    memory: crate::repository::buffers::ChunkMemory,
    throttle: Arc<crate::throttle::Throttle>,
    /// The process environment, captured once (the standard object-store variables).
    env: Vec<(String, String)>,
    /// Unlocked repository keys and indexes, kept between tasks.
    repositories: Arc<RepositoryCache>,
    /// One packer per repository in use.
    packers: Packers,
    /// Bounds blobs sealed at once to the cores.
    cpu: Arc<Semaphore>,
    /// Counters served on `/metrics`.
    pub(crate) metrics: Arc<crate::metrics::WorkerMetrics>,
}

impl Hub {
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
        let repositories = Arc::new(RepositoryCache::new(config.index_cache_dir(&env)));
        Ok(Self {
            worker_id: config.worker_id(),
            object_permits: Arc::new(Semaphore::new(config.max_concurrent_objects)),
            memory: crate::repository::buffers::ChunkMemory::default(),
            metrics: Arc::default(),
            throttle: Arc::new(crate::throttle::Throttle::new(config.max_bytes_per_second)),
            config: Arc::new(config),
            endpoints,
            env,
            repositories,
            packers: Default::default(),
            cpu: Arc::new(Semaphore::new(
                std::thread::available_parallelism().map_or(2, std::num::NonZeroUsize::get),
            )),
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

    /// Heartbeats every `heartbeat_interval` until `shutdown`; registers again when asked.
    pub async fn heartbeat_loop(self: Arc<Self>, shutdown: CancellationToken) {
        let mut interval = tokio::time::interval(self.config.heartbeat_interval);
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => return,
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
                    self.register(&shutdown).await;
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
                        self.register(&shutdown).await;
                    } else {
                        warn!(error = %status_with_causes(&status), "cannot pull tasks, retrying");
                        tokio::select! {
                            _ = shutdown.cancelled() => return,
                            _ = tokio::time::sleep(Duration::from_secs(1)) => {}
                        }
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
                let result = match self.task_context(spec, attempt, &progress, &cancel).await {
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

    /// Opens the task's stores and repository: what a task needs besides its spec.
    async fn task_context(
        &self,
        spec: TaskSpec,
        attempt: u32,
        progress: &Arc<ProgressCounters>,
        cancel: &CancellationToken,
    ) -> Result<TaskContext, TaskError> {
        let retry = &self.config.retry;
        let source =
            open_store(&self.config.store.url, &self.config.store.options, &self.env, retry, false)
                .map_err(|error| TaskError::Invalid(format!("node store: {error}")))?;
        let requests = Arc::new(RequestCounts::default());
        let (repository, uncounted) = self.open_repository(&spec.repository, &requests).await?;
        let packer = self.packer_for(&repository, uncounted);
        let mut context = TaskContext {
            spec,
            attempt,
            source,
            repository,
            repositories: self.repositories.clone(),
            packer,
            requests,
            progress: progress.clone(),
            object_permits: self.object_permits.clone(),
            memory: self.memory.clone(),
            max_objects_in_flight: self.config.max_concurrent_objects,
            cpu: self.cpu.clone(),
            throttle: self.throttle.clone(),
            cancel: cancel.clone(),
            store_url: self.config.store.url.clone(),
            retry: self.config.retry.clone(),
            store_options: self.config.store.options.clone(),
            env: self.env.clone(),
            questdb: self.config.questdb.clone(),
            check_formats: !self.env_is_set("BK_SKIP_FORMAT_CHECKS"),
            config: self.config.clone(),
        };
        if context.spec.kind.reads_node_store() {
            if let Some(path) = crate::snapshot::source_for_job(&context, &self.config.node).await?
            {
                let url = url::Url::from_directory_path(&path).map_err(|()| {
                    TaskError::Invalid(format!(
                        "snapshot path `{}` is not absolute",
                        path.display()
                    ))
                })?;
                context.source = open_store(
                    url.as_str(),
                    &std::collections::BTreeMap::new(),
                    &self.env,
                    retry,
                    false,
                )
                .map_err(|error| {
                    TaskError::Invalid(format!("snapshot `{}`: {error}", path.display()))
                })?;
            }
        }
        Ok(context)
    }

    fn env_is_set(&self, name: &str) -> bool {
        self.env.iter().any(|(key, value)| key == name && value == "1")
    }

    /// Opens (creating it the first time) the task's repository with this worker's passphrase,
    /// counting the task's requests; also returns the store uncounted (for the packer, which
    /// counts each pack's PUT for the task that filled or flushed it).
    async fn open_repository(
        &self,
        reference: &RepositoryRef,
        requests: &Arc<RequestCounts>,
    ) -> Result<(Repository, Arc<dyn ObjectStore>), TaskError> {
        let options = self
            .config
            .repositories
            .get(&reference.name)
            .map(|repository| repository.options.clone())
            .unwrap_or_default();
        let store = open_store(&reference.url, &options, &self.env, &self.config.retry, true)
            .map_err(|error| {
                TaskError::Invalid(format!("repository `{}`: {error}", reference.name))
            })?;
        let counted: Arc<dyn ObjectStore> =
            Arc::new(CountingStore::new(store.clone(), requests.clone()));
        let passphrase =
            self.config.repository_passphrase(&reference.name, &self.env).map_err(|reason| {
                RepositoryError::Locked { repository: reference.name.clone(), reason }
            })?;
        let request = OpenRequest {
            name: &reference.name,
            url: &reference.url,
            pinned_config: reference.config_id.as_deref(),
            passphrase,
            init: InitSettings {
                chunk_size: reference.chunk_size,
                pack_size: reference.pack_size,
                compression_level: reference.compression_level,
                unencrypted_blobs: self.env_is_set("BK_BENCH_UNENCRYPTED_BLOBS"),
            },
            kdf: self.config.key_derivation,
            host: &self.worker_id,
            allow_unencrypted: self.env_is_set("BK_BENCH_UNENCRYPTED_BLOBS"),
        };
        Ok((open(counted, &request, &self.repositories).await?, store))
    }

    /// The worker's packer for `repository`: shared by the tasks using it, made anew when none
    /// is alive (so a new task's store, with current credentials, uploads).
    fn packer_for(&self, repository: &Repository, store: Arc<dyn ObjectStore>) -> Arc<Packer> {
        let key = (repository.url.clone(), repository.config.config_id.clone());
        let mut packers = self.packers.lock().unwrap_or_else(|poison| poison.into_inner());
        packers.retain(|_, packer| packer.strong_count() > 0);
        if let Some(packer) = packers.get(&key).and_then(std::sync::Weak::upgrade) {
            return packer;
        }
        let config = &repository.config;
        let packer = Arc::new(Packer::new(
            store,
            repository.key.clone(),
            config.pack_size,
            config.chunk_size,
        ));
        packers.insert(key, Arc::downgrade(&packer));
        packer
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

impl Hub {
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
