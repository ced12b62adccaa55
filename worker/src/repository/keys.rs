//! Key files: the master key wrapped by a passphrase-derived key, one file per passphrase.
//!
//! `keys/<key-id>` holds, in JSON, the Argon2id parameters and salt, and the master key sealed
//! (AES-256-GCM) with the key Argon2id derives from the passphrase. Any passphrase with a key
//! file opens the repository; adding one wraps the same master key again and removing one
//! deletes its file, so passphrases rotate without rewriting any data. Deriving takes a
//! deliberate fraction of a second (that is what makes guessing slow): a worker unlocks a
//! repository once and keeps the master key in memory while the passphrase is unchanged.

use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt, PutMode, PutOptions, PutPayload};
use serde::{Deserialize, Serialize};

use super::crypto::{aead_key, open_with, seal_with, MasterKey};
use super::layout::{key_path, KEYS_DIR};
use crate::error::{RepositoryError, RepositoryResult};

/// A passphrase, as the worker read it. Never printed.
#[derive(Clone, PartialEq, Eq)]
pub struct Passphrase(pub Vec<u8>);

impl std::fmt::Debug for Passphrase {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter.write_str("Passphrase(..)")
    }
}

impl Passphrase {
    /// A fingerprint to tell whether a passphrase changed, without keeping it around in clear.
    pub fn fingerprint(&self) -> [u8; 32] {
        *blake3::hash(&self.0).as_bytes()
    }
}

/// Argon2id's cost, chosen when a key is made and stored in its file.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct KdfSettings {
    /// Memory, KiB (default 64 MiB).
    pub memory_kib: u32,
    /// Passes (default 3).
    pub iterations: u32,
    /// Lanes (default 1).
    pub parallelism: u32,
}

impl Default for KdfSettings {
    fn default() -> Self {
        Self { memory_kib: 64 * 1024, iterations: 3, parallelism: 1 }
    }
}

/// What a key file holds.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeyFile {
    /// Key file format (1).
    pub version: u32,
    /// Its id (also its name under `keys/`).
    pub key_id: String,
    /// The repository config it opens (a race of initialisations may leave several).
    pub config_id: String,
    /// When it was made (RFC 3339).
    pub created_at: String,
    /// The worker that made it.
    pub host: String,
    /// Always `argon2id`.
    pub kdf: String,
    /// Argon2id's cost.
    pub kdf_settings: KdfSettings,
    /// The salt, hex.
    pub salt: String,
    /// The master key sealed with the derived key, hex.
    pub wrapped: String,
}

/// Why a key file did not open with a passphrase.
#[derive(Debug, PartialEq, Eq)]
pub enum UnwrapError {
    /// The passphrase is not this key file's.
    WrongPassphrase,
    /// The file is not something bk wrote.
    Malformed(String),
}

impl KeyFile {
    /// Wraps `master` with `passphrase` into a new key file for `config_id`.
    ///
    /// # Errors
    /// When Argon2id refuses the settings or the random source fails.
    pub fn wrap(
        master: &MasterKey,
        passphrase: &Passphrase,
        settings: KdfSettings,
        config_id: &str,
        host: &str,
    ) -> Result<Self, String> {
        let key_id = ulid::Ulid::new().to_string().to_lowercase();
        let mut salt = [0u8; 16];
        aws_lc_rs::rand::fill(&mut salt).map_err(|_| "the system random source failed")?;
        let kek = derive(passphrase, &salt, settings)?;
        let wrapped = seal_with(&aead_key(&kek), &context(&key_id), master.raw())?;
        Ok(Self {
            version: 1,
            key_id,
            config_id: config_id.to_string(),
            created_at: chrono::Utc::now().to_rfc3339(),
            host: host.to_string(),
            kdf: "argon2id".to_string(),
            kdf_settings: settings,
            salt: hex::encode(salt),
            wrapped: hex::encode(wrapped),
        })
    }

    /// Unwraps the master key with `passphrase`. Takes as long as Argon2id's cost: call it off
    /// the async threads.
    ///
    /// # Errors
    /// [`UnwrapError::WrongPassphrase`] when it does not open.
    pub fn unwrap_master(&self, passphrase: &Passphrase) -> Result<MasterKey, UnwrapError> {
        if self.kdf != "argon2id" {
            return Err(UnwrapError::Malformed(format!("unknown key derivation `{}`", self.kdf)));
        }
        let salt =
            hex::decode(&self.salt).map_err(|error| UnwrapError::Malformed(error.to_string()))?;
        let wrapped = hex::decode(&self.wrapped)
            .map_err(|error| UnwrapError::Malformed(error.to_string()))?;
        let kek = derive(passphrase, &salt, self.kdf_settings).map_err(UnwrapError::Malformed)?;
        let raw = open_with(&aead_key(&kek), &context(&self.key_id), &wrapped)
            .map_err(|_| UnwrapError::WrongPassphrase)?;
        let raw: [u8; 32] = raw
            .try_into()
            .map_err(|_| UnwrapError::Malformed("the wrapped key is not 32 bytes".to_string()))?;
        Ok(MasterKey::from_raw(raw))
    }
}

