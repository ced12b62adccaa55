//! A worker's local copy of index partitions: a redb file per repository, on local disk.
//!
//! Why on disk: a worker runs next to its database node and must not take its memory, while a
//! repository serving a cluster for years holds tens of millions of blobs (in memory, bk's index
//! cost about 100 bytes a blob). redb keeps one table per partition in a B-tree file and at most
//! [`CACHE_BYTES`] of its pages in memory; measured here on 250,000 blobs: 1.4 µs to add one,
//! 0.9 µs to look one up (a backup looks up each new chunk's blob once).
//!
//! The cache only ever says what index files said. It records which files of a partition it
//! imported; when one of them is gone from the repository (a prune rewrote the index), the
//! partition is emptied and imported again, so a blob a prune removed is never found here.
//! Failure to open the file (another process holds it, a full disk) falls back to an in-memory
//! database for the life of the worker, with a warning: slower to fill, never wrong.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use redb::{Database, ReadOnlyTable, ReadableDatabase, ReadableTable, TableDefinition};

use super::crypto::BlobId;
use super::index::IndexEntry;
use super::pack::{PackEntry, PackId};
use crate::error::{RepositoryError, RepositoryResult};

/// redb's page cache per repository (its write buffer is up to half of it). Pages it does
/// not hold are read from the kernel's page cache; at 32 MiB the full cache was a third of a
/// worker's live heap after a backup of a quarter of a million objects (heaptrack,
/// `bench --objects 1000000`).
const CACHE_BYTES: usize = 16 << 20;
/// `<partition>/<index file name>` of every imported file.
const FILES: TableDefinition<&str, ()> = TableDefinition::new("files");

type Location = [u8; 33];

/// The local index of one repository (all the partitions this worker needed so far).
pub struct LocalIndex {
    /// Shared with the views made of it: a table outlives nothing it reads from.
    database: Arc<Database>,
    /// Where it lives (`None`: in memory); named in errors.
    path: Option<PathBuf>,
}

impl std::fmt::Debug for LocalIndex {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter.debug_struct("LocalIndex").field("path", &self.path).finish()
    }
}

impl LocalIndex {
    /// Opens (creating it) the cache at `path`, or an in-memory one when that fails.
    pub fn open_or_in_memory(path: &Path) -> Self {
        let opened = path
            .parent()
            .map_or(Ok(()), std::fs::create_dir_all)
            .map_err(|error| error.to_string())
            .and_then(|()| {
                let mut builder = Database::builder();
                builder.set_cache_size(CACHE_BYTES);
                builder.create(path).map_err(|error| error.to_string())
            });
        match opened {
            Ok(database) => Self { database: Arc::new(database), path: Some(path.to_path_buf()) },
            Err(reason) => {
                tracing::warn!(path = %path.display(), %reason, "cannot open the local index cache: keeping it in memory instead (it is filled again after every restart)");
                Self::in_memory()
            }
        }
    }

    /// Whether nothing but its owner uses it: an on-disk cache that no view or other holder
    /// reads can be closed (its pages freed) and opened again when next needed. One in memory
    /// is never idle in this sense: closing it would lose its entries.
    pub fn is_idle_on_disk(&self) -> bool {
        self.path.is_some() && Arc::strong_count(&self.database) == 1
    }

    /// A cache in memory.
    pub fn in_memory() -> Self {
        let mut builder = Database::builder();
        builder.set_cache_size(CACHE_BYTES);
        let database = builder
            .create_with_backend(redb::backends::InMemoryBackend::new())
            .unwrap_or_else(|error| unreachable!("an in-memory redb opens: {error}"));
        Self { database: Arc::new(database), path: None }
    }

    fn error(&self, error: impl std::fmt::Display) -> RepositoryError {
        let place =
            self.path.as_ref().map_or("in memory".to_string(), |path| path.display().to_string());
        RepositoryError::LocalCache(format!("local index cache ({place}): {error}"))
    }

    /// The index files of `partition` imported so far. Blocking.
    ///
    /// # Errors
    /// [`RepositoryError::LocalCache`] when the cache cannot be read.
    pub fn imported(&self, partition: &str) -> RepositoryResult<BTreeSet<String>> {
        let txn = self.database.begin_read().map_err(|error| self.error(error))?;
        let files = match txn.open_table(FILES) {
            Ok(files) => files,
            Err(redb::TableError::TableDoesNotExist(_)) => return Ok(BTreeSet::new()),
            Err(error) => return Err(self.error(error)),
        };
        let start = format!("{partition}/");
        let mut names = BTreeSet::new();
        for row in files.range(start.as_str()..).map_err(|error| self.error(error))? {
            let (key, _) = row.map_err(|error| self.error(error))?;
            let Some(name) = key.value().strip_prefix(start.as_str()) else { break };
            names.insert(name.to_string());
        }
        Ok(names)
    }

