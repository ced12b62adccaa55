//! The worker's task runtime: what its tasks share (packers, the repository cache, the bounds
//! on objects, cores, memory and bandwidth) and how a task's context is made — its node store
//! (or the snapshot a backup copies from) and its repository, opened and unlocked. Apart from
//! the conversation with the coordinator ([`crate::conversation`]), which only asks for
//! contexts.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, Weak};

use bk_proto::model::{CopyPhase, RepositoryRef, TaskKind, TaskSpec};
use object_store::ObjectStore;
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;

use crate::config::WorkerConfig;
use crate::error::{RepositoryError, TaskError};
use crate::repository::buffers::ChunkMemory;
use crate::repository::cache::RepositoryCache;
use crate::repository::config::InitSettings;
use crate::repository::counting::{CountingStore, RequestCounts};
use crate::repository::open::{open, OpenRequest};
use crate::repository::opened::Repository;
use crate::repository::packer::Packer;
use crate::tasks::{ProgressCounters, TaskContext, WorkerResources};
use crate::throttle::Throttle;

/// The worker's packers, by repository URL and config id: weak, so a packer lives as long as
/// the tasks using it.
type Packers = Mutex<HashMap<(String, String), Weak<Packer>>>;

/// Makes task contexts over the worker's shared resources.
pub struct TaskRuntime {
    worker_id: String,
    resources: Arc<WorkerResources>,
    packers: Packers,
}

impl TaskRuntime {
    /// The runtime of a worker with `config`; `env` is the process environment (the standard
    /// object-store variables, passphrases).
    pub fn new(config: Arc<WorkerConfig>, env: Vec<(String, String)>) -> Self {
        let cores = std::thread::available_parallelism().map_or(2, std::num::NonZeroUsize::get);
        let worker_id = config.worker_id();
        let resources = WorkerResources {
            object_permits: Arc::new(Semaphore::new(config.max_concurrent_objects)),
            cpu: Arc::new(Semaphore::new(cores)),
            memory: ChunkMemory::default(),
            throttle: Arc::new(Throttle::new(config.max_bytes_per_second)),
            repositories: Arc::new(RepositoryCache::new(config.index_cache_dir(&env))),
            config,
            env,
        };
        Self { worker_id, resources: Arc::new(resources), packers: Mutex::default() }
    }

    /// Opens the task's stores and repository: what a task needs besides its spec.
    ///
    /// # Errors
    /// [`TaskError::Invalid`] when a store cannot be opened as configured; the repository's
    /// errors when it cannot be opened or unlocked.
    pub async fn context(
        &self,
        spec: TaskSpec,
        attempt: u32,
        progress: &Arc<ProgressCounters>,
        cancel: &CancellationToken,
    ) -> Result<TaskContext, TaskError> {
        let worker = &self.resources;
        let source = worker
            .open_node_store(writes_whole_files(&spec.kind))
            .map_err(|error| TaskError::Invalid(format!("node store: {error}")))?;
        let requests = Arc::new(RequestCounts::default());
        let (repository, uncounted) = self.open_repository(&spec.repository, &requests).await?;
        let packer = self.packer_for(&repository, uncounted);
        let mut context = TaskContext {
            spec,
            attempt,
            source,
            repository,
            packer,
            requests,
            progress: progress.clone(),
            cancel: cancel.clone(),
            worker: worker.clone(),
        };
        if context.spec.kind.reads_node_store() {
            if let Some(path) =
                crate::snapshot::source_for_job(&context, &worker.config.node).await?
            {
                context.source = open_snapshot(worker, &path)?;
            }
        }
        Ok(context)
    }

    /// Opens (creating it the first time) the task's repository with this worker's passphrase,
    /// counting the task's requests; also returns the store uncounted (for the packer, which
    /// counts each pack's PUT for the task that filled or flushed it).
    async fn open_repository(
        &self,
        reference: &RepositoryRef,
        requests: &Arc<RequestCounts>,
    ) -> Result<(Repository, Arc<dyn ObjectStore>), TaskError> {
        let config = &self.resources.config;
        let options = config
            .repositories
            .get(&reference.name)
            .map(|repository| repository.options.clone())
            .unwrap_or_default();
        let store = self.resources.open_store(&reference.url, &options, true).map_err(|error| {
            TaskError::Invalid(format!("repository `{}`: {error}", reference.name))
        })?;
        let counted: Arc<dyn ObjectStore> =
            Arc::new(CountingStore::new(store.clone(), requests.clone()));
        let passphrase =
            config.repository_passphrase(&reference.name, &self.resources.env).map_err(
                |reason| RepositoryError::Locked { repository: reference.name.clone(), reason },
            )?;
        let unencrypted = config.bench.unencrypted_blobs;
        let request = OpenRequest {
            name: &reference.name,
            url: &reference.url,
            pinned_config: reference.config_id.as_deref(),
            passphrase,
            init: InitSettings {
                chunk_size: reference.chunk_size,
                pack_size: reference.pack_size,
                compression_level: reference.compression_level,
                unencrypted_blobs: unencrypted,
            },
            kdf: config.key_derivation,
            host: &self.worker_id,
            allow_unencrypted: unencrypted,
        };
        Ok((open(counted, &request, &self.resources.repositories).await?, store))
    }

    /// The worker's packer for `repository`: shared by the tasks using it, made anew when none
    /// is alive (so a new task's store, with current credentials, uploads).
    fn packer_for(&self, repository: &Repository, store: Arc<dyn ObjectStore>) -> Arc<Packer> {
        let key = (repository.url.clone(), repository.config.config_id.clone());
        let mut packers = self.packers.lock().unwrap_or_else(|poison| poison.into_inner());
        packers.retain(|_, packer| packer.strong_count() > 0);
        if let Some(packer) = packers.get(&key).and_then(Weak::upgrade) {
            return packer;
        }
        let config = &repository.config;
        let packer = Arc::new(Packer::new(
            store,
            repository.key.clone(),
            config.pack_size,
            config.chunk_size,
        ));
        packers.insert(key, Arc::downgrade(&packer));
        packer
    }
}

/// The snapshot at `path` as the task's source store.
fn open_snapshot(
    worker: &WorkerResources,
    path: &std::path::Path,
) -> Result<Arc<dyn ObjectStore>, TaskError> {
    let url = url::Url::from_directory_path(path).map_err(|()| {
        TaskError::Invalid(format!("snapshot path `{}` is not absolute", path.display()))
    })?;
    worker
        .open_store(url.as_str(), &std::collections::BTreeMap::new(), false)
        .map_err(|error| TaskError::Invalid(format!("snapshot `{}`: {error}", path.display())))
}

/// Whether the task reads a store its database writes in whole files only: InfluxDB 3's (every
/// object written to `<key>#<n>` and renamed or linked into place), not a QuestDB root (whose
/// column files grow in place).
fn writes_whole_files(kind: &TaskKind) -> bool {
    match kind {
        TaskKind::CopyPrefix { phase, .. } => *phase != CopyPhase::Copy,
        TaskKind::CopyCatalog { .. }
        | TaskKind::CopyLicence { .. }
        | TaskKind::CheckNodeConsistency { .. } => true,
        _ => false,
    }
}
