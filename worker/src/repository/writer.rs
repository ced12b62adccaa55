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
