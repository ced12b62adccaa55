//! The packer: one per repository per worker, shared by every object in flight on the worker,
//! so a thousand 4 KiB WAL files fill a pack together instead of costing a thousand PUTs.
//!
//! [`Packer::add`] appends a sealed blob to the open pack and returns a [`BlobHandle`] that
//! resolves once the pack holding it is stored; a pack is sealed and uploaded in the background
//! when it reaches the repository's pack size, or when a task flushes it (it has nothing more to
//! add and waits for its blobs). A pack reaches its size with the blob that takes it there, so
//! it holds at most its size plus one blob (a chunk and its seal), which is what its buffer is
//! given once: packs are full (one PUT per pack size stored) and never reallocated. A pack
//! holds one of [`PACKS_IN_MEMORY`] permits from the moment
//! it opens until it is stored, so a producer that needs a new pack while they are all taken
//! waits for an upload to finish: memory is bounded by that many packs, however many objects
//! are in flight (without it, every producer whose add filled a pack held that pack while
//! waiting to upload it: 7 packs and more were measured on a slow store). A blob added twice
//! (the same content in two objects) is stored once: the second add gets the first's handle.
//!
//! An object's entry may name a blob only once its handle resolved: an entry never points into
//! a pack that was not stored.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use object_store::{ObjectStore, ObjectStoreExt, PutPayload, WriteMultipart};
use tokio::sync::{watch, OwnedSemaphorePermit, Semaphore};

use super::blob::{pack_entry, SealedBlob};
use super::counting::RequestCounts;
use super::crypto::{BlobId, MasterKey};
use super::index::IndexEntry;
use super::layout::pack_path;
use super::pack::{encode_header, PackEntry, PackId};

/// Packs in memory at once, the one filling and those uploading (so three upload at once):
/// with 16 MiB packs, at most 96 MiB of a worker's memory.
pub const PACKS_IN_MEMORY: usize = 4;
/// Packs larger than this go up as multipart uploads (S3's single PUT tops out at 5 GiB; parts
/// stream instead of one large body).
const MULTIPART_ABOVE: usize = 64 << 20;

/// Where a pack stands.
#[derive(Clone, Debug, PartialEq, Eq)]
enum PackState {
    Filling,
    Stored,
    Failed(String),
}

/// A blob added to a pack: resolves to its place once the pack is stored.
#[derive(Clone, Debug)]
pub struct BlobHandle {
    pack: PackId,
    entry: PackEntry,
    state: watch::Receiver<PackState>,
}

impl BlobHandle {
    /// Waits until the blob's pack is stored; its index entry.
    ///
    /// # Errors
    /// The upload's error, naming the pack.
    pub async fn stored(mut self) -> Result<IndexEntry, String> {
        let state = self
            .state
            .wait_for(|state| *state != PackState::Filling)
            .await
            .map_err(|_| format!("pack {} was dropped before it was stored", self.pack.to_hex()))?
            .clone();
        match state {
            PackState::Stored => Ok(IndexEntry { pack: self.pack, entry: self.entry }),
            PackState::Failed(error) => Err(error),
            PackState::Filling => unreachable!("waited until it was not filling"),
        }
    }

    /// The blob's id.
    pub fn id(&self) -> BlobId {
        self.entry.id
    }
}

struct OpenPack {
    id: PackId,
    bytes: Vec<u8>,
    entries: Vec<PackEntry>,
    state: watch::Sender<PackState>,
    /// Released once the pack is stored (or failed).
    permit: OwnedSemaphorePermit,
}

#[derive(Default)]
struct PackerState {
    open: Option<OpenPack>,
    /// Blobs of the packs not stored yet: a second add of one gets the first's handle. A
    /// stored pack's blobs leave it (the index knows them from then on), so it holds at most
    /// [`PACKS_IN_MEMORY`] packs' worth, however many objects a backup copies.
    added: HashMap<BlobId, BlobHandle>,
}

/// What one attempt to add a blob did.
enum Added {
    /// The blob was added before: its handle.
    Before(BlobHandle),
    /// Added now: its handle, and the pack it filled, to upload.
    Now(BlobHandle, Option<OpenPack>),
    /// Not added: the open pack has no room left for it, and goes to be stored.
    Full(OpenPack),
    /// No pack could open.
    Failed(String),
    /// No pack is open and opening one needs a permit.
    NeedsPermit,
}

/// Counts of what a packer stored, for reports and the benchmark.
#[derive(Debug, Default)]
pub struct PackerCounters {
    /// Packs stored.
    pub packs: AtomicU64,
    /// Bytes of those packs.
    pub bytes: AtomicU64,
    /// Packs in memory now: opened, not yet stored (at most [`PACKS_IN_MEMORY`]).
    pub in_memory: AtomicU64,
}

