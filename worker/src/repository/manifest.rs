//! Manifest, segment and staging record types.

use bk_proto::ids::BackupId;
use bk_proto::model::{CorruptObject, ExclusionReport, TaskReport};
use serde::{Deserialize, Serialize};

/// Version of the manifest format.
pub const MANIFEST_FORMAT: u32 = 1;

/// One source object in a backup.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ObjectEntry {
    /// The object's key relative to the source store root (e.g. `node1/wal/00000000001.wal`).
    pub key: String,
    /// Bytes.
    pub size: u64,
    /// BLAKE3 of the whole object, hex.
    pub blake3: String,
    /// BLAKE3 of each chunk, in order.
    pub chunks: Vec<String>,
    /// The source's ETag when listed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub etag: Option<String>,
    /// The source's last-modified time when listed, RFC 3339.
    pub last_modified: String,
    /// The phase that copied it.
    pub phase: String,
    /// The node it belongs to (empty for cluster-level objects).
    pub node: String,
}

/// A backup's manifest: written last, create-only. Small: the object list is in segments.
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
    /// The repository's id (from `bk-repository.json`).
    pub repository_id: String,
    /// Chunk size used.
    pub chunk_size: u64,
    /// Objects in the backup.
    pub num_objects: u64,
    /// Their bytes.
    pub num_bytes: u64,
    /// The object list's segments, in order.
    pub segments: Vec<SegmentRef>,
    /// What was deliberately left out.
    pub exclusions: Vec<ExclusionReport>,
    /// Objects copied although they failed their format check (`--allow-corrupt`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub corrupt: Vec<CorruptObject>,
}

/// A segment of a backup's object list.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SegmentRef {
    /// Its key in the repository.
    pub key: String,
    /// Entries in it.
    pub num_objects: u64,
    /// BLAKE3 of the segment's bytes, hex.
    pub blake3: String,
}

/// What an attempt of a copy task writes when it completes: its report and the parts (keys)
/// that hold its object entries. The commit reads exactly the attempt the coordinator accepted.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct DoneRecord {
    /// The report sent to the coordinator.
    pub report: TaskReport,
    /// Part keys, in order.
    pub parts: Vec<String>,
}
