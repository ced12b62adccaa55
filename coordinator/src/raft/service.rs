//! The `bk.v1.Raft` gRPC service: hands peers' RPCs to the local Raft instance.

use bk_proto::pb::raft_server::Raft as RaftService;
use bk_proto::pb::RaftPayload;
use serde::de::DeserializeOwned;
use serde::Serialize;
use tonic::{Request, Response, Status};

use super::types::Raft;

/// Serves replica-to-replica Raft RPCs.
#[derive(Clone)]
pub struct RaftServiceImpl {
    raft: Raft,
}

impl RaftServiceImpl {
    /// Serves `raft`.
    pub fn new(raft: Raft) -> Self {
        Self { raft }
    }
}

fn decode<T: DeserializeOwned>(request: Request<RaftPayload>) -> Result<T, Status> {
    decode_json(&request.into_inner().json)
}

fn decode_json<T: DeserializeOwned>(json: &[u8]) -> Result<T, Status> {
    serde_json::from_slice(json)
        .map_err(|error| Status::invalid_argument(format!("cannot decode raft payload: {error}")))
}

fn reply<T: Serialize>(result: &T) -> Result<Response<RaftPayload>, Status> {
    serde_json::to_vec(result)
        .map(|json| Response::new(RaftPayload { json, snapshot_chunk: Vec::new() }))
        .map_err(|error| Status::internal(format!("cannot encode raft payload: {error}")))
}

#[tonic::async_trait]
impl RaftService for RaftServiceImpl {
    async fn append_entries(
        &self,
        request: Request<RaftPayload>,
    ) -> Result<Response<RaftPayload>, Status> {
        let result = self.raft.append_entries(decode(request)?).await;
        reply(&result)
    }

    async fn vote(&self, request: Request<RaftPayload>) -> Result<Response<RaftPayload>, Status> {
        let result = self.raft.vote(decode(request)?).await;
        reply(&result)
    }

    async fn install_snapshot(
        &self,
        request: Request<RaftPayload>,
    ) -> Result<Response<RaftPayload>, Status> {
        let payload = request.into_inner();
        let chunk = payload.snapshot_chunk;
        let mut snapshot_request: openraft::raft::InstallSnapshotRequest<super::types::TypeConfig> =
            decode_json(&payload.json)?;
        snapshot_request.data = chunk;
        let result = self.raft.install_snapshot(snapshot_request).await;
        reply(&result)
    }
}