    /// Empties `partition` (its blobs and its record of imported files). Blocking.
    ///
    /// # Errors
    /// [`RepositoryError::LocalCache`] when the cache cannot be written.
    pub fn clear(&self, partition: &str) -> RepositoryResult<()> {
        let txn = self.database.begin_write().map_err(|error| self.error(error))?;
        {
            let table_name = blobs_table(partition);
            match txn.delete_table(blobs_def(&table_name)) {
                Ok(_) => {}
                Err(error) => return Err(self.error(error)),
            }
            let mut files = txn.open_table(FILES).map_err(|error| self.error(error))?;
            let start = format!("{partition}/");
            let names: Vec<String> = files
                .range(start.as_str()..)
                .map_err(|error| self.error(error))?
                .map_while(|row| {
                    let key = row.ok()?.0.value().to_string();
                    key.starts_with(&start).then_some(key)
                })
                .collect();
            for name in names {
                files.remove(name.as_str()).map_err(|error| self.error(error))?;
            }
        }
        txn.commit().map_err(|error| self.error(error))
    }

    /// Adds index file `name` of `partition` with its entries, in one transaction. Blocking.
    ///
    /// # Errors
    /// [`RepositoryError::LocalCache`] when the cache cannot be written.
    pub fn import(
        &self,
        partition: &str,
        name: &str,
        entries: &[IndexEntry],
    ) -> RepositoryResult<()> {
        let mut sorted: Vec<&IndexEntry> = entries.iter().collect();
        sorted.sort_unstable_by_key(|entry| entry.entry.id);
        let txn = self.database.begin_write().map_err(|error| self.error(error))?;
        {
            let table_name = blobs_table(partition);
            let mut blobs =
                txn.open_table(blobs_def(&table_name)).map_err(|error| self.error(error))?;
            for entry in sorted {
                blobs
                    .insert(&entry.entry.id.0, &encode_location(entry))
                    .map_err(|error| self.error(error))?;
            }
            let mut files = txn.open_table(FILES).map_err(|error| self.error(error))?;
            files
                .insert(format!("{partition}/{name}").as_str(), ())
                .map_err(|error| self.error(error))?;
        }
        txn.commit().map_err(|error| self.error(error))
    }

    /// A consistent view of `partitions` as they are now, for lookups. Blocking.
    ///
    /// # Errors
    /// [`RepositoryError::LocalCache`] when the cache cannot be read.
    pub fn view(&self, partitions: &[String]) -> RepositoryResult<IndexView> {
        let txn = self.database.begin_read().map_err(|error| self.error(error))?;
        let mut tables = Vec::new();
        for partition in partitions {
            let table_name = blobs_table(partition);
            match txn.open_table(blobs_def(&table_name)) {
                Ok(table) => tables.push(table),
                Err(redb::TableError::TableDoesNotExist(_)) => {}
                Err(error) => return Err(self.error(error)),
            }
        }
        Ok(IndexView {
            tables: Arc::new(tables),
            unreadable: Arc::new(Vec::new()),
            _database: Some(self.database.clone()),
        })
    }
}

fn blobs_table(partition: &str) -> String {
    format!("blobs/{partition}")
}

/// The table of a partition's blobs, named `name` (see [`blobs_table`]).
fn blobs_def(name: &str) -> TableDefinition<'_, &'static [u8; 32], &'static Location> {
    TableDefinition::new(name)
}

fn encode_location(entry: &IndexEntry) -> Location {
    let mut out = [0u8; 33];
    out[..16].copy_from_slice(&entry.pack.0);
    out[16..24].copy_from_slice(&entry.entry.offset.to_le_bytes());
    out[24..28].copy_from_slice(&entry.entry.length.to_le_bytes());
    out[28..32].copy_from_slice(&entry.entry.raw_length.to_le_bytes());
    out[32] = entry.entry.flags;
    out
}

fn decode_location(id: BlobId, bytes: &Location) -> (PackId, PackEntry) {
    let u32_at =
        |at: usize| u32::from_le_bytes([bytes[at], bytes[at + 1], bytes[at + 2], bytes[at + 3]]);
    let mut pack = [0u8; 16];
    pack.copy_from_slice(&bytes[..16]);
    let mut offset = [0u8; 8];
    offset.copy_from_slice(&bytes[16..24]);
    let entry = PackEntry {
        id,
        offset: u64::from_le_bytes(offset),
        length: u32_at(24),
        raw_length: u32_at(28),
        flags: bytes[32],
    };
    (PackId(pack), entry)
}

