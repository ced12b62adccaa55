//! The `bk.v1.Control` service: what bkctl and any other client use.

use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use bk_proto::ids::{BackupId, JobId};
use bk_proto::pb;
use bk_proto::pb::control_server::Control;
use futures::Stream;
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status};
use ulid::Ulid;

use super::convert::{self, JobViewContext};
use crate::coordinator::Coordinator;
use crate::core::job::Job;
use crate::core::locks::lock_reason;
use crate::core::plan::drill::DrillTarget;
use crate::core::plan::prune::{PruneRequest, RetentionPolicy};
use crate::core::plan::{PlanError, RestoreRequest};
use crate::core::submit::jobs::{self, Ids};
use crate::core::submit::BackupRequest;
use crate::core::{ClusterState, Command, CommandResponse};
use crate::error::{CoordinatorError, CoordinatorResult};

/// Serves the Control API.
pub struct ControlServiceImpl {
    coordinator: Arc<Coordinator>,
}

impl ControlServiceImpl {
    /// Serves `coordinator`.
    pub fn new(coordinator: Arc<Coordinator>) -> Self {
        Self { coordinator }
    }

    /// Reads answer from the leader once it confirmed it leads (a client reads what it wrote,
    /// whichever replica it asked: a follower points it at the leader), or, with `local`, from
    /// this replica's own state.
    async fn fresh_unless(&self, local: bool) -> CoordinatorResult<()> {
        if local {
            return Ok(());
        }
        self.coordinator.ensure_linearizable().await
    }

    fn job_view(&self, job_id: JobId) -> CoordinatorResult<pb::Job> {
        let is_leader = self.coordinator.is_leader();
        self.coordinator.read(|state| {
            let job = state
                .jobs
                .get(&job_id)
                .ok_or_else(|| CoordinatorError::NotFound { what: format!("job `{job_id}`") })?;
            Ok(self.render(job, state, is_leader))
        })
    }

    fn render(&self, job: &Job, state: &crate::core::ClusterState, is_leader: bool) -> pb::Job {
        let locked_by = lock_reason(job, state.jobs.values());
        let context = JobViewContext {
            workers: &state.workers,
            runtime: is_leader.then_some(&self.coordinator.runtime),
            lease_timeout: self.coordinator.lease_timeout,
            locked_by,
        };
        convert::job_to_pb(job, &context)
    }

    /// Proposes what `plan` makes of the state, fresh ids and the time (a `SubmitJob`), and
    /// returns the new job's id. `what` names the job in the log.
    async fn submit(
        &self,
        what: String,
        plan: impl FnOnce(&ClusterState, Ids, u64) -> Result<Command, PlanError>,
    ) -> CoordinatorResult<JobId> {
        self.coordinator.ensure_leader()?;
        let ids = Ids {
            job_id: JobId::from_ulid(Ulid::new()),
            backup_id: BackupId::from_ulid(Ulid::new()),
        };
        let now_ms = crate::clock::now_ms();
        let command = self.coordinator.read(|state| plan(state, ids, now_ms))?;
        expect_applied(self.coordinator.propose(command).await?)?;
        tracing::info!(job_id = %ids.job_id, "{what} submitted");
        Ok(ids.job_id)
    }
}

/// The answer to every submission.
fn submitted(job_id: JobId) -> Result<Response<pb::SubmitJobResponse>, Status> {
    Ok(Response::new(pb::SubmitJobResponse { job_id: job_id.to_string() }))
}

fn parse_backup_id(value: &str) -> Result<BackupId, Status> {
    value
        .parse()
        .map_err(|error: bk_proto::ids::ParseIdError| Status::invalid_argument(error.to_string()))
}

/// Turns a rejected command into an error.
pub(crate) fn expect_applied(response: CommandResponse) -> CoordinatorResult<()> {
    match response {
        CommandResponse::Applied => Ok(()),
        CommandResponse::Rejected(rejection) => Err(rejection.into()),
    }
}

fn parse_job_id(value: &str) -> Result<JobId, Status> {
    value
        .parse()
        .map_err(|error: bk_proto::ids::ParseIdError| Status::invalid_argument(error.to_string()))
}

type JobStream = Pin<Box<dyn Stream<Item = Result<pb::Job, Status>> + Send>>;

#[tonic::async_trait]
impl Control for ControlServiceImpl {
    async fn add_source(
        &self,
        request: Request<pb::AddSourceRequest>,
    ) -> Result<Response<pb::AddSourceResponse>, Status> {
        let source = request
            .into_inner()
            .source
            .ok_or_else(|| Status::invalid_argument("missing `source`"))?;
        let source = convert::source_from_pb(source)?;
        expect_applied(self.coordinator.propose(Command::PutSource(source)).await?)?;
        Ok(Response::new(pb::AddSourceResponse {}))
    }

