//! What a worker keeps per repository between tasks: unlocked master keys (Argon2id runs once
//! per worker and repository, not per task), configs, and the local index cache with the
//! partitions brought up to date from the repository's index files. [`super::open`] fills it.

use std::collections::{BTreeSet, HashMap};
use std::path::PathBuf;
use std::sync::Arc;

use super::config::RepositoryConfig;
use super::crypto::MasterKey;
use super::import_thread::on_import_thread;
use super::index::{index_path, list_index_files, read_index, IndexEntry};
use super::index_cache::{IndexView, LocalIndex};
use super::opened::Repository;
use crate::error::{RepositoryError, RepositoryResult};

/// An unlocked master key: the fingerprint of the passphrase that opened it, the key, and the
/// key file it came from.
pub(super) type Unlocked = ([u8; 32], Arc<MasterKey>, String);

/// A repository's local index, and the lock its refreshes take turns on.
struct IndexState {
    local: LocalIndex,
    /// Held while a task brings partitions up to date (an async mutex: held across the reads of
    /// index files), so concurrent tasks import a new file once.
    refresh: tokio::sync::Mutex<()>,
}

/// What a worker keeps per repository between tasks: unlocked keys and the local index.
#[derive(Default)]
pub struct RepositoryCache {
    /// Where local index caches live (`None`: in memory).
    cache_dir: Option<PathBuf>,
    /// Unlocked master keys by (URL, config id), with the passphrase's fingerprint and the key
    /// file that opened them. An async mutex, held while a key is unlocked (Argon2id takes a
    /// deliberate fraction of a second) so concurrent tasks unlock once.
    pub(super) unlocked: tokio::sync::Mutex<HashMap<(String, String), Unlocked>>,
    /// Local indexes by (URL, config id), opened on first use (a std mutex: held for a lookup).
    indexes: std::sync::Mutex<HashMap<(String, String), Arc<IndexState>>>,
    /// Configs by (URL, config id): immutable once written.
    pub(super) configs: std::sync::Mutex<HashMap<(String, String), Arc<RepositoryConfig>>>,
    /// Serialises initialisations on this worker (its concurrent tasks make one repository),
    /// and remembers the configs it made, by URL: if the coordinator recorded another (a race
    /// with another worker), this worker removes its own.
    pub(super) initialising: tokio::sync::Mutex<Vec<(String, String)>>,
}

impl RepositoryCache {
    /// A cache whose local indexes live under `cache_dir` (`None`: in memory, filled again by
    /// every worker start).
    pub fn new(cache_dir: Option<PathBuf>) -> Self {
        Self { cache_dir, ..Self::default() }
    }

    /// The local index of `repository`, opened if needed. On-disk indexes of other
    /// repositories that nothing uses are closed first: each keeps up to 16 MiB of pages, and a
    /// worker that has served many repositories (a new one per bench repetition, a retired one,
    /// a second copy) would otherwise keep all of them. A closing redb flushes its file, here
    /// under the lock and on the caller's thread; that is rare (a switch of repository) and it
    /// keeps a close and a reopen of the same file from overlapping (redb refuses a second open,
    /// and the cache would fall back to memory).
    fn local_index(&self, repository: &Repository) -> Arc<IndexState> {
        let key = (repository.url.clone(), repository.config.config_id.clone());
        let mut indexes = self.indexes.lock().unwrap_or_else(|poison| poison.into_inner());
        indexes.retain(|other, state| {
            *other == key || Arc::strong_count(state) > 1 || !state.local.is_idle_on_disk()
        });
        indexes
            .entry(key)
            .or_insert_with(|| {
                let local = match &self.cache_dir {
                    Some(dir) => {
                        let name = blake3::hash(
                            format!("{}\n{}", repository.url, repository.config.config_id)
                                .as_bytes(),
                        );
                        let file = format!("index-{}.redb", &name.to_hex()[..16]);
                        LocalIndex::open_or_in_memory(&dir.join(file))
                    }
                    None => LocalIndex::in_memory(),
                };
                Arc::new(IndexState { local, refresh: tokio::sync::Mutex::new(()) })
            })
            .clone()
    }

