//! What the planners are asked, and the defaults they share.

use std::collections::BTreeMap;

use bk_proto::ids::{BackupId, JobId};

use crate::core::domain::{Repository, Source};

/// Options of a backup request.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct BackupOptions {
    /// QuestDB: take over a checkpoint someone else holds instead of failing.
    pub adopt_checkpoint: bool,
    /// The backup this one is incremental to (`None`: a full backup).
    pub parent: Option<BackupId>,
    /// Commit even if source objects fail their format check (they are recorded).
    pub allow_corrupt: bool,
    /// InfluxDB 3: nodes whose workers take a snapshot (`[snapshot]`) before the copy (a leader
    /// fact: what the workers registered with).
    pub snapshot_nodes: Vec<String>,
}

/// Repair rounds a node's consistency check may run before the job fails.
pub const MAX_REPAIR_ROUNDS: u32 = 5;

/// Default chunk size of a new repository.
pub const DEFAULT_CHUNK_SIZE: u64 = 8 << 20;

/// What the operator asked for.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RestoreRequest {
    /// Target URL for every node without its own (and the cluster's objects).
    pub default_target: Option<String>,
    /// Target URL per node id (`cluster` for the cluster-level objects).
    pub node_targets: BTreeMap<String, String>,
    /// The operator states every node is stopped (needed for nodes without an HTTP endpoint).
    pub nodes_stopped: bool,
    /// Delete exactly the prefixes the restore writes before writing.
    pub wipe: bool,
    /// Continue an earlier restore into the same target: existing objects with the right hash
    /// are kept.
    pub resume: bool,
    /// HTTP endpoints per node as registered now (operational data that may have changed since
    /// the backup; the topology itself comes from the backup). They add to the recorded ones.
    pub http_endpoints: BTreeMap<String, String>,
}

/// Key of the cluster-level target in [`RestoreRequest::node_targets`].
pub const CLUSTER_TARGET: &str = "cluster";

/// A backup to plan, as every source kind's planner is given it.
#[derive(Clone, Copy, Debug)]
pub struct NewBackup<'a> {
    /// What is backed up.
    pub source: &'a Source,
    /// Where to.
    pub repository: &'a Repository,
    /// The job's id (its tasks' ids derive from it).
    pub job_id: JobId,
    /// The backup it writes.
    pub backup_id: BackupId,
    /// When it was asked for.
    pub created_at_ms: u64,
    /// How.
    pub options: &'a BackupOptions,
}