fn context(key_id: &str) -> Vec<u8> {
    format!("bk key {key_id}").into_bytes()
}

fn derive(passphrase: &Passphrase, salt: &[u8], settings: KdfSettings) -> Result<[u8; 32], String> {
    let params = argon2::Params::new(
        settings.memory_kib,
        settings.iterations,
        settings.parallelism,
        Some(32),
    )
    .map_err(|error| format!("invalid Argon2id settings {settings:?}: {error}"))?;
    let argon = argon2::Argon2::new(argon2::Algorithm::Argon2id, argon2::Version::V0x13, params);
    let mut key = [0u8; 32];
    argon
        .hash_password_into(&passphrase.0, salt, &mut key)
        .map_err(|error| format!("Argon2id failed: {error}"))?;
    Ok(key)
}

/// Writes a key file, create-only (its name is unique).
///
/// # Errors
/// [`RepositoryError`] when the store fails.
pub async fn write_key(store: &dyn ObjectStore, file: &KeyFile) -> RepositoryResult<()> {
    let path = key_path(&file.key_id);
    let bytes = serde_json::to_vec_pretty(file).map_err(|error| RepositoryError::Corrupt {
        key: path.to_string(),
        reason: error.to_string(),
    })?;
    let options = PutOptions { mode: PutMode::Create, ..PutOptions::default() };
    store
        .put_opts(&path, PutPayload::from(bytes), options)
        .await
        .map_err(RepositoryError::store(path.to_string()))?;
    Ok(())
}

/// Every key file of the repository.
///
/// # Errors
/// [`RepositoryError`] when listing or reading fails, or a file is not a key file.
pub async fn list_keys(store: &dyn ObjectStore) -> RepositoryResult<Vec<KeyFile>> {
    let paths = super::list_paths(store, KEYS_DIR).await?;
    read_key_files(store, paths).await
}

/// The key files at `paths`, listed earlier, skipping those removed since.
async fn read_key_files(
    store: &dyn ObjectStore,
    paths: Vec<Path>,
) -> RepositoryResult<Vec<KeyFile>> {
    let mut keys = Vec::with_capacity(paths.len());
    for path in paths {
        let bytes = match super::metadata::read_all(store, &path).await {
            Ok(bytes) => bytes,
            // Removed since the listing (`repo key remove`, or a worker that lost an
            // initialisation race removing its own): it no longer exists.
            Err(RepositoryError::Store {
                source: object_store::Error::NotFound { .. }, ..
            }) => continue,
            Err(error) => return Err(error),
        };
        let file: KeyFile =
            serde_json::from_slice(&bytes).map_err(|error| RepositoryError::Corrupt {
                key: path.to_string(),
                reason: format!("not a key file: {error}"),
            })?;
        keys.push(file);
    }
    Ok(keys)
}

/// Deletes key file `key_id`.
///
/// # Errors
/// [`RepositoryError`] when the store fails.
pub async fn remove_key(store: &dyn ObjectStore, key_id: &str) -> RepositoryResult<()> {
    let path: Path = key_path(key_id);
    store.delete(&path).await.map_err(RepositoryError::store(path.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    const FAST: KdfSettings = KdfSettings { memory_kib: 64, iterations: 1, parallelism: 1 };

    #[test]
    fn test_a_key_file_opens_with_its_passphrase_only() {
        let master = MasterKey::generate().unwrap();
        let passphrase = Passphrase(b"correct horse".to_vec());
        let file = KeyFile::wrap(&master, &passphrase, FAST, "config-1", "host").unwrap();
        assert!(!file.wrapped.contains(&hex::encode(master.raw())), "stored in clear");
        let unwrapped = file.unwrap_master(&passphrase).unwrap();
        assert_eq!(unwrapped.raw(), master.raw());
        let wrong = file.unwrap_master(&Passphrase(b"battery staple".to_vec()));
        assert_eq!(wrong.err(), Some(UnwrapError::WrongPassphrase));
        let mut moved = file.clone();
        moved.key_id = "another".to_string();
        assert_eq!(moved.unwrap_master(&passphrase).err(), Some(UnwrapError::WrongPassphrase));
        let json = serde_json::to_string(&file).unwrap();
        assert!(!json.contains("correct horse"));
    }

    #[tokio::test]
    async fn test_a_key_file_removed_after_the_listing_is_skipped_not_an_error() {
        let store = object_store::memory::InMemory::new();
        let master = MasterKey::generate().unwrap();
        let passphrase = Passphrase(b"correct horse".to_vec());
        let file = KeyFile::wrap(&master, &passphrase, FAST, "config-1", "host").unwrap();
        let path = key_path(&file.key_id);
        store.put(&path, serde_json::to_vec(&file).unwrap().into()).await.unwrap();
        let removed = key_path("removed-by-another-worker");
        let keys = read_key_files(&store, vec![removed, path]).await.unwrap();
        assert_eq!(keys.len(), 1);
        assert_eq!(keys[0].key_id, file.key_id);
    }
}
