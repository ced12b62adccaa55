//! Manifest and staging record types (all stored sealed, see [`super::metadata`]).

use bk_proto::ids::BackupId;
use bk_proto::model::{CopyPhase, CorruptObject, ExclusionReport, TaskReport};
use serde::{Deserialize, Serialize};

use super::index::IndexEntry;
use super::list::run::RunRef;

/// Version of the manifest format.
pub const MANIFEST_FORMAT: u32 = 3;

/// A backup's manifest: written last, create-only. Small: it names the object lists' runs.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Manifest {
    /// [`MANIFEST_FORMAT`].
    pub format: u32,
    /// The backup.
    pub backup_id: BackupId,
    /// Source name.
    pub source: String,
    /// The job's submission time.
    pub created_at_ms: u64,
    /// The repository's id (from its config).
    pub repository_id: String,
    /// Objects in the backup.
    pub num_objects: u64,
    /// Their bytes.
    pub num_bytes: u64,
    /// The object list, scope by scope, in the order the plan copied them.
    pub scopes: Vec<ScopeList>,
    /// What was deliberately left out.
    pub exclusions: Vec<ExclusionReport>,
    /// Objects copied although they failed their format check (`--allow-corrupt`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub corrupt: Vec<CorruptObject>,
}

impl Manifest {
    /// Every run any scope names (runs are shared between backups: see [`super::list`]).
    pub fn runs(&self) -> impl Iterator<Item = &RunRef> {
        self.scopes.iter().flat_map(|scope| &scope.runs)
    }
}

/// The objects of one scope in a backup: a stack of runs (see [`super::list`]).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ScopeList {
    /// The keys the task that listed them covers.
    pub scope: Scope,
    /// The phase that copied them (a restore writes phase by phase).
    pub phase: CopyPhase,
    /// The node they belong to (empty for cluster-level objects).
    pub node: String,
    /// Oldest first: a base run, then deltas.
    pub runs: Vec<RunRef>,
    /// Objects in the merged list.
    pub num_objects: u64,
    /// Their bytes.
    pub num_bytes: u64,
}

impl ScopeList {
    /// Whether `other` lists the same keys of the same phase and node (so a delta on top of it
    /// is a delta of this list).
    pub fn same_scope(&self, phase: CopyPhase, node: &str, scope: &Scope) -> bool {
        self.phase == phase && self.node == node && self.scope == *scope
    }

    /// Whether its keys may overlap `scope`'s (same phase and node, prefixes nested).
    pub fn may_overlap(&self, phase: CopyPhase, node: &str, scope: &Scope) -> bool {
        self.phase == phase
            && self.node == node
            && (self.scope.prefix.starts_with(&scope.prefix)
                || scope.prefix.starts_with(&self.scope.prefix))
    }

    /// The index partition its blobs are in.
    pub fn partition(&self) -> String {
        super::index::partition_of(&self.node)
    }
}

/// The keys one copy task covers: those under `prefix` except those under `excluded` (other
/// tasks' prefixes, or what the plan leaves out).
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Scope {
    /// Keys start with it.
    pub prefix: String,
    /// Keys under these are not the task's.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub excluded: Vec<String>,
}

impl Scope {
    /// Every key under `prefix`.
    pub fn prefix(prefix: &str) -> Self {
        Self { prefix: prefix.to_string(), excluded: Vec::new() }
    }

    /// Whether `key` is the task's.
    pub fn holds(&self, key: &str) -> bool {
        key.starts_with(&self.prefix) && !self.excluded.iter().any(|out| key.starts_with(out))
    }
}

/// What an attempt of a copy task has saved so far (every `progress_save_interval`): a later
/// attempt reuses the objects it copied without reading them again.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProgressRecord {
    /// The run the attempt is writing, as far as it got: its delta or new base (a later
    /// attempt reads its objects as copied).
    pub written: RunRef,
    /// Locations of blobs it stored that no index file lists yet (few: past a few thousand
    /// they go to an index file).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub blobs: Vec<IndexEntry>,
}

/// What an attempt of a copy task (or a consistency check, for its repairs) writes when it
/// completes. The commit reads exactly the attempt the coordinator accepted.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct DoneRecord {
    /// The report sent to the coordinator.
    pub report: TaskReport,
    /// Its scope's list in the new backup (the parent's runs it kept, plus what it wrote);
    /// `None` for a consistency check that repaired nothing.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub list: Option<ScopeList>,
    /// The run it wrote (empty: the scope was unchanged).
    #[serde(default)]
    pub written: RunRef,
    /// Blob locations no index file lists yet: the commit writes them into the backup's
    /// index file of the partition.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub blobs: Vec<IndexEntry>,
}
