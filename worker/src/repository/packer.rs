//! The packer: one per repository per worker, shared by every object in flight on the worker,
//! so a thousand 4 KiB WAL files fill a pack together instead of costing a thousand PUTs.
//!
//! [`Packer::add`] appends a sealed blob to the open pack and returns a [`BlobHandle`] that
//! resolves once the pack holding it is stored; a pack is sealed and uploaded in the background
//! when it reaches the repository's pack size, or when a task flushes it (it has nothing more to
//! add and waits for its blobs). At most [`MAX_UPLOADS`] packs upload at once; a producer whose
//! pack fills while they all run waits for one to finish, which bounds memory to the open pack
//! plus the packs uploading. A blob added twice (the same content in two objects) is stored
//! once: the second add gets the first's handle.
//!
//! An object's entry may name a blob only once its handle resolved: an entry never points into
//! a pack that was not stored.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use object_store::{ObjectStore, ObjectStoreExt, PutPayload, WriteMultipart};
use tokio::sync::{watch, Semaphore};

use super::blob::{pack_entry, SealedBlob};
use super::counting::RequestCounts;
use super::crypto::{BlobId, MasterKey};
use super::index::IndexEntry;
use super::layout::pack_path;
use super::pack::{encode_header, PackEntry, PackId};

/// Packs uploading at once.
pub const MAX_UPLOADS: usize = 4;
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
}

#[derive(Default)]
struct PackerState {
    open: Option<OpenPack>,
    /// Every blob added while this packer lived, pending or stored.
    added: HashMap<BlobId, BlobHandle>,
}

/// Counts of what a packer stored, for reports and the benchmark.
#[derive(Debug, Default)]
pub struct PackerCounters {
    /// Packs stored.
    pub packs: AtomicU64,
    /// Bytes of those packs.
    pub bytes: AtomicU64,
}

/// Fills packs from every object in flight and uploads them.
pub struct Packer {
    store: Arc<dyn ObjectStore>,
    key: Arc<MasterKey>,
    pack_size: usize,
    /// A std mutex: held for an append or a lookup, never across an `.await`. Shared with the
    /// upload tasks, which forget a failed pack's blobs.
    state: Arc<Mutex<PackerState>>,
    uploads: Arc<Semaphore>,
    /// What was stored.
    pub counters: Arc<PackerCounters>,
}

impl Packer {
    /// A packer writing into `store` with the repository's key and pack size.
    pub fn new(store: Arc<dyn ObjectStore>, key: Arc<MasterKey>, pack_size: u64) -> Self {
        Self {
            store,
            key,
            pack_size: usize::try_from(pack_size).unwrap_or(usize::MAX),
            state: Arc::default(),
            uploads: Arc::new(Semaphore::new(MAX_UPLOADS)),
            counters: Arc::default(),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, PackerState> {
        self.state.lock().unwrap_or_else(|poison| poison.into_inner())
    }

    /// The handle of a blob already added, if any (before sealing one again).
    pub fn lookup(&self, id: &BlobId) -> Option<BlobHandle> {
        self.lock().added.get(id).cloned()
    }

    /// Adds a sealed blob; returns its handle and whether its bytes were added (false: the
    /// same blob was added before). Waits when the pack it fills cannot start uploading yet.
    /// The PUT of a pack this add fills is counted in `requests`.
    pub async fn add(&self, blob: SealedBlob, requests: &Arc<RequestCounts>) -> (BlobHandle, bool) {
        let (handle, full) = {
            let mut state = self.lock();
            if let Some(handle) = state.added.get(&blob.id) {
                return (handle.clone(), false);
            }
            let open = match state.open.take() {
                Some(open) => open,
                None => match new_pack(self.pack_size) {
                    Ok(open) => open,
                    Err(error) => return (failed_handle(&blob, error), true),
                },
            };
            let mut open = open;
            let entry = pack_entry(&blob, open.bytes.len() as u64);
            open.bytes.extend_from_slice(&blob.bytes);
            open.entries.push(entry);
            let handle = BlobHandle { pack: open.id, entry, state: open.state.subscribe() };
            state.added.insert(blob.id, handle.clone());
            let full = if open.bytes.len() >= self.pack_size {
                Some(open)
            } else {
                state.open = Some(open);
                None
            };
            (handle, full)
        };
        if let Some(pack) = full {
            self.upload(pack, requests).await;
        }
        (handle, true)
    }

    /// Seals and uploads the open pack now, if it holds anything: a task that has nothing more
    /// to add must not wait for others to fill it. Its PUT is counted in `requests`.
    pub async fn flush(&self, requests: &Arc<RequestCounts>) {
        let open = self.lock().open.take();
        if let Some(pack) = open {
            self.upload(pack, requests).await;
        }
    }

    /// Waits for an upload slot, then stores `pack` in the background.
    async fn upload(&self, pack: OpenPack, requests: &Arc<RequestCounts>) {
        let permit = match self.uploads.clone().acquire_owned().await {
            Ok(permit) => permit,
            Err(_) => {
                let _ = pack.state.send(PackState::Failed("the packer is closing".to_string()));
                return;
            }
        };
        let (store, key, counters) = (self.store.clone(), self.key.clone(), self.counters.clone());
        let requests = requests.clone();
        let packer_state = Arc::downgrade(&self.state);
        tokio::spawn(async move {
            let OpenPack { id, bytes, entries, state } = pack;
            let result = store_pack(store.as_ref(), &key, id, bytes, &entries).await;
            drop(permit);
            match result {
                Ok(stored_bytes) => {
                    requests.puts.fetch_add(1, Ordering::Relaxed);
                    counters.packs.fetch_add(1, Ordering::Relaxed);
                    counters.bytes.fetch_add(stored_bytes, Ordering::Relaxed);
                    let _ = state.send(PackState::Stored);
                }
                Err(error) => {
                    tracing::warn!(pack = %id.to_hex(), %error, "pack upload failed");
                    // Its blobs are forgotten: the next add of one stores it again instead of
                    // pointing at a pack that does not exist.
                    if let Some(packer_state) = packer_state.upgrade() {
                        let mut packer_state =
                            packer_state.lock().unwrap_or_else(|poison| poison.into_inner());
                        packer_state.added.retain(|_, handle| handle.pack != id);
                    }
                    let _ = state.send(PackState::Failed(error));
                }
            }
        });
    }
}

fn new_pack(pack_size: usize) -> Result<OpenPack, String> {
    let (state, _) = watch::channel(PackState::Filling);
    Ok(OpenPack {
        id: PackId::generate()?,
        bytes: Vec::with_capacity(pack_size.min(64 << 20) + (1 << 20)),
        entries: Vec::new(),
        state,
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
    mut bytes: Vec<u8>,
    entries: &[PackEntry],
) -> Result<u64, String> {
    let header = key.seal(&id.header_context(), &encode_header(entries))?;
    bytes.extend_from_slice(&header);
    bytes.extend_from_slice(&(header.len() as u32).to_le_bytes());
    let length = bytes.len() as u64;
    let path = pack_path(id);
    let failed = |error: object_store::Error| format!("cannot store pack `{path}`: {error}");
    if bytes.len() <= MULTIPART_ABOVE {
        store.put(&path, PutPayload::from(bytes)).await.map_err(failed)?;
        return Ok(length);
    }
    let upload = store.put_multipart(&path).await.map_err(failed)?;
    let mut writer = WriteMultipart::new_with_chunk_size(upload, 16 << 20);
    writer.write(&bytes);
    writer.finish().await.map_err(failed)?;
    Ok(length)
}
