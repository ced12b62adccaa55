//! Storing an object: one pass over its bytes.
//!
//! Each chunk is read once, fed to the format check, hashed (keyed BLAKE3: its blob id) and, if
//! the repository does not hold that blob yet, compressed and sealed on the blocking pool while
//! the next chunk is read, then added to the worker's shared packer. Blobs the repository's
//! index or the packer already hold are neither sealed nor uploaded again. Memory per object in
//! flight: two chunks (the one read ahead and the one being sealed).

use std::sync::Arc;

use bytes::Bytes;
use tokio::sync::Semaphore;

use super::blob::{seal_blob, SealedBlob};
use super::buffers::CHUNKS;
use super::config::RepositoryConfig;
use super::crypto::{BlobId, MasterKey};
use super::index::IndexEntry;
use super::index_cache::IndexView;
use super::packer::{BlobHandle, Packer};
use super::source::ChunkSource;
use crate::error::RepositoryError;
use crate::formats::Validator;
use crate::throttle::Throttle;

/// A chunk's hold on the worker's chunk memory.
type Permit = tokio::sync::OwnedSemaphorePermit;

/// What writing blobs needs, shared by every object of a task.
#[derive(Clone)]
pub struct BlobWriter {
    /// The repository's key.
    pub key: Arc<MasterKey>,
    /// Its config (chunk size, compression, cipher).
    pub config: Arc<RepositoryConfig>,
    /// The index partition of the task's node, as of when the task started.
    pub index: IndexView,
    /// The worker's packer for this repository.
    pub packer: Arc<Packer>,
    /// Bounds sealing running at once to the cores.
    pub cpu: Arc<Semaphore>,
    /// The worker-wide read budget.
    pub throttle: Arc<Throttle>,
    /// The task's request counts (a pack it fills counts as its PUT).
    pub requests: Arc<super::counting::RequestCounts>,
    /// The worker-wide budget of bytes in chunk buffers.
    pub memory: super::buffers::ChunkMemory,
}

/// An object whose bytes were all read and whose new blobs are in packs, maybe not yet stored.
pub struct PendingObject {
    /// Bytes read.
    pub size: u64,
    /// Its blobs, in order: with the handle of the pack that holds it unless the committed
    /// index already did.
    blobs: Vec<(BlobId, Option<BlobHandle>)>,
    /// Plaintext bytes of blobs this object added to a pack.
    pub bytes_written: u64,
    /// Stored bytes of those blobs.
    pub bytes_stored: u64,
}

/// An object stored: what its entry and the attempt's index need.
#[derive(Debug)]
pub struct StoredObject {
    /// Bytes.
    pub size: u64,
    /// Its blobs, in order.
    pub blobs: Vec<BlobId>,
    /// Where its blobs the committed index does not list are.
    pub new_blobs: Vec<IndexEntry>,
    /// Plaintext bytes of blobs this object added.
    pub bytes_written: u64,
    /// Stored bytes of blobs this object added.
    pub bytes_stored: u64,
}

/// Why storing an object failed: reading the source, or writing the repository.
#[derive(Debug)]
pub enum StoreObjectError {
    /// The source failed.
    Read(object_store::Error),
    /// The repository failed.
    Write(RepositoryError),
}

enum Prepared {
    /// The committed index holds it.
    Known(BlobId),
    /// The packer holds it (another object added the same content).
    InPacker(BlobHandle),
    /// New: sealed, to add.
    Sealed(SealedBlob),
}

/// Reads `source` to its end into blobs, feeding `validator` every byte.
///
/// # Errors
/// [`StoreObjectError::Read`] when the source fails, [`StoreObjectError::Write`] when sealing
/// fails.
pub async fn read_object(
    writer: &BlobWriter,
    mut source: ChunkSource,
    mut validator: Option<&mut Validator>,
) -> Result<PendingObject, StoreObjectError> {
    let chunk_size = usize::try_from(writer.config.chunk_size).unwrap_or(usize::MAX);
    let mut object =
        PendingObject { size: 0, blobs: Vec::new(), bytes_written: 0, bytes_stored: 0 };
    let mut sealing: Option<(tokio::task::JoinHandle<Result<Prepared, String>>, Permit)> = None;
    loop {
        // A chunk holds its read buffer and its sealed copy: twice its size of the budget, from
        // before it is read until it is in a pack. While the previous chunk of this object is
        // still sealing, the next is read only if the budget has room now: an object never
        // waits for memory while holding some (four such objects would wait on each other).
        let expected = source
            .remaining()
            .map_or(chunk_size, |left| usize::try_from(left).unwrap_or(usize::MAX).min(chunk_size));
        let permit = match writer.memory.try_take(2 * expected) {
            Some(permit) => permit,
            None => {
                if let Some((previous, held)) = sealing.take() {
                    accept(writer, &mut object, previous).await?;
                    drop(held);
                }
                writer.memory.take(2 * expected).await.map_err(|reason| {
                    StoreObjectError::Write(RepositoryError::WriteFailed(reason))
                })?
            }
        };
        let next = source.next_chunk(chunk_size).await.map_err(StoreObjectError::Read)?;
        if let Some((previous, held)) = sealing.take() {
            accept(writer, &mut object, previous).await?;
            drop(held);
        }
        let Some(chunk) = next else { break };
        writer.throttle.acquire(chunk.len() as u64).await;
        if let Some(validator) = validator.as_deref_mut() {
            validator.update(&chunk);
        }
        object.size += chunk.len() as u64;
        sealing = Some((spawn_prepare(writer, chunk).await?, permit));
    }
    Ok(object)
}

