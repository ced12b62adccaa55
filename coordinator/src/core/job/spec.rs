//! A job's plan: what to run, where, in which order. Fixed at submission.

use bk_proto::ids::{BackupId, SourceName};
use bk_proto::model::{RepositoryRef, TaskKind};
use serde::{Deserialize, Serialize};

use super::run::is_false;
use crate::core::domain::SourceSpec;

/// A planned job: what to run, where, in which order. Fixed at submission.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct JobSpec {
    /// What the job does.
    #[serde(default)]
    pub kind: JobKind,
    /// The backup the job writes (backup) or reads (restore, verify, drill); `None` for the
    /// jobs about a repository as a whole (prune, keys, check).
    #[serde(default)]
    pub backup_id: Option<BackupId>,
    /// Backup: the parent it is incremental to (`None`: full).
    #[serde(default)]
    pub parent: Option<BackupId>,
    /// The schedule and slot that submitted the job, if a schedule did.
    #[serde(default)]
    pub scheduled: Option<(String, u64)>,
    /// Source name.
    pub source: SourceName,
    /// The source's topology when the job was planned (recorded in the backup, so a restore
    /// plans from what was backed up even if the source is re-registered later).
    #[serde(default)]
    pub source_spec: Option<SourceSpec>,
    /// The repository, as workers need it.
    pub repository: RepositoryRef,
    /// Node ids the job covers (recorded in the backup).
    pub nodes: Vec<String>,
    /// Phases, in order.
    pub phases: Vec<PlannedPhase>,
    /// Tasks run after the phases, whatever their outcome.
    pub cleanup: Vec<PlannedTask>,
    /// Backup: commit even if source objects failed their format check (they are recorded).
    #[serde(default)]
    pub allow_corrupt: bool,
}

impl JobSpec {
    /// A job that reads `backup` (restore, verify, drill): its source, topology and nodes are
    /// the backup's, it writes no backup and has no cleanup.
    pub fn reading_backup(
        kind: JobKind,
        backup: &crate::core::domain::BackupRecord,
        repository: &RepositoryRef,
        phases: Vec<PlannedPhase>,
    ) -> Self {
        Self {
            kind,
            parent: None,
            scheduled: None,
            backup_id: Some(backup.backup_id),
            source: backup.source.clone(),
            source_spec: backup.source_spec.clone(),
            repository: repository.clone(),
            nodes: backup.nodes.clone(),
            phases,
            cleanup: Vec::new(),
            allow_corrupt: false,
        }
    }
}

/// What a job does.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum JobKind {
    /// Writes a new backup.
    #[default]
    Backup,
    /// Writes a backup's objects back into a target store.
    Restore,
    /// Checks a backup.
    Verify,
    /// Forgets backups by retention rule and deletes the packs nothing uses any more.
    Prune,
    /// Adds, lists or removes a repository's passphrases.
    RepositoryKey,
    /// Restores a backup into scratch space, checks it and starts the database on it.
    Drill,
    /// Checks a whole repository (`bkctl repo check`).
    Check,
}

/// A named group of tasks that run in parallel.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PlannedPhase {
    /// Name shown to operators and recorded in the manifest (`compactor`, `nodes`, …).
    pub name: String,
    /// Its tasks.
    pub tasks: Vec<PlannedTask>,
}

/// One task of a plan.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PlannedTask {
    /// Short description, e.g. `copy node1/wal/`.
    pub label: String,
    /// Which workers may run it.
    pub placement: Placement,
    /// What it does.
    pub kind: TaskKind,
    /// Indices of tasks of the same phase that must succeed before this one may start (e.g. a
    /// node's consistency check waits for that node's copy tasks, still before the barrier).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub depends_on: Vec<u32>,
    /// Retryable failures re-queue the task without bound (a QuestDB release must eventually
    /// happen: the job stays visibly releasing until it does).
    #[serde(default, skip_serializing_if = "is_false")]
    pub retry_until_success: bool,
}

impl PlannedTask {
    /// A task that may start as soon as its phase does, and whose retryable failures count
    /// against the retry limit (what nearly every task is).
    pub fn new(label: String, placement: Placement, kind: TaskKind) -> Self {
        Self { label, placement, kind, depends_on: Vec::new(), retry_until_success: false }
    }

    /// Starts only once these tasks of its phase have succeeded.
    pub fn after(mut self, depends_on: Vec<u32>) -> Self {
        self.depends_on = depends_on;
        self
    }

    /// Retryable failures re-queue it without bound (a QuestDB release, a snapshot deletion:
    /// what must eventually happen).
    pub fn retrying_until_success(mut self) -> Self {
        self.retry_until_success = true;
        self
    }
}

/// Which workers may run a task.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Placement {
    /// Only the worker of this node of the job's source (it holds that node's storage).
    Node(String),
    /// Any worker of the job's source.
    AnyNode,
    /// Any worker, of any source, holding a passphrase for this repository (repository-key
    /// jobs, which belong to no source).
    RepositoryHolder(String),
    /// Any worker of the job's source with a `[drill]` section (scratch space of its own).
    DrillWorker,
}
