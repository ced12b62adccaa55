//! bk's `file://` store: object_store's [`LocalFileSystem`], listed at one `stat` per file
//! ([`crate::local_list`]), with early writeback and page recycling: each file of at least
//! [`EARLY_WRITEBACK_MIN`] bytes is handed to the disk as soon as it is written, instead of all
//! at the task's closing `syncfs`, and its cached pages are let go once written back, so the
//! next files are written into recycled pages rather than fresh ones.
//!
//! Why: with the kernel's default dirty limits (10 % of RAM before background writeback
//! starts, 30 s before a page counts as old) a restore or backup of a few GiB on a large
//! machine writes everything into the page cache first and only then, in the closing `syncfs`,
//! to disk; the two never overlap. Measured on the bench's 2 GiB restore: 4.2 s filling the
//! cache with the disk idle, then 1.5 s of writeback. `posix_fadvise(POSIX_FADV_DONTNEED)` on a
//! just-written file starts its writeback without waiting for it, so the disk writes while the
//! next files are decrypted and copied (RocksDB's `bytes_per_sync` does the same).
//!
//! The same call made again once [`RECYCLE_AFTER`] more bytes were written, when the file's
//! writeback has long finished, drops its now clean pages (pages under writeback are skipped,
//! which is why the first call alone frees nothing). Writing into pages the kernel just freed
//! is much cheaper than into fresh ones: on this project's VMs, whose free memory the host
//! takes back, 2 GiB of 16 MiB files took 6.5–8 s into fresh pages and 1.0 s recycled (the
//! bench's "page recycling off" rows measure what it buys bk). It also keeps a backup or restore
//! from pushing the database's hot data out of the cache. Durability still comes only from the
//! closing `syncfs`: these are hints, and a refused hint is ignored.
//!
//! Small files are left to the `syncfs`: kicking each 8 KiB file on its own made writing 8,000
//! of them 3× slower here, while from 256 KiB up the kick wins.

use std::collections::VecDeque;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use futures::stream::BoxStream;
use futures::{StreamExt, TryStreamExt};
use object_store::local::LocalFileSystem;
use object_store::path::Path;
use object_store::{
    CopyOptions, GetOptions, GetResult, ListResult, MultipartUpload, ObjectMeta, ObjectStore,
    PutMultipartOptions, PutOptions, PutPayload, PutResult, RenameOptions, Result, UploadPart,
};

/// Files smaller than this are written back by the task's closing `syncfs` only.
pub const EARLY_WRITEBACK_MIN: u64 = 1 << 20;

/// A written file's pages are dropped once this many more bytes were written after it.
pub const RECYCLE_AFTER: u64 = 128 << 20;

/// A [`LocalFileSystem`] whose listings cost one `stat` per file and whose written files start
/// their writeback at once and give their pages back soon after (see the module).
#[derive(Debug)]
pub struct LocalStore {
    inner: Arc<LocalFileSystem>,
    /// The store's root, canonical (as `inner` holds it); `None` when it cannot be resolved,
    /// and then listings are `inner`'s own.
    root: Option<PathBuf>,
    /// `None`: no writeback hints (a bench-only switch measures what they buy).
    recycling: Option<Arc<Recycling>>,
    /// Where each listed directory's memo is kept (a node store's, in the worker's cache);
    /// `None`: every listing reads every directory.
    listing_memos: Option<PathBuf>,
    /// The store is written in whole files only (see [`crate::local_list::list_tree`]).
    whole_file_writes: bool,
}

impl LocalStore {
    /// Wraps `inner`, rooted at `root`; `recycle_pages`: give written files' pages hints.
    pub fn new(inner: LocalFileSystem, root: &std::path::Path, recycle_pages: bool) -> Self {
        Self {
            inner: Arc::new(inner),
            root: std::fs::canonicalize(root).ok(),
            recycling: recycle_pages.then(Arc::default),
            listing_memos: None,
            whole_file_writes: false,
        }
    }

    /// Keeps the memos of its listings under `dir`: a listing then skips the directories
    /// unchanged since the last one (see [`crate::local_list`]), and, when the store is written
    /// in `whole_file_writes` only (InfluxDB 3's, not QuestDB's), their files' `stat`s too.
    #[must_use]
    pub fn with_listing_memos(mut self, dir: PathBuf, whole_file_writes: bool) -> Self {
        self.listing_memos = Some(dir);
        self.whole_file_writes = whole_file_writes;
        self
    }

