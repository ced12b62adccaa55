//! Opening a repository: find its config, unlock its master key with the worker's passphrase,
//! and create the repository the first time.
//!
//! Initialisation must end with one repository even on stores that ignore create-only writes
//! (Garage). Nothing is ever overwritten: a new repository is a new key file and a new config
//! under unique names (`keys/<id>`, `config/<id>`). If two workers race, two configs exist; the
//! coordinator records the first one a task reports (it travels in every task report) and names
//! it in every later task, and a result from the loser is refused and its task run again with
//! the winner (`bk_coordinator::core::state`). Without a recorded config, the first by name is
//! used, so racers agree whenever they see each other's.

use std::sync::Arc;

use object_store::{ObjectStore, ObjectStoreExt};

use super::cache::RepositoryCache;
use super::config::{Cipher, InitSettings, RepositoryConfig};
use super::crypto::MasterKey;
use super::keys::{list_keys, write_key, KdfSettings, KeyFile, Passphrase, UnwrapError};
use super::layout::{config_path, CONFIG_DIR, FORMAT_1_FILE};
use super::metadata;
use super::opened::Repository;
use crate::error::{RepositoryError, RepositoryResult};

/// What opening needs.
pub struct OpenRequest<'a> {
    /// The repository's name.
    pub name: &'a str,
    /// Its URL.
    pub url: &'a str,
    /// The config the coordinator recorded, if it has one.
    pub pinned_config: Option<&'a str>,
    /// The worker's passphrase for it (`None`: the worker has none configured).
    pub passphrase: Option<Passphrase>,
    /// What a new repository is made with.
    pub init: InitSettings,
    /// Argon2id's cost for a key this worker makes.
    pub kdf: KdfSettings,
    /// This worker's name, recorded in key files it makes.
    pub host: &'a str,
    /// Benchmarks only: whether an unencrypted repository may be opened.
    pub allow_unencrypted: bool,
}

/// Opens the repository at `store`, creating it when it has no config.
///
/// # Errors
/// [`RepositoryError::Locked`] without a passphrase or with one no key file takes;
/// [`RepositoryError::UnsupportedFormat`] for a format-1 repository; store errors.
pub async fn open(
    store: Arc<dyn ObjectStore>,
    request: &OpenRequest<'_>,
    cache: &RepositoryCache,
) -> RepositoryResult<Repository> {
    let locked =
        |reason: String| RepositoryError::Locked { repository: request.name.to_string(), reason };
    let passphrase = request.passphrase.clone().ok_or_else(|| {
        locked(format!(
            "this worker has no passphrase for it: set `password_file` under [repositories.{}] in its config (or \
             BK_REPOSITORY_PASSWORD_{}, or a default `repository_password_file` / BK_REPOSITORY_PASSWORD). The \
             passphrase stays with the workers; the coordinator never holds it",
            request.name,
            env_suffix(request.name)
        ))
    })?;
    let opening = Opening { store: store.clone(), request, passphrase, cache };
    if let Some(pinned) = request.pinned_config {
        if let Some(repository) = opening.cached(pinned).await {
            return Ok(repository);
        }
    }
    refuse_format_1(store.as_ref(), request.url).await?;
    let mut config_ids = list_config_ids(store.as_ref()).await?;
    if config_ids.is_empty() && request.pinned_config.is_none() {
        let mut made = cache.initialising.lock().await;
        config_ids = list_config_ids(store.as_ref()).await?;
        if config_ids.is_empty() {
            let config_id = opening.initialise().await?;
            made.push((request.url.to_string(), config_id));
            config_ids = list_config_ids(store.as_ref()).await?;
        }
    }
    if let Some(pinned) = request.pinned_config {
        opening.remove_lost_race(pinned, &config_ids).await?;
    }
    let config_id = match request.pinned_config {
        Some(pinned) if config_ids.iter().any(|id| id == pinned) => pinned.to_string(),
        Some(pinned) => {
            return Err(RepositoryError::Corrupt {
                key: config_path(pinned).to_string(),
                reason: format!(
                    "the config the coordinator recorded for repository `{}` is not at `{}`: the repository was \
                     deleted, replaced, or this worker points at another store",
                    request.name, request.url
                ),
            })
        }
        None => config_ids.first().cloned().ok_or_else(|| RepositoryError::Corrupt {
            key: CONFIG_DIR.to_string(),
            reason: "no config after initialising".to_string(),
        })?,
    };
    let (key, key_id) = opening.unlock(&config_id).await?;
    let config: RepositoryConfig =
        metadata::read_json(store.as_ref(), &key, &config_path(&config_id)).await?;
    cache
        .configs
        .lock()
        .unwrap_or_else(|poison| poison.into_inner())
        .insert((request.url.to_string(), config_id.clone()), Arc::new(config.clone()));
    if config.format != super::config::REPOSITORY_FORMAT {
        return Err(RepositoryError::UnsupportedFormat {
            url: request.url.to_string(),
            format: config.format,
        });
    }
    if config.cipher == Cipher::BenchmarkOnlyPlaintext && !request.allow_unencrypted {
        return Err(locked(
            "it was created by a benchmark with unencrypted blobs (BK_BENCH_UNENCRYPTED_BLOBS=1): bk opens it only \
             with that switch set"
                .to_string(),
        ));
    }
    Ok(Repository {
        name: request.name.to_string(),
        url: request.url.to_string(),
        store,
        key,
        config: Arc::new(config),
        key_id,
    })
}

