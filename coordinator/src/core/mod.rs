//! The pure job core: plain functions of their inputs, no clock, no randomness, no IO.
//!
//! Raft replicates [`Command`]s (time and ids travel inside them), every replica applies them to
//! its [`ClusterState`] identically, and only the leader's dispatcher turns the resulting state
//! into actions. Keeping this module pure is what lets a new leader resume any job.
//!
//! # Layout
//! - [`assign`]: which task a pulling worker gets, and the spec it is told at lease time.
//! - [`domain`]: sources, repositories, workers and backups as the coordinator records them.
//! - [`plan`]: requests into [`JobSpec`]s, one module per source kind (backup and restore of
//!   InfluxDB 3 and QuestDB) and per job kind (verify, prune and the repository lock, drills,
//!   repository keys).
//! - [`drill_record`]: a finished drill recorded on its backup, with count-drop warnings.
//! - [`eligibility`]: which worker may run which task.
//! - [`lease`]: when the leader takes a lease back (silent worker, lost assignment).
//! - [`job`]: one job's phases and tasks, and how events move them ([`Job::apply`]); its
//!   children: `status` (where a job stands, as one value), `commit_gate` (what must hold
//!   before a backup is committed), `summary` (a finished job without its task detail) and
//!   `history` (how long finished jobs stay in the replicated state).
//! - [`schedule`]: cron schedules, due slots, exactly-once runs.
//! - [`source_health`]: per source, its last backup against the RPO, its last drill, its next
//!   run (the console and the metrics read it).
//! - [`stand_in`]: when a worker may run a dead node's tasks (a shared cloud store).
//! - [`state`]: the whole replicated state and the [`Command`]s that change it.
//! - [`submit`]: a backup request against the current state (names, parent backup).
//! - [`validate`]: what a registered repository must satisfy.
//! - [`waiting`]: why a runnable task is not running (for operators).

pub mod assign;
pub mod domain;
pub mod drill_record;
pub mod eligibility;
pub mod job;
pub mod lease;
pub mod locks;
pub mod placement_index;
pub mod plan;
pub mod schedule;
pub mod source_health;
pub mod stand_in;
pub mod state;
pub mod submit;
pub mod validate;
pub mod waiting;
pub mod wake;

pub use domain::{BackupRecord, Repository, Source, SourceSpec, WorkerRecord};
pub use job::{
    Job, JobEffect, JobEvent, JobKind, JobSpec, JobState, JobStatus, Placement, PlannedTask,
    TaskRun,
};
pub use state::{ClusterState, Command, CommandResponse, Rejection};