    async fn list_sources(
        &self,
        _: Request<pb::ListSourcesRequest>,
    ) -> Result<Response<pb::ListSourcesResponse>, Status> {
        let sources = self
            .coordinator
            .read(|state| state.sources.values().map(convert::source_to_pb).collect());
        Ok(Response::new(pb::ListSourcesResponse { sources }))
    }

    async fn add_repository(
        &self,
        request: Request<pb::AddRepositoryRequest>,
    ) -> Result<Response<pb::AddRepositoryResponse>, Status> {
        let repository = request
            .into_inner()
            .repository
            .ok_or_else(|| Status::invalid_argument("missing `repository`"))?;
        let repository = convert::repository_from_pb(repository)?;
        expect_applied(self.coordinator.propose(Command::PutRepository(repository)).await?)?;
        Ok(Response::new(pb::AddRepositoryResponse {}))
    }

    async fn list_repositories(
        &self,
        _: Request<pb::ListRepositoriesRequest>,
    ) -> Result<Response<pb::ListRepositoriesResponse>, Status> {
        let repositories = self
            .coordinator
            .read(|state| state.repositories.values().map(convert::repository_to_pb).collect());
        Ok(Response::new(pb::ListRepositoriesResponse { repositories }))
    }

    async fn submit_backup(
        &self,
        request: Request<pb::SubmitBackupRequest>,
    ) -> Result<Response<pb::SubmitJobResponse>, Status> {
        let request = request.into_inner();
        let backup = BackupRequest {
            source: &request.source,
            repository: &request.repository,
            full: request.full,
            adopt_checkpoint: request.adopt_checkpoint,
            allow_corrupt: request.allow_corrupt,
        };
        let what = format!("backup of `{}` into `{}`", request.source, request.repository);
        submitted(
            self.submit(what, |state, ids, now| jobs::backup(state, &backup, ids, now)).await?,
        )
    }

    async fn submit_restore(
        &self,
        request: Request<pb::SubmitRestoreRequest>,
    ) -> Result<Response<pb::SubmitJobResponse>, Status> {
        let request = request.into_inner();
        let backup_id = parse_backup_id(&request.backup_id)?;
        let restore = RestoreRequest {
            default_target: (!request.target.is_empty()).then_some(request.target),
            node_targets: request.node_targets.into_iter().collect(),
            nodes_stopped: request.nodes_stopped,
            wipe: request.wipe,
            resume: request.resume,
            http_endpoints: Default::default(),
        };
        let what = format!("restore of backup `{backup_id}`");
        submitted(
            self.submit(what, |state, ids, now| jobs::restore(state, backup_id, restore, ids, now))
                .await?,
        )
    }

    async fn submit_verify(
        &self,
        request: Request<pb::SubmitVerifyRequest>,
    ) -> Result<Response<pb::SubmitJobResponse>, Status> {
        let request = request.into_inner();
        let (backup_id, deep) = (parse_backup_id(&request.backup_id)?, request.deep);
        let what = format!("verify of backup `{backup_id}`");
        submitted(
            self.submit(what, |state, ids, now| jobs::verify(state, backup_id, deep, ids, now))
                .await?,
        )
    }

    async fn submit_drill(
        &self,
        request: Request<pb::SubmitDrillRequest>,
    ) -> Result<Response<pb::SubmitJobResponse>, Status> {
        let request = request.into_inner();
        let target = if !request.backup_id.is_empty() {
            DrillTarget::Backup(parse_backup_id(&request.backup_id)?)
        } else if !request.source.is_empty() {
            DrillTarget::NewestOf {
                source: request.source.into(),
                repository: (!request.repository.is_empty()).then_some(request.repository),
            }
        } else {
            return Err(Status::invalid_argument(
                "name the backup to drill (`--backup ID`) or its source (`--source NAME`)",
            ));
        };
        let what = format!("drill of {target:?}");
        submitted(self.submit(what, |state, ids, now| jobs::drill(state, &target, ids, now)).await?)
    }

    async fn cancel_job(
        &self,
        request: Request<pb::CancelJobRequest>,
    ) -> Result<Response<pb::CancelJobResponse>, Status> {
        let job_id = parse_job_id(&request.into_inner().job_id)?;
        let command = Command::CancelJob { job_id, at_ms: crate::clock::now_ms() };
        match self.coordinator.propose(command).await? {
            CommandResponse::Applied => {
                tracing::info!(%job_id, "job cancelled by an operator");
                Ok(Response::new(pb::CancelJobResponse {}))
            }
            CommandResponse::Rejected(rejection) => Err(CoordinatorError::from(rejection).into()),
        }
    }

