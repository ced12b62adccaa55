//! bk's wire contract, shared by every binary.
//!
//! # Layout
//! - [`pb`]: the generated gRPC services and messages of package `bk.v1` (`Control` for clients,
//!   `WorkerHub` for workers, `Raft` for replicas).
//! - [`ids`]: newtype identifiers (`JobId`, `TaskId`, `BackupId`) with `Display` + `FromStr`.
//! - [`influxdb3_layout`]: InfluxDB 3's prefixes and objects, for the planners and the tasks.
//! - [`model`]: what a task asks a worker to do ([`model::TaskSpec`]) and what it reports back
//!   ([`model::TaskReport`]): the JSON payloads of the `WorkerHub` service.
//! - [`endpoints`]: a client-side channel over a list of replica endpoints that follows the
//!   leader hint replicas return.
//! - `task_facts`: what kind of work a [`model::TaskKind`] is (moves objects, reads a node's
//!   store, uses the repository), asked by both sides.
//! - [`support`]: what every binary shares: versioned config files, tracing, signal handling.
//! - [`tls`]: the PEM files servers and clients are configured with, turned into tonic configs.
#![warn(missing_docs)]

pub mod endpoints;
pub mod ids;
pub mod influxdb3_layout;
pub mod model;
pub mod support;
mod task_facts;
pub mod tls;

/// The generated protobuf messages and gRPC clients/servers of package `bk.v1`.
#[allow(missing_docs, unreachable_pub, clippy::all)]
pub mod pb {
    tonic::include_proto!("bk.v1");
}

/// The encoded `FileDescriptorSet` of package `bk.v1`, for gRPC server reflection.
pub const FILE_DESCRIPTOR_SET: &[u8] =
    include_bytes!(concat!(env!("OUT_DIR"), "/bk_descriptor.bin"));

/// The metadata key a follower sets on UNAVAILABLE to point clients at the leader's address.
pub const LEADER_ADDR_METADATA: &str = "bk-leader-addr";
