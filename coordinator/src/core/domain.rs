//! What the coordinator records about the world: sources, repositories, workers and backups.

use std::collections::BTreeMap;

use bk_proto::ids::{BackupId, JobId, SourceName, WorkerId};
use bk_proto::model::{
    CatalogFormat, ConsistencyPoint, CorruptObject, DrillReport, ExclusionReport, TransferStats,
};
use serde::{Deserialize, Serialize};

/// A registered source: a database deployment bk backs up.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Source {
    /// The operator's name for it.
    pub name: SourceName,
    /// Its kind and topology.
    pub spec: SourceSpec,
}

/// The kinds of source, each with the topology its plans need.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum SourceSpec {
    /// InfluxDB 3 Enterprise: catalog and licence under the cluster id, data under node ids.
    InfluxDb3Enterprise {
        /// The cluster id (prefix of the catalog, `enterprise` and licence objects).
        cluster_id: String,
        /// The compactor's node id.
        compactor_node: String,
        /// Every other node id.
        data_nodes: Vec<String>,
        /// HTTP endpoint per node id, used by restore to check nodes are stopped.
        http_endpoints: BTreeMap<String, String>,
    },
    /// InfluxDB 3 Core: one node whose catalog lives under its own node id.
    InfluxDb3Core {
        /// The node id.
        node: String,
        /// The node's HTTP endpoint, if known.
        http_endpoint: Option<String>,
    },
    /// A QuestDB server. Its worker's store is the server root; its PostgreSQL wire credentials
    /// live with that worker, never here.
    QuestDb {
        /// The node id of the server (its worker registers under it).
        node: String,
        /// `host:port` of the PostgreSQL wire endpoint (8812 by default).
        pg_addr: String,
    },
}

impl SourceSpec {
    /// Every node id of the source, data nodes first.
    pub fn nodes(&self) -> Vec<String> {
        match self {
            SourceSpec::InfluxDb3Enterprise { compactor_node, data_nodes, .. } => {
                let mut nodes = data_nodes.clone();
                nodes.push(compactor_node.clone());
                nodes
            }
            SourceSpec::InfluxDb3Core { node, .. } | SourceSpec::QuestDb { node, .. } => {
                vec![node.clone()]
            }
        }
    }
}

/// A registered repository: the same record workers receive in their tasks (one model). Its
/// credentials and passphrase are never here: workers hold them. Its `config_id` is the config
/// the first task that opened it reported, which every later task is told to open.
pub use bk_proto::model::RepositoryRef as Repository;

/// A worker as registered (liveness is tracked by the leader in memory, not here).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct WorkerRecord {
    /// Stable worker id, `<source>/<node>` by default.
    pub worker_id: WorkerId,
    /// The source whose node it runs next to.
    pub source: SourceName,
    /// The node id.
    pub node: String,
    /// The worker binary's version.
    pub version: String,
    /// When it (last) registered.
    pub registered_at_ms: u64,
    /// Objects it keeps in flight at most (its memory bound), as it registered.
    #[serde(default)]
    pub max_concurrent_objects: u32,
    /// Bytes it reads per second at most (0: unlimited), as it registered.
    #[serde(default)]
    pub max_bytes_per_second: u64,
    /// Its node store's URL, as it registered (decides who may stand in for a dead node).
    #[serde(default)]
    pub store_url: String,
    /// Repositories it holds a passphrase for (`*`: any), as it registered.
    #[serde(default)]
    pub repositories: Vec<String>,
    /// It has a `[drill]` section (scratch space of its own): drills may run on it.
    #[serde(default)]
    pub drills: bool,
    /// It has a `[snapshot]` section: InfluxDB 3 backups take a snapshot of its node first.
    #[serde(default)]
    pub snapshots: bool,
}

impl WorkerRecord {
    /// Whether it holds a passphrase for `repository`.
    pub fn can_open(&self, repository: &str) -> bool {
        self.repositories.iter().any(|name| name == "*" || name == repository)
    }
}

/// A committed backup.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct BackupRecord {
    /// Its id (also its directory in the repository).
    pub backup_id: BackupId,
    /// The job that wrote it.
    pub job_id: JobId,
    /// Source name.
    pub source: SourceName,
    /// Repository name.
    pub repository: String,
    /// When the job was submitted.
    pub created_at_ms: u64,
    /// Objects in the manifest.
    pub num_objects: u64,
    /// Bytes of those objects.
    pub num_bytes: u64,
    /// Manifest key inside the repository.
    pub manifest_key: String,
    /// Node ids the backup covers.
    pub nodes: Vec<String>,
    /// Catalog layout found (none for QuestDB; records before the enum held `""`).
    #[serde(default, deserialize_with = "CatalogFormat::deserialize_optional")]
    pub catalog_format: Option<CatalogFormat>,
    /// What was deliberately left out.
    pub exclusions: Vec<ExclusionReport>,
    /// Per phase: name, first start, last finish, objects and bytes.
    pub phases: Vec<PhaseSummary>,
    /// The source's topology at backup time (restores are planned from it).
    #[serde(default)]
    pub source_spec: Option<SourceSpec>,
    /// Per node, the state the backup restarts from.
    #[serde(default)]
    pub consistency: Vec<ConsistencyPoint>,
    /// The catalog sequence the backup holds.
    #[serde(default)]
    pub catalog_sequence: Option<u64>,
    /// What happened on the live source while copying (vanished objects, repairs, retention).
    #[serde(default)]
    pub events: Vec<String>,
    /// The backup this one is incremental to.
    #[serde(default)]
    pub parent: Option<BackupId>,
    /// What its tasks read, wrote and stored, summed (flattened: records written before the
    /// type existed read the same).
    #[serde(flatten)]
    pub transfer: TransferStats,
    /// Objects committed although they failed their format check (`--allow-corrupt`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub corrupt: Vec<CorruptObject>,
    /// Restore drills of this backup, oldest first (the newest [`MAX_DRILLS_KEPT`]).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub drills: Vec<DrillRecord>,
    /// QuestDB: how long the server was held in checkpoint mode.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub checkpoint_held_ms: Option<u64>,
    /// The snapshot the copy read, when one was taken.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub snapshot: Option<String>,
}

