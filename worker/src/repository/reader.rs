//! Reading a committed backup: its manifest (its object lists are read with
//! [`super::list::MergedView`], a chunk at a time), and objects' bytes from their blobs with
//! ranged reads of packs.

use bk_proto::ids::BackupId;
use bytes::{Bytes, BytesMut};
use object_store::{GetOptions, GetResultPayload};

use super::blob::{open_blob, open_blob_in_place, Plaintext};
use super::buffers::CHUNKS;
use super::crypto::BlobId;
use super::index_cache::IndexView;
use super::layout::{manifest_key, pack_path};
use super::manifest::{Manifest, MANIFEST_FORMAT};
use super::metadata::read_json;
use super::opened::Repository;
use super::pack::{PackEntry, PackId};
use super::source::ChunkSource;
use crate::error::{RepositoryError, RepositoryResult};

/// Reads a backup's manifest.
///
/// # Errors
/// [`RepositoryError`] when it is missing, does not open, or is of another format.
pub async fn read_manifest(
    repository: &Repository,
    backup_id: BackupId,
) -> RepositoryResult<Manifest> {
    let key = manifest_key(backup_id);
    let manifest: Manifest = read_json(repository.store.as_ref(), &repository.key, &key).await?;
    if manifest.format != MANIFEST_FORMAT || manifest.backup_id != backup_id {
        return Err(RepositoryError::Corrupt {
            key: key.to_string(),
            reason: format!(
                "manifest format {} of backup {}, expected format {MANIFEST_FORMAT} of {backup_id}",
                manifest.format, manifest.backup_id
            ),
        });
    }
    Ok(manifest)
}