    /// The index of `partitions`, brought up to date with the repository: index files another
    /// process wrote since are imported, and a partition a prune rewrote is imported anew.
    ///
    /// # Errors
    /// [`RepositoryError`] when listing fails or the local cache does.
    pub async fn index(
        &self,
        repository: &Repository,
        partitions: &[String],
    ) -> RepositoryResult<IndexView> {
        self.index_with(repository, partitions, false).await
    }

    /// As [`RepositoryCache::index`], but every partition is imported anew from the
    /// repository's index files, trusting nothing cached: what `verify` sees is the repository.
    ///
    /// # Errors
    /// As [`RepositoryCache::index`].
    pub async fn index_anew(
        &self,
        repository: &Repository,
        partitions: &[String],
    ) -> RepositoryResult<IndexView> {
        self.index_with(repository, partitions, true).await
    }

    async fn index_with(
        &self,
        repository: &Repository,
        partitions: &[String],
        anew: bool,
    ) -> RepositoryResult<IndexView> {
        let state = self.local_index(repository);
        let _refreshing = state.refresh.lock().await;
        let mut unreadable = Vec::new();
        for partition in partitions {
            if anew {
                let (state, partition) = (state.clone(), partition.clone());
                blocking(move || state.local.clear(&partition)).await?;
            }
            unreadable.extend(refresh_partition(repository, &state, partition).await?);
        }
        let (state, partitions) = (state.clone(), partitions.to_vec());
        let view = blocking(move || state.local.view(&partitions)).await?;
        Ok(view.with_unreadable(unreadable))
    }

    /// How many local indexes are open.
    #[cfg(test)]
    pub fn open_indexes(&self) -> usize {
        self.indexes.lock().unwrap_or_else(|poison| poison.into_inner()).len()
    }

    /// Adds index file `name` of `partition`, which this worker just wrote with `entries`, to
    /// its local index: it is never read back.
    ///
    /// # Errors
    /// [`RepositoryError::LocalCache`] when the local cache fails.
    pub async fn record_index_file(
        &self,
        repository: &Repository,
        partition: &str,
        name: &str,
        entries: Vec<IndexEntry>,
    ) -> RepositoryResult<()> {
        let state = self.local_index(repository);
        let (partition, name) = (partition.to_string(), name.to_string());
        on_import_thread(move || state.local.import(&partition, &name, &entries)).await
    }
}

/// Imports the index files of `partition` the local index lacks; empties it first when a file
/// it had imported is gone (a prune rewrote the partition). Returns the files that did not open,
/// described (they are tried again next time).
async fn refresh_partition(
    repository: &Repository,
    state: &Arc<IndexState>,
    partition: &str,
) -> RepositoryResult<Vec<String>> {
    let listed: BTreeSet<String> =
        list_index_files(repository.store.as_ref(), partition).await?.into_iter().collect();
    let imported = {
        let (state, partition) = (state.clone(), partition.to_string());
        blocking(move || state.local.imported(&partition)).await?
    };
    if !imported.is_subset(&listed) {
        let (state, partition) = (state.clone(), partition.to_string());
        blocking(move || state.local.clear(&partition)).await?;
    }
    let imported_now = if imported.is_subset(&listed) { imported } else { BTreeSet::new() };
    let mut unreadable = Vec::new();
    for name in listed.difference(&imported_now) {
        let path = index_path(partition, name);
        let entries = match read_index(repository.store.as_ref(), &repository.key, &path).await {
            Ok(entries) => entries,
            // A file that does not open names nothing usable: its blobs count as not stored
            // (stored again if needed; verify reports the damage).
            Err(RepositoryError::Corrupt { key, reason }) => {
                tracing::warn!(%key, %reason, "an index file does not open: its blobs are not counted as stored");
                unreadable.push(format!("`{key}`: {reason}"));
                continue;
            }
            Err(error) => return Err(error),
        };
        let (state, partition, name) = (state.clone(), partition.to_string(), name.clone());
        on_import_thread(move || state.local.import(&partition, &name, &entries)).await?;
    }
    Ok(unreadable)
}

async fn blocking<T: Send + 'static>(
    work: impl FnOnce() -> RepositoryResult<T> + Send + 'static,
) -> RepositoryResult<T> {
    tokio::task::spawn_blocking(work).await.map_err(|error| {
        RepositoryError::LocalCache(format!("the local index cache's thread failed: {error}"))
    })?
}
