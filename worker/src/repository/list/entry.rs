//! One object of a backup as its object list records it, and the record that an object is gone.

use object_store::ObjectMeta;

use crate::repository::crypto::BlobId;

/// One source object in a backup.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ObjectEntry {
    /// The object's key relative to the source store root, in object_store's canonical
    /// (encoded) form, as listed (e.g. `node1/wal/00000000001.wal`).
    pub key: String,
    /// Bytes.
    pub size: u64,
    /// The source's last-modified time when listed, nanoseconds since the Unix epoch.
    pub modified_ns: i64,
    /// The source's ETag when listed.
    pub etag: Option<String>,
    /// Its blobs, in order: the object is their concatenation. Each id is the keyed BLAKE3 of
    /// the blob's plaintext, checked on every read, so the list authenticates the content.
    pub blobs: Vec<BlobId>,
}

impl ObjectEntry {
    /// Whether a listed object is the one this entry recorded: same size, ETag and
    /// last-modified time. Content is not compared (that would mean reading it): a database
    /// rewriting an object in place within the same nanosecond and to the same size, on a store
    /// without ETags, is missed, as by every incremental tool that trusts listings (rsync,
    /// rclone, restic without --force).
    pub fn describes(&self, meta: &ObjectMeta) -> bool {
        self.size == meta.size
            && self.etag == meta.e_tag
            && Some(self.modified_ns) == meta.last_modified.timestamp_nanos_opt()
    }

    /// The entry of a listed object stored as `blobs`.
    pub fn listed(meta: &ObjectMeta, blobs: Vec<BlobId>) -> Self {
        Self {
            key: meta.location.to_string(),
            size: meta.size,
            modified_ns: modified_ns(meta),
            etag: meta.e_tag.clone(),
            blobs,
        }
    }

    /// The last-modified time, RFC 3339 (for messages).
    pub fn modified_rfc3339(&self) -> String {
        chrono::DateTime::from_timestamp_nanos(self.modified_ns).to_rfc3339()
    }
}

/// A listed object's last-modified time in nanoseconds (times outside 1677–2262 are clamped:
/// they only decide whether an object counts as unchanged, and such a store is broken anyway).
pub fn modified_ns(meta: &ObjectMeta) -> i64 {
    meta.last_modified.timestamp_nanos_opt().unwrap_or_else(|| {
        if meta.last_modified.timestamp() < 0 {
            i64::MIN
        } else {
            i64::MAX
        }
    })
}

/// What a run records of one key: the object, or (in a delta run) that it is gone.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ListItem {
    /// The object as it is in this backup.
    Object(ObjectEntry),
    /// The key is not in this backup though an older run of the same list has it.
    Deleted(String),
}

impl ListItem {
    /// The key the item is about.
    pub fn key(&self) -> &str {
        match self {
            ListItem::Object(entry) => &entry.key,
            ListItem::Deleted(key) => key,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn meta(size: u64, e_tag: Option<&str>, seconds: i64) -> ObjectMeta {
        ObjectMeta {
            location: "node1/wal/00000000001.wal".into(),
            last_modified: chrono::DateTime::from_timestamp(seconds, 5).unwrap(),
            size,
            e_tag: e_tag.map(str::to_string),
            version: None,
        }
    }

    #[test]
    fn test_an_entry_describes_a_listed_object_only_when_size_etag_and_time_all_match() {
        let entry = ObjectEntry::listed(&meta(4096, Some("e1"), 100), Vec::new());
        let cases = [
            ("unchanged", meta(4096, Some("e1"), 100), true),
            ("grew", meta(8192, Some("e1"), 100), false),
            ("rewritten, new ETag", meta(4096, Some("e2"), 100), false),
            ("the store stopped giving ETags", meta(4096, None, 100), false),
            ("touched", meta(4096, Some("e1"), 101), false),
        ];
        for (case, listed, want) in cases {
            assert_eq!(entry.describes(&listed), want, "{case}");
        }
        assert_eq!(entry.modified_rfc3339(), "1970-01-01T00:01:40.000000005+00:00");
    }
}