/// Drills kept per backup: enough to see a trend, bounded so the replicated state stays small.
pub const MAX_DRILLS_KEPT: usize = 10;

/// One restore drill of a backup, as recorded when its job ended.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct DrillRecord {
    /// The drill's job.
    pub job_id: JobId,
    /// When it ended.
    pub at_ms: u64,
    /// The worker that ran it.
    pub worker_id: WorkerId,
    /// What it found.
    pub report: DrillReport,
    /// Tables whose row count dropped against the previous passing drill of the same source.
    #[serde(default)]
    pub warnings: Vec<String>,
}

/// Timing and size of one phase of the job that wrote a backup.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PhaseSummary {
    /// Phase name.
    pub name: String,
    /// Earliest start of its tasks' final attempts.
    pub started_at_ms: u64,
    /// Latest finish of its tasks.
    pub finished_at_ms: u64,
    /// Objects copied in the phase.
    pub num_objects: u64,
    /// Bytes copied in the phase.
    pub num_bytes: u64,
}

#[cfg(test)]
impl BackupRecord {
    /// An empty committed backup of `source` (in repository `r`), for tests of the planners.
    pub fn fixture(
        backup_id: BackupId,
        source: &str,
        created_at_ms: u64,
        spec: Option<SourceSpec>,
    ) -> Self {
        BackupRecord {
            backup_id,
            job_id: JobId(backup_id.0),
            source: source.into(),
            repository: "r".to_string(),
            created_at_ms,
            num_objects: 0,
            num_bytes: 0,
            manifest_key: String::new(),
            nodes: spec.as_ref().map(SourceSpec::nodes).unwrap_or_default(),
            catalog_format: None,
            exclusions: Vec::new(),
            phases: Vec::new(),
            source_spec: spec,
            consistency: Vec::new(),
            catalog_sequence: None,
            events: Vec::new(),
            parent: None,
            transfer: TransferStats::default(),
            corrupt: Vec::new(),
            drills: Vec::new(),
            checkpoint_held_ms: None,
            snapshot: None,
        }
    }
}

#[cfg(test)]
impl WorkerRecord {
    /// A worker of source `prod` for tests.
    pub(crate) fn for_test(worker_id: &str, node: &str, store_url: &str) -> Self {
        Self {
            worker_id: worker_id.into(),
            source: "prod".into(),
            node: node.into(),
            version: "0".into(),
            registered_at_ms: 0,
            max_concurrent_objects: 16,
            max_bytes_per_second: 0,
            store_url: store_url.into(),
            repositories: vec!["*".into()],
            drills: false,
            snapshots: false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A backup record as replicated before the statistics became one type: snapshots and logs
    /// holding it must read the same, and write back the same keys.
    const RECORD_BEFORE_TRANSFER_STATS: &str = r#"{
        "backup_id": "01JD0000000000000000000001", "job_id": "01JD0000000000000000000001",
        "source": "prod", "repository": "main", "created_at_ms": 1790000000000,
        "num_objects": 219, "num_bytes": 18140000, "manifest_key": "backups/01JD/manifest",
        "nodes": ["node1"], "catalog_format": "v3", "exclusions": [], "phases": [],
        "source_spec": null, "consistency": [], "catalog_sequence": 19, "events": [],
        "parent": null, "num_reused": 12, "bytes_read": 17000000, "bytes_written": 16000000,
        "bytes_stored": 9000000, "repository_puts": 7
    }"#;

    #[test]
    fn test_a_backup_record_written_before_the_shared_stats_type_round_trips() {
        let record: BackupRecord = serde_json::from_str(RECORD_BEFORE_TRANSFER_STATS).unwrap();
        let want = TransferStats {
            num_reused: 12,
            bytes_read: 17_000_000,
            bytes_written: 16_000_000,
            bytes_stored: 9_000_000,
            repository_puts: 7,
            ..TransferStats::default()
        };
        assert_eq!(record.transfer, want);
        assert_eq!(record.catalog_format, Some(CatalogFormat::V3));
        let written: serde_json::Value = serde_json::to_value(&record).unwrap();
        let before: serde_json::Value = serde_json::from_str(RECORD_BEFORE_TRANSFER_STATS).unwrap();
        assert_eq!(written, before, "the record's JSON changed shape");
        // Records older still (no statistics at all) read as zeros.
        let mut oldest = before.clone();
        for key in ["num_reused", "bytes_read", "bytes_written", "bytes_stored", "repository_puts"]
        {
            oldest.as_object_mut().unwrap().remove(key);
        }
        oldest["catalog_format"] = serde_json::json!(""); // A QuestDB backup's.
        let record: BackupRecord = serde_json::from_value(oldest).unwrap();
        assert_eq!(record.transfer, TransferStats::default());
        assert_eq!(record.catalog_format, None);
    }
}