    async fn submit_prune(
        &self,
        request: Request<pb::SubmitPruneRequest>,
    ) -> Result<Response<pb::SubmitJobResponse>, Status> {
        let request = request.into_inner();
        let prune = PruneRequest {
            source: request.source.clone().into(),
            policy: RetentionPolicy {
                keep_last: request.keep_last,
                keep_daily: request.keep_daily,
                keep_weekly: request.keep_weekly,
                keep_monthly: request.keep_monthly,
            },
            dry_run: request.dry_run,
            max_unused_percent: request
                .max_unused_percent
                .unwrap_or_else(bk_proto::model::default_max_unused_percent),
        };
        let (repository, what) = (request.repository, format!("prune of `{}`", request.source));
        submitted(
            self.submit(what, |state, ids, now| jobs::prune(state, &repository, &prune, ids, now))
                .await?,
        )
    }

    async fn submit_repository_key(
        &self,
        request: Request<pb::SubmitRepositoryKeyRequest>,
    ) -> Result<Response<pb::SubmitJobResponse>, Status> {
        let request = request.into_inner();
        let action = convert::key_action_from_pb(request.action)?;
        let (repository, what) = (request.repository, "repository key job".to_string());
        submitted(
            self.submit(what, |state, ids, now| jobs::key(state, &repository, action, ids, now))
                .await?,
        )
    }

    async fn submit_repository_check(
        &self,
        request: Request<pb::SubmitRepositoryCheckRequest>,
    ) -> Result<Response<pb::SubmitJobResponse>, Status> {
        let request = request.into_inner();
        let (repository, percent) = (request.repository, request.read_data_percent);
        let what = format!("check of repository `{repository}`");
        submitted(
            self.submit(what, |state, ids, now| jobs::check(state, &repository, percent, ids, now))
                .await?,
        )
    }

    async fn get_job(
        &self,
        request: Request<pb::GetJobRequest>,
    ) -> Result<Response<pb::Job>, Status> {
        let request = request.into_inner();
        self.fresh_unless(request.local).await?;
        let job_id = parse_job_id(&request.job_id)?;
        Ok(Response::new(self.job_view(job_id)?))
    }

    async fn list_jobs(
        &self,
        request: Request<pb::ListJobsRequest>,
    ) -> Result<Response<pb::ListJobsResponse>, Status> {
        let request = request.into_inner();
        self.fresh_unless(request.local).await?;
        let limit = match request.limit {
            0 => usize::MAX,
            limit => limit as usize,
        };
        let is_leader = self.coordinator.is_leader();
        let jobs = self.coordinator.read(|state| {
            state
                .jobs
                .values()
                .rev()
                .take(limit)
                .map(|job| self.render(job, state, is_leader))
                .collect()
        });
        Ok(Response::new(pb::ListJobsResponse { jobs }))
    }

    type WatchJobStream = JobStream;

    async fn watch_job(
        &self,
        request: Request<pb::WatchJobRequest>,
    ) -> Result<Response<Self::WatchJobStream>, Status> {
        // Progress lives in the leader's memory: watchers follow the leader.
        self.coordinator.ensure_leader()?;
        let job_id = parse_job_id(&request.into_inner().job_id)?;
        let first = self.job_view(job_id)?;
        let (sender, receiver) = tokio::sync::mpsc::channel(4);
        let service = ControlServiceImpl { coordinator: self.coordinator.clone() };
        tokio::spawn(async move { service.stream_job(job_id, first, sender).await });
        Ok(Response::new(Box::pin(ReceiverStream::new(receiver))))
    }

    async fn list_backups(
        &self,
        request: Request<pb::ListBackupsRequest>,
    ) -> Result<Response<pb::ListBackupsResponse>, Status> {
        let request = request.into_inner();
        self.fresh_unless(request.local).await?;
        let source = request.source;
        let backups = self.coordinator.read(|state| {
            state
                .backups
                .values()
                .rev()
                .filter(|backup| source.is_empty() || backup.source == source)
                .map(convert::backup_to_pb)
                .collect()
        });
        Ok(Response::new(pb::ListBackupsResponse { backups }))
    }

    async fn get_backup(
        &self,
        request: Request<pb::GetBackupRequest>,
    ) -> Result<Response<pb::Backup>, Status> {
        let request = request.into_inner();
        self.fresh_unless(request.local).await?;
        let backup_id: BackupId =
            request.backup_id.parse().map_err(|error: bk_proto::ids::ParseIdError| {
                Status::invalid_argument(error.to_string())
            })?;
        let backup =
            self.coordinator.read(|state| state.backups.get(&backup_id).map(convert::backup_to_pb));
        let backup = backup
            .ok_or_else(|| CoordinatorError::NotFound { what: format!("backup `{backup_id}`") })?;
        Ok(Response::new(backup))
    }

