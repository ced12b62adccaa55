//! What a running task is given: its spec, the node's store, the open repository, the counters
//! its progress is read from, and the [`WorkerResources`] it shares with the worker's other
//! tasks. Apart from the dispatcher ([`super::run_task`]), so the task modules that take
//! a context do not import the module that imports them.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use bk_proto::model::TaskSpec;
use object_store::ObjectStore;
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;

use crate::error::TaskError;
use crate::repository::cache::RepositoryCache;
use crate::repository::counting::RequestCounts;
use crate::repository::opened::Repository;
use crate::repository::packer::Packer;
use crate::repository::writer::BlobWriter;

/// Counters a running task updates and the progress reporter reads.
#[derive(Debug, Default)]
pub struct ProgressCounters {
    /// Objects done (copied or reused).
    pub objects_done: AtomicU64,
    /// Bytes of those objects.
    pub bytes_done: AtomicU64,
    /// Objects listed so far.
    pub objects_total: AtomicU64,
    /// Bytes of those.
    pub bytes_total: AtomicU64,
}

impl ProgressCounters {
    /// Counts a listed object.
    pub fn listed(&self, size: u64) {
        self.objects_total.fetch_add(1, Ordering::Relaxed);
        self.bytes_total.fetch_add(size, Ordering::Relaxed);
    }

    /// Counts a finished object.
    pub fn done(&self, size: u64) {
        self.objects_done.fetch_add(1, Ordering::Relaxed);
        self.bytes_done.fetch_add(size, Ordering::Relaxed);
    }
}

/// What every task of the worker shares: its config and environment, and the worker-wide
/// bounds (objects in flight, cores, chunk memory, bandwidth) and repository cache. Built once
/// per worker ([`crate::runtime::TaskRuntime`]).
pub struct WorkerResources {
    /// The worker's config (store, repositories, QuestDB, bench switches).
    pub config: Arc<crate::config::WorkerConfig>,
    /// The process environment, captured once (the standard object-store variables).
    pub env: Vec<(String, String)>,
    /// Bound on objects being read across the worker (memory: permits × 2 chunks, plus packs).
    pub object_permits: Arc<Semaphore>,
    /// Bound on blobs being sealed at once (the cores).
    pub cpu: Arc<Semaphore>,
    /// Budget of bytes in chunk buffers (reads, sealed copies, restored ranges).
    pub memory: crate::repository::buffers::ChunkMemory,
    /// The bytes-per-second cap.
    pub throttle: Arc<crate::throttle::Throttle>,
    /// Unlocked repository keys and local indexes, kept between tasks.
    pub repositories: Arc<RepositoryCache>,
}

impl WorkerResources {
    /// One of the worker's object slots, held while an object is read or restored.
    ///
    /// # Errors
    /// [`TaskError::Abandoned`] when the worker is stopping.
    pub async fn object_permit(&self) -> Result<tokio::sync::SemaphorePermit<'_>, TaskError> {
        self.object_permits
            .acquire()
            .await
            .map_err(|_| TaskError::Abandoned("worker stopping".to_string()))
    }

    /// How many objects one task keeps in flight (at most the worker-wide bound).
    pub fn max_objects_in_flight(&self) -> usize {
        self.config.max_concurrent_objects
    }

    /// Opens a store the worker reads or writes (restore targets, snapshots) with its
    /// environment and retry settings; `options` as a store's in the config.
    ///
    /// # Errors
    /// What is wrong with the URL or the options.
    pub fn open_store(
        &self,
        url: &str,
        options: &std::collections::BTreeMap<String, String>,
        create: bool,
    ) -> Result<Arc<dyn ObjectStore>, crate::store::StoreOpenError> {
        crate::store::open_store(url, options, &self.env, &self.config.retry, create)
    }

    /// Opens the node's store, as tasks read it: a local one keeps its listings' memos in the
    /// worker's cache (`<cache_dir>/listings`), so incrementals skip unchanged directories;
    /// `whole_file_writes`: the database writes whole files only (InfluxDB 3's object store),
    /// so unchanged directories' files are not `stat`ed either.
    ///
    /// # Errors
    /// What is wrong with the URL or the options.
    pub fn open_node_store(
        &self,
        whole_file_writes: bool,
    ) -> Result<Arc<dyn ObjectStore>, crate::store::StoreOpenError> {
        let store = &self.config.store;
        let memos = match self.config.bench.no_listing_memo {
            true => None,
            false => self.config.index_cache_dir(&self.env).map(|dir| dir.join("listings")),
        };
        crate::store::open_source_store(
            &store.url,
            &store.options,
            &self.env,
            &self.config.retry,
            memos.as_deref(),
            whole_file_writes,
        )
    }
}

/// Everything a task needs: its own spec, stores, repository and counters, and the worker's
/// shared resources.
pub struct TaskContext {
    /// The task.
    pub spec: TaskSpec,
    /// Its attempt.
    pub attempt: u32,
    /// The node's store (or the snapshot the backup copies from).
    pub source: Arc<dyn ObjectStore>,
    /// The repository, open (its key unlocked).
    pub repository: Repository,
    /// The worker's packer for this repository, shared with its other tasks.
    pub packer: Arc<Packer>,
    /// Requests this task made to the repository.
    pub requests: Arc<RequestCounts>,
    /// Progress counters.
    pub progress: Arc<ProgressCounters>,
    /// Cancelled when the coordinator takes the task back or the worker stops.
    pub cancel: CancellationToken,
    /// What the worker's tasks share.
    pub worker: Arc<WorkerResources>,
}

impl TaskContext {
    /// What writing blobs of index partition `partition` needs, with the partition's index as
    /// of now.
    ///
    /// # Errors
    /// When the index cannot be brought up to date.
    pub async fn blob_writer(&self, partition: &str) -> Result<BlobWriter, TaskError> {
        Ok(BlobWriter {
            key: self.repository.key.clone(),
            config: self.repository.config.clone(),
            index: self
                .worker
                .repositories
                .index(&self.repository, &[partition.to_string()])
                .await?,
            packer: self.packer.clone(),
            cpu: self.worker.cpu.clone(),
            throttle: self.worker.throttle.clone(),
            requests: self.requests.clone(),
            memory: self.worker.memory.clone(),
        })
    }
}
