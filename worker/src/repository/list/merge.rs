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