    async fn add_schedule(
        &self,
        request: Request<pb::AddScheduleRequest>,
    ) -> Result<Response<pb::AddScheduleResponse>, Status> {
        let schedule = request
            .into_inner()
            .schedule
            .ok_or_else(|| Status::invalid_argument("missing `schedule`"))?;
        super::schedules::add_schedule(&self.coordinator, schedule).await?;
        Ok(Response::new(pb::AddScheduleResponse {}))
    }

    async fn list_schedules(
        &self,
        _: Request<pb::ListSchedulesRequest>,
    ) -> Result<Response<pb::ListSchedulesResponse>, Status> {
        Ok(Response::new(pb::ListSchedulesResponse {
            schedules: super::schedules::list_schedules(&self.coordinator),
        }))
    }

    async fn remove_schedule(
        &self,
        request: Request<pb::RemoveScheduleRequest>,
    ) -> Result<Response<pb::RemoveScheduleResponse>, Status> {
        super::schedules::remove_schedule(&self.coordinator, request.into_inner().name).await?;
        Ok(Response::new(pb::RemoveScheduleResponse {}))
    }

    async fn cluster_status(
        &self,
        _: Request<pb::ClusterStatusRequest>,
    ) -> Result<Response<pb::ClusterStatusResponse>, Status> {
        Ok(Response::new(super::cluster::cluster_status(&self.coordinator)))
    }

    async fn add_replica(
        &self,
        request: Request<pb::AddReplicaRequest>,
    ) -> Result<Response<pb::AddReplicaResponse>, Status> {
        let request = request.into_inner();
        super::cluster::add_replica(&self.coordinator, request.replica_id, &request.address)
            .await?;
        Ok(Response::new(pb::AddReplicaResponse {}))
    }

    async fn remove_replica(
        &self,
        request: Request<pb::RemoveReplicaRequest>,
    ) -> Result<Response<pb::RemoveReplicaResponse>, Status> {
        super::cluster::remove_replica(&self.coordinator, request.into_inner().replica_id).await?;
        Ok(Response::new(pb::RemoveReplicaResponse {}))
    }

    async fn list_workers(
        &self,
        _: Request<pb::ListWorkersRequest>,
    ) -> Result<Response<pb::ListWorkersResponse>, Status> {
        let is_leader = self.coordinator.is_leader();
        let liveness = is_leader.then(|| convert::Liveness {
            last_seen: self.coordinator.runtime.last_seen_ago(),
            store_retries: self.coordinator.runtime.store_retries(),
        });
        let workers = self.coordinator.read(|state| {
            state
                .workers
                .values()
                .map(|worker| convert::worker_to_pb(worker, liveness.as_ref()))
                .collect()
        });
        Ok(Response::new(pb::ListWorkersResponse { workers }))
    }
}

impl ControlServiceImpl {
    /// Sends the job on every change, at most every 200 ms, and at least every 2 s (waiting
    /// reasons change with time), until it has ended or the client went away. Its end is sent
    /// at once: a client waiting for a job learns it ended without the pacing's delay.
    async fn stream_job(
        &self,
        job_id: JobId,
        first: pb::Job,
        sender: tokio::sync::mpsc::Sender<Result<pb::Job, Status>>,
    ) {
        let mut changes = self.coordinator.subscribe();
        let mut view = first;
        loop {
            if sender.send(Ok(view)).await.is_err() {
                return;
            }
            view = match self.next_view(job_id, &mut changes).await {
                Ok(next) => next,
                Err(error) => {
                    let _ = sender.send(Err(error.into())).await;
                    return;
                }
            };
            if job_ended(&view) {
                let _ = sender.send(Ok(view)).await;
                return;
            }
        }
    }

    /// The job's next view to send: after a change and the pace, at once when the job ended,
    /// or after 2 s without a change (elapsed times move on).
    async fn next_view(
        &self,
        job_id: JobId,
        changes: &mut tokio::sync::watch::Receiver<u64>,
    ) -> CoordinatorResult<pb::Job> {
        const PACE: Duration = Duration::from_millis(200);
        let sent_at = tokio::time::Instant::now();
        let mut deadline = sent_at + Duration::from_secs(2);
        loop {
            let _ = tokio::time::timeout_at(deadline, changes.changed()).await;
            let next = self.job_view(job_id)?;
            if job_ended(&next) || sent_at.elapsed() >= PACE {
                return Ok(next);
            }
            deadline = deadline.min(sent_at + PACE);
        }
    }
}

fn job_ended(job: &pb::Job) -> bool {
    matches!(
        pb::JobState::try_from(job.state),
        Ok(pb::JobState::Succeeded | pb::JobState::Failed | pb::JobState::Cancelled)
    )
}
