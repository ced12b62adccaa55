//! Megabyte buffers kept for the next chunk or pack instead of freed.
//!
//! Every chunk read, sealed blob and pack was a fresh allocation of megabytes. The allocator
//! hands such sizes back to the kernel when they are freed, so the next one page-faults in
//! fresh pages the kernel zeroes first: in a profile of a local 2 GiB backup, page zeroing
//! (`clear_page_erms`) and faults were 10 % of all CPU samples, as much as BLAKE3 and AES-GCM
//! together. A few buffers of each size class are kept (a bounded amount of memory the worker
//! keeps while idle); small objects' buffers are left to the allocator, which handles them well.

use std::sync::{Arc, Mutex};

use bytes::Bytes;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// What a worker's chunk buffers in flight may hold at once, all tasks together: reads and
/// their sealed copies (backups), ranges read and opened (restores). With 8 MiB chunks, four
/// at once: enough to keep the cores sealing, and the worker within its memory (see the
/// README: a worker runs next to its database node and takes its memory).
pub const CHUNK_MEMORY_BYTES: usize = 64 << 20;

/// A worker-wide budget of bytes in chunk buffers (permits are KiB).
#[derive(Clone, Debug)]
pub struct ChunkMemory {
    permits: Arc<Semaphore>,
    total: u32,
}

impl Default for ChunkMemory {
    fn default() -> Self {
        Self::new(CHUNK_MEMORY_BYTES)
    }
}

impl ChunkMemory {
    /// A budget of `bytes`.
    pub fn new(bytes: usize) -> Self {
        let total = u32::try_from(bytes >> 10).unwrap_or(u32::MAX).max(1);
        Self { permits: Arc::new(Semaphore::new(total as usize)), total }
    }

    /// Permits for `bytes`; a buffer larger than the whole budget takes all of it (it waits for
    /// everything else instead of forever).
    fn permits(&self, bytes: usize) -> u32 {
        u32::try_from(bytes.div_ceil(1024)).unwrap_or(u32::MAX).clamp(1, self.total)
    }

    /// Waits until `bytes` of the budget are free and holds them until the permit drops.
    ///
    /// # Errors
    /// When the worker is stopping (the budget closed).
    pub async fn take(&self, bytes: usize) -> Result<OwnedSemaphorePermit, String> {
        let permits = self.permits(bytes);
        let acquired = self.permits.clone().acquire_many_owned(permits).await;
        acquired.map_err(|_| "the worker is stopping".to_string())
    }

    /// Holds `bytes` of the budget if they are free now.
    pub fn try_take(&self, bytes: usize) -> Option<OwnedSemaphorePermit> {
        self.permits.clone().try_acquire_many_owned(self.permits(bytes)).ok()
    }
}

/// Buffers smaller than this are not kept.
const MIN_KEPT_CAPACITY: usize = 256 << 10;

/// A bounded stack of spare buffers.
#[derive(Debug)]
pub struct BufferPool {
    spare: Mutex<Vec<Vec<u8>>>,
    keep: usize,
}

/// Chunk-sized buffers: source reads and sealed blobs (at most 32 MiB kept with 8 MiB chunks).
pub static CHUNKS: BufferPool = BufferPool::new(4);
/// Pack-sized buffers (one: 24 MiB with 16 MiB packs).
pub static PACKS: BufferPool = BufferPool::new(1);

impl BufferPool {
    /// A pool keeping at most `keep` spare buffers.
    pub const fn new(keep: usize) -> Self {
        Self { spare: Mutex::new(Vec::new()), keep }
    }

    /// An empty buffer with room for `capacity` bytes.
    pub fn take(&self, capacity: usize) -> Vec<u8> {
        let mut buffer = self.spare_with(capacity).unwrap_or_default();
        buffer.clear();
        buffer.reserve(capacity);
        buffer
    }

    /// A buffer of exactly `length` bytes whose contents are unspecified (a spare buffer's old
    /// bytes, or zeros): for reads that overwrite it and keep only what they read.
    pub fn take_filled(&self, length: usize) -> Vec<u8> {
        match self.spare_with(length) {
            Some(mut buffer) => {
                // Only the part past the old length is written; the rest is overwritten later.
                buffer.resize(length, 0);
                buffer
            }
            None => vec![0; length],
        }
    }