/// Fills packs from every object in flight and uploads them.
pub struct Packer {
    store: Arc<dyn ObjectStore>,
    key: Arc<MasterKey>,
    pack_size: usize,
    /// The largest sealed blob: a chunk and its seal.
    largest_blob: usize,
    /// A std mutex: held for an append or a lookup, never across an `.await`. Shared with the
    /// upload tasks, which forget a failed pack's blobs.
    state: Arc<Mutex<PackerState>>,
    /// [`PACKS_IN_MEMORY`] permits: one per pack from its opening to its storing.
    packs: Arc<Semaphore>,
    /// What was stored.
    pub counters: Arc<PackerCounters>,
}

impl Packer {
    /// A packer writing into `store` with the repository's key, pack size and chunk size.
    pub fn new(
        store: Arc<dyn ObjectStore>,
        key: Arc<MasterKey>,
        pack_size: u64,
        chunk_size: u64,
    ) -> Self {
        let chunk_size = usize::try_from(chunk_size).unwrap_or(usize::MAX);
        Self {
            store,
            key,
            pack_size: usize::try_from(pack_size).unwrap_or(usize::MAX),
            largest_blob: chunk_size.saturating_add(super::crypto::SEAL_OVERHEAD),
            state: Arc::default(),
            packs: Arc::new(Semaphore::new(PACKS_IN_MEMORY)),
            counters: Arc::default(),
        }
    }

