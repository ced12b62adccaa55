//! The bk coordinator: turns requests into jobs of phased tasks, replicates their state with
//! openraft, and leases tasks to the workers that do the data IO. It never touches data itself.
//!
//! # Layout
//! - [`core`]: the pure job core (plans, the job state machine, the replicated state).
//! - [`raft`]: openraft wiring: redb log store, state machine, gRPC network.
//! - [`leader`]: the leader's runtime: worker liveness, progress, lease expiry.
//! - [`service`]: the `Control` and `WorkerHub` gRPC services.
//! - [`metrics`]: Prometheus `/metrics` on the gRPC port.
//! - [`console`]: the read-only web console at `/ui` on the gRPC port.
//! - [`config`]: the versioned TOML config.
//! - [`auth`]: bearer tokens for clients and workers.
//!
//! [`run`] is the entry point: it takes an already bound listener and a shutdown token, so tests
//! and `bkctl demo` can run a coordinator on port 0 inside their own process.

pub mod auth;
pub mod clock;
pub mod config;
pub mod console;
pub mod coordinator;
pub mod core;
pub mod error;
pub mod leader;
pub mod metrics;
pub mod raft;
pub mod service;
pub mod shared;

mod server;

pub use config::CoordinatorConfig;
pub use server::run;
