//! Replica-to-replica RPCs over the `bk.v1.Raft` gRPC service.
//!
//! One lazily connected tonic channel per peer address, reused for every RPC (reconnecting per
//! RPC, as openraft's example does, costs a handshake per heartbeat). openraft's requests and
//! responses travel as JSON inside [`RaftPayload`], except a snapshot
//! chunk's bytes, which travel raw beside it.

use std::collections::HashMap;
use std::time::Duration;

use bk_proto::pb::raft_client::RaftClient;
use bk_proto::pb::RaftPayload;
use bk_proto::tls::endpoint_uri;
use openraft::error::{
    InstallSnapshotError, NetworkError, RPCError, RaftError, RemoteError, Unreachable,
};
use openraft::network::{RPCOption, RaftNetwork, RaftNetworkFactory};
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, InstallSnapshotRequest, InstallSnapshotResponse,
    VoteRequest, VoteResponse,
};
use openraft::BasicNode;
use serde::de::DeserializeOwned;
use serde::Serialize;
use tonic::transport::{Channel, ClientTlsConfig, Endpoint};

use super::types::{ReplicaId, TypeConfig, MAX_RAFT_MESSAGE_BYTES};

/// Hands out connections to peers, caching one channel per address.
#[derive(Debug, Default)]
pub struct NetworkFactory {
    channels: HashMap<String, Channel>,
    /// How to reach peers over TLS (trust, and the client certificate for mutual TLS); `None`:
    /// plaintext.
    tls: Option<ClientTlsConfig>,
}

impl NetworkFactory {
    /// A factory whose connections use `tls` when given.
    pub fn new(tls: Option<ClientTlsConfig>) -> Self {
        Self { channels: HashMap::new(), tls }
    }

    fn connect(&self, address: &str) -> Option<Channel> {
        let mut endpoint = Endpoint::from_shared(address.to_string()).ok()?;
        if let Some(tls) = &self.tls {
            endpoint = endpoint.tls_config(tls.clone()).ok()?;
        }
        Some(endpoint.connect_timeout(Duration::from_secs(2)).tcp_nodelay(true).connect_lazy())
    }
}

impl RaftNetworkFactory<TypeConfig> for NetworkFactory {
    type Network = PeerConnection;

    async fn new_client(&mut self, target: ReplicaId, node: &BasicNode) -> Self::Network {
        let address = endpoint_uri(&node.addr, self.tls.is_some());
        let channel = match self.channels.get(&address) {
            Some(channel) => Some(channel.clone()),
            None => self.connect(&address).inspect(|channel| {
                self.channels.insert(address.clone(), channel.clone());
            }),
        };
        let client = channel.map(|channel| {
            RaftClient::new(channel)
                .max_decoding_message_size(MAX_RAFT_MESSAGE_BYTES)
                .max_encoding_message_size(MAX_RAFT_MESSAGE_BYTES)
        });
        PeerConnection { target, address, client }
    }
}

/// A connection to one peer.
#[derive(Debug)]
pub struct PeerConnection {
    target: ReplicaId,
    address: String,
    client: Option<RaftClient<Channel>>,
}

type RpcResult<T, E> = Result<T, RPCError<ReplicaId, BasicNode, RaftError<ReplicaId, E>>>;

impl PeerConnection {
    async fn call<Req, Resp, E>(
        &mut self,
        method: Method,
        request: &Req,
        snapshot_chunk: Vec<u8>,
        option: &RPCOption,
    ) -> RpcResult<Resp, E>
    where
        Req: Serialize,
        Resp: DeserializeOwned,
        E: std::error::Error + DeserializeOwned,
    {
        let Some(client) = self.client.as_mut() else {
            let error = std::io::Error::other(format!("invalid peer address `{}`", self.address));
            return Err(RPCError::Unreachable(Unreachable::new(&error)));
        };
        let json = serde_json::to_vec(request)
            .map_err(|error| RPCError::Network(NetworkError::new(&error)))?;
        let mut grpc_request = tonic::Request::new(RaftPayload { json, snapshot_chunk });
        grpc_request.set_timeout(option.hard_ttl());
        let response = match method {
            Method::AppendEntries => client.append_entries(grpc_request).await,
            Method::Vote => client.vote(grpc_request).await,
            Method::InstallSnapshot => client.install_snapshot(grpc_request).await,
        };
        let payload = match response {
            Ok(response) => response.into_inner(),
            Err(status)
                if matches!(
                    status.code(),
                    tonic::Code::Unavailable | tonic::Code::DeadlineExceeded
                ) =>
            {
                return Err(RPCError::Unreachable(Unreachable::new(&status)));
            }
            Err(status) => return Err(RPCError::Network(NetworkError::new(&status))),
        };
        let result: Result<Resp, RaftError<ReplicaId, E>> =
            serde_json::from_slice(&payload.json)
                .map_err(|error| RPCError::Network(NetworkError::new(&error)))?;
        result.map_err(|error| RPCError::RemoteError(RemoteError::new(self.target, error)))
    }
}

#[derive(Clone, Copy, Debug)]
enum Method {
    AppendEntries,
    Vote,
    InstallSnapshot,
}

impl RaftNetwork<TypeConfig> for PeerConnection {
    async fn append_entries(
        &mut self,
        request: AppendEntriesRequest<TypeConfig>,
        option: RPCOption,
    ) -> RpcResult<AppendEntriesResponse<ReplicaId>, openraft::error::Infallible> {
        self.call(Method::AppendEntries, &request, Vec::new(), &option).await
    }

    async fn install_snapshot(
        &mut self,
        mut request: InstallSnapshotRequest<TypeConfig>,
        option: RPCOption,
    ) -> RpcResult<InstallSnapshotResponse<ReplicaId>, InstallSnapshotError> {
        let chunk = std::mem::take(&mut request.data);
        self.call(Method::InstallSnapshot, &request, chunk, &option).await
    }

    async fn vote(
        &mut self,
        request: VoteRequest<ReplicaId>,
        option: RPCOption,
    ) -> RpcResult<VoteResponse<ReplicaId>, openraft::error::Infallible> {
        self.call(Method::Vote, &request, Vec::new(), &option).await
    }
}
