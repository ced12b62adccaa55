//! The blob index: which pack holds each blob, at which offset.
//!
//! ```text
//! <repo>/index/<partition>/<name>   blob id → pack, offset, length (sealed; at most 65,536 entries)
//! ```
//! The index is **partitioned by node**: a copy task's blobs are indexed under its node's
//! partition (`node-<node id>`; `cluster` for cluster-level objects such as the catalog), and a
//! task deduplicates against its own partition. A node's worker keeps its partition in a local
//! cache on disk ([`super::index_cache`]), to which it adds the index files it writes itself:
//! it never reads back what it wrote, and never reads the other nodes' partitions for a
//! backup. So a worker's memory for deduplication does not grow with the repository (the
//! cache is a B-tree file with a bounded page cache), and neither does its time: a backup
//! imports only index files another worker wrote into its partition (a stand-in, a repair).
//! The price: the same content on two nodes is stored once per node (InfluxDB nodes do not
//! share files; a QuestDB server is one node).
//!
//! Index files are written by copy task attempts as they go (their blobs' packs are stored
//! first: an index file only ever names blobs that are in the repository), by commits (the
//! few blob locations small tasks carried in their staging records) and by prune (which
//! rewrites every partition). They are never modified; a prune deletes the ones it replaced, and
//! a cache that finds a file it had imported gone rebuilds that partition.

use object_store::path::Path;
use object_store::ObjectStore;
use serde::{Deserialize, Serialize};

use super::crypto::MasterKey;
use super::layout::INDEX_DIR;
use super::pack::{PackEntry, PackId, ENTRY_SIZE};
use crate::error::{RepositoryError, RepositoryResult};

const MAGIC: &[u8; 6] = b"bkidx3";
/// Entries per index file at most: a file is read whole, so this bounds a reader's memory.
pub const INDEX_FILE_ENTRIES: usize = 65_536;
/// The partition of cluster-level objects (an Enterprise cluster's catalog and licence).
pub const CLUSTER_PARTITION: &str = "cluster";

/// One blob and where it is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct IndexEntry {
    /// The pack holding it.
    pub pack: PackId,
    /// Its place in the pack.
    #[serde(with = "entry_serde")]
    pub entry: PackEntry,
}

/// The partition of a node's blobs (`""`: cluster-level objects).
pub fn partition_of(node: &str) -> String {
    if node.is_empty() {
        CLUSTER_PARTITION.to_string()
    } else {
        format!("node-{node}")
    }
}

/// Directory of a partition's index files.
pub fn partition_dir(partition: &str) -> Path {
    Path::from_iter([INDEX_DIR, partition])
}

/// Key of index file `name` of `partition`.
pub fn index_path(partition: &str, name: &str) -> Path {
    Path::from_iter([INDEX_DIR, partition, name])
}

/// Encodes index entries as an index file's plaintext.
pub fn encode(entries: &[IndexEntry]) -> Vec<u8> {
    let mut out = Vec::with_capacity(MAGIC.len() + 4 + entries.len() * (16 + ENTRY_SIZE));
    out.extend_from_slice(MAGIC);
    out.extend_from_slice(&(entries.len() as u32).to_le_bytes());
    for entry in entries {
        out.extend_from_slice(&entry.pack.0);
        entry.entry.encode_into(&mut out);
    }
    out
}

/// Decodes an index file's plaintext.
///
/// # Errors
/// A description when it is not an index.
pub fn decode(bytes: &[u8]) -> Result<Vec<IndexEntry>, String> {
    let body = bytes.strip_prefix(MAGIC.as_slice()).ok_or("not a bk index file")?;
    let count = body.get(..4).and_then(|count| count.try_into().ok()).map(u32::from_le_bytes);
    let count = count.ok_or("truncated")? as usize;
    let record = 16 + ENTRY_SIZE;
    if body.len() != 4 + count * record {
        return Err(format!("says {count} entries but holds {} bytes", body.len()));
    }
    body[4..]
        .chunks_exact(record)
        .map(|chunk| {
            let pack = PackId(chunk[..16].try_into().map_err(|_| "malformed entry")?);
            let entry = PackEntry::decode(&chunk[16..]).ok_or("malformed entry")?;
            Ok(IndexEntry { pack, entry })
        })
        .collect()
}

/// Writes `entries` as index files of `partition` named `<base>-<n>`, at most
/// [`INDEX_FILE_ENTRIES`] each; returns their names.
///
/// # Errors
/// [`RepositoryError`] when the store fails.
pub async fn write_index_files(
    store: &dyn ObjectStore,
    key: &MasterKey,
    partition: &str,
    base: &str,
    entries: &[IndexEntry],
) -> RepositoryResult<Vec<String>> {
    let mut names = Vec::new();
    for (number, batch) in entries.chunks(INDEX_FILE_ENTRIES).enumerate() {
        let name = format!("{base}-{number:04}");
        let path = index_path(partition, &name);
        super::metadata::write_sealed(store, key, &path, &encode(batch)).await?;
        names.push(name);
    }
    Ok(names)
}