/// `BK_REPOSITORY_PASSWORD_<NAME>`'s suffix for a repository name.
pub fn env_suffix(name: &str) -> String {
    name.chars()
        .map(|c| if c.is_ascii_alphanumeric() { c.to_ascii_uppercase() } else { '_' })
        .collect()
}

async fn refuse_format_1(store: &dyn ObjectStore, url: &str) -> RepositoryResult<()> {
    match store.head(&object_store::path::Path::from(FORMAT_1_FILE)).await {
        Ok(_) => Err(RepositoryError::UnsupportedFormat { url: url.to_string(), format: 1 }),
        Err(object_store::Error::NotFound { .. }) => Ok(()),
        Err(error) => Err(RepositoryError::store(FORMAT_1_FILE)(error)),
    }
}

async fn list_config_ids(store: &dyn ObjectStore) -> RepositoryResult<Vec<String>> {
    let mut ids: Vec<String> = super::list_paths(store, CONFIG_DIR)
        .await?
        .into_iter()
        .filter_map(|path| path.filename().map(str::to_string))
        .collect();
    ids.sort();
    Ok(ids)
}

async fn list_keys_of(store: &dyn ObjectStore, config_id: &str) -> RepositoryResult<Vec<KeyFile>> {
    Ok(list_keys(store).await?.into_iter().filter(|file| file.config_id == config_id).collect())
}

/// One opening of a repository: the store, what was asked, the worker's passphrase and cache.
struct Opening<'a> {
    store: Arc<dyn ObjectStore>,
    request: &'a OpenRequest<'a>,
    passphrase: Passphrase,
    cache: &'a RepositoryCache,
}

