//! Reading a committed backup: its manifest, then its segments one at a time (each checked
//! against the hash the manifest records), so memory stays bounded by one segment.

use bk_proto::ids::BackupId;
use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt};

use super::layout::manifest_key;
use super::manifest::{Manifest, ObjectEntry, SegmentRef, MANIFEST_FORMAT};
use crate::error::{RepositoryError, RepositoryResult};

/// Reads a backup's manifest.
///
/// # Errors
/// [`RepositoryError`] when it is missing, unreadable, or of a newer format.
pub async fn read_manifest(
    repository: &dyn ObjectStore,
    backup_id: BackupId,
) -> RepositoryResult<Manifest> {
    let key = manifest_key(backup_id);
    let bytes = read_all(repository, &key).await?;
    let manifest: Manifest = serde_json::from_slice(&bytes).map_err(|error| {
        RepositoryError::Corrupt { key: key.to_string(), reason: error.to_string() }
    })?;
    if manifest.format > MANIFEST_FORMAT {
        return Err(RepositoryError::Corrupt {
            key: key.to_string(),
            reason: format!(
                "manifest format {} is newer than this bk (reads {MANIFEST_FORMAT}): upgrade bk",
                manifest.format
            ),
        });
    }
    Ok(manifest)
}

/// Reads one segment, checking its hash and entry count against the manifest.
///
/// # Errors
/// [`RepositoryError::Corrupt`] when the segment's bytes do not match, or an entry does not parse.
pub async fn read_segment(
    repository: &dyn ObjectStore,
    segment: &SegmentRef,
) -> RepositoryResult<Vec<ObjectEntry>> {
    let key = Path::from(segment.key.as_str());
    let bytes = read_all(repository, &key).await?;
    let corrupt = |reason: String| RepositoryError::Corrupt { key: segment.key.clone(), reason };
    let actual = blake3::hash(&bytes).to_hex().to_string();
    if actual != segment.blake3 {
        return Err(corrupt(format!(
            "hashes to `{actual}`, the manifest says `{}`",
            segment.blake3
        )));
    }
    let entries: Vec<ObjectEntry> = bytes
        .split(|byte| *byte == b'\n')
        .filter(|line| !line.is_empty())
        .map(|line| serde_json::from_slice(line).map_err(|error| corrupt(error.to_string())))
        .collect::<Result<_, _>>()?;
    if entries.len() as u64 != segment.num_objects {
        return Err(corrupt(format!(
            "holds {} entries, the manifest says {}",
            entries.len(),
            segment.num_objects
        )));
    }
    Ok(entries)
}

/// Reads a whole (small) object.
///
/// # Errors
/// [`RepositoryError::Store`] when it cannot be read.
pub async fn read_all(repository: &dyn ObjectStore, key: &Path) -> RepositoryResult<bytes::Bytes> {
    repository
        .get(key)
        .await
        .map_err(RepositoryError::store(key.to_string()))?
        .bytes()
        .await
        .map_err(RepositoryError::store(key.to_string()))
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