/// Reads the index file at `path`.
///
/// # Errors
/// [`RepositoryError::Corrupt`] naming it when it does not open or decode.
pub async fn read_index(
    store: &dyn ObjectStore,
    key: &MasterKey,
    path: &Path,
) -> RepositoryResult<Vec<IndexEntry>> {
    let plaintext = super::metadata::read_sealed(store, key, path).await?;
    decode(&plaintext).map_err(|reason| RepositoryError::Corrupt { key: path.to_string(), reason })
}

/// The names of `partition`'s index files.
///
/// # Errors
/// [`RepositoryError::Store`] when listing fails.
pub async fn list_index_files(
    store: &dyn ObjectStore,
    partition: &str,
) -> RepositoryResult<Vec<String>> {
    let dir = partition_dir(partition);
    Ok(super::list_paths(store, dir.as_ref())
        .await?
        .into_iter()
        .filter_map(|path| path.filename().map(str::to_string))
        .collect())
}

/// The partitions that have index files.
///
/// # Errors
/// [`RepositoryError::Store`] when listing fails.
pub async fn list_partitions(store: &dyn ObjectStore) -> RepositoryResult<Vec<String>> {
    let listed = store
        .list_with_delimiter(Some(&Path::from(INDEX_DIR)))
        .await
        .map_err(RepositoryError::store(format!("{INDEX_DIR}/")))?;
    let mut partitions: Vec<String> = listed
        .common_prefixes
        .iter()
        .filter_map(|prefix| prefix.filename().map(str::to_string))
        .collect();
    partitions.sort();
    Ok(partitions)
}

mod entry_serde {
    //! A pack entry in JSON (staging records): `"<id>:<offset>:<length>:<raw length>:<flags>"`.

    use serde::{Deserialize, Deserializer, Serializer};

    use super::super::crypto::BlobId;
    use super::PackEntry;

    pub(super) fn serialize<S: Serializer>(
        entry: &PackEntry,
        serializer: S,
    ) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&format!(
            "{}:{}:{}:{}:{}",
            entry.id, entry.offset, entry.length, entry.raw_length, entry.flags
        ))
    }

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(
        deserializer: D,
    ) -> Result<PackEntry, D::Error> {
        let text = <std::borrow::Cow<'de, str>>::deserialize(deserializer)?;
        let parts: Vec<&str> = text.split(':').collect();
        let malformed = || serde::de::Error::custom(format!("malformed pack entry `{text}`"));
        let [id, offset, length, raw_length, flags] = parts.as_slice() else {
            return Err(malformed());
        };
        Ok(PackEntry {
            id: BlobId::from_hex(id).ok_or_else(malformed)?,
            offset: offset.parse().map_err(|_| malformed())?,
            length: length.parse().map_err(|_| malformed())?,
            raw_length: raw_length.parse().map_err(|_| malformed())?,
            flags: flags.parse().map_err(|_| malformed())?,
        })
    }
}

impl Serialize for PackId {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.to_hex())
    }
}

impl<'de> Deserialize<'de> for PackId {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = <std::borrow::Cow<'de, str>>::deserialize(deserializer)?;
        PackId::from_hex(&text)
            .ok_or_else(|| serde::de::Error::custom("not a 32-hex-digit pack id"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::repository::crypto::BlobId;

    fn entry(byte: u8) -> IndexEntry {
        IndexEntry {
            pack: PackId([byte; 16]),
            entry: PackEntry {
                id: BlobId([byte; 32]),
                offset: 7,
                length: 9,
                raw_length: 3,
                flags: 1,
            },
        }
    }

    #[test]
    fn test_index_files_and_json_entries_round_trip() {
        let entries = vec![entry(1), entry(2)];
        assert_eq!(decode(&encode(&entries)).unwrap(), entries);
        assert!(decode(b"garbage").is_err());
        let json = serde_json::to_string(&entries).unwrap();
        assert_eq!(serde_json::from_str::<Vec<IndexEntry>>(&json).unwrap(), entries);
    }

    #[test]
    fn test_partitions_are_one_path_segment_each() {
        assert_eq!(partition_of(""), "cluster");
        assert_eq!(partition_of("node1"), "node-node1");
        assert_eq!(index_path(&partition_of("a/b"), "x").as_ref(), "index/node-a%2Fb/x");
        assert_eq!(partition_dir("cluster").as_ref(), "index/cluster");
    }
}

#[cfg(test)]
mod partition_listing_tests {
    use super::*;
    use object_store::ObjectStoreExt;

    #[tokio::test]
    async fn test_partitions_are_listed_from_a_local_store() {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("file://{}", dir.path().display());
        let store =
            crate::store::open_store(&url, &Default::default(), &[], &Default::default(), true)
                .unwrap();
        store
            .put(&index_path("node-a", "f"), object_store::PutPayload::from_static(b"x"))
            .await
            .unwrap();
        store
            .put(&index_path("cluster", "g"), object_store::PutPayload::from_static(b"x"))
            .await
            .unwrap();
        assert_eq!(list_partitions(store.as_ref()).await.unwrap(), ["cluster", "node-a"]);
        assert_eq!(list_index_files(store.as_ref(), "node-a").await.unwrap(), ["f"]);
    }
}
