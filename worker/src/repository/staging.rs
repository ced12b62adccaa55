//! A task attempt's records in the repository's staging area.
//!
//! ```text
//! staging/<task>/a<attempt>/progress   what the attempt has copied so far (replaced at each save)
//! staging/<task>/a<attempt>/done       its result: report, scope list, blobs to index
//! ```
//! An attempt saves its progress every `progress_save_interval` (the run it is writing, cut
//! where it got, and the locations of the blobs it stored that no index file lists yet), and
//! writes its done record last. A later attempt of the same task reads the runs earlier
//! attempts wrote as a list of objects already copied, and reuses those whose source object is
//! unchanged without reading them; it carries their blob locations along, so the commit reads
//! exactly one attempt per task. Staging goes with the job (`RemoveStaging`).

use bk_proto::ids::TaskId;
use object_store::path::Path;

use super::index::IndexEntry;
use super::layout::{done_key, progress_key, task_staging_dir};
use super::list::RunRef;
use super::manifest::{DoneRecord, ProgressRecord};
use super::metadata::{read_json, write_json};
use super::opened::Repository;
use crate::error::{RepositoryError, RepositoryResult};

/// Saves an attempt's progress.
///
/// # Errors
/// [`RepositoryError`] when the write fails.
pub async fn write_progress(
    repository: &Repository,
    task_id: TaskId,
    attempt: u32,
    record: &ProgressRecord,
) -> RepositoryResult<()> {
    let key = progress_key(task_id, attempt);
    write_json(repository.store.as_ref(), &repository.key, &key, record).await
}

/// Writes an attempt's done record.
///
/// # Errors
/// [`RepositoryError`] when the write fails.
pub async fn write_done(
    repository: &Repository,
    task_id: TaskId,
    attempt: u32,
    record: &DoneRecord,
) -> RepositoryResult<()> {
    write_json(repository.store.as_ref(), &repository.key, &done_key(task_id, attempt), record)
        .await
}

/// Reads the done record of an attempt.
///
/// # Errors
/// [`RepositoryError`] when it is missing or does not open.
pub async fn read_done(
    repository: &Repository,
    task_id: TaskId,
    attempt: u32,
) -> RepositoryResult<DoneRecord> {
    read_json(repository.store.as_ref(), &repository.key, &done_key(task_id, attempt)).await
}

/// What attempts before the current one of a task recorded.
#[derive(Debug, Default)]
pub struct EarlierWork {
    /// The runs they wrote, oldest attempt first (read merged, the newest attempt wins).
    pub runs: Vec<RunRef>,
    /// Locations of blobs they stored that no index file lists.
    pub blobs: Vec<IndexEntry>,
}

/// Reads what attempts before `attempt` of `task_id` recorded: each one's done record, or its
/// last progress save.
///
/// # Errors
/// [`RepositoryError`] when listing or reading fails.
pub async fn read_earlier(
    repository: &Repository,
    task_id: TaskId,
    attempt: u32,
) -> RepositoryResult<EarlierWork> {
    let dir = task_staging_dir(task_id);
    let mut found: Vec<(u32, Path)> = Vec::new();
    for path in super::list_paths(repository.store.as_ref(), dir.as_ref()).await? {
        let Some(number) = attempt_of(&path).filter(|number| *number < attempt) else { continue };
        if matches!(path.filename(), Some("done" | "progress")) {
            found.push((number, path));
        }
    }
    // Per attempt the done record if there is one (it is complete), else the progress save.
    found.sort_by(|(a, a_path), (b, b_path)| {
        a.cmp(b).then_with(|| {
            (a_path.filename() == Some("done")).cmp(&(b_path.filename() == Some("done")))
        })
    });
    let mut work = EarlierWork::default();
    let mut chosen: Vec<(u32, Path)> = Vec::new();
    for (number, path) in found {
        match chosen.last_mut() {
            Some((last, kept)) if *last == number => *kept = path,
            _ => chosen.push((number, path)),
        }
    }
    for (_, path) in chosen {
        let read = if path.filename() == Some("done") {
            read_json::<DoneRecord>(repository.store.as_ref(), &repository.key, &path)
                .await
                .map(|done| (done.written, done.blobs))
        } else {
            read_json::<ProgressRecord>(repository.store.as_ref(), &repository.key, &path)
                .await
                .map(|progress| (progress.written, progress.blobs))
        };
        match read {
            Ok((run, blobs)) => {
                if !run.chunks.is_empty() {
                    work.runs.push(run);
                }
                work.blobs.extend(blobs);
            }
            // Reuse is an optimisation: a record that does not open (an attempt that ran under
            // the config that lost an initialisation race, sealed with its key; or damage) is
            // not reused, and its objects are copied again.
            Err(RepositoryError::Corrupt { key, reason }) => {
                tracing::warn!(%key, %reason, "an earlier attempt's staging record does not open: its objects are copied again");
            }
            Err(error) => return Err(error),
        }
    }
    Ok(work)
}

