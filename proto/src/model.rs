//! What the coordinator asks a worker to do, and what the worker reports back.
//!
//! These travel as JSON inside `WorkerHub` messages and inside the replicated job state, so
//! every change here must stay readable by the previous version (add fields with defaults).

use serde::{Deserialize, Serialize};

use crate::ids::{BackupId, TaskId};

/// A task leased to a worker. Running the same spec twice produces the same result: copies are
/// content-addressed and staging parts are keyed by task, so a re-run skips what was done.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TaskSpec {
    /// The task's id; its staging directory in the repository is derived from it.
    pub task_id: TaskId,
    /// The source (by name) the task reads from.
    pub source: String,
    /// Where the task writes.
    pub repository: RepositoryRef,
    /// The parent backup (incremental backups): an object whose key, size, ETag and
    /// last-modified time match its entry there reuses its chunks without being read.
    #[serde(default)]
    pub parent: Option<BackupId>,
    /// What to do.
    pub kind: TaskKind,
}

/// A repository as a worker needs it: the credentials and the passphrase are the worker's own,
/// looked up by `name`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RepositoryRef {
    /// The repository's registered name (the key of its credentials in the worker's config).
    pub name: String,
    /// Object-store URL of the repository root.
    pub url: String,
    /// Chunk size used when the repository is created; an existing repository keeps its own.
    pub chunk_size: u64,
    /// Pack size used when the repository is created.
    #[serde(default = "default_pack_size")]
    pub pack_size: u64,
    /// zstd level for blobs used when the repository is created (0: off).
    #[serde(default = "default_compression_level")]
    pub compression_level: i32,
    /// The repository config the coordinator recorded (the first a task reported): workers open
    /// exactly it. `None` until the repository was first opened.
    #[serde(default)]
    pub config_id: Option<String>,
}

impl RepositoryRef {
    /// A repository with the default pack size and compression, whose config is not known yet.
    pub fn new(name: impl Into<String>, url: impl Into<String>, chunk_size: u64) -> Self {
        Self {
            name: name.into(),
            url: url.into(),
            chunk_size,
            pack_size: default_pack_size(),
            compression_level: default_compression_level(),
            config_id: None,
        }
    }
}

/// 16 MiB: a pack is one PUT of about this size.
pub fn default_pack_size() -> u64 {
    16 << 20
}

/// zstd's default level.
pub fn default_compression_level() -> i32 {
    3
}

