//! Sealed metadata: every file of the repository that is not a pack or a key file (config,
//! index, segments, manifests, staging records) is zstd-compressed, then sealed with the master
//! key bound to its own key in the repository. So a byte flipped anywhere fails to open, and a
//! valid file moved to another key (another backup's manifest, another segment) fails too; the
//! error names the object. [`read_all`] is the lowest-level read every other reader of the
//! repository's small objects builds on.

use bytes::Bytes;
use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt, PutMode, PutOptions, PutPayload};
use serde::de::DeserializeOwned;
use serde::Serialize;

use super::crypto::MasterKey;
use crate::error::{RepositoryError, RepositoryResult};

/// Reads a whole (small) object of the repository's store.
///
/// # Errors
/// [`RepositoryError::Store`] when it cannot be read.
pub async fn read_all(store: &dyn ObjectStore, key: &Path) -> RepositoryResult<Bytes> {
    store
        .get(key)
        .await
        .map_err(RepositoryError::store(key.to_string()))?
        .bytes()
        .await
        .map_err(RepositoryError::store(key.to_string()))
}

/// zstd level for metadata: small files, mostly JSON.
const LEVEL: i32 = 3;

fn context(path: &Path) -> Vec<u8> {
    format!("bk {path}").into_bytes()
}

/// Compresses and seals `plaintext` for `path`.
///
/// # Errors
/// [`RepositoryError::Corrupt`] when compression or the random source fails.
pub fn seal(key: &MasterKey, path: &Path, plaintext: &[u8]) -> RepositoryResult<Vec<u8>> {
    let failed = |reason: String| RepositoryError::Corrupt { key: path.to_string(), reason };
    let compressed =
        zstd::bulk::compress(plaintext, LEVEL).map_err(|error| failed(error.to_string()))?;
    key.seal(&context(path), &compressed).map_err(failed)
}

/// Opens what [`seal`] sealed for `path`.
///
/// # Errors
/// [`RepositoryError::Corrupt`] naming `path` when it does not authenticate or decompress.
pub fn open(key: &MasterKey, path: &Path, sealed: &[u8]) -> RepositoryResult<Vec<u8>> {
    let corrupt = |reason: String| RepositoryError::Corrupt { key: path.to_string(), reason };
    let compressed =
        key.open(&context(path), sealed).map_err(|error| corrupt(error.to_string()))?;
    let mut decoder = zstd::stream::read::Decoder::new(compressed.as_slice())
        .map_err(|error| corrupt(error.to_string()))?;
    let mut plaintext = Vec::new();
    std::io::Read::read_to_end(&mut decoder, &mut plaintext)
        .map_err(|error| corrupt(format!("does not decompress: {error}")))?;
    Ok(plaintext)
}

/// Writes `plaintext` sealed at `path` (overwriting).
///
/// # Errors
/// [`RepositoryError`] when sealing or the store fails.
pub async fn write_sealed(
    store: &dyn ObjectStore,
    key: &MasterKey,
    path: &Path,
    plaintext: &[u8],
) -> RepositoryResult<()> {
    let sealed = seal(key, path, plaintext)?;
    store
        .put(path, PutPayload::from(sealed))
        .await
        .map_err(RepositoryError::store(path.to_string()))?;
    Ok(())
}

/// Writes `plaintext` sealed at `path`, create-only; `Ok(false)` when something is already
/// there (on stores that honour create-only writes).
///
/// # Errors
/// [`RepositoryError`] when sealing or the store fails.
pub async fn create_sealed(
    store: &dyn ObjectStore,
    key: &MasterKey,
    path: &Path,
    plaintext: &[u8],
) -> RepositoryResult<bool> {
    let sealed = seal(key, path, plaintext)?;
    let options = PutOptions { mode: PutMode::Create, ..PutOptions::default() };
    match store.put_opts(path, PutPayload::from(sealed), options).await {
        Ok(_) => Ok(true),
        Err(object_store::Error::AlreadyExists { .. }) => Ok(false),
        Err(error) => Err(RepositoryError::store(path.to_string())(error)),
    }
}

/// Reads and opens the sealed file at `path`.
///
/// # Errors
/// [`RepositoryError`] when it is missing or does not open.
pub async fn read_sealed(
    store: &dyn ObjectStore,
    key: &MasterKey,
    path: &Path,
) -> RepositoryResult<Vec<u8>> {
    let sealed = read_all(store, path).await?;
    open(key, path, &sealed)
}

/// Writes `value` as sealed JSON at `path`.
///
/// # Errors
/// As [`write_sealed`].
pub async fn write_json<T: Serialize>(
    store: &dyn ObjectStore,
    key: &MasterKey,
    path: &Path,
    value: &T,
) -> RepositoryResult<()> {
    let json = serde_json::to_vec(value).map_err(|error| RepositoryError::Corrupt {
        key: path.to_string(),
        reason: error.to_string(),
    })?;
    write_sealed(store, key, path, &json).await
}

/// Reads sealed JSON at `path`.
///
/// # Errors
/// As [`read_sealed`], or [`RepositoryError::Corrupt`] when the JSON does not parse.
pub async fn read_json<T: DeserializeOwned>(
    store: &dyn ObjectStore,
    key: &MasterKey,
    path: &Path,
) -> RepositoryResult<T> {
    let plaintext = read_sealed(store, key, path).await?;
    serde_json::from_slice(&plaintext).map_err(|error| RepositoryError::Corrupt {
        key: path.to_string(),
        reason: format!("does not parse: {error}"),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn test_metadata_opens_only_at_its_own_key() {
        let key = MasterKey::generate().unwrap();
        let manifest = Path::from("backups/A/manifest");
        let sealed = seal(&key, &manifest, b"{\"objects\":3}").unwrap();
        assert_eq!(open(&key, &manifest, &sealed).unwrap(), b"{\"objects\":3}");
        let error = open(&key, &Path::from("backups/B/manifest"), &sealed).unwrap_err();
        assert!(error.to_string().contains("backups/B/manifest"), "{error}");
        let mut flipped = sealed.clone();
        flipped[20] ^= 1;
        assert!(open(&key, &manifest, &flipped).is_err());
    }
}
