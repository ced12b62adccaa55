//! Reading runs back in key order: one run at a time ([`RunCursor`]), or a stack of runs as
//! the list they make together ([`MergedView`]: newest wins, deletions remove). Memory: one
//! chunk per run.

use std::collections::VecDeque;

use super::entry::{ListItem, ObjectEntry};
use super::run::{read_chunk, ChunkRef, RunRef};
use crate::error::RepositoryResult;
use crate::repository::manifest::Scope;
use crate::repository::opened::Repository;

/// Streams one run's items whose keys start with a prefix, in key order, reading one chunk at
/// a time and skipping chunks that cannot hold the prefix unread.
pub struct RunCursor {
    repository: Repository,
    chunks: VecDeque<ChunkRef>,
    items: std::vec::IntoIter<ListItem>,
    head: Option<ListItem>,
    prefix: String,
    done: bool,
}

impl RunCursor {
    /// A cursor over the items of `run` under `prefix` (empty: all).
    pub fn new(repository: &Repository, run: &RunRef, prefix: &str) -> Self {
        let chunks = run.chunks.iter().filter(|chunk| chunk.may_hold(prefix)).cloned().collect();
        Self {
            repository: repository.clone(),
            chunks,
            items: Vec::new().into_iter(),
            head: None,
            prefix: prefix.to_string(),
            done: false,
        }
    }

    /// A cursor over the chunks of `run` that may hold one of `keys` (sorted): every item of
    /// those chunks, in key order; the others are never read. What a probe for a few keys in
    /// a long list costs: the chunks they fall in, not the list.
    pub fn for_keys(repository: &Repository, run: &RunRef, keys: &[String]) -> Self {
        let chunks = run
            .chunks
            .iter()
            .filter(|chunk| {
                let first = keys.partition_point(|key| key.as_str() < chunk.first.as_str());
                keys.get(first).is_some_and(|key| key.as_str() <= chunk.last.as_str())
            })
            .cloned()
            .collect();
        Self {
            repository: repository.clone(),
            chunks,
            items: Vec::new().into_iter(),
            head: None,
            prefix: String::new(),
            done: false,
        }
    }

    /// The next item, without taking it.
    ///
    /// # Errors
    /// [`crate::error::RepositoryError`] when a chunk cannot be read.
    pub async fn peek(&mut self) -> RepositoryResult<Option<&ListItem>> {
        while self.head.is_none() && !self.done {
            match self.items.next() {
                Some(item) if item.key() < self.prefix.as_str() => continue,
                Some(item) if item.key().starts_with(&self.prefix) => self.head = Some(item),
                Some(_) => self.done = true, // past the prefix: nothing more under it
                None => match self.chunks.pop_front() {
                    Some(chunk) => {
                        self.items = read_chunk(&self.repository, &chunk).await?.into_iter()
                    }
                    None => self.done = true,
                },
            }
        }
        Ok(self.head.as_ref())
    }

    /// The next item.
    ///
    /// # Errors
    /// As [`RunCursor::peek`].
    pub async fn next(&mut self) -> RepositoryResult<Option<ListItem>> {
        self.peek().await?;
        Ok(self.head.take())
    }
}

/// A stack of runs read as one list: for each key, the newest run's item counts; a deletion
/// there means the key is not in the list. Optionally filtered to a scope.
pub struct MergedView {
    /// Oldest first.
    cursors: Vec<RunCursor>,
    scope: Option<Scope>,
}

impl MergedView {
    /// The list `runs` (oldest first) make, under `prefix`.
    pub fn new(repository: &Repository, runs: &[RunRef], prefix: &str) -> Self {
        let cursors = runs.iter().map(|run| RunCursor::new(repository, run, prefix)).collect();
        Self { cursors, scope: None }
    }

    /// The list `runs` make, read only in the chunks that may hold one of `keys` (sorted):
    /// it yields each of `keys` the list holds, and other keys of those chunks.
    pub fn for_keys(repository: &Repository, runs: &[RunRef], keys: &[String]) -> Self {
        let cursors = runs.iter().map(|run| RunCursor::for_keys(repository, run, keys)).collect();
        Self { cursors, scope: None }
    }