/// The kinds of work a task does.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum TaskKind {
    /// Copies every object under `prefix` of the worker's store into the repository, except
    /// objects under one of `exclude`. The result is written as staging parts of this task.
    CopyPrefix {
        /// Name of the phase, recorded with every object in the manifest.
        phase: CopyPhase,
        /// The node the objects belong to.
        node: String,
        /// Object-store prefix ending in `/`, or an exact object key.
        prefix: String,
        /// Prefixes (relative to the store root) left out.
        exclude: Vec<ExcludeRule>,
    },
    /// Detects the catalog layout under `catalog_prefix` (v3, v2 or v1) and copies it, plus the
    /// `enterprise` config object when present. Fails when no catalog is found.
    CopyCatalog {
        /// The cluster id (Enterprise) or node id (Core), ending in `/`.
        catalog_prefix: String,
        /// Name of the phase, recorded in the manifest.
        phase: CopyPhase,
    },
    /// Copies the licence objects under `cluster_prefix` that exist; absent ones are fine.
    CopyLicence {
        /// The cluster id, ending in `/`.
        cluster_prefix: String,
        /// Name of the phase, recorded in the manifest.
        phase: CopyPhase,
    },
    /// Merges the staging parts of `parts` (in order) into the backup's manifest and writes it
    /// create-only: the manifest's existence is the backup's existence.
    CommitBackup {
        /// The backup being committed.
        backup_id: BackupId,
        /// Creation time recorded in the manifest (the job's submission time).
        created_at_ms: u64,
        /// The copy tasks whose results make up the backup, in phase order, each with the
        /// attempt the coordinator accepted (filled in when the commit task is leased).
        parts: Vec<PartRef>,
    },
    /// Removes the job's staging directory. Runs as cleanup after success and failure alike.
    RemoveStaging,
    /// Checks the whole repository (`bkctl repo check`): every index file and pack header
    /// reads, every blob a backup names is indexed in a pack that exists; with
    /// `read_data_percent`, that share of the packs is read and every blob in it re-hashed.
    CheckRepository {
        /// Percent of the packs read whole (0: headers only).
        #[serde(default)]
        read_data_percent: u32,
    },
    /// Takes the snapshot of the worker's node's store (`[snapshot]`) that the job's copy tasks
    /// of that node then read; a worker without one reports that it copies the live files.
    TakeSnapshot {
        /// The node.
        node: String,
    },
    /// Deletes the job's snapshot of the node, if one was taken. Runs as cleanup, until it
    /// succeeds (a snapshot left behind holds disk space).
    DeleteSnapshot {
        /// The node.
        node: String,
    },
    /// Puts QuestDB in checkpoint mode (`CHECKPOINT CREATE`, or `SNAPSHOT PREPARE` before
    /// 8.1.1) after checking free disk, and records in staging that this job holds it.
    QuestDbPrepare {
        /// `host:port` of the server's PostgreSQL wire endpoint.
        pg_addr: String,
        /// Take over a checkpoint someone else holds instead of failing.
        adopt_checkpoint: bool,
    },
    /// Releases the checkpoint this job holds (`CHECKPOINT RELEASE` / `SNAPSHOT COMPLETE`).
    /// Idempotent, and a no-op when the job never created one or already released it; it never
    /// releases a checkpoint someone else holds.
    QuestDbRelease {
        /// `host:port` of the server's PostgreSQL wire endpoint.
        pg_addr: String,
    },
    /// Forgets backups (retention): deletes each one's manifest first (the backup is gone
    /// atomically), then its segments. With `dry_run`, only reports.
    ForgetBackups {
        /// The backups to forget: resolved by the leader from `retention` when the task is
        /// leased (after the repository lock let the prune start), so backups committed while
        /// the prune waited count.
        backups: Vec<BackupId>,
        /// The rules, applied to the source's backups in the repository at lease time.
        #[serde(default)]
        retention: Retention,
        /// Report only.
        dry_run: bool,
    },
    /// Deletes every pack no committed manifest references a blob of, repacks packs whose
    /// unreferenced share exceeds `max_unused_percent`, and rewrites the index. Runs only when
    /// no other job uses the repository (the coordinator's repository lock).
    #[serde(alias = "sweep_chunks")]
    SweepPacks {
        /// Backups forgotten by this job (ignored when counting references in a dry run).
        forgotten: Vec<BackupId>,
        /// Report only.
        dry_run: bool,
        /// Repack a pack when more than this percent of its bytes are unreferenced (restic's
        /// `--max-unused`).
        #[serde(default = "default_max_unused_percent")]
        max_unused_percent: u32,
    },
    /// Manages the repository's passphrases (key files); the passphrases themselves never leave
    /// the workers.
    RepositoryKey {
        /// What to do.
        action: KeyAction,
    },
    /// The last step of a QuestDB restore: the empty `_restore` file in the server root, which
    /// makes QuestDB recover from the restored checkpoint on its next start.
    QuestDbRestoreTrigger {
        /// Object-store URL of the server root.
        target_url: String,
    },
    /// After a node's copy tasks, before the stage barrier: checks that what was copied is a
    /// state InfluxDB can restart from, and repairs it from the live source when it is not.
    ///
    /// With W the newest copied snapshot manifest's `wal_file_sequence_number`, the copied WAL
    /// files after W must be W+1, W+2, … without a gap, and every parquet file a copied manifest
    /// names (minus `removed_files`) must be in the backup. A repair round re-lists `snapshots/`,
    /// copies new manifests, the parquet files they name and the WAL files after the new W;
    /// after `max_rounds` failed rounds the task fails and nothing is committed.
    CheckNodeConsistency {
        /// The node.
        node: String,
        /// Name of the phase, recorded with repaired objects in the manifest.
        phase: CopyPhase,
        /// The node's copy tasks whose results are checked (attempts filled in at lease time).
        parts: Vec<PartRef>,
        /// Repair rounds before giving up.
        max_rounds: u32,
    },
    /// Checks a backup's manifest and segments, and that every chunk they name exists; with
    /// `deep`, re-reads and re-hashes every chunk. Problems are reported object by object.
    VerifyBackup {
        /// The backup.
        backup_id: BackupId,
        /// Re-hash every chunk instead of checking existence.
        deep: bool,
    },
    /// Restore guard, writes nothing: the node is stopped (its HTTP endpoint refuses
    /// connections) and the target prefixes are empty (unless allowed).
    CheckRestoreTarget {
        /// The node checked (empty for cluster-level prefixes).
        node: String,
        /// Object-store URL of the target.
        target_url: String,
        /// Prefixes the restore will write there.
        prefixes: Vec<String>,
        /// The node's HTTP endpoint, when the source registered one.
        http_endpoint: Option<String>,
        /// `--wipe` or `--resume`: existing objects are expected.
        allow_existing: bool,
    },
    /// Deletes exactly `prefixes` in the target (`--wipe`), after every guard passed.
    WipeTarget {
        /// Object-store URL of the target.
        target_url: String,
        /// Prefixes to delete.
        prefixes: Vec<String>,
    },
    /// Writes the backup's objects of one phase (and node) into the target: each object is
    /// reassembled from its chunks, every chunk and the whole object re-hashed before the
    /// object becomes visible at its key. Objects already present with the right hash are kept.
    RestoreObjects {
        /// The backup.
        backup_id: BackupId,
        /// Object-store URL of the target.
        target_url: String,
        /// Only objects the backup recorded in this phase.
        phase: CopyPhase,
        /// Only objects of this node (`None`: every node of the phase).
        node: Option<String>,
    },
    /// A restore drill: restores the backup into the worker's drill scratch directory, checks
    /// it offline with what bk knows of the database's formats, starts the database on it when
    /// the worker is configured to (`[drill]`), asks it per table for its row count and time
    /// range, stops it and wipes the scratch. A failed check is reported as a problem (the job
    /// fails, the drill is recorded on the backup as failed).
    DrillBackup {
        /// The backup.
        backup_id: BackupId,
        /// The database the backup holds, as far as starting it needs.
        database: DrillDatabase,
    },
}

