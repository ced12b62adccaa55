//! The repository's config: its identity and the parameters every writer must share, sealed.

use serde::{Deserialize, Serialize};

/// The repository format this binary reads and writes.
pub const REPOSITORY_FORMAT: u32 = 3;
/// Default pack size: 16 MiB.
pub const DEFAULT_PACK_SIZE: u64 = 16 << 20;
/// Default zstd level for blobs.
pub const DEFAULT_COMPRESSION_LEVEL: i32 = 3;

/// How blobs are sealed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Cipher {
    /// AES-256-GCM, a random nonce per blob, bound to the blob's id. Always, outside benchmarks.
    Aes256Gcm,
    /// Blobs stored unencrypted (still compressed and checked against their keyed id): only
    /// for measuring what encryption costs (`BK_BENCH_UNENCRYPTED_BLOBS=1` when the repository
    /// is created). Such a repository opens only with that switch set too.
    BenchmarkOnlyPlaintext,
}

/// What a repository is, fixed when it is created.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RepositoryConfig {
    /// [`REPOSITORY_FORMAT`].
    pub format: u32,
    /// The config's id (its name under `config/`).
    pub config_id: String,
    /// The repository's id, recorded in every manifest.
    pub repository_id: String,
    /// Objects are cut into blobs of at most this many bytes.
    pub chunk_size: u64,
    /// Packs are sealed once they hold this many bytes.
    pub pack_size: u64,
    /// zstd level for blobs (0: never compress).
    pub compression_level: i32,
    /// How blobs are sealed.
    pub cipher: Cipher,
    /// When it was created (RFC 3339).
    pub created_at: String,
}

/// What a new repository is created with (from the coordinator's repository record).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct InitSettings {
    /// Blob size.
    pub chunk_size: u64,
    /// Pack size.
    pub pack_size: u64,
    /// zstd level (0: off).
    pub compression_level: i32,
    /// Benchmarks only: leave blobs unencrypted.
    pub unencrypted_blobs: bool,
}

impl RepositoryConfig {
    /// A new config.
    pub fn new(config_id: String, settings: InitSettings) -> Self {
        Self {
            format: REPOSITORY_FORMAT,
            config_id,
            repository_id: ulid::Ulid::new().to_string(),
            chunk_size: settings.chunk_size,
            pack_size: settings.pack_size,
            compression_level: settings.compression_level,
            cipher: if settings.unencrypted_blobs {
                Cipher::BenchmarkOnlyPlaintext
            } else {
                Cipher::Aes256Gcm
            },
            created_at: chrono::Utc::now().to_rfc3339(),
        }
    }
}