impl Opening<'_> {
    /// The repository as this worker opened it before, when the coordinator names that config and
    /// the passphrase is the one that unlocked it: no request to the store (a task's open costs
    /// nothing once its worker has the repository open). Not while this worker holds a config it
    /// made that lost an initialisation race: that one must go first.
    async fn cached(&self, pinned: &str) -> Option<Repository> {
        let Opening { store, request, passphrase, cache } = self;
        let key = (request.url.to_string(), pinned.to_string());
        let lost_a_race = cache
            .initialising
            .lock()
            .await
            .iter()
            .any(|(url, id)| url == request.url && id != pinned);
        if lost_a_race {
            return None; // the slow path removes the config this worker made
        }
        let config =
            cache.configs.lock().unwrap_or_else(|poison| poison.into_inner()).get(&key).cloned()?;
        let (fingerprint, master, key_id) = cache.unlocked.lock().await.get(&key).cloned()?;
        (fingerprint == passphrase.fingerprint()).then(|| Repository {
            name: request.name.to_string(),
            url: request.url.to_string(),
            store: store.clone(),
            key: master,
            config,
            key_id,
        })
    }

    /// Removes the config (and its key files) this worker made when the coordinator recorded
    /// another: it lost an initialisation race. Nothing but its own first task used it, and that
    /// task's result was refused; its packs, in no index, go at the next prune.
    async fn remove_lost_race(&self, pinned: &str, config_ids: &[String]) -> RepositoryResult<()> {
        let Opening { request, cache, .. } = self;
        let store = self.store.as_ref();
        let mut made = cache.initialising.lock().await;
        let lost: Vec<String> = made
            .iter()
            .filter(|(url, id)| url == request.url && id != pinned && config_ids.contains(id))
            .map(|(_, id)| id.clone())
            .collect();
        for config_id in &lost {
            let key_files: Vec<KeyFile> = list_keys_of(store, config_id).await?;
            for file in key_files {
                super::keys::remove_key(store, &file.key_id).await?;
            }
            let path = config_path(config_id);
            store.delete(&path).await.map_err(RepositoryError::store(path.to_string()))?;
            tracing::warn!(
                repository = %request.name, lost = %config_id, kept = %pinned,
                "another worker initialised the repository at the same time and the coordinator recorded its config: removed this worker's"
            );
        }
        made.retain(|(url, id)| !(url == request.url && lost.contains(id)));
        Ok(())
    }

    /// A new master key, its first key file, then the config: a config is written last, so a
    /// config always has a key. Returns the config's id. The new key is kept unlocked: opening
    /// the repository just made does not run Argon2id a second time.
    async fn initialise(&self) -> RepositoryResult<String> {
        let Opening { request, passphrase, cache, .. } = self;
        let store = self.store.as_ref();
        let failed = |reason: String| RepositoryError::Corrupt { key: CONFIG_DIR.into(), reason };
        let master = Arc::new(MasterKey::generate().map_err(failed)?);
        let config_id = ulid::Ulid::new().to_string().to_lowercase();
        let (wrap_master, wrap_passphrase, settings, host, id) = (
            master.clone(),
            passphrase.clone(),
            request.kdf,
            request.host.to_string(),
            config_id.clone(),
        );
        let key_file = tokio::task::spawn_blocking(move || {
            KeyFile::wrap(&wrap_master, &wrap_passphrase, settings, &id, &host)
        })
        .await
        .map_err(|error| {
            // The derivation thread panicked or the runtime is stopping: nothing is wrong with the
            // repository, and another attempt may succeed.
            RepositoryError::WriteFailed(format!(
                "deriving the passphrase key was interrupted: {error}"
            ))
        })?
        .map_err(failed)?;
        write_key(store, &key_file).await?;
        let config = RepositoryConfig::new(config_id.clone(), request.init);
        let json = serde_json::to_vec(&config).map_err(|error| failed(error.to_string()))?;
        metadata::create_sealed(store, &master, &config_path(&config_id), &json).await?;
        let unlocked = (passphrase.fingerprint(), master, key_file.key_id.clone());
        cache.unlocked.lock().await.insert((request.url.to_string(), config_id.clone()), unlocked);
        tracing::info!(repository = %request.name, %config_id, "repository initialised");
        Ok(config_id)
    }

    /// The master key of `config_id`, from the cache while the passphrase is unchanged, else
    /// unwrapped from the first key file the passphrase opens.
    async fn unlock(&self, config_id: &str) -> RepositoryResult<(Arc<MasterKey>, String)> {
        let Opening { store, request, passphrase, cache } = self;
        let cache_key = (request.url.to_string(), config_id.to_string());
        let fingerprint = passphrase.fingerprint();
        let mut unlocked = cache.unlocked.lock().await;
        if let Some((known, key, key_id)) = unlocked.get(&cache_key) {
            if *known == fingerprint {
                return Ok((key.clone(), key_id.clone()));
            }
        }
        let candidates: Vec<KeyFile> = list_keys(store.as_ref())
            .await?
            .into_iter()
            .filter(|file| file.config_id == config_id)
            .collect();
        let num_candidates = candidates.len();
        for file in candidates {
            let trial = passphrase.clone();
            let key_id = file.key_id.clone();
            let opened = tokio::task::spawn_blocking(move || file.unwrap_master(&trial))
                .await
                .map_err(|error| RepositoryError::WriteFailed(error.to_string()))?;
            match opened {
                Ok(master) => {
                    let master = Arc::new(master);
                    unlocked.insert(cache_key, (fingerprint, master.clone(), key_id.clone()));
                    return Ok((master, key_id));
                }
                Err(UnwrapError::WrongPassphrase) => continue,
                Err(UnwrapError::Malformed(reason)) => {
                    tracing::warn!(%key_id, %reason, "skipping a malformed key file")
                }
            }
        }
        Err(RepositoryError::Locked {
            repository: request.name.to_string(),
            reason: format!(
                "the passphrase this worker has does not open any of its {num_candidates} key(s): check `password_file` \
                 under [repositories.{}] (or BK_REPOSITORY_PASSWORD_{}); `bkctl repo key list {}` lists the keys",
                request.name,
                env_suffix(request.name),
                request.name
            ),
        })
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use futures::FutureExt;
    use object_store::memory::InMemory;

    use super::super::hooked_store::HookedStore;
    use super::*;
    use crate::repository::index::IndexEntry;
    use object_store::ObjectStoreExt;

    /// A store whose first two config writes wait for each other: whatever the scheduler does,
    /// neither racer's config is stored before both have listed `config/` (both listings come
    /// before a racer's own write) and found it empty, as in a race.
    fn racing_store(inner: Arc<InMemory>) -> HookedStore {
        let barrier = Arc::new(tokio::sync::Barrier::new(2));
        let writes = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        HookedStore {
            inner,
            before_put: Some(Arc::new(move |location| {
                let is_config = location.is_some_and(|location| {
                    location.prefix_matches(&object_store::path::Path::from(CONFIG_DIR))
                });
                let first_two =
                    is_config && writes.fetch_add(1, std::sync::atomic::Ordering::SeqCst) < 2;
                let barrier = barrier.clone();
                async move {
                    if first_two {
                        barrier.wait().await; // both racers have listed before either writes
                    }
                }
                .boxed()
            })),
        }
    }

    fn request<'a>(pinned: Option<&'a str>, host: &'a str) -> OpenRequest<'a> {
        super::super::test_support::open_request(pinned, host, 1 << 20)
    }

    #[tokio::test]
    async fn test_two_workers_creating_a_repository_at_once_end_with_one() {
        let inner = Arc::new(InMemory::new());
        let store: Arc<dyn ObjectStore> = Arc::new(racing_store(inner.clone()));
        let (first_worker, second_worker) =
            (RepositoryCache::default(), RepositoryCache::default());
        let (request_a, request_b) = (request(None, "a"), request(None, "b"));
        let (first, second) = tokio::join!(
            open(store.clone(), &request_a, &first_worker),
            open(store.clone(), &request_b, &second_worker),
        );
        let (first, second) = (first.unwrap(), second.unwrap());
        let configs = list_config_ids(store.as_ref()).await.unwrap();
        assert_eq!(configs.len(), 2, "both created a config: the race happened");
        // The coordinator records the config of the first report (say the first worker's), and
        // names it in every later task: the worker that made the other removes it.
        let recorded = first.config.config_id.clone();
        assert!(configs.contains(&second.config.config_id));
        let pinned = request(Some(&recorded), "b");
        for worker in [&first_worker, &second_worker] {
            let reopened = open(store.clone(), &pinned, worker).await.unwrap();
            assert_eq!(reopened.config.config_id, recorded);
        }
        assert_eq!(list_config_ids(store.as_ref()).await.unwrap(), std::slice::from_ref(&recorded));
        let keys = list_keys(store.as_ref()).await.unwrap();
        assert_eq!(keys.len(), 1);
        assert_eq!(keys[0].config_id, recorded);

        // The losing worker's first attempt left a progress record sealed with the other
        // config's key; the re-run under the recorded config does not reuse it, and does not
        // fail on it.
        let task_id: bk_proto::ids::TaskId = "01M8A8K5M4V56XN1S5AM6WRNAA/p0/t1".parse().unwrap();
        let stale = crate::repository::manifest::ProgressRecord::default();
        let key = crate::repository::layout::progress_key(task_id, 1);
        super::super::metadata::write_json(store.as_ref(), &second.key, &key, &stale)
            .await
            .unwrap();
        let rerun = open(store.clone(), &pinned, &second_worker).await.unwrap();
        let earlier = crate::repository::staging::read_earlier(&rerun, task_id, 2).await.unwrap();
        assert!(earlier.runs.is_empty() && earlier.blobs.is_empty());
    }

    fn located(byte: u8, pack: u8) -> IndexEntry {
        use crate::repository::pack::{PackEntry, PackId};
        let id = crate::repository::crypto::BlobId([byte; 32]);
        IndexEntry {
            pack: PackId([pack; 16]),
            entry: PackEntry { id, offset: u64::from(byte), length: 1, raw_length: 1, flags: 0 },
        }
    }

    #[tokio::test]
    async fn test_a_worker_closes_the_local_index_of_a_repository_nothing_reads() {
        use crate::repository::index::write_index_files;
        let dir = tempfile::tempdir().unwrap();
        let cache = RepositoryCache::new(Some(dir.path().to_path_buf()));
        let (first_store, second_store): (Arc<dyn ObjectStore>, Arc<dyn ObjectStore>) =
            (Arc::new(InMemory::new()), Arc::new(InMemory::new()));
        let first = open(first_store.clone(), &request(None, "a"), &cache).await.unwrap();
        let second = open(second_store, &request(None, "a"), &cache).await.unwrap();
        write_index_files(first_store.as_ref(), &first.key, "node-n1", "b1", &[located(1, 1)])
            .await
            .unwrap();
        let partitions = ["node-n1".to_string()];
        let reading_first = cache.index(&first, &partitions).await.unwrap();
        let _second_view = cache.index(&second, &partitions).await.unwrap();
        assert_eq!(cache.open_indexes(), 2, "a view still reads the first repository's index");

        drop(reading_first);
        let _second_view = cache.index(&second, &partitions).await.unwrap();
        assert_eq!(cache.open_indexes(), 1, "nothing reads the first one: closed");
        // Opened again, it still holds what it imported.
        let view = cache.index(&first, &partitions).await.unwrap();
        assert!(view.contains(&located(1, 1).entry.id));
        assert_eq!(cache.open_indexes(), 2, "the second one is still read");
    }

    #[tokio::test]
    async fn test_index_lookups_follow_the_repository_across_a_prune_and_a_restart() {
        use crate::repository::index::write_index_files;
        let store: Arc<dyn ObjectStore> = Arc::new(InMemory::new());
        let dir = tempfile::tempdir().unwrap();
        let cache = RepositoryCache::new(Some(dir.path().to_path_buf()));
        let repository = open(store.clone(), &request(None, "a"), &cache).await.unwrap();
        let key = repository.key.clone();
        let partitions = ["node-n1".to_string(), "node-n2".to_string()];
        // Two backups' index files in node n1's partition, one in n2's.
        write_index_files(store.as_ref(), &key, "node-n1", "b1", &[located(1, 1), located(2, 1)])
            .await
            .unwrap();
        write_index_files(store.as_ref(), &key, "node-n1", "b2", &[located(3, 2)]).await.unwrap();
        write_index_files(store.as_ref(), &key, "node-n2", "b1", &[located(9, 1)]).await.unwrap();
        let view = cache.index(&repository, &partitions[..1]).await.unwrap();
        assert_eq!(
            view.get(&located(3, 2).entry.id),
            Some((located(3, 2).pack, located(3, 2).entry))
        );
        assert!(!view.contains(&located(9, 1).entry.id), "n2's partition was not asked for");
        let both = cache.index(&repository, &partitions).await.unwrap();
        assert!(both.contains(&located(9, 1).entry.id));

        // A restarted worker keeps what it imported: its partition is not read again, even
        // where the repository's copy is now damaged (verify, which imports anew, finds that).
        let damaged = crate::repository::index::index_path("node-n1", "b1-0000");
        store.put(&damaged, object_store::PutPayload::from_static(b"garbage")).await.unwrap();
        drop((view, both, cache));
        let cache = RepositoryCache::new(Some(dir.path().to_path_buf()));
        let repository = open(store.clone(), &request(None, "a"), &cache).await.unwrap();
        let view = cache.index(&repository, &partitions[..1]).await.unwrap();
        assert!(view.contains(&located(1, 1).entry.id) && view.unreadable().is_empty());
        let anew = cache.index_anew(&repository, &partitions[..1]).await.unwrap();
        assert!(!anew.contains(&located(1, 1).entry.id));
        assert!(anew.unreadable()[0].contains("index/node-n1/b1-0000"), "{:?}", anew.unreadable());
        assert!(anew.why_missing().contains("do not open"));

        // A prune rewrites the partition: blob 1 gone, blob 3 moved to pack 5. Every file the
        // cache had imported is gone, so it imports the partition anew.
        for name in ["b1-0000", "b2-0000"] {
            store.delete(&crate::repository::index::index_path("node-n1", name)).await.unwrap();
        }
        write_index_files(
            store.as_ref(),
            &key,
            "node-n1",
            "prune-1",
            &[located(2, 1), located(3, 5)],
        )
        .await
        .unwrap();
        let pruned = cache.index(&repository, &partitions[..1]).await.unwrap();
        assert!(!pruned.contains(&located(1, 1).entry.id), "a pruned blob is still found");
        assert_eq!(
            pruned.get(&located(3, 5).entry.id).map(|(pack, _)| pack),
            Some(located(3, 5).pack)
        );
        assert!(pruned.contains(&located(2, 1).entry.id));
        assert!(anew.contains(&located(3, 2).entry.id), "an older view keeps its moment");
        // Files this worker writes itself are recorded, never read back.
        cache.record_index_file(&repository, "node-n1", "mine", vec![located(7, 7)]).await.unwrap();
        let mine = crate::repository::index::index_path("node-n1", "mine");
        store
            .put(&mine, object_store::PutPayload::from_static(b"not what was recorded"))
            .await
            .unwrap();
        let view = cache.index(&repository, &partitions[..1]).await.unwrap();
        assert!(view.contains(&located(7, 7).entry.id) && view.unreadable().is_empty());
    }
}