/// 10 %: restic's default `--max-unused`.
pub fn default_max_unused_percent() -> u32 {
    10
}

/// What a repository-key task does.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "action", rename_all = "snake_case")]
pub enum KeyAction {
    /// Wraps the master key with the passphrase in `new_password_file` (a path on the worker):
    /// a new key file. The worker opens the repository with its current passphrase first.
    Add {
        /// File on the worker holding the new passphrase.
        new_password_file: String,
    },
    /// Lists the key files.
    List,
    /// Deletes key file `key_id`; refused for the key the worker's own passphrase opens and for
    /// the last key.
    Remove {
        /// The key file's id.
        key_id: String,
    },
}

/// One key file, as `bkctl repo key list` shows it (never a secret).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RepositoryKeyInfo {
    /// Its id.
    pub key_id: String,
    /// When it was made (RFC 3339).
    pub created_at: String,
    /// The worker that made it.
    pub host: String,
    /// Its key derivation, e.g. `argon2id m=65536KiB t=3 p=1`.
    pub kdf: String,
    /// Whether the listing worker's passphrase opens it.
    pub current: bool,
}

/// Retention rules (restic's `--keep-*` semantics).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Retention {
    /// Keep the N newest backups.
    pub keep_last: u32,
    /// Keep the newest of each of the N most recent days with a backup (UTC).
    pub keep_daily: u32,
    /// Likewise per week.
    pub keep_weekly: u32,
    /// Likewise per calendar month.
    pub keep_monthly: u32,
}

/// A copy task's result to include in a backup: the attempt whose result was accepted.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PartRef {
    /// The copy task.
    pub task_id: TaskId,
    /// Its accepted attempt (0 in a plan, before any attempt ran).
    pub attempt: u32,
}

/// A prefix a copy task leaves out, and whether the manifest should say so.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExcludeRule {
    /// Prefix relative to the store root, ending in `/` (or an exact key).
    pub prefix: String,
    /// Why it is left out, as recorded in the manifest (e.g. regenerated at start-up).
    pub reason: String,
    /// Whether the exclusion is recorded in the backup; prefixes copied by another task of the
    /// same job are not.
    pub record: bool,
}

/// The stage a copied object belongs to: recorded with every object in a manifest, and what a
/// restore stage selects. (Phases that copy nothing, such as `commit` or `preflight`, are plan
/// labels, not these.)
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum CopyPhase {
    /// InfluxDB 3 Enterprise compactor output (`cs/`, `cd/`, `c/`).
    Compactor,
    /// Every node's `wal/`, `snapshots/`, `dbs/` and the rest under the node.
    Nodes,
    /// The catalog (and `enterprise`), copied after all node data.
    Catalog,
    /// Licence files.
    Licence,
    /// A QuestDB server root at its checkpoint.
    Copy,
}

impl CopyPhase {
    /// As shown and stored.
    pub fn as_str(self) -> &'static str {
        match self {
            CopyPhase::Compactor => "compactor",
            CopyPhase::Nodes => "nodes",
            CopyPhase::Catalog => "catalog",
            CopyPhase::Licence => "licence",
            CopyPhase::Copy => "copy",
        }
    }
}

impl std::fmt::Display for CopyPhase {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter.write_str(self.as_str())
    }
}

