//! `bk-repository.json`: the repository's identity and parameters, written once.

use object_store::{ObjectStore, ObjectStoreExt, PutMode, PutOptions, PutPayload};
use serde::{Deserialize, Serialize};

use super::layout::REPOSITORY_FILE;
use crate::error::{RepositoryError, RepositoryResult};

/// Version of the repository format this binary reads and writes.
pub const REPOSITORY_FORMAT: u32 = 1;

/// The repository's description.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RepositoryInfo {
    /// [`REPOSITORY_FORMAT`].
    pub format: u32,
    /// Unique id, fixed at creation.
    pub id: String,
    /// Chunk size in bytes, fixed at creation.
    pub chunk_size: u64,
    /// The content hash (`blake3`).
    pub hash: String,
}

/// Reads the repository's description, creating the repository (create-only) if it has none.
/// Two workers racing to create it both end up reading the winner's.
///
/// # Errors
/// [`RepositoryError`] when the store fails, the file is unreadable, or its format is newer
/// than this binary.
pub async fn open_or_init(
    store: &dyn ObjectStore,
    chunk_size: u64,
    new_id: &str,
) -> RepositoryResult<RepositoryInfo> {
    let path = object_store::path::Path::from(REPOSITORY_FILE);
    match store.get(&path).await {
        Ok(result) => {
            return parse(&result.bytes().await.map_err(RepositoryError::store(REPOSITORY_FILE))?)
        }
        Err(object_store::Error::NotFound { .. }) => {}
        Err(error) => return Err(RepositoryError::store(REPOSITORY_FILE)(error)),
    }
    let info = RepositoryInfo {
        format: REPOSITORY_FORMAT,
        id: new_id.to_string(),
        chunk_size,
        hash: "blake3".to_string(),
    };
    let bytes = serde_json::to_vec_pretty(&info).map_err(|error| RepositoryError::Corrupt {
        key: REPOSITORY_FILE.to_string(),
        reason: error.to_string(),
    })?;
    let options = PutOptions { mode: PutMode::Create, ..PutOptions::default() };
    match store.put_opts(&path, PutPayload::from(bytes), options).await {
        Ok(_) => Ok(info),
        Err(object_store::Error::AlreadyExists { .. }) => {
            let existing =
                store.get(&path).await.map_err(RepositoryError::store(REPOSITORY_FILE))?;
            parse(&existing.bytes().await.map_err(RepositoryError::store(REPOSITORY_FILE))?)
        }
        Err(error) => Err(RepositoryError::store(REPOSITORY_FILE)(error)),
    }
}

fn parse(bytes: &[u8]) -> RepositoryResult<RepositoryInfo> {
    let info: RepositoryInfo = serde_json::from_slice(bytes).map_err(|error| {
        RepositoryError::Corrupt { key: REPOSITORY_FILE.to_string(), reason: error.to_string() }
    })?;
    if info.format > REPOSITORY_FORMAT {
        return Err(RepositoryError::Corrupt {
            key: REPOSITORY_FILE.to_string(),
            reason: format!(
                "format {} is newer than this bk (reads {REPOSITORY_FORMAT}): upgrade bk",
                info.format
            ),
        });
    }
    Ok(info)
}
