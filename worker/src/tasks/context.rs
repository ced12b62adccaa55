//! What a running task is given: its spec, the node's store, the open repository and the
//! worker-wide bounds it shares with the worker's other tasks, and the counters its progress
//! is read from. Apart from the dispatcher ([`super::run_task`]), so the task modules that take
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

/// Everything a task needs.
pub struct TaskContext {
    /// The task.
    pub spec: TaskSpec,
    /// Its attempt.
    pub attempt: u32,
    /// The node's store.
    pub source: Arc<dyn ObjectStore>,
    /// The repository, open (its key unlocked).
    pub repository: Repository,
    /// The worker's repository cache (the index).
    pub repositories: Arc<RepositoryCache>,
    /// The worker's packer for this repository, shared with its other tasks.
    pub packer: Arc<Packer>,
    /// Requests this task made to the repository.
    pub requests: Arc<RequestCounts>,
    /// Progress counters.
    pub progress: Arc<ProgressCounters>,
    /// Worker-wide bound on objects being read (memory: permits × 2 chunks, plus packs).
    pub object_permits: Arc<Semaphore>,
    /// How many objects one task keeps in flight (at most the worker-wide bound).
    pub max_objects_in_flight: usize,
    /// Worker-wide bound on blobs being sealed at once (the cores).
    pub cpu: Arc<Semaphore>,
    /// Worker-wide budget of bytes in chunk buffers (reads, sealed copies, restored ranges).
    pub memory: crate::repository::buffers::ChunkMemory,
    /// The worker-wide bytes-per-second cap.
    pub throttle: Arc<crate::throttle::Throttle>,
    /// Cancelled when the coordinator takes the task back or the worker stops.
    pub cancel: CancellationToken,
    /// The node's store URL (restores compare targets with it).
    pub store_url: String,
    /// The node's store options, used to open restore targets.
    pub store_options: std::collections::BTreeMap<String, String>,
    /// The process environment (standard object-store variables).
    pub env: Vec<(String, String)>,
    /// How cloud-store requests are retried.
    pub retry: crate::store::RetrySettings,
    /// How to talk to a QuestDB server next to this worker.
    pub questdb: crate::config::QuestDbConfig,
    /// Whether copies check the databases' formats ([`crate::formats`]); off only to measure
    /// what the checks cost (`BK_SKIP_FORMAT_CHECKS=1`, for benchmarks).
    pub check_formats: bool,
    /// The worker's config (passphrases for key tasks, Argon2id cost).
    pub config: Arc<crate::config::WorkerConfig>,
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
            index: self.repositories.index(&self.repository, &[partition.to_string()]).await?,
            packer: self.packer.clone(),
            cpu: self.cpu.clone(),
            throttle: self.throttle.clone(),
            requests: self.requests.clone(),
            memory: self.memory.clone(),
        })
    }
}