/// The InfluxDB 3 catalog layouts bk knows (see `influxdb3-layout.md`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum CatalogFormat {
    /// 3.0 – 3.3: `catalogs/` logs and `_catalog_checkpoint`.
    V1,
    /// 3.4 – 3.9: `catalog/v2/` image and logs.
    V2,
    /// 3.10 and later: `catalog/v3/` image and logs.
    V3,
}

impl CatalogFormat {
    /// As shown and stored: `v1`, `v2`, `v3`.
    pub fn as_str(self) -> &'static str {
        match self {
            CatalogFormat::V1 => "v1",
            CatalogFormat::V2 => "v2",
            CatalogFormat::V3 => "v3",
        }
    }

    /// Reads an optional format where records written before this type hold a string: `""`
    /// (no catalog, e.g. QuestDB) or null is `None`.
    ///
    /// # Errors
    /// An unknown format name.
    pub fn deserialize_optional<'de, D: serde::Deserializer<'de>>(
        deserializer: D,
    ) -> Result<Option<CatalogFormat>, D::Error> {
        match Option::<String>::deserialize(deserializer)?.as_deref() {
            None | Some("") => Ok(None),
            Some("v1") => Ok(Some(CatalogFormat::V1)),
            Some("v2") => Ok(Some(CatalogFormat::V2)),
            Some("v3") => Ok(Some(CatalogFormat::V3)),
            Some(other) => {
                Err(serde::de::Error::custom(format!("unknown catalog format `{other}`")))
            }
        }
    }
}

/// What moving objects into a repository cost: the counts a task reports and a backup sums
/// over its tasks. One type for both, so a new count is added once.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct TransferStats {
    /// Objects whose blobs were reused without reading them (unchanged since the parent
    /// backup, or copied by an earlier attempt).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub num_reused: u64,
    /// Bytes read from the source.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub bytes_read: u64,
    /// Plaintext bytes of new blobs written to the repository.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub bytes_written: u64,
    /// What those took in the repository (compressed, sealed).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub bytes_stored: u64,
    /// PUT requests made to the repository (packs, staging, index, manifest).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub repository_puts: u64,
    /// Bytes of object list runs written (their plaintext, before zstd): what the backup's
    /// list cost, which grows with the change, not with the objects (see the worker's
    /// `repository::list`). Left out of records when zero, so records written before it
    /// existed read and write back the same.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub list_bytes_written: u64,
}

fn is_zero(value: &u64) -> bool {
    *value == 0
}

impl std::ops::AddAssign for TransferStats {
    fn add_assign(&mut self, other: Self) {
        self.num_reused += other.num_reused;
        self.bytes_read += other.bytes_read;
        self.bytes_written += other.bytes_written;
        self.bytes_stored += other.bytes_stored;
        self.repository_puts += other.repository_puts;
        self.list_bytes_written += other.list_bytes_written;
    }
}

/// What a successful task reports. Counts only: object lists live in the repository's staging
/// records, so the replicated state grows with tasks, not with objects. Empty fields are left
/// out of its JSON (a job of a thousand-node cluster holds 5,000 reports in the state).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct TaskReport {
    /// Objects copied (or, for the commit, listed in the manifest).
    pub num_objects: u64,
    /// Bytes of those objects.
    pub num_bytes: u64,
    /// Recorded exclusions, with how many objects each left out.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub exclusions: Vec<ExclusionReport>,
    /// Catalog layout found, for catalog tasks.
    #[serde(
        default,
        deserialize_with = "CatalogFormat::deserialize_optional",
        skip_serializing_if = "Option::is_none"
    )]
    pub catalog_format: Option<CatalogFormat>,
    /// The manifest key, for the commit task.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub manifest_key: Option<String>,
    /// Objects left as they were (already present with the right content).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub num_skipped: u64,
    /// What the task read, wrote and stored (flattened: the JSON keeps its field names).
    #[serde(flatten)]
    pub transfer: TransferStats,
    /// Things the operator should know that did not stop the task (e.g. a licence restored to
    /// another bucket, objects deleted by `--wipe`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub warnings: Vec<String>,
    /// What verification found wrong, object by object. A report with problems fails the job.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub problems: Vec<String>,
    /// Normal events of a live source worth recording: objects that vanished mid-copy,
    /// repairs, parquet files deleted by retention.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub events: Vec<String>,
    /// The node's consistency point, for consistency checks.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub consistency: Option<ConsistencyPoint>,
    /// The catalog sequence the backup holds (the newest of image and logs), for catalog tasks.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub catalog_sequence: Option<u64>,
    /// The backups a prune's forget task forgot (what the coordinator then drops).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub forgotten: Vec<BackupId>,
    /// Source objects that failed the check of their database's own format while copied
    /// (bad CRC, truncated, wrong magic). A backup with any fails before its commit unless
    /// `--allow-corrupt`, which commits it and records them.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub corrupt: Vec<CorruptObject>,
    /// The repository config the task opened (the coordinator records the first reported).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub repository_config: Option<String>,
    /// Key files, for a repository-key task.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub keys: Vec<RepositoryKeyInfo>,
    /// What a drill found.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub drill: Option<Box<DrillReport>>,
    /// QuestDB: how long the server was held in checkpoint mode (CREATE sent → RELEASE
    /// answered), for the task that released it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub checkpoint_held_ms: Option<u64>,
    /// The snapshot the copy read (`btrfs snapshot bk-… taken in 0.12 s`), for the task that
    /// took it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub snapshot: Option<String>,
}

