//! Reading a source object in chunks of the repository's chunk size.
//!
//! object_store streams a local file in 8 KiB reads, each its own trip to the blocking pool;
//! for a local source bk reads the open file itself, a whole chunk per trip. Remote objects
//! arrive as a stream of pieces, re-cut into chunks.

use std::io::{Read, Seek, SeekFrom};

use bytes::{Bytes, BytesMut};
use futures::stream::BoxStream;
use futures::StreamExt;
use object_store::{GetResult, GetResultPayload};

/// An object being read, chunk by chunk.
pub enum ChunkSource {
    /// A local file (object_store handed over the open file).
    File {
        /// The file; `None` while a read runs on the blocking pool.
        file: Option<std::fs::File>,
        /// Its path, for errors.
        path: std::path::PathBuf,
        /// Where the next read starts.
        position: u64,
        /// Where the object ends.
        end: u64,
    },
    /// A remote object's byte stream.
    Stream {
        /// The pieces.
        stream: BoxStream<'static, object_store::Result<Bytes>>,
        /// Bytes read beyond the last chunk handed out.
        carry: BytesMut,
        /// The stream has ended.
        finished: bool,
    },
}

impl ChunkSource {
    /// Reads what a GET returned.
    pub fn new(result: GetResult) -> Self {
        let range = result.range.clone();
        match result.payload {
            GetResultPayload::File(file, path) => {
                ChunkSource::File { file: Some(file), path, position: range.start, end: range.end }
            }
            GetResultPayload::Stream(stream) => {
                ChunkSource::Stream { stream, carry: BytesMut::new(), finished: false }
            }
        }
    }

    /// Bytes left to read, when known (a local file; a remote stream's length is not).
    pub fn remaining(&self) -> Option<u64> {
        match self {
            ChunkSource::File { position, end, .. } => Some(end.saturating_sub(*position)),
            ChunkSource::Stream { .. } => None,
        }
    }

    /// The next chunk of at most `chunk_size` bytes (exactly that, but for the last), or
    /// `None` at the end.
    ///
    /// # Errors
    /// The store's error (a local read error carries the path).
    pub async fn next_chunk(&mut self, chunk_size: usize) -> object_store::Result<Option<Bytes>> {
        match self {
            ChunkSource::File { file, path, position, end } => {
                if *position >= *end {
                    return Ok(None);
                }
                let length = (*end - *position).min(chunk_size as u64) as usize;
                let (opened, start) = (file.take(), *position);
                let read_path = path.clone();
                // Allocated here, on a runtime thread, not on the blocking pool: allocators
                // keep memory per thread (glibc an arena, mimalloc a heap), so buffers
                // allocated across a dozen blocking threads spread over more of them.
                let buffer = super::buffers::CHUNKS.take_filled(length);
                let (returned, result) = tokio::task::spawn_blocking(move || {
                    let Some(mut opened) = opened else {
                        return (
                            None,
                            Err(std::io::Error::other("the file was lost by a failed read")),
                        );
                    };
                    let result = read_at(&mut opened, start, buffer);
                    (Some(opened), result)
                })
                .await
                .map_err(|error| local_error(&read_path, std::io::Error::other(error)))?;
                *file = returned;
                let bytes = result.map_err(|error| local_error(path, error))?;
                *position += bytes.len() as u64;
                if bytes.len() < length {
                    *end = *position; // The file shrank while being read: what was there is it.
                }
                Ok(Some(bytes))
            }
            ChunkSource::Stream { stream, carry, finished } => {
                while carry.len() < chunk_size && !*finished {
                    match stream.next().await {
                        Some(piece) => carry.extend_from_slice(&piece?),
                        None => *finished = true,
                    }
                }
                if carry.is_empty() {
                    return Ok(None);
                }
                let take = carry.len().min(chunk_size);
                Ok(Some(carry.split_to(take).freeze()))
            }
        }
    }
}

fn read_at(file: &mut std::fs::File, start: u64, mut buffer: Vec<u8>) -> std::io::Result<Bytes> {
    file.seek(SeekFrom::Start(start))?;
    let length = buffer.len();
    let mut filled = 0;
    while filled < length {
        match file.read(&mut buffer[filled..])? {
            0 => break,
            read => filled += read,
        }
    }
    buffer.truncate(filled);
    Ok(Bytes::from(buffer))
}

fn local_error(path: &std::path::Path, source: std::io::Error) -> object_store::Error {
    object_store::Error::Generic {
        store: "LocalFileSystem",
        source: format!("cannot read `{}`: {source}", path.display()).into(),
    }
}

#[cfg(test)]
mod tests {
    use object_store::local::LocalFileSystem;
    use object_store::memory::InMemory;
    use object_store::{ObjectStore, ObjectStoreExt, PutPayload};

    use super::*;

    async fn chunks(store: &dyn ObjectStore, size: usize) -> Vec<Vec<u8>> {
        let result = store.get(&"object".into()).await.unwrap();
        let mut source = ChunkSource::new(result);
        let mut chunks = Vec::new();
        while let Some(chunk) = source.next_chunk(size).await.unwrap() {
            chunks.push(chunk.to_vec());
        }
        chunks
    }

    #[tokio::test]
    async fn test_local_files_and_streams_are_cut_into_the_same_chunks() {
        let data: Vec<u8> = (0..10_000u32).map(|value| (value % 251) as u8).collect();
        let dir = tempfile::tempdir().unwrap();
        let local = LocalFileSystem::new_with_prefix(dir.path()).unwrap();
        let memory = InMemory::new();
        for store in [&local as &dyn ObjectStore, &memory] {
            store.put(&"object".into(), PutPayload::from(data.clone())).await.unwrap();
            let cut = chunks(store, 4096).await;
            assert_eq!(cut.iter().map(Vec::len).collect::<Vec<_>>(), [4096, 4096, 1808]);
            assert_eq!(cut.concat(), data);
        }
        local.put(&"object".into(), PutPayload::default()).await.unwrap();
        assert!(chunks(&local, 4096).await.is_empty(), "an empty object has no chunk");
    }
}