    /// An empty list.
    pub fn empty() -> Self {
        Self { cursors: Vec::new(), scope: None }
    }

    /// Only the keys `scope` holds.
    pub fn in_scope(mut self, scope: &Scope) -> Self {
        self.scope = Some(scope.clone());
        self
    }

    /// Whether no run is read (an empty list for certain).
    pub fn is_empty(&self) -> bool {
        self.cursors.is_empty()
    }

    /// The next object of the list, in key order.
    ///
    /// # Errors
    /// [`crate::error::RepositoryError`] when a chunk cannot be read.
    pub async fn next(&mut self) -> RepositoryResult<Option<ObjectEntry>> {
        loop {
            let Some(item) = self.next_item().await? else { return Ok(None) };
            match item {
                ListItem::Deleted(_) => continue,
                ListItem::Object(entry) => {
                    if self.scope.as_ref().is_some_and(|scope| !scope.holds(&entry.key)) {
                        continue;
                    }
                    return Ok(Some(entry));
                }
            }
        }
    }

    /// The newest item of the smallest key any run holds next.
    async fn next_item(&mut self) -> RepositoryResult<Option<ListItem>> {
        for cursor in &mut self.cursors {
            cursor.peek().await?;
        }
        let mut smallest: Option<(usize, &str)> = None;
        for (index, cursor) in self.cursors.iter().enumerate() {
            let Some(item) = cursor.head.as_ref() else { continue };
            // `<=`: a newer run (a higher index) wins a tie.
            if smallest.is_none_or(|(_, key)| item.key() <= key) {
                smallest = Some((index, item.key()));
            }
        }
        let Some((newest, key)) = smallest else { return Ok(None) };
        let key = key.to_string();
        let mut taken = None;
        for (index, cursor) in self.cursors.iter_mut().enumerate() {
            if cursor.head.as_ref().is_some_and(|item| item.key() == key) {
                let item = cursor.head.take();
                if index == newest {
                    taken = item;
                }
            }
        }
        Ok(taken)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::repository::list::RunWriter;
    use crate::repository::test_support::memory_repository;

    fn object(key: String, size: u64) -> ListItem {
        ListItem::Object(ObjectEntry { key, size, modified_ns: 1, etag: None, blobs: Vec::new() })
    }

    async fn write(repository: &Repository, items: Vec<ListItem>) -> RunRef {
        let mut writer = RunWriter::new(repository);
        for item in &items {
            writer.push(item).await.unwrap();
        }
        writer.finish().await.unwrap().0
    }

    #[tokio::test]
    async fn test_a_probe_for_a_few_keys_reads_only_their_chunks_and_sees_later_runs() {
        let (repository, _cache) = memory_repository(1 << 20).await;
        let key = |n: u32| format!("n/dbs/{n:07}.parquet");
        let base = write(&repository, (0..20_000).map(|n| object(key(n), 1)).collect()).await;
        assert!(base.chunks.len() >= 4, "a base of several chunks: {}", base.chunks.len());
        // A later run removes one probed key and rewrites another.
        let delta =
            write(&repository, vec![ListItem::Deleted(key(10)), object(key(15_000), 2)]).await;
        let probed = vec![key(10), key(15_000), key(15_001), "n/dbs/absent".to_string()];
        let runs = [base.clone(), delta];

        let chunks_read = RunCursor::for_keys(&repository, &base, &probed).chunks.len();
        assert_eq!(chunks_read, 2, "only the chunks holding the keys are read");
        let mut view = MergedView::for_keys(&repository, &runs, &probed);
        let mut found = Vec::new();
        while let Some(entry) = view.next().await.unwrap() {
            if probed.binary_search(&entry.key).is_ok() {
                found.push((entry.key, entry.size));
            }
        }
        assert_eq!(found, [(key(15_000), 2), (key(15_001), 1)]);
    }
}