    /// The memo file of a listing of `dir`: named by the directory, so each prefix listed has
    /// its own.
    fn memo_of(&self, dir: &std::path::Path) -> Option<PathBuf> {
        let memos = self.listing_memos.as_ref()?;
        let hash = blake3::hash(dir.as_os_str().as_encoded_bytes());
        Some(memos.join(hex::encode(&hash.as_bytes()[..16])))
    }

    fn file_of(&self, location: &Path) -> Option<PathBuf> {
        self.inner.path_to_filesystem(location).ok()
    }

    /// Where `prefix` is on disk and its key, as `inner` resolves it; `None` when it does not
    /// resolve (then `inner` lists it, and reports what is wrong).
    fn listed_dir(&self, prefix: Option<&Path>) -> Option<(PathBuf, String)> {
        let root = self.root.as_ref()?;
        let prefix = match prefix {
            Some(prefix) if !prefix.as_ref().is_empty() => prefix,
            _ => return Some((root.clone(), String::new())),
        };
        let dir = self.inner.path_to_filesystem(prefix).ok()?;
        let key = dir.strip_prefix(root).ok()?.to_str()?.to_string();
        Some((dir, key))
    }

    async fn written(&self, location: &Path, size: u64) {
        if let Some(recycling) = &self.recycling {
            if size >= EARLY_WRITEBACK_MIN {
                if let Some(path) = self.file_of(location) {
                    recycling.written(path, size).await;
                }
            }
        }
    }
}

/// The files whose writeback was started and whose pages are still to be dropped, oldest first.
#[derive(Debug, Default)]
struct Recycling {
    pending: Mutex<Pending>,
}

#[derive(Debug, Default)]
struct Pending {
    files: VecDeque<(PathBuf, u64)>,
    bytes: u64,
}

impl Recycling {
    /// Starts `path`'s writeback and drops the pages of the files written long enough before.
    async fn written(self: &Arc<Self>, path: PathBuf, size: u64) {
        let recycling = self.clone();
        let _ = tokio::task::spawn_blocking(move || {
            advise_dont_need(&path);
            let due = recycling.push(path, size);
            due.iter().for_each(|path| advise_dont_need(path));
        })
        .await;
    }

    fn push(&self, path: PathBuf, size: u64) -> Vec<PathBuf> {
        let Ok(mut pending) = self.pending.lock() else { return Vec::new() };
        pending.files.push_back((path, size));
        pending.bytes += size;
        let mut due = Vec::new();
        while let Some(&(_, oldest)) = pending.files.front() {
            if pending.bytes - oldest < RECYCLE_AFTER {
                break;
            }
            pending.bytes -= oldest;
            due.extend(pending.files.pop_front().map(|(path, _)| path));
        }
        due
    }
}

impl std::fmt::Display for LocalStore {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.inner.fmt(formatter)
    }
}

/// `POSIX_FADV_DONTNEED` on `path`: starts writing its dirty pages without waiting for them
/// and drops its clean ones. Best effort (a file deleted meanwhile is no error).
fn advise_dont_need(path: &std::path::Path) {
    if let Ok(file) = std::fs::File::open(path) {
        if let Err(error) = rustix::fs::fadvise(&file, 0, None, rustix::fs::Advice::DontNeed) {
            tracing::debug!(path = %path.display(), %error, "writeback hint refused");
        }
    }
}

#[async_trait]
impl ObjectStore for LocalStore {
    async fn put_opts(
        &self,
        location: &Path,
        payload: PutPayload,
        opts: PutOptions,
    ) -> Result<PutResult> {
        let size = payload.content_length() as u64;
        let result = self.inner.put_opts(location, payload, opts).await?;
        self.written(location, size).await;
        Ok(result)
    }

    async fn put_multipart_opts(
        &self,
        location: &Path,
        opts: PutMultipartOptions,
    ) -> Result<Box<dyn MultipartUpload>> {
        let inner = self.inner.put_multipart_opts(location, opts).await?;
        let Some(recycling) = self.recycling.clone() else { return Ok(inner) };
        let path = self.file_of(location);
        Ok(Box::new(WritebackUpload { inner, path, size: 0, recycling }))
    }

    async fn get_opts(&self, location: &Path, options: GetOptions) -> Result<GetResult> {
        self.inner.get_opts(location, options).await
    }

