//! Starting and stopping a replica.

use std::collections::BTreeMap;
use std::sync::Arc;

use anyhow::Context;
use bk_proto::pb::control_server::ControlServer;
use bk_proto::pb::raft_server::RaftServer;
use bk_proto::pb::worker_hub_server::WorkerHubServer;
use openraft::error::{InitializeError, RaftError};
use openraft::BasicNode;
use tokio::net::TcpListener;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
use tonic::service::Routes;
use tracing::{info, warn};

use crate::auth::TokenSet;
use crate::config::CoordinatorConfig;
use crate::coordinator::Coordinator;
use crate::leader::lease::run_lease_expiry;
use crate::raft::service::RaftServiceImpl;
use crate::raft::start_raft;
use crate::service::control::ControlServiceImpl;
use crate::service::worker_hub::WorkerHubServiceImpl;
use crate::shared::SharedState;

/// Runs a coordinator replica on `listener` until `shutdown` is cancelled.
///
/// Teardown order: stop accepting RPCs (in-flight ones drain), stop the lease loop, shut Raft
/// down (flushing its storage), join every task.
///
/// # Errors
/// Fails when the storage cannot be opened, Raft cannot start, or the server fails.
pub async fn run(
    config: CoordinatorConfig,
    listener: TcpListener,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    let bound = listener.local_addr().context("failed to read the listener's address")?;
    let advertise_addr = config.advertise_addr.clone().unwrap_or_else(|| bound.to_string());
    // Read the TLS files before anything starts, so a bad path fails the start-up, named.
    let server_tls = config.tls.server_files().load().context("invalid [tls] config")?;
    let coordinator = start_coordinator(&config, &advertise_addr).await?;
    let raft = coordinator.raft.clone();
    let mut tasks = JoinSet::new();
    tasks.spawn(run_lease_expiry(coordinator.clone(), shutdown.child_token()));
    tasks.spawn(crate::leader::schedules::run_schedules(
        coordinator.clone(),
        shutdown.child_token(),
    ));

    info!(%bound, %advertise_addr, replica_id = config.replica_id, data_dir = %config.data_dir.display(), "coordinator serving");
    let (client_tokens, worker_tokens) = token_sets(&config);
    let console = crate::console::router(
        coordinator.clone(),
        client_tokens.clone(),
        config.console.enabled,
        server_tls.is_some(),
    );
    let control = ControlServer::with_interceptor(
        ControlServiceImpl::new(coordinator.clone()),
        move |request| client_tokens.check(request),
    );
    let worker_hub = WorkerHubServer::with_interceptor(
        WorkerHubServiceImpl::new(coordinator.clone()),
        move |request| worker_tokens.check(request),
    );
    let mut server = tonic::transport::Server::builder();
    if let Some(tls) = server_tls {
        info!(
            mutual = config.tls.server_files().requires_client_certificates(),
            "serving TLS only"
        );
        server = server.tls_config(tls).context("invalid [tls] certificate or key")?;
    } else {
        warn!("serving plaintext gRPC (see [tls] in the config)");
    }
    let routes = Routes::from(crate::metrics::router(coordinator.clone()).merge(console));
    let routes = with_health_and_reflection(routes)
        .await?
        .add_service(control)
        .add_service(worker_hub)
        .add_service(
            RaftServer::new(RaftServiceImpl::new(raft.clone()))
                .max_decoding_message_size(crate::raft::MAX_RAFT_MESSAGE_BYTES)
                .max_encoding_message_size(crate::raft::MAX_RAFT_MESSAGE_BYTES),
        );
    // HTTP/1.1 is accepted for Prometheus' GET /metrics; gRPC stays on HTTP/2.
    let served = server
        .accept_http1(true)
        .add_routes(routes)
        .serve_with_incoming_shutdown(
            // TCP_NODELAY: a lease answered to a long-polling worker would otherwise wait for
            // the peer's delayed ACK (40 ms per task on Linux, measured on a backup's phases).
            tonic::transport::server::TcpIncoming::from(listener).with_nodelay(Some(true)),
            shutdown.clone().cancelled_owned(),
        )
        .await;

    shutdown.cancel();
    if let Err(error) = raft.shutdown().await {
        warn!(%error, "raft did not shut down cleanly");
    }
    while tasks.join_next().await.is_some() {}
    info!("coordinator stopped");
    served.context("grpc server failed")
}

/// Opens the replica's storage, starts Raft (initialising a new cluster with `bootstrap`) and
/// builds the coordinator the services share.
async fn start_coordinator(
    config: &CoordinatorConfig,
    advertise_addr: &str,
) -> anyhow::Result<Arc<Coordinator>> {
    let shared = Arc::new(SharedState::default());
    let peer_tls = config.tls.peer_client_files().load().context("invalid [tls] config")?;
    let raft = start_raft(
        config.replica_id,
        &config.data_dir,
        config.openraft_config(),
        shared.clone(),
        peer_tls,
    )
    .await?;
    if config.bootstrap {
        let members = BTreeMap::from([(config.replica_id, BasicNode::new(advertise_addr))]);
        match raft.initialize(members).await {
            Ok(()) => {
                info!(replica_id = config.replica_id, "initialised a new single-replica cluster")
            }
            Err(RaftError::APIError(InitializeError::NotAllowed(_))) => {}
            Err(error) => return Err(error).context("failed to initialise the raft cluster"),
        }
    }
    Ok(Arc::new(Coordinator::new(
        config.replica_id,
        raft,
        shared,
        config.lease_timeout,
        config.jobs.history(),
        config.objectives.objectives(),
    )))
}

/// The client and worker tokens; an API without any is open, which is logged.
fn token_sets(config: &CoordinatorConfig) -> (TokenSet, TokenSet) {
    let client_tokens = TokenSet::new(
        "client",
        config.auth.client_tokens_file.clone(),
        config.auth.client_tokens.clone(),
    );
    let worker_tokens = TokenSet::new(
        "worker",
        config.auth.worker_tokens_file.clone(),
        config.auth.worker_tokens.clone(),
    );
    for (tokens, api) in [(&client_tokens, "Control"), (&worker_tokens, "WorkerHub")] {
        if !tokens.is_enabled() {
            warn!(api, "no tokens configured: the API accepts unauthenticated requests (see [auth] in the config)");
        }
    }
    (client_tokens, worker_tokens)
}

/// `routes` with health checking and reflection, so grpcurl and load balancers work out of the
/// box. Reflection in both versions: grpcurl-era tools and older clients ask for `v1alpha`.
async fn with_health_and_reflection(routes: Routes) -> anyhow::Result<Routes> {
    let (health_reporter, health) = tonic_health::server::health_reporter();
    for service in ["", "bk.v1.Control", "bk.v1.WorkerHub", "bk.v1.Raft"] {
        health_reporter.set_service_status(service, tonic_health::ServingStatus::Serving).await;
    }
    let reflection = || {
        tonic_reflection::server::Builder::configure()
            .register_encoded_file_descriptor_set(bk_proto::FILE_DESCRIPTOR_SET)
            .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
    };
    let reflection_v1alpha =
        reflection().build_v1alpha().context("failed to build the reflection service")?;
    let reflection = reflection().build_v1().context("failed to build the reflection service")?;
    Ok(routes.add_service(health).add_service(reflection).add_service(reflection_v1alpha))
}