/// The attempt number in `staging/<task>/a<n>/<file>`.
fn attempt_of(path: &Path) -> Option<u32> {
    let parts: Vec<_> = path.parts().collect();
    let dir = parts.get(parts.len().checked_sub(2)?)?;
    dir.as_ref().strip_prefix('a')?.parse().ok()
}

/// Reads a job's small plain JSON marker in staging (the QuestDB checkpoint marker, snapshot
/// records: no secrets, read by whichever worker runs the job's cleanup); `None` when absent.
///
/// # Errors
/// Store errors; a marker that does not parse.
pub async fn read_marker<T: serde::de::DeserializeOwned>(
    repository: &Repository,
    key: &Path,
) -> RepositoryResult<Option<T>> {
    match super::metadata::read_all(repository.store.as_ref(), key).await {
        Ok(bytes) => serde_json::from_slice(&bytes).map(Some).map_err(|error| {
            RepositoryError::Corrupt { key: key.to_string(), reason: error.to_string() }
        }),
        Err(RepositoryError::Store { source: object_store::Error::NotFound { .. }, .. }) => {
            Ok(None)
        }
        Err(error) => Err(error),
    }
}

/// Writes a marker [`read_marker`] reads.
///
/// # Errors
/// Store errors.
pub async fn write_marker<T: serde::Serialize>(
    repository: &Repository,
    key: &Path,
    value: &T,
) -> RepositoryResult<()> {
    use object_store::ObjectStoreExt;
    let bytes = serde_json::to_vec(value).map_err(|error| RepositoryError::Corrupt {
        key: key.to_string(),
        reason: error.to_string(),
    })?;
    repository
        .store
        .put(key, object_store::PutPayload::from(bytes))
        .await
        .map_err(RepositoryError::store(key.to_string()))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use bk_proto::model::TaskReport;

    use super::*;
    use crate::repository::crypto::{BlobId, MasterKey};
    use crate::repository::list::ChunkRef;
    use crate::repository::pack::{PackEntry, PackId};
    use crate::repository::test_support::memory_repository;

    #[test]
    fn test_attempt_numbers_are_read_from_record_keys() {
        let path = Path::from("staging/01M8A8K5M4V56XN1S5AM6WRNAA/p0/t1/a12/done");
        assert_eq!(attempt_of(&path), Some(12));
        assert_eq!(attempt_of(&Path::from("staging/x/p0/t1/b2/done")), None);
        assert_eq!(attempt_of(&Path::from("done")), None);
    }

    /// A one-chunk run whose only key is `key` (inline: nothing else to store).
    fn run(key: &str) -> RunRef {
        let chunk = ChunkRef {
            id: String::new(),
            inline: Some(String::new()),
            num_items: 1,
            num_deleted: 0,
            num_bytes: 1,
            first: key.to_string(),
            last: key.to_string(),
        };
        RunRef { chunks: vec![chunk] }
    }

    fn blob(byte: u8) -> IndexEntry {
        let entry =
            PackEntry { id: BlobId([byte; 32]), offset: 0, length: 1, raw_length: 1, flags: 0 };
        IndexEntry { pack: PackId([byte; 16]), entry }
    }

    fn progress(key: &str, blobs: Vec<IndexEntry>) -> ProgressRecord {
        ProgressRecord { written: run(key), blobs }
    }

    #[tokio::test]
    async fn test_earlier_attempts_are_read_done_over_progress_oldest_first_skipping_what_does_not_open(
    ) {
        let (repository, _cache) = memory_repository(1 << 20).await;
        let task: TaskId = "01M8A8K5M4V56XN1S5AM6WRNAA/p0/t1".parse().unwrap();
        // Attempt 1 died after a progress save; attempt 2 saved progress, then finished; attempt
        // 3 saved progress before writing anything (blobs only); attempt 4's save is sealed with
        // another key (it ran under a config that lost an initialisation race); attempt 5 is
        // the current one and 6 a later one: neither is earlier.
        write_progress(&repository, task, 1, &progress("a1", vec![blob(1)])).await.unwrap();
        write_progress(&repository, task, 2, &progress("a2-progress", vec![blob(2)]))
            .await
            .unwrap();
        let done = DoneRecord {
            report: TaskReport::default(),
            list: None,
            written: run("a2-done"),
            blobs: vec![blob(3)],
        };
        write_done(&repository, task, 2, &done).await.unwrap();
        let nothing_written = ProgressRecord { written: RunRef::default(), blobs: vec![blob(4)] };
        write_progress(&repository, task, 3, &nothing_written).await.unwrap();
        let other_key = MasterKey::from_raw([7; 32]);
        let sealed_elsewhere = progress("a4", vec![blob(5)]);
        write_json(
            repository.store.as_ref(),
            &other_key,
            &progress_key(task, 4),
            &sealed_elsewhere,
        )
        .await
        .unwrap();
        for attempt in [5, 6] {
            write_progress(&repository, task, attempt, &progress("later", vec![blob(9)]))
                .await
                .unwrap();
        }

        let earlier = read_earlier(&repository, task, 5).await.unwrap();
        let firsts: Vec<&str> =
            earlier.runs.iter().map(|run| run.chunks[0].first.as_str()).collect();
        assert_eq!(firsts, ["a1", "a2-done"], "the done record wins over its attempt's progress");
        assert_eq!(earlier.blobs, vec![blob(1), blob(3), blob(4)]);
        assert_eq!(read_done(&repository, task, 2).await.unwrap(), done);
        // The first attempt has nothing earlier.
        let first = read_earlier(&repository, task, 1).await.unwrap();
        assert!(first.runs.is_empty() && first.blobs.is_empty());
    }

    #[tokio::test]
    async fn test_a_marker_reads_back_is_none_when_absent_and_names_its_key_when_damaged() {
        let (repository, _cache) = memory_repository(1 << 20).await;
        let key = Path::from("staging/job/marker");
        assert_eq!(read_marker::<Vec<u32>>(&repository, &key).await.unwrap(), None);
        write_marker(&repository, &key, &vec![1u32, 2]).await.unwrap();
        assert_eq!(read_marker::<Vec<u32>>(&repository, &key).await.unwrap(), Some(vec![1, 2]));
        use object_store::ObjectStoreExt;
        repository.store.put(&key, b"{not json".to_vec().into()).await.unwrap();
        match read_marker::<Vec<u32>>(&repository, &key).await {
            Err(RepositoryError::Corrupt { key: named, .. }) => assert_eq!(named, key.to_string()),
            other => panic!("a damaged marker is corrupt, naming its key: {other:?}"),
        }
    }
}