async fn spawn_prepare(
    writer: &BlobWriter,
    chunk: Bytes,
) -> Result<tokio::task::JoinHandle<Result<Prepared, String>>, StoreObjectError> {
    let permit = writer.cpu.clone().acquire_owned().await.map_err(|_| {
        StoreObjectError::Write(RepositoryError::WriteFailed("the worker is stopping".into()))
    })?;
    let writer = writer.clone();
    // The sealed copy's buffer is allocated here, on a runtime thread (see `source`).
    let out = CHUNKS.take(chunk.len() + super::crypto::SEAL_OVERHEAD);
    Ok(tokio::task::spawn_blocking(move || {
        let _permit = permit;
        let id = writer.key.blob_id(&chunk);
        let prepared = if writer.index.contains(&id) {
            CHUNKS.give(out);
            Ok(Prepared::Known(id))
        } else if let Some(handle) = writer.packer.lookup(&id) {
            CHUNKS.give(out);
            Ok(Prepared::InPacker(handle))
        } else {
            seal_blob(&writer.key, &writer.config, id, &chunk, out).map(Prepared::Sealed)
        };
        CHUNKS.give_bytes(chunk); // Hashed and sealed: the read buffer serves the next read.
        prepared
    }))
}

async fn accept(
    writer: &BlobWriter,
    object: &mut PendingObject,
    sealing: tokio::task::JoinHandle<Result<Prepared, String>>,
) -> Result<(), StoreObjectError> {
    let failed = |reason: String| StoreObjectError::Write(RepositoryError::WriteFailed(reason));
    let prepared = sealing
        .await
        .map_err(|error| failed(format!("sealing a blob panicked: {error}")))?
        .map_err(failed)?;
    match prepared {
        Prepared::Known(id) => object.blobs.push((id, None)),
        Prepared::InPacker(handle) => object.blobs.push((handle.id(), Some(handle))),
        Prepared::Sealed(blob) => {
            let (raw, stored) = (u64::from(blob.raw_length), blob.bytes.len() as u64);
            let (handle, added) = writer.packer.add(blob, &writer.requests).await;
            if added {
                object.bytes_written += raw;
                object.bytes_stored += stored;
            }
            object.blobs.push((handle.id(), Some(handle)));
        }
    }
    Ok(())
}

impl PendingObject {
    /// Whether every blob is already stored (nothing to wait for).
    pub fn is_stored(&self) -> bool {
        self.blobs.iter().all(|(_, handle)| handle.is_none())
    }

    /// Waits until every pack holding one of its blobs is stored.
    ///
    /// # Errors
    /// [`StoreObjectError::Write`] naming the pack that failed.
    pub async fn stored(self) -> Result<StoredObject, StoreObjectError> {
        let mut new_blobs: Vec<IndexEntry> = Vec::new();
        let mut blobs = Vec::with_capacity(self.blobs.len());
        for (id, handle) in self.blobs {
            blobs.push(id);
            if let Some(handle) = handle {
                let entry = handle.stored().await.map_err(|reason| {
                    StoreObjectError::Write(RepositoryError::WriteFailed(reason))
                })?;
                if !new_blobs.iter().any(|known| known.entry.id == id) {
                    new_blobs.push(entry);
                }
            }
        }
        Ok(StoredObject {
            size: self.size,
            blobs,
            new_blobs,
            bytes_written: self.bytes_written,
            bytes_stored: self.bytes_stored,
        })
    }
}