/// Why a blob could not be read.
#[derive(Debug, thiserror::Error)]
pub enum BlobReadError {
    /// No index file lists it.
    #[error("blob {0} is in no index of the repository")]
    NotIndexed(BlobId),
    /// Its pack is missing.
    #[error("pack `{pack}` holding blob {id} is missing")]
    PackMissing {
        /// The blob.
        id: BlobId,
        /// The pack's key.
        pack: String,
    },
    /// It does not open or does not hash to its id.
    #[error("blob {id} in pack `{pack}` is damaged: {reason}")]
    Damaged {
        /// The blob.
        id: BlobId,
        /// The pack's key.
        pack: String,
        /// What is wrong.
        reason: String,
    },
    /// The store failed.
    #[error(transparent)]
    Repository(#[from] RepositoryError),
}

/// Reads and opens one blob with a ranged read of its pack.
///
/// # Errors
/// [`BlobReadError`] naming the blob and pack.
pub async fn read_blob(
    repository: &Repository,
    index: &IndexView,
    id: &BlobId,
) -> Result<OpenedBlob, BlobReadError> {
    let (pack, entry) = index.get(id).ok_or(BlobReadError::NotIndexed(*id))?;
    read_located_blob(repository, pack, &entry).await
}

/// A blob's plaintext, with the buffer it lies in when it was opened in place.
#[derive(Debug)]
pub struct OpenedBlob {
    /// The plaintext.
    pub plaintext: Bytes,
    /// The whole buffer `plaintext` is a slice of (`None`: decompressed into its own). Handed
    /// to [`CHUNKS`] once nothing holds `plaintext`, it serves the next read without faulting
    /// in fresh pages.
    pub buffer: Option<Bytes>,
}

impl OpenedBlob {
    /// Gives the buffer back to [`CHUNKS`] (kept only if nothing else holds it by then).
    pub fn recycle(self) {
        drop(self.plaintext);
        if let Some(buffer) = self.buffer {
            CHUNKS.give_bytes(buffer);
        }
    }
}

/// Reads and opens one blob at a known place, with a ranged read of its pack; the plaintext is
/// decrypted where it was read (see [`OpenedBlob`]).
///
/// # Errors
/// [`BlobReadError`] naming the blob and pack.
pub async fn read_located_blob(
    repository: &Repository,
    pack: PackId,
    entry: &PackEntry,
) -> Result<OpenedBlob, BlobReadError> {
    let stored =
        read_pack_range(repository, pack, entry.offset, entry.offset + u64::from(entry.length))
            .await
            .map_err(|error| pack_error(error, &entry.id, pack))?;
    let mut buffer = stored.try_into_mut().unwrap_or_else(|shared| BytesMut::from(&shared[..]));
    match open_stored_blob_in_place(repository, pack, entry, &mut buffer)? {
        Plaintext::InPlace(range) => {
            let buffer = buffer.freeze();
            Ok(OpenedBlob { plaintext: buffer.slice(range), buffer: Some(buffer) })
        }
        Plaintext::Decompressed(plaintext) => {
            CHUNKS.give_bytes(buffer.freeze());
            Ok(OpenedBlob { plaintext: Bytes::from(plaintext), buffer: None })
        }
    }
}

/// Opens a blob's stored bytes (as read from its pack).
///
/// # Errors
/// [`BlobReadError::Damaged`] naming the blob and pack.
pub fn open_stored_blob(
    repository: &Repository,
    pack: PackId,
    entry: &PackEntry,
    stored: &[u8],
) -> Result<Vec<u8>, BlobReadError> {
    open_blob(&repository.key, &repository.config, entry, stored)
        .map_err(|reason| damaged(entry, pack, reason))
}

/// Opens a blob's stored bytes where they lie (decrypted in place, see [`open_blob_in_place`]).
///
/// # Errors
/// [`BlobReadError::Damaged`] naming the blob and pack.
pub fn open_stored_blob_in_place(
    repository: &Repository,
    pack: PackId,
    entry: &PackEntry,
    stored: &mut [u8],
) -> Result<Plaintext, BlobReadError> {
    open_blob_in_place(&repository.key, &repository.config, entry, stored)
        .map_err(|reason| damaged(entry, pack, reason))
}

fn damaged(entry: &PackEntry, pack: PackId, reason: String) -> BlobReadError {
    BlobReadError::Damaged { id: entry.id, pack: pack_path(pack).to_string(), reason }
}

/// Reads `start..end` of a pack. From a local repository the range is read into one of
/// [`CHUNKS`]' buffers (give it back when done): megabyte reads into fresh allocations made a
/// restore fault in and zero every page it read (a fifth of its CPU in a profile).
///
/// # Errors
/// [`RepositoryError::Store`] naming the pack.
pub async fn read_pack_range(
    repository: &Repository,
    pack: PackId,
    start: u64,
    end: u64,
) -> RepositoryResult<Bytes> {
    let path = pack_path(pack);
    let store_error = |source| RepositoryError::Store { key: path.to_string(), source };
    let options = GetOptions::default().with_range(Some(start..end));
    let result = repository.store.get_opts(&path, options).await.map_err(&store_error)?;
    let bytes = if matches!(result.payload, GetResultPayload::File(..)) {
        let length = usize::try_from(end - start).unwrap_or(usize::MAX);
        ChunkSource::new(result).next_chunk(length).await.map_err(&store_error)?.unwrap_or_default()
    } else {
        result.bytes().await.map_err(&store_error)?
    };
    if bytes.len() as u64 != end - start {
        return Err(RepositoryError::Corrupt {
            key: path.to_string(),
            reason: format!(
                "shorter than its index says ({} of {} bytes at {start})",
                bytes.len(),
                end - start
            ),
        });
    }
    Ok(bytes)
}

fn pack_error(error: RepositoryError, id: &BlobId, pack: PackId) -> BlobReadError {
    match error {
        RepositoryError::Store { source: object_store::Error::NotFound { .. }, .. } => {
            BlobReadError::PackMissing { id: *id, pack: pack_path(pack).to_string() }
        }
        RepositoryError::Corrupt { reason, .. } => {
            BlobReadError::Damaged { id: *id, pack: pack_path(pack).to_string(), reason }
        }
        other => BlobReadError::Repository(other),
    }
}

/// Checks that a manifest key stays inside the target: no empty segment, no `.` or `..`, not
/// absolute, no backslash. A manifest is data from storage; it must not steer writes elsewhere.
///
/// # Errors
/// A message naming the key and why it is refused.
pub fn check_key_is_safe(key: &str) -> Result<(), String> {
    let refuse = |why: &str| Err(format!("refusing manifest key `{key}`: {why}"));
    if key.is_empty() {
        return refuse("it is empty");
    }
    if key.starts_with('/') {
        return refuse("it is absolute");
    }
    if key.contains('\\') || key.contains('\0') {
        return refuse("it contains a backslash or NUL");
    }
    for segment in key.split('/') {
        match segment {
            "" => return refuse("it has an empty path segment"),
            "." | ".." => return refuse("it would escape the target (`.` or `..` segment)"),
            _ => {}
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::check_key_is_safe;

    #[test]
    fn test_keys_that_could_escape_the_target_are_refused() {
        for key in [
            "../evil",
            "node1/../../etc/passwd",
            "/etc/passwd",
            "node1//wal",
            "",
            "a/./b",
            "a\\b",
            "node1/",
        ] {
            assert!(check_key_is_safe(key).is_err(), "{key:?} accepted");
        }
        for key in ["node1/wal/00000000001.wal", "cluster1/catalog/v3/snapshot", "a/..b/c"] {
            assert!(check_key_is_safe(key).is_ok(), "{key:?} refused");
        }
    }
}
