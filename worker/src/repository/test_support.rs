//! Repositories for unit tests: in memory, with a cheap key derivation.

use std::sync::Arc;

use object_store::memory::InMemory;
use object_store::ObjectStore;

use super::cache::RepositoryCache;
use super::config::InitSettings;
use super::keys::{KdfSettings, Passphrase};
use super::open::{open, OpenRequest};
use super::opened::Repository;

/// What opening (or creating) repository `r` asks, as worker `host`, with `chunk_size` for a
/// new one.
pub fn open_request<'a>(
    pinned: Option<&'a str>,
    host: &'a str,
    chunk_size: u64,
) -> OpenRequest<'a> {
    OpenRequest {
        name: "r",
        url: "memory:///r",
        pinned_config: pinned,
        passphrase: Some(Passphrase(b"shared passphrase".to_vec())),
        init: InitSettings {
            chunk_size,
            pack_size: 1 << 24,
            compression_level: 3,
            unencrypted_blobs: false,
        },
        kdf: KdfSettings { memory_kib: 64, iterations: 1, parallelism: 1 },
        host,
        allow_unencrypted: false,
    }
}

/// A new repository in memory with `chunk_size`, and the worker cache that opened it.
pub async fn memory_repository(chunk_size: u64) -> (Repository, RepositoryCache) {
    let store: Arc<dyn ObjectStore> = Arc::new(InMemory::new());
    let cache = RepositoryCache::default();
    let repository = match open(store, &open_request(None, "w", chunk_size), &cache).await {
        Ok(repository) => repository,
        Err(error) => panic!("an in-memory repository opens: {error}"),
    };
    (repository, cache)
}