    fn delete_stream(
        &self,
        locations: BoxStream<'static, Result<Path>>,
    ) -> BoxStream<'static, Result<Path>> {
        self.inner.delete_stream(locations)
    }

    fn list(&self, prefix: Option<&Path>) -> BoxStream<'static, Result<ObjectMeta>> {
        match self.listed_dir(prefix) {
            Some((dir, key)) => {
                let memo = self.memo_of(&dir);
                crate::local_list::list_tree(dir, key, memo, self.whole_file_writes)
            }
            None => self.inner.list(prefix),
        }
    }

    fn list_with_offset(
        &self,
        prefix: Option<&Path>,
        offset: &Path,
    ) -> BoxStream<'static, Result<ObjectMeta>> {
        let offset = offset.clone();
        self.list(prefix).try_filter(move |meta| std::future::ready(meta.location > offset)).boxed()
    }

    async fn list_with_delimiter(&self, prefix: Option<&Path>) -> Result<ListResult> {
        self.inner.list_with_delimiter(prefix).await
    }

    async fn copy_opts(&self, from: &Path, to: &Path, options: CopyOptions) -> Result<()> {
        self.inner.copy_opts(from, to, options).await
    }

    async fn rename_opts(&self, from: &Path, to: &Path, options: RenameOptions) -> Result<()> {
        self.inner.rename_opts(from, to, options).await
    }
}

/// A local multipart upload whose file starts its writeback once completed.
#[derive(Debug)]
struct WritebackUpload {
    inner: Box<dyn MultipartUpload>,
    path: Option<PathBuf>,
    size: u64,
    recycling: Arc<Recycling>,
}

#[async_trait]
impl MultipartUpload for WritebackUpload {
    fn put_part(&mut self, data: PutPayload) -> UploadPart {
        self.size += data.content_length() as u64;
        self.inner.put_part(data)
    }

    async fn complete(&mut self) -> Result<PutResult> {
        let result = self.inner.complete().await?;
        if self.size >= EARLY_WRITEBACK_MIN {
            if let Some(path) = self.path.clone() {
                self.recycling.written(path, self.size).await;
            }
        }
        Ok(result)
    }

    async fn abort(&mut self) -> Result<()> {
        self.inner.abort().await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use object_store::ObjectStoreExt;

    #[test]
    fn test_a_file_is_due_for_dropping_once_enough_was_written_after_it() {
        let recycling = Recycling::default();
        let mib = 1 << 20;
        assert!(recycling.push("a".into(), 100 * mib).is_empty(), "nothing written after `a`");
        assert!(recycling.push("b".into(), 127 * mib).is_empty(), "127 MiB after `a`");
        assert_eq!(recycling.push("c".into(), mib), vec![PathBuf::from("a")], "128 MiB after `a`");
        let due = recycling.push("d".into(), 300 * mib);
        assert_eq!(due, vec![PathBuf::from("b"), PathBuf::from("c")], "both far enough back");
        assert!(recycling.push("e".into(), mib).is_empty(), "1 MiB after `d`");
    }

    #[tokio::test]
    async fn test_written_files_read_back_whole_through_both_put_paths() {
        let dir = tempfile::tempdir().unwrap();
        let local = LocalFileSystem::new_with_prefix(dir.path()).unwrap();
        let store = LocalStore::new(local, dir.path(), true);
        let big = vec![7u8; (EARLY_WRITEBACK_MIN * 3) as usize];
        store.put(&Path::from("a/big"), big.clone().into()).await.unwrap();
        store.put(&Path::from("a/small"), vec![1u8; 10].into()).await.unwrap();
        let mut upload = store.put_multipart(&Path::from("b/parts")).await.unwrap();
        upload.put_part(big[..(EARLY_WRITEBACK_MIN as usize)].to_vec().into()).await.unwrap();
        upload.put_part(big[(EARLY_WRITEBACK_MIN as usize)..].to_vec().into()).await.unwrap();
        upload.complete().await.unwrap();
        for (key, want) in [("a/big", big.as_slice()), ("a/small", &[1u8; 10]), ("b/parts", &big)] {
            let read = store.get(&Path::from(key)).await.unwrap().bytes().await.unwrap();
            assert_eq!(read.as_ref(), want, "{key}");
        }
        assert!(store.to_string().contains("LocalFileSystem"), "{store}");
    }
}