#[cfg(test)]
mod tests {
    use object_store::memory::InMemory;
    use object_store::path::Path;
    use object_store::ObjectStoreExt;

    use super::*;
    use crate::repository::cache::RepositoryCache;
    use crate::repository::index::write_index_files;
    use crate::repository::opened::Repository;
    use crate::repository::reader::read_located_blob;
    use crate::repository::test_support::memory_repository;

    const PARTITION: &str = "node-n1";

    /// A writer over the repository's index of [`PARTITION`] as of now, with its own packer.
    async fn new_writer(repository: &Repository, cache: &RepositoryCache) -> BlobWriter {
        let config = repository.config.clone();
        let packer = Packer::new(
            repository.store.clone(),
            repository.key.clone(),
            config.pack_size,
            config.chunk_size,
        );
        BlobWriter {
            key: repository.key.clone(),
            index: cache.index(repository, &[PARTITION.to_string()]).await.unwrap(),
            config,
            packer: Arc::new(packer),
            cpu: Arc::new(Semaphore::new(2)),
            throttle: Arc::new(Throttle::new(None)),
            requests: Arc::default(),
            memory: super::super::buffers::ChunkMemory::default(),
        }
    }

    /// Reads `bytes` as a source object into blobs.
    async fn read(writer: &BlobWriter, bytes: &[u8]) -> PendingObject {
        let source = InMemory::new();
        let path = Path::from("node/object");
        source.put(&path, bytes.to_vec().into()).await.unwrap();
        let got = source.get(&path).await.unwrap();
        match read_object(writer, ChunkSource::new(got), None).await {
            Ok(pending) => pending,
            Err(_) => panic!("an in-memory object reads"),
        }
    }

    async fn stored(writer: &BlobWriter, pending: PendingObject) -> StoredObject {
        writer.packer.flush(&writer.requests);
        match pending.stored().await {
            Ok(object) => object,
            Err(_) => panic!("the pack is stored"),
        }
    }

    #[tokio::test]
    async fn test_an_object_is_stored_once_per_distinct_chunk_and_reads_back_whole() {
        let (repository, cache) = memory_repository(4096).await;
        let writer = new_writer(&repository, &cache).await;
        let chunk = repository.config.chunk_size as usize;
        let (a, b, tail) = (vec![1u8; chunk], vec![2u8; chunk], vec![3u8; 100]);
        let object = [a.as_slice(), &b, &a, &tail].concat();

        let pending = read(&writer, &object).await;
        // Another object sharing chunks with one whose pack is still open reuses them: nothing
        // is sealed or written twice. (Once that pack is stored, the packer forgets its blobs
        // and the task's index view predates them: the same content later in the task is
        // stored again, reclaimed by prune; see `packer`.)
        let sharing = read(&writer, &[b.as_slice(), &tail].concat()).await;
        assert_eq!((sharing.bytes_written, sharing.bytes_stored), (0, 0));
        let first = stored(&writer, pending).await;
        let sharing = stored(&writer, sharing).await;
        assert_eq!(sharing.blobs, vec![first.blobs[1], first.blobs[3]]);
        assert_eq!(first.size, object.len() as u64);
        assert_eq!(first.blobs.len(), 4, "one blob per chunk");
        assert_eq!(first.blobs[0], first.blobs[2], "the same bytes are the same blob");
        assert_eq!(first.new_blobs.len(), 3, "a repeated chunk is stored once");
        assert_eq!(first.bytes_written, (2 * chunk + tail.len()) as u64);
        let mut restored = Vec::new();
        for id in &first.blobs {
            let Some(located) = first.new_blobs.iter().find(|entry| entry.entry.id == *id) else {
                panic!("blob {id} has no location");
            };
            restored.extend(
                read_located_blob(&repository, located.pack, &located.entry)
                    .await
                    .unwrap()
                    .plaintext,
            );
        }
        assert_eq!(restored, object);

        // Once an index file lists the blobs (the commit writes it), a later task's writer finds
        // them there: the object is stored without waiting for any pack.
        let store = repository.store.as_ref();
        write_index_files(store, &repository.key, PARTITION, "b1", &first.new_blobs).await.unwrap();
        let later = new_writer(&repository, &cache).await;
        let known = read(&later, &[a.as_slice(), &tail].concat()).await;
        assert!(known.is_stored(), "every blob is in the index");
        assert_eq!((known.bytes_written, known.bytes_stored), (0, 0));
        let known = stored(&later, known).await;
        assert!(known.new_blobs.is_empty());
        assert_eq!(known.blobs, vec![first.blobs[0], first.blobs[3]]);
    }
}
