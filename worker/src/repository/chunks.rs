//! Splitting an object into fixed-size chunks, hashing them, and writing the missing ones.
//!
//! Memory per object in flight is one chunk. Hashing runs on the blocking pool (a chunk is
//! megabytes: hashing it on the async runtime would stall other copies).

use bytes::{Bytes, BytesMut};
use futures::{Stream, StreamExt};
use object_store::{ObjectStore, PutMode, PutOptions, PutPayload};

use super::layout::chunk_key;
use crate::error::RepositoryError;
use crate::formats::Validator;

/// What storing an object produced.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StoredObject {
    /// Bytes read.
    pub size: u64,
    /// BLAKE3 of the whole object, hex.
    pub blake3: String,
    /// Chunk hashes, in order.
    pub chunks: Vec<String>,
    /// Bytes of chunks actually written (chunks already present are not counted).
    pub bytes_written: u64,
}

/// Why storing an object failed: reading the source, or writing the repository.
#[derive(Debug)]
pub enum StoreObjectError {
    /// The source stream failed.
    Read(object_store::Error),
    /// A chunk write failed.
    Write(RepositoryError),
}

/// Reads `stream` to its end, writing its chunks into `repository`; every piece read also
/// goes through `validator` (the object's format check: same read, no second pass).
///
/// # Errors
/// [`StoreObjectError::Read`] when the stream fails, [`StoreObjectError::Write`] when a chunk
/// cannot be written.
pub async fn store_object<S>(
    repository: &dyn ObjectStore,
    chunk_size: usize,
    mut stream: S,
    mut validator: Option<&mut Validator>,
) -> Result<StoredObject, StoreObjectError>
where
    S: Stream<Item = object_store::Result<Bytes>> + Unpin,
{
    let mut object_hasher = blake3::Hasher::new();
    let mut buffer = BytesMut::with_capacity(chunk_size.min(1 << 20));
    let mut stored =
        StoredObject { size: 0, blake3: String::new(), chunks: Vec::new(), bytes_written: 0 };
    while let Some(piece) = stream.next().await {
        let mut piece = piece.map_err(StoreObjectError::Read)?;
        if let Some(validator) = validator.as_deref_mut() {
            validator.update(&piece);
        }
        stored.size += piece.len() as u64;
        while !piece.is_empty() {
            let take = (chunk_size - buffer.len()).min(piece.len());
            buffer.extend_from_slice(&piece.split_to(take));
            if buffer.len() == chunk_size {
                let chunk = std::mem::replace(
                    &mut buffer,
                    BytesMut::with_capacity(chunk_size.min(1 << 20)),
                )
                .freeze();
                object_hasher = write_chunk(repository, chunk, object_hasher, &mut stored).await?;
            }
        }
    }
    if !buffer.is_empty() {
        object_hasher =
            write_chunk(repository, buffer.freeze(), object_hasher, &mut stored).await?;
    }
    stored.blake3 = object_hasher.finalize().to_hex().to_string();
    Ok(stored)
}

async fn write_chunk(
    repository: &dyn ObjectStore,
    chunk: Bytes,
    object_hasher: blake3::Hasher,
    stored: &mut StoredObject,
) -> Result<blake3::Hasher, StoreObjectError> {
    let hashing_chunk = chunk.clone();
    let (object_hasher, chunk_hash) = tokio::task::spawn_blocking(move || {
        let mut object_hasher = object_hasher;
        object_hasher.update(&hashing_chunk);
        (object_hasher, blake3::hash(&hashing_chunk).to_hex().to_string())
    })
    .await
    .map_err(|error| {
        StoreObjectError::Write(RepositoryError::Corrupt {
            key: "chunk".into(),
            reason: error.to_string(),
        })
    })?;
    let length = chunk.len() as u64;
    if put_chunk(repository, &chunk_hash, chunk).await.map_err(StoreObjectError::Write)? {
        stored.bytes_written += length;
    }
    stored.chunks.push(chunk_hash);
    Ok(object_hasher)
}

/// Writes a chunk create-only. Returns whether it was written (false: it already existed, which
/// is fine: same name, same bytes).
///
/// # Errors
/// [`RepositoryError::Store`] when the store fails.
pub async fn put_chunk(
    repository: &dyn ObjectStore,
    hash_hex: &str,
    chunk: Bytes,
) -> Result<bool, RepositoryError> {
    let key = chunk_key(hash_hex);
    let options = PutOptions { mode: PutMode::Create, ..PutOptions::default() };
    match repository.put_opts(&key, PutPayload::from(chunk), options).await {
        Ok(_) => Ok(true),
        Err(object_store::Error::AlreadyExists { .. }) => Ok(false),
        Err(error) => Err(RepositoryError::store(key.to_string())(error)),
    }
}

#[cfg(test)]
mod tests {
    use object_store::memory::InMemory;
    use object_store::ObjectStoreExt;

    use super::*;

    fn pieces(
        data: &[u8],
        piece: usize,
    ) -> impl Stream<Item = object_store::Result<Bytes>> + Unpin {
        let owned: Vec<object_store::Result<Bytes>> =
            data.chunks(piece).map(|part| Ok(Bytes::copy_from_slice(part))).collect();
        futures::stream::iter(owned)
    }

    #[tokio::test]
    async fn test_object_is_split_into_chunks_whose_concatenation_is_the_object() {
        let repository = InMemory::new();
        let data: Vec<u8> = (0..10_000u32).map(|value| (value % 251) as u8).collect();
        // Pieces of 333 bytes do not align with chunks of 4096: the chunker must re-cut them.
        let stored = store_object(&repository, 4096, pieces(&data, 333), None).await.unwrap();
        assert_eq!(stored.size, 10_000);
        assert_eq!(stored.chunks.len(), 3);
        assert_eq!(stored.blake3, blake3::hash(&data).to_hex().to_string());
        let mut reassembled = Vec::new();
        for hash in &stored.chunks {
            let chunk = repository.get(&chunk_key(hash)).await.unwrap().bytes().await.unwrap();
            assert_eq!(blake3::hash(&chunk).to_hex().to_string(), *hash);
            reassembled.extend_from_slice(&chunk);
        }
        assert_eq!(reassembled, data);
        assert_eq!(stored.bytes_written, 10_000);
    }

    #[tokio::test]
    async fn test_storing_the_same_object_twice_writes_nothing_new() {
        let repository = InMemory::new();
        let data = vec![7u8; 5000];
        store_object(&repository, 4096, pieces(&data, 1000), None).await.unwrap();
        let again = store_object(&repository, 4096, pieces(&data, 1000), None).await.unwrap();
        assert_eq!(again.bytes_written, 0);
    }

    #[tokio::test]
    async fn test_empty_object_has_no_chunks_and_the_empty_hash() {
        let repository = InMemory::new();
        let stored = store_object(&repository, 4096, pieces(&[], 1), None).await.unwrap();
        assert_eq!((stored.size, stored.chunks.len()), (0, 0));
        assert_eq!(stored.blake3, blake3::hash(b"").to_hex().to_string());
    }
}