/// A source object whose content failed bk's check of its format (WAL CRC, catalog header,
/// snapshot manifest, parquet magic) when it was copied.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CorruptObject {
    /// The object's key.
    pub key: String,
    /// What is wrong, e.g. `WAL file: CRC32 mismatch: …`.
    pub reason: String,
}

/// The state of a node a backup can be restarted from.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConsistencyPoint {
    /// The node.
    pub node: String,
    /// Sequence number of the newest snapshot manifest in the backup (0: none).
    pub snapshot_sequence: u64,
    /// That manifest's `wal_file_sequence_number`: WAL files up to it are covered by parquet.
    pub snapshot_wal_sequence: u64,
    /// The last WAL file in the backup (contiguous from `snapshot_wal_sequence + 1`).
    pub last_wal_sequence: u64,
    /// The newest catalog sequence any copied snapshot needs.
    pub required_catalog_sequence: u64,
    /// Parquet files the snapshots name that retention deleted before they could be copied
    /// (the server's manifests keep naming them): not in the backup, and a drill knows why.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub retention_deleted: Vec<String>,
}

/// One recorded exclusion.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExclusionReport {
    /// The excluded prefix.
    pub prefix: String,
    /// Why.
    pub reason: String,
    /// How many objects it left out.
    pub num_objects: u64,
}

/// What a drill starts, from the backup's recorded topology.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "engine", rename_all = "snake_case")]
pub enum DrillDatabase {
    /// InfluxDB 3: the nodes whose files the backup holds, the node started (`--node-id`), and
    /// for Enterprise the cluster id (`--cluster-id`).
    #[serde(rename = "influxdb3")]
    InfluxDb3 {
        /// Every node of the backup.
        nodes: Vec<String>,
        /// The node the drill starts the server as.
        serve_node: String,
        /// Enterprise only.
        #[serde(default)]
        cluster_id: Option<String>,
        /// Parquet files the backup recorded as deleted by retention before it could copy them:
        /// their absence is expected, not a failure.
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        retention_deleted: Vec<String>,
    },
    /// A QuestDB server root.
    #[serde(rename = "questdb")]
    QuestDb,
}

/// What a drill found. Recorded on the backup whether it passed or not.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct DrillReport {
    /// Every check passed.
    pub passed: bool,
    /// The first failure, when one check failed.
    #[serde(default)]
    pub failure: Option<String>,
    /// The checks that ran, one line each (`offline: 3 snapshot manifests parse`, …).
    #[serde(default)]
    pub checks: Vec<String>,
    /// Per table: rows and time range (from the server when it was started, else from the
    /// parquet footers).
    #[serde(default)]
    pub tables: Vec<TableFacts>,
    /// How long restoring into the scratch took.
    #[serde(default)]
    pub restore_ms: u64,
    /// How long the database took to answer its health check; `None` when not started.
    #[serde(default)]
    pub start_ms: Option<u64>,
    /// Bytes the restored tree took in the scratch directory.
    #[serde(default)]
    pub scratch_bytes: u64,
    /// Where the database's log was kept (on failure only), on the worker.
    #[serde(default)]
    pub log_file: Option<String>,
}

/// One table as a drill saw it.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct TableFacts {
    /// `database.table` (InfluxDB 3; ids when only the files were read) or the table (QuestDB).
    pub table: String,
    /// `count(*)`.
    pub rows: u64,
    /// `min(time)` and `max(time)` as the database printed them (RFC 3339 from footers).
    #[serde(default)]
    pub min_time: String,
    /// See `min_time`.
    #[serde(default)]
    pub max_time: String,
    /// `server` or `files`.
    pub from: String,
}

#[cfg(test)]
#[path = "model_fixture_test.rs"]
mod fixture_test;
