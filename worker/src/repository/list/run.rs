//! Runs: a sorted sequence of list items cut into chunks, each chunk a sealed file named by a
//! keyed hash of its plaintext (or, when small, carried inline by the record that names it).

use std::sync::Arc;

use object_store::path::Path;
use serde::{Deserialize, Serialize};

use super::codec::{decode_chunk, ChunkEncoder};
use super::entry::ListItem;
use crate::error::{RepositoryError, RepositoryResult};
use crate::repository::crypto::MasterKey;
use crate::repository::layout::LISTS_DIR;
use crate::repository::metadata;
use crate::repository::opened::Repository;

/// A chunk is cut at this many items...
const CHUNK_ITEMS: u64 = 4096;
/// ... or this many encoded bytes, whichever comes first: a reader holds one chunk per run.
const CHUNK_BYTES: usize = 512 << 10;
/// A chunk this small (encoded) travels inline instead of costing a file and a PUT.
const INLINE_BYTES: usize = 16 << 10;

/// One chunk of a run, as the records that name it describe it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChunkRef {
    /// Its name under `lists/` (64 hex digits), empty when inline.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub id: String,
    /// Its plaintext in hex, when small enough to travel inside the record naming it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub inline: Option<String>,
    /// Items in it (objects and deletions).
    pub num_items: u64,
    /// Of those, deletions.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub num_deleted: u64,
    /// Bytes of its objects.
    pub num_bytes: u64,
    /// Its first key.
    pub first: String,
    /// Its last key.
    pub last: String,
}

fn is_zero(value: &u64) -> bool {
    *value == 0
}

impl ChunkRef {
    /// Whether it may hold keys in `start..` that start with `prefix`... precisely: whether
    /// its key range meets the range of keys starting with `prefix`.
    pub fn may_hold(&self, prefix: &str) -> bool {
        self.last.as_str() >= prefix
            && (self.first.as_str() <= prefix || self.first.starts_with(prefix))
    }
}

/// A sorted run of list items, in chunks (see the module doc of [`super`]).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RunRef {
    /// Its chunks, in key order.
    pub chunks: Vec<ChunkRef>,
}

impl RunRef {
    /// Items (objects and deletions).
    pub fn num_items(&self) -> u64 {
        self.chunks.iter().map(|chunk| chunk.num_items).sum()
    }

    /// Deletions.
    pub fn num_deleted(&self) -> u64 {
        self.chunks.iter().map(|chunk| chunk.num_deleted).sum()
    }

    /// Bytes of its objects.
    pub fn num_bytes(&self) -> u64 {
        self.chunks.iter().map(|chunk| chunk.num_bytes).sum()
    }

    /// Keys of the chunk files it names (inline chunks have none).
    pub fn files(&self) -> impl Iterator<Item = Path> + '_ {
        self.chunks.iter().filter(|chunk| !chunk.id.is_empty()).map(|chunk| chunk_path(&chunk.id))
    }
}

/// Key of chunk `id`: `lists/<first 2 hex>/<64 hex>`.
pub fn chunk_path(id: &str) -> Path {
    let shard = id.get(..2).unwrap_or("00");
    Path::from(format!("{LISTS_DIR}/{shard}/{id}"))
}

/// Reads one chunk, checking it holds what `chunk` says.
///
/// # Errors
/// [`RepositoryError::Corrupt`] naming the chunk when it does not open, decode or match.
pub async fn read_chunk(
    repository: &Repository,
    chunk: &ChunkRef,
) -> RepositoryResult<Vec<ListItem>> {
    let (name, plaintext) = match &chunk.inline {
        Some(inline) => {
            let name = format!("an inline chunk ({}..{})", chunk.first, chunk.last);
            let bytes = hex::decode(inline).map_err(|error| RepositoryError::Corrupt {
                key: name.clone(),
                reason: error.to_string(),
            })?;
            (name, bytes)
        }
        None => {
            let path = chunk_path(&chunk.id);
            let sealed =
                crate::repository::metadata::read_all(repository.store.as_ref(), &path).await?;
            let key = repository.key.clone();
            let opened = tokio::task::spawn_blocking(move || metadata::open(&key, &path, &sealed))
                .await
                .map_err(|error| {
                    RepositoryError::WriteFailed(format!(
                        "opening a list chunk was interrupted: {error}"
                    ))
                })??;
            (chunk_path(&chunk.id).to_string(), opened)
        }
    };
    let corrupt = |reason: String| RepositoryError::Corrupt { key: name.clone(), reason };
    let items = decode_chunk(&plaintext).map_err(&corrupt)?;
    let deleted = items.iter().filter(|item| matches!(item, ListItem::Deleted(_))).count();
    let (first, last) = (items.first().map(ListItem::key), items.last().map(ListItem::key));
    if items.len() as u64 != chunk.num_items
        || deleted as u64 != chunk.num_deleted
        || (!items.is_empty() && (first, last) != (Some(&*chunk.first), Some(&*chunk.last)))
    {
        return Err(corrupt(format!(
            "holds {} items ({deleted} deletions) from `{}` to `{}`, its record says {} ({}) from `{}` to `{}`",
            items.len(),
            first.unwrap_or(""),
            last.unwrap_or(""),
            chunk.num_items,
            chunk.num_deleted,
            chunk.first,
            chunk.last
        )));
    }
    Ok(items)
}

