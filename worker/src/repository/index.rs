//! The blob index: which pack holds each blob, at which offset.
//!
//! Index files (`index/<name>`, sealed, zstd-compressed fixed-size records) are written by
//! commits (the blobs a backup added) and by prune (the blobs it kept, where they now are). The
//! repository's index is the union of every index file, loaded once per task and consulted
//! before any upload. A worker keeps it in memory between tasks and reads only index files it
//! has not seen; when one it had read is gone (a prune consolidated them), it reloads all.

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;

use object_store::ObjectStore;
use serde::{Deserialize, Serialize};

use super::crypto::{BlobId, MasterKey};
use super::layout::{index_path, INDEX_DIR};
use super::pack::{PackEntry, PackId, ENTRY_SIZE};
use crate::error::{RepositoryError, RepositoryResult};

const MAGIC: &[u8; 6] = b"bkidx2";

/// One blob and where it is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct IndexEntry {
    /// The pack holding it.
    pub pack: PackId,
    /// Its place in the pack.
    #[serde(with = "entry_serde")]
    pub entry: PackEntry,
}

/// Where a blob is, as the in-memory index holds it.
pub type BlobIndex = HashMap<BlobId, (PackId, PackEntry)>;

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

/// Writes index file `name` with `entries`.
///
/// # Errors
/// [`RepositoryError`] when the store fails.
pub async fn write_index(
    store: &dyn ObjectStore,
    key: &MasterKey,
    name: &str,
    entries: &[IndexEntry],
) -> RepositoryResult<()> {
    let path = index_path(name);
    super::metadata::write_sealed(store, key, &path, &encode(entries)).await
}

/// Reads index file `name`.
///
/// # Errors
/// [`RepositoryError::Corrupt`] naming it when it does not open or decode.
pub async fn read_index(
    store: &dyn ObjectStore,
    key: &MasterKey,
    name: &str,
) -> RepositoryResult<Vec<IndexEntry>> {
    let path = index_path(name);
    let plaintext = super::metadata::read_sealed(store, key, &path).await?;
    decode(&plaintext).map_err(|reason| RepositoryError::Corrupt { key: path.to_string(), reason })
}

/// The index a worker keeps between tasks, per repository.
#[derive(Debug, Default)]
pub struct IndexCache {
    files: BTreeSet<String>,
    index: Arc<BlobIndex>,
}

impl IndexCache {
    /// Brings the index up to date with the repository and returns it.
    ///
    /// # Errors
    /// [`RepositoryError`] when listing or reading an index file fails.
    pub async fn refresh(
        &mut self,
        store: &Arc<dyn ObjectStore>,
        key: &MasterKey,
    ) -> RepositoryResult<Arc<BlobIndex>> {
        let listed: BTreeSet<String> = super::list_paths(store.as_ref(), INDEX_DIR)
            .await?
            .into_iter()
            .filter_map(|path| path.filename().map(str::to_string))
            .collect();
        if !self.files.is_subset(&listed) {
            *self = IndexCache::default(); // A prune consolidated the index: read it anew.
        }
        let new: Vec<String> = listed.difference(&self.files).cloned().collect();
        if !new.is_empty() {
            let index = Arc::make_mut(&mut self.index);
            for name in new {
                for entry in read_index(store.as_ref(), key, &name).await? {
                    index.insert(entry.entry.id, (entry.pack, entry.entry));
                }
                self.files.insert(name);
            }
        }
        Ok(self.index.clone())
    }
}

mod entry_serde {
    //! A pack entry in JSON (staging parts): `"<id>:<offset>:<length>:<raw length>:<flags>"`.

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
}
