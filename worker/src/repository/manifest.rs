//! Manifest, segment and staging record types (all stored sealed, see [`super::metadata`]).

use bk_proto::ids::BackupId;
use bk_proto::model::{CorruptObject, ExclusionReport, TaskReport};
use serde::{Deserialize, Serialize};

use super::crypto::BlobId;
use super::index::IndexEntry;

/// Version of the manifest format.
pub const MANIFEST_FORMAT: u32 = 2;

/// One source object in a backup.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ObjectEntry {
    /// The object's key relative to the source store root (e.g. `node1/wal/00000000001.wal`).
    pub key: String,
    /// Bytes.
    pub size: u64,
    /// Its blobs, in order: the object is their concatenation. Each id is the keyed BLAKE3 of
    /// the blob's plaintext, checked on every read, so the list authenticates the content.
    pub blobs: Vec<BlobId>,
    /// The source's ETag when listed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub etag: Option<String>,
    /// The source's last-modified time when listed, RFC 3339.
    pub last_modified: String,
    /// The phase that copied it.
    pub phase: bk_proto::model::CopyPhase,
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
    /// The repository's id (from its config).
    pub repository_id: String,
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

/// A segment of a backup's object list. A commit starts a new segment per node, so a worker
/// reading a parent backup reads its own node's segments only.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SegmentRef {
    /// Its key in the repository.
    pub key: String,
    /// Entries in it.
    pub num_objects: u64,
    /// The smallest and largest object key in it (absent: unknown, read it for any prefix).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub keys: Option<(String, String)>,
    /// The scopes of the copy tasks whose entries it holds, every one of them (empty:
    /// unknown). A later backup whose tasks over all these scopes found nothing changed names
    /// this segment in its manifest instead of writing the same entries again, so segments are
    /// shared between backups (see `tasks::prune::forget_backups`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub scopes: Vec<Scope>,
    /// Bytes of the objects in it (known when `scopes` is).
    #[serde(default)]
    pub num_bytes: u64,
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

impl SegmentRef {
    /// Whether the segment may hold objects whose keys start with `prefix`: the keys with a
    /// prefix are one contiguous range, which must meet the segment's.
    pub fn may_hold(&self, prefix: &str) -> bool {
        match &self.keys {
            None => true,
            Some((first, last)) => {
                last.as_str() >= prefix && (first.as_str() <= prefix || first.starts_with(prefix))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::{ObjectEntry, SegmentRef};

    #[test]
    fn test_entries_written_when_phases_were_strings_read_as_the_same_phase() {
        let json = r#"{"key":"node1/wal/1.wal","size":4,"blobs":[],"last_modified":"t","phase":"nodes","node":"node1"}"#;
        let entry: ObjectEntry = serde_json::from_str(json).unwrap();
        assert_eq!(entry.phase, bk_proto::model::CopyPhase::Nodes);
        assert_eq!(serde_json::to_string(&entry).unwrap(), json, "the stored form changed");
    }

    #[test]
    fn test_a_segment_may_hold_a_prefix_only_when_their_key_ranges_meet() {
        let segment = SegmentRef {
            key: "segment".to_string(),
            num_objects: 2,
            keys: Some(("node2/dbs/a".to_string(), "node2/wal/b".to_string())),
            scopes: Vec::new(),
            num_bytes: 0,
        };
        for (prefix, expected) in [
            ("", true),
            ("node2/", true),
            ("node2/wal/", true),
            ("node2/dbs/a", true),
            ("node2/snapshots/", true),
            ("node1/", false),
            ("node3/", false),
            ("node2/x/", false),
            ("node2/a/", false),
        ] {
            assert_eq!(segment.may_hold(prefix), expected, "prefix {prefix:?}");
        }
        assert!(SegmentRef { keys: None, ..segment }.may_hold("node1/"));
    }
}

/// A batch of an attempt's results: object entries, and where the blobs they name that the
/// committed index does not list are.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Part {
    /// Object entries.
    pub entries: Vec<ObjectEntry>,
    /// Index entries for their blobs not in the committed index.
    pub blobs: Vec<IndexEntry>,
}

/// What an attempt of a copy task writes when it completes: its report, the parts written
/// while it ran, and the last batch. The commit reads exactly the attempt the coordinator
/// accepted.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct DoneRecord {
    /// The report sent to the coordinator.
    pub report: TaskReport,
    /// The keys the task copied.
    #[serde(default)]
    pub scope: Scope,
    /// Part keys, in order.
    pub parts: Vec<String>,
    /// Entries not in a part (the last batch, or all of a small task's).
    pub tail: Part,
    /// Set when every object in `scope` was the parent backup's, unchanged: the attempt's
    /// entries are then the parent's in `scope`, in these segments, and none are written in
    /// parts (an unchanged node costs its listing, not a rewrite of its object list).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub unchanged: Option<Vec<SegmentRef>>,
}