/// Writes a run chunk by chunk as sorted items come in. Memory: one chunk.
pub struct RunWriter {
    store: Arc<dyn object_store::ObjectStore>,
    key: Arc<MasterKey>,
    encoder: ChunkEncoder,
    num_deleted: u64,
    num_bytes: u64,
    chunks: Vec<ChunkRef>,
    /// Bytes of chunks written (plaintext, before zstd; inline ones too), for reports.
    bytes_written: u64,
}

impl RunWriter {
    /// A writer into `repository`.
    pub fn new(repository: &Repository) -> Self {
        Self {
            store: repository.store.clone(),
            key: repository.key.clone(),
            encoder: ChunkEncoder::default(),
            num_deleted: 0,
            num_bytes: 0,
            chunks: Vec::new(),
            bytes_written: 0,
        }
    }

    /// Appends `item` (keys strictly increasing), writing a chunk when one is full.
    ///
    /// # Errors
    /// [`RepositoryError`] when a chunk cannot be written, or an item out of key order.
    pub async fn push(&mut self, item: &ListItem) -> RepositoryResult<()> {
        self.encoder
            .push(item)
            .map_err(|reason| RepositoryError::Corrupt { key: LISTS_DIR.to_string(), reason })?;
        match item {
            ListItem::Deleted(_) => self.num_deleted += 1,
            ListItem::Object(entry) => self.num_bytes += entry.size,
        }
        if self.encoder.count() >= CHUNK_ITEMS || self.encoder.encoded_len() >= CHUNK_BYTES {
            self.cut().await?;
        }
        Ok(())
    }

    /// Ends the current chunk now (a progress save: what is cut can be named in a record).
    ///
    /// # Errors
    /// [`RepositoryError`] when the chunk cannot be written.
    pub async fn cut(&mut self) -> RepositoryResult<()> {
        let Some((first, last)) = self.encoder.key_range() else { return Ok(()) };
        let num_items = self.encoder.count();
        let inline_ok = self.encoder.encoded_len() <= INLINE_BYTES;
        let plaintext = self.encoder.finish();
        self.bytes_written += plaintext.len() as u64;
        let (id, inline) = if inline_ok {
            (String::new(), Some(hex::encode(&plaintext)))
        } else {
            (self.write(plaintext).await?, None)
        };
        self.chunks.push(ChunkRef {
            id,
            inline,
            num_items,
            num_deleted: std::mem::take(&mut self.num_deleted),
            num_bytes: std::mem::take(&mut self.num_bytes),
            first,
            last,
        });
        Ok(())
    }

    async fn write(&mut self, plaintext: Vec<u8>) -> RepositoryResult<String> {
        let key = self.key.clone();
        let (path, sealed) = tokio::task::spawn_blocking(move || {
            let id = hex::encode(key.list_chunk_id(&plaintext));
            let path = chunk_path(&id);
            metadata::seal(&key, &path, &plaintext).map(|sealed| (path, sealed))
        })
        .await
        .map_err(|error| {
            RepositoryError::WriteFailed(format!("sealing a list chunk was interrupted: {error}"))
        })??;
        let id = path.filename().unwrap_or_default().to_string();
        object_store::ObjectStoreExt::put(self.store.as_ref(), &path, sealed.into())
            .await
            .map_err(RepositoryError::store(path.to_string()))?;
        Ok(id)
    }

    /// The chunks ended so far.
    pub fn chunks(&self) -> &[ChunkRef] {
        &self.chunks
    }

    /// Plaintext bytes of the chunks ended so far (files and inline).
    pub fn bytes_written(&self) -> u64 {
        self.bytes_written
    }

    /// Ends the run.
    ///
    /// # Errors
    /// [`RepositoryError`] when the last chunk cannot be written.
    pub async fn finish(mut self) -> RepositoryResult<(RunRef, u64)> {
        self.cut().await?;
        Ok((RunRef { chunks: self.chunks }, self.bytes_written))
    }
}