/// Lookups in some partitions of a local index, as of one moment. Cheap to clone; lookups are
/// synchronous (about a microsecond; call them from blocking code or in small batches).
#[derive(Clone)]
pub struct IndexView {
    tables: Arc<Vec<ReadOnlyTable<&'static [u8; 32], &'static Location>>>,
    /// Index files of these partitions that did not open when the view was made, described.
    unreadable: Arc<Vec<String>>,
    /// Keeps the database open while the view is used (redb refuses reads once it is dropped).
    _database: Option<Arc<Database>>,
}

impl std::fmt::Debug for IndexView {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter.debug_struct("IndexView").field("partitions", &self.tables.len()).finish()
    }
}

impl IndexView {
    /// A view of nothing.
    pub fn empty() -> Self {
        Self { tables: Arc::new(Vec::new()), unreadable: Arc::new(Vec::new()), _database: None }
    }

    /// The same view, noting index files of its partitions that did not open (a blob missing
    /// from the view may be in one of them: messages name them).
    pub fn with_unreadable(mut self, unreadable: Vec<String>) -> Self {
        self.unreadable = Arc::new(unreadable);
        self
    }

    /// Index files of its partitions that did not open, described.
    pub fn unreadable(&self) -> &[String] {
        &self.unreadable
    }

    /// Why blob `id` may be missing from the view: the damaged index files, if any.
    pub fn why_missing(&self) -> String {
        match self.unreadable.first() {
            None => String::new(),
            Some(first) => format!(
                " ({} index file(s) of its partition do not open, e.g. {first})",
                self.unreadable.len()
            ),
        }
    }

    /// Where blob `id` is, if an index file says.
    pub fn get(&self, id: &BlobId) -> Option<(PackId, PackEntry)> {
        self.tables.iter().find_map(|table| {
            let guard = table.get(&id.0).ok()??;
            Some(decode_location(*id, guard.value()))
        })
    }

    /// Whether an index file lists blob `id`.
    pub fn contains(&self, id: &BlobId) -> bool {
        self.tables.iter().any(|table| table.get(&id.0).ok().flatten().is_some())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(byte: u8, pack: u8) -> IndexEntry {
        IndexEntry {
            pack: PackId([pack; 16]),
            entry: PackEntry {
                id: BlobId([byte; 32]),
                offset: 9,
                length: 10,
                raw_length: 11,
                flags: 1,
            },
        }
    }

    #[test]
    fn test_partitions_import_look_up_and_clear_apart() {
        let dir = tempfile::tempdir().unwrap();
        let index = LocalIndex::open_or_in_memory(&dir.path().join("cache/index.redb"));
        index.import("node-a", "f1", &[entry(1, 1), entry(2, 1)]).unwrap();
        index.import("node-a", "f2", &[entry(3, 2)]).unwrap();
        index.import("node-ab", "g1", &[entry(4, 3)]).unwrap();
        assert_eq!(index.imported("node-a").unwrap(), ["f1", "f2"].map(String::from).into());
        assert_eq!(index.imported("node-ab").unwrap(), ["g1"].map(String::from).into());
        assert!(index.imported("cluster").unwrap().is_empty());
        let view = index.view(&["node-a".to_string()]).unwrap();
        assert_eq!(view.get(&BlobId([3; 32])), Some((PackId([2; 16]), entry(3, 2).entry)));
        assert!(view.contains(&BlobId([1; 32])));
        assert!(!view.contains(&BlobId([4; 32])), "another partition is not looked in");
        let both = index.view(&["node-a".to_string(), "node-ab".to_string()]).unwrap();
        assert!(both.contains(&BlobId([4; 32])));
        index.clear("node-a").unwrap();
        assert!(index.imported("node-a").unwrap().is_empty());
        assert!(!index.view(&["node-a".to_string()]).unwrap().contains(&BlobId([1; 32])));
        assert!(view.contains(&BlobId([1; 32])), "an older view keeps its moment");
        assert_eq!(index.imported("node-ab").unwrap().len(), 1, "the other partition stays");
        drop(view);
        drop(index);
        assert!(both.contains(&BlobId([4; 32])), "a view keeps its database open");
        drop(both);
        let reopened = LocalIndex::open_or_in_memory(&dir.path().join("cache/index.redb"));
        assert!(reopened.view(&["node-ab".to_string()]).unwrap().contains(&BlobId([4; 32])));
    }

    #[test]
    fn test_a_cache_that_cannot_be_opened_is_kept_in_memory() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("index.redb");
        let first = LocalIndex::open_or_in_memory(&path);
        let second = LocalIndex::open_or_in_memory(&path); // redb's file lock refuses a second
        assert!(first.path.is_some());
        assert!(second.path.is_none());
        second.import("cluster", "f", &[entry(7, 7)]).unwrap();
        assert!(second.view(&["cluster".to_string()]).unwrap().contains(&BlobId([7; 32])));
    }
}
