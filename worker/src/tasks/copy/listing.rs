//! Listings in key order: what a streamed copy merges with the parent's sorted list.
//!
//! S3, Azure, GCS and object_store's in-memory store list in key order; local directories do
//! through [`crate::local_list`]. A prefix whose part is copied by other tasks (a node's
//! catch-all task, which must not list its WAL again) is listed a level at a time around those
//! directories, the level's objects and directories interleaved in key order.

use std::sync::Arc;

use bk_proto::model::ExcludeRule;
use futures::{Stream, StreamExt, TryStreamExt};
use object_store::path::Path;
use object_store::{ObjectMeta, ObjectStore, ObjectStoreExt};
use tokio::sync::mpsc;

use crate::error::TaskError;
use crate::tasks::context::TaskContext;

/// Objects buffered between the listing and the copy.
const LISTED_AHEAD: usize = 1024;

/// A listing running in the background, sending objects in key order.
pub struct Listing {
    /// The objects, in key order (an error ends it).
    pub objects: mpsc::Receiver<Result<ObjectMeta, TaskError>>,
    /// Per exclusion rule, how many objects it left out (once the listing ended).
    pub excluded: tokio::task::JoinHandle<Vec<u64>>,
}

/// Lists every object under `prefix` (a directory-like prefix ending in `/`) except those under
/// `exclude`: rules that are not recorded and name a directory are not even listed; the others
/// are listed and counted.
pub fn spawn_listing(context: &TaskContext, prefix: &str, exclude: &[ExcludeRule]) -> Listing {
    let (sender, objects) = mpsc::channel(LISTED_AHEAD);
    let source = context.source.clone();
    let prefix = prefix.to_string();
    let exclude = exclude.to_vec();
    let excluded = tokio::spawn(async move {
        let mut counts = vec![0u64; exclude.len()];
        let skipped: Vec<String> = exclude
            .iter()
            .filter(|rule| !rule.record && rule.prefix.ends_with('/'))
            .map(|rule| rule.prefix.clone())
            .collect();
        {
            let mut select = |meta: ObjectMeta| {
                let key = meta.location.as_ref();
                match exclude.iter().position(|rule| key.starts_with(&rule.prefix)) {
                    Some(index) => {
                        counts[index] += 1;
                        None
                    }
                    None => Some(meta),
                }
            };
            if let Err(error) = send_sorted(&source, &prefix, &skipped, &sender, &mut select).await
            {
                let _ = sender.send(Err(error)).await;
            }
        }
        counts
    });
    Listing { objects, excluded }
}

/// Sends the objects under `prefix` in key order, never listing under `skipped` directories.
/// Returns early (Ok) when the receiver is gone.
async fn send_sorted(
    source: &Arc<dyn ObjectStore>,
    prefix: &str,
    skipped: &[String],
    sender: &mpsc::Sender<Result<ObjectMeta, TaskError>>,
    select: &mut (dyn FnMut(ObjectMeta) -> Option<ObjectMeta> + Send),
) -> Result<(), TaskError> {
    let source_error = |source| TaskError::Source { key: prefix.to_string(), source };
    if !skipped.iter().any(|skip| skip.len() > prefix.len() && skip.starts_with(prefix)) {
        let mut listed = source.list(Some(&Path::from(prefix.trim_end_matches('/'))));
        while let Some(meta) = listed.next().await {
            if let Some(meta) = select(meta.map_err(source_error)?) {
                if sender.send(Ok(meta)).await.is_err() {
                    return Ok(());
                }
            }
        }
        return Ok(());
    }
    let level = source
        .list_with_delimiter(Some(&Path::from(prefix.trim_end_matches('/'))))
        .await
        .map_err(source_error)?;
    // Objects and directories of this level in key order: every key under a directory starts
    // with `dir/`, so the directory sorts by that.
    let mut events: Vec<(String, Option<ObjectMeta>)> = level
        .objects
        .into_iter()
        .map(|meta| (meta.location.to_string(), Some(meta)))
        .chain(level.common_prefixes.into_iter().map(|dir| (format!("{dir}/"), None)))
        .collect();
    events.sort_by(|a, b| a.0.cmp(&b.0));
    for (key, meta) in events {
        match meta {
            Some(meta) => {
                if let Some(meta) = select(meta) {
                    if sender.send(Ok(meta)).await.is_err() {
                        return Ok(());
                    }
                }
            }
            None if skipped.iter().any(|skip| key.starts_with(skip.as_str())) => {}
            None => Box::pin(send_sorted(source, &key, skipped, sender, select)).await?,
        }
    }
    Ok(())
}

/// Lists every object under `prefix` (a directory-like prefix ending in `/`, or empty).
pub fn list_prefix(
    context: &TaskContext,
    prefix: &str,
) -> impl Stream<Item = Result<ObjectMeta, TaskError>> + 'static {
    let path = Path::from(prefix.trim_end_matches('/'));
    let key = prefix.to_string();
    context
        .source
        .list(Some(&path))
        .map_err(move |source| TaskError::Source { key: key.clone(), source })
}

/// Returns the object at `key`, or `None` if it does not exist.
///
/// # Errors
/// [`TaskError::Source`] when the store fails otherwise.
pub async fn head_if_exists(
    context: &TaskContext,
    key: &str,
) -> Result<Option<ObjectMeta>, TaskError> {
    match context.source.head(&Path::from(key)).await {
        Ok(meta) => Ok(Some(meta)),
        Err(object_store::Error::NotFound { .. }) => Ok(None),
        Err(source) => Err(TaskError::Source { key: key.to_string(), source }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use object_store::memory::InMemory;
    use object_store::PutPayload;

    #[tokio::test]
    async fn test_a_level_wise_listing_skips_directories_and_stays_in_key_order() {
        let store = Arc::new(InMemory::new());
        for key in [
            "n/a-b",
            "n/a/x",
            "n/d.txt",
            "n/d/1",
            "n/d0",
            "n/wal/1.wal",
            "n/wal/2.wal",
            "n/dbs/x/1.parquet",
            "n/table-snapshots/t/1",
            "o/other",
        ] {
            store.put(&Path::from(key), PutPayload::from_static(b"1")).await.unwrap();
        }
        let source: Arc<dyn ObjectStore> = store;
        let (sender, mut receiver) = mpsc::channel(100);
        let skipped = vec!["n/wal/".to_string(), "n/dbs/".to_string()];
        let mut counted = 0;
        let mut select = |meta: ObjectMeta| {
            if meta.location.as_ref().starts_with("n/table-snapshots/") {
                counted += 1;
                None
            } else {
                Some(meta)
            }
        };
        send_sorted(&source, "n/", &skipped, &sender, &mut select).await.unwrap();
        drop(sender);
        let mut keys = Vec::new();
        while let Some(meta) = receiver.recv().await {
            keys.push(meta.unwrap().location.to_string());
        }
        assert_eq!(keys, ["n/a-b", "n/a/x", "n/d.txt", "n/d/1", "n/d0"]);
        assert_eq!(counted, 1);
    }
}