    /// Keeps `buffer` for a later take, if it is large and the pool has room.
    pub fn give(&self, buffer: Vec<u8>) {
        if buffer.capacity() < MIN_KEPT_CAPACITY {
            return;
        }
        let mut spare = self.spare.lock().unwrap_or_else(|poison| poison.into_inner());
        if spare.len() < self.keep {
            spare.push(buffer);
        }
    }

    /// Keeps the buffer behind `bytes` when nothing else references it. Give the whole
    /// buffer, not a slice of it: a slice comes back too, but moved to the buffer's start.
    pub fn give_bytes(&self, bytes: Bytes) {
        // Its capacity, not its length, decides (a file's last chunk is short in a full-size
        // buffer); converting a unique `Bytes` back to its `Vec` copies nothing, and the length
        // it keeps spares `take_filled` zeroing it again.
        if let Ok(unique) = bytes.try_into_mut() {
            self.give(Vec::from(unique));
        }
    }

    fn spare_with(&self, capacity: usize) -> Option<Vec<u8>> {
        let mut spare = self.spare.lock().unwrap_or_else(|poison| poison.into_inner());
        let index = spare.iter().position(|buffer| buffer.capacity() >= capacity)?;
        Some(spare.swap_remove(index))
    }

    #[cfg(test)]
    fn spare_count(&self) -> usize {
        self.spare.lock().map(|spare| spare.len()).unwrap_or(0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn test_large_buffers_are_reused_up_to_the_limit_and_small_ones_are_not_kept() {
        let pool = BufferPool::new(2);
        let big = pool.take_filled(1 << 20);
        let address = big.as_ptr();
        pool.give(big);
        let again = pool.take_filled(512 << 10);
        assert_eq!(again.as_ptr(), address, "the spare buffer was not reused");
        assert_eq!(again.len(), 512 << 10);
        let empty = pool.take(1 << 20);
        assert!(empty.is_empty() && empty.capacity() >= 1 << 20);
        pool.give(again);
        pool.give(empty);
        pool.give(vec![0; 1 << 20]);
        assert_eq!(pool.spare_count(), 2, "kept past its limit");
        pool.give(vec![0; 1024]);
        assert_eq!(pool.spare_count(), 2);

        let budget = ChunkMemory::new(64 << 10);
        let held = budget.try_take(60 << 10).unwrap();
        assert!(budget.try_take(8 << 10).is_none(), "past the budget");
        assert!(budget.try_take(4 << 10).is_some());
        drop(held);
        assert!(
            budget.try_take(1 << 30).is_some(),
            "a buffer larger than the budget takes all of it"
        );

        let small_pool = BufferPool::new(4);
        small_pool.give(vec![0; 4096]);
        assert_eq!(small_pool.spare_count(), 0, "a small buffer was kept");
        // A shared Bytes is not taken away from its other owner.
        let shared = Bytes::from(vec![7u8; 1 << 20]);
        let other = shared.clone();
        small_pool.give_bytes(shared);
        assert_eq!(small_pool.spare_count(), 0);
        small_pool.give_bytes(other);
        assert_eq!(small_pool.spare_count(), 1);

        // A slice of a buffer brings the whole buffer back once it is the last view of it (its
        // bytes moved to the start).
        let pool = BufferPool::new(4);
        let buffer = vec![3u8; 1 << 20];
        let address = buffer.as_ptr();
        // As a restore holds a pack range: read, made mutable, opened in place, frozen, sliced.
        let whole = Bytes::from(buffer).try_into_mut().unwrap().freeze();
        let (head, tail) = (whole.slice(..1000), whole.slice(4096..8192));
        drop(whole);
        pool.give_bytes(head);
        assert_eq!(pool.spare_count(), 0, "taken while another slice lives");
        pool.give_bytes(tail);
        let back = pool.take_filled(1 << 20);
        assert_eq!((back.as_ptr(), back.capacity()), (address, 1 << 20));
        assert_eq!(back[..4096], [3u8; 4096], "the slice was moved to the start");
    }
}
