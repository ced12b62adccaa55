//! Typed calls to the Control API over the endpoints bkctl knows (following the leader).

use bk_proto::endpoints::ReplicaEndpoints;
use bk_proto::pb;
use bk_proto::pb::control_client::ControlClient;
use bk_proto::tls::ClientTlsFiles;
use tonic::Status;

/// Attempts per call across endpoints.
const ATTEMPTS: u32 = 5;

/// A Control API client.
pub(crate) struct Client {
    endpoints: ReplicaEndpoints,
    /// `Bearer <token>` for the Control API, when one is configured.
    authorization: Option<tonic::metadata::MetadataValue<tonic::metadata::Ascii>>,
}

/// Generates a method per unary RPC: `fn name(&self, request) -> Result<response, Status>`.
macro_rules! unary {
    ($($name:ident($request:ty) -> $response:ty;)*) => {
        $(
            pub(crate) async fn $name(&self, request: $request) -> Result<$response, Status> {
                self.endpoints
                    .call(ATTEMPTS, |channel| {
                        let request = self.authorized(request.clone());
                        async move { ControlClient::new(channel).$name(request).await }
                    })
                    .await
                    .map(tonic::Response::into_inner)
            }
        )*
    };
}

impl Client {
    /// A client over a comma-separated endpoint list.
    ///
    /// # Errors
    /// When the list is empty or an address is invalid.
    pub(crate) fn new(endpoints: &str) -> anyhow::Result<Self> {
        Self::with_token(endpoints, None, &ClientTlsFiles::default())
    }

    /// A client that presents `token` as a bearer token and connects with `tls`.
    ///
    /// # Errors
    /// As [`Client::new`], a token that cannot be sent as a header, or unreadable TLS files.
    pub(crate) fn with_token(
        endpoints: &str,
        token: Option<&str>,
        tls: &ClientTlsFiles,
    ) -> anyhow::Result<Self> {
        let authorization = match token.map(str::trim).filter(|token| !token.is_empty()) {
            Some(token) => Some(format!("Bearer {token}").parse().map_err(|_| {
                anyhow::anyhow!("the token contains characters a header cannot carry")
            })?),
            None => None,
        };
        let tls = tls.load()?;
        Ok(Self { endpoints: ReplicaEndpoints::parse(endpoints, tls)?, authorization })
    }

    fn authorized<T>(&self, message: T) -> tonic::Request<T> {
        let mut request = tonic::Request::new(message);
        if let Some(authorization) = &self.authorization {
            request.metadata_mut().insert("authorization", authorization.clone());
        }
        request
    }

    unary! {
        add_source(pb::AddSourceRequest) -> pb::AddSourceResponse;
        list_sources(pb::ListSourcesRequest) -> pb::ListSourcesResponse;
        add_repository(pb::AddRepositoryRequest) -> pb::AddRepositoryResponse;
        list_repositories(pb::ListRepositoriesRequest) -> pb::ListRepositoriesResponse;
        submit_backup(pb::SubmitBackupRequest) -> pb::SubmitJobResponse;
        submit_restore(pb::SubmitRestoreRequest) -> pb::SubmitJobResponse;
        submit_verify(pb::SubmitVerifyRequest) -> pb::SubmitJobResponse;
        submit_drill(pb::SubmitDrillRequest) -> pb::SubmitJobResponse;
        submit_prune(pb::SubmitPruneRequest) -> pb::SubmitJobResponse;
        submit_repository_key(pb::SubmitRepositoryKeyRequest) -> pb::SubmitJobResponse;
        submit_repository_check(pb::SubmitRepositoryCheckRequest) -> pb::SubmitJobResponse;
        get_job(pb::GetJobRequest) -> pb::Job;
        cancel_job(pb::CancelJobRequest) -> pb::CancelJobResponse;
        list_jobs(pb::ListJobsRequest) -> pb::ListJobsResponse;
        list_backups(pb::ListBackupsRequest) -> pb::ListBackupsResponse;
        get_backup(pb::GetBackupRequest) -> pb::Backup;
        list_workers(pb::ListWorkersRequest) -> pb::ListWorkersResponse;
        cluster_status(pb::ClusterStatusRequest) -> pb::ClusterStatusResponse;
        add_schedule(pb::AddScheduleRequest) -> pb::AddScheduleResponse;
        list_schedules(pb::ListSchedulesRequest) -> pb::ListSchedulesResponse;
        remove_schedule(pb::RemoveScheduleRequest) -> pb::RemoveScheduleResponse;
        add_replica(pb::AddReplicaRequest) -> pb::AddReplicaResponse;
        remove_replica(pb::RemoveReplicaRequest) -> pb::RemoveReplicaResponse;
    }

    /// Opens the job's progress stream on the leader.
    ///
    /// # Errors
    /// The status of the last attempt.
    pub(crate) async fn watch_job(
        &self,
        job_id: &str,
    ) -> Result<tonic::Streaming<pb::Job>, Status> {
        let request = pb::WatchJobRequest { job_id: job_id.to_string() };
        self.endpoints
            .call(ATTEMPTS, |channel| {
                let request = self.authorized(request.clone());
                async move { ControlClient::new(channel).watch_job(request).await }
            })
            .await
            .map(tonic::Response::into_inner)
    }
}