    /// The most a pack holds: its size, less a byte, plus the blob that fills it.
    fn pack_limit(&self) -> usize {
        self.pack_size.saturating_add(self.largest_blob)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, PackerState> {
        self.state.lock().unwrap_or_else(|poison| poison.into_inner())
    }

    /// The handle of a blob already added, if any (before sealing one again).
    pub fn lookup(&self, id: &BlobId) -> Option<BlobHandle> {
        self.lock().added.get(id).cloned()
    }

    /// Adds a sealed blob; returns its handle and whether its bytes were added (false: the
    /// same blob was added before). Waits for a permit when a new pack must open and
    /// [`PACKS_IN_MEMORY`] are filling or uploading. The PUT of a pack this add fills is
    /// counted in `requests`.
    pub async fn add(&self, blob: SealedBlob, requests: &Arc<RequestCounts>) -> (BlobHandle, bool) {
        let added = self.add_blob(&blob, requests).await;
        // Its bytes were copied into a pack (or it was there already): the buffer is spare.
        super::buffers::CHUNKS.give(blob.bytes);
        added
    }

    async fn add_blob(
        &self,
        blob: &SealedBlob,
        requests: &Arc<RequestCounts>,
    ) -> (BlobHandle, bool) {
        let mut permit = None;
        loop {
            match self.try_add(blob, &mut permit) {
                Added::Before(handle) => return (handle, false),
                Added::Now(handle, full) => {
                    if let Some(pack) = full {
                        self.upload(pack, requests);
                    }
                    return (handle, true);
                }
                Added::Full(pack) => self.upload(pack, requests), // then try again
                Added::Failed(error) => return (failed_handle(blob, error), true),
                Added::NeedsPermit => match self.packs.clone().acquire_owned().await {
                    Ok(acquired) => permit = Some(acquired), // then try again: another add
                    // may have opened a pack meanwhile, and this permit is released
                    Err(_) => {
                        let closing = "the packer is closing".to_string();
                        return (failed_handle(blob, closing), true);
                    }
                },
            }
        }
    }

    /// One attempt at [`Packer::add`] under the lock: opens a pack with `permit` if none is
    /// open, or says a permit is needed.
    fn try_add(&self, blob: &SealedBlob, permit: &mut Option<OwnedSemaphorePermit>) -> Added {
        let mut state = self.lock();
        if let Some(handle) = state.added.get(&blob.id) {
            return Added::Before(handle.clone());
        }
        let mut open = match (state.open.take(), permit.take()) {
            (Some(open), _) => open,
            (None, Some(permit)) => match new_pack(self.pack_limit().max(blob.bytes.len()), permit)
            {
                Ok(open) => {
                    self.counters.in_memory.fetch_add(1, Ordering::SeqCst);
                    open
                }
                Err(error) => return Added::Failed(error),
            },
            (None, None) => return Added::NeedsPermit,
        };
        if !open.entries.is_empty() && open.bytes.len() + blob.bytes.len() > self.pack_limit() {
            // The blob would take the pack past its limit: the pack goes as it is and the blob
            // opens the next, so a pack's buffer never grows past what it was given.
            return Added::Full(open);
        }
        let entry = pack_entry(blob, open.bytes.len() as u64);
        open.bytes.extend_from_slice(&blob.bytes);
        open.entries.push(entry);
        let handle = BlobHandle { pack: open.id, entry, state: open.state.subscribe() };
        state.added.insert(blob.id, handle.clone());
        if open.bytes.len() >= self.pack_size {
            return Added::Now(handle, Some(open));
        }
        state.open = Some(open);
        Added::Now(handle, None)
    }

    /// Seals and uploads the open pack now, if it holds anything: a task that has nothing more
    /// to add must not wait for others to fill it. Its PUT is counted in `requests`.
    pub fn flush(&self, requests: &Arc<RequestCounts>) {
        let open = self.lock().open.take();
        if let Some(pack) = open {
            self.upload(pack, requests);
        }
    }

    /// Stores `pack` in the background; its permit goes when it is stored.
    fn upload(&self, pack: OpenPack, requests: &Arc<RequestCounts>) {
        let (store, key, counters) = (self.store.clone(), self.key.clone(), self.counters.clone());
        let requests = requests.clone();
        let packer_state = Arc::downgrade(&self.state);
        tokio::spawn(async move {
            let OpenPack { id, bytes, entries, state, permit } = pack;
            let result = store_pack(store.as_ref(), &key, id, bytes, &entries).await;
            counters.in_memory.fetch_sub(1, Ordering::SeqCst);
            drop(permit);
            // Its blobs are forgotten either way, so this map holds a few packs' blobs, not a
            // job's. Stored: the index file this task writes names them, but a task's view of
            // the index is taken when it starts, so the same content added again later in this
            // job is stored again (a few duplicate bytes, reclaimed by prune; InfluxDB nodes
            // rarely hold a file twice). Failed: the next add stores it again instead of
            // pointing at a pack that does not exist.
            if let Some(packer_state) = packer_state.upgrade() {
                let mut packer_state =
                    packer_state.lock().unwrap_or_else(|poison| poison.into_inner());
                for entry in &entries {
                    if packer_state.added.get(&entry.id).is_some_and(|handle| handle.pack == id) {
                        packer_state.added.remove(&entry.id);
                    }
                }
            }
            match result {
                Ok(stored_bytes) => {
                    requests.puts.fetch_add(1, Ordering::Relaxed);
                    counters.packs.fetch_add(1, Ordering::Relaxed);
                    counters.bytes.fetch_add(stored_bytes, Ordering::Relaxed);
                    let _ = state.send(PackState::Stored);
                }
                Err(error) => {
                    tracing::warn!(pack = %id.to_hex(), %error, "pack upload failed");
                    let _ = state.send(PackState::Failed(error));
                }
            }
        });
    }
}

/// A pack with room for `capacity` bytes of blobs (its header goes in a buffer of its own).
fn new_pack(capacity: usize, permit: OwnedSemaphorePermit) -> Result<OpenPack, String> {
    let (state, _) = watch::channel(PackState::Filling);
    Ok(OpenPack {
        id: PackId::generate()?,
        bytes: super::buffers::PACKS.take(capacity),
        entries: Vec::new(),
        state,
        permit,
    })
}

fn failed_handle(blob: &SealedBlob, error: String) -> BlobHandle {
    let (_, state) = watch::channel(PackState::Failed(error));
    BlobHandle { pack: PackId([0; 16]), entry: pack_entry(blob, 0), state }
}

/// Appends the sealed header and its length to `bytes` and stores the pack; its length.
async fn store_pack(
    store: &dyn ObjectStore,
    key: &MasterKey,
    id: PackId,
    bytes: Vec<u8>,
    entries: &[PackEntry],
) -> Result<u64, String> {
    let mut header = key.seal(&id.header_context(), &encode_header(entries))?;
    header.extend_from_slice(&(header.len() as u32).to_le_bytes());
    let length = (bytes.len() + header.len()) as u64;
    let path = pack_path(id);
    let failed = |error: object_store::Error| format!("cannot store pack `{path}`: {error}");
    if bytes.len() <= MULTIPART_ABOVE {
        // Two parts, stored back to back: the blobs are not copied to append the header.
        let body = bytes::Bytes::from(bytes);
        let payload = PutPayload::from_iter([body.clone(), header.into()]);
        store.put(&path, payload).await.map_err(failed)?;
        super::buffers::PACKS.give_bytes(body); // The store is done with it.
        return Ok(length);
    }
    let upload = store.put_multipart(&path).await.map_err(failed)?;
    let mut writer = WriteMultipart::new_with_chunk_size(upload, 16 << 20);
    writer.write(&bytes);
    writer.write(&header);
    super::buffers::PACKS.give(bytes); // Copied into the upload's parts.
    writer.finish().await.map_err(failed)?;
    Ok(length)
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::AtomicUsize;

    use futures::{FutureExt, StreamExt};

    use super::super::blob::seal_blob;
    use super::super::config::{InitSettings, RepositoryConfig};
    use super::super::hooked_store::HookedStore;
    use super::*;

    const PACK_SIZE: usize = 1 << 16;

    fn config() -> RepositoryConfig {
        let settings = InitSettings {
            chunk_size: PACK_SIZE as u64,
            pack_size: PACK_SIZE as u64,
            compression_level: 0,
            unencrypted_blobs: false,
        };
        RepositoryConfig::new("c".into(), settings)
    }

    fn blob(key: &MasterKey, seed: u32, length: usize) -> SealedBlob {
        let plaintext: Vec<u8> = seed.to_le_bytes().iter().copied().cycle().take(length).collect();
        seal_blob(key, &config(), key.blob_id(&plaintext), &plaintext, Vec::new()).unwrap()
    }

    /// A store whose pack uploads wait until `gate` hands out a permit, counting those started.
    fn slow_store(gate: Arc<Semaphore>, started: Arc<AtomicUsize>) -> HookedStore {
        HookedStore {
            before_put: Some(Arc::new(move |_| {
                started.fetch_add(1, Ordering::SeqCst);
                let gate = gate.clone();
                async move {
                    if let Ok(permit) = gate.acquire().await {
                        permit.forget();
                    }
                }
                .boxed()
            })),
            ..HookedStore::default()
        }
    }

    #[tokio::test]
    async fn test_a_slow_store_holds_producers_back_at_four_packs_in_memory() {
        let key = Arc::new(MasterKey::generate().unwrap());
        let (gate, started) = (Arc::new(Semaphore::new(0)), Arc::new(AtomicUsize::new(0)));
        let store = Arc::new(slow_store(gate.clone(), started.clone()));
        let packer =
            Arc::new(Packer::new(store.clone(), key.clone(), PACK_SIZE as u64, PACK_SIZE as u64));
        let requests = Arc::new(RequestCounts::default());
        // Twenty producers, each blob filling a pack on its own.
        let producers: Vec<_> = (0..20)
            .map(|seed| {
                let (packer, requests, blob) =
                    (packer.clone(), requests.clone(), blob(&key, seed, PACK_SIZE));
                tokio::spawn(async move { packer.add(blob, &requests).await.0.stored().await })
            })
            .collect();
        while started.load(Ordering::SeqCst) < PACKS_IN_MEMORY {
            tokio::task::yield_now().await;
        }
        for _ in 0..1000 {
            tokio::task::yield_now().await;
        }
        assert_eq!(started.load(Ordering::SeqCst), PACKS_IN_MEMORY);
        let in_memory = packer.counters.in_memory.load(Ordering::SeqCst);
        assert_eq!(in_memory, PACKS_IN_MEMORY as u64, "sixteen producers wait, holding no pack");
        gate.add_permits(1000);
        for producer in producers {
            producer.await.unwrap().unwrap();
        }
        assert_eq!(packer.counters.packs.load(Ordering::SeqCst), 20);
        assert_eq!(packer.packs.available_permits(), PACKS_IN_MEMORY, "a permit leaked");
        assert_eq!(packer.counters.in_memory.load(Ordering::SeqCst), 0);
    }

    #[tokio::test]
    async fn test_packs_fill_to_their_size_never_past_one_more_blob_and_dedup_blobs() {
        let key = Arc::new(MasterKey::generate().unwrap());
        let store = Arc::new(HookedStore::default());
        let chunk_size = PACK_SIZE / 4;
        let packer = Packer::new(store.clone(), key.clone(), PACK_SIZE as u64, chunk_size as u64);
        let requests = Arc::new(RequestCounts::default());
        let mut handles = Vec::new();
        for seed in 0..64 {
            // Blobs of a fifth of a pack and some: a pack takes five, the sixth opens the next.
            let (handle, added) =
                packer.add(blob(&key, seed, PACK_SIZE / 5 + 100), &requests).await;
            assert!(added);
            handles.push(handle);
        }
        // The last pack is still open: the same blob again is not added twice.
        let (again, added) = packer.add(blob(&key, 63, PACK_SIZE / 5 + 100), &requests).await;
        assert!(!added, "the same blob twice in a pack in memory is stored once");
        assert_eq!(again.id(), handles[63].id());
        packer.flush(&requests);
        let mut sizes: HashMap<PackId, u64> = HashMap::new();
        for handle in handles {
            let entry = handle.stored().await.unwrap();
            *sizes.entry(entry.pack).or_default() += u64::from(entry.entry.length);
        }
        let limit = (PACK_SIZE + chunk_size + crate::repository::crypto::SEAL_OVERHEAD) as u64;
        assert!(sizes.values().all(|size| *size <= limit), "{sizes:?}");
        let full = sizes.values().filter(|size| **size >= PACK_SIZE as u64).count();
        assert!(full >= sizes.len() - 1, "only the last pack may be short: {sizes:?}");
        assert_eq!(store.inner.list(None).count().await, sizes.len());
        assert!(packer.lock().added.is_empty(), "stored packs' blobs are still held");
    }
}
